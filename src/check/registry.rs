//! The one place that names every check.
//!
//! Each check is a folder (`src/check/<name>/`) with its configuration, parsers, verdict, the `run` that
//! reads the host, its details and their protobuf mapping, and a unit type implementing [`Spec`] that hands
//! those to the registry. The `registry!` table in `check/mod.rs` lists every check once; the kind enum
//! (`CheckKind`), the configuration enum (`CheckConfig`), the details enum (`Details`) and the wire
//! mapping of kinds and details all follow from it. Adding a check is: its folder, one line in that table, and its
//! details message in the `.proto` (a `CHECK_KIND_*` value and a field of the `CheckResult.details` oneof,
//! named like the table's variant).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Check, CheckKind, Perf};
use crate::problems::Problems;

/// What a check folder provides to the registry. Implemented by one unit type per check
/// (`memory::Memory`, `dns::Dns`, ...); the compiler holds every check to the same shape.
pub trait Spec {
    /// The keys of its `[[check]]` table (kebab-case, `deny_unknown_fields`, defaults in `Default`).
    type Config: Clone + Default + PartialEq + fmt::Debug + DeserializeOwned + Send + 'static;
    /// What it observed, as shown in JSON and sent to the collector.
    type Details: Clone + PartialEq + fmt::Debug + Serialize + Send + Sync + 'static;
    /// Its details message in `hvprobe.v1`.
    type Pb;
    /// Whether the configuration turns the check on.
    fn enabled(cfg: &Self::Config) -> bool;
    /// Collects what is wrong with the configuration, keys relative to the check's table.
    fn validate(cfg: &Self::Config, p: &mut Problems);
    /// A fresh instance (with nothing remembered between cycles yet).
    fn build(cfg: &Self::Config) -> Box<dyn Check>;
    /// Nagios performance data of the details.
    fn perfdata(d: &Self::Details) -> Vec<Perf>;
    /// Details to their protobuf message.
    fn to_pb(d: &Self::Details) -> Self::Pb;
    /// Details from their protobuf message. Infallible: a value this build does not know (a newer enum
    /// value) degrades to its UNKNOWN form, and sizes are already bounded by the collector's message limit.
    fn from_pb(m: &Self::Pb) -> Self::Details;
}

/// Declares the set of checks, invoked once in `check/mod.rs`: `Variant = "name" => folder::Spec;`, in
/// display order. It declares each folder's module and generates `CheckKind`, `CheckConfig` and
/// `Details` with their wire mapping. The variant name is also the name of the check's `CheckKind` value
/// and of its `CheckResult.details` field in the `.proto`.
macro_rules! registry {
    ($( $(#[doc = $doc:literal])* $Kind:ident = $name:literal => $module:ident :: $spec:ident; )+) => {
        $( pub mod $module; )+


        /// The stable names of the checks, as used on the CLI, in config (`kind = "…"`), JSON and the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CheckKind {
            $( $(#[doc = $doc])* $Kind, )+
        }

        impl CheckKind {
            /// Every check, in display order.
            pub const ALL: &'static [CheckKind] = &[ $( CheckKind::$Kind, )+ ];

            /// The stable name.
            pub fn as_str(self) -> &'static str {
                match self { $( CheckKind::$Kind => $name, )+ }
            }
        }

        /// The configuration of one check, by kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum CheckConfig {
            $( $(#[doc = $doc])* $Kind(<$module::$spec as $crate::check::registry::Spec>::Config), )+
        }

        impl CheckConfig {
            /// The defaults of a check.
            pub fn default_for(kind: CheckKind) -> CheckConfig {
                match kind { $( CheckKind::$Kind => CheckConfig::$Kind(Default::default()), )+ }
            }

            /// Deserializes the keys of one `[[check]]` table (without `kind`).
            pub fn from_table(kind: CheckKind, table: toml::Table) -> Result<CheckConfig, toml::de::Error> {
                let v = toml::Value::Table(table);
                Ok(match kind { $( CheckKind::$Kind => CheckConfig::$Kind(v.try_into()?), )+ })
            }

            /// Which check this configures.
            pub fn kind(&self) -> CheckKind {
                match self { $( CheckConfig::$Kind(_) => CheckKind::$Kind, )+ }
            }

            /// Whether the check runs.
            pub fn enabled(&self) -> bool {
                match self { $( CheckConfig::$Kind(c) => <$module::$spec as $crate::check::registry::Spec>::enabled(c), )+ }
            }

            /// Collects what is wrong with this configuration.
            pub fn validate(&self, p: &mut $crate::problems::Problems) {
                match self { $( CheckConfig::$Kind(c) => <$module::$spec as $crate::check::registry::Spec>::validate(c, p), )+ }
            }

            /// A fresh check instance.
            pub fn build(&self) -> Box<dyn $crate::check::Check> {
                match self { $( CheckConfig::$Kind(c) => <$module::$spec as $crate::check::registry::Spec>::build(c), )+ }
            }
        }

        /// Typed details of one check's observation. Serialized as the check's `details` object in JSON.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        pub enum Details {
            /// No observation (the check is UNKNOWN, or had nothing to look at).
            None,
            /// On the wire only: the agent left the details out because the check's status and summary did
            /// not change; the collector puts back the ones it keeps (never shown).
            Unchanged,
            $( $(#[doc = $doc])* $Kind(<$module::$spec as $crate::check::registry::Spec>::Details), )+
        }

        impl Details {
            /// Nagios performance data for these details.
            pub fn perfdata(&self) -> Vec<$crate::check::Perf> {
                match self {
                    Details::None | Details::Unchanged => Vec::new(),
                    $( Details::$Kind(d) => <$module::$spec as $crate::check::registry::Spec>::perfdata(d), )+
                }
            }

            /// To the `CheckResult.details` oneof.
            pub fn to_pb(&self) -> Option<$crate::pb::check_result::Details> {
                match self {
                    Details::None | Details::Unchanged => None,
                    $( Details::$Kind(d) => Some($crate::pb::check_result::Details::$Kind(<$module::$spec as $crate::check::registry::Spec>::to_pb(d))), )+
                }
            }

            /// From the `CheckResult.details` oneof.
            pub fn from_pb(m: &$crate::pb::check_result::Details) -> Details {
                match m { $( $crate::pb::check_result::Details::$Kind(d) => Details::$Kind(<$module::$spec as $crate::check::registry::Spec>::from_pb(d)), )+ }
            }
        }

        impl CheckKind {
            /// To the wire enum.
            pub fn to_pb(self) -> $crate::pb::CheckKind {
                match self { $( CheckKind::$Kind => $crate::pb::CheckKind::$Kind, )+ }
            }

            /// From the wire enum; `None` for a kind this build does not know (a newer agent's).
            pub fn from_pb(v: i32) -> Option<CheckKind> {
                match $crate::pb::CheckKind::try_from(v) {
                    $( Ok($crate::pb::CheckKind::$Kind) => Some(CheckKind::$Kind), )+
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use registry;

impl CheckKind {
    /// Names of all checks, for error messages.
    pub fn names() -> String {
        CheckKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for CheckKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for CheckKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(k) = CheckKind::ALL.iter().find(|k| k.as_str() == s) {
            return Ok(*k);
        }
        Err(format!(
            "unknown check `{s}` (known: {})",
            CheckKind::names()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckConfig;

    #[test]
    fn names_round_trip() {
        for k in CheckKind::ALL {
            assert_eq!(k.as_str().parse::<CheckKind>(), Ok(*k));
            assert_eq!(CheckKind::from_pb(k.to_pb() as i32), Some(*k));
            assert_eq!(CheckConfig::default_for(*k).kind(), *k);
            // On by default, but for the checks that need to be told what to watch (units, targets).
            assert_eq!(
                CheckConfig::default_for(*k).enabled(),
                !matches!(k, CheckKind::Services | CheckKind::Reach)
            );
            assert_eq!(CheckConfig::default_for(*k).build().kind(), *k);
        }
        assert!("bogus".parse::<CheckKind>().is_err());
        assert_eq!(CheckKind::from_pb(0), None);
        assert_eq!(CheckKind::from_pb(999), None);
    }
}
