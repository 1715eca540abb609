//! The verdict table row by row, ordering, expected arrays, UUID spellings, stalls.

use super::merge::natural_key;
use super::*;
use std::time::Duration;

use tokio::time::Instant;

use super::mdstat::parse_mdstat;
use crate::check::Status;

fn mdstat_arrays(text: &str) -> Vec<ArrayInfo> {
    merge(Vec::new(), Some(&parse_mdstat(text).unwrap()))
}

fn verdict(text: &str) -> (Status, String) {
    let obs = Observation {
        arrays: mdstat_arrays(text),
        md_present: true,
        ..Observation::default()
    };
    let out = evaluate(&obs, &MdRaidConfig::default());
    (out.status, out.summary)
}

#[test]
fn verdict_table() {
    let cases: &[(&str, &str, Status, &str)] = &[
        (
            "in sync",
            "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n",
            Status::Ok,
            "1 array OK: md0 raid1 [UU]",
        ),
        (
            "scheduled check",
            "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  [=>..]  check = 5.7% (5/100) finish=0.2min speed=114176K/sec\n",
            Status::Ok,
            "md0 check 5.7%, ETA 12s",
        ),
        (
            "resync after unclean shutdown",
            "md8 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  [=>..]  resync =  8.5% (8/100) finish=17.0min speed=259783K/sec\n",
            Status::Warn,
            "md8 resync 8.5%, ETA 17m",
        ),
        (
            "pending resync",
            "md9 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  resync=DELAYED\n",
            Status::Warn,
            "md9 resync pending (DELAYED)",
        ),
        (
            "reshape",
            "md4 : active raid5 a[0] b[1] c[2] d[3]\n  100 blocks [4/4] [UUUU]\n  [=>..]  reshape = 56.1% (56/100) finish=1868.1min speed=7640K/sec\n",
            Status::Warn,
            "md4 reshape 56.1%, ETA 1d07h",
        ),
        (
            "degraded raid6 recovering, redundancy left",
            "md6 : active raid6 a[0] b[1] c[2] d[4]\n  100 blocks [4/3] [UUU_]\n  [=>..]  recovery = 42.1% (42/100) finish=37.0min speed=1000K/sec\n",
            Status::Warn,
            "md6 degraded [UUU_] recovering 42.1%, ETA 37m",
        ),
        (
            "2-disk raid1 recovering: no redundancy left",
            "md1 : active raid1 b[2] a[0]\n  100 blocks [2/1] [U_]\n  [=>..]  recovery = 42.1% (42/100) finish=37.0min speed=1000K/sec\n",
            Status::Crit,
            "md1 degraded [U_] recovering 42.1%, ETA 37m, no redundancy left",
        ),
        (
            "degraded, not recovering",
            "md7 : active raid6 a[0] b[1](F) c[2] d[3]\n  100 blocks [4/3] [U_UU]\n",
            Status::Crit,
            "md7 degraded [U_UU] (1 of 4 missing), not recovering",
        ),
        (
            "faulty member attached, spare took over",
            "md5 : active raid1 a[0] b[2](F) c[1]\n  100 blocks [2/2] [UU]\n",
            Status::Warn,
            "md5 raid1 [UU], faulty member b still attached",
        ),
        (
            "inactive",
            "md4 : inactive a[0](F) b[1](S)\n  100 blocks\n",
            Status::Crit,
            "md4 inactive",
        ),
        (
            "container is not an inactive array",
            "md219 : inactive sdb[2](S) sdc[1](S)\n  7932 blocks super external:imsm\n",
            Status::Ok,
            "md219 container",
        ),
        (
            "raid5 two missing: failed",
            "md3 : active raid5 a[0] b[1]\n  100 blocks [4/2] [UU__]\n",
            Status::Crit,
            "md3 failed [UU__]: 2 of 4 missing, more than raid5 survives",
        ),
    ];
    for (name, text, want, summary) in cases {
        let (got, s) = verdict(text);
        assert_eq!(got, *want, "{name}: {s}");
        assert!(s.contains(summary), "{name}: {s:?} lacks {summary:?}");
    }
}

#[test]
fn worst_array_comes_first() {
    let (status, summary) = verdict(
        "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n\nmd8 : active raid1 c[0] d[1]\n  100 blocks [2/2] [UU]\n  [=>..]  resync =  8.5% (8/100) finish=17.0min speed=1K/sec\n\nmd1 : active raid1 e[0]\n  100 blocks [2/1] [U_]\n",
    );
    assert_eq!(status, Status::Crit);
    assert!(summary.starts_with("md1 degraded [U_]"), "{summary}");
    assert!(summary.contains("; md8 resync 8.5%"), "{summary}");
    assert!(summary.ends_with("; 1 other array OK"), "{summary}");
}

#[test]
fn expected_and_ignored_arrays() {
    let arrays = mdstat_arrays("md0 : active raid1 a[0] b[1]\n  100 blocks [2/1] [U_]\n");
    let obs = Observation {
        arrays,
        md_present: true,
        ..Observation::default()
    };
    let cfg = MdRaidConfig {
        expect_arrays: vec!["md7".into()],
        ignore_arrays: vec!["md0".into()],
        ..MdRaidConfig::default()
    };
    let out = evaluate(&obs, &cfg);
    assert_eq!(out.status, Status::Crit);
    assert_eq!(out.summary, "md7 missing (expected)");
    let none = evaluate(&Observation::default(), &MdRaidConfig::default());
    assert_eq!(none.status, Status::Ok);
    assert_eq!(none.summary, "no md arrays (md driver not loaded)");
}

#[test]
fn uuids_match_in_both_spellings() {
    let a = ArrayInfo {
        uuid: Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef".into()),
        ..from_mdstat(
            &parse_mdstat("md1 : active raid1 a[0]\n 1 blocks [1/1] [U]\n")
                .unwrap()
                .arrays[0],
        )
    };
    assert!(a.matches("0fbf5f2c:add243c2:bd78a4be:3ab709ef"));
    assert!(a.matches("md1"));
    assert!(!a.matches("md2"));
}

#[test]
fn stall_after_no_progress() {
    let text = "md1 : active raid1 b[2] a[0] c[1]\n  100 blocks [3/2] [UU_]\n  [=>..]  recovery = 42.1% (42/100) finish=37.0min speed=1000K/sec\n";
    let mut tracker = StallTracker::default();
    let t0 = Instant::now();
    let after = Duration::from_secs(600);
    let mut arrays = mdstat_arrays(text);
    tracker.observe(&mut arrays, t0, after);
    assert_eq!(arrays[0].stalled_secs, None);
    let mut arrays = mdstat_arrays(text);
    tracker.observe(&mut arrays, t0 + Duration::from_secs(601), after);
    assert_eq!(arrays[0].stalled_secs, Some(601));
    let obs = Observation {
        arrays,
        md_present: true,
        ..Observation::default()
    };
    let out = evaluate(&obs, &MdRaidConfig::default());
    assert_eq!(out.status, Status::Crit);
    assert!(
        out.summary
            .starts_with("md1 stalled: recover at 42.1% for 10m"),
        "{}",
        out.summary
    );
    // Progress resumes: the clock restarts.
    let mut arrays = mdstat_arrays(&text.replace("(42/100)", "(43/100)"));
    tracker.observe(&mut arrays, t0 + Duration::from_secs(700), after);
    assert_eq!(arrays[0].stalled_secs, None);
}

#[test]
fn natural_order() {
    let mut v = vec!["md10", "md2", "md_d0", "md127", "md0"];
    v.sort_by_key(|n| natural_key(n));
    assert_eq!(v, ["md0", "md2", "md10", "md127", "md_d0"]);
}
