//! The `services` check against a real systemd (`systemd --user` on a bus of its own, see
//! `support::systemd`): real units that fail, loop, hang in `activating`, are enabled but never started,
//! or do not exist; the real binary in one-shot mode and the check in agent mode across cycles.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::time::{Duration, Instant};

use crate::support::systemd::SystemdLab;
use crate::support::{check_of, json_of, wait_for};
use hvprobe::check::services::{ServicesCheck, ServicesConfig};
use hvprobe::check::{Check, Context, Details, Mode, Outcome, Status, UnknownReason};
use hvprobe::host::HostRoot;

const GOOD: &str = "[Service]\nExecStart=/bin/sleep infinity\n";
const BAD: &str = "[Service]\nExecStart=/bin/false\n";
const NEVER: &str =
    "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=default.target\n";
/// Never says READY=1: stays `activating (start)`.
const HANG: &str =
    "[Service]\nType=notify\nExecStart=/bin/sleep infinity\nTimeoutStartSec=infinity\n";
/// Runs a moment, fails, is restarted: a restart loop systemd never gives up on.
const LOOP: &str = "[Service]\nExecStart=/bin/sh -c 'sleep 0.5; exit 3'\nRestart=always\nRestartSec=300ms\nStartLimitIntervalSec=0\n";

fn lab() -> SystemdLab {
    SystemdLab::start(&[
        ("good.service", GOOD),
        ("bad.service", BAD),
        ("never.service", NEVER),
        ("hang.service", HANG),
        ("loop.service", LOOP),
    ])
}

/// `hvprobe check --check services --format json` with this `[[check]]` table body.
fn check_once(lab: &SystemdLab, keys: &str) -> (i32, serde_json::Value) {
    let cfg = lab.dir().join("hvprobe.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[check]]\nkind = \"services\"\nbus = \"{}\"\n{keys}\n",
            lab.address
        ),
    )
    .unwrap();
    let out = crate::support::run(&[
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--check",
        "services",
        "--format",
        "json",
    ]);
    (out.status.code().unwrap_or(-1), json_of(&out))
}

fn unit<'a>(c: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    c["details"]["units"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no unit {name} in {c}"))
}

#[test]
fn each_real_unit_state_is_named_and_a_hang_turns_critical() {
    let lab = lab();
    for u in ["good.service", "bad.service", "hang.service"] {
        lab.start_unit(u);
    }
    lab.enable_without_starting("never.service");
    assert!(
        wait_for(Duration::from_secs(10), || (lab
            .active_state("bad.service")
            == "failed")
            .then_some(()))
        .is_some(),
        "bad.service never failed: {}",
        lab.log()
    );
    let keys = "units = [\"good\", \"bad.service\", \"never\", \"hang\", \"absent\"]\nwarn-activating-secs = 2\ncrit-activating-secs = 4";
    let started = Instant::now();
    let (code, doc) = check_once(&lab, keys);
    let c = check_of(&doc, "services");
    assert_eq!((code, c["status"].as_str()), (2, Some("crit")), "{c}");
    let status = |name: &str| unit(c, name)["status"].as_str().unwrap().to_owned();
    assert_eq!(status("good.service"), "ok", "{c}");
    assert_eq!(status("bad.service"), "crit", "{c}");
    assert_eq!(unit(c, "bad.service")["result"], "exit-code", "{c}");
    assert_eq!(status("never.service"), "crit", "{c}");
    assert_eq!(
        unit(c, "never.service")["unit_file_state"],
        "enabled",
        "{c}"
    );
    assert_eq!(status("absent.service"), "crit", "{c}");
    assert_eq!(unit(c, "absent.service")["load_state"], "not-found", "{c}");
    assert_eq!(
        c["details"]["boot_settled"], true,
        "the user manager finished starting: {c}"
    );
    let summary = c["summary"].as_str().unwrap();
    for part in [
        "bad.service failed since ",
        ", result exit-code",
        "never.service enabled but never started this boot",
        "absent.service not found",
        "1/5 units active",
    ] {
        assert!(summary.contains(part), "{part:?} not in {summary}");
    }
    // The hang is judged by how long: fine at first, WARN after 2 s, CRIT after 4 s.
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(status("hang.service"), "ok", "{c}");
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    let (_, doc) = check_once(&lab, keys);
    let c = check_of(&doc, "services");
    assert_eq!(unit(c, "hang.service")["status"], "crit", "{c}");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("hang.service activating (start) since "),
        "{c}"
    );

    // Repaired: the failed unit started again, the never-started one started. Only the hang is left.
    lab.start_unit("bad.service");
    lab.write_unit("bad.service", GOOD);
    lab.reload();
    lab.start_unit("bad.service");
    lab.start_unit("never.service");
    lab.stop_unit("hang.service");
    let keys = "units = [\"good\", \"bad\", \"never\", \"hang\"]";
    let (code, doc) = check_once(&lab, keys);
    let c = check_of(&doc, "services");
    assert_eq!(unit(c, "bad.service")["status"], "ok", "{c}");
    assert_eq!(unit(c, "never.service")["status"], "ok", "{c}");
    // Stopped after having run: a listed unit is meant to run.
    assert_eq!(unit(c, "hang.service")["status"], "warn", "{c}");
    assert_eq!((code, c["status"].as_str()), (1, Some("warn")), "{c}");
}

fn agent_check(lab: &SystemdLab, units: &[&str]) -> ServicesCheck {
    ServicesCheck::new(ServicesConfig {
        units: units.iter().map(|u| u.to_string()).collect(),
        bus: lab.address.clone(),
        warn_restarts: 3,
        restart_window_secs: 6,
        ..ServicesConfig::default()
    })
}

async fn cycle(check: &mut ServicesCheck) -> Outcome {
    let ctx = Context::new(HostRoot::new("/"), Mode::Agent);
    check.run(&ctx).await
}

fn restarts(o: &Outcome, name: &str) -> u32 {
    let Details::Services(d) = &o.details else {
        panic!("no details: {o:?}");
    };
    d.units
        .iter()
        .find(|u| u.name == name)
        .map(|u| u.restarts_in_window)
        .unwrap_or_else(|| panic!("no {name}: {o:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loop_warns_across_cycles_and_clears_when_it_stops() {
    let lab = lab();
    lab.start_unit("good.service");
    let mut check = agent_check(&lab, &["good", "loop"]);
    // Not started yet: a listed unit that is merely stopped (inactive) is WARN, not a loop.
    lab.start_unit("loop.service");
    let mut seen_loop = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let o = cycle(&mut check).await;
        if o.summary.contains("loop.service restart loop") {
            seen_loop = Some(o);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let o = seen_loop.unwrap_or_else(|| panic!("no restart loop seen: {}", lab.log()));
    assert_eq!(o.status, Status::Warn, "{o:?}");
    assert!(restarts(&o, "loop.service") >= 3, "{o:?}");
    assert_eq!(restarts(&o, "good.service"), 0, "{o:?}");

    // The loop ends (the unit now stays up): once the window has passed the check is OK again.
    lab.write_unit("loop.service", GOOD);
    lab.reload();
    lab.stop_unit("loop.service");
    lab.start_unit("loop.service");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = cycle(&mut check).await;
    while last.status != Status::Ok && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = cycle(&mut check).await;
    }
    assert_eq!(last.status, Status::Ok, "{last:?}\n{}", lab.log());
    assert_eq!(last.summary, "all 2 units active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bus_no_systemd_a_wedged_or_gone_systemd_is_unknown_never_ok() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_naming = |o: &Outcome, what: &str| {
        assert_eq!(o.status, Status::Unknown, "{o:?}");
        assert!(o.summary.contains(what), "{what:?} not in {o:?}");
    };
    let check_on = |bus: &str| {
        ServicesCheck::new(ServicesConfig {
            units: vec!["unbound".into()],
            bus: bus.into(),
            timeout_ms: 2000,
            ..ServicesConfig::default()
        })
    };

    // No bus at that address.
    let missing = format!("unix:path={}", dir.path().join("nobus").display());
    let o = cycle(&mut check_on(&missing)).await;
    unknown_naming(&o, &missing);

    // A bus with no systemd on it.
    let bare = format!("unix:path={}", dir.path().join("bare").display());
    let dbus =
        std::process::Command::new(crate::support::require_bin("dbus-daemon", "dbus-daemon"))
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={bare}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let _dbus = crate::support::ChildGuard(dbus);
    wait_for(Duration::from_secs(10), || {
        dir.path().join("bare").exists().then_some(())
    })
    .expect("dbus-daemon socket");
    let o = cycle(&mut check_on(&bare)).await;
    unknown_naming(&o, "org.freedesktop.systemd1");

    // systemd stops answering (stopped with SIGSTOP, as a PID 1 wedged in a reload would): UNKNOWN
    // timed-out within the deadline, and OK again on the next cycle once it answers.
    let mut lab = lab();
    lab.start_unit("good.service");
    let mut check = ServicesCheck::new(ServicesConfig {
        units: vec!["good".into()],
        bus: lab.address.clone(),
        timeout_ms: 1500,
        ..ServicesConfig::default()
    });
    let o = cycle(&mut check).await;
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let pid = lab.systemd_pid().unwrap().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let started = Instant::now();
    let o = cycle(&mut check).await;
    let took = started.elapsed();
    signal("-CONT");
    assert_eq!(o.status, Status::Unknown, "{o:?}");
    assert_eq!(o.reason, Some(UnknownReason::TimedOut), "{o:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}: {o:?}");
    let o = cycle(&mut check).await;
    assert_eq!(o.status, Status::Ok, "answers again: {o:?}");

    // systemd goes away under a running check (its bus with it): UNKNOWN from the next cycle on.
    assert!(lab.stop_systemd(), "systemd --user did not exit");
    for _ in 0..2 {
        let o = cycle(&mut check).await;
        assert_eq!(o.status, Status::Unknown, "{o:?}");
    }
}

/// Three real agents of one AZ watching a real systemd (one lab bus stands for their three hosts), a real
/// collector. The AZ reboots and the resolver fails to come back on all three hosts -> one AZ verdict naming
/// it, and the recovery tracking names it on each host; it is fixed and starts -> the verdict closes and
/// the AZ recovers. Each state is seen to come and go.
#[test]
fn a_unit_down_across_an_az_is_one_verdict_named_in_recovery_until_it_is_back() {
    use crate::support::{Agent, Collector, FixtureHost};

    let lab = lab();
    lab.write_unit("resolver.service", GOOD);
    lab.reload();
    lab.start_unit("resolver.service");
    lab.start_unit("good.service");
    let c = Collector::start("\n[correlation]\nflap-window-secs = 5\n");
    let ids = ["az1-hv1", "az1-hv2", "az1-hv3"];
    let boot = |h: &FixtureHost, n: u32| {
        h.write(
            "proc/sys/kernel/random/boot_id",
            &format!("0000000{n}-0000-4000-8000-000000000001\n"),
        );
    };
    let hosts: Vec<FixtureHost> = ids
        .iter()
        .map(|_| {
            let h = FixtureHost::kernel_6_18();
            boot(&h, 1);
            h
        })
        .collect();
    let services = format!(
        "\n[[check]]\nkind = \"services\"\nbus = \"{}\"\nunits = [\"resolver\", \"good\"]\n",
        lab.address
    );
    let start =
        |i: usize| Agent::start_cfg(&hosts[i], ids[i], "az1", &[&c.grpc], 1, &[], &services);
    let mut agents: Vec<Agent> = (0..3).map(start).collect();
    let az1 = |c: &Collector| {
        c.get("/api/v1/zones")["zones"]
            .as_array()
            .and_then(|z| z.iter().find(|z| z["az"] == "az1").cloned())
    };
    let services_verdicts = |z: &serde_json::Value| -> Vec<serde_json::Value> {
        z["verdicts"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|v| v["check"] == "services")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(30), || {
        let z = az1(&c)?;
        (z["reporting"] == 3 && z["status"] == "ok").then_some(())
    })
    .unwrap_or_else(|| panic!("az1 not healthy: {:?}\n{}", az1(&c), c.log()));

    // Power cut: the AZ reboots (new boot ids) and the resolver fails to start this boot on every host.
    for a in &mut agents {
        a.terminate();
    }
    lab.write_unit("resolver.service", BAD);
    lab.reload();
    lab.stop_unit("resolver.service");
    lab.start_unit("resolver.service");
    for h in &hosts {
        boot(h, 2);
    }
    let _agents: Vec<Agent> = (0..3).map(start).collect();

    // One AZ verdict that names the unit, and the recovery tracking names it on each host.
    let v = wait_for(Duration::from_secs(30), || {
        let v = services_verdicts(&az1(&c)?);
        (v.len() == 1).then(|| v[0].clone())
    })
    .unwrap_or_else(|| panic!("no services verdict: {:?}\n{}", az1(&c), c.log()));
    assert_eq!(v["scope"], "az", "{v}");
    assert_eq!(v["hosts"].as_array().map(Vec::len), Some(3), "{v}");
    let summary = v["summary"].as_str().unwrap();
    assert!(
        summary.contains(
            "services CRIT on 3/3 hosts of az1 (AZ-wide) — resolver.service down on 3/3 hosts"
        ),
        "{summary}"
    );
    assert!(summary.contains("result exit-code"), "{summary}");
    let r = wait_for(Duration::from_secs(30), || {
        let r = az1(&c)?["reboot"].clone();
        (r["units_not_back"].as_array().map(Vec::len) == Some(3)).then_some(r)
    })
    .unwrap_or_else(|| panic!("no recovery naming the unit: {:?}\n{}", az1(&c), c.log()));
    let named: Vec<&str> = r["units_not_back"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert_eq!(
        named,
        ids.iter()
            .map(|h| format!("resolver.service on {h}"))
            .collect::<Vec<_>>(),
        "{r}"
    );
    let (_, page) = crate::support::http_get(&c.http, "/").expect("status page");
    assert!(
        page.contains("resolver.service on az1-hv1"),
        "not on the page: {page}"
    );

    // The resolver is fixed and starts: the verdict closes, the AZ recovers, nothing is left open.
    lab.write_unit("resolver.service", GOOD);
    lab.reload();
    lab.start_unit("resolver.service");
    let events = wait_for(Duration::from_secs(40), || {
        let z = az1(&c)?;
        if !services_verdicts(&z).is_empty() || !z["reboot"].is_null() {
            return None;
        }
        c.get("/api/v1/events?az=az1")["events"].as_array().cloned()
    })
    .unwrap_or_else(|| panic!("did not recover: {:?}\n{}", az1(&c), c.log()));
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["check"] == "services" || e["kind"] == "rebooted" || e["kind"] == "recovered")
        .map(|e| (e["kind"].as_str().unwrap(), e["scope"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| k.0 == "verdict-opened").count(),
        1,
        "one verdict for the whole episode: {events:#?}"
    );
    assert!(kinds.contains(&("verdict-closed", "az")), "{kinds:?}");
    assert!(kinds.contains(&("rebooted", "az")), "{kinds:?}");
    assert!(kinds.contains(&("recovered", "az")), "{kinds:?}");
}
