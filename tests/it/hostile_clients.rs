//! A collector nobody can crash or starve (issue 11): idle streams, a flooding stream and absurd field
//! values from real gRPC clients on loopback against the real collector process — and after each, a real
//! agent still reports and a fresh fault still opens a verdict.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;

use crate::support::{Agent, Collector, FixtureHost, wait_for};
use hvprobe::pb;

fn report(host_id: &str, seq: u64) -> pb::Report {
    pb::Report {
        host_id: host_id.into(),
        az: "az9".into(),
        interval_secs: 1,
        seq,
        ..Default::default()
    }
}

async fn client(addr: &str) -> pb::ingest_client::IngestClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::ingest_client::IngestClient::new(ch)
}

/// The fleet still works: a real agent reports, and a fault injected into its root opens a verdict.
fn still_works(c: &Collector, id: &str) {
    let host = FixtureHost::kernel_6_18();
    let _agent = Agent::start(&host, id, "az-ok", &[&c.grpc], 1);
    wait_for(Duration::from_secs(30), || {
        c.host(id).filter(|h| h["status"] == "ok")
    })
    .unwrap_or_else(|| panic!("{id} did not report: {:?}\n{}", c.hosts(), c.log()));
    host.set_conntrack(950, 1000);
    wait_for(Duration::from_secs(20), || {
        let z = c.get("/api/v1/zones?az=az-ok");
        (z["zones"][0]["verdicts"].as_array()?.len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("no verdict for {id}: {}", c.get("/api/v1/zones")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_streams_neither_hold_their_slots_nor_starve_agents() {
    let c = Collector::start("first-report-timeout-ms = 8000\nmax-streams-per-peer = 256");
    let grpc = c.grpc.clone();
    // 300 streams that never send, 3 per connection.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let mut cl = client(&grpc).await;
        for _ in 0..3 {
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::Report>(1);
            match cl.stream(ReceiverStream::new(rx)).await {
                Ok(r) => held.push((tx, r.into_inner())),
                Err(s) => {
                    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s}");
                    assert!(s.message().contains("max-streams-per-peer"), "{s}");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(
        (held.len(), refused),
        (256, 44),
        "one address holds at most 256 streams\n{}",
        c.log().lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    // None of them sends: each is ended by the first-report deadline.
    for (_tx, acks) in &mut held {
        let end = tokio::time::timeout(Duration::from_secs(20), acks.message())
            .await
            .unwrap();
        let status = end.expect_err("an idle stream was kept");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    }
    let c = tokio::task::spawn_blocking(move || {
        assert!(
            c.metric("hvprobe_collector_rejected_streams_total{reason=\"idle\"}")
                .unwrap()
                >= 256.0
        );
        assert_eq!(
            c.metric("hvprobe_collector_rejected_streams_total{reason=\"per_peer\"}"),
            Some(44.0)
        );
        still_works(&c, "hv-after-idle");
        c
    })
    .await
    .unwrap();
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_stream_is_rate_limited_and_absurd_values_crash_nothing() {
    let c = Collector::start("");
    let grpc = c.grpc.clone();
    // A stream sending 2,000 reports as fast as it can, each claiming a 1 s interval.
    let mut cl = client(&grpc).await;
    let flood = tokio_stream::iter((1..=2000).map(|seq| report("hv-flood", seq)));
    let mut acks = cl.stream(flood).await.unwrap().into_inner();
    let mut n = 0;
    while let Ok(Some(_)) = acks.message().await {
        n += 1;
    }
    assert!(n > 1900, "every report was answered ({n})");
    // Absurd values: a clock in microseconds, a boot time at the end of time, a NaN CPU, huge texts.
    let absurd = pb::Report {
        observed_at_unix_ms: 1_000_000_000_000_000,
        boot_time_unix: Some(u64::MAX),
        agent_version: "v".repeat(10_000),
        boot_id: "é".repeat(5000),
        missed_cycles: u32::MAX,
        agent: Some(pb::AgentSelf {
            rss_bytes: u64::MAX,
            cpu_seconds: f64::NAN,
        }),
        ..report("hv-absurd", u64::MAX)
    };
    let mut cl = client(&grpc).await;
    let mut acks = cl
        .stream(tokio_stream::iter(vec![
            absurd.clone(),
            pb::Report {
                missed_cycles: u32::MAX,
                ..absurd
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    while let Ok(Some(_)) = acks.message().await {}
    tokio::task::spawn_blocking(move || {
        let limited = c
            .metric("hvprobe_collector_rate_limited_reports_total")
            .unwrap();
        assert!(limited > 1000.0, "the flood was dropped: {limited}");
        assert!(c.metric("hvprobe_collector_clamped_fields_total").unwrap() >= 4.0);
        let h = c.get("/api/v1/hosts/hv-absurd");
        assert_eq!(h["host_id"], "hv-absurd", "{h}");
        assert!(h["agent_version"].as_str().unwrap().len() <= 64, "{h}");
        assert!(h["observed_at"].as_str().unwrap().starts_with("20"), "{h}");
        still_works(&c, "hv-after-flood");
    })
    .await
    .unwrap();
}

/// Issue 15: a fleet reconnecting at once meets the admission rate. 200 streams opened in one burst
/// against `admit-streams-per-sec = 20`: about a second's worth is admitted, the rest are refused with
/// RESOURCE_EXHAUSTED and a `retry-after-ms` hint spread over the backlog (not one value for all); streams
/// that come back when told are admitted; and a real agent still reports and still opens a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_burst_is_admitted_at_the_configured_rate_with_spread_hints() {
    let c = Collector::start("admit-streams-per-sec = 20\nmax-streams-per-peer = 1000");
    let grpc = c.grpc.clone();
    let mut admitted = 0;
    let mut hints: Vec<u64> = Vec::new();
    let mut held = Vec::new();
    let t0 = std::time::Instant::now();
    for _ in 0..50 {
        let mut cl = client(&grpc).await;
        for _ in 0..4 {
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::Report>(1);
            match cl.stream(ReceiverStream::new(rx)).await {
                Ok(r) => {
                    admitted += 1;
                    held.push((tx, r.into_inner()));
                }
                Err(s) => {
                    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                    assert!(s.message().contains("admit-streams-per-sec"), "{s:?}");
                    hints.push(crate::support::retry_after_ms(&s));
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let allowed = 20.0 + 20.0 * secs + 1.0;
    assert!(
        (admitted as f64) <= allowed && admitted >= 20,
        "{admitted} admitted in {secs:.2} s at 20/s"
    );
    assert_eq!(admitted + hints.len(), 200);
    hints.sort_unstable();
    assert!(hints[0] >= 1000, "{hints:?}");
    // The backlog takes refused/20 s to drain; the hints spread over it (half of it at least, capped at 3 s,
    // however slowly this loop ran).
    let spread = (hints.len() as u64 * 1000 / 20 / 2).min(3000);
    assert!(
        hints[hints.len() - 1] >= hints[0] + spread,
        "hints are spread over the backlog, not one value: {hints:?}"
    );
    drop(held);
    // Coming back when told works: after the wait, new streams are admitted again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut cl = client(&grpc).await;
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::Report>(1);
    assert!(cl.stream(ReceiverStream::new(rx)).await.is_ok());
    let refused = c
        .metric("hvprobe_collector_rejected_streams_total{reason=\"admission_rate\"}")
        .unwrap();
    assert_eq!(refused as usize, hints.len(), "{}", c.metrics());
    tokio::task::spawn_blocking(move || still_works(&c, "hv-after-burst"))
        .await
        .unwrap();
}

/// Issue 15: a fleet reconnecting at once meets the accept pace before it costs anything. 60 connections
/// opened in one burst against `admit-connections-per-sec = 10`: the collector answers (its HTTP/2
/// SETTINGS, sent once it has accepted) about a second's worth at once and the rest at the pace, none is
/// lost, the pauses are counted and the collector marks its own ingest degraded; and a real agent connected
/// before the burst keeps reporting all through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_burst_is_accepted_at_the_configured_pace_while_an_agent_keeps_reporting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Every client here is 127.0.0.1: its share is lifted so the pace alone holds it (the share has a test
    // of its own).
    let c = Collector::start(
        "admit-connections-per-sec = 10\nadmit-connections-per-source-per-sec = 100000",
    );
    let grpc = c.grpc.clone();
    let host = FixtureHost::kernel_6_18();
    let _agent = Agent::start(&host, "hv-paced", "az-pace", &[&c.grpc], 1);
    let c = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(30), || {
            c.host("hv-paced").filter(|h| h["status"] == "ok")
        })
        .unwrap_or_else(|| panic!("the agent did not report: {}", c.log()));
        c
    })
    .await
    .unwrap();
    assert_eq!(
        c.metric("hvprobe_collector_accept_pauses_total"),
        Some(0.0),
        "no pause before the burst"
    );
    // Let the bucket fill again (one second's worth) so the burst meets a known state.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reports_before = c.metric("hvprobe_collector_reports_total").unwrap();
    let t0 = std::time::Instant::now();
    let mut conns = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let grpc = grpc.clone();
        conns.spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&grpc).await.unwrap();
            // The client preface and an empty SETTINGS frame; the server's SETTINGS come once accepted.
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await
                .unwrap();
            let mut b = [0u8; 9];
            let answered =
                tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut b)).await;
            assert!(
                matches!(answered, Ok(Ok(_))),
                "a paced connection is answered, not lost: {answered:?}"
            );
            assert_eq!(b[3], 4, "the server's first frame is SETTINGS: {b:?}");
            (t0.elapsed().as_secs_f64(), s)
        });
    }
    let (at, held) = crate::support::finish_times(conns).await;
    // At most the burst (10) plus the pace (10/s) plus one at any time; and the last takes the pace.
    crate::support::assert_paced(&at, 10, &[0.5, 1.5, 3.0]);
    assert!(
        at.iter().filter(|a| **a <= 0.5).count() >= 10,
        "the burst itself is served at once: {at:?}"
    );
    assert!(at[59] >= 4.0, "50 beyond the burst at 10/s: {at:?}");
    // The agent kept reporting (every second) while the accept loop was paused.
    let burst_secs = t0.elapsed().as_secs_f64();
    let c = tokio::task::spawn_blocking(move || {
        let reports = c.metric("hvprobe_collector_reports_total").unwrap() - reports_before;
        assert!(
            reports >= (burst_secs - 2.0).floor(),
            "{reports} reports from the agent in {burst_secs:.1} s of paced accepts"
        );
        assert!(c.metric("hvprobe_collector_accept_pauses_total").unwrap() > 0.0);
        let paused = c
            .metric("hvprobe_collector_accept_paused_seconds_total")
            .unwrap();
        assert!(paused >= 3.0, "{paused} s paused\n{}", c.metrics());
        assert_eq!(
            c.metric("hvprobe_collector_ingest_degraded"),
            Some(1.0),
            "holding agents back, the collector doubts silence\n{}",
            c.metrics()
        );
        c
    })
    .await
    .unwrap();
    drop(held);
    assert!(c.host("hv-paced").is_some_and(|h| h["status"] == "ok"));
}

/// Opens a connection from `from` (any 127/8 address is loopback) and says whether the collector answered
/// it (its HTTP/2 SETTINGS) or closed it at once.
async fn answered_from(from: std::net::IpAddr, to: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    // A closed connection may refuse even the preface (reset): that too is an answer.
    let _ = s
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await;
    let mut b = [0u8; 9];
    match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut b)).await {
        Ok(Ok(_)) => true,
        Ok(Err(_)) => false,
        Err(_) => panic!("a connection from {from} was neither answered nor closed"),
    }
}

/// Issue 15: each source gets its share of the accept pace. 100 connections at once from 127.0.0.2 against
/// `admit-connections-per-sec = 40` (each source's share: a tenth, 4 a second) get about their share, and
/// the rest are closed at once, before any TLS work; meanwhile 20 agents' connections from 20 other
/// addresses are all answered, the accept loop never pauses, and the collector does not doubt its ingest
/// because of the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_gets_its_share_and_holds_nobody_else_back() {
    let c = Collector::start("admit-connections-per-sec = 40");
    let addr: std::net::SocketAddr = c.grpc.parse().unwrap();
    let flooder: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let t0 = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..100 {
        flood.spawn(answered_from(flooder, addr));
    }
    let mut others = tokio::task::JoinSet::new();
    for i in 1..=20u8 {
        let from = std::net::IpAddr::from([127, 0, 1, i]);
        others.spawn(async move {
            let ok = answered_from(from, addr).await;
            (ok, t0.elapsed().as_secs_f64())
        });
    }
    let mut flood_answered = 0;
    while let Some(r) = flood.join_next().await {
        flood_answered += usize::from(r.unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut local_at = Vec::new();
    while let Some(r) = others.join_next().await {
        let (ok, at) = r.unwrap();
        assert!(ok, "a connection from another source was closed");
        local_at.push(at);
    }
    let share = 4.0 + 4.0 * secs + 1.0;
    assert!(
        flood_answered >= 4 && flood_answered as f64 <= share,
        "{flood_answered} of the flood answered in {secs:.2} s at a share of 4/s"
    );
    assert!(
        local_at.iter().all(|t| *t < 2.0),
        "the other source waited behind the flood: {local_at:?}"
    );
    let closed = c
        .metric("hvprobe_collector_connections_over_share_total")
        .unwrap();
    assert_eq!(closed as usize, 100 - flood_answered, "{}", c.metrics());
    assert_eq!(c.metric("hvprobe_collector_accept_pauses_total"), Some(0.0));
    assert_eq!(c.metric("hvprobe_collector_ingest_degraded"), Some(0.0));
}
