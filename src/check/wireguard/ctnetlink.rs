//! Conntrack entries of one UDP port over ctnetlink (`NFNL_SUBSYS_CTNETLINK`, `IPCTNL_MSG_CT_GET` dump),
//! with the kernel-side filter (`CTA_FILTER`, Linux 5.8+) so the kernel serialises only the entries of
//! that port: the agent's cost does not grow with the conntrack table.
//!
//! A kernel without `CTA_FILTER` ignores the attribute and dumps the whole table. Every entry received is
//! therefore checked against the filter here; the first one that does not match ends the read at once
//! with [`DumpError::FilterUnsupported`] — no evidence rather than walking a million entries. A dump also
//! stops after [`MAX_ENTRIES`] entries. Needs CAP_NET_ADMIN (every nfnetlink request does).
//!
//! The codec is split from the socket and written against the kernel's own layout
//! (`include/uapi/linux/netfilter/nfnetlink_conntrack.h`): `nlmsghdr`, `nfgenmsg`, then attributes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr as NlAddr, TokioSocket, protocols};

/// At most this many entries are read from one dump (a port's flows, not a table).
pub const MAX_ENTRIES: usize = 1024;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TIMEOUT: u16 = 7;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_F_PROTO_NUM: u32 = 1 << 3;
const CTA_FILTER_F_PROTO_SRC_PORT: u32 = 1 << 4;
const CTA_FILTER_F_PROTO_DST_PORT: u32 = 1 << 5;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_UDP: u8 = 17;

/// `IPS_SEEN_REPLY`: a packet went the other way.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
/// `IPS_ASSURED`: seen both ways long enough to be kept under pressure.
pub const IPS_ASSURED: u32 = 1 << 2;

/// One direction of a flow: `src:sport -> dst:dport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

/// One UDP conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The direction of the first packet.
    pub original: Tuple,
    /// What a reply must look like (after NAT).
    pub reply: Tuple,
    /// `IPS_*` bits.
    pub status: u32,
    /// Seconds until the entry expires unless refreshed.
    pub timeout_secs: u32,
}

/// Which port of the original tuple the dump is filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSide {
    /// Flows this host started from the port (`--orig-port-src`).
    Source,
    /// Flows others started toward the port (`--orig-port-dst`).
    Destination,
}

/// Why a dump gave no evidence.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The kernel ignored `CTA_FILTER` (before Linux 5.8) and began a full-table dump.
    #[error(
        "the kernel does not filter conntrack dumps (CTA_FILTER, Linux 5.8+); not walking the whole table"
    )]
    FilterUnsupported,
    /// Permission denied.
    #[error("conntrack over netlink: permission denied (needs CAP_NET_ADMIN)")]
    Permission,
    /// The dump did not finish in time.
    #[error("conntrack over netlink: no answer within {0:?}")]
    Timeout(Duration),
    /// A message this decoder cannot read.
    #[error("conntrack over netlink: {0}")]
    Malformed(String),
    /// Any other socket error.
    #[error("conntrack over netlink: {0}")]
    Io(#[from] io::Error),
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

fn nested(kind: u16, build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut inner = Vec::new();
    build(&mut inner);
    let mut out = Vec::new();
    push_attr(&mut out, kind | NLA_F_NESTED, &inner);
    out
}

/// The dump request: UDP entries of `family` whose original tuple has `port` on `side`.
pub fn dump_request(v6: bool, port: u16, side: PortSide, seq: u32) -> Vec<u8> {
    let (port_attr, port_flag) = match side {
        PortSide::Source => (CTA_PROTO_SRC_PORT, CTA_FILTER_F_PROTO_SRC_PORT),
        PortSide::Destination => (CTA_PROTO_DST_PORT, CTA_FILTER_F_PROTO_DST_PORT),
    };
    let tuple = nested(CTA_TUPLE_ORIG, |b| {
        b.extend(nested(CTA_TUPLE_PROTO, |p| {
            push_attr(p, CTA_PROTO_NUM, &[IPPROTO_UDP]);
            push_attr(p, port_attr, &port.to_be_bytes());
        }));
    });
    let filter = nested(CTA_FILTER, |b| {
        push_attr(
            b,
            CTA_FILTER_ORIG_FLAGS,
            &(CTA_FILTER_F_PROTO_NUM | port_flag).to_ne_bytes(),
        );
    });
    let body_len = 4 + tuple.len() + filter.len();
    let mut msg = Vec::with_capacity(16 + body_len);
    msg.extend_from_slice(&((16 + body_len) as u32).to_ne_bytes());
    msg.extend_from_slice(&(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.push(if v6 { AF_INET6 } else { AF_INET });
    msg.push(0); // NFNETLINK_V0
    msg.extend_from_slice(&0u16.to_be_bytes());
    msg.extend(tuple);
    msg.extend(filter);
    msg
}

/// Attributes of a buffer: `(type without flags, payload)`. A length that runs past the end is an error.
fn attrs(mut data: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            return Err(format!(
                "attribute {kind} claims {len} bytes, {} left",
                data.len()
            ));
        }
        out.push((kind, &data[4..len]));
        let padded = (len + 3) & !3;
        data = data.get(padded..).unwrap_or(&[]);
    }
    Ok(out)
}

fn find<'a>(list: &[(u16, &'a [u8])], kind: u16) -> Option<&'a [u8]> {
    list.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

fn be16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn ip_of(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

/// `(tuple, protocol number)` from a `CTA_TUPLE_*` payload; `None` for a non-port protocol.
fn tuple_of(data: &[u8]) -> Result<Option<(Tuple, u8)>, String> {
    let top = attrs(data)?;
    let ip = attrs(find(&top, CTA_TUPLE_IP).ok_or("tuple without CTA_TUPLE_IP")?)?;
    let proto = attrs(find(&top, CTA_TUPLE_PROTO).ok_or("tuple without CTA_TUPLE_PROTO")?)?;
    let (s, d) = match (find(&ip, CTA_IP_V4_SRC), find(&ip, CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (s, d),
        _ => (
            find(&ip, CTA_IP_V6_SRC).ok_or("tuple without addresses")?,
            find(&ip, CTA_IP_V6_DST).ok_or("tuple without a destination")?,
        ),
    };
    let (src, dst) = (
        ip_of(s).ok_or("bad source address")?,
        ip_of(d).ok_or("bad destination address")?,
    );
    let num = *find(&proto, CTA_PROTO_NUM)
        .and_then(|v| v.first())
        .ok_or("tuple without CTA_PROTO_NUM")?;
    let (Some(sport), Some(dport)) = (
        find(&proto, CTA_PROTO_SRC_PORT).and_then(be16),
        find(&proto, CTA_PROTO_DST_PORT).and_then(be16),
    ) else {
        return Ok(None);
    };
    Ok(Some((
        Tuple {
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
        },
        num,
    )))
}

/// One `IPCTNL_MSG_CT_NEW` payload (after `nfgenmsg`): the entry, or `None` when it is not a port-based
/// protocol (which a working filter never returns).
pub fn entry_of(data: &[u8]) -> Result<Option<(Entry, u8)>, String> {
    let top = attrs(data)?;
    let orig = tuple_of(find(&top, CTA_TUPLE_ORIG).ok_or("entry without CTA_TUPLE_ORIG")?)?;
    let reply = tuple_of(find(&top, CTA_TUPLE_REPLY).ok_or("entry without CTA_TUPLE_REPLY")?)?;
    let (Some((original, num)), Some((reply, _))) = (orig, reply) else {
        return Ok(None);
    };
    Ok(Some((
        Entry {
            original,
            reply,
            status: find(&top, CTA_STATUS).and_then(be32).unwrap_or(0),
            timeout_secs: find(&top, CTA_TIMEOUT).and_then(be32).unwrap_or(0),
        },
        num,
    )))
}

/// What one datagram of the answer held.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    /// Entries, in order.
    pub entries: Vec<Entry>,
    /// `NLMSG_DONE` was seen.
    pub done: bool,
}

/// Decodes one datagram of a dump's answer, checking each entry against the filter.
pub fn decode_chunk(mut data: &[u8], port: u16, side: PortSide) -> Result<Chunk, DumpError> {
    let mut chunk = Chunk::default();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < 16 || len > data.len() {
            return Err(DumpError::Malformed(format!(
                "message claims {len} bytes, {} left",
                data.len()
            )));
        }
        let body = &data[16..len];
        match kind {
            NLMSG_DONE => {
                chunk.done = true;
                return Ok(chunk);
            }
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_ne_bytes)
                    .unwrap_or(0);
                return match -code {
                    0 => {
                        chunk.done = true;
                        Ok(chunk)
                    }
                    1 | 13 => Err(DumpError::Permission),
                    e => Err(DumpError::Io(io::Error::from_raw_os_error(e))),
                };
            }
            k if k == (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW) => {
                let attrs = body.get(4..).ok_or_else(|| {
                    DumpError::Malformed("conntrack message without nfgenmsg".into())
                })?;
                let entry = entry_of(attrs).map_err(DumpError::Malformed)?;
                match entry {
                    Some((e, IPPROTO_UDP))
                        if match side {
                            PortSide::Source => e.original.src.port() == port,
                            PortSide::Destination => e.original.dst.port() == port,
                        } =>
                    {
                        chunk.entries.push(e)
                    }
                    // Not what was asked for: the kernel is walking the whole table.
                    _ => return Err(DumpError::FilterUnsupported),
                }
            }
            _ => {}
        }
        let padded = (len + 3) & !3;
        data = data.get(padded..).unwrap_or(&[]);
    }
    Ok(chunk)
}

/// The UDP entries whose original tuple has `port` on `side`, for IPv4 or IPv6, within `within`.
pub async fn dump(
    v6: bool,
    port: u16,
    side: PortSide,
    within: Duration,
) -> Result<Vec<Entry>, DumpError> {
    let read = async {
        let mut socket = TokioSocket::new(protocols::NETLINK_NETFILTER)?;
        socket.socket_mut().bind_auto()?;
        socket.socket_mut().connect(&NlAddr::new(0, 0))?;
        socket.send(&dump_request(v6, port, side, 1)).await?;
        let mut entries = Vec::new();
        loop {
            let (data, _) = socket.recv_from_full().await?;
            if data.is_empty() {
                return Ok(entries);
            }
            let chunk = decode_chunk(&data, port, side)?;
            entries.extend(chunk.entries);
            if chunk.done || entries.len() >= MAX_ENTRIES {
                entries.truncate(MAX_ENTRIES);
                return Ok(entries);
            }
        }
    };
    match tokio::time::timeout(within, read).await {
        Ok(Err(DumpError::Io(e)))
            if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(1) =>
        {
            Err(DumpError::Permission)
        }
        Ok(r) => r,
        Err(_) => Err(DumpError::Timeout(within)),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Kernel-layout messages, built the way `ctnetlink_fill_info` lays them out.
    use super::*;

    fn tuple_attr(kind: u16, t: &Tuple, proto: u8) -> Vec<u8> {
        nested(kind, |b| {
            b.extend(nested(CTA_TUPLE_IP, |ip| match (t.src.ip(), t.dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    push_attr(ip, CTA_IP_V4_SRC, &s.octets());
                    push_attr(ip, CTA_IP_V4_DST, &d.octets());
                }
                (s, d) => {
                    let v6 = |a: IpAddr| match a {
                        IpAddr::V6(a) => a.octets(),
                        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    };
                    push_attr(ip, CTA_IP_V6_SRC, &v6(s));
                    push_attr(ip, CTA_IP_V6_DST, &v6(d));
                }
            }));
            b.extend(nested(CTA_TUPLE_PROTO, |p| {
                push_attr(p, CTA_PROTO_NUM, &[proto]);
                push_attr(p, CTA_PROTO_SRC_PORT, &t.src.port().to_be_bytes());
                push_attr(p, CTA_PROTO_DST_PORT, &t.dst.port().to_be_bytes());
            }));
        })
    }

    /// One `IPCTNL_MSG_CT_NEW` message as the kernel sends it in a dump.
    pub fn entry_message(e: &Entry, proto: u8) -> Vec<u8> {
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend(tuple_attr(CTA_TUPLE_ORIG, &e.original, proto));
        body.extend(tuple_attr(CTA_TUPLE_REPLY, &e.reply, proto));
        push_attr(&mut body, CTA_STATUS, &e.status.to_be_bytes());
        push_attr(&mut body, CTA_TIMEOUT, &e.timeout_secs.to_be_bytes());
        message(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW, &body)
    }

    /// `NLMSG_DONE`.
    pub fn done() -> Vec<u8> {
        message(NLMSG_DONE, &0i32.to_ne_bytes())
    }

    /// `NLMSG_ERROR` with `-errno`.
    pub fn error(errno: i32) -> Vec<u8> {
        message(NLMSG_ERROR, &(-errno).to_ne_bytes())
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize((m.len() + 3) & !3, 0);
        m
    }
}
