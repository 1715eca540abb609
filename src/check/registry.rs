//! The one place that names every check. The exhaustive matches below are the checklist for adding one:
//! its config, its validation, its constructor.

use std::fmt;
use std::str::FromStr;

use super::Check;
use super::conntrack::{ConntrackCheck, ConntrackConfig};
use super::dns::{DnsCheck, DnsConfig};
use super::md_raid::{MdRaidCheck, MdRaidConfig};
use super::memory::{MemoryCheck, MemoryConfig};
use super::wireguard::{WireguardCheck, WireguardConfig};
use crate::problems::Problems;

/// The stable names of the checks, as used on the CLI, in config (`kind = "…"`), JSON and the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckKind {
    /// Memory and swap pressure.
    Memory,
    /// Conntrack table saturation.
    Conntrack,
    /// Linux software RAID.
    MdRaid,
    /// DNS resolution through every resolver.
    Dns,
    /// WireGuard peers.
    Wireguard,
}

impl CheckKind {
    /// Every check, in display order.
    pub const ALL: &'static [CheckKind] = &[
        CheckKind::Memory,
        CheckKind::Conntrack,
        CheckKind::MdRaid,
        CheckKind::Dns,
        CheckKind::Wireguard,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Memory => "memory",
            CheckKind::Conntrack => "conntrack",
            CheckKind::MdRaid => "md-raid",
            CheckKind::Dns => "dns",
            CheckKind::Wireguard => "wireguard",
        }
    }

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

/// The configuration of one check, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckConfig {
    /// `kind = "memory"`.
    Memory(MemoryConfig),
    /// `kind = "conntrack"`.
    Conntrack(ConntrackConfig),
    /// `kind = "md-raid"`.
    MdRaid(MdRaidConfig),
    /// `kind = "dns"`.
    Dns(DnsConfig),
    /// `kind = "wireguard"`.
    Wireguard(WireguardConfig),
}

impl CheckConfig {
    /// The defaults of a check.
    pub fn default_for(kind: CheckKind) -> CheckConfig {
        match kind {
            CheckKind::Memory => CheckConfig::Memory(MemoryConfig::default()),
            CheckKind::Conntrack => CheckConfig::Conntrack(ConntrackConfig::default()),
            CheckKind::MdRaid => CheckConfig::MdRaid(MdRaidConfig::default()),
            CheckKind::Dns => CheckConfig::Dns(DnsConfig::default()),
            CheckKind::Wireguard => CheckConfig::Wireguard(WireguardConfig::default()),
        }
    }

    /// Deserializes the keys of one `[[check]]` table (without `kind`).
    pub fn from_table(kind: CheckKind, table: toml::Table) -> Result<CheckConfig, toml::de::Error> {
        let v = toml::Value::Table(table);
        Ok(match kind {
            CheckKind::Memory => CheckConfig::Memory(v.try_into()?),
            CheckKind::Conntrack => CheckConfig::Conntrack(v.try_into()?),
            CheckKind::MdRaid => CheckConfig::MdRaid(v.try_into()?),
            CheckKind::Dns => CheckConfig::Dns(v.try_into()?),
            CheckKind::Wireguard => CheckConfig::Wireguard(v.try_into()?),
        })
    }

    /// Which check this configures.
    pub fn kind(&self) -> CheckKind {
        match self {
            CheckConfig::Memory(_) => CheckKind::Memory,
            CheckConfig::Conntrack(_) => CheckKind::Conntrack,
            CheckConfig::MdRaid(_) => CheckKind::MdRaid,
            CheckConfig::Dns(_) => CheckKind::Dns,
            CheckConfig::Wireguard(_) => CheckKind::Wireguard,
        }
    }

    /// Whether the check runs.
    pub fn enabled(&self) -> bool {
        match self {
            CheckConfig::Memory(c) => c.enabled,
            CheckConfig::Conntrack(c) => c.enabled,
            CheckConfig::MdRaid(c) => c.enabled,
            CheckConfig::Dns(c) => c.enabled,
            CheckConfig::Wireguard(c) => c.enabled,
        }
    }

    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        match self {
            CheckConfig::Memory(c) => c.validate(p),
            CheckConfig::Conntrack(c) => c.validate(p),
            CheckConfig::MdRaid(c) => c.validate(p),
            CheckConfig::Dns(c) => c.validate(p),
            CheckConfig::Wireguard(c) => c.validate(p),
        }
    }

    /// A fresh check instance.
    pub fn build(&self) -> Box<dyn Check> {
        match self {
            CheckConfig::Memory(c) => Box::new(MemoryCheck::new(c.clone())),
            CheckConfig::Conntrack(c) => Box::new(ConntrackCheck::new(c.clone())),
            CheckConfig::MdRaid(c) => Box::new(MdRaidCheck::new(c.clone())),
            CheckConfig::Dns(c) => Box::new(DnsCheck::new(c.clone())),
            CheckConfig::Wireguard(c) => Box::new(WireguardCheck::new(c.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in CheckKind::ALL {
            assert_eq!(k.as_str().parse::<CheckKind>(), Ok(*k));
            assert_eq!(CheckConfig::default_for(*k).kind(), *k);
            assert!(CheckConfig::default_for(*k).enabled());
            assert_eq!(CheckConfig::default_for(*k).build().kind(), *k);
        }
        assert!("bogus".parse::<CheckKind>().is_err());
    }
}
