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
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::agent::config::AgentConfig;
use crate::check::CheckConfig;
use crate::check::CheckKind;
pub use crate::collector::config::CollectorConfig;
pub use crate::collector::correlate::CorrelationConfig;
pub use crate::problems::Problems;

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
        let e = err("[collector]\nadmit-connections-per-sec = 0\n");
        assert!(
            e.contains("collector.admit-connections-per-sec: must be positive"),
            "{e}"
        );
        let e = err("[collector]\nadmit-connections-per-source-per-sec = 0\n");
        assert!(
            e.contains("collector.admit-connections-per-source-per-sec: must be positive"),
            "{e}"
        );
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
