//! Cost of the file-based checks: `cargo bench --bench probe`.
//!
//! Prints figures, never asserts them (targets live here, not in timed tests). Every figure comes with a
//! baseline measured in the same run on the same machine, and the ratio to it:
//! 1. per-cycle CPU of `memory` and `conntrack` in agent mode (in process, N cycles, getrusage of the
//!    process), against the bare cost of reading the same files with `std::fs::read_to_string`;
//! 2. the conntrack check at an empty table and at a 2-million-entry table (a fixture root: the check reads
//!    only count/max and the per-CPU counters, so the table size must not show), and with 64 CPU rows;
//! 3. CPU time and peak RSS of one `hvprobe check --check memory --check conntrack` process (getrusage of
//!    the waited children), against `cat` of the same files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hvprobe::check::conntrack::{ConntrackCheck, ConntrackConfig};
use hvprobe::check::memory::{MemoryCheck, MemoryConfig};
use hvprobe::check::{Check, Context, Mode};
use hvprobe::host::HostRoot;
use nix::sys::resource::{UsageWho, getrusage};

const FILES: &[&str] = &[
    "proc/meminfo",
    "proc/vmstat",
    "proc/pressure/memory",
    "proc/sys/net/netfilter/nf_conntrack_count",
    "proc/sys/net/netfilter/nf_conntrack_max",
    "proc/net/stat/nf_conntrack",
];

fn cpu(who: UsageWho) -> Duration {
    let u = getrusage(who).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

/// Runs a command to completion while sampling its peak RSS (VmHWM in /proc/<pid>/status) every 2 ms.
/// getrusage's ru_maxrss of a child is useless here: a child started with vfork/posix_spawn inherits the
/// parent's high-water mark at exec, so it would report the bench's own RSS.
fn run_sampling_hwm(cmd: &mut Command) -> (std::process::ExitStatus, u64) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm_kib = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            hwm_kib = hwm_kib.max(v);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, hwm_kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/live_kernel_6.18")
}

/// A fixture root from the 6.18 capture, with the conntrack files replaced.
fn fixture(count: u64, max: u64, cpus: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for rel in FILES {
        let dst = dir.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(corpus().join(rel), &dst).unwrap();
    }
    let nf = dir.path().join("proc/sys/net/netfilter");
    std::fs::write(nf.join("nf_conntrack_count"), format!("{count}\n")).unwrap();
    std::fs::write(nf.join("nf_conntrack_max"), format!("{max}\n")).unwrap();
    let stat = std::fs::read_to_string(corpus().join("proc/net/stat/nf_conntrack")).unwrap();
    let mut lines = stat.lines();
    let header = lines.next().unwrap();
    let row = lines.next().unwrap().replacen(
        "00000000",
        &format!("{:08x}", count.min(u32::MAX.into())),
        1,
    );
    let mut text = format!("{header}\n");
    for _ in 0..cpus {
        text.push_str(&row);
        text.push('\n');
    }
    std::fs::write(dir.path().join("proc/net/stat/nf_conntrack"), text).unwrap();
    dir
}

/// Mean process CPU per cycle of a check in agent mode.
fn per_cycle(rt: &tokio::runtime::Runtime, root: &Path, check: &mut dyn Check, n: u32) -> Duration {
    let ctx = Context::new(HostRoot::new(root), Mode::Agent);
    for _ in 0..50 {
        rt.block_on(check.run(&ctx));
    }
    let before = cpu(UsageWho::RUSAGE_SELF);
    for _ in 0..n {
        rt.block_on(check.run(&ctx));
    }
    (cpu(UsageWho::RUSAGE_SELF) - before) / n
}

/// Mean process CPU of reading the files the two checks read, without parsing.
fn baseline_reads(root: &Path, n: u32) -> Duration {
    let before = cpu(UsageWho::RUSAGE_SELF);
    let mut bytes = 0;
    for _ in 0..n {
        for rel in FILES {
            bytes += std::fs::read_to_string(root.join(rel))
                .map(|s| s.len())
                .unwrap_or(0);
        }
    }
    assert!(bytes > 0);
    (cpu(UsageWho::RUSAGE_SELF) - before) / n
}

fn us(d: Duration) -> String {
    format!("{:8.1} us", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "n/a".into()
    } else {
        format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64())
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not and gets a quick smoke run, so the
    // benchmark cannot rot unnoticed.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: u32 = std::env::var("HVPROBE_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 20 } else { 5000 });
    let rt = hvprobe::cli::runtime().unwrap();
    println!("hvprobe bench: file-based checks, {n} cycles each, CPU = user+sys of this process");
    println!();
    println!(
        "{:<44} {:>11} {:>11} {:>8}",
        "per cycle (agent mode)", "check", "baseline", "ratio"
    );

    let empty = fixture(0, 262_144, 2);
    let big = fixture(2_000_000, 4_194_304, 2);
    let big64 = fixture(2_000_000, 4_194_304, 64);
    let base = baseline_reads(empty.path(), n);
    let mem = per_cycle(
        &rt,
        empty.path(),
        &mut MemoryCheck::new(MemoryConfig::default()),
        n,
    );
    let ct0 = per_cycle(
        &rt,
        empty.path(),
        &mut ConntrackCheck::new(ConntrackConfig::default()),
        n,
    );
    let ct_big = per_cycle(
        &rt,
        big.path(),
        &mut ConntrackCheck::new(ConntrackConfig::default()),
        n,
    );
    let ct_64 = per_cycle(
        &rt,
        big64.path(),
        &mut ConntrackCheck::new(ConntrackConfig::default()),
        n,
    );
    let row = |name: &str, d: Duration| {
        println!("{name:<44} {} {} {:>8}", us(d), us(base), ratio(d, base));
    };
    row("memory (6.18 capture)", mem);
    row("conntrack, 0 entries, 2 CPUs", ct0);
    row("conntrack, 2,000,000 entries, 2 CPUs", ct_big);
    row("conntrack, 2,000,000 entries, 64 CPUs", ct_64);
    row("memory + conntrack", mem + ct0);
    println!(
        "conntrack cost at 2M entries vs 0 entries: {} (table size must not matter)",
        ratio(ct_big, ct0)
    );
    if Path::new("/proc/meminfo").exists() {
        let live_base = baseline_reads(Path::new("/"), n);
        let live_mem = per_cycle(
            &rt,
            Path::new("/"),
            &mut MemoryCheck::new(MemoryConfig::default()),
            n,
        );
        let live_ct = per_cycle(
            &rt,
            Path::new("/"),
            &mut ConntrackCheck::new(ConntrackConfig::default()),
            n,
        );
        println!(
            "{:<44} {} {} {:>8}",
            "memory + conntrack (this machine's /proc)",
            us(live_mem + live_ct),
            us(live_base),
            ratio(live_mem + live_ct, live_base)
        );
    }

    println!();
    let runs = if smoke { 1 } else { 10 };
    let bin = env!("CARGO_BIN_EXE_hvprobe");
    let files: Vec<String> = FILES.iter().map(|f| format!("/{f}")).collect();
    let before = cpu(UsageWho::RUSAGE_CHILDREN);
    for _ in 0..runs {
        let _ = run_sampling_hwm(Command::new("cat").args(&files));
    }
    let cat_cpu = (cpu(UsageWho::RUSAGE_CHILDREN) - before) / runs;
    // `cat` exits before it can be sampled: the RSS baseline is a minimal process that stays a while.
    let (_, sleep_hwm) = run_sampling_hwm(Command::new("sleep").arg("0.2"));
    let before = cpu(UsageWho::RUSAGE_CHILDREN);
    let t = Instant::now();
    let mut probe_hwm = 0;
    for _ in 0..runs {
        let (status, hwm) = run_sampling_hwm(Command::new(bin).args([
            "check",
            "--check",
            "memory",
            "--check",
            "conntrack",
            "--format",
            "json",
        ]));
        assert!(status.code().is_some_and(|c| c <= 3), "{status:?}");
        probe_hwm = probe_hwm.max(hwm);
    }
    let wall = t.elapsed() / runs;
    let probe_cpu = (cpu(UsageWho::RUSAGE_CHILDREN) - before) / runs;
    println!(
        "one-shot `hvprobe check --check memory --check conntrack` on this machine, {runs} runs:"
    );
    println!(
        "  CPU per run {} (baseline `cat` of the same files {}; ratio {})",
        us(probe_cpu),
        us(cat_cpu),
        ratio(probe_cpu, cat_cpu)
    );
    println!(
        "  peak RSS    {:.1} MiB (VmHWM sampled every 2 ms; baseline `sleep 0.2` {:.1} MiB, ratio {:.1}x); wall {:.2} s (1 s is the rate window)",
        probe_hwm as f64 / 1024.0,
        sleep_hwm as f64 / 1024.0,
        probe_hwm as f64 / sleep_hwm.max(1) as f64,
        wall.as_secs_f64()
    );
    println!("targets: per-cycle CPU well under 1 ms; one-shot RSS under 10 MiB");
}
