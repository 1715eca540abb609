//! The agent's footprint next to Debian's node_exporter, in one run: `cargo bench --bench agent`.
//!
//! A real collector and a real agent (release build) run on this machine's /proc and /sys; Debian's
//! `prometheus-node-exporter` runs with the equivalent collectors (meminfo, vmstat, pressure, conntrack,
//! mdadm) and is scraped over loopback at the same interval. CPU time is read from
//! `/proc/<pid>/task/*/schedstat` (nanoseconds, every thread), RSS from `/proc/<pid>/status`.
//! Figures are printed, never asserted. `HVPROBE_BENCH_SECS` sets the window (default 60 s).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop loudly

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{ChildGuard as Guard, free_port};

/// On-CPU time of every thread: the agent's threads live through the window (the blocking pool keeps
/// them 30 s, cycles come every 2 s).
fn cpu(pid: u32) -> Duration {
    support::cpu_threads(pid)
}

/// `(VmRSS, VmHWM)` in KiB.
fn rss(pid: u32) -> (u64, u64) {
    (
        support::status_kib(pid, "VmRSS:"),
        support::status_kib(pid, "VmHWM:"),
    )
}

fn http_get(addr: &str, path: &str) -> usize {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.len()
}

fn wait_http(addr: &str) {
    for _ in 0..200 {
        if http_get(addr, "/metrics") > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} did not answer");
}

struct Measure {
    name: &'static str,
    cpu_per_cycle: Duration,
    rss_kib: u64,
    hwm_kib: u64,
    cycles: u64,
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let window = Duration::from_secs(
        std::env::var("HVPROBE_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 4 } else { 60 }),
    );
    let interval = Duration::from_secs(2);
    let bin = env!("CARGO_BIN_EXE_hvprobe");
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let _collector = Guard(
        Command::new(env!("CARGO_BIN_EXE_hvprobe-collector"))
            .args(["collector", "--listen", &grpc, "--http", &http, "--db"])
            .arg(dir.path().join("events.db"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_http(&http);

    let agent = |name: &str, extra: &str| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nhost-id = \"{name}\"\naz = \"bench\"\ninterval-secs = {}\njitter-percent = 0\ncollectors = [\"{grpc}\"]\n{extra}",
                interval.as_secs()
            ),
        )
        .unwrap();
        Guard(
            Command::new(bin)
                .args(["agent", "--config"])
                .arg(&cfg)
                .env("HVPROBE_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let equivalent = agent(
        "agent-equivalent",
        "[[check]]\nkind = \"dns\"\nenabled = false\n[[check]]\nkind = \"wireguard\"\nenabled = false\n",
    );
    let full = agent("agent-all-checks", "");
    let ne_addr = format!("127.0.0.1:{}", free_port());
    let node_exporter = Guard(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address={ne_addr}"))
            .args([
                "--collector.disable-defaults",
                "--collector.meminfo",
                "--collector.vmstat",
                "--collector.pressure",
                "--collector.conntrack",
                "--collector.mdadm",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter (Debian package) is needed for this benchmark"),
    );
    wait_http(&ne_addr);

    // Warm up: a few cycles and scrapes, then measure the steady state.
    let warmup = if smoke {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    let t0 = Instant::now();
    while t0.elapsed() < warmup {
        http_get(&ne_addr, "/metrics");
        std::thread::sleep(interval);
    }
    let pids = [
        (
            "hvprobe agent (memory, conntrack, md-raid)",
            equivalent.0.id(),
        ),
        ("hvprobe agent (all five checks)", full.0.id()),
        (
            "node_exporter (meminfo, vmstat, pressure, conntrack, mdadm)",
            node_exporter.0.id(),
        ),
    ];
    let before: Vec<Duration> = pids.iter().map(|(_, p)| cpu(*p)).collect();
    let start = Instant::now();
    let mut scrapes = 0u64;
    while start.elapsed() < window {
        let bytes = http_get(&ne_addr, "/metrics");
        assert!(bytes > 0, "node_exporter stopped answering");
        scrapes += 1;
        std::thread::sleep(interval);
    }
    let elapsed = start.elapsed();
    let cycles = (elapsed.as_secs_f64() / interval.as_secs_f64())
        .floor()
        .max(1.0) as u64;
    let results: Vec<Measure> = pids
        .iter()
        .zip(&before)
        .map(|((name, pid), b)| {
            let used = cpu(*pid).saturating_sub(*b);
            let n = if name.starts_with("node_exporter") {
                scrapes
            } else {
                cycles
            };
            let (rss, hwm) = rss(*pid);
            Measure {
                name,
                cpu_per_cycle: used / n.max(1) as u32,
                rss_kib: rss,
                hwm_kib: hwm,
                cycles: n,
            }
        })
        .collect();
    println!(
        "agent vs node_exporter: {:.0} s window, {} s interval (scrape interval for node_exporter)",
        elapsed.as_secs_f64(),
        interval.as_secs()
    );
    println!(
        "{:<62} {:>12} {:>10} {:>10} {:>7}",
        "process", "CPU/cycle", "RSS", "peak RSS", "cycles"
    );
    for m in &results {
        println!(
            "{:<62} {:>9.0} us {:>6.1} MiB {:>6.1} MiB {:>7}",
            m.name,
            m.cpu_per_cycle.as_secs_f64() * 1e6,
            m.rss_kib as f64 / 1024.0,
            m.hwm_kib as f64 / 1024.0,
            m.cycles
        );
    }
    let ne = &results[2];
    for m in &results[..2] {
        println!(
            "{}: CPU per cycle {:.2}x node_exporter's per scrape, RSS {:.2}x",
            m.name,
            m.cpu_per_cycle.as_secs_f64() / ne.cpu_per_cycle.as_secs_f64().max(1e-9),
            m.rss_kib as f64 / ne.rss_kib.max(1) as f64
        );
    }
    println!("targets: agent RSS <= 8 MiB; CPU per cycle a fraction of node_exporter's per scrape");
}
