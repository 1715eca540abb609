//! `hvprobe collector`: gRPC ingest from the agents, the latest state of every host, an HTTP query API
//! and metrics.
//!
//! The collector exists for the incidents where monitoring itself failed: it shows silence as `stale`
//! (never "down"), refuses load it cannot take instead of slowing everyone, and is meant to run in every
//! AZ at once (agents stream to all collectors), so losing one AZ loses no view.

pub mod config;
pub mod correlate;
pub mod http;
pub mod ingest;
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

async fn bind(what: &str, addr: &str) -> Result<TcpListener, String> {
    let a: SocketAddr = addr.parse().map_err(|e| format!("{what} {addr}: {e}"))?;
    TcpListener::bind(a)
        .await
        .map_err(|e| format!("cannot listen on {a} ({what}): {e}"))
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

/// Runs the collector until SIGTERM or SIGINT. Returns the exit code.
pub async fn run(cfg: CollectorConfig, correlation: CorrelationConfig) -> i32 {
    let db = PathBuf::from(&cfg.db);
    let opened = store::Store::open_or_recover(&db).and_then(|(mut s, _moved)| {
        let retain = Duration::from_secs(cfg.retain_days.saturating_mul(86_400));
        let pruned = s.prune(std::time::SystemTime::now(), retain, cfg.max_events)?;
        if pruned > 0 {
            tracing::info!(pruned, "old events deleted (retain-days, max-events)");
        }
        let hosts = s.load_hosts()?;
        let verdicts = s.load_verdicts()?;
        Ok((s, hosts, verdicts))
    });
    let (store, hosts, verdicts) = match opened {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the event database");
            return 1;
        }
    };
    tracing::info!(db = %db.display(), known_hosts = hosts.len(), open_verdicts = verdicts.len(), "timeline opened");
    let max_interval = Duration::from_secs(correlation.max_interval_secs);
    let mut engine = correlate::Engine::new(correlation, cfg.stale_after_intervals)
        .with_min_gap(Duration::from_secs(1));
    engine.restore(std::time::SystemTime::now(), hosts, verdicts);
    let grpc = match bind("gRPC", &cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let web = match bind("HTTP", &cfg.http).await {
        Ok(l) => l,
        Err(e) => {
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
    const INBOX: usize = 8192;
    let (tx, rx) = tokio::sync::mpsc::channel(INBOX);
    let (queries, queries_rx) = tokio::sync::mpsc::channel(256);
    let handle = state::Handle { tx, queries };
    let stats = Arc::new(state::IngestStats::default());
    let owner_state = state::State::new(cfg.stale_after_intervals, engine, Some(store))
        .with_stats(stats.clone(), INBOX)
        .with_retention(
            Duration::from_secs(cfg.retain_days.saturating_mul(86_400)),
            cfg.max_events,
        );
    let events_tx = owner_state.events_tx.clone();
    let owner = match state::spawn(owner_state, rx, queries_rx) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the state owner");
            return crate::exit::SOFTWARE;
        }
    };
    // The timer: staleness and verdicts move on even when no report arrives.
    let ticker = {
        let h = handle.clone();
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
    };
    let query = query::QueryService::new(handle.clone(), db.clone(), events_tx);
    let ingest = ingest::IngestService::new(
        handle.clone(),
        stats.clone(),
        ingest::Limits {
            tls_required: cfg.tls.is_some(),
            max_streams: cfg.max_streams,
            max_streams_per_peer: cfg.max_streams_per_peer,
            retry_after: Duration::from_millis(cfg.retry_after_ms),
            first_report: Duration::from_millis(cfg.first_report_timeout_ms),
            idle_intervals: cfg.idle_intervals,
            max_interval,
        },
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::ingest_server::IngestServer<ingest::IngestService>>()
        .await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let grpc_addr = grpc.local_addr().ok();
    let web_addr = web.local_addr().ok();
    let auth = serve::Auth {
        required: tls.is_some(),
        ..serve::Auth::default()
    };
    if let Err(e) = auth.load_token(cfg.api_token_file.as_deref()) {
        tracing::error!(error = %e, file = ?cfg.api_token_file, "cannot read api-token-file");
        return 1;
    }
    let query_auth = auth.clone();
    let router = tonic::transport::Server::builder()
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
        ));
    let grpc_task =
        match &tls {
            None => tokio::spawn(router.serve_with_incoming_shutdown(
                serve::tcp_incoming(grpc),
                wait_stop(stop_rx.clone()),
            )),
            Some(t) => tokio::spawn(router.serve_with_incoming_shutdown(
                serve::tls_incoming(grpc, t.grpc.clone(), stats.tls_failed.clone()),
                wait_stop(stop_rx.clone()),
            )),
        };
    let app = http::router(http::Api {
        state: handle.clone(),
        stats: stats.clone(),
        db,
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
    tracing::info!(grpc = ?grpc_addr, http = ?web_addr, max_streams = cfg.max_streams, "collector started");
    let notifier = crate::sdnotify::Notifier::from_env();
    notifier.ready();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return crate::exit::SOFTWARE;
        }
    };
    // The state owner ends only when every sender is gone (shutdown); ending before that means it died
    // (a bug): exit non-zero so systemd restarts the collector, rather than serve 503s while healthy.
    let mut owner_done = tokio::task::spawn_blocking(move || owner.join());
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler");
            return crate::exit::SOFTWARE;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload(tls.as_ref(), &auth, &cfg),
            r = &mut owner_done => {
                let why = match r {
                    Ok(Err(_)) => "panicked",
                    _ => "ended",
                };
                tracing::error!(why, "the state owner died; exiting so the service manager restarts the collector");
                return crate::exit::SOFTWARE;
            }
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
    drop(handle);
    // Every sender is gone once the servers stopped: the owner finishes its last write and ends.
    let _ = owner_done.await;
    0
}
