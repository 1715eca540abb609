//! Agent mode: rates are computed across cycles, no check sleeps, and an OOM kill is held for a while.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::time::Duration;

use crate::support::FixtureHost;
use hvprobe::check::conntrack::{ConntrackCheck, ConntrackConfig};
use hvprobe::check::memory::{MemoryCheck, MemoryConfig};
use hvprobe::check::{Check, Context, Details, Mode, Status};
use hvprobe::host::HostRoot;

fn ctx(h: &FixtureHost) -> Context {
    Context::new(HostRoot::new(h.root()), Mode::Agent)
}

/// The clock is paused: time passes only when the test says so (the check's rate clock is tokio's), so the
/// rate and the hold time are exact rather than at the mercy of a loaded machine.
#[tokio::test(start_paused = true)]
async fn memory_rates_and_oom_hold_across_cycles() {
    let h = FixtureHost::kernel_6_18();
    let mut check = MemoryCheck::new(MemoryConfig {
        oom_kill_hold_secs: 1,
        ..MemoryConfig::default()
    });
    let c = ctx(&h);

    let first = check.run(&c).await;
    assert_eq!(first.status, Status::Ok, "{}", first.summary);
    let Details::Memory(d) = &first.details else {
        panic!("{first:?}")
    };
    assert_eq!(
        d.swap_in_pages_per_sec, None,
        "no rate before a second sample"
    );
    assert!(
        d.notes.iter().any(|n| n.contains("first sample")),
        "{:?}",
        d.notes
    );

    tokio::time::advance(Duration::from_millis(200)).await;
    h.set_vmstat("pswpin", 1000);
    h.set_vmstat("oom_kill", 1);
    let second = check.run(&c).await;
    assert_eq!(second.status, Status::Crit, "{}", second.summary);
    assert!(
        second.summary.contains("1 OOM kill(s)"),
        "{}",
        second.summary
    );
    assert!(second.summary.contains("swap-in"), "{}", second.summary);
    let Details::Memory(d) = &second.details else {
        panic!()
    };
    assert_eq!(d.swap_in_pages_per_sec, Some(5000.0), "1000 pages in 0.2 s");
    assert_eq!(d.oom_kills, Some(1));

    // Nothing new happened, but the OOM kill is within the hold time: still CRIT.
    let third = check.run(&c).await;
    assert_eq!(third.status, Status::Crit, "{}", third.summary);
    assert!(
        third.summary.contains("OOM kill within the last 1s"),
        "{}",
        third.summary
    );

    tokio::time::advance(Duration::from_millis(900)).await;
    let fourth_early = check.run(&c).await;
    assert_eq!(
        fourth_early.status,
        Status::Crit,
        "0.9 s after the kill, still held"
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    let fourth = check.run(&c).await;
    assert_eq!(
        fourth.status,
        Status::Ok,
        "hold expired: {}",
        fourth.summary
    );
}

#[tokio::test]
async fn conntrack_drops_between_cycles_are_crit_then_clear() {
    let h = FixtureHost::kernel_6_18();
    let mut check = ConntrackCheck::new(ConntrackConfig::default());
    let c = ctx(&h);
    let first = check.run(&c).await;
    assert_eq!(first.status, Status::Ok);
    let Details::Conntrack(d) = &first.details else {
        panic!()
    };
    assert_eq!(d.drop_delta, None);

    h.set_conntrack_stat("drop", 5);
    h.set_conntrack_stat("insert_failed", 1);
    let second = check.run(&c).await;
    assert_eq!(second.status, Status::Crit, "{}", second.summary);
    let Details::Conntrack(d) = &second.details else {
        panic!()
    };
    assert_eq!(d.drop_delta, Some(10), "5 per CPU on 2 CPUs");
    assert_eq!(d.insert_failed_delta, Some(2));

    let third = check.run(&c).await;
    assert_eq!(third.status, Status::Ok, "no new drops: {}", third.summary);
}

#[tokio::test]
async fn agent_mode_never_sleeps_for_a_window() {
    let h = FixtureHost::kernel_6_18();
    let mut mem = MemoryCheck::new(MemoryConfig {
        window_ms: 5000,
        timeout_ms: 10_000,
        ..MemoryConfig::default()
    });
    let c = ctx(&h);
    let t = std::time::Instant::now();
    let _ = mem.run(&c).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "agent mode waited for the one-shot window"
    );
}
