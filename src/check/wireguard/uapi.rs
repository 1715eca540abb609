//! The cross-platform userspace API of wireguard-go and boringtun: `get=1\n\n` on `<uapi-dir>/<ifname>.sock`,
//! answered by `key=value` lines and `errno=N` (<https://www.wireguard.com/xplatform/>).
//!
//! Keys are hex in the protocol. A new `public_key=` starts a peer; peer keys may come in any order;
//! `errno` ends the reply and a non-zero value is an error. The interface's own public key is not sent,
//! only its private key: the parser derives the public key (x25519) and drops the private key at once. No
//! private or preshared key is ever stored, logged or reported.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroize;

use super::{Device, Peer, Source};

/// Largest reply read: a device with thousands of peers is well below this.
const MAX_REPLY: u64 = 8 * 1024 * 1024;

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UapiError {
    /// The daemon answered `errno=N` with N != 0.
    #[error("the daemon answered errno={0}")]
    Errno(i64),
    /// A line is not `key=value`, or a value does not parse.
    #[error("line {line}: {why}")]
    Protocol {
        /// 1-based line.
        line: usize,
        /// What was wrong.
        why: String,
    },
    /// The reply ended before `errno=`.
    #[error("reply ended without errno (daemon closed the connection)")]
    Truncated,
}

fn hex32(v: &str) -> Option<[u8; 32]> {
    if v.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in v.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// `1.2.3.4:51820`, `[::1]:51820`, `[fe80::1%2]:51820`; the scope is kept as written.
pub fn parse_endpoint(v: &str) -> Option<String> {
    if let Some(rest) = v.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        let addr = host.split_once('%').map_or(host, |(a, _)| a);
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        port.parse::<u16>().ok()?;
        return Some(v.to_owned());
    }
    let (host, port) = v.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok()?;
    port.parse::<u16>().ok()?;
    Some(v.to_owned())
}

/// `10.0.0.0/24`, `fd00::1/128`.
pub fn parse_allowed_ip(v: &str) -> Option<(IpAddr, u8)> {
    let (ip, cidr) = v.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let cidr: u8 = cidr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (cidr <= max).then_some((ip, cidr))
}

/// Parses a `get=1` reply. `name` is the interface it came from.
pub fn parse(name: &str, text: &str) -> Result<Device, UapiError> {
    let mut p = Reply {
        dev: Device {
            name: name.to_owned(),
            source: Source::Userspace,
            listen_port: None,
            fwmark: None,
            public_key: None,
            peers: Vec::new(),
        },
        handshake_sec: None,
        handshake_nsec: 0,
    };
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| UapiError::Protocol { line: i + 1, why };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("expected key=value, got {line:?}")))?;
        if value.contains('=') {
            return Err(bad(format!("value of {key} contains '='")));
        }
        if key == "errno" {
            let code: i64 = value
                .parse()
                .map_err(|_| bad(format!("errno: {value:?}")))?;
            if code != 0 {
                return Err(UapiError::Errno(code));
            }
            p.finish_peer();
            return Ok(p.dev);
        }
        p.line(key, value).map_err(bad)?;
    }
    Err(UapiError::Truncated)
}

/// A reply being read: the device so far, and the handshake time of the peer being read (its two halves
/// come on separate lines).
struct Reply {
    dev: Device,
    handshake_sec: Option<u64>,
    handshake_nsec: u32,
}

fn number(key: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{key}: not a number: {v:?}"))
}

fn narrow<T: TryFrom<u64>>(key: &str, v: &str) -> Result<T, String> {
    T::try_from(number(key, v)?).map_err(|_| format!("{key}: {v:?}"))
}

impl Reply {
    /// Sets the handshake time of the peer just read. 0 seconds means "never" (the kernel and wireguard-go
    /// both print 0/0 then); a time too far out to represent is treated as never too.
    fn finish_peer(&mut self) {
        if let Some(peer) = self.dev.peers.last_mut() {
            peer.last_handshake = self.handshake_sec.filter(|s| *s > 0).and_then(|s| {
                SystemTime::UNIX_EPOCH
                    .checked_add(Duration::new(s, self.handshake_nsec.min(999_999_999)))
            });
        }
        self.handshake_sec = None;
        self.handshake_nsec = 0;
    }

    /// One `key=value` line after `get=1`.
    fn line(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "private_key" => {
                let mut bytes =
                    hex32(value).ok_or_else(|| "private_key: not 32 hex bytes".to_owned())?;
                let secret = x25519_dalek::StaticSecret::from(bytes);
                bytes.zeroize();
                // `secret` wipes itself on drop, at the end of this arm.
                self.dev.public_key = Some(x25519_dalek::PublicKey::from(&secret).to_bytes());
            }
            "listen_port" => self.dev.listen_port = Some(narrow(key, value)?),
            "fwmark" => self.dev.fwmark = Some(narrow(key, value)?),
            "public_key" => {
                let k = hex32(value).ok_or_else(|| "public_key: not 32 hex bytes".to_owned())?;
                self.finish_peer();
                self.dev.peers.push(Peer::new(k));
            }
            _ => self.peer_line(key, value)?,
        }
        Ok(())
    }

    /// A line about the peer being read.
    fn peer_line(&mut self, key: &str, value: &str) -> Result<(), String> {
        let peer = self
            .dev
            .peers
            .last_mut()
            .ok_or_else(|| format!("{key} before any public_key"))?;
        match key {
            "preshared_key" => {
                let psk =
                    hex32(value).ok_or_else(|| "preshared_key: not 32 hex bytes".to_owned())?;
                peer.has_preshared_key = psk != [0u8; 32];
            }
            "endpoint" => {
                peer.endpoint =
                    Some(parse_endpoint(value).ok_or_else(|| format!("endpoint: {value:?}"))?)
            }
            "allowed_ip" => peer
                .allowed_ips
                .push(parse_allowed_ip(value).ok_or_else(|| format!("allowed_ip: {value:?}"))?),
            "last_handshake_time_sec" => self.handshake_sec = Some(number(key, value)?),
            "last_handshake_time_nsec" => self.handshake_nsec = narrow(key, value)?,
            "rx_bytes" => peer.rx_bytes = number(key, value)?,
            "tx_bytes" => peer.tx_bytes = number(key, value)?,
            "persistent_keepalive_interval" => {
                let v: u16 = narrow(key, value)?;
                peer.persistent_keepalive = (v > 0).then_some(v);
            }
            // protocol_version and keys a newer daemon may add.
            _ => {}
        }
        Ok(())
    }
}

/// Why the socket could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The reply is not valid text.
    #[error("reply is not valid UTF-8")]
    NotUtf8,
    /// The reply could not be parsed.
    #[error("{0}")]
    Uapi(#[from] UapiError),
}

/// Sends `get=1` on a UAPI socket and parses the reply.
pub async fn get(name: &str, socket: &Path, within: std::time::Duration) -> Result<Device, GetError> {
    // A daemon that accepts and never answers must not hold the check (and the next cycles) forever.
    tokio::time::timeout(within, get_unbounded(name, socket))
        .await
        .map_err(|_| {
            GetError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete reply within {} ms", within.as_millis()),
            ))
        })?
}

async fn get_unbounded(name: &str, socket: &Path) -> Result<Device, GetError> {
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    s.write_all(b"get=1\n\n").await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    // The daemon ends its reply with "errno=N\n\n" and keeps the connection open for more requests.
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() as u64 > MAX_REPLY {
            return Err(GetError::Io(std::io::Error::other(
                "reply larger than 8 MiB",
            )));
        }
        let ends = buf.ends_with(b"\n\n");
        if ends && buf.windows(6).any(|w| w == b"errno=") {
            break;
        }
    }
    let text = String::from_utf8(buf).map_err(|_| GetError::NotUtf8)?;
    Ok(parse(name, &text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn endpoints_and_allowed_ips() {
        assert_eq!(
            parse_endpoint("127.0.0.1:51002").as_deref(),
            Some("127.0.0.1:51002")
        );
        assert_eq!(
            parse_endpoint("[::1]:51009").as_deref(),
            Some("[::1]:51009")
        );
        assert_eq!(
            parse_endpoint("[abcd:23::33%2]:51820").as_deref(),
            Some("[abcd:23::33%2]:51820")
        );
        assert_eq!(parse_endpoint("foo"), None);
        assert_eq!(parse_endpoint("1.2.3.4:99999"), None);
        assert_eq!(
            parse_allowed_ip("10.0.0.0/24"),
            Some(("10.0.0.0".parse().unwrap(), 24))
        );
        assert_eq!(parse_allowed_ip("10.0.0.0/33"), None);
        assert_eq!(parse_allowed_ip("foo"), None);
    }

    #[test]
    fn errno_and_truncation() {
        assert_eq!(
            parse("wg0", "errno=2\n\n").unwrap_err(),
            UapiError::Errno(2)
        );
        assert_eq!(
            parse("wg0", "errno=-22\n\n").unwrap_err(),
            UapiError::Errno(-22)
        );
        assert_eq!(
            parse("wg0", "listen_port=1\n").unwrap_err(),
            UapiError::Truncated
        );
        assert_eq!(parse("wg0", "").unwrap_err(), UapiError::Truncated);
        let d = parse("wg0", "listen_port=51820\nerrno=0\n\n").unwrap();
        assert_eq!(d.listen_port, Some(51820));
        assert!(d.peers.is_empty());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC*") {
            let _ = parse("wg0", &s);
        }

        #[test]
        fn parser_never_panics_on_near_misses(s in "((public_key|private_key|preshared_key|endpoint|allowed_ip|last_handshake_time_sec|last_handshake_time_nsec|rx_bytes|tx_bytes|persistent_keepalive_interval|listen_port|fwmark|errno)=[0-9a-f.:/\\[\\]%-]{0,70}\n){0,12}\n?") {
            let _ = parse("wg0", &s);
        }
    }
}
