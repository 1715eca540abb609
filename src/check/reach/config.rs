//! `[[check]] kind = "reach"`: the endpoints this host depends on, and how they are probed and judged.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::problems::Problems;

/// Most targets one check probes.
pub const MAX_TARGETS: usize = 1000;

/// How a target is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// ICMP echo (`probes` per cycle).
    Icmp,
    /// A TCP connect.
    Tcp,
    /// A TCP connect and a TLS handshake, the certificate verified.
    Tls,
}

impl ProbeKind {
    /// `icmp`, `tcp`, `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Icmp => "icmp",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Tls => "tls",
        }
    }
}

/// One endpoint: `{ name = "s3", address = "10.0.0.5:443", kind = "tls", critical = true }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetConfig {
    /// Its name in summaries and verdicts; the collector joins hosts on it.
    pub name: String,
    /// An IP (`icmp`) or `ip:port` (`tcp`, `tls`; `[v6]:port`). No DNS: a probe of reachability must not
    /// depend on the resolver.
    pub address: String,
    /// How it is probed.
    pub kind: ProbeKind,
    /// Unreachable is CRIT (otherwise WARN).
    #[serde(default)]
    pub critical: bool,
    /// TLS: the name the certificate must carry (default: the IP address).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `[[check]] kind = "reach"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ReachConfig {
    /// Run this check (it also needs `targets`).
    pub enabled: bool,
    /// The endpoints.
    pub targets: Vec<TargetConfig>,
    /// ICMP echoes per target per cycle (at least 3).
    pub probes: u32,
    /// Time between a target's echoes.
    pub probe_spacing_ms: u64,
    /// An echo not answered within this is lost.
    pub probe_timeout_ms: u64,
    /// A TCP connect and TLS handshake not done within this is a timeout (3 s lets a lost SYN be sent
    /// again once).
    pub connect_timeout_ms: u64,
    /// WARN when an ICMP target lost this share of its echoes over the loss window.
    pub warn_loss_percent: f64,
    /// Echoes the loss is judged over (across cycles in the agent; one cycle's in one-shot).
    pub loss_window_probes: u32,
    /// WARN when a target's median RTT in the cycle is at or above this (unset: off).
    pub warn_rtt_ms: Option<f64>,
    /// CA certificates (PEM) that TLS targets' certificates must chain to.
    pub ca_file: String,
    /// Deadline of one run.
    pub timeout_ms: u64,
}

impl Default for ReachConfig {
    fn default() -> Self {
        ReachConfig {
            enabled: true,
            targets: Vec::new(),
            probes: 3,
            probe_spacing_ms: 200,
            probe_timeout_ms: 1000,
            connect_timeout_ms: 3000,
            warn_loss_percent: 20.0,
            loss_window_probes: 60,
            warn_rtt_ms: None,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            timeout_ms: 8000,
        }
    }
}

/// Where a target is, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// ICMP: an address.
    Ip(IpAddr),
    /// TCP/TLS: an address and port.
    Socket(SocketAddr),
}

impl TargetConfig {
    /// The parsed address, or why it is not one this kind can use.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        match self.kind {
            ProbeKind::Icmp => self.address.parse::<IpAddr>().map(Endpoint::Ip).map_err(|_| {
                format!(
                    "`{}` is not an IP address (icmp takes an address without a port, no names)",
                    self.address
                )
            }),
            ProbeKind::Tcp | ProbeKind::Tls => self
                .address
                .parse::<SocketAddr>()
                .map(Endpoint::Socket)
                .map_err(|_| {
                    format!(
                        "`{}` is not ip:port ({} takes `10.0.0.5:443` or `[2001:db8::5]:443`, no names)",
                        self.address,
                        self.kind.as_str()
                    )
                }),
        }
    }
}

impl ReachConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        if self.targets.len() > MAX_TARGETS {
            p.push(
                "targets",
                format!("at most {MAX_TARGETS} targets, got {}", self.targets.len()),
            );
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("targets[{i}]");
            if t.name.is_empty()
                || t.name.len() > 128
                || t.name.chars().any(|c| c.is_control() || c == '/')
            {
                p.push(
                    &format!("{key}.name"),
                    "must be 1 to 128 printable characters, without `/`",
                );
            } else if !names.insert(t.name.as_str()) {
                p.push(&format!("{key}.name"), format!("`{}` is used twice", t.name));
            }
            if let Err(why) = t.endpoint() {
                p.push(&format!("{key}.address"), why);
            }
            if t.server_name.is_some() && t.kind != ProbeKind::Tls {
                p.push(&format!("{key}.server-name"), "only for kind = \"tls\"");
            }
            if let Some(n) = &t.server_name
                && rustls::pki_types::ServerName::try_from(n.as_str()).is_err()
            {
                p.push(
                    &format!("{key}.server-name"),
                    format!("`{n}` is not a DNS name or an IP address"),
                );
            }
        }
        if !(3..=20).contains(&self.probes) {
            p.push(
                "probes",
                format!("must be between 3 and 20, got {}", self.probes),
            );
        }
        if self.probe_spacing_ms > 2000 {
            p.push("probe-spacing-ms", "must be at most 2000");
        }
        if !(10..=10_000).contains(&self.probe_timeout_ms) {
            p.push("probe-timeout-ms", "must be between 10 and 10000");
        }
        if !(10..=30_000).contains(&self.connect_timeout_ms) {
            p.push("connect-timeout-ms", "must be between 10 and 30000");
        }
        p.percent("warn-loss-percent", self.warn_loss_percent);
        if self.loss_window_probes < self.probes {
            p.push(
                "loss-window-probes",
                format!("must be at least probes ({}), got {}", self.probes, self.loss_window_probes),
            );
        }
        if let Some(v) = self.warn_rtt_ms
            && !(v.is_finite() && v > 0.0)
        {
            p.push("warn-rtt-ms", format!("must be a number above 0, got {v}"));
        }
        p.timeout("timeout-ms", self.timeout_ms);
        let icmp_needs = (u64::from(self.probes.saturating_sub(1))) * self.probe_spacing_ms
            + self.probe_timeout_ms;
        let needs = icmp_needs.max(self.connect_timeout_ms);
        if self.timeout_ms <= needs {
            p.push(
                "timeout-ms",
                format!(
                    "must be longer than the probes take ({needs} ms: the echoes' spacing and timeout, or connect-timeout-ms), got {}",
                    self.timeout_ms
                ),
            );
        }
    }
}
