//! Verdicts through a real Alertmanager (Debian's `prometheus-alertmanager`) on loopback (issue 12): the
//! alert appears with its labels and annotations while the verdict is open, from two collectors as one
//! alert, and resolves when the verdict closes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Agent, ChildGuard, Collector, FixtureHost, free_port, http_get, require_bin, wait_for,
};

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
    let extra = format!(
        "alertmanagers = [\"http://{}\"]\nalert-resend-secs = 1",
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
