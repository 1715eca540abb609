//! Conntrack evidence for broken WireGuard peers (issue 14), on real flows: wireguard-go interfaces in
//! network namespaces, an nftables ruleset that makes conntrack track them, and `conntrack -L` from
//! conntrack-tools as the oracle for what the kernel holds. hvprobe reads the entries over ctnetlink.
//!
//! The star: `a` (listen 51001) in `ns_a` peers with `b` (51002, over 10.98.1.0/24) and `c` (51003, over
//! 10.98.2.0/24), each in its own namespace. Everything is removed when a test ends, passing or failing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::process::Command;

use crate::support::{Netns, WgGo, check_of, ifname, json_of, ns_sh, require_bin, sh};

struct Star {
    a: WgGo,
    b: WgGo,
    c: WgGo,
    /// The veth of `ns_a` toward `c`.
    va_c: String,
    ns_a: Netns,
    ns_b: Netns,
    ns_c: Netns,
}

fn star() -> Star {
    require_bin("nft", "nftables");
    require_bin("conntrack", "conntrack");
    let ns_a = Netns::new("hpcta");
    let ns_b = Netns::new("hpctb");
    let ns_c = Netns::new("hpctc");
    let (va_b, vb, va_c, vc) = (ifname("v"), ifname("v"), ifname("v"), ifname("v"));
    for (va, vx, ns_x, net) in [(&va_b, &vb, &ns_b, "1"), (&va_c, &vc, &ns_c, "2")] {
        sh(&[
            "ip", "link", "add", "name", va, "netns", &ns_a.name, "type", "veth", "peer", "name",
            vx, "netns", &ns_x.name,
        ]);
        ns_a.ip(&["addr", "add", &format!("10.98.{net}.1/24"), "dev", va]);
        ns_a.ip(&["link", "set", va, "up"]);
        ns_x.ip(&["addr", "add", &format!("10.98.{net}.2/24"), "dev", vx]);
        ns_x.ip(&["link", "set", vx, "up"]);
    }
    // Conntrack tracks a namespace's flows once a rule there needs it.
    nft(
        &ns_a,
        "table inet hvtrack {
           chain out { type filter hook output priority 0; ct state new counter; }
           chain in { type filter hook input priority 0; ct state new counter; }
         }",
    );
    let a = WgGo::start(&ns_a, &ifname("a"), 51001);
    let b = WgGo::start(&ns_b, &ifname("b"), 51002);
    let c = WgGo::start(&ns_c, &ifname("c"), 51003);
    a.add_peer(&ns_a, &b.public_key, "10.98.1.2:51002", "10.201.0.2/32");
    a.add_peer(&ns_a, &c.public_key, "10.98.2.2:51003", "10.201.0.3/32");
    b.add_peer(&ns_b, &a.public_key, "10.98.1.1:51001", "10.201.0.1/32");
    c.add_peer(&ns_c, &a.public_key, "10.98.2.1:51001", "10.201.0.1/32");
    ns_a.ip(&["addr", "add", "10.201.0.1/32", "dev", &a.name]);
    ns_a.ip(&["link", "set", &a.name, "up"]);
    for other in ["10.201.0.2/32", "10.201.0.3/32"] {
        ns_a.ip(&["route", "add", other, "dev", &a.name]);
    }
    for (ns, w, me) in [(&ns_b, &b, "10.201.0.2/32"), (&ns_c, &c, "10.201.0.3/32")] {
        ns.ip(&["addr", "add", me, "dev", &w.name]);
        ns.ip(&["link", "set", &w.name, "up"]);
        ns.ip(&["route", "add", "10.201.0.1/32", "dev", &w.name]);
    }
    Star {
        a,
        b,
        c,
        va_c,
        ns_a,
        ns_b,
        ns_c,
    }
}

/// Loads an nftables ruleset into a namespace.
fn nft(ns: &Netns, ruleset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rules.nft");
    std::fs::write(&p, ruleset).unwrap();
    ns_sh(ns, &["nft", "-f", p.to_str().unwrap()]);
}

/// Drops every WireGuard packet arriving at a peer: its side of the flow never answers.
fn drop_inbound(ns: &Netns, port: u16) {
    nft(
        ns,
        &format!(
            "table inet hvdrop {{\n chain in {{ type filter hook input priority -10; udp dport {port} drop; }}\n}}"
        ),
    );
}

/// One echo through the tunnel; whether it was answered.
fn ping(ns: &Netns, ip: &str) -> bool {
    ns.cmd("ping")
        .args(["-c", "1", "-W", "2", ip])
        .output()
        .unwrap()
        .status
        .success()
}

/// `conntrack -L` in a namespace for the UDP flows from port 51001 (the oracle).
fn conntrack_list(ns: &Netns) -> String {
    let out = ns
        .cmd("conntrack")
        .args(["-L", "-p", "udp", "--orig-port-src", "51001"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Star {
    fn check(&self) -> (i32, serde_json::Value) {
        let out = self
            .ns_a
            .cmd(env!("CARGO_BIN_EXE_hvprobe"))
            .args(["check", "--check", "wireguard", "--format", "json"])
            .output()
            .unwrap();
        (out.status.code().unwrap(), json_of(&out))
    }

    fn peer(&self, doc: &serde_json::Value, key: &str) -> serde_json::Value {
        let i = check_of(doc, "wireguard")["details"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == self.a.name.as_str())
            .unwrap_or_else(|| panic!("{} not in {doc}", self.a.name))
            .clone();
        i["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["public_key"] == key)
            .unwrap_or_else(|| panic!("peer {key} not in {i}"))
            .clone()
    }
}

/// The entry of a peer's flow that this host started.
fn outbound(peer: &serde_json::Value) -> serde_json::Value {
    peer["conntrack"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["direction"] == "outbound")
        .unwrap_or_else(|| panic!("no outbound flow in {peer}"))
        .clone()
}

fn summary(doc: &serde_json::Value) -> String {
    check_of(doc, "wireguard")["summary"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_flow_dropped_on_the_far_side_is_unreplied_and_named_with_the_command_that_drops_it() {
    let s = star();
    drop_inbound(&s.ns_b, 51002);
    assert!(ping(&s.ns_a, "10.201.0.3"), "the healthy peer answers");
    assert!(!ping(&s.ns_a, "10.201.0.2"), "b's side drops everything");
    let (code, doc) = s.check();
    assert_eq!(code, 2, "{doc}");

    let b = s.peer(&doc, &s.b.public_key);
    assert_ne!(b["state"], "ok", "{b}");
    let out = outbound(&b);
    assert_eq!(
        out["original"], "10.98.1.1:51001 -> 10.98.1.2:51002",
        "{out}"
    );
    assert_eq!(out["reply"], "10.98.1.2:51002 -> 10.98.1.1:51001", "{out}");
    assert_eq!(out["state"], "UNREPLIED", "{out}");
    assert!(out["nat"].is_null(), "{out}");
    assert!(
        out["suspect"].as_str().unwrap().contains("UNREPLIED"),
        "{out}"
    );
    let cmd = "conntrack -D -p udp --orig-src 10.98.1.1 --orig-dst 10.98.1.2 --orig-port-src 51001 --orig-port-dst 51002";
    assert_eq!(out["drop_command"], cmd, "{out}");
    let sum = summary(&doc);
    assert!(
        sum.contains("stale UDP conntrack toward 10.201.0.2"),
        "{sum}"
    );
    assert!(sum.contains(cmd), "{sum}");

    // The healthy peer carries no evidence at all (nothing is read for peers that are ok).
    let c = s.peer(&doc, &s.c.public_key);
    assert_eq!(c["state"], "ok", "{c}");
    assert_eq!(c["conntrack"].as_array().unwrap().len(), 0, "{c}");

    // The kernel agrees, and the check only observed: the entry is still there.
    let listed = conntrack_list(&s.ns_a);
    let line = listed
        .lines()
        .find(|l| l.contains("dst=10.98.1.2"))
        .unwrap_or_else(|| panic!("conntrack -L has no flow to b: {listed}"));
    assert!(line.contains("[UNREPLIED]"), "{line}");

    // The hint is exact: run it, and that flow (only that flow) is gone.
    let args: Vec<&str> = cmd.split(' ').collect();
    ns_sh(&s.ns_a, &args);
    let after = conntrack_list(&s.ns_a);
    assert!(!after.contains("dst=10.98.1.2 "), "{after}");
    assert!(
        after.contains("dst=10.98.2.2 "),
        "c's flow untouched: {after}"
    );
}

#[test]
fn a_broken_peer_whose_flow_looks_right_is_not_blamed_on_conntrack() {
    let s = star();
    assert!(ping(&s.ns_a, "10.201.0.2"), "handshake with b");
    drop_inbound(&s.ns_b, 51002);
    let (_, doc) = s.check();
    let b = s.peer(&doc, &s.b.public_key);
    assert_eq!(b["state"], "unreachable", "{b}");
    // Evidence is read for a broken peer.
    let out = outbound(&b);
    // Replied to (the handshake); ASSURED too once the kernel saw it as a stream.
    assert!(
        out["state"] == "REPLIED" || out["state"] == "ASSURED",
        "{out}"
    );
    assert!(out["suspect"].is_null(), "{out}");
    assert!(out["drop_command"].is_null(), "{out}");
    let sum = summary(&doc);
    assert!(!sum.contains("conntrack"), "{sum}");
}

#[test]
fn a_nat_rule_changed_under_a_live_flow_is_named_as_stale_nat() {
    let s = star();
    // a talks to c from an extra address, through SNAT.
    s.ns_a.ip(&["addr", "add", "10.98.2.5/24", "dev", &s.va_c]);
    nft(
        &s.ns_a,
        "table ip hvnat {\n chain post { type nat hook postrouting priority 100; ip daddr 10.98.2.2 udp sport 51001 snat to 10.98.2.5; }\n}",
    );
    assert!(ping(&s.ns_a, "10.201.0.3"), "handshake with c through SNAT");
    // The address and the rule go away; the live flow keeps its old translation.
    ns_sh(&s.ns_a, &["nft", "delete", "table", "ip", "hvnat"]);
    s.ns_a.ip(&["addr", "del", "10.98.2.5/24", "dev", &s.va_c]);
    s.ns_c.ip(&["neigh", "flush", "all"]);
    let (code, doc) = s.check();
    assert_eq!(code, 2, "{doc}");
    let c = s.peer(&doc, &s.c.public_key);
    assert_eq!(c["state"], "unreachable", "{c}");
    let out = outbound(&c);
    assert_eq!(out["reply"], "10.98.2.2:51003 -> 10.98.2.5:51001", "{out}");
    assert_eq!(out["nat"], "source rewritten to 10.98.2.5:51001", "{out}");
    let why = out["suspect"].as_str().unwrap();
    assert!(
        why.contains("replies go to 10.98.2.5, an address this host no longer has (stale SNAT)"),
        "{why}"
    );
    let sum = summary(&doc);
    assert!(sum.contains("stale SNAT"), "{sum}");
    assert!(
        sum.contains("conntrack -D -p udp --orig-src 10.98.2.1 --orig-dst 10.98.2.2"),
        "{sum}"
    );
    let listed = conntrack_list(&s.ns_a);
    assert!(
        listed.contains("dst=10.98.2.5"),
        "the kernel agrees: {listed}"
    );
}

#[test]
fn with_conntrack_evidence_off_nothing_is_read() {
    let s = star();
    drop_inbound(&s.ns_b, 51002);
    assert!(!ping(&s.ns_a, "10.201.0.2"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wg.toml");
    std::fs::write(
        &p,
        "[[check]]\nkind = \"wireguard\"\nconntrack-evidence = false\n",
    )
    .unwrap();
    let out = s
        .ns_a
        .cmd(env!("CARGO_BIN_EXE_hvprobe"))
        .args([
            "check",
            "--check",
            "wireguard",
            "--format",
            "json",
            "--config",
        ])
        .arg(&p)
        .output()
        .unwrap();
    let doc = json_of(&out);
    let b = s.peer(&doc, &s.b.public_key);
    assert_ne!(b["state"], "ok", "{b}");
    assert_eq!(b["conntrack"].as_array().unwrap().len(), 0, "{b}");
    assert!(!summary(&doc).contains("conntrack"), "{doc}");
}

#[test]
fn without_cap_net_admin_the_evidence_is_a_note_and_the_verdict_stands() {
    let s = star();
    drop_inbound(&s.ns_b, 51002);
    assert!(!ping(&s.ns_a, "10.201.0.2"));
    // Root without CAP_NET_ADMIN: the UAPI socket is still readable, ctnetlink is not.
    let capsh = require_bin("capsh", "libcap2-bin");
    let hv = env!("CARGO_BIN_EXE_hvprobe");
    let out = Command::new("ip")
        .args(["netns", "exec", &s.ns_a.name])
        .arg(capsh)
        .args([
            "--drop=cap_net_admin",
            "--",
            "-c",
            &format!("{hv} check --check wireguard --format json"),
        ])
        .output()
        .unwrap();
    let doc = json_of(&out);
    let b = s.peer(&doc, &s.b.public_key);
    assert_ne!(b["state"], "ok", "{b}");
    assert_eq!(b["conntrack"].as_array().unwrap().len(), 0, "{b}");
    let notes = check_of(&doc, "wireguard")["details"]["notes"].to_string();
    assert!(
        notes.contains("no conntrack evidence") && notes.contains("CAP_NET_ADMIN"),
        "{notes}"
    );
    assert_eq!(out.status.code(), Some(2), "the peer is still down: {doc}");
}
