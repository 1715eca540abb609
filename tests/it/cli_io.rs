//! The `io` check end to end: the real binary on fixture hosts built from the 6.18 capture, and the check in
//! agent mode across cycles on a paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::time::Duration;

use crate::support::{FixtureHost, check_of, json_of, psi_text, run};
use hvprobe::check::io::{IoCheck, IoConfig};
use hvprobe::check::{Check, Context, Details, Mode, Status};
use hvprobe::host::HostRoot;

fn io_check(h: &FixtureHost) -> (i32, serde_json::Value) {
    let out = run(&[
        "check",
        "--check",
        "io",
        "--format",
        "json",
        "--root",
        h.root_str(),
    ]);
    (out.status.code().unwrap(), json_of(&out))
}

/// `/proc/diskstats` with one whole disk `sda` (and its partition `sda1`, a loop device): the kernel's own
/// layout (`%4d %7d %pg` then the counters), 20 fields.
fn diskstats(reads: u64, read_ms: u64, io_ms: u64) -> String {
    format!(
        "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n   8       0 sda {reads} 0 {} {read_ms} 0 0 0 0 0 {io_ms} {read_ms} 0 0 0 0 0 0\n   8       1 sda1 {reads} 0 {} {read_ms} 0 0 0 0 0 {io_ms} {read_ms} 0 0 0 0 0 0\n",
        reads * 8,
        reads * 8
    )
}

#[test]
fn the_live_capture_is_ok_and_names_its_disk() {
    let h = FixtureHost::kernel_6_18();
    let (code, doc) = io_check(&h);
    let c = check_of(&doc, "io");
    assert_eq!(code, 0, "{doc}");
    assert_eq!(c["status"], "ok");
    let disks = c["details"]["disks"].as_array().unwrap();
    let names: Vec<&str> = disks.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["vda"], "loop and zram devices are not disks: {c}");
    assert_eq!(c["details"]["psi_supported"], true);
}

#[test]
fn io_pressure_and_a_malformed_diskstats() {
    let h = FixtureHost::kernel_6_18();
    h.write("proc/pressure/io", &psi_text(70.0, 12.0, 1000, 900));
    let (code, doc) = io_check(&h);
    let c = check_of(&doc, "io");
    assert_eq!((code, c["status"].as_str()), (2, Some("crit")), "{c}");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .starts_with("psi io full avg10 12.00 >= 10"),
        "{c}"
    );
    // No PSI at all (old kernel, psi=0): judged on the disks, not a failure.
    h.remove("proc/pressure/io");
    let (code, doc) = io_check(&h);
    assert_eq!(code, 0, "{doc}");
    h.write("proc/diskstats", "   8       0 sda 1 2 three\n");
    let (code, doc) = io_check(&h);
    let c = check_of(&doc, "io");
    assert_eq!(
        (code, c["status"].as_str(), c["reason"].as_str()),
        (3, Some("unknown"), Some("malformed"))
    );
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary.contains("proc/diskstats: malformed: line 1"),
        "{summary}"
    );
}

/// Paused clock: one second passes exactly when the test says, so utilisation is exact.
#[tokio::test(start_paused = true)]
async fn a_saturated_disk_across_agent_cycles() {
    // No /sys under this root: whole disks are told from partitions by name.
    let h = FixtureHost::kernel_6_18();
    h.write("proc/diskstats", &diskstats(1000, 5000, 10_000));
    let mut check = IoCheck::new(IoConfig::default());
    let ctx = Context::new(HostRoot::new(h.root()), Mode::Agent);
    let first = check.run(&ctx).await;
    assert_eq!(first.status, Status::Ok, "{}", first.summary);
    tokio::time::advance(Duration::from_secs(1)).await;
    // 200 reads that took 120 ms each, the disk busy 970 ms of the second.
    h.write("proc/diskstats", &diskstats(1200, 5000 + 200 * 120, 10_970));
    let second = check.run(&ctx).await;
    assert_eq!(second.status, Status::Warn, "{}", second.summary);
    assert!(
        second.summary.starts_with("disk saturated: sda 97% busy"),
        "{}",
        second.summary
    );
    let Details::Io(d) = &second.details else {
        panic!("{second:?}")
    };
    assert_eq!(
        d.disks.len(),
        1,
        "sda1 is a partition, loop0 a loop device: {d:?}"
    );
    assert_eq!(d.disks[0].await_ms, Some(120.0));
    assert_eq!(d.disks[0].read_iops, Some(200.0));
    // The load goes away: OK again on the next cycle.
    tokio::time::advance(Duration::from_secs(1)).await;
    h.write(
        "proc/diskstats",
        &diskstats(1210, 5000 + 200 * 120 + 10, 10_980),
    );
    let third = check.run(&ctx).await;
    assert_eq!(third.status, Status::Ok, "{}", third.summary);
}
