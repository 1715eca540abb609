//! Peer states, interface and check verdicts, one-way tracking, config.

use super::*;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::check::{Status, UnknownReason};

const NOW: u64 = 1_795_238_651;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn peer(n: u8, ip: &str, handshake_age: Option<u64>) -> Peer {
    let mut p = Peer::new([n; 32]);
    p.allowed_ips.push((ip.parse().unwrap(), 32));
    p.last_handshake = handshake_age.map(|a| now() - Duration::from_secs(a));
    p
}

fn iface(peers: Vec<Peer>) -> InterfaceObs {
    InterfaceObs {
        device: Device {
            name: "wg0".into(),
            source: Source::Kernel,
            listen_port: Some(51820),
            fwmark: None,
            public_key: Some([7u8; 32]),
            peers,
        },
        up: true,
        probes: HashMap::new(),
        one_way: HashMap::new(),
        conntrack: HashMap::new(),
    }
}

#[test]
fn peer_states() {
    let cfg = WireguardConfig::default();
    let st = |p: &Peer, probe, one_way| {
        let v = peer_state(p, now(), probe, one_way, &cfg);
        (v.state, v.handshake_age_secs, v.clock_skew)
    };
    let fresh = peer(1, "10.0.0.1", Some(30));
    let old = peer(2, "10.0.0.2", Some(412));
    let never = peer(3, "10.0.0.3", None);
    assert_eq!(st(&fresh, None, None).0, PeerState::Ok);
    assert_eq!(st(&old, None, None), (PeerState::Stale, Some(412), false));
    assert_eq!(st(&never, None, None), (PeerState::Never, None, false));
    // The echo decides: an idle peer with an old handshake that answers is fine.
    assert_eq!(
        st(&old, Some(Probe::Reply(Duration::from_millis(3))), None).0,
        PeerState::Ok
    );
    assert_eq!(
        st(&fresh, Some(Probe::Lost), None).0,
        PeerState::Unreachable
    );
    assert_eq!(st(&never, Some(Probe::Lost), None).0, PeerState::Never);
    assert_eq!(
        st(&fresh, None, Some(Duration::from_secs(45))).0,
        PeerState::OneWay
    );
    assert_eq!(
        st(&fresh, None, Some(Duration::from_secs(10))).0,
        PeerState::Ok
    );
    // A handshake in the future: clamped and flagged, not fresh forever nor absurdly stale.
    let mut future = peer(4, "10.0.0.4", None);
    future.last_handshake = Some(now() + Duration::from_secs(3600));
    assert_eq!(st(&future, None, None), (PeerState::Ok, Some(0), true));
}

#[test]
fn interface_verdicts() {
    let cfg = WireguardConfig::default();
    let healthy = evaluate_interface(&iface(vec![peer(1, "10.0.0.1", Some(5))]), now(), &[], &cfg);
    assert_eq!(
        (healthy.status, healthy.summary.as_str()),
        (Status::Ok, "wg0: 1/1 peers ok")
    );

    let mut peers: Vec<Peer> = (10..22)
        .map(|n| peer(n, &format!("10.0.0.{n}"), Some(5)))
        .collect();
    peers[0] = peer(7, "10.0.0.7", Some(412));
    peers[1] = peer(9, "10.0.0.9", None);
    let i = evaluate_interface(&iface(peers), now(), &[], &cfg);
    assert_eq!(i.status, Status::Warn);
    let k7 = &B64.encode([7u8; 32])[..8];
    let k9 = &B64.encode([9u8; 32])[..8];
    assert_eq!(
        i.summary,
        format!("wg0: 2/12 peers down: 10.0.0.7 ({k7}, stale 412s), 10.0.0.9 ({k9}, never)")
    );
    assert_eq!(
        i.peers[1].latest_handshake_age_secs, None,
        "never is null, not 1.7e9 seconds"
    );

    let half = evaluate_interface(
        &iface(vec![
            peer(1, "10.0.0.1", Some(5)),
            peer(2, "10.0.0.2", None),
        ]),
        now(),
        &[],
        &cfg,
    );
    assert_eq!(half.status, Status::Crit, "{}", half.summary);

    let mut down = iface(vec![peer(1, "10.0.0.1", Some(5))]);
    down.up = false;
    let d = evaluate_interface(&down, now(), &[], &cfg);
    assert_eq!((d.status, d.summary.as_str()), (Status::Crit, "wg0 down"));
}

#[test]
fn check_verdicts() {
    let cfg = WireguardConfig::default();
    let obs = Observation {
        now: now(),
        interfaces: vec![],
        missing: vec![],
        problems: vec![],
        notes: vec![],
        local_addrs: vec![],
    };
    let out = evaluate(&obs, &cfg);
    assert_eq!(
        (out.status, out.summary.as_str()),
        (Status::Ok, "no wireguard interfaces")
    );
    let missing = evaluate(
        &Observation {
            missing: vec!["wg1".into()],
            ..obs.clone()
        },
        &cfg,
    );
    assert_eq!(
        (missing.status, missing.summary.as_str()),
        (Status::Crit, "wg1 missing")
    );
    let perm = evaluate(
        &Observation {
            problems: vec!["wg0: netlink permission denied (needs CAP_NET_ADMIN)".into()],
            ..obs
        },
        &cfg,
    );
    assert_eq!(perm.status, Status::Unknown);
    assert_eq!(perm.reason, Some(UnknownReason::NoPermission));
}

#[test]
fn one_way_needs_tx_without_rx_over_time() {
    let mut t = OneWayTracker::default();
    let t0 = Instant::now();
    let mut dev = iface(vec![peer(1, "10.0.0.1", Some(5))]).device;
    dev.peers[0].tx_bytes = 100;
    dev.peers[0].rx_bytes = 100;
    assert!(t.observe(&dev, t0).is_empty());
    dev.peers[0].tx_bytes = 400;
    let w = t.observe(&dev, t0 + Duration::from_secs(10));
    assert_eq!(w.get(&[1u8; 32]), Some(&Duration::from_secs(10)));
    dev.peers[0].tx_bytes = 700;
    let w = t.observe(&dev, t0 + Duration::from_secs(40));
    assert_eq!(w.get(&[1u8; 32]), Some(&Duration::from_secs(40)));
    dev.peers[0].rx_bytes = 200;
    assert!(
        t.observe(&dev, t0 + Duration::from_secs(50)).is_empty(),
        "rx resumed"
    );
}

#[test]
fn config_validation() {
    let mut p = Problems::default();
    WireguardConfig {
        timeout_ms: 1000,
        probe_targets: [("nope".to_owned(), "x".to_owned())].into(),
        interfaces: vec!["a/b".into()],
        ..WireguardConfig::default()
    }
    .validate(&mut p);
    let t = p.to_string();
    for k in ["timeout-ms", "probe-targets", "interfaces"] {
        assert!(t.contains(k), "{k}: {t}");
    }
}

mod conntrack {
    //! The ctnetlink codec on kernel-layout messages, and the judgement of each entry.
    use super::super::ctnetlink::testing::{done, entry_message, error};
    use super::super::ctnetlink::{
        DumpError, Entry, IPS_ASSURED, IPS_SEEN_REPLY, PortSide, Tuple, decode_chunk, dump_request,
    };
    use super::super::evidence::{FlowDirection, assess, direction_of, endpoint_addr};
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, SocketAddr};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn entry(orig: (&str, &str), reply: (&str, &str), status: u32) -> Entry {
        Entry {
            original: Tuple {
                src: sa(orig.0),
                dst: sa(orig.1),
            },
            reply: Tuple {
                src: sa(reply.0),
                dst: sa(reply.1),
            },
            status,
            timeout_secs: 27,
        }
    }

    fn unreplied() -> Entry {
        entry(
            ("10.0.0.1:51820", "198.51.100.14:51820"),
            ("198.51.100.14:51820", "10.0.0.1:51820"),
            0,
        )
    }

    #[test]
    fn the_request_asks_the_kernel_to_filter_on_protocol_and_port() {
        let m = dump_request(false, 51820, PortSide::Source, 7);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0101, "CTNETLINK | CT_GET");
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x0301, "REQUEST | DUMP");
        assert_eq!(m[16], 2, "AF_INET");
        let tail = &m[m.len() - 8..];
        assert_eq!(u16::from_ne_bytes([tail[2], tail[3]]), 1, "CTA_FILTER_ORIG_FLAGS");
        assert_eq!(
            u32::from_ne_bytes(tail[4..8].try_into().unwrap()),
            (1 << 3) | (1 << 4),
            "PROTO_NUM | PROTO_SRC_PORT"
        );
        assert!(m.windows(2).any(|w| w == 51820u16.to_be_bytes()), "port in network order");
        let d = dump_request(true, 51820, PortSide::Destination, 7);
        assert_eq!(d[16], 10, "AF_INET6");
        let tail = &d[d.len() - 4..];
        assert_eq!(u32::from_ne_bytes(tail.try_into().unwrap()), (1 << 3) | (1 << 5));
    }

    #[test]
    fn entries_decode_from_the_kernel_layout() {
        let e = unreplied();
        let nat = entry(
            ("10.0.0.1:51820", "198.51.100.14:51820"),
            ("198.51.100.14:51820", "10.0.0.9:1024"),
            IPS_SEEN_REPLY | IPS_ASSURED,
        );
        let mut data = entry_message(&e, 17);
        data.extend(entry_message(&nat, 17));
        data.extend(done());
        let chunk = decode_chunk(&data, 51820, PortSide::Source).unwrap();
        assert!(chunk.done);
        assert_eq!(chunk.entries, vec![e, nat]);
        let v6 = entry(
            ("[2001:db8::1]:51820", "[2001:db8::2]:4000"),
            ("[2001:db8::2]:4000", "[2001:db8::1]:51820"),
            0,
        );
        let chunk = decode_chunk(&entry_message(&v6, 17), 51820, PortSide::Source).unwrap();
        assert_eq!((chunk.entries, chunk.done), (vec![v6], false));
    }

    #[test]
    fn a_kernel_that_ignores_the_filter_ends_the_read_at_the_first_foreign_entry() {
        let other_port = entry(
            ("10.0.0.1:53", "10.0.0.2:53"),
            ("10.0.0.2:53", "10.0.0.1:53"),
            0,
        );
        let mut data = entry_message(&unreplied(), 17);
        data.extend(entry_message(&other_port, 17));
        assert!(matches!(
            decode_chunk(&data, 51820, PortSide::Source),
            Err(DumpError::FilterUnsupported)
        ));
        // A TCP entry on the same port is just as foreign.
        assert!(matches!(
            decode_chunk(&entry_message(&unreplied(), 6), 51820, PortSide::Source),
            Err(DumpError::FilterUnsupported)
        ));
        // The filtered side matters: this entry has 51820 as source, not destination.
        let fine = entry(
            ("198.51.100.14:4000", "10.0.0.1:51820"),
            ("10.0.0.1:51820", "198.51.100.14:4000"),
            0,
        );
        assert!(decode_chunk(&entry_message(&fine, 17), 51820, PortSide::Destination).is_ok());
        assert!(decode_chunk(&entry_message(&fine, 17), 51820, PortSide::Source).is_err());
    }

    #[test]
    fn errors_are_named_and_garbage_is_malformed() {
        assert!(matches!(
            decode_chunk(&error(1), 1, PortSide::Source),
            Err(DumpError::Permission)
        ));
        match decode_chunk(&error(95), 1, PortSide::Source) {
            Err(DumpError::Io(e)) => assert_eq!(e.raw_os_error(), Some(95)),
            other => panic!("{other:?}"),
        }
        let mut m = entry_message(&unreplied(), 17);
        m.truncate(m.len() - 9);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        assert!(matches!(
            decode_chunk(&m, 51820, PortSide::Source),
            Err(DumpError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn no_bytes_make_the_decoder_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_chunk(&data, 51820, PortSide::Source);
        }

        #[test]
        fn no_corruption_of_a_real_message_makes_it_panic(at in 0usize..200, byte in any::<u8>()) {
            let mut m = entry_message(&unreplied(), 17);
            let i = at % m.len();
            m[i] = byte;
            let _ = decode_chunk(&m, 51820, PortSide::Source);
        }
    }

    #[test]
    fn endpoints_parse_as_wg_prints_them() {
        assert_eq!(endpoint_addr("198.51.100.14:51820"), Some(sa("198.51.100.14:51820")));
        assert_eq!(endpoint_addr("[fe80::1%2]:51820"), Some(sa("[fe80::1]:51820")));
        assert_eq!(endpoint_addr("nonsense"), None);
    }

    #[test]
    fn entries_are_matched_to_the_flow_in_either_direction() {
        let ep = sa("198.51.100.14:51820");
        assert_eq!(
            direction_of(&unreplied(), 51820, ep),
            Some(FlowDirection::Outbound)
        );
        let inbound = entry(
            ("198.51.100.14:51820", "10.0.0.1:51820"),
            ("10.0.0.1:51820", "198.51.100.14:51820"),
            IPS_SEEN_REPLY,
        );
        assert_eq!(direction_of(&inbound, 51820, ep), Some(FlowDirection::Inbound));
        assert_eq!(direction_of(&unreplied(), 51820, sa("198.51.100.15:51820")), None);
        assert_eq!(direction_of(&unreplied(), 51821, ep), None);
    }

    fn local() -> Vec<IpAddr> {
        vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()]
    }

    #[test]
    fn an_unreplied_flow_is_suspect_only_while_the_peer_is_down() {
        let ep = sa("198.51.100.14:51820");
        let f = assess(&unreplied(), FlowDirection::Outbound, ep, true, &local());
        assert_eq!(f.state, "UNREPLIED");
        assert!(f.suspect.as_deref().unwrap().contains("UNREPLIED while the peer is down"));
        assert_eq!(
            f.drop_command.as_deref(),
            Some(
                "conntrack -D -p udp --orig-src 10.0.0.1 --orig-dst 198.51.100.14 --orig-port-src 51820 --orig-port-dst 51820"
            )
        );
        let up = assess(&unreplied(), FlowDirection::Outbound, ep, false, &local());
        assert_eq!((up.suspect, up.drop_command), (None, None));
        let v6 = entry(
            ("[2001:db8::1]:51820", "[2001:db8::2]:4000"),
            ("[2001:db8::2]:4000", "[2001:db8::1]:51820"),
            0,
        );
        let local6 = vec!["2001:db8::1".parse().unwrap()];
        let f = assess(&v6, FlowDirection::Outbound, sa("[2001:db8::2]:4000"), true, &local6);
        assert!(f.drop_command.unwrap().starts_with("conntrack -D -f ipv6 -p udp"));
    }

    #[test]
    fn a_replied_flow_without_nat_is_not_suspect() {
        let ok = entry(
            ("10.0.0.1:51820", "198.51.100.14:51820"),
            ("198.51.100.14:51820", "10.0.0.1:51820"),
            IPS_SEEN_REPLY | IPS_ASSURED,
        );
        let f = assess(&ok, FlowDirection::Outbound, sa("198.51.100.14:51820"), true, &local());
        assert_eq!((f.state.as_str(), f.nat, f.suspect), ("ASSURED", None, None));
    }

    #[test]
    fn stale_nat_is_named_by_the_address_that_no_longer_fits() {
        let ep = sa("198.51.100.14:51820");
        // SNAT to an address this host no longer has.
        let snat = entry(
            ("10.0.0.1:51820", "198.51.100.14:51820"),
            ("198.51.100.14:51820", "10.0.0.5:51820"),
            IPS_SEEN_REPLY,
        );
        let f = assess(&snat, FlowDirection::Outbound, ep, true, &local());
        assert_eq!(f.nat.as_deref(), Some("source rewritten to 10.0.0.5:51820"));
        assert!(f.suspect.unwrap().contains("replies go to 10.0.0.5, an address this host no longer has"));
        // The same SNAT to an address the host has is fine.
        let mut still = local();
        still.push("10.0.0.5".parse().unwrap());
        assert_eq!(assess(&snat, FlowDirection::Outbound, ep, true, &still).suspect, None);
        // DNAT: replies expected from somewhere else than the endpoint.
        let dnat = entry(
            ("10.0.0.1:51820", "198.51.100.14:51820"),
            ("203.0.113.7:51820", "10.0.0.1:51820"),
            IPS_SEEN_REPLY,
        );
        let f = assess(&dnat, FlowDirection::Outbound, ep, true, &local());
        assert!(f.suspect.unwrap().contains("replies expected from 203.0.113.7:51820, not the peer's endpoint"));
        // Inbound, delivered to an address this host no longer has.
        let inbound = entry(
            ("198.51.100.14:51820", "192.0.2.1:51820"),
            ("10.0.0.7:51820", "198.51.100.14:51820"),
            IPS_SEEN_REPLY,
        );
        let f = assess(&inbound, FlowDirection::Inbound, ep, true, &local());
        assert!(f.suspect.unwrap().contains("delivered to 10.0.0.7"));
    }

    #[test]
    fn the_summary_carries_the_hint_of_the_first_suspect_flow() {
        let cfg = WireguardConfig::default();
        let mut b = peer(2, "10.200.0.2", None);
        b.endpoint = Some("198.51.100.14:51820".into());
        let mut i = iface(vec![peer(1, "10.200.0.1", Some(5)), b]);
        i.conntrack
            .insert([2; 32], vec![(unreplied(), FlowDirection::Outbound)]);
        let info = evaluate_interface(&i, now(), &local(), &cfg);
        assert!(
            info.summary.contains("stale UDP conntrack toward 10.200.0.2 (AgICAgIC): 10.0.0.1:51820 -> 198.51.100.14:51820 [UNREPLIED]"),
            "{}",
            info.summary
        );
        assert!(info.summary.ends_with("--orig-port-src 51820 --orig-port-dst 51820"), "{}", info.summary);
        assert_eq!(info.peers[1].conntrack.len(), 1);
        // The details go over the wire and back unchanged.
        let d = WireguardDetails {
            interfaces: vec![info],
            missing: vec![],
            notes: vec![],
        };
        assert_eq!(wire::from_pb(&wire::to_pb(&d)), d);
    }
}
