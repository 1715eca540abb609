use super::*;
use crate::check::{Details, Status};
use crate::problems::Problems;

const NOW: u64 = 1_800_000_000_000;

fn unit(name: &str, load: &str, active: &str, sub: &str) -> UnitState {
    UnitState {
        name: name.into(),
        load_state: load.into(),
        active_state: active.into(),
        sub_state: sub.into(),
        result: String::new(),
        since_unix_ms: None,
        n_restarts: Some(0),
        restarts_in_window: 0,
        unit_file_state: None,
        never_started: false,
        status: Status::Unknown,
    }
}

fn running(name: &str) -> UnitState {
    unit(name, "loaded", "active", "running")
}

fn judge(u: UnitState, settled: bool) -> (Status, String) {
    let o = Observation {
        now_unix_ms: NOW,
        boot_settled: settled,
        units: vec![running("a.service"), u],
    };
    let out = evaluate(&o, &ServicesConfig::default());
    let Details::Services(d) = &out.details else {
        panic!("no details: {out:?}");
    };
    assert_eq!(d.units[1].status, out.status, "{out:?}");
    (out.status, out.summary)
}

#[test]
fn every_state_gets_its_verdict() {
    let mut failed = unit("unbound.service", "loaded", "failed", "failed");
    failed.result = "exit-code".into();
    failed.since_unix_ms = Some(NOW - 300_000);
    failed.n_restarts = Some(4);
    let (s, why) = judge(failed, true);
    assert_eq!(s, Status::Crit);
    assert!(
        why.starts_with("unbound.service failed since 2027-01-15T07:55:00Z (5m ago), result exit-code, 4 restarts; 1/2 units active"),
        "{why}"
    );

    for (load, word) in [
        ("not-found", "not found"),
        ("masked", "masked"),
        ("bad-setting", "load error (bad-setting)"),
        ("error", "load error (error)"),
    ] {
        let (s, why) = judge(unit("x.service", load, "inactive", "dead"), true);
        assert_eq!(s, Status::Crit, "{load}");
        assert!(why.starts_with(&format!("x.service {word}")), "{why}");
    }

    let (s, why) = judge(running("b.service"), true);
    assert_eq!((s, why.as_str()), (Status::Ok, "all 2 units active"));
    let (s, _) = judge(unit("b.service", "loaded", "reloading", "reload"), true);
    assert_eq!(s, Status::Ok);

    let mut stopped = unit("b.service", "loaded", "inactive", "dead");
    stopped.result = "success".into();
    stopped.since_unix_ms = Some(NOW - 60_000);
    let (s, why) = judge(stopped, true);
    assert_eq!(s, Status::Warn);
    assert!(why.starts_with("b.service inactive (dead) since"), "{why}");
}

#[test]
fn activating_is_judged_by_how_long() {
    for (secs, want) in [
        (0, Status::Ok),
        (29, Status::Ok),
        (30, Status::Warn),
        (59, Status::Warn),
        (60, Status::Crit),
    ] {
        let mut u = unit("wg-quick@wg0.service", "loaded", "activating", "start");
        u.since_unix_ms = Some(NOW - secs * 1000);
        let (s, why) = judge(u, true);
        assert_eq!(s, want, "{secs}s: {why}");
        if want != Status::Ok {
            assert!(
                why.starts_with("wg-quick@wg0.service activating (start) since"),
                "{why}"
            );
        }
    }
    // Hanging on the way down counts the same.
    let mut u = unit("b.service", "loaded", "deactivating", "stop-sigterm");
    u.since_unix_ms = Some(NOW - 90_000);
    assert_eq!(judge(u, true).0, Status::Crit);
}

#[test]
fn enabled_never_started_waits_for_the_boot_to_settle() {
    let mut u = unit("unbound.service", "loaded", "inactive", "dead");
    u.never_started = true;
    u.unit_file_state = Some("enabled".into());
    let (s, why) = judge(u.clone(), false);
    assert_eq!(s, Status::Ok, "{why}");
    assert!(why.contains("not started yet (boot still settling)"), "{why}");
    let (s, why) = judge(u.clone(), true);
    assert_eq!(s, Status::Crit);
    assert!(
        why.starts_with("unbound.service enabled but never started this boot"),
        "{why}"
    );
    u.unit_file_state = Some("enabled-runtime".into());
    assert_eq!(judge(u.clone(), true).0, Status::Crit);
    // Listed but not enabled: nothing would ever start it.
    u.unit_file_state = Some("disabled".into());
    let (s, why) = judge(u, true);
    assert_eq!(s, Status::Warn);
    assert!(why.contains("never started (disabled)"), "{why}");
}

#[test]
fn restart_loops_warn() {
    let mut u = running("libvirtd.service");
    u.restarts_in_window = 2;
    u.n_restarts = Some(7);
    assert_eq!(judge(u.clone(), true).0, Status::Ok);
    u.restarts_in_window = 3;
    let (s, why) = judge(u, true);
    assert_eq!(s, Status::Warn);
    assert!(
        why.starts_with(
            "libvirtd.service restart loop: 3 restarts in 10m, now active (running), 7 restarts"
        ),
        "{why}"
    );
    // Waiting to restart after a failure is what one run sees of a loop.
    let mut u = unit("loop.service", "loaded", "activating", "auto-restart");
    u.since_unix_ms = Some(NOW - 1000);
    u.result = "exit-code".into();
    let (s, why) = judge(u, true);
    assert_eq!(s, Status::Warn);
    assert!(
        why.starts_with("loop.service activating (auto-restart) since"),
        "{why}"
    );
    assert!(why.contains("result exit-code"), "{why}");
}

#[test]
fn the_worst_unit_is_named_first() {
    let mut slow = unit("slow.service", "loaded", "activating", "start");
    slow.since_unix_ms = Some(NOW - 40_000);
    let o = Observation {
        now_unix_ms: NOW,
        boot_settled: true,
        units: vec![slow, unit("gone.service", "not-found", "inactive", "dead")],
    };
    let out = evaluate(&o, &ServicesConfig::default());
    assert_eq!(out.status, Status::Crit);
    assert!(
        out.summary
            .starts_with("gone.service not found; slow.service activating (start)"),
        "{}",
        out.summary
    );
    assert!(out.summary.ends_with("; 0/2 units active"), "{}", out.summary);
}

#[test]
fn details_round_trip_the_wire() {
    let mut u = unit("a.service", "loaded", "failed", "failed");
    u.result = "timeout".into();
    u.since_unix_ms = Some(NOW);
    u.unit_file_state = Some("enabled".into());
    u.never_started = true;
    u.restarts_in_window = 5;
    u.status = Status::Crit;
    let d = ServicesDetails {
        boot_settled: true,
        units: vec![u, running("b.service")],
    };
    assert_eq!(wire::from_pb(&wire::to_pb(&d)), d);
}

#[test]
fn names_get_their_type_and_bad_config_is_named() {
    assert_eq!(full_name("unbound"), "unbound.service");
    assert_eq!(full_name("wg-quick@wg0"), "wg-quick@wg0.service");
    assert_eq!(full_name("multi-user.target"), "multi-user.target");
    assert_eq!(full_name("backup.timer"), "backup.timer");
    assert_eq!(full_name("node.js"), "node.js.service");

    let ok = ServicesConfig {
        units: vec!["unbound".into(), "libvirtd.service".into()],
        ..ServicesConfig::default()
    };
    let mut p = Problems::default();
    ok.validate(&mut p);
    assert!(p.is_empty(), "{:?}", p.items());

    let bad = ServicesConfig {
        units: vec![
            "unbound".into(),
            "unbound.service".into(),
            "bad name".into(),
            "a@b@c".into(),
            String::new(),
        ],
        bus: "dbus".into(),
        warn_activating_secs: 60,
        crit_activating_secs: 30,
        warn_restarts: 0,
        ..ServicesConfig::default()
    };
    let mut p = Problems::default();
    bad.validate(&mut p);
    let keys: Vec<&str> = p.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "units[1]",
            "units[2]",
            "units[3]",
            "units[4]",
            "bus",
            "crit-activating-secs",
            "warn-restarts"
        ],
        "{:?}",
        p.items()
    );
}
