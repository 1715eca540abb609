//! Parsers on real 6.18 text and every shape the kernel prints, rates across counter wraps, the verdict at
//! every threshold.

use proptest::prelude::*;

use super::*;
use crate::check::Status;
use crate::parse::{Psi, PsiLine};

const LIVE: &str = include_str!("../../../tests/corpus/live_kernel_6.18/proc/diskstats");

fn line(avg10: f64) -> PsiLine {
    PsiLine {
        avg10,
        avg60: avg10,
        avg300: avg10,
        total: 0,
    }
}

fn psi(some: f64, full: f64) -> Option<Psi> {
    Some(Psi {
        some: line(some),
        full: Some(line(full)),
    })
}

fn disk(name: &str, util: Option<f64>, await_ms: Option<f64>) -> DiskIo {
    DiskIo {
        name: name.into(),
        util_percent: util,
        await_ms,
        read_iops: None,
        write_iops: None,
        read_kib_per_sec: None,
        write_kib_per_sec: None,
        in_flight: 0,
    }
}

#[test]
fn the_live_6_18_capture_parses_with_twenty_fields() {
    let stats = parse_diskstats(LIVE).unwrap();
    let vda = stats.iter().find(|d| d.name == "vda").expect("vda in the capture");
    assert_eq!((vda.major, vda.minor), (254, 0));
    assert!(vda.counters.reads > 0 && vda.counters.writes > 0, "{vda:?}");
    assert!(vda.counters.flushes > 0, "6.18 prints flushes: {vda:?}");
    let whole: Vec<&str> = stats
        .iter()
        .filter(|d| !pseudo_device(&d.name) && !partition_by_name(&d.name))
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(whole, ["vda"], "loop and zram devices are not disks");
}

#[test]
fn old_kernels_print_eleven_counters_and_4_18_fifteen() {
    let old = "   8       0 sda 100 0 800 50 10 0 80 20 0 60 70\n";
    let mid = "   8       0 sda 100 0 800 50 10 0 80 20 0 60 70 3 0 24 9\n";
    for text in [old, mid] {
        let d = &parse_diskstats(text).unwrap()[0];
        assert_eq!((d.counters.reads, d.counters.writes, d.counters.io_ms), (100, 10, 60));
        assert_eq!(d.counters.flushes, 0);
    }
    assert_eq!(parse_diskstats(mid).unwrap()[0].counters.discards, 3);
}

#[test]
fn malformed_lines_are_named() {
    let e = parse_diskstats("   8 0 sda 1 2 3\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.msg.contains("6 fields"), "{e}");
    let e = parse_diskstats("\n   8 0 sda 1 0 8 x 1 0 8 1 0 1 1\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.msg.contains("not a number"), "{e}");
}

#[test]
fn partitions_and_pseudo_devices_by_name() {
    for p in ["sda1", "vdb2", "xvda1", "nvme0n1p1", "mmcblk0p2", "md0p1", "hdc3"] {
        assert!(partition_by_name(p), "{p} is a partition");
    }
    for d in ["sda", "vdb", "nvme0n1", "mmcblk0", "md0", "md127", "dm-3", "sdaa"] {
        assert!(!partition_by_name(d), "{d} is a whole disk");
    }
    for p in ["loop0", "ram15", "zram0", "sr0"] {
        assert!(pseudo_device(p), "{p}");
    }
    assert!(!pseudo_device("sda") && !pseudo_device("loopy"));
}

#[test]
fn rates_over_a_window_and_across_a_32_bit_wrap() {
    let before = DiskCounters {
        reads: 1000,
        sectors_read: 8000,
        read_ms: u64::from(u32::MAX) - 100,
        writes: 500,
        sectors_written: 4000,
        write_ms: 1000,
        io_ms: u64::from(u32::MAX) - 400,
        ..DiskCounters::default()
    };
    let after = DiskCounters {
        reads: 1100,
        sectors_read: 8800,
        read_ms: 900, // wrapped: 1001 ms spent reading
        writes: 600,
        sectors_written: 4400,
        write_ms: 1999,
        io_ms: 500, // wrapped: 901 ms busy
        ..DiskCounters::default()
    };
    let d = disk_rates("sda", &before, &after, 1.0);
    assert_eq!(d.read_iops, Some(100.0));
    assert_eq!(d.write_iops, Some(100.0));
    assert_eq!(d.read_kib_per_sec, Some(400.0));
    assert_eq!(d.util_percent, Some(90.1));
    assert_eq!(d.await_ms, Some(10.0), "(1001 + 999) ms / 200 I/Os");
    // A reboot under the root: counters went back; no rates rather than nonsense.
    let reset = disk_rates("sda", &after, &before, 1.0);
    assert_eq!((reset.read_iops, reset.util_percent), (None, None));
    // Too few I/Os for a meaningful wait.
    let idle = DiskCounters {
        reads: 1002,
        ..before
    };
    assert_eq!(disk_rates("sda", &before, &idle, 1.0).await_ms, None);
}

#[test]
fn each_threshold_is_crossed() {
    let cfg = IoConfig::default();
    let judge = |obs: Observation| {
        let o = evaluate(&obs, &cfg);
        (o.status, o.summary)
    };
    let calm = Observation {
        psi: psi(0.5, 0.1),
        disks: vec![disk("vda", Some(3.0), Some(1.2))],
        ..Observation::default()
    };
    let (s, summary) = judge(calm.clone());
    assert_eq!(s, Status::Ok);
    assert_eq!(summary, "psi some 0.50 full 0.10, busiest vda 3% await 1.2ms");
    let (s, summary) = judge(Observation {
        psi: psi(25.0, 9.99),
        ..calm.clone()
    });
    assert_eq!(s, Status::Warn, "{summary}");
    assert!(summary.starts_with("psi io some avg10 25.00 >= 25"), "{summary}");
    let (s, summary) = judge(Observation {
        psi: psi(60.0, 10.0),
        ..calm.clone()
    });
    assert_eq!(s, Status::Crit, "{summary}");
    assert!(summary.starts_with("psi io full avg10 10.00 >= 10"), "{summary}");
    let (s, summary) = judge(Observation {
        disks: vec![disk("md0", Some(97.0), Some(820.0)), disk("sda", Some(20.0), None)],
        ..calm.clone()
    });
    assert_eq!(s, Status::Warn);
    assert!(summary.starts_with("disk saturated: md0 97% busy, await 820ms"), "{summary}");
    let ignored = IoConfig {
        ignore_disks: vec!["md0".into()],
        ..IoConfig::default()
    };
    let o = evaluate(
        &Observation {
            disks: vec![disk("md0", Some(97.0), None)],
            ..calm.clone()
        },
        &ignored,
    );
    assert_eq!(o.status, Status::Ok, "{}", o.summary);
    // No PSI is not a failure: judged on the disks.
    let (s, summary) = judge(Observation { psi: None, ..calm });
    assert_eq!(s, Status::Ok);
    assert!(summary.starts_with("psi unsupported"), "{summary}");
}

#[test]
fn a_malformed_secondary_source_is_named_and_unknown() {
    let o = evaluate(
        &Observation {
            problems: vec!["/proc/pressure/io: malformed: line 1: x".into()],
            ..Observation::default()
        },
        &IoConfig::default(),
    );
    assert_eq!(o.status, Status::Unknown);
    assert!(o.summary.contains("/proc/pressure/io: malformed"), "{}", o.summary);
}

#[test]
fn config_validation() {
    let mut p = crate::problems::Problems::default();
    IoConfig {
        warn_await_ms: 0.0,
        warn_util_percent: 120.0,
        cgroup_parent: "../etc".into(),
        ..IoConfig::default()
    }
    .validate(&mut p);
    let text = p.to_string();
    for key in ["warn-await-ms", "warn-util-percent", "cgroup-parent"] {
        assert!(text.contains(key), "{text}");
    }
}

proptest! {
    #[test]
    fn the_parser_never_panics(text in "\\PC*") {
        let _ = parse_diskstats(&text);
    }

    #[test]
    fn lines_of_numbers_parse_or_fail_with_a_line(fields in proptest::collection::vec("[0-9]{1,12}|[a-z]{1,4}", 0..24)) {
        let text = format!("first line ignored? no\n{}\n", fields.join(" "));
        match parse_diskstats(&text) {
            Ok(_) => prop_assert!(false, "the first line is not diskstats"),
            Err(e) => prop_assert!(e.line >= 1),
        }
    }

    #[test]
    fn rates_never_panic(a in any::<[u64; 6]>(), b in any::<[u64; 6]>(), secs in 0.0f64..1e6) {
        let c = |x: [u64; 6]| DiskCounters {
            reads: x[0], sectors_read: x[1], read_ms: x[2], writes: x[3], sectors_written: x[4], io_ms: x[5],
            ..DiskCounters::default()
        };
        let d = disk_rates("x", &c(a), &c(b), secs);
        if let Some(u) = d.util_percent {
            prop_assert!((0.0..=100.0).contains(&u));
        }
    }
}
