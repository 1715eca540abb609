//! Conntrack evidence for a broken peer: the entries of the UDP flow between the interface's listen port
//! and the peer's endpoint, each judged. Pure; the entries come from [`super::ctnetlink`].
//!
//! Suspect, with the reason:
//! - `UNREPLIED` while the peer is down: nothing has come back on this flow;
//! - a reply tuple that no longer matches the peer's endpoint (replies expected from elsewhere: stale DNAT);
//! - a reply tuple aimed at an address this host no longer has (stale SNAT after an address change).
//!
//! A suspect flow carries the command that drops just that flow. The check never deletes anything.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::ctnetlink::{Entry, IPS_ASSURED, IPS_SEEN_REPLY};

/// Who sent the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowDirection {
    /// This host, from its listen port to the peer's endpoint.
    Outbound,
    /// The peer, from its endpoint to this host's listen port.
    Inbound,
}

/// One conntrack entry of a broken peer's flow, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowInfo {
    /// Who started the flow.
    pub direction: FlowDirection,
    /// Original tuple, `src:port -> dst:port`.
    pub original: String,
    /// Reply tuple (what a reply must look like, after NAT).
    pub reply: String,
    /// `UNREPLIED`, `REPLIED` or `ASSURED`, as `conntrack -L` flags it.
    pub state: String,
    /// Seconds until the entry expires unless refreshed (every packet refreshes it).
    pub timeout_secs: u32,
    /// NAT applied to the flow, in words; null when none.
    pub nat: Option<String>,
    /// Why this entry may be what breaks the peer; null when it looks right.
    pub suspect: Option<String>,
    /// The command that drops just this entry (suspect entries only).
    pub drop_command: Option<String>,
}

/// A peer endpoint as read (`1.2.3.4:51820`, `[fe80::1%2]:51820`) as a socket address, scope dropped
/// (conntrack tuples carry none).
pub fn endpoint_addr(endpoint: &str) -> Option<SocketAddr> {
    if let Ok(a) = endpoint.parse::<SocketAddr>() {
        return Some(SocketAddr::new(a.ip(), a.port()));
    }
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.strip_prefix('[')?.strip_suffix(']')?;
    let ip = host.split('%').next()?.parse::<IpAddr>().ok()?;
    Some(SocketAddr::new(ip, port.parse().ok()?))
}

/// Whether an entry belongs to the flow between `listen_port` and `endpoint`, and in which direction.
pub fn direction_of(e: &Entry, listen_port: u16, endpoint: SocketAddr) -> Option<FlowDirection> {
    let same = |a: SocketAddr, b: SocketAddr| a.ip() == b.ip() && a.port() == b.port();
    if e.original.src.port() == listen_port && same(e.original.dst, endpoint) {
        Some(FlowDirection::Outbound)
    } else if e.original.dst.port() == listen_port && same(e.original.src, endpoint) {
        Some(FlowDirection::Inbound)
    } else {
        None
    }
}

fn drop_command(e: &Entry) -> String {
    let family = if e.original.src.is_ipv6() {
        " -f ipv6"
    } else {
        ""
    };
    format!(
        "conntrack -D{family} -p udp --orig-src {} --orig-dst {} --orig-port-src {} --orig-port-dst {}",
        e.original.src.ip(),
        e.original.dst.ip(),
        e.original.src.port(),
        e.original.dst.port()
    )
}

/// Judges one entry of a broken peer's flow. `local` is every address this host has now.
pub fn assess(
    e: &Entry,
    direction: FlowDirection,
    endpoint: SocketAddr,
    peer_down: bool,
    local: &[IpAddr],
) -> FlowInfo {
    let replied = e.status & IPS_SEEN_REPLY != 0;
    let state = if !replied {
        "UNREPLIED"
    } else if e.status & IPS_ASSURED != 0 {
        "ASSURED"
    } else {
        "REPLIED"
    };
    // Without NAT the reply tuple is the original one reversed.
    let snat = e.reply.dst != e.original.src;
    let dnat = e.reply.src != e.original.dst;
    let nat = match (snat, dnat) {
        (false, false) => None,
        (true, false) => Some(format!("source rewritten to {}", e.reply.dst)),
        (false, true) => Some(format!("destination rewritten to {}", e.reply.src)),
        (true, true) => Some(format!(
            "source rewritten to {}, destination to {}",
            e.reply.dst, e.reply.src
        )),
    };
    let mut why: Vec<String> = Vec::new();
    if !replied && peer_down {
        why.push("UNREPLIED while the peer is down: nothing has come back on this flow".into());
    }
    match direction {
        FlowDirection::Outbound => {
            if e.reply.src != endpoint {
                why.push(format!(
                    "replies expected from {}, not the peer's endpoint {endpoint} (stale DNAT)",
                    e.reply.src
                ));
            }
            if !local.contains(&e.reply.dst.ip()) {
                why.push(format!(
                    "replies go to {}, an address this host no longer has (stale SNAT)",
                    e.reply.dst.ip()
                ));
            }
        }
        FlowDirection::Inbound => {
            if !local.contains(&e.reply.src.ip()) {
                why.push(format!(
                    "delivered to {}, an address this host no longer has (stale DNAT)",
                    e.reply.src.ip()
                ));
            }
            if e.reply.dst != endpoint {
                why.push(format!(
                    "replies go to {}, not the peer's endpoint {endpoint} (stale SNAT)",
                    e.reply.dst
                ));
            }
        }
    }
    let suspect = (!why.is_empty()).then(|| why.join("; "));
    FlowInfo {
        direction,
        original: e.original.to_string(),
        reply: e.reply.to_string(),
        state: state.into(),
        timeout_secs: e.timeout_secs,
        nat,
        drop_command: suspect.as_ref().map(|_| drop_command(e)),
        suspect,
    }
}
