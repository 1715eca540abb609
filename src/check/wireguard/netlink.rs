//! Netlink: the links and addresses of this network namespace (RTM_GETLINK, RTM_GETADDR, no privilege
//! needed) and kernel WireGuard devices (generic netlink family `wireguard`, `WG_CMD_GET_DEVICE`, needs
//! CAP_NET_ADMIN).
//!
//! Decoding is split from the socket so it can be tested on kernel-format messages built with the
//! crates' own types (there is no kernel WireGuard module on the test machines). The kernel splits a
//! large device over several messages, repeating a peer whose allowed IPs did not fit: peers are merged
//! by public key.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::GenlCtrl;
use netlink_packet_generic::ctrl::GenlCtrlCmd;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_wireguard::{
    WireguardAllowedIpAttr, WireguardAttribute, WireguardCmd, WireguardMessage,
    WireguardPeerAttribute,
};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr as NlAddr, TokioSocket, protocols};

use super::{Device, Peer, Source};

/// A network interface of this namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// `IFLA_INFO_KIND`: `wireguard` for the kernel module, `tun` for wireguard-go.
    pub kind: Option<String>,
}

/// A link from an RTM_NEWLINK message.
pub fn link_from_message(m: &LinkMessage) -> Option<Link> {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    let kind = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(InfoKind::Wireguard) => Some("wireguard".to_owned()),
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    });
    Some(Link {
        index: m.header.index,
        name,
        up: m.header.flags.contains(LinkFlags::Up),
        kind,
    })
}

/// A peer endpoint as `wg` prints it (`[fe80::1%2]:51820` keeps the scope).
fn endpoint_text(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => {
            format!("[{}%{}]:{}", v6.ip(), v6.scope_id(), v6.port())
        }
        other => other.to_string(),
    }
}

/// Builds a device from the `WG_CMD_GET_DEVICE` messages of one dump.
pub fn device_from_messages(
    name: &str,
    msgs: impl IntoIterator<Item = WireguardMessage>,
) -> Device {
    let mut dev = Device {
        name: name.to_owned(),
        source: Source::Kernel,
        listen_port: None,
        fwmark: None,
        public_key: None,
        peers: Vec::new(),
    };
    for msg in msgs {
        for attr in msg.attributes {
            match attr {
                WireguardAttribute::ListenPort(p) => dev.listen_port = Some(p),
                WireguardAttribute::Fwmark(f) => dev.fwmark = (f != 0).then_some(f),
                WireguardAttribute::PublicKey(k) => dev.public_key = Some(k),
                WireguardAttribute::Peers(peers) => {
                    for p in peers {
                        merge_peer(&mut dev.peers, p.0);
                    }
                }
                // The private key is never kept; names and indexes are known already.
                _ => {}
            }
        }
    }
    dev
}

fn merge_peer(peers: &mut Vec<Peer>, attrs: Vec<WireguardPeerAttribute>) {
    let Some(key) = attrs.iter().find_map(|a| match a {
        WireguardPeerAttribute::PublicKey(k) => Some(*k),
        _ => None,
    }) else {
        return;
    };
    let idx = match peers.iter().position(|p| p.public_key == key) {
        Some(i) => i,
        None => {
            peers.push(Peer::new(key));
            peers.len() - 1
        }
    };
    let peer = &mut peers[idx];
    for a in attrs {
        match a {
            WireguardPeerAttribute::PresharedKey(k) => peer.has_preshared_key = k != [0u8; 32],
            WireguardPeerAttribute::Endpoint(e) => peer.endpoint = Some(endpoint_text(&e)),
            WireguardPeerAttribute::PersistentKeepalive(k) => {
                peer.persistent_keepalive = (k > 0).then_some(k)
            }
            WireguardPeerAttribute::LastHandshake(t) => {
                peer.last_handshake = (t.seconds > 0).then(|| {
                    SystemTime::UNIX_EPOCH
                        + Duration::new(
                            t.seconds as u64,
                            t.nano_seconds.clamp(0, 999_999_999) as u32,
                        )
                })
            }
            WireguardPeerAttribute::RxBytes(b) => peer.rx_bytes = b,
            WireguardPeerAttribute::TxBytes(b) => peer.tx_bytes = b,
            WireguardPeerAttribute::AllowedIps(ips) => {
                for ip in ips {
                    let addr = ip.0.iter().find_map(|a| match a {
                        WireguardAllowedIpAttr::IpAddr(a) => Some(*a),
                        _ => None,
                    });
                    let cidr = ip.0.iter().find_map(|a| match a {
                        WireguardAllowedIpAttr::Cidr(c) => Some(*c),
                        _ => None,
                    });
                    if let (Some(a), Some(c)) = (addr, cidr)
                        && !peer.allowed_ips.contains(&(a, c))
                    {
                        peer.allowed_ips.push((a, c));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Splits a datagram into netlink messages and decodes them.
pub fn decode_all<T>(data: &[u8]) -> io::Result<Vec<NetlinkMessage<T>>>
where
    T: NetlinkDeserializable,
{
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let msg = NetlinkMessage::<T>::deserialize(&data[offset..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = msg.header.length as usize;
        if len == 0 {
            break;
        }
        out.push(msg);
        offset += (len + 3) & !3;
    }
    Ok(out)
}

/// Sends one request and collects the inner messages of its answer (a dump, or a single reply).
async fn transact<T>(protocol: isize, mut msg: NetlinkMessage<T>, dump: bool) -> io::Result<Vec<T>>
where
    T: NetlinkSerializable + NetlinkDeserializable,
{
    let mut socket = TokioSocket::new(protocol)?;
    socket.socket_mut().bind_auto()?;
    socket.socket_mut().connect(&NlAddr::new(0, 0))?;
    msg.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf).await?;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().await?;
        if data.is_empty() {
            return Ok(out);
        }
        for m in decode_all::<T>(&data)? {
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => match e.code {
                    None => return Ok(out), // the ACK after a single reply
                    Some(_) => return Err(e.to_io()),
                },
                // A reply to a non-dump request is followed by an ACK: keep reading until it comes.
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
        }
    }
}

/// Every link of this network namespace.
pub async fn list_links() -> io::Result<Vec<Link>> {
    let msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(LinkMessage::default())),
    );
    let replies = transact(protocols::NETLINK_ROUTE, msg, true).await?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => link_from_message(m),
            _ => None,
        })
        .collect())
}

/// Every address of this network namespace (IPv4 and IPv6): what stale-NAT evidence is judged against.
pub async fn list_addresses() -> io::Result<Vec<IpAddr>> {
    let msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::GetAddress(AddressMessage::default())),
    );
    let replies = transact(protocols::NETLINK_ROUTE, msg, true).await?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewAddress(m) => address_of(m),
            _ => None,
        })
        .collect())
}

/// The local address of an RTM_NEWADDR message (`IFA_LOCAL`, else `IFA_ADDRESS`: on a point-to-point
/// link the latter is the far end).
pub fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// The id of the `wireguard` generic netlink family; `None` when the kernel has no WireGuard module.
pub async fn wireguard_family() -> io::Result<Option<u16>> {
    let msg = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".to_owned())],
    }));
    match transact(protocols::NETLINK_GENERIC, msg, false).await {
        Ok(replies) => Ok(replies.iter().find_map(|r| {
            r.payload.nlas.iter().find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
        })),
        Err(e) if e.raw_os_error() == Some(2) => Ok(None), // ENOENT: no such family
        Err(e) => Err(e),
    }
}

/// A kernel WireGuard device by name.
pub async fn get_device(family: u16, name: &str) -> io::Result<Device> {
    let mut genl = GenlMessage::from_payload(WireguardMessage {
        cmd: WireguardCmd::GetDevice,
        attributes: vec![WireguardAttribute::IfName(name.to_owned())],
    });
    genl.set_resolved_family_id(family);
    let replies = transact(protocols::NETLINK_GENERIC, NetlinkMessage::from(genl), true).await?;
    Ok(device_from_messages(
        name,
        replies.into_iter().map(|g| g.payload),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkHeader;
    use netlink_packet_wireguard::{WireguardAllowedIp, WireguardPeer, WireguardTimeSpec};
    use std::net::IpAddr;

    fn allowed(ip: &str, cidr: u8) -> WireguardAllowedIp {
        let ip: IpAddr = ip.parse().unwrap();
        WireguardAllowedIp(vec![
            WireguardAllowedIpAttr::Family(if ip.is_ipv4() {
                netlink_packet_wireguard::WireguardAddressFamily::Ipv4
            } else {
                netlink_packet_wireguard::WireguardAddressFamily::Ipv6
            }),
            WireguardAllowedIpAttr::IpAddr(ip),
            WireguardAllowedIpAttr::Cidr(cidr),
        ])
    }

    /// Serializes messages as the kernel would send them, in one datagram.
    fn kernel_datagram(msgs: Vec<WireguardMessage>, family: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, payload) in msgs.into_iter().enumerate() {
            let mut genl = GenlMessage::from_payload(payload);
            genl.set_resolved_family_id(family);
            let mut nl = NetlinkMessage::from(genl);
            nl.header.sequence_number = seq as u32;
            nl.header.flags = netlink_packet_core::NLM_F_MULTIPART;
            nl.finalize();
            let mut buf = vec![0u8; nl.buffer_len()];
            nl.serialize(&mut buf);
            while buf.len() % 4 != 0 {
                buf.push(0);
            }
            out.extend(buf);
        }
        out
    }

    #[test]
    fn decodes_a_kernel_dump_split_over_messages() {
        let key_a = [1u8; 32];
        let key_b = [2u8; 32];
        let first = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![
                WireguardAttribute::IfIndex(7),
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::PrivateKey([9u8; 32]),
                WireguardAttribute::PublicKey([3u8; 32]),
                WireguardAttribute::ListenPort(51820),
                WireguardAttribute::Fwmark(0),
                WireguardAttribute::Peers(vec![
                    WireguardPeer(vec![
                        WireguardPeerAttribute::PublicKey(key_a),
                        WireguardPeerAttribute::PresharedKey([0u8; 32]),
                        WireguardPeerAttribute::Endpoint("192.0.2.1:51820".parse().unwrap()),
                        WireguardPeerAttribute::PersistentKeepalive(25),
                        WireguardPeerAttribute::LastHandshake(WireguardTimeSpec {
                            seconds: 1_795_238_639,
                            nano_seconds: 872_357_624,
                        }),
                        WireguardPeerAttribute::RxBytes(124),
                        WireguardPeerAttribute::TxBytes(1352),
                        WireguardPeerAttribute::AllowedIps(vec![allowed("10.0.0.7", 32)]),
                    ]),
                    WireguardPeer(vec![
                        WireguardPeerAttribute::PublicKey(key_b),
                        WireguardPeerAttribute::PresharedKey([5u8; 32]),
                        WireguardPeerAttribute::LastHandshake(WireguardTimeSpec::default()),
                        WireguardPeerAttribute::AllowedIps(vec![allowed("10.0.1.0", 24)]),
                    ]),
                ]),
            ],
        };
        // The kernel continues peer B's allowed IPs in the next message of the dump.
        let second = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![
                WireguardAttribute::IfIndex(7),
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::Peers(vec![WireguardPeer(vec![
                    WireguardPeerAttribute::PublicKey(key_b),
                    WireguardPeerAttribute::AllowedIps(vec![allowed("fd00::9", 128)]),
                ])]),
            ],
        };
        let bytes = kernel_datagram(vec![first, second], 0x1d);
        let msgs = decode_all::<GenlMessage<WireguardMessage>>(&bytes).unwrap();
        assert_eq!(msgs.len(), 2);
        let payloads = msgs.into_iter().filter_map(|m| match m.payload {
            NetlinkPayload::InnerMessage(g) => Some(g.payload),
            _ => None,
        });
        let dev = device_from_messages("wg0", payloads);
        assert_eq!(dev.listen_port, Some(51820));
        assert_eq!(dev.fwmark, None);
        assert_eq!(dev.public_key, Some([3u8; 32]));
        assert_eq!(dev.peers.len(), 2);
        let a = &dev.peers[0];
        assert_eq!(a.endpoint.as_deref(), Some("192.0.2.1:51820"));
        assert_eq!(a.persistent_keepalive, Some(25));
        assert_eq!((a.rx_bytes, a.tx_bytes), (124, 1352));
        assert!(!a.has_preshared_key);
        assert_eq!(
            a.last_handshake,
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_795_238_639, 872_357_624))
        );
        let b = &dev.peers[1];
        assert!(b.has_preshared_key);
        assert_eq!(b.last_handshake, None, "a zero timespec is never");
        assert_eq!(
            b.allowed_ips,
            vec![
                ("10.0.1.0".parse().unwrap(), 24),
                ("fd00::9".parse().unwrap(), 128)
            ]
        );
        // Nothing of the private key survives decoding.
        assert!(!format!("{dev:?}").contains("9, 9, 9"));
    }

    #[test]
    fn decodes_a_link_dump() {
        let header = LinkHeader {
            index: 4,
            flags: LinkFlags::Up | LinkFlags::LowerUp,
            ..LinkHeader::default()
        };
        let mut m = LinkMessage::default();
        m.header = header;
        m.attributes = vec![
            LinkAttribute::IfName("wg0".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Wireguard)]),
        ];
        let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewLink(m));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        let msgs = decode_all::<RouteNetlinkMessage>(&buf).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(lm)) = &msgs[0].payload
        else {
            panic!("{msgs:?}")
        };
        assert_eq!(
            link_from_message(lm),
            Some(Link {
                index: 4,
                name: "wg0".into(),
                up: true,
                kind: Some("wireguard".into())
            })
        );
    }

    #[test]
    fn a_short_datagram_is_an_error() {
        assert!(decode_all::<GenlMessage<WireguardMessage>>(&[1, 2, 3]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(msgs) = decode_all::<GenlMessage<WireguardMessage>>(&bytes) {
                let _ = device_from_messages("wg0", msgs.into_iter().filter_map(|m| match m.payload {
                    NetlinkPayload::InnerMessage(g) => Some(g.payload),
                    _ => None,
                }));
            }
            let _ = decode_all::<RouteNetlinkMessage>(&bytes);
        }
    }
}
