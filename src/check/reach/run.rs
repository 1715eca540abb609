//! The I/O: every cycle, all ICMP targets of a family on one fresh socket (echoes `probe-spacing-ms`
//! apart), every TCP/TLS target connected at the same time; the loss window carried across cycles.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::icmp::{Echo, Pinger};
use super::tcp::ConnectFailure;
use super::{Endpoint, ProbeKind, ReachConfig, TargetState, evaluate};
use crate::check::{BoxFuture, Check, CheckKind, Context, Outcome, Status};

/// How long a TLS configuration built from `ca-file` is used before it is read again.
const TLS_RELOAD: Duration = Duration::from_secs(600);

/// The `reach` check: its targets and each ICMP target's recent echoes.
pub struct ReachCheck {
    cfg: ReachConfig,
    /// Per ICMP target: (sent, lost) of its recent cycles, newest last.
    window: HashMap<String, VecDeque<(u32, u32)>>,
    /// The TLS client configuration built from `ca-file`, and when: rebuilt after [`TLS_RELOAD`] so an
    /// updated CA bundle is used; a failure is not kept (the next cycle tries again).
    tls: Option<(Instant, Arc<rustls::ClientConfig>)>,
}

impl ReachCheck {
    /// A check with nothing remembered.
    pub fn new(cfg: ReachConfig) -> Self {
        ReachCheck {
            cfg,
            window: HashMap::new(),
            tls: None,
        }
    }

    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some((at, cfg)) = &self.tls
            && at.elapsed() < TLS_RELOAD
        {
            return Ok(cfg.clone());
        }
        let ca = self.cfg.ca_file.clone();
        let certs =
            crate::tls::load_certs(std::path::Path::new(&ca)).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        let (_, bad) = roots.add_parsable_certificates(certs);
        if roots.is_empty() {
            return Err(format!("{ca}: none of its {bad} certificates is usable"));
        }
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let cfg = Arc::new(cfg);
        self.tls = Some((Instant::now(), cfg.clone()));
        Ok(cfg)
    }

    async fn observe(&mut self) -> (Vec<TargetState>, bool) {
        let cfg = self.cfg.clone();
        let spacing = Duration::from_millis(cfg.probe_spacing_ms);
        let echo_timeout = Duration::from_millis(cfg.probe_timeout_ms);
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut conns = tokio::task::JoinSet::new();
        let mut states: Vec<TargetState> = Vec::with_capacity(cfg.targets.len());
        let needs_tls = cfg.targets.iter().any(|t| t.kind == ProbeKind::Tls);
        let tls = if needs_tls {
            Some(self.tls_config())
        } else {
            None
        };
        for (i, t) in cfg.targets.iter().enumerate() {
            states.push(TargetState {
                name: t.name.clone(),
                address: t.address.clone(),
                kind: t.kind,
                critical: t.critical,
                sent: 0,
                received: 0,
                window_loss_percent: 0.0,
                window_probes: 0,
                rtt_p50_ms: None,
                rtt_max_ms: None,
                reachable: false,
                failure: None,
                failure_detail: None,
                status: Status::Unknown,
            });
            match t.endpoint() {
                Ok(Endpoint::Ip(ip @ IpAddr::V4(_))) => v4.push((i, ip)),
                Ok(Endpoint::Ip(ip)) => v6.push((i, ip)),
                Ok(Endpoint::Socket(addr)) => {
                    let handshake = match (t.kind, &tls) {
                        (ProbeKind::Tls, Some(Ok(c))) => {
                            let name = t
                                .server_name
                                .as_deref()
                                .map(|n| ServerName::try_from(n.to_owned()))
                                .unwrap_or_else(|| Ok(ServerName::IpAddress(addr.ip().into())));
                            match name {
                                Ok(n) => Some((c.clone(), n)),
                                Err(e) => {
                                    states[i].failure_detail = Some(format!("server-name: {e}"));
                                    continue;
                                }
                            }
                        }
                        (ProbeKind::Tls, Some(Err(e))) => {
                            states[i].failure_detail = Some(format!("no CA to verify with: {e}"));
                            continue;
                        }
                        _ => None,
                    };
                    conns.spawn(async move {
                        (i, super::tcp::probe(addr, handshake, connect_timeout).await)
                    });
                }
                Err(e) => states[i].failure_detail = Some(e),
            }
        }
        let rounds = cfg.probes;
        let family = |targets: Vec<(usize, IpAddr)>| async move {
            if targets.is_empty() {
                return (targets, Ok((Vec::new(), false)));
            }
            let ips: Vec<IpAddr> = targets.iter().map(|(_, ip)| *ip).collect();
            let r = match Pinger::open(ips[0].is_ipv6()) {
                Ok(p) => Ok((p.ping(&ips, rounds, spacing, echo_timeout).await, p.is_raw())),
                Err(f) => Err(f.message),
            };
            (targets, r)
        };
        let conns_done = async {
            let mut out: Vec<(usize, Result<Duration, ConnectFailure>)> = Vec::new();
            while let Some(r) = conns.join_next().await {
                if let Ok(r) = r {
                    out.push(r);
                }
            }
            out
        };
        let ((t4, r4), (t6, r6), connected) = tokio::join!(family(v4), family(v6), conns_done);
        let mut raw = false;
        for (targets, result) in [(t4, r4), (t6, r6)] {
            match result {
                Ok((echoes, is_raw)) => {
                    raw |= is_raw;
                    for ((i, _), e) in targets.iter().zip(echoes) {
                        self.record_echoes(&mut states[*i], &e);
                    }
                }
                Err(why) => {
                    for (i, _) in targets {
                        states[i].failure_detail = Some(why.clone());
                    }
                }
            }
        }
        for (i, r) in connected {
            let s = &mut states[i];
            s.sent = 1;
            match r {
                Ok(d) => {
                    let ms = d.as_secs_f64() * 1000.0;
                    s.received = 1;
                    s.reachable = true;
                    s.rtt_p50_ms = Some(ms);
                    s.rtt_max_ms = Some(ms);
                }
                Err(f) => {
                    s.failure = Some(f.class.to_owned());
                    s.failure_detail = Some(f.detail);
                }
            }
        }
        (states, raw)
    }

    /// One ICMP target's echoes of this cycle: counts, RTTs, the last failure, the loss window.
    fn record_echoes(&mut self, s: &mut TargetState, echoes: &[Echo]) {
        let mut rtts: Vec<f64> = echoes
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        rtts.sort_by(f64::total_cmp);
        s.sent = echoes.len() as u32;
        s.received = rtts.len() as u32;
        s.reachable = !rtts.is_empty();
        s.rtt_p50_ms = rtts.get(rtts.len() / 2).copied();
        s.rtt_max_ms = rtts.last().copied();
        if let Some(f) = echoes.iter().rev().find_map(|e| e.as_ref().err()) {
            s.failure = Some(f.class().to_owned());
        }
        let w = self.window.entry(s.name.clone()).or_default();
        // A cycle without any answer is an outage, judged as unreachable; partial loss is judged over the
        // cycles that were answered, so an outage that ended does not linger as "loss".
        if s.reachable {
            w.push_back((s.sent, s.sent - s.received));
        }
        while w.iter().map(|(n, _)| n).sum::<u32>() > self.cfg.loss_window_probes && w.len() > 1 {
            w.pop_front();
        }
        let (sent, lost) = w
            .iter()
            .fold((0u32, 0u32), |(a, b), (n, l)| (a + n, b + l));
        s.window_probes = sent;
        s.window_loss_percent = if sent == 0 {
            0.0
        } else {
            f64::from(lost) * 100.0 / f64::from(sent)
        };
    }
}

impl Check for ReachCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Reach
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, _ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.cfg.targets.is_empty() {
                return Outcome::unknown(
                    crate::check::UnknownReason::Config,
                    "no targets to probe: list them in the reach check's `targets`",
                );
            }
            // Targets dropped from the configuration leave the window with them.
            let names: std::collections::HashSet<&str> =
                self.cfg.targets.iter().map(|t| t.name.as_str()).collect();
            self.window.retain(|k, _| names.contains(k.as_str()));
            let (states, raw) = self.observe().await;
            evaluate(states, raw, &self.cfg)
        })
    }
}
