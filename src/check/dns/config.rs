//! `[[check]] kind = "dns"`: resolvers, names, expected answers, deadlines; and the parsers of those values.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::rr::{Name, RecordType};
use serde::Deserialize;

use crate::problems::Problems;

/// `[[check]] kind = "dns"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DnsConfig {
    /// Run this check.
    pub enabled: bool,
    /// Deadline of one query (and of the whole check, plus a small margin).
    pub timeout_ms: u64,
    /// A correct answer slower than this makes the resolver "slow" (WARN).
    pub warn_latency_ms: u64,
    /// Probe the `nameserver` lines of resolv.conf.
    pub use_resolv_conf: bool,
    /// Where resolv.conf is, under the host root.
    pub resolv_conf: String,
    /// More resolvers, as `address:port` (`127.0.0.1:53`, `[::1]:5353`; a bare address means port 53).
    pub resolvers: Vec<String>,
    /// Names to query on every resolver; default `localhost.`.
    pub names: Vec<String>,
    /// Record type to query (`A`, `AAAA`, `MX`, …).
    pub record_type: String,
    /// Addresses (or record data) a name's answer must contain.
    pub expect: BTreeMap<String, Vec<String>>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            timeout_ms: 1000,
            warn_latency_ms: 250,
            use_resolv_conf: true,
            resolv_conf: "/etc/resolv.conf".into(),
            resolvers: Vec::new(),
            names: Vec::new(),
            record_type: "A".into(),
            expect: BTreeMap::new(),
        }
    }
}

/// The name queried when none is configured.
pub const DEFAULT_NAME: &str = "localhost.";

impl DnsConfig {
    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        p.timeout("timeout-ms", self.timeout_ms);
        if self.warn_latency_ms == 0 || self.warn_latency_ms > self.timeout_ms {
            p.push(
                "warn-latency-ms",
                format!("must be between 1 and timeout-ms ({})", self.timeout_ms),
            );
        }
        for r in &self.resolvers {
            if let Err(e) = parse_resolver(r) {
                p.push("resolvers", format!("{r:?}: {e}"));
            }
        }
        for n in &self.names {
            if let Err(e) = parse_name(n) {
                p.push("names", format!("{n:?}: {e}"));
            }
        }
        match parse_record_type(&self.record_type) {
            Ok(_) => {}
            Err(e) => p.push("record-type", e),
        }
        for (name, values) in &self.expect {
            if !self.names.iter().any(|n| same_name(n, name)) {
                p.push("expect", format!("{name:?} is not in names"));
            }
            if values.is_empty() {
                p.push(
                    "expect",
                    format!("{name:?}: list at least one expected value"),
                );
            }
            if matches!(
                parse_record_type(&self.record_type),
                Ok(RecordType::A | RecordType::AAAA)
            ) {
                for v in values {
                    if v.parse::<IpAddr>().is_err() {
                        p.push("expect", format!("{name:?}: {v:?} is not an IP address"));
                    }
                }
            }
        }
        if !self.use_resolv_conf && self.resolvers.is_empty() {
            p.push(
                "resolvers",
                "no resolver to probe: list some or set use-resolv-conf = true",
            );
        }
        if self.resolv_conf.is_empty() || !self.resolv_conf.starts_with('/') {
            p.push(
                "resolv-conf",
                "must be an absolute path (under the host root)",
            );
        }
    }
}

pub(super) fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// `A`, `aaaa`, `MX`… Types that are not plain lookups (ANY, AXFR…) are refused.
pub fn parse_record_type(s: &str) -> Result<RecordType, String> {
    let t = RecordType::from_str(&s.to_ascii_uppercase())
        .map_err(|_| format!("unknown record type {s:?}"))?;
    match t {
        RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT => {
            Err(format!("{s} is not a lookup type"))
        }
        t => Ok(t),
    }
}

/// A fully qualified name (a trailing dot is implied: search domains are not applied).
pub fn parse_name(s: &str) -> Result<Name, String> {
    if s.is_empty() {
        return Err("empty name".into());
    }
    let mut n = Name::from_utf8(s).map_err(|e| e.to_string())?;
    n.set_fqdn(true);
    Ok(n)
}

/// `127.0.0.1:53`, `[::1]:5353`, `10.1.2.3` (port 53), `[fe80::1%2]:53`.
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err("expected address:port, e.g. 127.0.0.1:53 or [::1]:5353".into())
}
