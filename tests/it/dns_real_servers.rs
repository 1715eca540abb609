//! `hvprobe check --check dns` against real DNS servers on loopback: Debian's unbound and dnsmasq, a port
//! where nothing listens, and a socket that swallows queries. The incident case (resolv.conf says
//! 127.0.0.1, the local unbound is not running) runs in a network namespace of its own, where the test owns
//! port 53.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    Blackhole, FixtureHost, Netns, Unbound, check_of, dnsmasq, free_udp_port, json_of, run,
};

struct Case {
    host: FixtureHost,
}

impl Case {
    fn new() -> Case {
        let host = FixtureHost::kernel_6_18();
        Case { host }
    }

    /// Runs the dns check with a config file as it is.
    fn run(&self, cfg: &std::path::Path) -> std::process::Output {
        let root = self.host.root_str();
        let cfg = cfg.to_str().unwrap();
        run(&[
            "check", "--root", root, "--check", "dns", "--format", "json", "--config", cfg,
        ])
    }

    /// Runs the dns check with this config body (a `[[check]] kind = "dns"` table is prepended).
    fn check(&self, body: &str) -> (i32, serde_json::Value, Duration) {
        let cfg = self.host.path("dns.toml");
        std::fs::write(
            &cfg,
            format!("[[check]]\nkind = \"dns\"\nuse-resolv-conf = false\n{body}"),
        )
        .unwrap();
        let t = Instant::now();
        let out = self.run(&cfg);
        let took = t.elapsed();
        (out.status.code().unwrap(), json_of(&out), took)
    }
}

fn summary(doc: &serde_json::Value) -> String {
    check_of(doc, "dns")["summary"].as_str().unwrap().to_owned()
}

fn results(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    check_of(doc, "dns")["details"]["results"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn healthy_unbound_answers_correctly() {
    let port = free_udp_port();
    let _ub = Unbound::start(port);
    let (code, doc, _) = Case::new().check(&format!(
        "resolvers = [\"127.0.0.1:{port}\"]\nnames = [\"api.hvprobe\"]\nexpect = {{ \"api.hvprobe\" = [\"192.0.2.10\"] }}\n"
    ));
    assert_eq!(code, 0, "{doc}");
    let r = &results(&doc)[0];
    assert_eq!(r["resolver"], format!("127.0.0.1:{port}"));
    assert_eq!(r["name"], "api.hvprobe.");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["answers"], serde_json::json!(["192.0.2.10"]));
    assert_eq!(r["rcode"], "NOERROR");
    assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(
        summary(&doc).starts_with(&format!("127.0.0.1:{port} ok ")),
        "{}",
        summary(&doc)
    );
}

#[test]
fn ipv6_resolver_and_aaaa() {
    let port = free_udp_port();
    let _ub = Unbound::start_with(
        Command::new("env"),
        "::1",
        port,
        Some(&format!("[::1]:{port}")),
    );
    let (code, doc, _) = Case::new().check(&format!(
        "resolvers = [\"[::1]:{port}\"]\nnames = [\"dual.hvprobe\"]\nrecord-type = \"AAAA\"\nexpect = {{ \"dual.hvprobe\" = [\"2001:db8::11\"] }}\n"
    ));
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        results(&doc)[0]["answers"],
        serde_json::json!(["2001:db8::11"])
    );
    assert_eq!(results(&doc)[0]["record_type"], "AAAA");
}

#[test]
fn resolver_not_running_is_refused() {
    let port = free_udp_port();
    let (code, doc, _) = Case::new().check(&format!(
        "resolvers = [\"127.0.0.1:{port}\"]\nnames = [\"api.hvprobe\"]\n"
    ));
    assert_eq!(code, 2, "{doc}");
    assert_eq!(results(&doc)[0]["outcome"], "refused");
    assert_eq!(
        summary(&doc),
        format!(
            "no resolver answers api.hvprobe correctly: 127.0.0.1:{port} refused (not running?)"
        )
    );
}

#[test]
fn blackholing_resolver_times_out_and_the_check_ends_on_time() {
    let hole = Blackhole::start();
    let hole2 = Blackhole::start();
    let (code, doc, took) = Case::new().check(&format!(
        "resolvers = [\"{}\", \"{}\"]\nnames = [\"api.hvprobe\", \"other.hvprobe\"]\ntimeout-ms = 500\nwarn-latency-ms = 100\n",
        hole.addr, hole2.addr
    ));
    assert_eq!(code, 2, "{doc}");
    for r in results(&doc) {
        assert_eq!(r["outcome"], "timeout", "{r}");
        assert!(r["latency_ms"].as_f64().unwrap() >= 500.0, "{r}");
    }
    // Four queries to two dead resolvers run in parallel under one 500 ms deadline: the whole run,
    // process start included, takes about half a second, far from 4 x 500 ms.
    assert!(took < Duration::from_millis(1800), "took {took:?}");
    let ms = check_of(&doc, "dns")["duration_ms"].as_u64().unwrap();
    assert!(
        (500..1000).contains(&ms),
        "the check took {ms} ms for a 500 ms deadline"
    );
    assert!(
        summary(&doc).contains("timeout after 500ms"),
        "{}",
        summary(&doc)
    );
    assert_eq!(hole.stop(), 2, "one query per name, no retries");
}

#[test]
fn upstream_failure_is_servfail() {
    let port = free_udp_port();
    let _ub = Unbound::start(port);
    let (code, doc, _) = Case::new().check(&format!(
        "resolvers = [\"127.0.0.1:{port}\"]\nnames = [\"api.hvprobe\", \"www.upstream.example\"]\n"
    ));
    assert_eq!(code, 2, "{doc}");
    let rs = results(&doc);
    assert_eq!(rs[0]["outcome"], "ok");
    assert_eq!(rs[1]["outcome"], "servfail");
    assert_eq!(rs[1]["rcode"], "SERVFAIL");
    assert_eq!(
        summary(&doc),
        format!(
            "no resolver answers www.upstream.example correctly: 127.0.0.1:{port} SERVFAIL for www.upstream.example (upstream failing?)"
        )
    );
}

#[test]
fn nxdomain_refused_rcode_and_wrong_answer() {
    let port = free_udp_port();
    let _ub = Unbound::start(port);
    let (code, doc, _) = Case::new().check(&format!(
        "resolvers = [\"127.0.0.1:{port}\"]\nnames = [\"api.hvprobe\", \"db.hvprobe\", \"x.refuse.hvprobe\"]\nexpect = {{ \"api.hvprobe\" = [\"10.0.0.5\"] }}\n"
    ));
    assert_eq!(code, 2, "{doc}");
    let rs = results(&doc);
    let outcomes: Vec<&str> = rs.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["wrong-answer", "nxdomain", "refused-rcode"]);
    assert_eq!(rs[0]["error"], "got 192.0.2.10, expected 10.0.0.5");
    let s = summary(&doc);
    assert!(
        s.contains("wrong answer for api.hvprobe: got 192.0.2.10, expected 10.0.0.5"),
        "{s}"
    );
    assert!(s.contains("NXDOMAIN for db.hvprobe"), "{s}");
    assert!(s.contains("REFUSED (not allowed to query?)"), "{s}");
}

#[test]
fn one_dead_resolver_of_two_is_warn() {
    let port = free_udp_port();
    let _dm = dnsmasq(port);
    let dead = free_udp_port();
    let (code, doc, _) = Case::new().check(&format!(
        "resolvers = [\"127.0.0.1:{port}\", \"127.0.0.1:{dead}\"]\nnames = [\"api.hvprobe\"]\nexpect = {{ \"api.hvprobe\" = [\"192.0.2.10\"] }}\n"
    ));
    assert_eq!(code, 1, "{doc}");
    let s = summary(&doc);
    assert!(
        s.starts_with(&format!(
            "127.0.0.1:{dead} refused (not running?); 127.0.0.1:{port} ok "
        )),
        "{s}"
    );
}

#[test]
fn no_resolver_to_test_is_unknown() {
    let case = Case::new();
    let cfg = case.host.path("dns.toml");
    std::fs::write(&cfg, "[[check]]\nkind = \"dns\"\n").unwrap();
    let out = case.run(&cfg);
    let doc = json_of(&out);
    assert_eq!(out.status.code(), Some(3));
    let c = check_of(&doc, "dns");
    assert_eq!(c["reason"], "config");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("etc/resolv.conf: not found"),
        "{c}"
    );

    case.host
        .write("etc/resolv.conf", "# nothing here\nsearch example.com\n");
    let out = case.run(&cfg);
    let doc = json_of(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        check_of(&doc, "dns")["summary"]
            .as_str()
            .unwrap()
            .contains("no nameserver lines")
    );
}

/// The incident: resolv.conf points at the local unbound on 127.0.0.1:53, which is not running after a
/// reboot. In a namespace of its own, where the test owns port 53.
#[test]
fn local_unbound_from_resolv_conf_running_then_stopped() {
    let ns = Netns::new("hpdns");
    let host = FixtureHost::kernel_6_18();
    host.write(
        "etc/resolv.conf",
        "# managed by the hypervisor role\nsearch hv.example\nnameserver 127.0.0.1\noptions edns0 trust-ad\n",
    );
    let mut prefix = Command::new("ip");
    prefix.args(["netns", "exec", &ns.name]);
    let ub = Unbound::start_with(prefix, "127.0.0.1", 53, None);
    let ready = crate::support::wait_for(Duration::from_secs(10), || {
        let ok = ns
            .cmd("bash")
            .args(["-c", "exec 3<>/dev/tcp/127.0.0.1/53"])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
    });
    assert!(ready.is_some(), "unbound did not come up in the namespace");
    let check = || {
        let out = ns
            .cmd(env!("CARGO_BIN_EXE_hvprobe"))
            .args([
                "check",
                "--root",
                host.root_str(),
                "--check",
                "dns",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        (out.status.code().unwrap(), json_of(&out))
    };
    let (code, doc) = check();
    assert_eq!(code, 0, "{doc}");
    let d = &check_of(&doc, "dns")["details"];
    assert_eq!(d["resolvers"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(d["search"], serde_json::json!(["hv.example"]));
    assert_eq!(d["results"][0]["name"], "localhost.");
    assert_eq!(d["results"][0]["answers"], serde_json::json!(["127.0.0.1"]));

    drop(ub);
    let (code, doc) = check();
    assert_eq!(code, 2, "{doc}");
    assert_eq!(
        summary(&doc),
        "no resolver answers localhost correctly: 127.0.0.1:53 refused (not running?)"
    );
}
