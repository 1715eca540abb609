//! `/etc/resolv.conf` as glibc reads it, and scoped (`%iface`) nameserver addresses.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use serde::Serialize;

use crate::host::HostRoot;

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
pub(super) fn nameserver_addr(root: &HostRoot, s: &str) -> Result<SocketAddr, String> {
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
