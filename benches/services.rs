//! Cost of the `services` check: `cargo bench --bench services`.
//!
//! A real `systemd --user` on a bus of its own (the lab of the integration tests) with 10 running services;
//! the check runs in agent mode in this process on a current-thread runtime, as many cycles as asked, and
//! its CPU is this process's user+sys (systemd and dbus-daemon are other processes). The baseline, measured
//! in the same run on the same kind of zbus connection: as many calls as a cycle makes (one
//! `ListUnitsByNames` and two property reads per unit) made one at a time, as bare `Peer.Ping` calls: the
//! transport cost alone of a proxy that waits for each reply (the check batches its property reads).
//! systemd's own CPU per cycle is printed too: that is the load the poll puts on the manager.
//! Figures are printed, never asserted. `HVPROBE_BENCH_CYCLES` sets the count (default 2000).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop loudly

use std::time::Duration;

use hvprobe::check::services::{ServicesCheck, ServicesConfig};
use hvprobe::check::{Check, Context, Mode, Status};
use hvprobe::host::HostRoot;
use nix::sys::resource::{UsageWho, getrusage};

#[path = "../tests/support/mod.rs"]
mod support;

const UNITS: usize = 10;

fn cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not and gets a quick smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: u32 = std::env::var("HVPROBE_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 20 } else { 2000 });
    let units: Vec<(String, String)> = (0..UNITS)
        .map(|i| {
            (
                format!("unit{i}.service"),
                "[Service]\nExecStart=/bin/sleep infinity\n".to_owned(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = units
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let lab = support::systemd::SystemdLab::start(&refs);
    for (name, _) in &units {
        lab.start_unit(name);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = ServicesConfig {
        units: units.iter().map(|(n, _)| n.clone()).collect(),
        bus: lab.address.clone(),
        ..ServicesConfig::default()
    };
    let ctx = Context::new(HostRoot::new("/"), Mode::Agent);
    let mut check = ServicesCheck::new(cfg);
    // Warm: connect, read the boot state, every unit active.
    let ok = support::wait_for(Duration::from_secs(20), || {
        let o = rt.block_on(check.run(&ctx));
        (o.status == Status::Ok).then_some(o)
    })
    .unwrap_or_else(|| panic!("units did not come up: {}", lab.log()));
    assert_eq!(ok.summary, format!("all {UNITS} units active"));

    let pid1 = lab.systemd_pid().unwrap();
    let sd0 = support::cpu_threads(pid1);
    let t0 = cpu();
    for _ in 0..n {
        let o = rt.block_on(check.run(&ctx));
        assert_eq!(o.status, Status::Ok, "{o:?}");
    }
    let per_cycle = (cpu() - t0) / n;
    let systemd_per_cycle = (support::cpu_threads(pid1) - sd0) / n;

    // Baseline: the same number of round trips to systemd, as bare pings on one zbus connection.
    let calls = 1 + 2 * UNITS as u32;
    let base = rt.block_on(async {
        let conn = zbus::connection::Builder::address(lab.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let ping = || {
            conn.call_method(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            )
        };
        ping().await.unwrap();
        let t0 = cpu();
        for _ in 0..n {
            for _ in 0..calls {
                ping().await.unwrap();
            }
        }
        (cpu() - t0) / n
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("hvprobe bench: services check, {UNITS} active units, {n} cycles, agent mode");
    println!(
        "  agent CPU per cycle   {:.3} ms ({calls} D-Bus calls; goal <= 0.3 ms)",
        ms(per_cycle)
    );
    println!(
        "  baseline              {:.3} ms ({calls} bare Peer.Ping calls, one at a time), ratio {:.2}x",
        ms(base),
        per_cycle.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
    println!(
        "  systemd CPU per cycle {:.3} ms (the load on the manager)",
        ms(systemd_per_cycle)
    );
    println!(
        "RESULT units={UNITS} cycles={n} cpu_ms_per_cycle={:.3} baseline_ms={:.3} ratio={:.2} systemd_ms_per_cycle={:.3} calls_per_cycle={calls}",
        ms(per_cycle),
        ms(base),
        per_cycle.as_secs_f64() / base.as_secs_f64().max(1e-9),
        ms(systemd_per_cycle)
    );
}
