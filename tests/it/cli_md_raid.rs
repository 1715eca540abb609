//! `hvprobe check --check md-raid` on fixture hosts, one per row of the verdict table. Each host has both
//! sources, consistent with each other, in the kernel's formats: `/proc/mdstat` as drivers/md/md.c prints it
//! and `/sys/block/mdN/md/*` one value per file (sync_completed in sectors = 2 x mdstat blocks).
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::time::Duration;

use crate::support::{FixtureHost, check_of, json_of, run};
use hvprobe::check::md_raid::{MdRaidCheck, MdRaidConfig};
use hvprobe::check::{Check, Context, Details, Mode, Status};
use hvprobe::host::HostRoot;

/// One array on a fixture host.
struct Md<'a> {
    name: &'a str,
    uuid: &'a str,
    level: &'a str,
    raid_disks: u32,
    array_state: &'a str,
    degraded: Option<u32>,
    sync_action: &'a str,
    /// Sectors done / total, or a word (`none`, `delayed`).
    sync_completed: &'a str,
    sync_speed: &'a str,
    mismatch_cnt: u64,
    /// (device, sysfs state flags)
    members: &'a [(&'a str, &'a str)],
    /// The array's block in /proc/mdstat.
    mdstat: &'a str,
}

impl Md<'_> {
    fn install(&self, h: &FixtureHost) {
        let base = format!("sys/block/{}/md", self.name);
        h.write(
            &format!("{base}/array_state"),
            &format!("{}\n", self.array_state),
        );
        h.write(&format!("{base}/level"), &format!("{}\n", self.level));
        h.write(
            &format!("{base}/raid_disks"),
            &format!("{}\n", self.raid_disks),
        );
        h.write(&format!("{base}/uuid"), &format!("{}\n", self.uuid));
        if let Some(d) = self.degraded {
            h.write(&format!("{base}/degraded"), &format!("{d}\n"));
            h.write(
                &format!("{base}/sync_action"),
                &format!("{}\n", self.sync_action),
            );
            h.write(
                &format!("{base}/sync_completed"),
                &format!("{}\n", self.sync_completed),
            );
            h.write(
                &format!("{base}/sync_speed"),
                &format!("{}\n", self.sync_speed),
            );
            h.write(
                &format!("{base}/mismatch_cnt"),
                &format!("{}\n", self.mismatch_cnt),
            );
        }
        for (dev, state) in self.members {
            h.write(&format!("{base}/dev-{dev}/state"), &format!("{state}\n"));
        }
        let mdstat = h.path("proc/mdstat");
        let mut text = if mdstat.exists() {
            h.read("proc/mdstat")
                .replace("unused devices: <none>\n", "")
        } else {
            "Personalities : [raid1] [raid6] [raid5] [raid4] [raid10]\n".to_owned()
        };
        text.push_str(self.mdstat);
        text.push_str("\nunused devices: <none>\n");
        h.write("proc/mdstat", &text);
    }
}

const UUID1: &str = "0fbf5f2c-add2-43c2-bd78-a4be3ab709ef";
const UUID2: &str = "7615b98d-f2ba-4d99-bee8-6202d8e130b9";

fn raid1_clean(name: &'static str) -> Md<'static> {
    Md {
        name,
        uuid: UUID1,
        level: "raid1",
        raid_disks: 2,
        array_state: "clean",
        degraded: Some(0),
        sync_action: "idle",
        sync_completed: "none",
        sync_speed: "none",
        mismatch_cnt: 0,
        members: &[("sda1", "in_sync"), ("sdb1", "in_sync")],
        mdstat: "md0 : active raid1 sdb1[1] sda1[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n      bitmap: 0/1 pages [0KB], 65536KB chunk\n",
    }
}

fn md_check(h: &FixtureHost, config: Option<&str>) -> (i32, serde_json::Value) {
    let mut args = vec![
        "check",
        "--root",
        h.root_str(),
        "--check",
        "md-raid",
        "--format",
        "json",
    ];
    let path;
    if let Some(c) = config {
        path = h.path("md.toml");
        std::fs::write(&path, c).unwrap();
        args.extend(["--config", path.to_str().unwrap()]);
    }
    let out = run(&args);
    (out.status.code().unwrap(), json_of(&out))
}

fn array<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    check_of(doc, "md-raid")["details"]["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no array {name} in {doc}"))
}

fn assert_verdict(
    md: &[Md],
    config: Option<&str>,
    code: i32,
    summary_starts: &str,
) -> serde_json::Value {
    let h = FixtureHost::kernel_6_18();
    for m in md {
        m.install(&h);
    }
    let (got, doc) = md_check(&h, config);
    let c = check_of(&doc, "md-raid");
    assert_eq!(got, code, "{c}");
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(summary_starts),
        "{summary:?} does not start with {summary_starts:?}"
    );
    doc
}

#[test]
fn in_sync_and_idle_is_ok() {
    let doc = assert_verdict(&[raid1_clean("md0")], None, 0, "1 array OK: md0 raid1 [UU]");
    let a = array(&doc, "md0");
    assert_eq!(a["uuid"], UUID1);
    assert_eq!(a["level"], "raid1");
    assert_eq!(a["state"], "clean");
    assert_eq!(
        (a["raid_disks"].as_u64(), a["active_disks"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (a["failed_disks"].as_u64(), a["spare_disks"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(a["degraded"], 0);
    assert_eq!(a["sync_action"], "idle");
    assert!(
        a["sync_percent"].is_null()
            && a["sync_eta_secs"].is_null()
            && a["sync_speed_kib_per_sec"].is_null()
    );
    assert_eq!(a["source"], "sysfs+mdstat");
    assert_eq!(a["status"], "ok");
}

#[test]
fn scheduled_check_is_ok_with_progress() {
    let md = Md {
        sync_action: "check",
        sync_completed: "449536 / 2097024",
        sync_speed: "22476",
        mdstat: "md0 : active raid1 sdb1[1] sda1[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n      [====>................]  check = 21.4% (224768/1048512) finish=0.6min speed=22476K/sec\n",
        ..raid1_clean("md0")
    };
    let doc = assert_verdict(&[md], None, 0, "1 array OK: md0 check 21.4%, ETA 36s");
    let a = array(&doc, "md0");
    assert_eq!(a["sync_percent"], 21.4);
    assert_eq!(a["sync_speed_kib_per_sec"], 22476);
    // (2097024 - 449536) sectors / 2 / 22476 KiB/s
    assert_eq!(a["sync_eta_secs"], 36);
}

#[test]
fn resync_after_unclean_shutdown_warns_with_eta() {
    let md = Md {
        array_state: "active",
        sync_action: "resync",
        sync_completed: "178956 / 2097024",
        sync_speed: "8000",
        mdstat: "md0 : active raid1 sdb1[1] sda1[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n      [=>...................]  resync =  8.5% (89478/1048512) finish=1.9min speed=8000K/sec\n",
        ..raid1_clean("md0")
    };
    assert_verdict(&[md], None, 1, "md0 resync 8.5%, ETA 1m");
}

#[test]
fn pending_resync_warns() {
    let md = Md {
        array_state: "active",
        sync_action: "resync",
        sync_completed: "delayed",
        mdstat: "md0 : active raid1 sdb1[1] sda1[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n        resync=DELAYED\n",
        ..raid1_clean("md0")
    };
    assert_verdict(&[md], None, 1, "md0 resync pending (delayed)");
}

#[test]
fn reshape_warns_and_reads_new_old_raid_disks() {
    let md = Md {
        name: "md5",
        uuid: UUID2,
        level: "raid5",
        raid_disks: 4,
        array_state: "active",
        sync_action: "reshape",
        sync_completed: "1048576 / 4194304",
        sync_speed: "10240",
        members: &[
            ("sda2", "in_sync"),
            ("sdb2", "in_sync"),
            ("sdc2", "in_sync"),
            ("sdd2", "in_sync"),
        ],
        mdstat: "md5 : active raid5 sdd2[4] sdc2[2] sdb2[1] sda2[0]\n      4194304 blocks super 1.2 level 5, 512k chunk, algorithm 2 [4/4] [UUUU]\n      [====>................]  reshape = 25.0% (524288/2097152) finish=2.5min speed=10240K/sec\n",
        ..raid1_clean("md5")
    };
    let h = FixtureHost::kernel_6_18();
    md.install(&h);
    h.write("sys/block/md5/md/raid_disks", "4 (3)\n");
    let (code, doc) = md_check(&h, None);
    assert_eq!(code, 1);
    let a = array(&doc, "md5");
    assert_eq!(a["raid_disks"], 4);
    assert_eq!(a["sync_action"], "reshape");
    assert_eq!(a["summary"], "md5 reshape 25.0%, ETA 2m");
}

#[test]
fn degraded_recovering_with_redundancy_left_warns() {
    let md = Md {
        name: "md6",
        uuid: UUID2,
        level: "raid6",
        raid_disks: 4,
        array_state: "active",
        degraded: Some(1),
        sync_action: "recover",
        sync_completed: "1569888 / 2093056",
        sync_speed: "259783",
        members: &[
            ("sdq", "in_sync"),
            ("sdr", "in_sync"),
            ("sds", "in_sync"),
            ("sdt", "spare"),
        ],
        mdstat: "md6 : active raid6 sdt[4] sds[2] sdr[1] sdq[0]\n      2093056 blocks super 1.2 level 6, 512k chunk, algorithm 2 [4/3] [UUU_]\n      [===============>.....]  recovery = 75.0% (784944/1046528) finish=0.0min speed=259783K/sec\n",
        ..raid1_clean("md6")
    };
    let doc = assert_verdict(
        &[md],
        None,
        1,
        "md6 degraded [UUU_] recovering 75.0%, ETA 1s",
    );
    let a = array(&doc, "md6");
    assert_eq!(
        (a["raid_disks"].as_u64(), a["active_disks"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(a["degraded"], 1);
    assert_eq!(a["spare_disks"], 1);
}

#[test]
fn degraded_recovering_without_redundancy_is_crit() {
    let md = Md {
        array_state: "active",
        degraded: Some(1),
        sync_action: "recover",
        sync_completed: "882862 / 2097024",
        sync_speed: "20000",
        members: &[("sda1", "in_sync"), ("sdc1", "spare")],
        mdstat: "md0 : active raid1 sdc1[2] sda1[0]\n      1048512 blocks super 1.2 [2/1] [U_]\n      [========>............]  recovery = 42.1% (441431/1048512) finish=0.5min speed=20000K/sec\n",
        ..raid1_clean("md0")
    };
    assert_verdict(
        &[md],
        None,
        2,
        "md0 degraded [U_] recovering 42.1%, ETA 30s, no redundancy left",
    );
}

#[test]
fn degraded_and_not_recovering_is_crit() {
    let md = Md {
        array_state: "clean",
        degraded: Some(1),
        members: &[("sda1", "in_sync"), ("sdb1", "faulty")],
        mdstat: "md0 : active raid1 sdb1[1](F) sda1[0]\n      1048512 blocks super 1.2 [2/1] [U_]\n",
        ..raid1_clean("md0")
    };
    let doc = assert_verdict(
        &[md],
        None,
        2,
        "md0 degraded [U_] (1 of 2 missing), not recovering",
    );
    assert_eq!(array(&doc, "md0")["failed_disks"], 1);
}

#[test]
fn faulty_member_attached_while_not_degraded_warns() {
    let md = Md {
        members: &[("sda1", "in_sync"), ("sdb1", "faulty"), ("sdc1", "in_sync")],
        mdstat: "md0 : active raid1 sdc1[2] sdb1[1](F) sda1[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n",
        ..raid1_clean("md0")
    };
    assert_verdict(
        &[md],
        None,
        1,
        "md0 raid1 [UU], faulty member sdb1 still attached",
    );
}

#[test]
fn inactive_and_broken_arrays_are_crit() {
    let inactive = Md {
        array_state: "inactive",
        degraded: None,
        members: &[("sda1", "spare"), ("sdb1", "spare")],
        mdstat: "md0 : inactive sdb1[1](S) sda1[0](S)\n      2097024 blocks super 1.2\n",
        ..raid1_clean("md0")
    };
    assert_verdict(&[inactive], None, 2, "md0 inactive");
    let broken = Md {
        name: "md3",
        level: "raid0",
        array_state: "broken",
        degraded: None,
        mdstat: "md3 : active raid0 sdb1[1] sda1[0]\n      2097024 blocks super 1.2 512k chunks\n",
        ..raid1_clean("md3")
    };
    assert_verdict(&[broken], None, 2, "md3 broken");
}

#[test]
fn mismatch_after_check_on_raid5_warns() {
    let md = Md {
        name: "md5",
        uuid: UUID2,
        level: "raid5",
        raid_disks: 3,
        mismatch_cnt: 128,
        members: &[
            ("sda2", "in_sync"),
            ("sdb2", "in_sync"),
            ("sdc2", "in_sync"),
        ],
        mdstat: "md5 : active raid5 sdc2[2] sdb2[1] sda2[0]\n      2097152 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/3] [UUU]\n",
        ..raid1_clean("md5")
    };
    assert_verdict(
        &[md],
        None,
        1,
        "md5 raid5 [UUU], mismatch_cnt 128 after check",
    );
}

#[test]
fn expected_arrays_missing_and_no_md_driver() {
    // No /proc/mdstat at all: the md driver is not loaded.
    let h = FixtureHost::kernel_6_18();
    let (code, doc) = md_check(&h, None);
    assert_eq!(code, 0);
    assert_eq!(
        check_of(&doc, "md-raid")["summary"],
        "no md arrays (md driver not loaded)"
    );
    let expect = "[[check]]\nkind = \"md-raid\"\nexpect-arrays = [\"md1\", \"7615b98d:f2ba4d99:bee86202:d8e130b9\"]\n";
    let (code, doc) = md_check(&h, Some(expect));
    assert_eq!(code, 2);
    assert_eq!(
        check_of(&doc, "md-raid")["summary"],
        "md1 missing (expected); 7615b98d:f2ba4d99:bee86202:d8e130b9 missing (expected)"
    );
    // The UUID in mdadm's spelling finds md0 (sysfs spelling), whatever its name is this boot.
    let h = FixtureHost::kernel_6_18();
    raid1_clean("md127").install(&h);
    let (code, doc) = md_check(
        &h,
        Some(
            "[[check]]\nkind = \"md-raid\"\nexpect-arrays = [\"0fbf5f2c:add243c2:bd78a4be:3ab709ef\"]\n",
        ),
    );
    assert_eq!(code, 0, "{doc}");
}

#[test]
fn malformed_sources_are_unknown_and_named() {
    let h = FixtureHost::kernel_6_18();
    h.write(
        "proc/mdstat",
        &crate::support::corpus_text("mdstat/procfs_invalid_3.txt"),
    );
    let (code, doc) = md_check(&h, None);
    assert_eq!(code, 3);
    let c = check_of(&doc, "md-raid");
    assert_eq!(c["reason"], "malformed");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("proc/mdstat: malformed: line 2: member \"sdj2[1](Z)\": unknown flag (Z)"),
        "{c}"
    );

    // A malformed sysfs value names its file; mdstat still gives the arrays.
    let h = FixtureHost::kernel_6_18();
    raid1_clean("md0").install(&h);
    h.write("sys/block/md0/md/degraded", "lots\n");
    let (code, doc) = md_check(&h, None);
    assert_eq!(code, 3);
    let c = check_of(&doc, "md-raid");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("sys/block/md0/md/degraded: malformed"),
        "{c}"
    );
    assert_eq!(array(&doc, "md0")["source"], "mdstat");
}

/// Paused clock: the stall timer runs on tokio's clock, so one second passes exactly when the test says.
#[tokio::test(start_paused = true)]
async fn a_recovery_without_progress_stalls_in_agent_mode() {
    let h = FixtureHost::kernel_6_18();
    Md {
        array_state: "active",
        degraded: Some(1),
        sync_action: "recover",
        sync_completed: "882862 / 2097024",
        sync_speed: "0",
        raid_disks: 3,
        members: &[("sda1", "in_sync"), ("sdb1", "in_sync"), ("sdc1", "spare")],
        mdstat: "md0 : active raid1 sdc1[3] sdb1[1] sda1[0]\n      1048512 blocks super 1.2 [3/2] [UU_]\n      [========>............]  recovery = 42.1% (441431/1048512) finish=9999.9min speed=0K/sec\n",
        ..raid1_clean("md0")
    }
    .install(&h);
    // stall-after-secs is validated to be >= 10 in configs; the check itself takes any value.
    let mut check = MdRaidCheck::new(MdRaidConfig {
        stall_after_secs: 1,
        ..MdRaidConfig::default()
    });
    let ctx = Context::new(HostRoot::new(h.root()), Mode::Agent);
    let first = check.run(&ctx).await;
    assert_eq!(first.status, Status::Warn, "{}", first.summary);
    tokio::time::advance(Duration::from_millis(999)).await;
    let early = check.run(&ctx).await;
    assert_eq!(
        early.status,
        Status::Warn,
        "not stalled before 1 s: {}",
        early.summary
    );
    tokio::time::advance(Duration::from_millis(101)).await;
    let second = check.run(&ctx).await;
    assert_eq!(second.status, Status::Crit, "{}", second.summary);
    assert!(
        second
            .summary
            .starts_with("md0 stalled: recover at 42.1% for 1s"),
        "{}",
        second.summary
    );
    let Details::MdRaid(d) = &second.details else {
        panic!()
    };
    assert_eq!(d.arrays[0].stalled_secs, Some(1));

    // Progress resumes: no longer stalled.
    h.write("sys/block/md0/md/sync_completed", "900000 / 2097024\n");
    let third = check.run(&ctx).await;
    assert_eq!(third.status, Status::Warn, "{}", third.summary);
}

#[test]
fn the_whole_procfs_fixture_names_the_worst_array_first() {
    let h = FixtureHost::kernel_6_18();
    h.write(
        "proc/mdstat",
        &crate::support::corpus_text("mdstat/procfs_fixture.txt"),
    );
    let (code, doc) = md_check(&h, None);
    assert_eq!(code, 2);
    let summary = check_of(&doc, "md-raid")["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        summary.starts_with(
            "md4 inactive; md6 degraded [U_] recovering 8.5%, ETA 17m, no redundancy left"
        ),
        "{summary}"
    );
    assert_eq!(
        array(&doc, "md219")["status"],
        "ok",
        "an IMSM container is not an inactive array"
    );
    assert_eq!(
        array(&doc, "md201")["status"],
        "ok",
        "a scheduled check is not an alarm"
    );
    assert_eq!(array(&doc, "md8")["status"], "warn");
}
