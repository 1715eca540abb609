//! One connection from the agent to one collector, kept up for the agent's whole life.
//!
//! Invariants, each from an incident:
//! - **Independent**: every collector has its own task; one unreachable collector never delays another.
//! - **No thundering herd**: a random first delay at start and after every disconnect, then gRPC's
//!   connection backoff (1 s initial, x1.6, +/-20 % jitter, 120 s cap), so thousands of agents do not
//!   arrive in the same second; a retry hint from an overloaded collector is obeyed (and jittered).
//! - **No DNS dependency**: an `ip:port` collector is dialled directly; a `host:port` one is resolved at
//!   each connection attempt, and the last good address is kept when resolution fails.
//! - **Bounded memory**: health is state, not a log. The task only ever holds the latest report; reports
//!   made while the collector was unreachable are counted (`missed_cycles`), not queued.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::pb;
use crate::pb::ingest_client::IngestClient;

/// Where a collector is.
pub use crate::hostport::HostPort as Target;

/// `10.0.0.5:7400`, `[fd00::5]:7400` or `collector.az1.example:7400` (an optional `http://` is accepted).
pub fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/'))
}

/// gRPC connection backoff (<https://github.com/grpc/grpc/blob/master/doc/connection-backoff.md>).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Initial delay.
    pub const INITIAL: Duration = Duration::from_secs(1);
    /// Growth per failed attempt.
    pub const MULTIPLIER: f64 = 1.6;
    /// Relative jitter around each delay.
    pub const JITTER: f64 = 0.2;

    /// A backoff capped at `max`.
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: Self::INITIAL.min(max),
            max,
        }
    }

    /// The delay before the next attempt; `unit` is a uniform random number in [0, 1).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.next;
        self.next = self.next.mul_f64(Self::MULTIPLIER).min(self.max);
        let factor = 1.0 + Self::JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor).min(self.max)
    }

    /// Back to the initial delay (after a connection that worked).
    pub fn reset(&mut self) {
        self.next = Self::INITIAL.min(self.max);
    }
}

/// Compact reports on one stream: once the collector announced `compact_reports`, a check whose status and
/// summary equal those last sent on this stream goes without its details (the collector keeps them). Every
/// [`Compactor::FULL_EVERY`]th report is full, so the details a collector shows are never older than that
/// many intervals; a new stream, or an ack with `send_full`, starts over with a full report.
#[derive(Debug, Default)]
pub struct Compactor {
    allowed: bool,
    sent: std::collections::HashMap<i32, (i32, String)>,
    since_full: u32,
}

impl Compactor {
    /// At most this many reports in a row lean on details sent earlier.
    pub const FULL_EVERY: u32 = 12;

    /// What the collector said in an ack.
    pub fn on_ack(&mut self, ack: &pb::Ack) {
        self.allowed = ack.compact_reports;
        if ack.send_full {
            self.sent.clear();
        }
    }

    /// The message to send for `r` (compact where it can be), and whether it is full. Call
    /// [`Compactor::sent`] with both once it is queued.
    pub fn compact(&self, r: &pb::Report) -> (pb::Report, bool) {
        let mut m = r.clone();
        if !self.allowed || self.since_full + 1 >= Self::FULL_EVERY {
            return (m, true);
        }
        let mut full = true;
        for c in &mut m.checks {
            let same = self
                .sent
                .get(&c.kind)
                .is_some_and(|(status, summary)| *status == c.status && *summary == c.summary);
            if same && c.details.is_some() {
                c.details = None;
                c.details_unchanged = true;
                full = false;
            }
        }
        (m, full)
    }

    /// Records a queued message: `r` is the report it was made from.
    pub fn sent(&mut self, r: &pb::Report, full: bool) {
        self.since_full = if full { 0 } else { self.since_full + 1 };
        for c in &r.checks {
            self.sent.insert(c.kind, (c.status, c.summary.clone()));
        }
    }
}

/// How an uplink behaves.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// The collector.
    pub target: Target,
    /// Upper bound of the random first delay (at start and after a disconnect).
    pub first_delay_max: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
    /// No ack for this long while reports are being sent: the connection is dead or the collector wedged
    /// (a half-open TCP connection acks nothing); reconnect.
    pub ack_timeout: Duration,
    /// TLS to the collector (its certificate verified by DNS name, or by IP address when dialled by one).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Called with every ack the collector sends (the ingest benchmark's simulated agents time their
    /// reports and reconnections with it; the agent itself sets none).
    pub on_ack: Option<AckHook>,
}

/// A function called with each ack.
#[derive(Clone)]
pub struct AckHook(pub Arc<dyn Fn(&pb::Ack) + Send + Sync>);

impl std::fmt::Debug for AckHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckHook")
    }
}

/// Why a session ended.
enum End {
    /// Shutdown was asked.
    Shutdown,
    /// The collector asked us to come back later.
    RetryAfter(Duration),
    /// The connection or the stream failed; `established` when it had worked before failing.
    Failed { why: String, established: bool },
}

fn failed(why: impl Into<String>) -> End {
    End::Failed {
        why: why.into(),
        established: false,
    }
}

/// The address to dial: a fresh resolution when there is one (and it becomes the last good one), else the
/// last good address.
fn remember(
    last_good: &mut Option<SocketAddr>,
    resolved: Option<SocketAddr>,
) -> Option<SocketAddr> {
    if resolved.is_some() {
        *last_good = resolved;
    }
    *last_good
}

/// Sleeps unless shutdown comes first; returns false on shutdown.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait_for(|s| *s) => false,
    }
}

/// Runs the uplink until shutdown. `reports` carries the latest report of the agent.
pub async fn run(
    cfg: UplinkConfig,
    mut reports: watch::Receiver<Option<Arc<pb::Report>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(cfg.backoff_max);
    let mut last_good: Option<SocketAddr> = None;
    let mut last_sent_seq: u64 = 0;
    let mut connected_once = false;
    let mut failures: u32 = 0;
    let mut delay = cfg.first_delay_max.mul_f64(fastrand::f64());
    loop {
        if !pause(delay, &mut shutdown).await {
            return;
        }
        // Bounded: a broken resolver must not hold the reconnection up.
        let addr = match cfg.target.resolve(cfg.connect_timeout).await {
            Ok(addrs) => remember(&mut last_good, addrs.first().copied()),
            Err(e) => {
                tracing::debug!(collector = %cfg.target, error = %e, "using the last good address");
                remember(&mut last_good, None)
            }
        };
        let end = match addr {
            None => failed("cannot resolve the collector and no previous address"),
            Some(addr) => {
                session(
                    &cfg,
                    addr,
                    &mut reports,
                    &mut shutdown,
                    &mut last_sent_seq,
                    &mut backoff,
                    &mut connected_once,
                )
                .await
            }
        };
        delay = match end {
            End::Shutdown => return,
            End::RetryAfter(hint) => {
                // Obeyed, within reason: a collector (or something posing as one) cannot park the agent
                // for longer than reconnect-max-secs.
                let hint = hint.min(cfg.backoff_max);
                tracing::warn!(collector = %cfg.target, retry_after_ms = hint.as_millis() as u64, "collector sheds load; backing off as asked");
                retry_delay(hint, cfg.backoff_max, fastrand::f64())
            }
            // A working stream broke: come back after a random first delay, so the agents of a
            // restarted collector do not all return in the same second.
            End::Failed {
                why,
                established: true,
            } => {
                failures = 0;
                tracing::warn!(collector = %cfg.target, error = %why, "lost the collector; reconnecting");
                cfg.first_delay_max.mul_f64(fastrand::f64())
            }
            End::Failed {
                why,
                established: false,
            } => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(collector = %cfg.target, attempts = failures, error = %why, "collector unreachable; retrying with backoff");
                } else {
                    tracing::debug!(collector = %cfg.target, attempts = failures, error = %why, "collector still unreachable");
                }
                backoff.next_delay(fastrand::f64())
            }
        };
    }
}

/// The endpoint of a collector at `addr`: keepalives, and TLS verified by the target's DNS name (or by the
/// IP address it is dialled at).
fn endpoint(cfg: &UplinkConfig, addr: SocketAddr) -> Result<Endpoint, String> {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let e = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let Some(tls) = &cfg.tls else {
        return Ok(e);
    };
    let tls = match &cfg.target {
        Target::Name(host, _) => tls.clone().domain_name(host.clone()),
        Target::Addr(_) => tls.clone(),
    };
    e.tls_config(tls).map_err(|e| format!("TLS: {e}"))
}

/// One connection and one stream, until either fails or shutdown comes.
async fn session(
    cfg: &UplinkConfig,
    addr: SocketAddr,
    reports: &mut watch::Receiver<Option<Arc<pb::Report>>>,
    shutdown: &mut watch::Receiver<bool>,
    last_sent_seq: &mut u64,
    backoff: &mut Backoff,
    connected_once: &mut bool,
) -> End {
    let endpoint = match endpoint(cfg, addr) {
        Ok(e) => e,
        Err(why) => return failed(why),
    };
    let channel = tokio::select! {
        c = endpoint.connect() => match c {
            Ok(c) => c,
            Err(e) => return failed(format!("connect {addr}: {e}")),
        },
        _ = shutdown.wait_for(|s| *s) => return End::Shutdown,
    };
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::Report>(2);
    // The latest report goes first, so a collector that restarted knows this host at once.
    let mut pending = reports.borrow_and_update().clone();
    let call = client.stream(ReceiverStream::new(rx));
    let mut compactor = Compactor::default();
    let send = |r: &Arc<pb::Report>, last: &mut u64, compactor: &mut Compactor| {
        let (mut m, full) = compactor.compact(r);
        m.missed_cycles = if *last == 0 || m.seq <= *last {
            0
        } else {
            u32::try_from(m.seq - *last - 1).unwrap_or(u32::MAX)
        };
        let seq = m.seq;
        match tx.try_send(m) {
            Ok(()) => {
                *last = seq;
                compactor.sent(r, full);
            }
            // The collector does not keep up: this report is dropped (and counted as missed next time).
            Err(_) => tracing::debug!(collector = %cfg.target, seq, "stream full; report skipped"),
        }
    };
    if let Some(r) = pending.take() {
        send(&r, last_sent_seq, &mut compactor);
    }
    let response = tokio::select! {
        r = call => r,
        _ = shutdown.wait_for(|s| *s) => return End::Shutdown,
    };
    let mut acks = match response {
        Ok(r) => r.into_inner(),
        Err(status) => return refused(&status, false),
    };
    let mut acked = false;
    let mut last_message = String::new();
    let mut last_ack = tokio::time::Instant::now();
    loop {
        let ack_deadline = last_ack + cfg.ack_timeout;
        tokio::select! {
            _ = tokio::time::sleep_until(ack_deadline) => {
                return End::Failed {
                    why: format!("no ack for {} s", cfg.ack_timeout.as_secs()),
                    established: acked,
                };
            }
            changed = reports.changed() => {
                if changed.is_err() {
                    return End::Shutdown; // the agent is gone
                }
                let latest = reports.borrow_and_update().clone();
                if let Some(r) = latest {
                    send(&r, last_sent_seq, &mut compactor);
                }
            }
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    last_ack = tokio::time::Instant::now();
                    compactor.on_ack(&ack);
                    if let Some(hook) = &cfg.on_ack {
                        (hook.0)(&ack);
                    }
                    if !acked {
                        acked = true;
                        backoff.reset();
                        if *connected_once {
                            tracing::info!(collector = %cfg.target, %addr, "reconnected to collector");
                        } else {
                            tracing::info!(collector = %cfg.target, %addr, "connected to collector");
                        }
                        *connected_once = true;
                    }
                    // Told once per session, not on every ack.
                    if !ack.message.is_empty() && ack.message != last_message {
                        tracing::warn!(collector = %cfg.target, message = %ack.message, "collector says");
                    }
                    last_message = ack.message;
                    if ack.retry_after_ms > 0 {
                        return End::RetryAfter(Duration::from_millis(u64::from(ack.retry_after_ms)));
                    }
                }
                Ok(None) => {
                    return End::Failed {
                        why: "collector closed the stream".into(),
                        established: acked,
                    };
                }
                Err(status) => return refused(&status, acked),
            },
            _ = shutdown.wait_for(|s| *s) => return End::Shutdown,
        }
    }
}

/// The delay after a retry hint: the hint stretched by up to 2x (jitter, so the agents it was given to do
/// not return together), never past `max`.
fn retry_delay(hint: Duration, max: Duration, unit: f64) -> Duration {
    hint.mul_f64(1.0 + unit.clamp(0.0, 1.0)).min(max)
}

/// A refusal with a retry hint, or a plain failure.
fn refused(status: &tonic::Status, established: bool) -> End {
    let hint = status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match (status.code(), hint) {
        (tonic::Code::ResourceExhausted, Some(ms)) => End::RetryAfter(Duration::from_millis(ms)),
        // Not a network problem: the collector says no to this agent (its certificate, its host id).
        (
            tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::AlreadyExists,
            _,
        ) => End::Failed {
            why: format!("the collector refused this agent: {}", status.message()),
            established,
        },
        _ => End::Failed {
            why: format!("{}: {}", status.code(), status.message()),
            established,
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compact_reports_leave_out_only_unchanged_details_once_the_collector_allows_it() {
        use super::{Compactor, pb};
        let check = |kind: i32, summary: &str| pb::CheckResult {
            kind,
            status: 1,
            summary: summary.into(),
            details: Some(pb::check_result::Details::Memory(
                pb::MemoryDetails::default(),
            )),
            ..Default::default()
        };
        let report = |mem: &str| pb::Report {
            checks: vec![check(1, mem), check(2, "conntrack 3%")],
            ..Default::default()
        };
        let compact = |m: &pb::Report| -> Vec<bool> {
            m.checks.iter().map(|c| c.details_unchanged).collect()
        };
        // Compacts and records one report, as the uplink does once it is queued.
        let send = |c: &mut Compactor, r: pb::Report| -> pb::Report {
            let (m, full) = c.compact(&r);
            c.sent(&r, full);
            m
        };
        let mut c = Compactor::default();
        // Before the collector says it keeps details, everything is full.
        let m = send(&mut c, report("40%"));
        assert_eq!(compact(&m), [false, false]);
        c.on_ack(&pb::Ack {
            compact_reports: true,
            ..Default::default()
        });
        let m = send(&mut c, report("40%"));
        assert_eq!(compact(&m), [true, true]);
        assert!(m.checks.iter().all(|c| c.details.is_none()));
        // A changed summary sends that check's details.
        let m = send(&mut c, report("38%"));
        assert_eq!(compact(&m), [false, true]);
        // At most FULL_EVERY reports in a row lean on older details.
        let mut fulls = 0;
        for _ in 0..(2 * Compactor::FULL_EVERY) {
            let m = send(&mut c, report("38%"));
            fulls += usize::from(compact(&m) == [false, false]);
        }
        assert_eq!(fulls, 2);
        // `send_full` from the collector: the next report is full.
        c.on_ack(&pb::Ack {
            compact_reports: true,
            send_full: true,
            ..Default::default()
        });
        assert_eq!(compact(&c.compact(&report("38%")).0), [false, false]);
    }

    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("10.0.0.5:7400"),
            Ok(Target::Addr("10.0.0.5:7400".parse().unwrap()))
        );
        assert_eq!(
            parse_target("[fd00::5]:7400"),
            Ok(Target::Addr("[fd00::5]:7400".parse().unwrap()))
        );
        assert_eq!(
            parse_target("http://10.0.0.5:7400/"),
            Ok(Target::Addr("10.0.0.5:7400".parse().unwrap()))
        );
        assert_eq!(
            parse_target("collector.az1.example:7400"),
            Ok(Target::Name("collector.az1.example".into(), 7400))
        );
        assert!(parse_target("collector").is_err());
        assert!(parse_target("bad host:7400").is_err());
        assert!(parse_target("x:99999").is_err());
    }

    #[test]
    fn the_last_good_address_survives_a_failed_resolution() {
        let a: SocketAddr = "10.0.0.5:7400".parse().unwrap();
        let b: SocketAddr = "10.0.0.6:7400".parse().unwrap();
        let mut last = None;
        assert_eq!(remember(&mut last, None), None);
        assert_eq!(remember(&mut last, Some(a)), Some(a));
        assert_eq!(
            remember(&mut last, None),
            Some(a),
            "resolution failed: keep dialling a"
        );
        assert_eq!(remember(&mut last, Some(b)), Some(b), "the collector moved");
        assert_eq!(remember(&mut last, None), Some(b));
    }

    #[test]
    fn retry_hints_are_obeyed_within_reconnect_max() {
        let max = Duration::from_secs(120);
        assert_eq!(
            retry_delay(Duration::from_secs(10), max, 0.0),
            Duration::from_secs(10)
        );
        assert_eq!(
            retry_delay(Duration::from_secs(10), max, 0.5),
            Duration::from_secs(15)
        );
        // A hint of a day parks nobody for a day.
        assert_eq!(retry_delay(Duration::from_secs(86_400), max, 0.9), max);
    }

    #[test]
    fn backoff_follows_grpc() {
        let mut b = Backoff::new(Duration::from_secs(120));
        // Without jitter (unit = 0.5): 1, 1.6, 2.56, 4.096 ... capped at 120.
        let d: Vec<f64> = (0..12).map(|_| b.next_delay(0.5).as_secs_f64()).collect();
        assert!(
            (d[0] - 1.0).abs() < 1e-9 && (d[1] - 1.6).abs() < 1e-9 && (d[2] - 2.56).abs() < 1e-9,
            "{d:?}"
        );
        assert_eq!(d[11], 120.0);
        // Jitter stays within +/-20 %.
        let mut b = Backoff::new(Duration::from_secs(120));
        assert!((b.next_delay(0.0).as_secs_f64() - 0.8).abs() < 1e-9);
        assert!((b.next_delay(0.999_999).as_secs_f64() - 1.92).abs() < 1e-3);
        b.reset();
        assert!((b.next_delay(0.5).as_secs_f64() - 1.0).abs() < 1e-9);
    }
}
