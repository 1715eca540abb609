//! The verdict at every threshold, estimates, names, counter resets.

use super::*;
use std::time::Duration;

use tokio::time::Instant;

use super::run::{VmSample, rates};
use crate::check::{Details, Status};
use crate::parse::Psi;
use crate::parse::PsiLine;

const GIB: u64 = 1 << 30;

fn obs(available_pct: u64) -> Observation {
    Observation {
        meminfo: Meminfo {
            total: 100 * GIB,
            free: GIB,
            available: Some(available_pct * GIB),
            swap_total: 8 * GIB,
            swap_free: 8 * GIB,
            ..Meminfo::default()
        },
        psi: Some(psi(0.0, 0.0)),
        swap_in_per_sec: Some(0.0),
        swap_out_per_sec: Some(0.0),
        oom_kills: Some(0),
        window_secs: 1.0,
        ..Observation::default()
    }
}

fn psi(some: f64, full: f64) -> Psi {
    let line = |avg10| PsiLine {
        avg10,
        avg60: 0.0,
        avg300: 0.0,
        total: 0,
    };
    Psi {
        some: line(some),
        full: Some(line(full)),
    }
}

fn status_of(o: Observation) -> (Status, String) {
    let out = evaluate(&o, &MemoryConfig::default());
    (out.status, out.summary)
}

#[test]
fn each_threshold_is_crossed() {
    let cases: Vec<(&str, Observation, Status, &str)> = vec![
        ("healthy", obs(50), Status::Ok, "available 50.0%"),
        (
            "available just above warn",
            obs(10),
            Status::Ok,
            "available",
        ),
        (
            "available below warn",
            obs(9),
            Status::Warn,
            "available 9.0% < 10%",
        ),
        (
            "available below crit",
            obs(4),
            Status::Crit,
            "available 4.0% < 5%",
        ),
        (
            "psi some at warn",
            Observation {
                psi: Some(psi(10.0, 0.0)),
                ..obs(50)
            },
            Status::Warn,
            "psi some avg10 10.00 >= 10",
        ),
        (
            "psi full at crit",
            Observation {
                psi: Some(psi(0.0, 5.0)),
                ..obs(50)
            },
            Status::Crit,
            "psi full avg10 5.00 >= 5",
        ),
        (
            "sustained swap-in",
            Observation {
                swap_in_per_sec: Some(250.0),
                ..obs(50)
            },
            Status::Warn,
            "swap-in 250 pages/s",
        ),
        (
            "swap-out alone is not pressure",
            Observation {
                swap_out_per_sec: Some(5000.0),
                ..obs(50)
            },
            Status::Ok,
            "swap-in 0/s",
        ),
        (
            "oom kill",
            Observation {
                oom_kills: Some(2),
                oom_recent: true,
                ..obs(50)
            },
            Status::Crit,
            "2 OOM kill(s)",
        ),
        (
            "malformed secondary source is not hidden",
            Observation {
                problems: vec!["/proc/vmstat: malformed: line 3: bad value".into()],
                ..obs(50)
            },
            Status::Unknown,
            "/proc/vmstat: malformed",
        ),
        (
            "malformed secondary source does not mask a crit",
            Observation {
                problems: vec!["/proc/vmstat: malformed".into()],
                ..obs(2)
            },
            Status::Crit,
            "/proc/vmstat: malformed",
        ),
    ];
    for (name, o, want, text) in cases {
        let (got, summary) = status_of(o);
        assert_eq!(got, want, "{name}: {summary}");
        assert!(summary.contains(text), "{name}: {summary:?} lacks {text:?}");
    }
}

#[test]
fn no_swap_and_no_psi_is_normal() {
    let mut o = obs(50);
    o.meminfo.swap_total = 0;
    o.meminfo.swap_free = 0;
    o.psi = None;
    o.swap_in_per_sec = None;
    let out = evaluate(&o, &MemoryConfig::default());
    assert_eq!(out.status, Status::Ok, "{}", out.summary);
    assert!(out.summary.contains("psi unsupported"), "{}", out.summary);
    assert!(out.summary.contains("no swap"), "{}", out.summary);
    let Details::Memory(d) = out.details else {
        panic!("memory details expected")
    };
    assert!(!d.psi_supported);
    assert_eq!(d.psi_some_avg10, None);
}

#[test]
fn hot_vm_warns_only_when_configured() {
    let mut o = obs(50);
    o.cgroups = vec![CgroupPressure {
        cgroup: "machine-qemu\\x2d3\\x2dsmall.scope".into(),
        name: "qemu-3-small".into(),
        psi_some_avg10: 40.0,
        psi_full_avg10: 10.0,
        memory_current_bytes: None,
        memory_max_bytes: None,
        swap_current_bytes: None,
    }];
    let plain = evaluate(&o, &MemoryConfig::default());
    assert_eq!(plain.status, Status::Ok);
    assert!(
        plain.summary.contains("top VM qemu-3-small some 40.00"),
        "{}",
        plain.summary
    );
    let cfg = MemoryConfig {
        warn_cgroup_psi_some_avg10: Some(20.0),
        ..MemoryConfig::default()
    };
    let hot = evaluate(&o, &cfg);
    assert_eq!(hot.status, Status::Warn, "{}", hot.summary);
}

#[test]
fn estimate_without_memavailable() {
    let m = Meminfo {
        total: 1000,
        free: 100,
        available: None,
        buffers: 50,
        cached: 300,
        sreclaimable: 40,
        shmem: 90,
        ..Meminfo::default()
    };
    assert_eq!(m.available_or_estimate(), (400, true));
    let over = Meminfo { cached: 5000, ..m };
    assert_eq!(over.available_or_estimate(), (1000, true));
}

#[test]
fn cgroup_names_are_unescaped() {
    assert_eq!(
        cgroup_display_name("machine-qemu\\x2d1\\x2dvm1.scope"),
        "qemu-1-vm1"
    );
    assert_eq!(cgroup_display_name("libvirt"), "libvirt");
    assert_eq!(cgroup_display_name("a\\xzz.scope"), "a\\xzz");
    assert_eq!(cgroup_display_name("trailing\\x"), "trailing\\x");
}

#[test]
fn rates_survive_counter_reset() {
    let t0 = Instant::now();
    let prev = VmSample {
        at: t0,
        counters: VmCounters {
            pswpin: Some(1000),
            pswpout: Some(10),
            oom_kill: Some(5),
        },
    };
    let now = VmSample {
        at: t0 + Duration::from_secs(2),
        counters: VmCounters {
            pswpin: Some(10),
            pswpout: Some(30),
            oom_kill: Some(6),
        },
    };
    let r = rates(&prev, &now);
    assert_eq!(
        (r.swap_in_per_sec, r.swap_out_per_sec, r.oom_kills, r.secs),
        (None, Some(10.0), Some(1), 2.0)
    );
}

#[test]
fn config_rejects_inverted_thresholds() {
    let cfg = MemoryConfig {
        warn_available_percent: 5.0,
        crit_available_percent: 10.0,
        ..MemoryConfig::default()
    };
    let mut p = Problems::default();
    cfg.validate(&mut p);
    assert!(p.to_string().contains("crit-available-percent"), "{p}");
}
