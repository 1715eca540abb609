//! Verdicts through a real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, read back through
//! its API v2 (`GET /api/v2/alerts`): the alert appears with its labels and annotations while the verdict
//! is open, from two collectors as one alert, and resolves when the verdict closes (issue 12); an AZ
//! verdict arrives labelled with its AZ and check within seconds, not at the next resend, and resolves as
//! soon as the verdict closes (issue 22).
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Agent, ChildGuard, Collector, FixtureHost, free_port, http_get, require_bin, wait_for,
};

/// The open verdicts of a collector's API (every scope).
fn open_verdicts(c: &Collector) -> Vec<Value> {
    let (_, body) = http_get(&c.http, "/api/v1/zones").unwrap_or_default();
    let z: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for zone in z["zones"].as_array().into_iter().flatten() {
        out.extend(zone["verdicts"].as_array().into_iter().flatten().cloned());
    }
    out
}

struct Alertmanager {
    _child: ChildGuard,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let bin = require_bin("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(
            &cfg,
            "route:\n  receiver: nobody\n  group_wait: 0s\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let am = Alertmanager {
            _child: ChildGuard(child),
            addr,
            _dir: dir,
        };
        wait_for(Duration::from_secs(20), || {
            http_get(&am.addr, "/-/ready").filter(|(s, _)| *s == 200)
        })
        .expect("alertmanager did not come up");
        am
    }

    /// The active alerts hvprobe pushed.
    fn alerts(&self) -> Vec<Value> {
        let (_, body) = http_get(&self.addr, "/api/v2/alerts").unwrap_or_default();
        let all: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        all.into_iter()
            .filter(|a| a["labels"]["alertname"] == "HvprobeVerdict")
            .collect()
    }
}

#[test]
fn an_open_verdict_is_an_alert_until_it_closes() {
    let am = Alertmanager::start();
    // A short flap window: a verdict that recovers is held open until that long after it opened.
    let extra = format!(
        "alertmanagers = [\"http://{}\"]\nalert-resend-secs = 1\n[correlation]\nflap-window-secs = 10\n",
        am.addr
    );
    // Two collectors, as two AZs would run: Alertmanager keeps one alert.
    let (c1, c2) = (Collector::start(&extra), Collector::start(&extra));
    let host = FixtureHost::kernel_6_18();
    let _agent = Agent::start(&host, "hv-am", "az-am", &[&c1.grpc, &c2.grpc], 1);
    host.set_conntrack(950, 1000);
    let alert = wait_for(Duration::from_secs(30), || am.alerts().into_iter().next())
        .unwrap_or_else(|| panic!("no alert in Alertmanager\n{}", c1.log()));
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["labels"]["scope"], "host");
    assert_eq!(alert["labels"]["check"], "conntrack");
    assert_eq!(alert["labels"]["az"], "az-am");
    assert_eq!(alert["labels"]["host"], "hv-am");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("conntrack CRIT on hv-am"),
        "{alert}"
    );
    assert_eq!(alert["annotations"]["hosts"], "hv-am");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        am.alerts().len(),
        1,
        "two collectors, one alert: {:?}",
        am.alerts()
    );
    assert!(
        c1.metric("hvprobe_collector_alert_pushes_total{result=\"ok\"}")
            .unwrap()
            >= 1.0
    );
    // The fault ends: the verdict closes and the alert resolves.
    host.set_conntrack(10, 1000);
    wait_for(Duration::from_secs(30), || {
        am.alerts().is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("the alert did not resolve: {:?}", am.alerts()));
}

/// Issue 22: three hosts of one AZ over their conntrack limit are one AZ verdict, pushed by two collectors
/// (one naming Alertmanager by address, the other by name with a trailing slash) at their default resend
/// interval (60 s): it arrives as one alert labelled exactly `alertname`, `severity`, `scope="az"`,
/// `check`, `az`, within seconds; when the hosts recover and the verdict closes, the alert is resolved
/// within seconds too, long before any resend.
#[test]
fn an_az_verdict_arrives_labelled_and_resolves_within_seconds() {
    let am = Alertmanager::start();
    let port = am.addr.rsplit_once(':').unwrap().1.to_owned();
    let correlation = "\n[correlation]\nflap-window-secs = 10\n";
    let c1 = Collector::start(&format!(
        "alertmanagers = [\"http://{}\"]{correlation}",
        am.addr
    ));
    let c2 = Collector::start(&format!(
        "alertmanagers = [\"http://localhost:{port}/\"]{correlation}"
    ));
    let hosts: Vec<FixtureHost> = (0..3).map(|_| FixtureHost::kernel_6_18()).collect();
    let _agents: Vec<Agent> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            Agent::start(
                h,
                &format!("hv-az{i}"),
                "az-alert",
                &[&c1.grpc, &c2.grpc],
                1,
            )
        })
        .collect();
    let reporting = |c: &Collector| {
        let (_, body) = http_get(&c.http, "/api/v1/zones").unwrap_or_default();
        let z: Value = serde_json::from_str(&body).unwrap_or_default();
        z["zones"][0]["reporting"].as_u64().unwrap_or(0)
    };
    wait_for(Duration::from_secs(20), || {
        (reporting(&c1) == 3 && reporting(&c2) == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("agents did not report\n{}", c1.log()));
    for h in &hosts {
        h.set_conntrack(950, 1000);
    }
    // Host verdicts may open first and fold into the AZ verdict: wait for the AZ alert alone.
    let only_az = || {
        let a = am.alerts();
        (a.len() == 1 && a[0]["labels"]["scope"] == "az").then(|| a[0].clone())
    };
    let alert = wait_for(Duration::from_secs(25), only_az).unwrap_or_else(|| {
        panic!(
            "no single AZ alert in Alertmanager: {:?}\nverdicts: {:?}\n{}",
            am.alerts(),
            open_verdicts(&c1),
            c1.log()
        )
    });
    let labels = alert["labels"].as_object().unwrap();
    let mut names: Vec<&str> = labels.keys().map(String::as_str).collect();
    names.sort_unstable();
    // `region` is empty for a fleet without regions, and Alertmanager drops empty labels.
    assert_eq!(
        names,
        ["alertname", "az", "check", "scope", "severity"],
        "{alert}"
    );
    assert_eq!(alert["labels"]["az"], "az-alert", "{alert}");
    assert_eq!(alert["labels"]["check"], "conntrack", "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(
        alert["annotations"]["hosts"], "hv-az0, hv-az1, hv-az2",
        "{alert}"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("3/3 hosts of az-alert"),
        "{alert}"
    );
    // Both collectors push it (each counts a successful push); Alertmanager keeps one.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(am.alerts().len(), 1, "{:?}", am.alerts());
    for c in [&c1, &c2] {
        assert!(
            c.metric("hvprobe_collector_alert_pushes_total{result=\"ok\"}")
                .unwrap_or(0.0)
                >= 1.0,
            "{}",
            c.metrics()
        );
    }
    // Recovery: the verdict closes on both collectors, and the alert is resolved within seconds of that.
    for h in &hosts {
        h.set_conntrack(10, 1000);
    }
    wait_for(Duration::from_secs(30), || {
        (open_verdicts(&c1).is_empty() && open_verdicts(&c2).is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("the verdict did not close: {:?}", open_verdicts(&c1)));
    wait_for(Duration::from_secs(10), || {
        am.alerts().is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("the alert was not resolved: {:?}", am.alerts()));
}
