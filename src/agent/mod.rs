//! `hvprobe agent`: every check on a schedule, results streamed to every collector at once.
//!
//! Invariants:
//! - **The schedule never stalls.** Each cycle runs the checks under their deadlines (a wedged check is
//!   reported `busy`, not waited for); the loop sends the systemd watchdog ping, so a wedged agent gets
//!   restarted.
//! - **The agent adds no load to a sick host.** One current-thread runtime, file reads on a small blocking
//!   pool, one query or echo per target per cycle, no retries inside a cycle, nothing buffered while
//!   collectors are away (only the latest report is kept).
//! - **Collectors are independent** (see [`uplink`]): losing one AZ's collector loses no view elsewhere.
//! - Logs are transitions (a check changing status, a collector lost or back), never every result.

pub mod config;
pub mod uplink;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::check::CheckConfig;
use crate::check::runner::{CheckReport, Runner};
use crate::check::{CheckKind, Context, Mode, Status};
use crate::problems::Problems;

pub use self::config::AgentConfig;
use crate::host::HostRoot;
use crate::identity;
use crate::report::{AgentSelf, HostReport};
use crate::wire;

/// Flags of `hvprobe agent` that override `[agent]`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--host-id`.
    pub host_id: Option<String>,
    /// `--az`.
    pub az: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--collector` (repeatable; replaces the configured list).
    pub collectors: Vec<String>,
    /// `--interval-secs`.
    pub interval_secs: Option<u64>,
    /// `--root`.
    pub root: Option<PathBuf>,
}

/// Everything the agent needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Host identity.
    pub host_id: String,
    /// Availability zone.
    pub az: String,
    /// Region.
    pub region: Option<String>,
    /// Cycle length.
    pub interval: Duration,
    /// Jitter share.
    pub jitter_percent: f64,
    /// Collectors.
    pub collectors: Vec<uplink::Target>,
    /// Host root.
    pub root: HostRoot,
    /// Backoff cap.
    pub reconnect_max: Duration,
    /// Connection deadline.
    pub connect_timeout: Duration,
    /// TLS to the collectors.
    pub tls: Option<crate::tls::AgentTls>,
}

/// Merges `[agent]` and the flags, and validates the result (errors name the key).
pub fn settings(section: Option<&AgentConfig>, o: &Overrides) -> Result<Settings, Problems> {
    let mut a: AgentConfig = section.cloned().unwrap_or_default();
    if o.host_id.is_some() {
        a.host_id = o.host_id.clone();
    }
    if o.az.is_some() {
        a.az = o.az.clone();
    }
    if o.region.is_some() {
        a.region = o.region.clone();
    }
    if !o.collectors.is_empty() {
        a.collectors = o.collectors.clone();
    }
    if let Some(i) = o.interval_secs {
        a.interval_secs = i;
    }
    if let Some(r) = &o.root {
        a.root = r.display().to_string();
    }
    let mut p = Problems::default();
    p.scoped("agent.", |p| a.validate(p));
    let host_id = a
        .host_id
        .clone()
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_default();
    if host_id.is_empty() {
        p.push("agent.host-id", "the hostname is unknown: set host-id");
    }
    if a.collectors.is_empty() {
        p.push(
            "agent.collectors",
            "list at least one collector (or give --collector)",
        );
    }
    if !p.is_empty() {
        return Err(p);
    }
    Ok(Settings {
        host_id,
        az: a.az.unwrap_or_default(),
        region: a.region,
        interval: Duration::from_secs(a.interval_secs),
        jitter_percent: a.jitter_percent,
        collectors: a
            .collectors
            .iter()
            .filter_map(|c| uplink::parse_target(c).ok())
            .collect(),
        root: HostRoot::new(a.root),
        reconnect_max: Duration::from_secs(a.reconnect_max_secs),
        connect_timeout: Duration::from_millis(a.connect_timeout_ms),
        tls: a.tls,
    })
}

/// The agent's own RSS and CPU time, read through sysinfo (the live process, not the host root).
struct SelfStats {
    sys: Option<sysinfo::System>,
    pid: Option<sysinfo::Pid>,
}

impl SelfStats {
    fn new() -> SelfStats {
        SelfStats {
            sys: sysinfo::System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    fn read(&mut self) -> Option<AgentSelf> {
        let (sys, pid) = (self.sys.as_mut()?, self.pid?);
        sys.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            false,
            sysinfo::ProcessRefreshKind::nothing()
                .with_memory()
                .with_cpu(),
        );
        let p = sys.process(pid)?;
        Some(AgentSelf {
            rss_bytes: p.memory(),
            cpu_seconds: p.accumulated_cpu_time() as f64 / 1000.0,
        })
    }
}

/// The agent's TLS client configuration: the collectors' CA and the agent's own certificate.
fn client_tls(
    t: &crate::tls::AgentTls,
) -> Result<tonic::transport::ClientTlsConfig, crate::tls::TlsError> {
    let ca = crate::tls::read_pem(&t.ca)?;
    let cert = crate::tls::read_pem(&t.cert)?;
    let key = crate::tls::read_pem(&t.key)?;
    // Parsed here too, so a bad file is named at start rather than at the first connection.
    crate::tls::load_certs(&t.ca)?;
    crate::tls::load_certs(&t.cert)?;
    crate::tls::load_key(&t.key)?;
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .identity(tonic::transport::Identity::from_pem(cert, key)))
}

/// The random part of the next cycle's start.
fn jitter(interval: Duration, percent: f64) -> Duration {
    interval
        .mul_f64(percent / 100.0 * fastrand::f64())
        .min(Duration::from_secs(10))
}

/// Logs checks that changed status (and every check on the first cycle).
fn log_transitions(prev: &mut HashMap<CheckKind, Status>, checks: &[CheckReport]) {
    for c in checks {
        let now = c.outcome.status;
        match prev.insert(c.kind, now) {
            Some(before) if before == now => {}
            Some(before) => tracing::info!(
                check = %c.kind, from = %before, to = %now, summary = %c.outcome.summary,
                "check status changed"
            ),
            None => {
                tracing::info!(check = %c.kind, status = %now, summary = %c.outcome.summary, "first observation")
            }
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT. Returns the exit code.
pub async fn run(s: Settings, checks: &[CheckConfig]) -> i32 {
    let notifier = crate::sdnotify::Notifier::from_env();
    let mut runner = Runner::new(
        checks
            .iter()
            .filter(|c| c.enabled())
            .map(|c| c.build())
            .collect(),
    );
    let ctx = Context::new(s.root.clone(), Mode::Agent);
    let (report_tx, report_rx) = watch::channel::<Option<Arc<crate::pb::Report>>>(None);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut uplinks = match spawn_uplinks(&s, &report_rx, &shutdown_rx) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "cannot load the TLS configuration");
            return 1;
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return crate::exit::SOFTWARE;
        }
    };
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tokio::pin!(stop);
    tracing::info!(
        host_id = %s.host_id, az = %s.az, interval_secs = s.interval.as_secs(),
        collectors = s.collectors.len(), checks = ?runner.kinds(), "agent started"
    );
    let mut cycle = Cycle::new(&s);
    'cycles: loop {
        let start = Instant::now();
        let checks = tokio::select! {
            c = runner.run_once(&ctx) => c,
            _ = &mut stop => break 'cycles,
        };
        let report = cycle.report(&s, checks);
        let (seq, status) = (report.seq, report.status());
        report_tx.send_replace(Some(Arc::new(wire::report_to_pb(&report))));
        if seq == 1 {
            notifier.ready();
        }
        notifier.watchdog_ping();
        notifier.status(&format!("cycle {seq}: {status}"));
        let next = start + s.interval + jitter(s.interval, s.jitter_percent);
        // Sleep until the next cycle, pinging the watchdog often enough for any interval.
        let tick = notifier
            .watchdog()
            .map_or(s.interval, |w| (w / 2).max(Duration::from_millis(100)));
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            let wake = tokio::time::Instant::from_std((now + tick).min(next));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => notifier.watchdog_ping(),
                _ = &mut stop => break 'cycles,
            }
        }
    }
    tracing::info!("stopping");
    notifier.stopping();
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while uplinks.join_next().await.is_some() {}
    })
    .await;
    0
}

/// One task per collector, all fed the latest report.
fn spawn_uplinks(
    s: &Settings,
    reports: &watch::Receiver<Option<Arc<crate::pb::Report>>>,
    shutdown: &watch::Receiver<bool>,
) -> Result<tokio::task::JoinSet<()>, crate::tls::TlsError> {
    let tls = s.tls.as_ref().map(client_tls).transpose()?;
    let mut uplinks = tokio::task::JoinSet::new();
    for target in &s.collectors {
        let cfg = uplink::UplinkConfig {
            target: target.clone(),
            first_delay_max: s.interval.min(Duration::from_secs(10)),
            backoff_max: s.reconnect_max,
            connect_timeout: s.connect_timeout,
            // A few intervals without an ack (at least 15 s): the stream is dead even if TCP does not know.
            ack_timeout: (s.interval * 3).max(Duration::from_secs(15)),
            tls: tls.clone(),
            on_ack: None,
        };
        uplinks.spawn(uplink::run(cfg, reports.clone(), shutdown.clone()));
    }
    Ok(uplinks)
}

/// What the schedule carries from one cycle to the next: identity read once, the sequence, the statuses
/// (for transition logs), the agent's own footprint.
struct Cycle {
    boot_id: String,
    boot_time: Option<u64>,
    seq: u64,
    statuses: HashMap<CheckKind, Status>,
    self_stats: SelfStats,
}

impl Cycle {
    fn new(s: &Settings) -> Cycle {
        Cycle {
            boot_id: identity::read_boot_id(&s.root).unwrap_or_default(),
            boot_time: identity::read_boot_time(&s.root),
            seq: 0,
            statuses: HashMap::new(),
            self_stats: SelfStats::new(),
        }
    }

    /// This cycle's report.
    fn report(&mut self, s: &Settings, checks: Vec<CheckReport>) -> HostReport {
        log_transitions(&mut self.statuses, &checks);
        self.seq += 1;
        HostReport {
            host_id: s.host_id.clone(),
            az: s.az.clone(),
            region: s.region.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            boot_id: self.boot_id.clone(),
            boot_time: self.boot_time,
            interval: s.interval,
            seq: self.seq,
            observed_at: SystemTime::now(),
            missed_cycles: 0,
            agent: self.self_stats.read(),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_problems_name_keys() {
        let cfg: AgentConfig =
            toml::from_str("az = \"az1\"\nhost-id = \"hv-1\"\ncollectors = [\"127.0.0.1:7400\"]\n")
                .unwrap();
        let s = settings(Some(&cfg), &Overrides::default()).unwrap();
        assert_eq!((s.host_id.as_str(), s.az.as_str()), ("hv-1", "az1"));
        let s = settings(
            Some(&cfg),
            &Overrides {
                az: Some("az2".into()),
                collectors: vec!["10.0.0.5:7400".into(), "10.1.0.5:7400".into()],
                interval_secs: Some(2),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            (s.az.as_str(), s.collectors.len(), s.interval),
            ("az2", 2, Duration::from_secs(2))
        );
        let e = settings(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent.az: required"), "{e}");
        assert!(e.contains("agent.collectors: list at least one"), "{e}");
    }

    #[test]
    fn jitter_is_bounded() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10), 10.0);
            assert!(j <= Duration::from_secs(1));
            assert!(jitter(Duration::from_secs(3600), 50.0) <= Duration::from_secs(10));
        }
    }
}
