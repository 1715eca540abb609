//! Collector ingest under a simulated fleet: `cargo bench --bench ingest`.
//!
//! Starts the real collector (release build) and simulates N agents in this process: each is its own TCP
//! connection and gRPC stream on loopback, sending a realistic report (the five checks run once on this
//! machine) every interval, at a random phase. Measures, in one run:
//! - the steady state at the offered load N / interval: reports acknowledged per second, ack latency, and
//!   whether the collector falls behind;
//! - memory per connected agent: collector RSS with the fleet connected minus RSS when idle, over N;
//! - the collector's CPU per report;
//! - the ceiling: a closed loop on 200 streams sending as fast as acks return, and its ratio to the load
//!   a fleet of N agents offers.
//!
//! `HVPROBE_BENCH_AGENTS` (default 10000), `HVPROBE_BENCH_INTERVAL_SECS` (10), `HVPROBE_BENCH_SECS` (60),
//! `HVPROBE_BENCH_SMALL_REPORT=1` (no md arrays in the report: separates connection cost from state).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop loudly

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hvprobe::check::runner::Runner;
use hvprobe::check::{Context, Mode};
use hvprobe::config::Config;
use hvprobe::host::HostRoot;
use hvprobe::pb;
use hvprobe::report::HostReport;
use hvprobe::wire;
use tokio::sync::Mutex;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{ChildGuard as Guard, free_port};

/// The collector's CPU, exited threads included (its runtime's blocking threads come and go).
fn cpu(pid: u32) -> Duration {
    support::cpu_process(pid)
}

fn rss_kib(pid: u32) -> u64 {
    support::status_kib(pid, "VmRSS:")
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A report as a real agent would send it: the five checks run once, on a copy of the 6.18 kernel capture
/// with the 18 md arrays of the prometheus/procfs mdstat fixture (a large report, to be conservative).
async fn template() -> pb::Report {
    let root = tempfile::tempdir().unwrap();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    for rel in [
        "proc/meminfo",
        "proc/vmstat",
        "proc/pressure/memory",
        "proc/net/stat/nf_conntrack",
        "proc/sys/net/netfilter/nf_conntrack_count",
        "proc/sys/net/netfilter/nf_conntrack_max",
    ] {
        let dst = root.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(corpus.join("live_kernel_6.18").join(rel), dst).unwrap();
    }
    if std::env::var_os("HVPROBE_BENCH_SMALL_REPORT").is_none() {
        std::fs::copy(
            corpus.join("mdstat/procfs_fixture.txt"),
            root.path().join("proc/mdstat"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::copy("/etc/resolv.conf", root.path().join("etc/resolv.conf")).unwrap_or_default();
    let config = Config::default();
    let mut runner = Runner::new(config.checks.iter().map(|c| c.build()).collect());
    let checks = runner
        .run_once(&Context::new(HostRoot::new(root.path()), Mode::Agent))
        .await;
    wire::report_to_pb(&HostReport {
        host_id: String::new(),
        az: "az1".into(),
        region: Some("bench".into()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        boot_id: "f0a8fbc4-5bf7-42bd-b3e7-1734791cd19c".into(),
        boot_time: Some(1_795_239_769),
        interval: Duration::from_secs(10),
        seq: 0,
        observed_at: SystemTime::now(),
        missed_cycles: 0,
        agent: None,
        checks,
    })
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

/// One simulated agent: its own connection and stream; reports every `interval` at a random phase.
async fn agent(
    addr: String,
    id: usize,
    template: Arc<pb::Report>,
    interval: Duration,
    stop: Instant,
    stats: Arc<Stats>,
    record: Arc<std::sync::atomic::AtomicBool>,
) {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return;
    };
    let Ok(channel) = endpoint.connect().await else {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut client = pb::ingest_client::IngestClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::Report>(2);
    let mut acks = match client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(_) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let phase = interval.mul_f64(fastrand::f64());
    let mut next = tokio::time::Instant::now() + phase;
    let mut seq = 0u64;
    let host = format!("sim-{id:05}");
    while Instant::now() < stop {
        tokio::time::sleep_until(next).await;
        next += interval;
        seq += 1;
        let mut r = (*template).clone();
        r.host_id = host.clone();
        r.seq = seq;
        let sent = Instant::now();
        if tx.send(r).await.is_err() {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let counting = record.load(Ordering::Relaxed);
        if counting {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        match acks.message().await {
            Ok(Some(_)) if counting => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                stats.latencies_us.lock().await.push(us);
            }
            Ok(Some(_)) => {}
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Closed loop: `streams` streams send as fast as their acks come back, for `secs`.
async fn ceiling(addr: &str, template: Arc<pb::Report>, streams: usize, secs: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let (addr, template, done) = (addr.to_owned(), template.clone(), done.clone());
        tasks.spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = pb::ingest_client::IngestClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::Report>(2);
            let mut acks = client
                .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let mut seq = 0;
            while Instant::now() < stop {
                seq += 1;
                let mut r = (*template).clone();
                r.host_id = format!("burst-{i}");
                r.seq = seq;
                if tx.send(r).await.is_err() || !matches!(acks.message().await, Ok(Some(_))) {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / secs.as_secs_f64()
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = env("HVPROBE_BENCH_AGENTS", if smoke { 50 } else { 10_000 }) as usize;
    let interval = Duration::from_secs(env(
        "HVPROBE_BENCH_INTERVAL_SECS",
        if smoke { 1 } else { 10 },
    ));
    let window = Duration::from_secs(env("HVPROBE_BENCH_SECS", if smoke { 3 } else { 60 }));
    raise_nofile();
    let (grpc, http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let dir = tempfile::tempdir().unwrap();
    let collector = Guard(
        Command::new(env!("CARGO_BIN_EXE_hvprobe"))
            .current_dir(dir.path())
            .args(["collector", "--listen", &grpc, "--http", &http, "--db"])
            .arg(dir.path().join("events.db"))
            .env("HVPROBE_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = collector.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&grpc).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_kib(pid);
        let template = Arc::new(template().await);
        let size = prost::Message::encoded_len(&*template);
        let stats = Arc::new(Stats::default());
        let record = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Ramp-up over one interval (agents start at random phases), then warm up one more interval.
        let ramp = interval;
        let stop = Instant::now() + ramp + interval + window;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            tasks.spawn(agent(grpc.clone(), i, template.clone(), interval, stop, stats.clone(), record.clone()));
            if i % 100 == 99 {
                tokio::time::sleep(ramp / (n as u32 / 100).max(1)).await;
            }
        }
        tokio::time::sleep(interval).await;
        record.store(true, Ordering::Relaxed);
        let cpu0 = cpu(pid);
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        record.store(false, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        let used = cpu(pid).saturating_sub(cpu0);
        let steady = rss_kib(pid);
        let acked = stats.acked.load(Ordering::Relaxed);
        let sent = stats.sent.load(Ordering::Relaxed);
        let mut lat = stats.latencies_us.lock().await.clone();
        lat.sort_unstable();
        let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
        while tasks.join_next().await.is_some() {}
        let errors = stats.errors.load(Ordering::Relaxed);
        let offered = n as f64 / interval.as_secs_f64();
        let rate = acked as f64 / elapsed.as_secs_f64();
        println!("collector ingest: {n} simulated agents (one TCP connection and stream each), interval {} s, report {size} bytes", interval.as_secs());
        println!("  steady window {:.0} s: {acked} reports acknowledged ({rate:.0}/s; offered {offered:.0}/s), sent {sent}, errors {errors}", elapsed.as_secs_f64());
        println!("  ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", pct(0.5) as f64 / 1000.0, pct(0.99) as f64 / 1000.0, lat.last().copied().unwrap_or(0) as f64 / 1000.0);
        println!(
            "  keeping up: {} (acked/sent {:.4}, p99 latency {} 1 s)",
            if sent > 0 && acked as f64 >= 0.99 * sent as f64 && pct(0.99) < 1_000_000 { "yes" } else { "NO" },
            acked as f64 / sent.max(1) as f64,
            if pct(0.99) < 1_000_000 { "<" } else { ">=" }
        );
        println!(
            "  collector RSS idle {:.1} MiB, with the fleet {:.1} MiB: {:.1} KiB per connected agent",
            idle as f64 / 1024.0,
            steady as f64 / 1024.0,
            steady.saturating_sub(idle) as f64 / n as f64
        );
        println!("  collector CPU {:.1} us per report ({:.1}% of one core)", used.as_secs_f64() * 1e6 / acked.max(1) as f64, used.as_secs_f64() * 100.0 / elapsed.as_secs_f64());
        let burst = ceiling(&grpc, template.clone(), if smoke { 10 } else { 200 }, Duration::from_secs(if smoke { 2 } else { 10 })).await;
        println!(
            "  ceiling (closed loop, {} streams): {burst:.0} reports/s = {:.1}x the load of {n} agents at {} s",
            if smoke { 10 } else { 200 },
            burst / offered,
            interval.as_secs()
        );
        println!("target: >= 10000 agents at a 10 s interval without falling behind");
    });
    drop(collector);
}
