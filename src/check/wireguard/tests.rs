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
    let healthy = evaluate_interface(&iface(vec![peer(1, "10.0.0.1", Some(5))]), now(), &cfg);
    assert_eq!(
        (healthy.status, healthy.summary.as_str()),
        (Status::Ok, "wg0: 1/1 peers ok")
    );

    let mut peers: Vec<Peer> = (10..22)
        .map(|n| peer(n, &format!("10.0.0.{n}"), Some(5)))
        .collect();
    peers[0] = peer(7, "10.0.0.7", Some(412));
    peers[1] = peer(9, "10.0.0.9", None);
    let i = evaluate_interface(&iface(peers), now(), &cfg);
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
        &cfg,
    );
    assert_eq!(half.status, Status::Crit, "{}", half.summary);

    let mut down = iface(vec![peer(1, "10.0.0.1", Some(5))]);
    down.up = false;
    let d = evaluate_interface(&down, now(), &cfg);
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
