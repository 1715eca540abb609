//! A WireGuard device as read from the kernel (netlink) or a userspace implementation (UAPI).

use std::net::IpAddr;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

/// Where a device's state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The kernel module, over netlink.
    Kernel,
    /// A userspace implementation, over its UAPI socket.
    Userspace,
}

/// A WireGuard device as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Interface name.
    pub name: String,
    /// Kernel or userspace.
    pub source: Source,
    /// UDP listen port.
    pub listen_port: Option<u16>,
    /// Firewall mark, when set.
    pub fwmark: Option<u32>,
    /// The interface's own public key.
    pub public_key: Option<[u8; 32]>,
    /// Peers in the order the source gave them.
    pub peers: Vec<Peer>,
}

/// A peer as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Public key.
    pub public_key: [u8; 32],
    /// Whether a preshared key is set (the key itself is never kept).
    pub has_preshared_key: bool,
    /// Endpoint as printed by `wg` (`1.2.3.4:51820`, `[fe80::1%2]:51820`).
    pub endpoint: Option<String>,
    /// Allowed IPs.
    pub allowed_ips: Vec<(IpAddr, u8)>,
    /// Latest handshake, wall-clock; `None` when never.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive interval, when on.
    pub persistent_keepalive: Option<u16>,
}

impl Peer {
    /// A peer with nothing but its key.
    pub fn new(public_key: [u8; 32]) -> Peer {
        Peer {
            public_key,
            has_preshared_key: false,
            endpoint: None,
            allowed_ips: Vec::new(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            persistent_keepalive: None,
        }
    }

    /// Public key in base64, as `wg` shows it.
    pub fn key_b64(&self) -> String {
        B64.encode(self.public_key)
    }
}
