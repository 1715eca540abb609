//! Parsers on kernel text, the verdict at every threshold, counter wrap.

use super::*;
use crate::check::Status;
use proptest::prelude::*;

const NEW: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000006  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000002 00000000 00000000  00000000 00000000 00000000 00000000\n\
00000006  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003 00000000 00000000  00000000 00000000 00000000 00000000\n";

fn obs(entries: u64, max: u64) -> Observation {
    Observation {
        entries,
        max,
        counters_available: true,
        deltas: Some(Deltas {
            drop: Some(0),
            early_drop: Some(0),
            insert_failed: Some(0),
            secs: 1.0,
        }),
    }
}

#[test]
fn parses_by_header_name() {
    let s = parse_stat(NEW).unwrap();
    assert_eq!(s.rows.len(), 2);
    assert_eq!(s.total("entries"), Some(6));
    assert_eq!(s.total("drop"), Some(5));
    assert_eq!(s.total("insert_failed"), Some(1));
    assert_eq!(s.total("searched"), None);
    assert!(s.total("clashres").is_some());
}

#[test]
fn each_threshold_is_crossed() {
    let cfg = ConntrackConfig::default();
    let cases = [
        (obs(0, 262_144), Status::Ok, "0/262144 entries (0.0%)"),
        (obs(74, 100), Status::Ok, "74/100"),
        (obs(75, 100), Status::Warn, "table 75.0% full >= 75%"),
        (obs(90, 100), Status::Crit, "table 90.0% full >= 90%"),
        (
            Observation {
                deltas: Some(Deltas {
                    drop: Some(3),
                    secs: 1.0,
                    ..Deltas::default()
                }),
                ..obs(10, 100)
            },
            Status::Crit,
            "3 new flow(s) dropped",
        ),
        (
            Observation {
                deltas: Some(Deltas {
                    early_drop: Some(4),
                    secs: 2.0,
                    ..Deltas::default()
                }),
                ..obs(10, 100)
            },
            Status::Warn,
            "4 early drop(s) in 2s",
        ),
        (
            Observation {
                counters_available: false,
                deltas: None,
                ..obs(10, 100)
            },
            Status::Ok,
            "counters unavailable",
        ),
        (obs(10, 0), Status::Ok, "no limit"),
    ];
    for (o, want, text) in cases {
        let out = evaluate(&o, &cfg);
        assert_eq!(out.status, want, "{}", out.summary);
        assert!(
            out.summary.contains(text),
            "{:?} lacks {text:?}",
            out.summary
        );
    }
}

#[test]
fn deltas_handle_32bit_wrap_and_changed_layout() {
    let a = ConntrackStat {
        columns: vec!["entries".into(), "drop".into()],
        rows: vec![vec![1, 0xffff_fff0], vec![1, 5]],
    };
    let b = ConntrackStat {
        columns: a.columns.clone(),
        rows: vec![vec![1, 0x10], vec![1, 7]],
    };
    assert_eq!(a.delta(&b, "drop"), Some(0x20 + 2));
    let fewer = ConntrackStat {
        columns: a.columns.clone(),
        rows: vec![vec![1, 9]],
    };
    assert_eq!(a.delta(&fewer, "drop"), None);
    assert_eq!(a.delta(&b, "early_drop"), None);
}

#[test]
fn malformed_stat_files_are_errors() {
    assert!(parse_stat("").is_err());
    assert!(parse_stat("entries drop\n").is_err());
    assert_eq!(parse_stat("entries drop\n0001 zz\n").unwrap_err().line, 2);
    assert_eq!(parse_stat("entries drop\n0001\n").unwrap_err().line, 2);
    assert!(parse_stat("0001 0002\n0001 0002\n").is_err());
    assert!(parse_number("").is_err());
    assert!(parse_number("12a").is_err());
    assert_eq!(parse_number("262144\n"), Ok(262_144));
}

proptest! {
    #[test]
    fn stat_parser_never_panics(s in "\\PC*") {
        let _ = parse_stat(&s);
    }

    #[test]
    fn stat_parser_never_panics_on_near_misses(s in "entries( [a-z_]{1,8}){0,4}\n([0-9a-f]{1,9}( [0-9a-fx]{1,9}){0,4}\n){0,4}") {
        if let Ok(stat) = parse_stat(&s) {
            let _ = stat.total("drop");
            let _ = stat.delta(&stat, "entries");
        }
    }
}
