//! Correlation end to end: a real collector and nine real agents in three AZs on loopback, faults injected
//! through the agents' fixture roots, the verdicts and events read through `/api/v1/zones`,
//! `/api/v1/events`, `hvprobe status` and `hvprobe timeline`; then the collector is killed and restarted and
//! must still show every event it had shown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::time::Duration;

use crate::support::{Agent, Collector, FixtureHost, run, wait_for};
use serde_json::Value;

fn zone<'a>(zones: &'a Value, az: &str) -> &'a Value {
    zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["az"] == az)
        .unwrap_or_else(|| panic!("no {az} in {zones}"))
}

fn host(id: &str) -> FixtureHost {
    let h = FixtureHost::kernel_6_18();
    h.write(
        "proc/sys/kernel/random/boot_id",
        &format!("{:08x}-0000-4000-8000-000000000001\n", id.len()),
    );
    h
}

#[test]
fn nine_agents_three_azs_one_verdict_per_root_cause() {
    let mut c = Collector::start("");
    let ids: Vec<(String, &str)> = ["az1", "az2", "az3"]
        .iter()
        .flat_map(|az| (1..=3).map(move |i| (format!("{az}-hv{i}"), *az)))
        .collect();
    let hosts: Vec<FixtureHost> = ids.iter().map(|(id, _)| host(id)).collect();
    let mut agents: Vec<Agent> = ids
        .iter()
        .zip(&hosts)
        .map(|((id, az), h)| Agent::start(h, id, az, &[&c.grpc], 1))
        .collect();
    wait_for(Duration::from_secs(20), || {
        let z = c.get("/api/v1/zones");
        let zs = z["zones"].as_array()?.clone();
        (zs.len() == 3 && zs.iter().all(|z| z["reporting"] == 3)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the fleet did not report: {}\n{}",
            c.get("/api/v1/zones"),
            c.log()
        )
    });
    let healthy = c.get("/api/v1/zones");
    assert!(
        healthy["zones"]
            .as_array()
            .unwrap()
            .iter()
            .all(|z| z["status"] == "ok" && z["verdicts"] == serde_json::json!([])),
        "{healthy}"
    );

    // az1: the conntrack table fills on every host -> one AZ verdict, not three.
    for h in &hosts[0..3] {
        h.set_conntrack(950, 1000);
    }
    // az2: one host's RAID1 loses a disk -> one host verdict, marked local.
    hosts[3].write(
        "proc/mdstat",
        "Personalities : [raid1]\nmd0 : active raid1 sda1[0]\n      1048512 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n",
    );
    // az3: the whole AZ goes silent (power cut) -> one unreachable verdict; its hosts are stale, not down.
    for a in &mut agents[6..9] {
        a.terminate();
    }
    let zones = wait_for(Duration::from_secs(30), || {
        let z = c.get("/api/v1/zones");
        let n = |az: &str| zone(&z, az)["verdicts"].as_array().map_or(0, Vec::len);
        (n("az1") == 1 && n("az2") == 1 && n("az3") == 1).then_some(z)
    })
    .unwrap_or_else(|| {
        panic!(
            "verdicts did not form: {}\n{}",
            c.get("/api/v1/zones"),
            c.log()
        )
    });

    let az1 = zone(&zones, "az1");
    let v1 = &az1["verdicts"][0];
    assert_eq!(
        (
            v1["scope"].as_str(),
            v1["check"].as_str(),
            v1["status"].as_str()
        ),
        (Some("az"), Some("conntrack"), Some("crit"))
    );
    assert_eq!(v1["hosts"].as_array().unwrap().len(), 3);
    assert!(
        v1["summary"]
            .as_str()
            .unwrap()
            .contains("3/3 hosts of az1 (AZ-wide)"),
        "{v1}"
    );
    assert!(v1["since"].as_str().unwrap().ends_with('Z'));

    let v2 = &zone(&zones, "az2")["verdicts"][0];
    assert_eq!(
        (v2["scope"].as_str(), v2["check"].as_str()),
        (Some("host"), Some("md-raid"))
    );
    assert_eq!(v2["hosts"], serde_json::json!(["az2-hv1"]));
    assert!(
        v2["summary"]
            .as_str()
            .unwrap()
            .contains("(local: 1/3 hosts of az2)"),
        "{v2}"
    );

    let az3 = zone(&zones, "az3");
    assert_eq!(
        (az3["reporting"].as_u64(), az3["stale"].as_u64()),
        (Some(0), Some(3))
    );
    let v3 = &az3["verdicts"][0];
    assert_eq!(v3["check"], "reachability");
    assert!(
        v3["summary"]
            .as_str()
            .unwrap()
            .starts_with("az3 unreachable: 3/3 hosts silent"),
        "{v3}"
    );
    let text = zones.to_string();
    assert!(!text.contains("\"down\""), "nothing is called down: {text}");
    // Per-host API agrees: az3 hosts are stale.
    assert_eq!(c.host("az3-hv1").unwrap()["status"], "stale");

    // The timeline has every opening and every host gone stale.
    let events = c.get("/api/v1/events")["events"]
        .as_array()
        .unwrap()
        .clone();
    let kinds = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(kinds("verdict-opened"), 3, "{events:#?}");
    assert_eq!(kinds("host-stale"), 3, "{events:#?}");
    let az1_only = c.get("/api/v1/events?az=az1")["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(az1_only.iter().all(|e| e["az"] == "az1"), "{az1_only:#?}");
    assert_eq!(
        c.get("/api/v1/events?since=nonsense")["error"]
            .as_str()
            .map(|s| s.starts_with("since:")),
        Some(true)
    );

    // hvprobe status: one line per AZ, each verdict under it, exit code 2 (worst is CRIT).
    let out = run(&["status", "--collector", &format!("http://{}", c.grpc)]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("az1 ") && l.ends_with("CRIT")),
        "{table}"
    );
    assert!(table.contains("az     conntrack"), "{table}");
    assert!(table.contains("host   md-raid"), "{table}");
    assert!(table.contains("reachability"), "{table}");
    let only_az2 = run(&["status", "--collector", &c.grpc, "--az", "az2"]);
    let t2 = String::from_utf8_lossy(&only_az2.stdout).to_string();
    assert!(!t2.contains("az1") && t2.contains("az2"), "{t2}");

    // hvprobe timeline: the Markdown table of the same events.
    let out = run(&["timeline", "--collector", &c.grpc, "--since", "1h"]);
    assert_eq!(out.status.code(), Some(0));
    let md = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        md.starts_with("| time | scope | component | what |\n|---|---|---|---|\n"),
        "{md}"
    );
    assert!(
        md.contains("| az | az1/conntrack | verdict opened (crit): "),
        "{md}"
    );
    assert!(
        md.contains("| host | az3-hv1 | host stale (stale): "),
        "{md}"
    );

    // The collector dies and comes back: every event it showed is still there, none re-announced.
    let before = c.get("/api/v1/events")["events"]
        .as_array()
        .unwrap()
        .clone();
    c.kill9();
    c.restart();
    let after = c.get("/api/v1/events")["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        after.len(),
        before.len(),
        "events lost or added by the restart"
    );
    assert_eq!(after, before);
    // The verdicts that were open are still open after the restart (restored, then confirmed).
    let restored = c.get("/api/v1/zones");
    assert_eq!(
        zone(&restored, "az1")["verdicts"][0]["check"],
        "conntrack",
        "{restored}"
    );

    // az2 reboots (new boot ids) -> one rebooted event for the AZ.
    for (i, a) in agents[3..6].iter_mut().enumerate() {
        a.terminate();
        hosts[3 + i].write(
            "proc/sys/kernel/random/boot_id",
            "deadbeef-0000-4000-8000-000000000002\n",
        );
    }
    let _az2: Vec<Agent> = (3..6)
        .map(|i| Agent::start(&hosts[i], &ids[i].0, "az2", &[&c.grpc], 1))
        .collect();
    let rebooted = wait_for(Duration::from_secs(20), || {
        let ev = c.get("/api/v1/events?az=az2")["events"].as_array()?.clone();
        ev.into_iter().find(|e| e["kind"] == "rebooted")
    })
    .unwrap_or_else(|| panic!("no reboot event: {}", c.get("/api/v1/events?az=az2")));
    assert!(
        rebooted["summary"]
            .as_str()
            .unwrap()
            .starts_with("az2 rebooted: 3/3 hosts"),
        "{rebooted}"
    );
    let m = c.metrics();
    assert!(
        m.contains("hvprobe_collector_open_verdicts{scope=\"az\",check=\"conntrack\"} 1"),
        "{m}"
    );
}

#[test]
fn status_and_timeline_without_a_collector_exit_3() {
    let port = crate::support::free_port();
    for cmd in ["status", "timeline"] {
        let out = run(&[cmd, "--collector", &format!("127.0.0.1:{port}")]);
        assert_eq!(out.status.code(), Some(3), "{cmd}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot reach the collector"),
            "{cmd}"
        );
    }
    let out = run(&["timeline", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(64));
}

/// Issue 12: `hvprobe status` and `timeline` given the collector's HTTP address answered "invalid
/// compression flag: 123". Either address works now, and an address that is neither gets one clear error.
#[test]
fn status_and_timeline_work_with_either_address() {
    let (c, _hosts, _agents) = collector_with_a_verdict();
    for addr in [c.grpc.clone(), c.http.clone(), format!("http://{}", c.http)] {
        let out = run(&["status", "--collector", &addr]);
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{addr}: {table}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            table.contains("az-both") && table.contains("conntrack"),
            "{addr}: {table}"
        );
        let out = run(&["timeline", "--collector", &addr, "--since", "1h"]);
        let md = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{addr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            md.contains("| az | az-both/conntrack | verdict opened (crit)"),
            "{addr}: {md}"
        );
    }
    // Something that is neither: a plain TCP server that answers garbage.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().take(4).flatten() {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        }
    });
    let out = run(&["status", "--collector", &addr]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("is neither the collector's gRPC address"),
        "{err}"
    );
    assert!(!err.contains("compression flag"), "no protocol dump: {err}");
}

/// A collector, three agents in `az-both`, and an AZ verdict open; dropped together at the end of the test.
fn collector_with_a_verdict() -> (Collector, Vec<FixtureHost>, Vec<Agent>) {
    let c = Collector::start("");
    let hosts: Vec<FixtureHost> = (0..3).map(|i| host(&format!("both-{i}"))).collect();
    let agents: Vec<Agent> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Agent::start(h, &format!("both-hv{i}"), "az-both", &[&c.grpc], 1))
        .collect();
    for h in &hosts {
        h.set_conntrack(950, 1000);
    }
    wait_for(Duration::from_secs(30), || {
        let z = c.get("/api/v1/zones?az=az-both");
        (z["zones"][0]["verdicts"].as_array()?.len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("no verdict: {}", c.get("/api/v1/zones")));
    (c, hosts, agents)
}
