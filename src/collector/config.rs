//! `[collector]` of the configuration file: where the collector listens and how it protects itself.

use std::path::PathBuf;

use serde::Deserialize;

use crate::problems::Problems;
use crate::tls::CollectorTls;

/// `[collector]`: where `hvprobe collector` listens and how it protects itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CollectorConfig {
    /// gRPC ingest and query address.
    pub listen: String,
    /// HTTP API and /metrics address.
    pub http: String,
    /// Most agent streams at once; beyond, new streams are refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Largest message accepted; a bigger one ends that stream only.
    pub max_message_bytes: usize,
    /// A host silent for this many of its intervals is stale.
    pub stale_after_intervals: u32,
    /// Base of the retry hint sent with a refusal (jittered up to twice this).
    pub retry_after_ms: u64,
    /// The event database (SQLite); relative paths are under the working directory.
    pub db: String,
    /// Events older than this many days are deleted (hourly).
    pub retain_days: u64,
    /// At most this many events are kept (the oldest go first).
    pub max_events: u64,
    /// A stream that sends no report within this long after opening is ended.
    pub first_report_timeout_ms: u64,
    /// A stream silent for this many of its announced intervals (at most 300 s each) is ended.
    pub idle_intervals: u32,
    /// Most concurrent streams on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// Most concurrent streams from one peer address (sites behind NAT share one).
    pub max_streams_per_peer: usize,
    /// New streams admitted per second (a token bucket with one second of burst): after an outage the
    /// agents of a whole fleet come back at once; beyond this rate they are told when to come back
    /// (RESOURCE_EXHAUSTED, a retry hint spread over the backlog) instead of all being served at once.
    pub admit_streams_per_sec: u32,
    /// New connections accepted per second on the gRPC port (a token bucket with one second of burst).
    /// Beyond it the accept loop pauses: connections wait in the kernel's accept queue instead of all
    /// starting TLS handshakes, the dearest thing a reconnecting fleet asks for, at once.
    pub admit_connections_per_sec: u32,
    /// Each source's share of that (per IPv4 address or IPv6 /64; one second of burst); beyond, a new
    /// connection is closed at once, before any TLS work, and does not spend the others' pace. Unset: a
    /// tenth of `admit-connections-per-sec`. Raise it for sites with many agents behind one NAT address.
    pub admit_connections_per_source_per_sec: Option<u32>,
    /// Drop (and count) reports a stream sends faster than half its announced interval. Off only for load
    /// tests that measure the collector's ceiling with streams sending as fast as their acks return.
    pub rate_limit_reports: bool,
    /// `[collector.tls]`: serve TLS, require agents' client certificates and bind reports to them.
    pub tls: Option<CollectorTls>,
    /// A file holding the bearer token of the HTTP API and the Query service (with TLS).
    pub api_token_file: Option<PathBuf>,
    /// Alertmanagers (`http://ip:port`) every open verdict is pushed to (API v2).
    pub alertmanagers: Vec<String>,
    /// How often open verdicts are re-sent to Alertmanager.
    pub alert_resend_secs: u64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: "127.0.0.1:7400".into(),
            http: "127.0.0.1:7401".into(),
            max_streams: 20_000,
            max_message_bytes: 1 << 20,
            stale_after_intervals: 3,
            retry_after_ms: 30_000,
            db: "/var/lib/hvprobe/events.db".into(),
            retain_days: 90,
            max_events: 1_000_000,
            first_report_timeout_ms: 30_000,
            idle_intervals: 5,
            max_streams_per_connection: 4,
            max_streams_per_peer: 256,
            admit_streams_per_sec: 2000,
            admit_connections_per_sec: 2000,
            admit_connections_per_source_per_sec: None,
            rate_limit_reports: true,
            tls: None,
            api_token_file: None,
            alertmanagers: Vec::new(),
            alert_resend_secs: 60,
        }
    }
}

impl CollectorConfig {
    /// Collects what is wrong with this section.
    pub fn validate(&self, p: &mut Problems) {
        for (key, v) in [("listen", &self.listen), ("http", &self.http)] {
            if v.parse::<std::net::SocketAddr>().is_err() {
                p.push(key, format!("{v:?} is not an ip:port address"));
            }
        }
        if self.max_streams == 0 {
            p.push("max-streams", "must be positive");
        }
        if !(4096..=64 << 20).contains(&self.max_message_bytes) {
            p.push("max-message-bytes", "must be between 4096 and 67108864");
        }
        if !(2..=100).contains(&self.stale_after_intervals) {
            p.push("stale-after-intervals", "must be between 2 and 100");
        }
        if !(100..=3_600_000).contains(&self.retry_after_ms) {
            p.push("retry-after-ms", "must be between 100 and 3600000");
        }
        if self.db.is_empty() {
            p.push("db", "must be a file path");
        }
        if !(1..=3650).contains(&self.retain_days) {
            p.push("retain-days", "must be between 1 and 3650");
        }
        if !(100..=600_000).contains(&self.first_report_timeout_ms) {
            p.push("first-report-timeout-ms", "must be between 100 and 600000");
        }
        if !(2..=100).contains(&self.idle_intervals) {
            p.push("idle-intervals", "must be between 2 and 100");
        }
        if !(1..=1000).contains(&self.max_streams_per_connection) {
            p.push("max-streams-per-connection", "must be between 1 and 1000");
        }
        if self.admit_streams_per_sec == 0 {
            p.push("admit-streams-per-sec", "must be positive");
        }
        if self.admit_connections_per_sec == 0 {
            p.push("admit-connections-per-sec", "must be positive");
        }
        if self.admit_connections_per_source_per_sec == Some(0) {
            p.push("admit-connections-per-source-per-sec", "must be positive");
        }
        if self.max_streams_per_peer == 0 {
            p.push("max-streams-per-peer", "must be positive");
        }
        if let Some(t) = &self.tls {
            p.scoped("tls.", |p| t.validate(p));
        }
        for a in &self.alertmanagers {
            if let Err(e) = super::alerts::parse_target(a) {
                p.push("alertmanagers", e);
            }
        }
        if !(1..=3600).contains(&self.alert_resend_secs) {
            p.push("alert-resend-secs", "must be between 1 and 3600");
        }
        if self.api_token_file.is_some() && self.tls.is_none() {
            p.push(
                "api-token-file",
                "needs [collector.tls]: a token sent in plaintext protects nothing",
            );
        }
        if !(1000..=1_000_000_000).contains(&self.max_events) {
            p.push("max-events", "must be between 1000 and 1000000000");
        }
    }
}
