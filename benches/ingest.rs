//! Collector ingest under a simulated fleet, against a bare tonic sink measured in the same run:
//! `cargo bench --bench ingest` (`HVPROBE_BENCH_AGENTS`, default 19000).
//!
//! The collector is the real binary in its own process, and so is the baseline: this bench re-executes itself
//! as a **bare tonic sink** (`HVPROBE_BENCH_SINK`) that decodes full `Report` messages and acks them, on
//! tonic's defaults. Their RSS and CPU are their own; the simulated agents live in this process.
//!
//! Each simulated agent runs the agent's own uplink (`hvprobe::agent::uplink::run`: its backoff, jitter,
//! retry hints and compact reports) with its own TCP connection and stream, and publishes a realistic
//! report (the checks run once on a copy of a kernel 6.18 capture, 18 md arrays: about 3.7 KB) every
//! interval at a random phase. Most cycles change nothing; a few change one check's status and summary
//! (`HVPROBE_BENCH_CHANGE_PERCENT`, default 5 % of reports).
//!
//! Phases and figures:
//! 1. **Bare sink**: N agents, steady window: CPU per report, KiB per connected agent.
//! 2. **Collector at 1,000 agents**: the closed-loop ceiling (200 streams sending full reports as fast as
//!    their acks return, on top of the connected agents, from a process of their own: `HVPROBE_BENCH_LOOP`;
//!    2 s warm-up, 10 s counted) = `ceiling_small`: every report the collector ingested over the counted
//!    window, the loop's and the agents', per second.
//! 3. **Collector at N agents**: steady window (acked/offered, ack latency, CPU per report, KiB per agent),
//!    then the closed-loop ceiling again = `ceiling_large`. Equal ceilings mean the cost per report does
//!    not grow with the fleet. Both print the CPU of the collector, of the loop and of the simulated agents
//!    apart: on one machine they share its cores.
//! 4. **Reconnect storm**: the collector is SIGKILLed, stays down `HVPROBE_BENCH_OUTAGE_SECS` (30), and is
//!    restarted on the same ports: how long each agent takes to report again (p99), how many never come
//!    back within the deadline, the collector's peak RSS during the storm.
//! 5. **mTLS** (`HVPROBE_BENCH_TLS=0` skips it): a fresh collector with `[collector.tls]`, each agent with
//!    a certificate naming its host: CPU per report and KiB per agent against plaintext, then the storm
//!    again, where every agent makes a full handshake and the accept loop paces them.
//!
//! The last line is machine-readable: `RESULT agents=… acked_ratio=… cpu_us_per_report=…
//! bare_sink_cpu_us_per_report=… kib_per_agent=… reconnect_p99_secs=… lost_agents=… ceiling_small=…
//! ceiling_large=…`. Without `--bench` (as `cargo test --all-targets` runs it) it is a quick smoke run with
//! 60 agents. The collector runs with `rate-limit-reports = false` so the closed loop measures ingest rather
//! than the per-stream rate limit (the agents' own reports are never too fast anyway), and with each source's
//! share of the accept pace lifted: every simulated agent connects from 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop loudly

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hvprobe::agent::uplink::{self, AckHook, Target, UplinkConfig};
use hvprobe::check::runner::Runner;
use hvprobe::check::{Context, Mode};
use hvprobe::config::Config;
use hvprobe::host::HostRoot;
use hvprobe::pb;
use hvprobe::report::HostReport;
use hvprobe::wire;
use tokio::sync::watch;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{ChildGuard as Guard, Collector, free_port};

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

/// A report as a real agent would send it: the checks run once, on a copy of the 6.18 kernel capture with
/// the 18 md arrays of the prometheus/procfs mdstat fixture (a large report, to be conservative).
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
    std::fs::copy(
        corpus.join("mdstat/procfs_fixture.txt"),
        root.path().join("proc/mdstat"),
    )
    .unwrap();
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

// ---------------------------------------------------------------------------------------------------------
// The bare tonic sink (its own process).

/// `hvprobe.v1.Ingest/Stream` served with tonic's own defaults (the default prost codec and its buffers,
/// not hvprobe's `LeanCodec`): what a bare tonic server costs.
#[derive(Clone)]
struct Sink;

type AckStream = tokio_stream::wrappers::ReceiverStream<Result<pb::Ack, tonic::Status>>;

impl tonic::server::StreamingService<pb::Report> for Sink {
    type Response = pb::Ack;
    type ResponseStream = AckStream;
    type Future = tonic::codegen::BoxFuture<tonic::Response<AckStream>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<pb::Report>>) -> Self::Future {
        Box::pin(sink_stream(request))
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for Sink
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<pb::Ack, pb::Report>::default();
            Ok(tonic::server::Grpc::new(codec).streaming(Sink, req).await)
        })
    }
}

impl tonic::server::NamedService for Sink {
    const NAME: &'static str = "hvprobe.v1.Ingest";
}

async fn sink_stream(
    request: tonic::Request<tonic::Streaming<pb::Report>>,
) -> Result<tonic::Response<AckStream>, tonic::Status> {
    {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                let ack = pb::Ack {
                    seq: r.seq,
                    ..Default::default()
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    }
}

/// A two-worker runtime, as the collector's machine has two cores.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn sink_main(addr: String) {
    raise_nofile();
    runtime().block_on(async {
        tonic::transport::Server::builder()
            .add_service(Sink)
            .serve(addr.parse().unwrap())
            .await
            .unwrap();
    });
}

// ---------------------------------------------------------------------------------------------------------
// The simulated fleet: the agent's own uplink per agent.

/// Run-wide counters the agents' ack hooks feed.
#[derive(Default)]
struct Stats {
    recording: AtomicBool,
    sent: AtomicU64,
    acked: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
    /// Nanoseconds since `epoch` when the collector was restarted (0: no storm).
    restarted_ns: AtomicU64,
}

struct Sim {
    /// When the latest report was published (ns since `epoch`), and its seq.
    published_ns: AtomicU64,
    seq: AtomicU64,
    /// First ack after the restart (ns since `epoch`), 0 until then.
    back_ns: AtomicU64,
}

struct Fleet {
    /// With TLS: the certificates each agent presents (one per host id).
    tls: Option<Arc<BenchPki>>,
    epoch: Instant,
    stats: Arc<Stats>,
    sims: Vec<Arc<Sim>>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            tls: None,
            epoch: Instant::now(),
            stats: Arc::new(Stats::default()),
            sims: Vec::new(),
            shutdown: watch::channel(false).0,
            tasks: tokio::task::JoinSet::new(),
        }
    }

    fn ns(epoch: Instant) -> u64 {
        epoch.elapsed().as_nanos() as u64
    }

    /// Adds `n` agents reporting to `addr` every `interval`, ramped over `ramp`.
    async fn grow(
        &mut self,
        addr: std::net::SocketAddr,
        n: usize,
        template: &Arc<pb::Report>,
        interval: Duration,
        ramp: Duration,
        change_percent: u64,
    ) {
        let first = self.sims.len();
        for i in first..first + n {
            let sim = Arc::new(Sim {
                published_ns: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                back_ns: AtomicU64::new(0),
            });
            self.sims.push(sim.clone());
            let (tx, rx) = watch::channel::<Option<Arc<pb::Report>>>(None);
            let (stats, epoch) = (self.stats.clone(), self.epoch);
            let hook_sim = sim.clone();
            let hook = AckHook(Arc::new(move |ack: &pb::Ack| {
                let now = Fleet::ns(epoch);
                let restarted = stats.restarted_ns.load(Ordering::Relaxed);
                if restarted > 0 && now > restarted {
                    let _ = hook_sim.back_ns.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                if stats.recording.load(Ordering::Relaxed)
                    && ack.seq == hook_sim.seq.load(Ordering::Relaxed)
                    && ack.retry_after_ms == 0
                {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    let sent = hook_sim.published_ns.load(Ordering::Relaxed);
                    let us = now.saturating_sub(sent) / 1000;
                    if let Ok(mut l) = stats.latencies_us.lock() {
                        l.push(us.min(u64::from(u32::MAX)) as u32);
                    }
                }
            }));
            let cfg = UplinkConfig {
                target: Target::Addr(addr),
                first_delay_max: interval.min(Duration::from_secs(10)),
                backoff_max: Duration::from_secs(120),
                connect_timeout: Duration::from_secs(5),
                ack_timeout: (interval * 3).max(Duration::from_secs(15)),
                tls: self.tls.as_ref().map(|p| p.client(&format!("sim-{i:05}"))),
                on_ack: Some(hook),
            };
            self.tasks
                .spawn(uplink::run(cfg, rx, self.shutdown.subscribe()));
            let (stats, epoch, template) = (self.stats.clone(), self.epoch, template.clone());
            let mut stop = self.shutdown.subscribe();
            self.tasks.spawn(async move {
                let host = format!("sim-{i:05}");
                let mut next = tokio::time::Instant::now() + interval.mul_f64(fastrand::f64());
                let mut seq = 0u64;
                let mut changed_at = 0u64;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    next += interval;
                    seq += 1;
                    let mut r = (*template).clone();
                    r.host_id = host.clone();
                    r.seq = seq;
                    // A state change now and then: one check's summary differs for a while.
                    if fastrand::u64(0..100) < change_percent {
                        changed_at = seq;
                    }
                    if changed_at > 0 && seq - changed_at < 3 {
                        if let Some(c) = r.checks.first_mut() {
                            c.summary.push_str(" (changed)");
                        }
                    }
                    sim.seq.store(seq, Ordering::Relaxed);
                    sim.published_ns.store(Fleet::ns(epoch), Ordering::Relaxed);
                    if stats.recording.load(Ordering::Relaxed) {
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    if tx.send(Some(Arc::new(r))).is_err() {
                        return;
                    }
                }
            });
            if i % 100 == 99 {
                tokio::time::sleep(ramp / (n as u32 / 100).max(1)).await;
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Certificates for the TLS phase: a CA, the collector's (IP SAN 127.0.0.1), a tool's (to read /metrics),
/// and one per simulated agent naming its host id (made when the agent starts). The agents share one key
/// pair: key generation is not what is measured.
struct BenchPki {
    dir: tempfile::TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    agent_key: rcgen::KeyPair,
}

impl BenchPki {
    fn new() -> BenchPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hvprobe bench CA");
        let ca = rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = BenchPki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            agent_key: KeyPair::generate().unwrap(),
        };
        std::fs::write(pki.path("ca.crt"), pki.ca.pem()).unwrap();
        for (name, ip) in [("collector", vec!["127.0.0.1"]), ("tool", vec![])] {
            let key = KeyPair::generate().unwrap();
            let cert = pki.params(name, &ip).signed_by(&key, &pki.ca).unwrap();
            std::fs::write(pki.path(&format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(pki.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        pki
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn params(&self, dns: &str, ips: &[&str]) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(vec![dns.to_owned()]).unwrap();
        // Its own subject: with rcgen's default one for all, OpenSSL takes each for self-signed.
        p.distinguished_name.push(rcgen::DnType::CommonName, dns);
        for ip in ips {
            p.subject_alt_names
                .push(rcgen::SanType::IpAddress(ip.parse().unwrap()));
        }
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p
    }

    /// The `[collector.tls]` table.
    fn collector_table(&self) -> String {
        format!(
            "[collector.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient-ca = \"{}\"\n",
            self.path("collector.crt").display(),
            self.path("collector.key").display(),
            self.path("ca.crt").display()
        )
    }

    /// An agent's client configuration, with a certificate naming `host`.
    fn client(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let cert = self
            .params(host, &[])
            .signed_by(&self.agent_key, &self.ca)
            .unwrap();
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(self.ca.pem()))
            .identity(tonic::transport::Identity::from_pem(
                cert.pem(),
                self.agent_key.serialize_pem(),
            ))
    }

    /// A metric of a TLS collector, read over HTTPS with the tool's certificate.
    fn metric(&self, c: &Collector, name: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(self.path("ca.crt"))
            .arg("--cert")
            .arg(self.path("tool.crt"))
            .arg("--key")
            .arg(self.path("tool.key"))
            .arg(format!("https://{}/metrics", c.http))
            .output()
            .ok()?;
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok());
        if found.is_none() {
            eprintln!(
                "{name} not read over HTTPS: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        found
    }
}

/// What a reconnect storm measured.
struct Storm {
    /// Seconds from the restart to each returning agent's first ack, sorted.
    back: Vec<f64>,
    p99: f64,
    lost: usize,
    peak_kib: u64,
    deadline: Duration,
}

impl Storm {
    fn line(&self, n: usize, outage: Duration) -> String {
        let within_60 = self.back.iter().filter(|s| **s <= 60.0).count();
        format!(
            "killed, down {} s, restarted: {}/{n} back, p50 {:.1} s, p99 {:.1} s, {:.2}% within 60 s, {} not back within {} s",
            outage.as_secs(),
            self.back.len(),
            self.back.get(self.back.len() / 2).copied().unwrap_or(0.0),
            self.p99,
            within_60 as f64 * 100.0 / n as f64,
            self.lost,
            self.deadline.as_secs(),
        )
    }
}

/// SIGKILLs the collector, keeps it down `outage`, restarts it on the same ports and waits (at most
/// `deadline`) until every agent of `fleet` has been acknowledged again.
async fn storm(
    fleet: &Fleet,
    collector: &mut Collector,
    outage: Duration,
    deadline: Duration,
) -> Storm {
    let n = fleet.sims.len();
    collector.kill9();
    tokio::time::sleep(outage).await;
    for s in &fleet.sims {
        s.back_ns.store(0, Ordering::Relaxed);
    }
    fleet
        .stats
        .restarted_ns
        .store(Fleet::ns(fleet.epoch).max(1), Ordering::Relaxed);
    let restarted = Instant::now();
    let tls = fleet.tls.is_some();
    tokio::task::block_in_place(|| {
        if tls {
            collector.restart_tls()
        } else {
            collector.restart()
        }
    });
    let pid = collector.child.as_ref().unwrap().0.id();
    let mut peak_kib = 0;
    while restarted.elapsed() < deadline {
        peak_kib = peak_kib.max(rss_kib(pid));
        let back = fleet
            .sims
            .iter()
            .filter(|s| s.back_ns.load(Ordering::Relaxed) > 0)
            .count();
        if back == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restart_ns = fleet.stats.restarted_ns.load(Ordering::Relaxed);
    let mut back: Vec<f64> = fleet
        .sims
        .iter()
        .map(|s| s.back_ns.load(Ordering::Relaxed))
        .filter(|b| *b > 0)
        .map(|b| b.saturating_sub(restart_ns) as f64 / 1e9)
        .collect();
    back.sort_by(f64::total_cmp);
    let lost = n - back.len();
    // The p99 over the whole fleet: an agent not back counts as the deadline.
    let p99 = if lost * 100 > n {
        deadline.as_secs_f64()
    } else {
        back.get(((n as f64 * 0.99) as usize).min(back.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Storm {
        back,
        p99,
        lost,
        peak_kib,
        deadline,
    }
}

/// What a steady window measured of one server process.
struct Steady {
    acked: u64,
    sent: u64,
    secs: f64,
    cpu_us_per_report: f64,
    rss_kib: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn steady(fleet: &Fleet, pid: u32, window: Duration) -> Steady {
    let s = &fleet.stats;
    s.sent.store(0, Ordering::Relaxed);
    s.acked.store(0, Ordering::Relaxed);
    s.latencies_us.lock().unwrap().clear();
    s.recording.store(true, Ordering::Relaxed);
    let cpu0 = cpu(pid);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    s.recording.store(false, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let used = cpu(pid).saturating_sub(cpu0);
    let acked = s.acked.load(Ordering::Relaxed);
    let mut lat = s.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Steady {
        acked,
        sent: s.sent.load(Ordering::Relaxed),
        secs,
        cpu_us_per_report: used.as_secs_f64() * 1e6 / acked.max(1) as f64,
        rss_kib: rss_kib(pid),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(0) as f64 / 1000.0,
    }
}

/// What a closed loop measured: the collector's whole ingest (the loop's reports and the connected agents'),
/// the loop's share, and the CPU of the collector, of the loop's own process and of this one (the simulated
/// agents), in cores.
struct Ceiling {
    /// Reports/s the collector ingested in all while the loop ran: the ceiling with N agents connected.
    ingest: f64,
    /// Of which the loop's.
    rate: f64,
    collector_cores: f64,
    loop_cores: f64,
    fleet_cores: f64,
}

impl Ceiling {
    fn line(&self) -> String {
        format!(
            "{:.0} reports/s ingested in all ({:.0}/s from the loop, the rest from the agents); CPU: collector {:.2} cores ({:.0} us per report), closed loop {:.2} cores, simulated agents {:.2} cores",
            self.ingest,
            self.rate,
            self.collector_cores,
            self.collector_cores * 1e6 / self.ingest.max(1.0),
            self.loop_cores,
            self.fleet_cores
        )
    }
}

/// Closed loop against the collector `c`, in a process of its own (`HVPROBE_BENCH_LOOP`), optionally under
/// `perf record` (`HVPROBE_BENCH_PROFILE=<dir>`). Its own process and runtime: in this one its streams would
/// queue behind the simulated agents' tasks, and the figure would fall with the fleet for the load
/// generator's sake, not the collector's.
async fn ceiling_of(
    c: &Collector,
    label: &str,
    streams: usize,
    secs: Duration,
    warm: Duration,
) -> Ceiling {
    use std::io::BufRead;
    let pid = c.child.as_ref().unwrap().0.id();
    let me = std::process::id();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("HVPROBE_BENCH_LOOP", &c.grpc)
        .env("HVPROBE_BENCH_LOOP_STREAMS", streams.to_string())
        .env("HVPROBE_BENCH_LOOP_MS", secs.as_millis().to_string())
        .env("HVPROBE_BENCH_LOOP_WARM_MS", warm.as_millis().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let _child = Guard(child);
    while rx.recv().await.is_some_and(|l| l != "counting") {}
    let perf = std::env::var("HVPROBE_BENCH_PROFILE").ok().map(|dir| {
        Guard(
            Command::new("perf")
                .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-p"])
                .arg(pid.to_string())
                .arg("-o")
                .arg(format!("{dir}/collector-{label}.data"))
                .stderr(Stdio::null())
                .spawn()
                .expect("perf (Debian package linux-perf)"),
        )
    });
    let reports = || {
        tokio::task::block_in_place(|| c.metric("hvprobe_collector_reports_total").unwrap_or(0.0))
    };
    let (c0, f0, r0, t0) = (cpu(pid), cpu(me), reports(), Instant::now());
    let done = loop {
        match rx.recv().await {
            Some(l) if l.starts_with("acked=") => break l,
            Some(_) => continue,
            None => panic!("the closed loop ended without its figures"),
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let (c1, f1, r1) = (cpu(pid), cpu(me), reports());
    if let Some(p) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.0.id().to_string()])
            .status();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // acked=N cpu_ms=M
    let field = |k: &str| -> f64 {
        done.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ceiling {
        ingest: (r1 - r0) / wall,
        rate: field("acked=") / secs.as_secs_f64(),
        collector_cores: c1.saturating_sub(c0).as_secs_f64() / wall,
        loop_cores: field("cpu_ms=") / 1000.0 / wall,
        fleet_cores: f1.saturating_sub(f0).as_secs_f64() / wall,
    }
}

/// The closed loop's own process (`HVPROBE_BENCH_LOOP=<addr>`): `HVPROBE_BENCH_LOOP_STREAMS` streams send
/// full reports as fast as their acks come back; after `HVPROBE_BENCH_LOOP_WARM_MS` (connections made,
/// streams admitted) it prints `counting`, counts acks for `HVPROBE_BENCH_LOOP_MS`, and prints
/// `acked=N cpu_ms=M` (its CPU over the counted window).
fn loop_main(addr: String) {
    let streams = env("HVPROBE_BENCH_LOOP_STREAMS", 200) as usize;
    let secs = Duration::from_millis(env("HVPROBE_BENCH_LOOP_MS", 10_000));
    let warm = Duration::from_millis(env("HVPROBE_BENCH_LOOP_WARM_MS", 2_000));
    raise_nofile();
    runtime().block_on(async {
        let template = Arc::new(template().await);
        let (acked, cpu) = ceiling(&addr, template, streams, warm, secs).await;
        println!("acked={acked} cpu_ms={}", cpu.as_millis());
    });
}

/// Closed loop: `streams` streams send full reports as fast as their acks come back for `warm + secs`;
/// the acks of the last `secs` are counted. Returns them and this process's CPU over that time.
async fn ceiling(
    addr: &str,
    template: Arc<pb::Report>,
    streams: usize,
    warm: Duration,
    secs: Duration,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let count_from = Instant::now() + warm;
    let stop = count_from + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let (addr, template, done) = (addr.to_owned(), template.clone(), done.clone());
        tasks.spawn(async move {
            let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
            else {
                return;
            };
            let mut client = pb::ingest_client::IngestClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::Report>(2);
            let Ok(acks) = client
                .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            else {
                return;
            };
            let mut acks = acks.into_inner();
            let mut seq = 0;
            while Instant::now() < stop {
                seq += 1;
                let mut r = (*template).clone();
                r.host_id = format!("burst-{i}");
                r.seq = seq;
                if tx.send(r).await.is_err() || !matches!(acks.message().await, Ok(Some(_))) {
                    return;
                }
                if Instant::now() >= count_from {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep_until(count_from.into()).await;
    let cpu0 = cpu(std::process::id());
    println!("counting");
    tokio::task::block_in_place(|| {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    });
    while tasks.join_next().await.is_some() {}
    (
        done.load(Ordering::Relaxed),
        cpu(std::process::id()).saturating_sub(cpu0),
    )
}

async fn wait_listening(addr: &str) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {addr}");
}

/// What the collector's per-host state weighs: RSS growth of 19,000 decoded reports (the template), and the
/// sizes of the per-stream types (`HVPROBE_BENCH_SIZES=1`).
fn sizes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let template = rt.block_on(template());
    let n = 19_000;
    let before = rss_kib(std::process::id());
    let kept: Vec<HostReport> = (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.host_id = format!("sim-{i:05}");
            wire::report_from_pb(&r).unwrap()
        })
        .collect();
    let after = rss_kib(std::process::id());
    println!(
        "decoded report: {:.1} KiB each ({} kept)",
        after.saturating_sub(before) as f64 / n as f64,
        kept.len()
    );
    let before = rss_kib(std::process::id());
    let pbs: Vec<pb::Report> = (0..n).map(|_| template.clone()).collect();
    let after = rss_kib(std::process::id());
    println!(
        "prost report: {:.1} KiB each ({} kept)",
        after.saturating_sub(before) as f64 / n as f64,
        pbs.len()
    );
    println!(
        "Result<Ack, Status>: {} bytes; pb::Ack: {} bytes",
        std::mem::size_of::<Result<pb::Ack, tonic::Status>>(),
        std::mem::size_of::<pb::Ack>()
    );
}

/// Only the simulated fleet, against a collector you run yourself (`HVPROBE_BENCH_FLEET_ONLY=<addr>`), e.g.
/// under `heaptrack` to see where its memory per connection goes: `HVPROBE_BENCH_AGENTS` agents for
/// `HVPROBE_BENCH_SECS` seconds, then the acknowledged count.
fn fleet_only(addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().expect("HVPROBE_BENCH_FLEET_ONLY: host:port");
    let n = env("HVPROBE_BENCH_AGENTS", 1000) as usize;
    let secs = Duration::from_secs(env("HVPROBE_BENCH_SECS", 60));
    let interval = Duration::from_secs(env("HVPROBE_BENCH_INTERVAL_SECS", 10));
    let change = env("HVPROBE_BENCH_CHANGE_PERCENT", 5);
    raise_nofile();
    runtime().block_on(async {
        let template = Arc::new(template().await);
        let mut fleet = Fleet::new();
        fleet
            .grow(addr, n, &template, interval, interval, change)
            .await;
        tokio::time::sleep(secs).await;
        println!(
            "fleet of {n}: {} acknowledged",
            fleet.stats.acked.load(Ordering::Relaxed)
        );
        fleet.stop().await;
    });
}

fn main() {
    if let Ok(addr) = std::env::var("HVPROBE_BENCH_SINK") {
        return sink_main(addr);
    }
    if let Ok(addr) = std::env::var("HVPROBE_BENCH_LOOP") {
        return loop_main(addr);
    }
    if std::env::var_os("HVPROBE_BENCH_SIZES").is_some() {
        return sizes();
    }
    if let Ok(addr) = std::env::var("HVPROBE_BENCH_FLEET_ONLY") {
        return fleet_only(&addr);
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = env("HVPROBE_BENCH_AGENTS", if smoke { 60 } else { 19_000 }) as usize;
    let small = n.min(if smoke { 20 } else { 1000 });
    let interval = Duration::from_secs(env(
        "HVPROBE_BENCH_INTERVAL_SECS",
        if smoke { 1 } else { 10 },
    ));
    let window = Duration::from_secs(env("HVPROBE_BENCH_SECS", if smoke { 2 } else { 30 }));
    let outage = Duration::from_secs(env("HVPROBE_BENCH_OUTAGE_SECS", if smoke { 2 } else { 30 }));
    let change = env("HVPROBE_BENCH_CHANGE_PERCENT", 5);
    let burst_streams = if smoke { 10 } else { 200 };
    let burst_secs = Duration::from_secs(if smoke { 2 } else { 10 });
    let burst_warm = Duration::from_millis(if smoke { 500 } else { 2_000 });
    let ramp = interval;
    raise_nofile();
    let rt = runtime();
    let offered = n as f64 / interval.as_secs_f64();
    rt.block_on(async {
        let template = Arc::new(template().await);
        let size = prost::Message::encoded_len(&*template);
        println!(
            "collector ingest: {n} simulated agents (the agent's own uplink each: one TCP connection and stream), interval {} s, report {size} bytes, {change}% of reports change a check",
            interval.as_secs()
        );

        // 1. The bare tonic sink.
        let sink_addr = format!("127.0.0.1:{}", free_port());
        let sink = Guard(
            Command::new(std::env::current_exe().unwrap())
                .env("HVPROBE_BENCH_SINK", &sink_addr)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_listening(&sink_addr).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sink_idle = rss_kib(sink.0.id());
        let mut fleet = Fleet::new();
        fleet
            .grow(sink_addr.parse().unwrap(), n, &template, interval, ramp, change)
            .await;
        tokio::time::sleep(interval).await;
        let bare = steady(&fleet, sink.0.id(), window).await;
        let bare_kib = bare.rss_kib.saturating_sub(sink_idle) as f64 / n as f64;
        println!(
            "  bare tonic sink: {} acked in {:.0} s, {:.1} us CPU per report, {:.1} KiB per connected agent (RSS {:.1} MiB)",
            bare.acked,
            bare.secs,
            bare.cpu_us_per_report,
            bare_kib,
            bare.rss_kib as f64 / 1024.0
        );
        fleet.stop().await;
        drop(sink);

        // 2. A collector with 1,000 agents: the closed-loop ceiling. Its own process, so the burst's garbage
        // is not in the memory figure of the next one.
        let settings = format!(
            "max-streams = {}\nmax-streams-per-peer = {}\nadmit-streams-per-sec = 2000\nadmit-connections-per-sec = 2000\nadmit-connections-per-source-per-sec = 1000000\nrate-limit-reports = false",
            n + 2000,
            n + 2000
        );
        let first = tokio::task::block_in_place(|| Collector::start(&settings));
        let grpc: std::net::SocketAddr = first.grpc.parse().unwrap();
        let mut fleet = Fleet::new();
        fleet
            .grow(grpc, small, &template, interval, ramp, change)
            .await;
        tokio::time::sleep(interval).await;
        let c_small = ceiling_of(&first, "small", burst_streams, burst_secs, burst_warm).await;
        let ceiling_small = c_small.ingest;
        println!(
            "  ceiling with {small} agents connected (closed loop of {burst_streams} streams of full reports, in its own process): {}",
            c_small.line()
        );

        fleet.stop().await;
        drop(first);

        // 3. A fresh collector with N agents.
        let mut collector = tokio::task::block_in_place(|| Collector::start(&settings));
        let pid = collector.child.as_ref().unwrap().0.id();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = rss_kib(pid);
        let grpc: std::net::SocketAddr = collector.grpc.parse().unwrap();
        let mut fleet = Fleet::new();
        fleet.grow(grpc, n, &template, interval, ramp, change).await;
        tokio::time::sleep(interval * 2).await;
        let st = steady(&fleet, pid, window).await;
        let kib = st.rss_kib.saturating_sub(idle) as f64 / n as f64;
        let acked_ratio = st.acked as f64 / offered / st.secs;
        println!(
            "  steady window {:.0} s: {} reports acknowledged ({:.0}/s; offered {offered:.0}/s; acked/offered {acked_ratio:.3}), sent {}",
            st.secs,
            st.acked,
            st.acked as f64 / st.secs,
            st.sent
        );
        println!(
            "  ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            st.p50_ms, st.p99_ms, st.max_ms
        );
        println!(
            "  collector: {:.1} us CPU per report = {:.2}x the bare sink; {:.1} KiB per connected agent = {:.2}x the bare sink (RSS idle {:.1} MiB, with the fleet {:.1} MiB)",
            st.cpu_us_per_report,
            st.cpu_us_per_report / bare.cpu_us_per_report.max(0.001),
            kib,
            kib / bare_kib.max(0.001),
            idle as f64 / 1024.0,
            st.rss_kib as f64 / 1024.0
        );
        let compact = collector.metric("hvprobe_collector_compact_checks_total").unwrap_or(0.0);
        let total = collector.metric("hvprobe_collector_reports_total").unwrap_or(0.0);
        println!("  compact checks completed by the collector: {compact:.0} over {total:.0} reports");
        let c_large = ceiling_of(&collector, "large", burst_streams, burst_secs, burst_warm).await;
        let ceiling_large = c_large.ingest;
        println!(
            "  ceiling with {n} agents connected: {} = {:.2}x the ceiling at {small}, {:.1}x the load of {n} agents",
            c_large.line(),
            ceiling_large / ceiling_small.max(1.0),
            ceiling_large / offered
        );

        // 4. The reconnect storm.
        let deadline = Duration::from_secs(if smoke { 30 } else { 180 });
        let storm_plain = storm(&fleet, &mut collector, outage, deadline).await;
        let (p99, lost) = (storm_plain.p99, storm_plain.lost);
        let refused = collector
            .metric("hvprobe_collector_rejected_streams_total{reason=\"admission_rate\"}")
            .unwrap_or(0.0);
        let paused = collector
            .metric("hvprobe_collector_accept_paused_seconds_total")
            .unwrap_or(0.0);
        println!(
            "  reconnect storm: {}; {refused:.0} streams told to come back later, accept loop paused {paused:.1} s in all; collector peak RSS {:.1} MiB (steady {:.1} MiB)",
            storm_plain.line(n, outage),
            storm_plain.peak_kib as f64 / 1024.0,
            st.rss_kib as f64 / 1024.0
        );
        let per_report = st.cpu_us_per_report;
        let gib_100k = (idle as f64 + kib * 100_000.0) / 1024.0 / 1024.0;
        let cores_100k = per_report * 10_000.0 / 1e6;
        println!(
            "  extrapolated to 100,000 agents at 10 s: {gib_100k:.2} GiB RSS, {cores_100k:.2} cores for 10,000 reports/s (ceiling here {ceiling_large:.0}/s)"
        );
        fleet.stop().await;
        drop(collector);

        // 5. The same with mTLS, as deployed (`HVPROBE_BENCH_TLS=0` skips it): a certificate per agent, the
        // collector checking each report's host against it; memory and CPU per agent, then a storm in which
        // every agent makes a full handshake again, paced by `admit-connections-per-sec`.
        if env("HVPROBE_BENCH_TLS", 1) != 0 {
            let pki = Arc::new(tokio::task::block_in_place(BenchPki::new));
            let mut tls_c = tokio::task::block_in_place(|| {
                Collector::start_tls(&format!("{settings}\n{}", pki.collector_table()))
            });
            let pid = tls_c.child.as_ref().unwrap().0.id();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let idle = rss_kib(pid);
            let mut fleet = Fleet::new();
            fleet.tls = Some(pki.clone());
            let grpc: std::net::SocketAddr = tls_c.grpc.parse().unwrap();
            fleet.grow(grpc, n, &template, interval, ramp, change).await;
            tokio::time::sleep(interval * 2).await;
            let tls_st = steady(&fleet, pid, window).await;
            let tls_kib = tls_st.rss_kib.saturating_sub(idle) as f64 / n as f64;
            println!(
                "  with mTLS: {} acknowledged in {:.0} s, {:.1} us CPU per report ({:.2}x plaintext), {tls_kib:.1} KiB per connected agent ({:.2}x plaintext)",
                tls_st.acked,
                tls_st.secs,
                tls_st.cpu_us_per_report,
                tls_st.cpu_us_per_report / st.cpu_us_per_report.max(0.001),
                tls_kib / kib.max(0.001)
            );
            let tls_storm = storm(&fleet, &mut tls_c, outage, deadline).await;
            let paused = pki
                .metric(&tls_c, "hvprobe_collector_accept_paused_seconds_total")
                .unwrap_or(f64::NAN);
            let failed = pki
                .metric(&tls_c, "hvprobe_collector_tls_handshake_failures_total")
                .unwrap_or(f64::NAN);
            println!(
                "  mTLS reconnect storm: {}; accept loop paused {paused:.1} s in all, {failed:.0} handshakes failed; collector peak RSS {:.1} MiB (steady {:.1} MiB)",
                tls_storm.line(n, outage),
                tls_storm.peak_kib as f64 / 1024.0,
                tls_st.rss_kib as f64 / 1024.0
            );
            fleet.stop().await;
        }
        println!(
            "RESULT agents={n} acked_ratio={acked_ratio:.4} cpu_us_per_report={:.1} bare_sink_cpu_us_per_report={:.1} kib_per_agent={kib:.1} reconnect_p99_secs={p99:.1} lost_agents={lost} ceiling_small={ceiling_small:.0} ceiling_large={ceiling_large:.0}",
            st.cpu_us_per_report, bare.cpu_us_per_report
        );
    });
}
