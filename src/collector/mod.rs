//! `hvprobe collector`: gRPC ingest from the agents, the latest state of every host, an HTTP query API
//! and metrics.
//!
//! The collector exists for the incidents where monitoring itself failed: it shows silence as `stale`
//! (never "down"), refuses load it cannot take instead of slowing everyone, and is meant to run in every
//! AZ at once (agents stream to all collectors), so losing one AZ loses no view.

pub mod alerts;
pub mod bucket;
pub mod config;
pub mod correlate;
pub mod http;
pub mod ingest;
pub mod page;
pub mod query;
#[cfg(test)]
mod robustness;
pub mod serve;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use self::config::CollectorConfig;
pub use self::correlate::CorrelationConfig;
use crate::pb;
use crate::problems::Problems;

/// Flags of `hvprobe collector` that override `[collector]`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--http`.
    pub http: Option<String>,
    /// `--db`.
    pub db: Option<PathBuf>,
}

/// Merges `[collector]` and the flags, and validates the result.
pub fn settings(
    section: Option<&CollectorConfig>,
    o: &Overrides,
) -> Result<CollectorConfig, Problems> {
    let mut c = section.cloned().unwrap_or_default();
    if let Some(l) = &o.listen {
        c.listen = l.clone();
    }
    if let Some(h) = &o.http {
        c.http = h.clone();
    }
    if let Some(d) = &o.db {
        c.db = d.display().to_string();
    }
    let mut p = Problems::default();
    p.scoped("collector.", |p| c.validate(p));
    if p.is_empty() { Ok(c) } else { Err(p) }
}

/// Raises the soft limit of open files to the hard limit: every agent holds a connection.
pub fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
    }
}

/// The accept queue asked for: after an outage a fleet reconnects within seconds, and a full queue drops
/// SYNs (the agent's connect then waits for TCP's retransmission). The kernel caps it at
/// `net.core.somaxconn` (4096 by default; the README says when to raise it).
const LISTEN_BACKLOG: u32 = 65_535;

async fn bind(what: &str, addr: &str) -> Result<TcpListener, String> {
    let a: SocketAddr = addr.parse().map_err(|e| format!("{what} {addr}: {e}"))?;
    let fail = |e: std::io::Error| format!("cannot listen on {a} ({what}): {e}");
    let socket = if a.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(a).map_err(fail)?;
    socket.listen(LISTEN_BACKLOG).map_err(fail)
}

/// The TLS configurations of both ports (gRPC speaks HTTP/2, the API HTTP/1.1).
struct Tls {
    grpc: crate::tls::ServerTls,
    http: crate::tls::ServerTls,
}

impl Tls {
    fn load(files: &crate::tls::CollectorTls) -> Result<Tls, crate::tls::TlsError> {
        Ok(Tls {
            grpc: crate::tls::ServerTls::load(files, &[b"h2"])?,
            http: crate::tls::ServerTls::load(files, &[b"http/1.1"])?,
        })
    }
}

/// SIGHUP: re-reads the certificates, the client CA and the API token. Connections already up keep their
/// session (healthy streams are not dropped); a file that fails leaves the configuration in use.
fn reload(tls: Option<&Tls>, auth: &serve::Auth, cfg: &CollectorConfig) {
    if let Some(t) = tls {
        match t.grpc.reload().and_then(|()| t.http.reload()) {
            Ok(()) => tracing::info!("TLS certificates and client CA reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; the previous configuration stays")
            }
        }
    }
    match auth.load_token(cfg.api_token_file.as_deref()) {
        Ok(()) => tracing::info!("API token reloaded"),
        Err(e) => {
            tracing::error!(error = %e, "cannot re-read api-token-file; the previous token stays")
        }
    }
}

/// Opens the timeline (moving a corrupt one aside), prunes it, and reads what survives a restart.
fn open_timeline(
    cfg: &CollectorConfig,
) -> Result<
    (
        store::Store,
        Vec<correlate::KnownHost>,
        Vec<correlate::Verdict>,
    ),
    store::StoreError,
> {
    let db = PathBuf::from(&cfg.db);
    let (mut s, _moved) = store::Store::open_or_recover(&db)?;
    let retain = Duration::from_secs(cfg.retain_days.saturating_mul(86_400));
    let pruned = s.prune(std::time::SystemTime::now(), retain, cfg.max_events)?;
    if pruned > 0 {
        tracing::info!(pruned, "old events deleted (retain-days, max-events)");
    }
    let hosts = s.load_hosts()?;
    let verdicts = s.load_verdicts()?;
    tracing::info!(db = %db.display(), known_hosts = hosts.len(), open_verdicts = verdicts.len(), "timeline opened");
    Ok((s, hosts, verdicts))
}

/// The state owner on its thread, its handle, and the timeline's live feed.
struct Owner {
    handle: state::Handle,
    thread: std::thread::JoinHandle<()>,
    events_tx: tokio::sync::broadcast::Sender<correlate::Event>,
    stats: Arc<state::IngestStats>,
}

fn start_owner(
    cfg: &CollectorConfig,
    correlation: CorrelationConfig,
    timeline: (
        store::Store,
        Vec<correlate::KnownHost>,
        Vec<correlate::Verdict>,
    ),
) -> std::io::Result<Owner> {
    const INBOX: usize = 8192;
    let (store, hosts, verdicts) = timeline;
    let mut engine = correlate::Engine::new(correlation, cfg.stale_after_intervals)
        .with_min_gap(Duration::from_secs(1));
    engine.restore(std::time::SystemTime::now(), hosts, verdicts);
    let (tx, rx) = tokio::sync::mpsc::channel(INBOX);
    let (queries, queries_rx) = tokio::sync::mpsc::channel(256);
    let stats = Arc::new(state::IngestStats::default());
    let owner_state = state::State::new(cfg.stale_after_intervals, engine, Some(store))
        .with_stats(stats.clone(), INBOX)
        .with_retention(
            Duration::from_secs(cfg.retain_days.saturating_mul(86_400)),
            cfg.max_events,
        );
    let events_tx = owner_state.events_tx.clone();
    let thread = state::spawn(owner_state, rx, queries_rx)?;
    Ok(Owner {
        handle: state::Handle { tx, queries },
        thread,
        events_tx,
        stats,
    })
}

/// The timer: staleness and verdicts move on even when no report arrives.
fn spawn_ticker(h: state::Handle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            if h.tx.try_send(state::Cmd::Tick).is_err() && h.tx.is_closed() {
                return;
            }
        }
    })
}

/// The gRPC services: health, ingest (with its limits) and the authenticated Query service.
fn grpc_router(
    cfg: &CollectorConfig,
    owner: &Owner,
    max_interval: Duration,
    auth: &serve::Auth,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::transport::server::Router {
    let query = query::QueryService::new(
        owner.handle.clone(),
        PathBuf::from(&cfg.db),
        owner.events_tx.clone(),
    );
    let ingest = ingest::IngestService::new(
        owner.handle.clone(),
        owner.stats.clone(),
        ingest::Limits {
            tls_required: cfg.tls.is_some(),
            max_streams: cfg.max_streams,
            max_streams_per_peer: cfg.max_streams_per_peer,
            admit_per_sec: cfg.admit_streams_per_sec,
            rate_limit: cfg.rate_limit_reports,
            retry_after: Duration::from_millis(cfg.retry_after_ms),
            first_report: Duration::from_millis(cfg.first_report_timeout_ms),
            idle_intervals: cfg.idle_intervals,
            max_interval,
        },
    );
    let query_auth = auth.clone();
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(cfg.max_streams_per_connection))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(
            pb::ingest_server::IngestServer::new(ingest)
                .max_decoding_message_size(cfg.max_message_bytes),
        )
        .add_service(pb::query_server::QueryServer::with_interceptor(
            query,
            move |req: tonic::Request<()>| query::authorize(&query_auth, req),
        ))
}

/// Why the collector stopped waiting.
enum Stop {
    /// SIGTERM or SIGINT.
    Asked,
    /// The state owner died: exit non-zero.
    OwnerDied,
}

/// Waits for SIGTERM/SIGINT, reloading on SIGHUP, and watching the state owner: it ends only when every
/// sender is gone (shutdown); ending before that means it died (a bug), and the collector exits non-zero so
/// systemd restarts it, rather than serve 503s while looking healthy.
async fn wait(
    owner_done: &mut tokio::task::JoinHandle<std::thread::Result<()>>,
    tls: Option<&Tls>,
    auth: &serve::Auth,
    cfg: &CollectorConfig,
) -> Result<Stop, std::io::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(Stop::Asked),
            _ = tokio::signal::ctrl_c() => return Ok(Stop::Asked),
            _ = hup.recv() => reload(tls, auth, cfg),
            r = &mut *owner_done => {
                let why = if matches!(r, Ok(Err(_))) { "panicked" } else { "ended" };
                tracing::error!(why, "the state owner died; exiting so the service manager restarts the collector");
                return Ok(Stop::OwnerDied);
            }
        }
    }
}

/// Runs the collector until SIGTERM or SIGINT. Returns the exit code.
pub async fn run(cfg: CollectorConfig, correlation: CorrelationConfig) -> i32 {
    let timeline = match open_timeline(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the event database");
            return 1;
        }
    };
    let (grpc, web) = match (
        bind("gRPC", &cfg.listen).await,
        bind("HTTP", &cfg.http).await,
    ) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let tls = match cfg.tls.as_ref().map(Tls::load).transpose() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot load the TLS configuration");
            return 1;
        }
    };
    let auth = serve::Auth {
        required: tls.is_some(),
        ..serve::Auth::default()
    };
    if let Err(e) = auth.load_token(cfg.api_token_file.as_deref()) {
        tracing::error!(error = %e, file = ?cfg.api_token_file, "cannot read api-token-file");
        return 1;
    }
    let max_interval = Duration::from_secs(correlation.max_interval_secs);
    let owner = match start_owner(&cfg, correlation, timeline) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the state owner");
            return crate::exit::SOFTWARE;
        }
    };
    let ticker = spawn_ticker(owner.handle.clone());
    let pusher = (!cfg.alertmanagers.is_empty()).then(|| {
        let targets = cfg
            .alertmanagers
            .iter()
            .filter_map(|a| alerts::parse_target(a).ok())
            .collect();
        tokio::spawn(alerts::run(
            owner.handle.clone(),
            targets,
            Duration::from_secs(cfg.alert_resend_secs),
            owner.stats.clone(),
            owner.events_tx.subscribe(),
        ))
    });
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::ingest_server::IngestServer<ingest::IngestService>>()
        .await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (grpc_addr, web_addr) = (grpc.local_addr().ok(), web.local_addr().ok());
    let router = grpc_router(&cfg, &owner, max_interval, &auth, health);
    let pace = (
        bucket::TokenBucket::new(cfg.admit_connections_per_sec, std::time::Instant::now()),
        serve::SourceShare::new(
            cfg.admit_connections_per_source_per_sec
                .unwrap_or(cfg.admit_connections_per_sec / 10),
        ),
    );
    let grpc_task = match &tls {
        None => tokio::spawn(router.serve_with_incoming_shutdown(
            serve::tcp_incoming(grpc, pace, owner.stats.clone()),
            wait_stop(stop_rx.clone()),
        )),
        Some(t) => tokio::spawn(router.serve_with_incoming_shutdown(
            serve::tls_incoming(grpc, t.grpc.clone(), pace, owner.stats.clone()),
            wait_stop(stop_rx.clone()),
        )),
    };
    let app = http::router(http::Api {
        state: owner.handle.clone(),
        stats: owner.stats.clone(),
        db: PathBuf::from(&cfg.db),
    })
    .layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        serve::require_auth,
    ));
    let web_task = tokio::spawn(serve::serve_http(
        web,
        tls.as_ref().map(|t| t.http.clone()),
        app,
        stop_rx.clone(),
    ));
    tracing::info!(grpc = ?grpc_addr, http = ?web_addr, max_streams = cfg.max_streams, tls = tls.is_some(), "collector started");
    let notifier = crate::sdnotify::Notifier::from_env();
    notifier.ready();
    let Owner { handle, thread, .. } = owner;
    let mut owner_done = tokio::task::spawn_blocking(move || thread.join());
    match wait(&mut owner_done, tls.as_ref(), &auth, &cfg).await {
        Ok(Stop::Asked) => {}
        Ok(Stop::OwnerDied) => return crate::exit::SOFTWARE,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the signal handlers");
            return crate::exit::SOFTWARE;
        }
    }
    tracing::info!("stopping");
    notifier.stopping();
    health_reporter
        .set_not_serving::<pb::ingest_server::IngestServer<ingest::IngestService>>()
        .await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = grpc_task.await;
        let _ = web_task.await;
    })
    .await;
    ticker.abort();
    if let Some(p) = pusher {
        p.abort();
    }
    drop(handle);
    // Every sender is gone once the servers stopped: the owner finishes its last write and ends.
    let _ = owner_done.await;
    0
}
