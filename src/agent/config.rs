//! `[agent]` of the configuration file: the host's identity and where its reports go.

use serde::Deserialize;

use crate::problems::Problems;

/// `[agent]`: how `hvprobe agent` identifies the host and where it sends reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AgentConfig {
    /// Host identity; default: the hostname.
    pub host_id: Option<String>,
    /// Availability zone (required to run the agent).
    pub az: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Cycle length.
    pub interval_secs: u64,
    /// Random jitter added to each cycle, as a share of the interval (at most 10 s).
    pub jitter_percent: f64,
    /// Collectors, `ip:port` (dialled directly) or `host:port` (resolved once, last good address kept).
    pub collectors: Vec<String>,
    /// Host root for the checks (`/host` in a container).
    pub root: String,
    /// Ceiling of the reconnect backoff.
    pub reconnect_max_secs: u64,
    /// Deadline of one connection attempt.
    pub connect_timeout_ms: u64,
    /// `[agent.tls]`: speak TLS to the collectors, verify them against `ca`, present `cert`.
    pub tls: Option<crate::tls::AgentTls>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            host_id: None,
            az: None,
            region: None,
            interval_secs: 10,
            jitter_percent: 10.0,
            collectors: Vec::new(),
            root: "/".into(),
            reconnect_max_secs: 120,
            connect_timeout_ms: 5000,
            tls: None,
        }
    }
}

/// A name: host id, AZ, region.
fn check_ident(p: &mut Problems, key: &str, v: &str) {
    if !crate::report::valid_ident(v) {
        p.push(
            key,
            format!("{v:?} must be 1-253 characters without spaces or slashes"),
        );
    }
}

impl AgentConfig {
    /// Collects what is wrong with this section.
    pub fn validate(&self, p: &mut Problems) {
        match &self.az {
            Some(az) => check_ident(p, "az", az),
            None => p.push("az", "required: the availability zone of this host"),
        }
        if let Some(h) = &self.host_id {
            check_ident(p, "host-id", h);
        }
        if let Some(r) = &self.region {
            check_ident(p, "region", r);
        }
        if !(1..=3600).contains(&self.interval_secs) {
            p.push(
                "interval-secs",
                format!("must be between 1 and 3600, got {}", self.interval_secs),
            );
        }
        if !(self.jitter_percent.is_finite() && (0.0..=50.0).contains(&self.jitter_percent)) {
            p.push(
                "jitter-percent",
                format!("must be between 0 and 50, got {}", self.jitter_percent),
            );
        }
        for c in &self.collectors {
            if let Err(e) = super::uplink::parse_target(c) {
                p.push("collectors", format!("{c:?}: {e}"));
            }
        }
        if !self.root.starts_with('/') {
            p.push("root", "must be an absolute path");
        }
        if !(1..=3600).contains(&self.reconnect_max_secs) {
            p.push("reconnect-max-secs", "must be between 1 and 3600");
        }
        p.timeout("connect-timeout-ms", self.connect_timeout_ms);
        if let Some(t) = &self.tls {
            p.scoped("tls.", |p| t.validate(p));
        }
    }
}
