//! Shared helpers of the integration tests: fixture hosts and the real binary.
// Each test crate uses a different subset of these helpers; a helper that panics is a failed test.
#![allow(dead_code, missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The corpus copied into the repository (`tests/corpus`, see its NOTICE.md).
pub fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel)
}

/// Reads a corpus file; a missing corpus is a failure, never a skip.
pub fn corpus_text(rel: &str) -> String {
    let p = corpus(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("corpus file {}: {e}", p.display()))
}

/// The `hvprobe` binary built for this test run.
pub fn hvprobe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hvprobe"))
}

/// Runs `hvprobe` with `args`, returning the output.
pub fn run(args: &[&str]) -> Output {
    hvprobe()
        .args(args)
        .env_remove("HVPROBE_LOG")
        .output()
        .expect("run hvprobe")
}

/// A fake host root in a temp dir, starting from the real 6.18 kernel capture
/// (`tests/corpus/live_kernel_6.18`: Debian bookworm userland, kernel 6.18.44, 2 CPUs, no swap, no md).
pub struct FixtureHost {
    dir: tempfile::TempDir,
}

impl FixtureHost {
    /// An empty root: no /proc at all.
    pub fn empty() -> Self {
        FixtureHost {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A root with the 6.18 capture's /proc files.
    pub fn kernel_6_18() -> Self {
        let h = FixtureHost::empty();
        for rel in [
            "proc/meminfo",
            "proc/vmstat",
            "proc/swaps",
            "proc/pressure/memory",
            "proc/pressure/cpu",
            "proc/pressure/io",
            "proc/net/stat/nf_conntrack",
            "proc/sys/net/netfilter/nf_conntrack_count",
            "proc/sys/net/netfilter/nf_conntrack_max",
        ] {
            h.write(rel, &corpus_text(&format!("live_kernel_6.18/{rel}")));
        }
        h
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn root_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write fixture");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("read fixture")
    }

    pub fn remove(&self, rel: &str) {
        let p = self.path(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p).expect("rm -r");
        } else {
            std::fs::remove_file(p).expect("rm");
        }
    }

    /// Sets a `/proc/meminfo` field (in kB) in the kernel's own layout: the label with its colon padded
    /// to 16 columns, the value right-aligned in 8, then ` kB` (fs/proc/meminfo.c, show_val_kb).
    pub fn set_meminfo_kb(&self, key: &str, kb: u64) {
        let text = self.read("proc/meminfo");
        let label = format!("{key}:");
        let line = format!("{label:<16}{kb:>8} kB");
        let mut found = false;
        let mut out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with(&label) {
                    found = true;
                    line.clone()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if !found {
            out.push(line);
        }
        self.write("proc/meminfo", &(out.join("\n") + "\n"));
    }

    /// Removes a `/proc/meminfo` line.
    pub fn drop_meminfo(&self, key: &str) {
        let text = self.read("proc/meminfo");
        let label = format!("{key}:");
        let out: Vec<&str> = text.lines().filter(|l| !l.starts_with(&label)).collect();
        self.write("proc/meminfo", &(out.join("\n") + "\n"));
    }

    /// Sets a `/proc/vmstat` counter (`name value`).
    pub fn set_vmstat(&self, key: &str, value: u64) {
        let text = self.read("proc/vmstat");
        let out: Vec<String> = text
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((k, _)) if k == key => format!("{key} {value}"),
                _ => l.to_owned(),
            })
            .collect();
        self.write("proc/vmstat", &(out.join("\n") + "\n"));
    }

    /// Writes `/proc/pressure/memory` in the kernel's format (kernel/sched/psi.c, psi_show).
    pub fn set_psi_memory(&self, some10: f64, full10: f64) {
        self.write(
            "proc/pressure/memory",
            &psi_text(some10, full10, 123_456, 45_678),
        );
    }

    /// Sets conntrack count and max.
    pub fn set_conntrack(&self, count: u64, max: u64) {
        self.write(
            "proc/sys/net/netfilter/nf_conntrack_count",
            &format!("{count}\n"),
        );
        self.write(
            "proc/sys/net/netfilter/nf_conntrack_max",
            &format!("{max}\n"),
        );
    }

    /// Sets a column of `/proc/net/stat/nf_conntrack` on every CPU row (hex, `%08x` as the kernel prints).
    pub fn set_conntrack_stat(&self, column: &str, per_cpu: u64) {
        let text = self.read("proc/net/stat/nf_conntrack");
        let mut lines = text.lines();
        let header = lines.next().expect("header");
        let idx = header
            .split_whitespace()
            .position(|c| c == column)
            .expect("column");
        let mut out = vec![header.to_owned()];
        for row in lines {
            let mut vals: Vec<String> = row.split_whitespace().map(str::to_owned).collect();
            vals[idx] = format!("{per_cpu:08x}");
            out.push(vals.join(" "));
        }
        self.write("proc/net/stat/nf_conntrack", &(out.join("\n") + "\n"));
    }

    /// Adds a libvirt VM cgroup under machine.slice with the given memory pressure.
    pub fn add_vm_cgroup(&self, scope: &str, some10: f64, full10: f64, current: u64) {
        self.write(
            "sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        let base = format!("sys/fs/cgroup/machine.slice/{scope}");
        self.write(
            &format!("{base}/memory.pressure"),
            &psi_text(some10, full10, 1000, 100),
        );
        self.write(&format!("{base}/memory.current"), &format!("{current}\n"));
        self.write(&format!("{base}/memory.max"), "max\n");
        self.write(&format!("{base}/memory.swap.current"), "0\n");
    }
}

/// PSI text as the kernel prints it: `%s avg10=%lu.%02lu avg60=… avg300=… total=%llu`.
pub fn psi_text(some10: f64, full10: f64, some_total: u64, full_total: u64) -> String {
    format!(
        "some avg10={some10:.2} avg60=0.00 avg300=0.00 total={some_total}\nfull avg10={full10:.2} avg60=0.00 avg300=0.00 total={full_total}\n"
    )
}

/// Parses the JSON printed by `hvprobe check --format json`.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The entry of one check in the JSON output.
pub fn check_of<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {doc}"))
}
