//! Cost of the `reach` check: `cargo bench --bench reach`.
//!
//! 200 targets on loopback (127.0.0.1 to 127.0.0.200), each probed with 3 ICMP echoes and 1 TCP connect
//! per cycle (400 configured targets: 200 `icmp`, 200 `tcp` to listeners this benchmark opens on each
//! address), the check in agent mode on a current-thread runtime on this thread. CPU is this thread's
//! (RUSAGE_THREAD: the listeners accept on another thread), RSS the process's growth from before the check
//! was built to after the cycles. The baseline, in the same run: the same 200 connects done with blocking
//! `std::net::TcpStream::connect` and nothing else. Figures are printed, never asserted.
//! `HVPROBE_BENCH_CYCLES` sets the count (default 30).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop loudly

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hvprobe::check::reach::{ProbeKind, ReachCheck, ReachConfig, TargetConfig};
use hvprobe::check::{Check, Context, Details, Mode};
use hvprobe::host::HostRoot;
use nix::sys::resource::{UsageWho, getrusage};

#[path = "../tests/support/mod.rs"]
mod support;

const TARGETS: u32 = 200;
const CYCLE: Duration = Duration::from_secs(10);

fn cpu_thread() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

fn rss_kib() -> u64 {
    support::status_kib(std::process::id(), "VmRSS:")
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: u32 = std::env::var("HVPROBE_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 2 } else { 30 });
    let port = support::free_port();
    let listeners: Vec<TcpListener> = (1..=TARGETS)
        .map(|i| {
            let l = TcpListener::bind(("127.0.0.".to_owned() + &i.to_string(), port)).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let halt = stop.clone();
    let acceptor = std::thread::spawn(move || {
        while !halt.load(Ordering::Relaxed) {
            let mut any = false;
            for l in &listeners {
                while let Ok((s, _)) = l.accept() {
                    drop(s);
                    any = true;
                }
            }
            if !any {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let mut targets = Vec::new();
    for i in 1..=TARGETS {
        targets.push(TargetConfig {
            name: format!("icmp-{i}"),
            address: format!("127.0.0.{i}"),
            kind: ProbeKind::Icmp,
            critical: true,
            server_name: None,
        });
        targets.push(TargetConfig {
            name: format!("tcp-{i}"),
            address: format!("127.0.0.{i}:{port}"),
            kind: ProbeKind::Tcp,
            critical: true,
            server_name: None,
        });
    }
    let cfg = ReachConfig {
        targets,
        ..ReachConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = Context::new(HostRoot::new("/"), Mode::Agent);
    let rss0 = rss_kib();
    let mut check = ReachCheck::new(cfg);
    let mut lost = 0u32;
    let mut unreachable = 0usize;
    let mut wall = Duration::ZERO;
    let cpu0 = cpu_thread();
    for _ in 0..n {
        let t = std::time::Instant::now();
        let o = rt.block_on(check.run(&ctx));
        wall += t.elapsed();
        let Details::Reach(d) = &o.details else {
            panic!("{o:?}")
        };
        lost += d.targets.iter().map(|t| t.sent - t.received).sum::<u32>();
        unreachable += d.targets.iter().filter(|t| !t.reachable).count();
    }
    let per_cycle = (cpu_thread() - cpu0) / n;
    let rss_extra = rss_kib().saturating_sub(rss0);

    // Baseline: the same connects, blocking, nothing else.
    let b0 = cpu_thread();
    for _ in 0..n {
        for i in 1..=TARGETS {
            drop(
                std::net::TcpStream::connect(("127.0.0.".to_owned() + &i.to_string(), port))
                    .unwrap(),
            );
        }
    }
    let base = (cpu_thread() - b0) / n;
    stop.store(true, Ordering::Relaxed);
    acceptor.join().unwrap();

    // 1,000 echoes in flight at once on one socket (1,000 ICMP targets, a round sent back to back): the
    // enlarged receive buffer must leave none unanswered.
    let burst = ReachConfig {
        targets: (0..1000u32)
            .map(|i| TargetConfig {
                name: format!("burst-{i}"),
                address: format!("127.0.{}.{}", 10 + i / 250, 1 + i % 250),
                kind: ProbeKind::Icmp,
                critical: true,
                server_name: None,
            })
            .collect(),
        ..ReachConfig::default()
    };
    let mut burst_check = ReachCheck::new(burst);
    let mut burst_lost = 0u32;
    for _ in 0..n.min(3) {
        let o = rt.block_on(burst_check.run(&ctx));
        let Details::Reach(d) = &o.details else {
            panic!("{o:?}")
        };
        burst_lost += d.targets.iter().map(|t| t.sent - t.received).sum::<u32>();
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let share = per_cycle.as_secs_f64() / CYCLE.as_secs_f64() * 100.0;
    println!(
        "hvprobe bench: reach, {TARGETS} targets x (3 ICMP + 1 TCP), {n} cycles, agent mode, loopback"
    );
    println!(
        "  CPU per cycle    {:.2} ms = {share:.3} % of one core at a 10 s cycle (goal <= 0.5 %)",
        ms(per_cycle)
    );
    println!(
        "  baseline         {:.2} ms ({TARGETS} blocking connects alone), ratio {:.2}x",
        ms(base),
        per_cycle.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
    println!(
        "  extra RSS        {:.2} MiB (goal <= 2 MiB)",
        rss_extra as f64 / 1024.0
    );
    println!(
        "  echoes lost      {lost} of {} (no false timeouts on loopback); targets unreachable {unreachable}; wall per cycle {:.0} ms",
        n * TARGETS * 3,
        ms(wall / n)
    );
    println!(
        "  1,000 echoes in flight: {burst_lost} lost of {} over {} cycles",
        n.min(3) * 3000,
        n.min(3)
    );
    println!(
        "RESULT targets={TARGETS} cycles={n} cpu_ms_per_cycle={:.3} core_percent={share:.4} baseline_ms={:.3} ratio={:.2} extra_rss_mib={:.2} lost_echoes={lost} lost_of_1000_in_flight={burst_lost}",
        ms(per_cycle),
        ms(base),
        per_cycle.as_secs_f64() / base.as_secs_f64().max(1e-9),
        rss_extra as f64 / 1024.0
    );
}
