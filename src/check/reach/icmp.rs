//! ICMP echo to many targets on one socket per address family.
//!
//! The unprivileged datagram socket (`net.ipv4.ping_group_range`) first, a raw one when that is refused and
//! the process has CAP_NET_RAW; neither is UNKNOWN naming both, never OK. On the datagram socket the kernel
//! sets the identifier (the socket's port, a fresh socket and so a fresh identifier every cycle) and hands
//! back only echo replies; `IP_RECVERR` makes it queue the ICMP errors a router sends back (host or network
//! unreachable, administratively prohibited), read from the error queue as they come, so such a target is
//! unreachable at once, not after a timeout. On a raw socket every ICMP message arrives: only an echo
//! reply from the target with this probe's identifier, sequence number and token is a reply; an error that
//! quotes one of our echoes is that probe's failure, never a reply. RTT is timed here (send to receive).
//! The receive buffer is enlarged (`SO_RCVBUFFORCE` with CAP_NET_ADMIN, else `SO_RCVBUF`) so replies to a
//! thousand echoes in flight are not dropped by the socket.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::check::{Failure, UnknownReason};

/// The receive buffer asked for.
const RCVBUF: usize = 1 << 20;
/// The echo payload: an 8-byte token of this cycle, 8 bytes of padding.
const PAYLOAD: usize = 16;

/// Why one echo got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoFailure {
    /// No reply within the timeout.
    TimedOut,
    /// A router said the network is unreachable (ICMP type 3 code 0), or there is no route here.
    NetUnreachable,
    /// A router said the host is unreachable.
    HostUnreachable,
    /// A filter rejected it (ICMP administratively prohibited).
    AdminProhibited,
    /// Port unreachable (an echo rejected with `icmp port-unreachable`, nftables' default `reject`).
    PortUnreachable,
    /// The TTL ran out on the way (a loop).
    TtlExceeded,
    /// This host could not send it (no route, or its own firewall).
    SendFailed,
    /// Another ICMP error.
    Other,
}

impl EchoFailure {
    /// The class shown and sent to the collector.
    pub fn class(self) -> &'static str {
        match self {
            EchoFailure::TimedOut => "icmp.timed_out",
            EchoFailure::NetUnreachable => "icmp.net_unreachable",
            EchoFailure::HostUnreachable => "icmp.host_unreachable",
            EchoFailure::AdminProhibited => "icmp.admin_prohibited",
            EchoFailure::PortUnreachable => "icmp.port_unreachable",
            EchoFailure::TtlExceeded => "icmp.ttl_exceeded",
            EchoFailure::SendFailed => "icmp.send_failed",
            EchoFailure::Other => "icmp.error",
        }
    }

    /// From an ICMPv4 (type, code) or ICMPv6 (type, code) error.
    fn of(v6: bool, ty: u8, code: u8) -> EchoFailure {
        match (v6, ty, code) {
            (false, 3, 0 | 6 | 11) => EchoFailure::NetUnreachable,
            (false, 3, 1 | 7 | 12) => EchoFailure::HostUnreachable,
            (false, 3, 3) => EchoFailure::PortUnreachable,
            (false, 3, 9 | 10 | 13) => EchoFailure::AdminProhibited,
            (false, 11, _) => EchoFailure::TtlExceeded,
            (true, 1, 0) => EchoFailure::NetUnreachable,
            (true, 1, 1 | 5 | 6) => EchoFailure::AdminProhibited,
            (true, 1, 3) => EchoFailure::HostUnreachable,
            (true, 1, 4) => EchoFailure::PortUnreachable,
            (true, 3, _) => EchoFailure::TtlExceeded,
            _ => EchoFailure::Other,
        }
    }
}

/// What came back about one of our echoes: a reply (with the token it carried) or an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heard {
    ident: u16,
    seq: u16,
    /// A reply's token; `None` for an error.
    token: Option<[u8; 8]>,
    result: Result<(), EchoFailure>,
}

/// One echo's fate: its RTT, or why not.
pub type Echo = Result<Duration, EchoFailure>;

/// An open ICMP socket of one family.
pub struct Pinger {
    sock: UdpSocket,
    raw: bool,
    v6: bool,
}

impl Pinger {
    /// Opens the datagram socket, or the raw one; UNKNOWN `no-permission` when neither may be opened.
    pub fn open(v6: bool) -> Result<Pinger, Failure> {
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
            Ok(s) => (s, false),
            Err(dgram) => match Socket::new(domain, Type::RAW, Some(proto)) {
                Ok(s) => (s, true),
                Err(raw) => {
                    return Err(Failure::new(
                        UnknownReason::NoPermission,
                        format!(
                            "cannot open an ICMP{} socket: datagram: {dgram} (the process's group must be in net.ipv4.ping_group_range); raw: {raw} (needs CAP_NET_RAW)",
                            if v6 { "v6" } else { "" }
                        ),
                    ));
                }
            },
        };
        let err = |what: &str, e: &dyn std::fmt::Display| {
            Failure::new(UnknownReason::Error, format!("ICMP socket: {what}: {e}"))
        };
        sock.set_nonblocking(true)
            .map_err(|e| err("non-blocking", &e))?;
        if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
            // Capped at net.core.rmem_max without CAP_NET_ADMIN; what the kernel grants is still more.
            let _ = sock.set_recv_buffer_size(RCVBUF);
        }
        if !raw {
            let set = if v6 {
                setsockopt(&sock, sockopt::Ipv6RecvErr, &true)
            } else {
                setsockopt(&sock, sockopt::Ipv4RecvErr, &true)
            };
            set.map_err(|e| err("IP_RECVERR", &e))?;
        }
        let std: std::net::UdpSocket = sock.into();
        let sock = UdpSocket::from_std(std).map_err(|e| err("register", &e))?;
        Ok(Pinger { sock, raw, v6 })
    }

    /// Whether this is the raw socket (CAP_NET_RAW) rather than the datagram one.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Sends `rounds` echoes to every target, `spacing` apart, and waits up to `timeout` after the last for
    /// the replies. Returns, per target, one [`Echo`] per round.
    pub async fn ping(
        &self,
        targets: &[IpAddr],
        rounds: u32,
        spacing: Duration,
        timeout: Duration,
    ) -> Vec<Vec<Echo>> {
        let n = targets.len();
        let mut out: Vec<Vec<Option<Echo>>> = vec![vec![None; rounds as usize]; n];
        if n == 0 {
            return Vec::new();
        }
        let token: [u8; 8] = fastrand::u64(..).to_be_bytes();
        let seq0 = fastrand::u16(..);
        // Each echo has its own sequence number (and, on a raw socket, its own identifier).
        let mut sent_at: HashMap<u16, (usize, usize, Instant, u16)> = HashMap::new();
        let start = Instant::now();
        let mut open = n * rounds as usize;
        let mut round = 0u32;
        let mut buf = vec![0u8; 2048];
        let mut deadline = start + spacing * rounds.saturating_sub(1) + timeout;
        while open > 0 {
            let next_round = (round < rounds).then(|| start + spacing * round);
            if let Some(at) = next_round
                && Instant::now() >= at
            {
                for (t, ip) in targets.iter().enumerate() {
                    let idx = (round as usize) * n + t;
                    let seq = seq0.wrapping_add(idx as u16);
                    let ident = if self.raw { fastrand::u16(..) } else { 0 };
                    let pkt = echo(self.v6, ident, seq, &token);
                    let now = Instant::now();
                    let to = SocketAddr::new(*ip, 0);
                    let mut sent = self.sock.send_to(&pkt, to).await;
                    if sent.is_err() {
                        // With IP_RECVERR the socket also keeps the latest ICMP error (about an earlier
                        // echo, to another target) as a pending error, and the next send returns it
                        // instead of sending. Sent again: only an error of this send remains.
                        sent = self.sock.send_to(&pkt, to).await;
                    }
                    match sent {
                        Ok(_) => {
                            sent_at.insert(seq, (t, round as usize, now, ident));
                        }
                        Err(e) => {
                            let f = match e.raw_os_error() {
                                Some(nix::libc::ENETUNREACH) => EchoFailure::NetUnreachable,
                                Some(nix::libc::EHOSTUNREACH) => EchoFailure::HostUnreachable,
                                _ => EchoFailure::SendFailed,
                            };
                            out[t][round as usize] = Some(Err(f));
                            open -= 1;
                        }
                    }
                }
                round += 1;
                deadline = deadline.max(Instant::now() + timeout);
                continue;
            }
            let wake = next_round.unwrap_or(deadline).min(deadline);
            let ready = tokio::select! {
                r = self.sock.ready(Interest::READABLE | Interest::ERROR) => r.ok(),
                _ = tokio::time::sleep_until(wake) => None,
            };
            if ready.is_none() && Instant::now() >= deadline && round >= rounds {
                break;
            }
            let Some(ready) = ready else { continue };
            // What came back, and from whom (`None`: an error from the queue, about our own packet).
            let mut got: Vec<(Heard, Option<IpAddr>)> = Vec::new();
            if ready.is_error() {
                let _ = self.sock.try_io(Interest::ERROR, || {
                    drain_errqueue(self.sock.as_raw_fd(), self.v6, &mut got);
                    Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                });
            }
            if ready.is_readable() {
                // Bounded: a pending socket error (IP_RECVERR) is returned once per error.
                for _ in 0..4096 {
                    match self.sock.try_recv_from(&mut buf) {
                        Ok((len, from)) => {
                            if let Some(h) = parse(self.raw, self.v6, &buf[..len]) {
                                got.push((h, Some(from.ip())));
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    }
                }
            }
            let now = Instant::now();
            for (h, from) in got {
                let Some(&(t, r, at, our_ident)) = sent_at.get(&h.seq) else {
                    continue;
                };
                if self.raw && h.ident != our_ident {
                    continue;
                }
                let echo = match h.result {
                    // A reply counts only from the target and with this cycle's token.
                    Ok(()) if from == Some(targets[t]) && h.token == Some(token) => {
                        Ok(now.duration_since(at))
                    }
                    Ok(()) => continue,
                    Err(f) => Err(f),
                };
                if out[t][r].is_none() {
                    out[t][r] = Some(echo);
                    open -= 1;
                }
                sent_at.remove(&h.seq);
            }
        }
        out.into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|e| e.unwrap_or(Err(EchoFailure::TimedOut)))
                    .collect()
            })
            .collect()
    }
}

/// An echo request: type 8 (ICMPv6: 128), code 0, identifier, sequence, the token. The checksum is
/// computed for ICMPv4 (the kernel computes it for ICMPv6, and rewrites it on datagram sockets).
fn echo(v6: bool, ident: u16, seq: u16, token: &[u8; 8]) -> [u8; 8 + PAYLOAD] {
    let mut p = [0u8; 8 + PAYLOAD];
    p[0] = if v6 { 128 } else { 8 };
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(token);
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received ICMP message says about one of our echoes; `None` for anything else (someone else's
/// traffic, a malformed message).
fn parse(raw: bool, v6: bool, buf: &[u8]) -> Option<Heard> {
    // Raw ICMPv4 sockets deliver the IP header; ICMPv6 and datagram sockets do not.
    let icmp = if raw && !v6 {
        let ihl = usize::from(buf.first()? & 0x0f) * 4;
        buf.get(ihl..)?
    } else {
        buf
    };
    let (reply, echo_req, errors): (u8, u8, &[u8]) = if v6 {
        (129, 128, &[1, 3])
    } else {
        (0, 8, &[3, 11])
    };
    let ty = *icmp.first()?;
    let code = *icmp.get(1)?;
    if ty == reply {
        let ident = u16::from_be_bytes([*icmp.get(4)?, *icmp.get(5)?]);
        let seq = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]);
        let token: [u8; 8] = icmp.get(8..16)?.try_into().ok()?;
        return Some(Heard {
            ident,
            seq,
            token: Some(token),
            result: Ok(()),
        });
    }
    if !errors.contains(&ty) {
        return None;
    }
    // An error quotes the datagram it is about: its IP header, then (at least) 8 bytes of our echo.
    let quoted = icmp.get(8..)?;
    let inner = if v6 {
        quoted.get(40..)?
    } else {
        let ihl = usize::from(quoted.first()? & 0x0f) * 4;
        quoted.get(ihl..)?
    };
    if *inner.first()? != echo_req {
        return None;
    }
    let ident = u16::from_be_bytes([*inner.get(4)?, *inner.get(5)?]);
    let seq = u16::from_be_bytes([*inner.get(6)?, *inner.get(7)?]);
    Some(Heard {
        ident,
        seq,
        token: None,
        result: Err(EchoFailure::of(v6, ty, code)),
    })
}

/// Reads every queued ICMP error of a datagram socket (`MSG_ERRQUEUE`): the echo it is about (our own
/// packet, as sent) and the `sock_extended_err` saying what came back.
fn drain_errqueue(
    fd: std::os::fd::RawFd,
    v6: bool,
    got: &mut Vec<(Heard, Option<IpAddr>)>,
) {
    for _ in 0..4096 {
        let mut data = [0u8; 64];
        let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
        let (len, failure) = {
            let mut iov = [IoSliceMut::new(&mut data)];
            let Ok(msg) = recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            ) else {
                return;
            };
            let mut failure = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    let ee = match c {
                        ControlMessageOwned::Ipv4RecvErr(ee, _) => ee,
                        ControlMessageOwned::Ipv6RecvErr(ee, _) => ee,
                        _ => continue,
                    };
                    failure = Some(
                        if ee.ee_origin == nix::libc::SO_EE_ORIGIN_ICMP
                            || ee.ee_origin == nix::libc::SO_EE_ORIGIN_ICMP6
                        {
                            EchoFailure::of(v6, ee.ee_type, ee.ee_code)
                        } else {
                            EchoFailure::SendFailed
                        },
                    );
                }
            }
            (msg.bytes, failure)
        };
        let (Some(f), true) = (failure, len >= 8) else {
            continue;
        };
        let heard = Heard {
            ident: u16::from_be_bytes([data[4], data[5]]),
            seq: u16::from_be_bytes([data[6], data[7]]),
            token: None,
            result: Err(f),
        };
        got.push((heard, None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let p = echo(false, 0x1234, 7, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!((p[0], p[6], p[7]), (8, 0, 7));
    }

    #[test]
    fn replies_and_quoted_errors_are_told_apart() {
        // A raw IPv4 reply: a 20-byte IP header, then type 0.
        let mut reply = vec![0x45u8; 1];
        reply.extend([0u8; 19]);
        let mut icmp = echo(false, 9, 5, &[7; 8]).to_vec();
        icmp[0] = 0;
        reply.extend(&icmp);
        let heard = |token, result| Heard {
            ident: 9,
            seq: 5,
            token,
            result,
        };
        assert_eq!(parse(true, false, &reply), Some(heard(Some([7; 8]), Ok(()))));
        // A host-unreachable quoting our echo is that echo's failure, never a reply.
        let mut err = vec![0x45u8];
        err.extend([0u8; 19]);
        err.extend([3, 1, 0, 0, 0, 0, 0, 0]);
        err.push(0x45);
        err.extend([0u8; 19]);
        err.extend(&echo(false, 9, 5, &[7; 8])[..8]);
        assert_eq!(
            parse(true, false, &err),
            Some(heard(None, Err(EchoFailure::HostUnreachable)))
        );
        // Someone else's echo request seen on a raw socket, and garbage: nothing.
        let mut other = vec![0x45u8];
        other.extend([0u8; 19]);
        other.extend(echo(false, 1, 1, &[0; 8]));
        assert_eq!(parse(true, false, &other), None);
        assert_eq!(parse(true, false, &[0x4f]), None);
        assert_eq!(parse(false, false, &[]), None);
    }
}
