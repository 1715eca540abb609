//! What the integration tests (`tests/it`) and the benchmarks (`benches/`) share: fixture hosts, the real
//! binary, child processes that die with the test, network namespaces, real DNS and WireGuard peers, a real
//! collector and agents, and CPU/RSS readings of a process.
// Each test crate uses a different subset of these helpers; a helper that panics is a failed test.
#![allow(dead_code, missing_docs, clippy::expect_used, clippy::unwrap_used)]

pub mod systemd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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
            "proc/diskstats",
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

/// The output of a command that must have succeeded (`what` names it in the failure), stdout then stderr.
pub fn succeeded(what: &str, out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {text}");
    text
}

/// Awaits every task of `set` (each yielding when it finished, in seconds, and what it holds): the times
/// sorted, and what they hold (kept open until the caller drops it).
pub async fn finish_times<T: 'static>(
    mut set: tokio::task::JoinSet<(f64, T)>,
) -> (Vec<f64>, Vec<T>) {
    let (mut at, mut held) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        let (secs, x) = r.expect("task");
        at.push(secs);
        held.push(x);
    }
    at.sort_by(f64::total_cmp);
    (at, held)
}

/// Asserts that sorted completion times `at` kept to `rate` a second with one second of burst: by each
/// time `t` of `checkpoints`, at most `rate + rate * t + 1` of them.
pub fn assert_paced(at: &[f64], rate: usize, checkpoints: &[f64]) {
    for &t in checkpoints {
        let done = at.iter().filter(|a| **a <= t).count();
        let allowed = rate + (rate as f64 * t) as usize + 1;
        assert!(done <= allowed, "{done} done by {t} s at {rate}/s: {at:?}");
    }
}

/// Fails (never skips) when a program the test drives for real is missing; `tests/run.sh` installs them.
pub fn require_bin(bin: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .chain([
                PathBuf::from("/usr/sbin").join(bin),
                PathBuf::from("/sbin").join(bin),
            ])
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{bin} not found: install the Debian package `{package}` (tests/run.sh does this)")
    })
}

/// A child process killed (and reaped) when the guard drops, so a failing test leaves nothing behind.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` over HTTP/1.1 on loopback: `(status, body)`, or `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A network namespace made by the test, deleted (with every process in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add <prefix>-<pid>-<n>` with loopback up.
    pub fn new(prefix: &str) -> Netns {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        require_bin("ip", "iproute2");
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Netns {
    /// Runs `f` on a thread that has entered this namespace: the sockets it opens (listeners for a
    /// service the test plays) live in the namespace, wherever they are used afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .join()
            .expect("thread in the namespace")
        })
    }
}

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `retry-after-ms` hint of a refusal.
pub fn retry_after_ms(status: &tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after-ms hint in {status:?}"))
}

/// A free UDP+TCP port on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A real unbound (Debian package `unbound`) answering on `listen` (e.g. `127.0.0.1@5353`):
/// `api.hvprobe.` A 192.0.2.10 and `dual.hvprobe.` AAAA 2001:db8::11 (static zone, so other names under
/// `hvprobe.` are NXDOMAIN), `*.refuse.hvprobe.` REFUSED, and `*.upstream.example.` forwarded to a dead
/// port, which unbound answers with SERVFAIL.
pub struct Unbound {
    pub child: ChildGuard,
    pub dir: tempfile::TempDir,
}

impl Unbound {
    pub fn config(dir: &Path, listen: &str, port: u16) -> String {
        format!(
            r#"server:
  interface: {listen}
  port: {port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  so-reuseport: no
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  access-control: ::1/128 allow
  local-zone: "hvprobe." static
  local-data: "api.hvprobe. 60 IN A 192.0.2.10"
  local-data: "dual.hvprobe. 60 IN AAAA 2001:db8::11"
  local-zone: "refuse.hvprobe." always_refuse
forward-zone:
  name: "upstream.example."
  forward-addr: 127.0.0.1@9
"#,
            dir = dir.display()
        )
    }

    /// Starts unbound on `ip:port` with `cmd` (plain, or inside a netns) and waits until it answers TCP.
    pub fn start_with(mut cmd: Command, ip: &str, port: u16, wait_addr: Option<&str>) -> Unbound {
        let bin = require_bin("unbound", "unbound");
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = format!("{ip}@{port}");
        let conf = dir.path().join("unbound.conf");
        std::fs::write(&conf, Unbound::config(dir.path(), &listen, port))
            .expect("write unbound.conf");
        let child = cmd
            .arg(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start unbound");
        let guard = ChildGuard(child);
        if let Some(addr) = wait_addr {
            wait_for(std::time::Duration::from_secs(10), || {
                std::net::TcpStream::connect(addr).ok()
            })
            .unwrap_or_else(|| panic!("unbound did not come up on {addr}"));
        }
        Unbound { child: guard, dir }
    }

    /// Unbound on 127.0.0.1:`port` in this network namespace.
    pub fn start(port: u16) -> Unbound {
        let cmd = Command::new("env");
        Unbound::start_with(cmd, "127.0.0.1", port, Some(&format!("127.0.0.1:{port}")))
    }
}

/// A real dnsmasq (Debian package `dnsmasq-base`) on 127.0.0.1:`port` answering `api.hvprobe.` A 192.0.2.10
/// and, having no upstream, REFUSED for everything else.
pub fn dnsmasq(port: u16) -> ChildGuard {
    let bin = require_bin("dnsmasq", "dnsmasq-base");
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new(bin)
        .args([
            "-k",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--host-record=api.hvprobe,192.0.2.10",
        ])
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            dir.path().join("dnsmasq.pid").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let guard = ChildGuard(child);
    wait_for(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("dnsmasq did not come up");
    std::mem::forget(dir); // dnsmasq keeps its pid file there until it is killed
    guard
}

/// A UDP socket that reads every datagram and answers none: a resolver that blackholes queries.
/// Stops (bounded) when dropped.
pub struct Blackhole {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        use std::sync::atomic::Ordering;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind blackhole");
        sock.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut dropped = 0;
            // Bounded: at most 10 minutes of 50 ms reads, and it stops as soon as the test is done.
            for _ in 0..12_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if sock.recv_from(&mut buf).is_ok() {
                    dropped += 1;
                }
            }
            dropped
        });
        Blackhole {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns how many queries were swallowed.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A userspace WireGuard interface: a real `wireguard-go` process in a network namespace, its UAPI socket
/// removed when dropped even if the process was killed.
pub struct WgGo {
    pub name: String,
    pub child: Option<ChildGuard>,
    pub private_key: String,
    pub public_key: String,
}

impl WgGo {
    /// Starts `wireguard-go -f <name>` in `ns` with a fresh key and `listen_port`.
    pub fn start(ns: &Netns, name: &str, listen_port: u16) -> WgGo {
        let bin = require_bin("wireguard-go", "wireguard-go");
        require_bin("wg", "wireguard-tools");
        let child = ns
            .cmd(&bin)
            .args(["-f", name])
            .env("LOG_LEVEL", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start wireguard-go");
        let guard = ChildGuard(child);
        let sock = PathBuf::from(format!("/var/run/wireguard/{name}.sock"));
        wait_for(std::time::Duration::from_secs(10), || {
            sock.exists().then_some(())
        })
        .unwrap_or_else(|| panic!("wireguard-go did not create {}", sock.display()));
        let private_key = sh(&["wg", "genkey"]).trim().to_owned();
        let public_key = pubkey(&private_key);
        let keyfile = tempfile::NamedTempFile::new().expect("keyfile");
        std::fs::write(keyfile.path(), &private_key).expect("write key");
        let kp = keyfile.path().to_str().expect("utf-8");
        ns_sh(
            ns,
            &[
                "wg",
                "set",
                name,
                "listen-port",
                &listen_port.to_string(),
                "private-key",
                kp,
            ],
        );
        WgGo {
            name: name.to_owned(),
            child: Some(guard),
            private_key,
            public_key,
        }
    }

    /// Adds a peer.
    pub fn add_peer(&self, ns: &Netns, public_key: &str, endpoint: &str, allowed: &str) {
        ns_sh(
            ns,
            &[
                "wg",
                "set",
                &self.name,
                "peer",
                public_key,
                "endpoint",
                endpoint,
                "allowed-ips",
                allowed,
            ],
        );
    }

    /// Kills the process (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        self.child.take();
    }
}

impl Drop for WgGo {
    fn drop(&mut self) {
        self.child.take();
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
    }
}

/// `wg pubkey` of a private key.
pub fn pubkey(private_key: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg pubkey");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private_key.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wg pubkey");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs a command inside a namespace; it must succeed.
pub fn ns_sh(ns: &Netns, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns.name.as_str()];
    full.extend_from_slice(args);
    sh(&full)
}

/// A short unique interface name (at most 15 bytes), e.g. `hp4821a3`.
pub fn ifname(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "hp{}{}{tag}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A real collector process on loopback ports of its own: `hvprobe-collector collector`, the binary the
/// collector's unit runs.
pub struct Collector {
    pub child: Option<ChildGuard>,
    pub grpc: String,
    pub http: String,
    pub dir: tempfile::TempDir,
}

impl Collector {
    /// Starts a collector with `extra` lines in its `[collector]` section.
    pub fn start(extra: &str) -> Collector {
        Collector::start_on("127.0.0.1", extra)
    }

    /// Starts a collector whose gRPC port listens on `ip` (an address the test made, reachable from its
    /// network namespaces); its HTTP API stays on loopback.
    pub fn start_on(ip: &str, extra: &str) -> Collector {
        let mut c = Collector::configured_on(ip, extra);
        c.restart();
        c
    }

    /// A collector's temp dir, free ports and config file, not started yet.
    fn configured(extra: &str) -> Collector {
        Collector::configured_on("127.0.0.1", extra)
    }

    fn configured_on(ip: &str, extra: &str) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let grpc = format!("{ip}:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            dir.path().join("collector.toml"),
            format!(
                "[collector]\nlisten = \"{grpc}\"\nhttp = \"{http}\"\ndb = \"{}\"\n{extra}\n",
                dir.path().join("events.db").display()
            ),
        )
        .expect("write collector.toml");
        Collector {
            child: None,
            grpc,
            http,
            dir,
        }
    }

    /// Starts a collector whose ports speak TLS (`extra` holds its `[collector.tls]` table): ready when its
    /// log says so, since plaintext probes no longer get an answer.
    pub fn start_tls(extra: &str) -> Collector {
        let mut c = Collector::configured(extra);
        c.restart_tls();
        c
    }

    /// (Re)starts a TLS collector on the same ports and waits until its (new) log says it started.
    pub fn restart_tls(&mut self) {
        self.spawn();
        wait_for(std::time::Duration::from_secs(10), || {
            self.log().contains("collector started").then_some(())
        })
        .unwrap_or_else(|| panic!("collector did not come up: {}", self.log()));
    }

    /// (Re)starts the process on the same ports and waits until its API answers.
    pub fn restart(&mut self) {
        self.spawn();
        let http = self.http.clone();
        wait_for(std::time::Duration::from_secs(10), || {
            http_get(&http, "/api/v1/hosts").filter(|(s, _)| *s == 200)
        })
        .unwrap_or_else(|| panic!("collector did not come up: {}", self.log()));
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("collector.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_hvprobe-collector"))
            .current_dir(self.dir.path())
            .args(["collector", "--config"])
            .arg(self.dir.path().join("collector.toml"))
            .env("HVPROBE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start collector");
        self.child = Some(ChildGuard(child));
    }

    /// SIGKILL, as a crash or a power cut would.
    pub fn kill9(&mut self) {
        self.child.take();
    }

    /// The collector's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default()
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) =
            http_get(&self.http, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert!(
            matches!(status, 200 | 400 | 404),
            "GET {path}: {status} {body}"
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `GET /api/v1/hosts`.
    pub fn hosts(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/hosts")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// One host from `GET /api/v1/hosts`.
    pub fn host(&self, id: &str) -> Option<serde_json::Value> {
        self.hosts().into_iter().find(|h| h["host_id"] == id)
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        http_get(&self.http, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// A metric's value (exact name with labels).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        })
    }
}

/// A real `hvprobe agent` process reading `host` as its root, checks memory, conntrack and md-raid.
pub struct Agent {
    pub child: Option<ChildGuard>,
    pub id: String,
    log: PathBuf,
}

impl Agent {
    pub fn start(
        host: &FixtureHost,
        id: &str,
        az: &str,
        collectors: &[&str],
        interval_secs: u64,
    ) -> Agent {
        Agent::start_with(host, id, az, collectors, interval_secs, &[])
    }

    pub fn start_with(
        host: &FixtureHost,
        id: &str,
        az: &str,
        collectors: &[&str],
        interval_secs: u64,
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::start_cfg(host, id, az, collectors, interval_secs, env, "")
    }

    /// With `agent_extra` (e.g. an `[agent.tls]` table) after the `[agent]` keys.
    pub fn start_cfg(
        host: &FixtureHost,
        id: &str,
        az: &str,
        collectors: &[&str],
        interval_secs: u64,
        env: &[(&str, &str)],
        agent_extra: &str,
    ) -> Agent {
        Agent::start_in(
            None,
            host,
            id,
            az,
            collectors,
            interval_secs,
            env,
            agent_extra,
        )
    }

    /// [`Agent::start_cfg`], run inside a network namespace when `ns` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn start_in(
        ns: Option<&Netns>,
        host: &FixtureHost,
        id: &str,
        az: &str,
        collectors: &[&str],
        interval_secs: u64,
        env: &[(&str, &str)],
        agent_extra: &str,
    ) -> Agent {
        let list: Vec<String> = collectors.iter().map(|c| format!("\"{c}\"")).collect();
        let cfg = host.path(&format!("agent-{id}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nhost-id = \"{id}\"\naz = \"{az}\"\ninterval-secs = {interval_secs}\ncollectors = [{}]\nroot = \"{}\"\nreconnect-max-secs = 5\n{agent_extra}\n\n[[check]]\nkind = \"dns\"\nenabled = false\n\n[[check]]\nkind = \"wireguard\"\nenabled = false\n",
                list.join(", "),
                host.root_str()
            ),
        )
        .expect("write agent config");
        let log = host.path(&format!("agent-{id}.log"));
        let mut cmd = match ns {
            Some(ns) => ns.cmd(env!("CARGO_BIN_EXE_hvprobe")),
            None => hvprobe(),
        };
        cmd.args(["agent", "--config"])
            .arg(&cfg)
            .env("HVPROBE_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start agent");
        Agent {
            child: Some(ChildGuard(child)),
            id: id.to_owned(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.0.id()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.0.id().to_string()])
            .status();
        // Dropping the guard afterwards is harmless for a reaped child and kills one that hung.
        wait_for(std::time::Duration::from_secs(5), || {
            c.0.try_wait().ok().flatten()
        })
    }
}

/// On-CPU time of the live threads of `pid`, in nanoseconds (`/proc/<pid>/task/*/schedstat`): precise,
/// but blind to threads that exited. Right for a process whose threads live as long as the window.
pub fn cpu_threads(pid: u32) -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

/// user + system CPU of the whole process, exited threads included (`/proc/<pid>/stat`, 10 ms ticks:
/// right over long windows).
pub fn cpu_process(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}
