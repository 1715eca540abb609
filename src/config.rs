//! Configuration: strict kebab-case TOML, defaults in code, every problem reported with its key.
//!
//! ```toml
//! [[check]]
//! kind = "memory"
//! warn-available-percent = 15
//! ```
//! Every check runs with its defaults unless a `[[check]]` table changes them (`enabled = false` turns a
//! check off). Unknown keys, bad types and impossible thresholds are rejected with the key named, both by
//! `hvprobe validate` and by every command that loads the file.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::check::CheckKind;
use crate::check::registry::CheckConfig;
pub use crate::collector::correlate::CorrelationConfig;

/// What is wrong with a configuration: `(key, reason)` pairs, keys in dotted form
/// (`check[2].warn-available-percent`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems {
    items: Vec<(String, String)>,
    prefix: String,
}

impl Problems {
    /// Records a problem with `key` (relative to the current scope).
    pub fn push(&mut self, key: &str, reason: impl Into<String>) {
        self.items
            .push((format!("{}{key}", self.prefix), reason.into()));
    }

    /// Runs `f` with keys prefixed by `prefix`.
    pub fn scoped(&mut self, prefix: &str, f: impl FnOnce(&mut Problems)) {
        let scoped = format!("{}{prefix}", self.prefix);
        let saved = std::mem::replace(&mut self.prefix, scoped);
        f(self);
        self.prefix = saved;
    }

    /// A percentage in 0..=100.
    pub fn percent(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            self.push(
                key,
                format!("must be a percentage between 0 and 100, got {v}"),
            );
        }
    }

    /// A finite number >= 0.
    pub fn non_negative(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.push(key, format!("must be a number >= 0, got {v}"));
        }
    }

    /// A deadline in milliseconds: 1 ms to 10 minutes.
    pub fn timeout(&mut self, key: &str, ms: u64) {
        if !(1..=600_000).contains(&ms) {
            self.push(key, format!("must be between 1 and 600000 ms, got {ms}"));
        }
    }

    /// A one-shot measurement window: at most 10 s and shorter than the check's deadline.
    pub fn window(&mut self, key: &str, window_ms: u64, timeout_ms: u64) {
        if window_ms > 10_000 {
            self.push(key, format!("must be at most 10000 ms, got {window_ms}"));
        } else if window_ms >= timeout_ms {
            self.push(
                key,
                format!("must be shorter than timeout-ms ({timeout_ms}), got {window_ms}"),
            );
        }
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `(key, reason)` pairs.
    pub fn items(&self) -> &[(String, String)] {
        &self.items
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, reason)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{key}: {reason}")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, or a key is unknown or of the wrong type.
    #[error("{origin}: {msg}")]
    Syntax {
        /// File name (or `<string>`).
        origin: String,
        /// What the parser said, with the key and the line.
        msg: String,
    },
    /// Values that parse but cannot work together.
    #[error("{origin}: invalid configuration:\n{problems}")]
    Invalid {
        /// File name (or `<string>`).
        origin: String,
        /// Every problem found.
        problems: Problems,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    agent: Option<AgentConfig>,
    collector: Option<CollectorConfig>,
    correlation: Option<CorrelationConfig>,
    #[serde(default)]
    check: Vec<toml::Spanned<toml::Table>>,
}

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
            if let Err(e) = crate::agent::uplink::parse_target(c) {
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
    }
}

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
            db: "hvprobe-events.db".into(),
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
    }
}

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[agent]`, when present.
    pub agent: Option<AgentConfig>,
    /// `[collector]`, when present.
    pub collector: Option<CollectorConfig>,
    /// `[correlation]`, when present.
    pub correlation: Option<CorrelationConfig>,
    /// One entry per check kind, in [`CheckKind::ALL`] order: the defaults, or the `[[check]]` table.
    pub checks: Vec<CheckConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            agent: None,
            collector: None,
            correlation: None,
            checks: CheckKind::ALL
                .iter()
                .map(|k| CheckConfig::default_for(*k))
                .collect(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let syntax = |msg: String| ConfigError::Syntax {
            origin: origin.to_owned(),
            msg,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| syntax(e.to_string().trim_end().to_owned()))?;
        let mut config = Config {
            agent: raw.agent,
            collector: raw.collector,
            correlation: raw.correlation,
            ..Config::default()
        };
        let mut seen = BTreeSet::new();
        for (i, spanned) in raw.check.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let mut table = spanned.into_inner();
            let at = format!("[[check]] #{} (line {line})", i + 1);
            let kind = match table.remove("kind") {
                Some(toml::Value::String(s)) => s,
                Some(other) => {
                    return Err(syntax(format!(
                        "{at}: `kind` must be a string, got {}",
                        other.type_str()
                    )));
                }
                None => return Err(syntax(format!("{at}: missing key `kind`"))),
            };
            let kind: CheckKind = kind
                .parse()
                .map_err(|e| syntax(format!("{at}: kind: {e}")))?;
            if !seen.insert(kind) {
                return Err(syntax(format!(
                    "{at}: check `{kind}` is configured twice; put all its keys in one table"
                )));
            }
            let parsed = CheckConfig::from_table(kind, table).map_err(|e| {
                syntax(format!(
                    "{at} kind = \"{kind}\": {}",
                    e.message().trim_end()
                ))
            })?;
            if let Some(slot) = config.checks.iter_mut().find(|c| c.kind() == kind) {
                *slot = parsed;
            }
        }
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// Everything wrong with the values.
    pub fn problems(&self) -> Problems {
        let mut p = Problems::default();
        if let Some(a) = &self.agent {
            p.scoped("agent.", |p| a.validate(p));
        }
        if let Some(c) = &self.collector {
            p.scoped("collector.", |p| c.validate(p));
        }
        if let Some(c) = &self.correlation {
            p.scoped("correlation.", |p| c.validate(p));
        }
        for c in &self.checks {
            p.scoped(&format!("check.{}.", c.kind()), |p| c.validate(p));
        }
        p
    }

    /// The configuration of one check.
    pub fn check(&self, kind: CheckKind) -> Option<&CheckConfig> {
        self.checks.iter().find(|c| c.kind() == kind)
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::memory::MemoryConfig;

    fn err(text: &str) -> String {
        Config::parse(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn empty_config_runs_every_check_with_defaults() {
        let c = Config::parse("", "x").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.checks.len(), CheckKind::ALL.len());
    }

    #[test]
    fn a_check_table_overrides_its_defaults() {
        let c = Config::parse(
            "[[check]]\nkind = \"memory\"\nwarn-available-percent = 20\nenabled = false\n",
            "x",
        )
        .unwrap();
        let Some(CheckConfig::Memory(m)) = c.check(CheckKind::Memory) else {
            panic!("memory config expected")
        };
        assert_eq!(m.warn_available_percent, 20.0);
        assert!(!m.enabled);
        assert_eq!(
            m.crit_available_percent,
            MemoryConfig::default().crit_available_percent
        );
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let e = err("[[check]]\nkind = \"memory\"\nwarn-avialable-percent = 20\n");
        assert!(e.contains("warn-avialable-percent"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let e = err("[[check]]\nkind = \"memory\"\nwindow-ms = \"fast\"\n");
        assert!(e.contains("window-ms") || e.contains("invalid type"), "{e}");
        let e = err("[[check]]\nkind = \"nope\"\n");
        assert!(e.contains("unknown check `nope`"), "{e}");
        let e = err("[[check]]\nwindow-ms = 3\n");
        assert!(e.contains("missing key `kind`"), "{e}");
        let e = err("[agnet]\naz = \"a\"\n");
        assert!(e.contains("agnet"), "{e}");
        let e = err("[agent]\ninterval-secs = 10\n");
        assert!(e.contains("agent.az: required"), "{e}");
        let e = err("[agent]\naz = \"a\"\ncollectors = [\"nope\"]\n");
        assert!(e.contains("agent.collectors: \"nope\""), "{e}");
        let e = err("[collector]\nlisten = \"localhost\"\n");
        assert!(e.contains("collector.listen"), "{e}");
        let e = err("[collector]\nmax-strems = 3\n");
        assert!(e.contains("max-strems"), "{e}");
        let e = err("[[check]]\nkind = \"conntrack\"\n[[check]]\nkind = \"conntrack\"\n");
        assert!(e.contains("configured twice"), "{e}");
        let e = err(
            "[[check]]\nkind = \"conntrack\"\nwarn-used-percent = 95\ncrit-used-percent = 90\n",
        );
        assert!(
            e.contains("check.conntrack.warn-used-percent: must not be above"),
            "{e}"
        );
        let e = err("[[check]]\nkind = \"memory\"\nwindow-ms = 5000\ntimeout-ms = 2000\n");
        assert!(
            e.contains("check.memory.window-ms: must be shorter than timeout-ms"),
            "{e}"
        );
        let e = err("[[check]]\nkind = \"memory\"\nwarn-psi-some-avg10 = 150\n");
        assert!(
            e.contains("check.memory.warn-psi-some-avg10: must be a percentage"),
            "{e}"
        );
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
