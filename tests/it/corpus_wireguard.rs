//! Conformance of the WireGuard UAPI parser on real replies: wireguard-go captures and wgctrl-go's test
//! replies, compared with what `wg show … dump` (Debian wireguard-tools 1.0.20210914) printed for the same
//! state and with wgctrl-go's expectations. Peers come in random order from wireguard-go: compared as sets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::support::corpus_text;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hvprobe::check::Status;
use hvprobe::check::wireguard::uapi::{UapiError, parse};
use hvprobe::check::wireguard::{
    Device, InterfaceObs, Peer, PeerState, Source, WireguardConfig, evaluate_interface,
};

/// A peer as `wg show dump` prints it, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    key: String,
    endpoint: Option<String>,
    allowed: Vec<String>,
    handshake: u64,
    rx: u64,
    tx: u64,
    keepalive: Option<u16>,
}

fn row_of(p: &Peer) -> Row {
    Row {
        key: p.key_b64(),
        endpoint: p.endpoint.clone(),
        allowed: p
            .allowed_ips
            .iter()
            .map(|(ip, c)| format!("{ip}/{c}"))
            .collect(),
        handshake: p.last_handshake.map_or(0, |t| {
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
        }),
        rx: p.rx_bytes,
        tx: p.tx_bytes,
        keepalive: p.persistent_keepalive,
    }
}

/// `wg show <if> dump` (no interface column) or `wg show all dump` lines of one interface.
/// Returns (public key, listen port, fwmark) of the interface line and the peer rows.
fn dump(text: &str, iface: Option<&str>) -> ((String, u16, Option<u32>), Vec<Row>) {
    let mut head = None;
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f: Vec<&str> = line.split('\t').collect();
        if let Some(name) = iface {
            if f[0] != name {
                continue;
            }
            f.remove(0);
        }
        let none = |s: &str| (s != "(none)" && s != "off").then(|| s.to_owned());
        if head.is_none() {
            let fwmark =
                none(f[3]).map(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).unwrap());
            head = Some((f[1].to_owned(), f[2].parse().unwrap(), fwmark));
            continue;
        }
        rows.push(Row {
            key: f[0].to_owned(),
            endpoint: none(f[2]),
            allowed: none(f[3])
                .map(|a| a.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            handshake: f[4].parse().unwrap(),
            rx: f[5].parse().unwrap(),
            tx: f[6].parse().unwrap(),
            keepalive: none(f[7]).map(|k| k.parse().unwrap()),
        });
    }
    rows.sort();
    (head.unwrap(), rows)
}

fn compare(dev: &Device, text: &str, iface: Option<&str>) {
    let ((pubkey, port, fwmark), rows) = dump(text, iface);
    assert_eq!(
        dev.public_key.map(|k| B64.encode(k)),
        Some(pubkey),
        "{}: derived public key",
        dev.name
    );
    assert_eq!(dev.listen_port, Some(port));
    assert_eq!(dev.fwmark, fwmark);
    let mut ours: Vec<Row> = dev.peers.iter().map(row_of).collect();
    ours.sort();
    assert_eq!(ours, rows, "{}", dev.name);
}

#[test]
fn live_wireguard_go_replies_match_wg_show_dump() {
    let wga = parse("wga", &corpus_text("wireguard/live/uapi_get_wga.txt")).unwrap();
    let wgb = parse("wgb", &corpus_text("wireguard/live/uapi_get_wgb.txt")).unwrap();
    assert_eq!(wga.peers.len(), 3);
    compare(
        &wga,
        &corpus_text("wireguard/live/wg_show_wga_dump.txt"),
        None,
    );
    compare(
        &wgb,
        &corpus_text("wireguard/live/wg_show_wgb_dump.txt"),
        None,
    );
    let all = corpus_text("wireguard/live/wg_show_all_dump.txt");
    compare(&wga, &all, Some("wga"));
    compare(&wgb, &all, Some("wgb"));
    // wg renders the same replies the same way when served on a fake socket.
    let oracle = corpus_text("wireguard/uapi/wg_dump_oracle_results.txt");
    let section = oracle
        .split("### input: live/uapi_get_wga.txt")
        .nth(1)
        .unwrap();
    let section = section.split("###").next().unwrap();
    let section: String = section.lines().skip(1).map(|l| format!("{l}\n")).collect();
    compare(&wga, &section, None);
}

#[test]
fn wgctrl_reply_matches_wgctrl_and_wg() {
    let dev = parse("fakewg0", &corpus_text("wireguard/uapi/wgctrl_ok_get.txt")).unwrap();
    let exp = serde_json::from_str::<serde_json::Value>(&corpus_text(
        "wireguard/uapi/wgctrl_ok_get.expected.json",
    ))
    .unwrap();
    let e = &exp["expected"];
    assert_eq!(
        dev.public_key.map(hex),
        e["public_key_derived"]["hex"].as_str().map(str::to_owned)
    );
    assert_eq!(dev.listen_port.map(u64::from), e["listen_port"].as_u64());
    assert_eq!(dev.fwmark.map(u64::from), e["fwmark"].as_u64());
    let expected: BTreeMap<String, &serde_json::Value> = e["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["public_key"]["hex"].as_str().unwrap().to_owned(), p))
        .collect();
    assert_eq!(dev.peers.len(), expected.len());
    for p in &dev.peers {
        let x = expected[&hex(p.public_key)];
        let allowed: Vec<String> = p
            .allowed_ips
            .iter()
            .map(|(ip, c)| format!("{ip}/{c}"))
            .collect();
        let want: Vec<&str> = x["allowed_ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(allowed, want);
        assert_eq!(p.rx_bytes, x["rx_bytes"].as_u64().unwrap());
        assert_eq!(p.tx_bytes, x["tx_bytes"].as_u64().unwrap());
        assert_eq!(
            u64::from(p.persistent_keepalive.unwrap_or(0)),
            x["persistent_keepalive_interval_s"].as_u64().unwrap_or(0)
        );
        let ep = x["endpoint"].as_str().unwrap();
        assert!(
            ep.starts_with(p.endpoint.as_deref().unwrap()),
            "{ep} vs {:?}",
            p.endpoint
        );
        // The key itself is never kept: only whether there is one.
        let psk_set = x["preshared_key"]["hex"]
            .as_str()
            .is_some_and(|h| h != "0".repeat(64));
        assert_eq!(p.has_preshared_key, psk_set);
    }
    compare(
        &dev,
        &corpus_text("wireguard/uapi/wgctrl_ok_get.wg_dump_oracle.tsv"),
        None,
    );
}

fn hex(k: [u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn malformed_replies_are_rejected_like_wgctrl_and_wg() {
    let exp = serde_json::from_str::<serde_json::Value>(&corpus_text(
        "wireguard/uapi/wgctrl_err.expected.json",
    ))
    .unwrap();
    for f in exp["files"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        let err = parse("fakewg0", &corpus_text(&format!("wireguard/uapi/{f}"))).unwrap_err();
        if f.contains("errno_2") {
            assert_eq!(err, UapiError::Errno(2));
        } else {
            assert!(
                matches!(err, UapiError::Protocol { .. } | UapiError::Truncated),
                "{f}: {err}"
            );
        }
    }
    // Replies of wireguard-go to a bad request and to an unknown operation (empty: it hangs up).
    assert_eq!(
        parse(
            "wga",
            &corpus_text("wireguard/live/uapi_set_invalid_key.txt")
        )
        .unwrap_err(),
        UapiError::Errno(-22)
    );
    assert_eq!(
        parse("wga", &corpus_text("wireguard/live/uapi_bogus_op.txt")).unwrap_err(),
        UapiError::Truncated
    );
}

#[test]
fn no_private_or_preshared_key_survives_parsing() {
    let text = corpus_text("wireguard/live/uapi_get_wga.txt");
    let dev = parse("wga", &text).unwrap();
    let debug = format!("{dev:?}");
    for line in text
        .lines()
        .filter(|l| l.starts_with("private_key=") || l.starts_with("preshared_key="))
    {
        let hexkey = line.split_once('=').unwrap().1;
        if hexkey.chars().all(|c| c == '0') {
            continue;
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hexkey[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert!(
            !debug.contains(
                &format!("{:?}", &bytes[..8])
                    .trim_matches(['[', ']'])
                    .to_string()
            ),
            "key bytes kept"
        );
        assert!(!debug.contains(&B64.encode(&bytes)));
    }
}

/// Exporters show a never-connected peer as "1.7e9 seconds since the handshake" or skip it. The dump of
/// prometheus_wireguard_exporter's issue 19 has 13 peers that never handshook: here they are `never`,
/// with no age, and the interface is CRIT.
#[test]
fn never_connected_peers_of_exporter_issue_19_are_never_not_ancient() {
    let text = corpus_text("wireguard/dump/mindflavor_issue19.tsv");
    let (_, rows) = dump(&text, Some("wg0"));
    assert_eq!(rows.len(), 17);
    let peers: Vec<Peer> = rows
        .iter()
        .map(|r| {
            let mut p = Peer::new(B64.decode(&r.key).unwrap().try_into().unwrap());
            p.endpoint = r.endpoint.clone();
            p.allowed_ips = r
                .allowed
                .iter()
                .map(|a| {
                    let (ip, c) = a.split_once('/').unwrap();
                    (ip.parse().unwrap(), c.parse().unwrap())
                })
                .collect();
            p.last_handshake = (r.handshake > 0)
                .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(r.handshake));
            p.rx_bytes = r.rx;
            p.tx_bytes = r.tx;
            p
        })
        .collect();
    // The dump was taken around the last handshake (2019-11-26); judge it as of then.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_574_770_800);
    let obs = InterfaceObs {
        device: Device {
            name: "wg0".into(),
            source: Source::Kernel,
            listen_port: Some(51820),
            fwmark: None,
            public_key: None,
            peers,
        },
        up: true,
        probes: Default::default(),
        one_way: Default::default(),
        conntrack: Default::default(),
    };
    let info = evaluate_interface(&obs, now, &[], &WireguardConfig::default());
    let never: Vec<_> = info
        .peers
        .iter()
        .filter(|p| p.state == PeerState::Never)
        .collect();
    assert_eq!(never.len(), 13);
    assert!(never.iter().all(|p| p.latest_handshake_age_secs.is_none()));
    // Of the four that did, the one whose handshake is 269 s old is stale (reject-after is 180 s).
    let count = |s: PeerState| info.peers.iter().filter(|p| p.state == s).count();
    assert_eq!((count(PeerState::Ok), count(PeerState::Stale)), (3, 1));
    assert_eq!(info.status, Status::Crit);
    assert!(
        info.summary.starts_with("wg0: 14/17 peers down: "),
        "{}",
        info.summary
    );
    assert!(
        info.summary.ends_with(", +6 more"),
        "a long list is cut: {}",
        info.summary
    );
    // Transfer counters above 2^32 are kept whole.
    assert!(info.peers.iter().any(|p| p.rx_bytes == 75_066_288_152));
}
