//! `dns`: every resolver the host depends on, probed on its own and in parallel, failures classified.
//!
//! After a reboot the local unbound of one hypervisor was not running and deployments failed there for a
//! long time. This check says in one line which resolver is broken and how:
//! `127.0.0.1:53 refused (not running?); 10.1.2.3:53 ok 3ms`.
//!
//! Each (resolver, name) pair gets exactly one query over a connected UDP socket (and TCP only if the
//! answer is truncated), under one deadline: no fallback from one resolver to the next, no cache, no
//! retries, so a dead resolver cannot hide behind a healthy one. A connected UDP socket reports the ICMP
//! port-unreachable of a resolver that is not running as ECONNREFUSED, which is what makes `refused`
//! distinguishable from `timeout`.
//!
//! Resolvers: the `nameserver` lines of `<root>/etc/resolv.conf` and the configured `resolvers`. Names: the
//! configured `names`. With none configured the check queries `localhost.` and accepts any NOERROR or
//! NXDOMAIN answer: it proves the resolver runs and answers without depending on any upstream, so it works
//! on an isolated host (unbound, dnsmasq and systemd-resolved answer `localhost.` locally, RFC 6761; some
//! forwarders say NXDOMAIN, which still proves they are alive). Configure `names` to test real resolution.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxFuture, Check, CheckKind, Context, Details, Outcome, Perf, Status, UnknownReason};
use crate::host::HostRoot;
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

fn same_name(a: &str, b: &str) -> bool {
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

/// What resolv.conf says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ResolvConf {
    /// `nameserver` addresses as written (`fe80::1%eth0` keeps its scope).
    pub nameservers: Vec<String>,
    /// `search` (or `domain`) domains.
    pub search: Vec<String>,
    /// `options` words.
    pub options: Vec<String>,
    /// Lines that could not be understood, with their number.
    pub problems: Vec<String>,
}

/// Parses resolv.conf as glibc does: `#` and `;` start comments, keywords first, last `search`/`domain`
/// wins, unknown keywords are ignored.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(['#', ';']).next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        match keyword {
            "nameserver" => match rest.first() {
                Some(addr) if nameserver_ip(addr).is_some() => {
                    rc.nameservers.push((*addr).to_owned())
                }
                Some(addr) => rc
                    .problems
                    .push(format!("line {}: bad nameserver address {addr:?}", i + 1)),
                None => rc
                    .problems
                    .push(format!("line {}: nameserver without an address", i + 1)),
            },
            "search" | "domain" => rc.search = rest.iter().map(|s| (*s).to_owned()).collect(),
            "options" => rc.options.extend(rest.iter().map(|s| (*s).to_owned())),
            _ => {}
        }
    }
    rc
}

/// The IP of a nameserver entry and its IPv6 scope (a number or an interface name), if any.
fn nameserver_ip(s: &str) -> Option<(IpAddr, Option<&str>)> {
    let (addr, scope) = match s.split_once('%') {
        Some((a, sc)) if !sc.is_empty() => (a, Some(sc)),
        Some(_) => return None,
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    if scope.is_some() && !ip.is_ipv6() {
        return None;
    }
    Some((ip, scope))
}

/// A nameserver entry as a socket address on port 53; an interface scope is resolved through
/// `<root>/sys/class/net/<if>/ifindex`.
fn nameserver_addr(root: &HostRoot, s: &str) -> Result<SocketAddr, String> {
    let (ip, scope) = nameserver_ip(s).ok_or_else(|| format!("bad address {s:?}"))?;
    match (ip, scope) {
        (IpAddr::V6(v6), Some(scope)) => {
            let id = match scope.parse::<u32>() {
                Ok(n) => n,
                Err(_) => root
                    .read(format!("/sys/class/net/{scope}/ifindex"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(|| format!("{s}: no interface {scope:?}"))?,
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(v6, 53, 0, id)))
        }
        (ip, _) => Ok(SocketAddr::new(ip, 53)),
    }
}

/// How one query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsOutcome {
    /// A correct answer.
    Ok,
    /// Connection refused / ICMP port unreachable: the resolver process is not running.
    Refused,
    /// No answer within the deadline.
    Timeout,
    /// SERVFAIL: the resolver runs but cannot get an answer (upstream failing).
    Servfail,
    /// NXDOMAIN for a name that must exist.
    Nxdomain,
    /// REFUSED answer: the resolver will not answer us.
    RefusedRcode,
    /// An answer without the expected data (or no records of the type).
    WrongAnswer,
    /// Anything else; `error` says what.
    Error,
}

impl DnsOutcome {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsOutcome::Ok => "ok",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Timeout => "timeout",
            DnsOutcome::Servfail => "servfail",
            DnsOutcome::Nxdomain => "nxdomain",
            DnsOutcome::RefusedRcode => "refused-rcode",
            DnsOutcome::WrongAnswer => "wrong-answer",
            DnsOutcome::Error => "error",
        }
    }

    /// How bad, for ordering: a dead resolver first.
    fn severity(self) -> u8 {
        match self {
            DnsOutcome::Ok => 0,
            DnsOutcome::WrongAnswer => 1,
            DnsOutcome::Nxdomain => 2,
            DnsOutcome::Error => 3,
            DnsOutcome::RefusedRcode => 4,
            DnsOutcome::Servfail => 5,
            DnsOutcome::Timeout => 6,
            DnsOutcome::Refused => 7,
        }
    }
}

/// One (resolver, name) result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsResult {
    /// `address:port`.
    pub resolver: String,
    /// The name queried (fully qualified).
    pub name: String,
    /// The record type queried.
    pub record_type: String,
    /// The class of the result.
    pub outcome: DnsOutcome,
    /// Time from sending to the answer or the failure, in milliseconds.
    pub latency_ms: f64,
    /// Record data of the requested type in the answer.
    pub answers: Vec<String>,
    /// The response code, when an answer came.
    pub rcode: Option<String>,
    /// What went wrong, for `error` and `wrong-answer`.
    pub error: Option<String>,
}

/// Details of the `dns` check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsDetails {
    /// Nameservers as read from resolv.conf.
    pub resolvers: Vec<String>,
    /// Every (resolver, name) result.
    pub results: Vec<DnsResult>,
    /// `search` domains of resolv.conf (not applied: names are queried as written).
    pub search: Vec<String>,
    /// `options` of resolv.conf.
    pub options: Vec<String>,
    /// Problems with resolv.conf or the resolver list.
    pub notes: Vec<String>,
}

impl DnsDetails {
    /// Nagios performance data: the worst latency per resolver.
    pub fn perfdata(&self) -> Vec<Perf> {
        let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
        for r in &self.results {
            let e = worst.entry(&r.resolver).or_insert(0.0);
            *e = e.max(r.latency_ms);
        }
        let mut v = vec![
            Perf::new(
                "failed_queries",
                self.results
                    .iter()
                    .filter(|r| r.outcome != DnsOutcome::Ok)
                    .count() as f64,
                "",
            )
            .bounds(Some(0.0), Some(self.results.len() as f64)),
        ];
        for (resolver, ms) in worst {
            v.push(
                Perf::new(format!("latency {resolver}"), ms / 1000.0, "s").bounds(Some(0.0), None),
            );
        }
        v
    }
}

/// What the check looked at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// resolv.conf as parsed (empty when not used).
    pub resolv_conf: ResolvConf,
    /// Every result.
    pub results: Vec<DnsResult>,
    /// Problems with the resolver list (missing resolv.conf, unusable entries).
    pub notes: Vec<String>,
}

fn outcome_text(r: &DnsResult, cfg: &DnsConfig) -> String {
    let ms = r.latency_ms;
    match r.outcome {
        DnsOutcome::Ok if ms >= cfg.warn_latency_ms as f64 => {
            format!("slow {ms:.0}ms >= {}ms", cfg.warn_latency_ms)
        }
        DnsOutcome::Ok => format!("ok {}ms", fmt_ms(ms)),
        DnsOutcome::Refused => "refused (not running?)".into(),
        DnsOutcome::Timeout => format!("timeout after {}ms", cfg.timeout_ms),
        DnsOutcome::Servfail => format!("SERVFAIL for {} (upstream failing?)", short(&r.name)),
        DnsOutcome::Nxdomain => format!("NXDOMAIN for {}", short(&r.name)),
        DnsOutcome::RefusedRcode => "REFUSED (not allowed to query?)".into(),
        DnsOutcome::WrongAnswer => format!(
            "wrong answer for {}: {}",
            short(&r.name),
            r.error.as_deref().unwrap_or("unexpected data")
        ),
        DnsOutcome::Error => format!("error: {}", r.error.as_deref().unwrap_or("unknown")),
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn short(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// The verdict. Pure.
pub fn evaluate(obs: &Observation, cfg: &DnsConfig) -> Outcome {
    let details = |obs: &Observation| DnsDetails {
        resolvers: obs.resolv_conf.nameservers.clone(),
        results: obs.results.clone(),
        search: obs.resolv_conf.search.clone(),
        options: obs.resolv_conf.options.clone(),
        notes: obs.notes.clone(),
    };
    if obs.results.is_empty() {
        let mut out = Outcome::unknown(
            UnknownReason::Config,
            format!("no resolver to test: {}", obs.notes.join("; ")),
        );
        out.details = Details::Dns(details(obs));
        return out;
    }
    let slow =
        |r: &DnsResult| r.outcome == DnsOutcome::Ok && r.latency_ms >= cfg.warn_latency_ms as f64;
    // Resolvers in first-seen order, each with its results.
    let mut by_resolver: Vec<(&str, Vec<&DnsResult>)> = Vec::new();
    for r in &obs.results {
        match by_resolver.iter_mut().find(|(k, _)| *k == r.resolver) {
            Some((_, v)) => v.push(r),
            None => by_resolver.push((&r.resolver, vec![r])),
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for r in &obs.results {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let unresolved: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            !obs.results
                .iter()
                .any(|r| r.name == *n && r.outcome == DnsOutcome::Ok)
        })
        .collect();
    let degraded = obs
        .results
        .iter()
        .any(|r| r.outcome != DnsOutcome::Ok || slow(r));
    let mut status = if !unresolved.is_empty() {
        Status::Crit
    } else if degraded {
        Status::Warn
    } else {
        Status::Ok
    };
    // Worst resolver first; within one, the worst result speaks for it, unless names differ in outcome.
    let rank = |rs: &[&DnsResult]| {
        rs.iter()
            .map(|r| (r.outcome.severity(), slow(r) as u8, r.latency_ms as u64))
            .max()
            .unwrap_or_default()
    };
    by_resolver.sort_by_key(|(_, rs)| std::cmp::Reverse(rank(rs)));
    let phrases: Vec<String> = by_resolver
        .iter()
        .map(|(resolver, rs)| {
            let texts: Vec<String> = rs.iter().map(|r| outcome_text(r, cfg)).collect();
            let all_same_class = rs
                .iter()
                .all(|r| r.outcome == rs[0].outcome && slow(r) == slow(rs[0]));
            if all_same_class && matches!(rs[0].outcome, DnsOutcome::Ok) && !slow(rs[0]) {
                let worst = rs.iter().map(|r| r.latency_ms).fold(0.0, f64::max);
                format!("{resolver} ok {}ms", fmt_ms(worst))
            } else if all_same_class
                && !matches!(
                    rs[0].outcome,
                    DnsOutcome::Nxdomain | DnsOutcome::Servfail | DnsOutcome::WrongAnswer
                )
            {
                format!("{resolver} {}", texts[0])
            } else {
                let mut parts: Vec<String> = Vec::new();
                for (r, t) in rs.iter().zip(&texts) {
                    if r.outcome != DnsOutcome::Ok || slow(r) {
                        parts.push(t.clone());
                    }
                }
                if parts.is_empty() {
                    parts = texts.clone();
                }
                parts.dedup();
                format!("{resolver} {}", parts.join(", "))
            }
        })
        .collect();
    let mut summary = phrases.join("; ");
    if !unresolved.is_empty() {
        let list: Vec<&str> = unresolved.iter().map(|n| short(n)).collect();
        summary = format!(
            "no resolver answers {} correctly: {summary}",
            list.join(", ")
        );
    }
    for n in &obs.notes {
        summary.push_str(&format!("; {n}"));
    }
    if status == Status::Ok && !obs.resolv_conf.problems.is_empty() {
        status = Status::Warn;
    }
    Outcome::new(status, summary, Details::Dns(details(obs)))
}

/// Why one query failed before an answer came.
enum QueryError {
    Refused,
    Timeout,
    Other(String),
}

fn io_error(e: std::io::Error) -> QueryError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => QueryError::Refused,
        std::io::ErrorKind::TimedOut => QueryError::Timeout,
        _ => QueryError::Other(e.to_string()),
    }
}

fn query_message(name: &Name, rtype: RecordType) -> (u16, Vec<u8>, Result<(), String>) {
    let id = fastrand::u16(..);
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), rtype));
    match msg.to_vec() {
        Ok(bytes) => (id, bytes, Ok(())),
        Err(e) => (id, Vec::new(), Err(e.to_string())),
    }
}

fn answer_for(buf: &[u8], id: u16) -> Option<Result<Message, String>> {
    match Message::from_vec(buf) {
        Ok(m) if m.metadata.id == id && m.metadata.message_type == MessageType::Response => {
            Some(Ok(m))
        }
        Ok(_) => None, // a stray datagram: keep waiting
        Err(e) => Some(Err(format!("malformed reply: {e}"))),
    }
}

/// One query over a connected UDP socket; on truncation, once more over TCP.
async fn query(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, QueryError> {
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io_error)?;
    sock.connect(server).await.map_err(io_error)?;
    sock.send(bytes).await.map_err(io_error)?;
    let mut buf = vec![0u8; 4096];
    let msg = loop {
        let n = sock.recv(&mut buf).await.map_err(io_error)?;
        match answer_for(&buf[..n], id) {
            Some(Ok(m)) => break m,
            Some(Err(e)) => return Err(QueryError::Other(e)),
            None => continue,
        }
    };
    if !msg.metadata.truncation {
        return Ok(msg);
    }
    let mut tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(io_error)?;
    let len = u16::try_from(bytes.len()).map_err(|_| QueryError::Other("query too long".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    tcp.write_all(&framed).await.map_err(io_error)?;
    let n = tcp.read_u16().await.map_err(io_error)? as usize;
    let mut reply = vec![0u8; n];
    tcp.read_exact(&mut reply).await.map_err(io_error)?;
    match answer_for(&reply, id) {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(QueryError::Other(e)),
        None => Err(QueryError::Other(
            "TCP reply does not match the query".into(),
        )),
    }
}

/// The response code as dig prints it: NOERROR, NXDOMAIN, SERVFAIL…
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn rdata_text(d: &RData) -> String {
    match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => other.to_string(),
    }
}

/// What a query must get to count as `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Any NOERROR or NXDOMAIN answer: the resolver is alive (the default `localhost.` probe).
    Alive,
    /// Records of the queried type.
    Records,
    /// Records containing all these values.
    Expect(Vec<String>),
}

/// Classifies an answer. Pure.
pub fn classify(
    msg: &Message,
    rtype: RecordType,
    want: &Want,
) -> (DnsOutcome, Vec<String>, Option<String>) {
    let answers: Vec<String> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| rdata_text(&r.data))
        .collect();
    let rcode = msg.metadata.response_code;
    if *want == Want::Alive && matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return (DnsOutcome::Ok, answers, None);
    }
    let expect = match want {
        Want::Expect(e) => Some(e.as_slice()),
        _ => None,
    };
    let outcome = match rcode {
        ResponseCode::NoError => {
            if answers.is_empty() {
                return (
                    DnsOutcome::WrongAnswer,
                    answers,
                    Some(format!("no {rtype} records (NODATA)")),
                );
            }
            if let Some(expected) = expect {
                let missing: Vec<&String> = expected
                    .iter()
                    .filter(|e| !answers.iter().any(|a| same_data(a, e)))
                    .collect();
                if !missing.is_empty() {
                    let err = format!("got {}, expected {}", answers.join(" "), expected.join(" "));
                    return (DnsOutcome::WrongAnswer, answers, Some(err));
                }
            }
            DnsOutcome::Ok
        }
        ResponseCode::ServFail => DnsOutcome::Servfail,
        ResponseCode::NXDomain => DnsOutcome::Nxdomain,
        ResponseCode::Refused => DnsOutcome::RefusedRcode,
        other => {
            return (
                DnsOutcome::Error,
                answers,
                Some(format!("rcode {}", rcode_name(other))),
            );
        }
    };
    (outcome, answers, None)
}

fn same_data(answer: &str, expected: &str) -> bool {
    match (answer.parse::<IpAddr>(), expected.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => answer
            .trim_end_matches('.')
            .eq_ignore_ascii_case(expected.trim_end_matches('.')),
    }
}

/// Runs one (resolver, name) probe under the deadline.
async fn probe(
    resolver: SocketAddr,
    label: String,
    name: Name,
    rtype: RecordType,
    want: Want,
    timeout: Duration,
) -> DnsResult {
    let (id, bytes, built) = query_message(&name, rtype);
    let start = Instant::now();
    let mut result = DnsResult {
        resolver: label,
        name: name.to_string(),
        record_type: rtype.to_string(),
        outcome: DnsOutcome::Error,
        latency_ms: 0.0,
        answers: Vec::new(),
        rcode: None,
        error: None,
    };
    if let Err(e) = built {
        result.error = Some(e);
        return result;
    }
    let answer = tokio::time::timeout(timeout, query(resolver, &bytes, id)).await;
    result.latency_ms = (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    match answer {
        Err(_) | Ok(Err(QueryError::Timeout)) => result.outcome = DnsOutcome::Timeout,
        Ok(Err(QueryError::Refused)) => result.outcome = DnsOutcome::Refused,
        Ok(Err(QueryError::Other(e))) => result.error = Some(e),
        Ok(Ok(msg)) => {
            let (outcome, answers, error) = classify(&msg, rtype, &want);
            result.outcome = outcome;
            result.answers = answers;
            result.error = error;
            result.rcode = Some(rcode_name(msg.metadata.response_code));
        }
    }
    result
}

/// The resolvers to probe: resolv.conf entries then configured ones, without duplicates.
fn resolver_list(
    root: &HostRoot,
    cfg: &DnsConfig,
) -> (ResolvConf, Vec<(String, SocketAddr)>, Vec<String>) {
    let mut notes = Vec::new();
    let mut list: Vec<(String, SocketAddr)> = Vec::new();
    let mut rc = ResolvConf::default();
    if cfg.use_resolv_conf {
        let path = root.path(&cfg.resolv_conf);
        match root.read(&cfg.resolv_conf) {
            Ok(text) => {
                rc = parse_resolv_conf(&text);
                for p in &rc.problems {
                    notes.push(format!("{}: {p}", path.display()));
                }
                if rc.nameservers.is_empty() {
                    notes.push(format!("{}: no nameserver lines", path.display()));
                }
                for ns in &rc.nameservers {
                    match nameserver_addr(root, ns) {
                        Ok(addr) => list.push((display_addr(addr, ns), addr)),
                        Err(e) => notes.push(format!("{}: {e}", path.display())),
                    }
                }
            }
            Err(e) => notes.push(e.to_string()),
        }
    }
    for r in &cfg.resolvers {
        // Validated at load time; an entry that still fails is reported, not fatal.
        match parse_resolver(r) {
            Ok(addr) if !list.iter().any(|(_, a)| *a == addr) => {
                list.push((display_addr(addr, r), addr))
            }
            Ok(_) => {}
            Err(e) => notes.push(format!("resolvers: {r:?}: {e}")),
        }
    }
    (rc, list, notes)
}

/// `127.0.0.1:53`, `[::1]:5353`, `[fe80::1%eth0]:53` (the scope as written).
fn display_addr(addr: SocketAddr, written: &str) -> String {
    match (addr, written.split_once('%')) {
        (SocketAddr::V6(v6), Some((_, scope))) if !written.starts_with('[') => {
            format!("[{}%{scope}]:{}", v6.ip(), v6.port())
        }
        _ => addr.to_string(),
    }
}

/// The `dns` check.
#[derive(Debug)]
pub struct DnsCheck {
    cfg: DnsConfig,
}

impl DnsCheck {
    /// A check with this configuration.
    pub fn new(cfg: DnsConfig) -> Self {
        DnsCheck { cfg }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let cfg = self.cfg.clone();
        let (rc, resolvers, notes) = ctx.blocking(move |root| resolver_list(root, &cfg)).await;
        let rtype = parse_record_type(&self.cfg.record_type).unwrap_or(RecordType::A);
        let liveness = self.cfg.names.is_empty();
        let names: Vec<String> = if liveness {
            vec![DEFAULT_NAME.to_owned()]
        } else {
            self.cfg.names.clone()
        };
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let mut tasks = tokio::task::JoinSet::new();
        let mut notes = notes;
        let mut order = Vec::new();
        for (label, addr) in &resolvers {
            for n in &names {
                let name = match parse_name(n) {
                    Ok(name) => name,
                    Err(e) => {
                        notes.push(format!("names: {n:?}: {e}"));
                        continue;
                    }
                };
                let want = match self.cfg.expect.iter().find(|(k, _)| same_name(k, n)) {
                    Some((_, v)) => Want::Expect(v.clone()),
                    None if liveness => Want::Alive,
                    None => Want::Records,
                };
                let idx = order.len();
                order.push(idx);
                let (label, addr) = (label.clone(), *addr);
                tasks.spawn(
                    async move { (idx, probe(addr, label, name, rtype, want, timeout).await) },
                );
            }
        }
        let mut results: Vec<(usize, DnsResult)> = Vec::with_capacity(order.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        results.sort_by_key(|(i, _)| *i);
        notes.dedup();
        let obs = Observation {
            resolv_conf: rc,
            results: results.into_iter().map(|(_, r)| r).collect(),
            notes,
        };
        evaluate(&obs, &self.cfg)
    }
}

impl Check for DnsCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Dns
    }

    /// The per-query deadline plus a margin: every query runs in parallel under its own deadline, so the
    /// whole check ends on time even when every resolver blackholes.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms + 500)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;
    use proptest::prelude::*;

    #[test]
    fn resolv_conf_as_glibc_reads_it() {
        let rc = parse_resolv_conf(
            "# generated by dhclient\n; another comment\nsearch example.com internal.example\noptions edns0 timeout:1 attempts:2\nnameserver 127.0.0.1 # local unbound\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver 10.1.2.3;trailing\ndomain last.example\nnameserver not-an-ip\nnameserver 10.0.0.1%eth0\nnameserver\nsortlist 130.155.160.0/255.255.240.0\n",
        );
        assert_eq!(
            rc.nameservers,
            ["127.0.0.1", "::1", "fe80::1%eth0", "10.1.2.3"]
        );
        assert_eq!(
            rc.search,
            ["last.example"],
            "the last search/domain line wins"
        );
        assert_eq!(rc.options, ["edns0", "timeout:1", "attempts:2"]);
        assert_eq!(rc.problems.len(), 3, "{:?}", rc.problems);
        assert!(
            rc.problems[0].starts_with("line 10: bad nameserver address"),
            "{:?}",
            rc.problems
        );
        assert!(parse_resolv_conf("").nameservers.is_empty());
    }

    #[test]
    fn scoped_nameservers_resolve_their_interface() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/net/eth0")).unwrap();
        std::fs::write(dir.path().join("sys/class/net/eth0/ifindex"), "2\n").unwrap();
        let root = HostRoot::new(dir.path());
        let addr = nameserver_addr(&root, "fe80::1%eth0").unwrap();
        let SocketAddr::V6(v6) = addr else { panic!() };
        assert_eq!((v6.scope_id(), v6.port()), (2, 53));
        assert_eq!(display_addr(addr, "fe80::1%eth0"), "[fe80::1%eth0]:53");
        assert!(nameserver_addr(&root, "fe80::1%nope").is_err());
        assert_eq!(
            nameserver_addr(&root, "fe80::1%7")
                .map(|a| a.to_string())
                .unwrap(),
            "[fe80::1%7]:53"
        );
    }

    #[test]
    fn resolver_strings() {
        assert_eq!(
            parse_resolver("127.0.0.1:53").unwrap().to_string(),
            "127.0.0.1:53"
        );
        assert_eq!(
            parse_resolver("[::1]:5353").unwrap().to_string(),
            "[::1]:5353"
        );
        assert_eq!(
            parse_resolver("10.1.2.3").unwrap().to_string(),
            "10.1.2.3:53"
        );
        assert_eq!(parse_resolver("[::1]").unwrap().to_string(), "[::1]:53");
        assert!(parse_resolver("dns.example:53").is_err());
        assert!(parse_record_type("aaaa").is_ok());
        assert!(parse_record_type("ANY").is_err());
        assert!(parse_record_type("BOGUS").is_err());
        assert_eq!(
            parse_name("api.internal").unwrap().to_string(),
            "api.internal."
        );
    }

    fn answer(rcode: ResponseCode, ips: &[&str]) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        for ip in ips {
            m.add_answer(Record::from_rdata(
                Name::from_ascii("api.internal.").unwrap(),
                60,
                RData::A(A(ip.parse().unwrap())),
            ));
        }
        m
    }

    #[test]
    fn classification() {
        let exp = Want::Expect(vec!["10.0.0.5".to_owned()]);
        let c = |m: &Message, w: &Want| classify(m, RecordType::A, w).0;
        assert_eq!(
            c(&answer(ResponseCode::NoError, &["10.0.0.5"]), &exp),
            DnsOutcome::Ok
        );
        assert_eq!(
            c(&answer(ResponseCode::NoError, &["10.0.0.9"]), &exp),
            DnsOutcome::WrongAnswer
        );
        assert_eq!(
            c(&answer(ResponseCode::NoError, &[]), &Want::Records),
            DnsOutcome::WrongAnswer
        );
        assert_eq!(
            c(&answer(ResponseCode::ServFail, &[]), &Want::Records),
            DnsOutcome::Servfail
        );
        assert_eq!(
            c(&answer(ResponseCode::NXDomain, &[]), &Want::Records),
            DnsOutcome::Nxdomain
        );
        assert_eq!(
            c(&answer(ResponseCode::Refused, &[]), &Want::Records),
            DnsOutcome::RefusedRcode
        );
        assert_eq!(
            c(&answer(ResponseCode::FormErr, &[]), &Want::Records),
            DnsOutcome::Error
        );
        // The default liveness probe: any NOERROR or NXDOMAIN proves the resolver answers.
        assert_eq!(
            c(&answer(ResponseCode::NXDomain, &[]), &Want::Alive),
            DnsOutcome::Ok
        );
        assert_eq!(
            c(&answer(ResponseCode::NoError, &[]), &Want::Alive),
            DnsOutcome::Ok
        );
        assert_eq!(
            c(&answer(ResponseCode::ServFail, &[]), &Want::Alive),
            DnsOutcome::Servfail
        );
        let (_, answers, err) = classify(
            &answer(ResponseCode::NoError, &["10.0.0.9"]),
            RecordType::A,
            &exp,
        );
        assert_eq!(answers, ["10.0.0.9"]);
        assert_eq!(err.as_deref(), Some("got 10.0.0.9, expected 10.0.0.5"));
    }

    fn result(resolver: &str, name: &str, outcome: DnsOutcome, ms: f64) -> DnsResult {
        DnsResult {
            resolver: resolver.into(),
            name: name.into(),
            record_type: "A".into(),
            outcome,
            latency_ms: ms,
            answers: Vec::new(),
            rcode: None,
            error: None,
        }
    }

    #[test]
    fn verdicts() {
        let cfg = DnsConfig::default();
        let ev = |results: Vec<DnsResult>| {
            let out = evaluate(
                &Observation {
                    results,
                    ..Observation::default()
                },
                &cfg,
            );
            (out.status, out.summary)
        };
        let (s, m) = ev(vec![
            result("127.0.0.1:53", "a.", DnsOutcome::Ok, 1.2),
            result("10.1.2.3:53", "a.", DnsOutcome::Ok, 3.0),
        ]);
        assert_eq!(
            (s, m.as_str()),
            (Status::Ok, "10.1.2.3:53 ok 3.0ms; 127.0.0.1:53 ok 1.2ms")
        );
        let (s, m) = ev(vec![
            result("127.0.0.1:53", "a.", DnsOutcome::Refused, 0.1),
            result("10.1.2.3:53", "a.", DnsOutcome::Ok, 3.0),
        ]);
        assert_eq!(
            (s, m.as_str()),
            (
                Status::Warn,
                "127.0.0.1:53 refused (not running?); 10.1.2.3:53 ok 3.0ms"
            )
        );
        let (s, m) = ev(vec![result("127.0.0.1:53", "a.", DnsOutcome::Ok, 400.0)]);
        assert_eq!(
            (s, m.as_str()),
            (Status::Warn, "127.0.0.1:53 slow 400ms >= 250ms")
        );
        let (s, m) = ev(vec![
            result("127.0.0.1:53", "a.", DnsOutcome::Timeout, 1000.0),
            result("127.0.0.1:53", "b.", DnsOutcome::Timeout, 1000.0),
        ]);
        assert_eq!(s, Status::Crit);
        assert_eq!(
            m,
            "no resolver answers a, b correctly: 127.0.0.1:53 timeout after 1000ms"
        );
        let (s, m) = ev(vec![
            result("127.0.0.1:53", "a.", DnsOutcome::Ok, 1.0),
            result("127.0.0.1:53", "b.", DnsOutcome::Servfail, 2.0),
        ]);
        assert_eq!(s, Status::Crit);
        assert_eq!(
            m,
            "no resolver answers b correctly: 127.0.0.1:53 SERVFAIL for b (upstream failing?)"
        );
        let none = evaluate(
            &Observation {
                notes: vec!["/etc/resolv.conf: not found".into()],
                ..Observation::default()
            },
            &cfg,
        );
        assert_eq!(none.status, Status::Unknown);
        assert_eq!(
            none.summary,
            "no resolver to test: /etc/resolv.conf: not found"
        );
    }

    #[test]
    fn config_validation() {
        let mut p = Problems::default();
        DnsConfig {
            resolvers: vec!["nope".into()],
            names: vec!["a.example".into()],
            expect: [("b.example".to_owned(), vec!["x".to_owned()])].into(),
            record_type: "ANY".into(),
            warn_latency_ms: 5000,
            ..DnsConfig::default()
        }
        .validate(&mut p);
        let text = p.to_string();
        for key in ["resolvers", "expect", "record-type", "warn-latency-ms"] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
    }

    proptest! {
        #[test]
        fn resolv_conf_parser_never_panics(s in "\\PC*") {
            let _ = parse_resolv_conf(&s);
        }

        #[test]
        fn reply_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = answer_for(&bytes, 7);
        }
    }
}
