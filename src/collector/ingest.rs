//! The gRPC ingest service: agents' streams in, acks out.
//!
//! Protection, so that no agent (or anything pretending to be one) can crash, spoof or starve the collector,
//! and an overloaded collector never turns into "every host is down":
//! - at most `max-streams` streams, `max-streams-per-peer` from one address and `max-streams-per-connection`
//!   on one connection: beyond, new streams are refused with RESOURCE_EXHAUSTED and a jittered
//!   `retry-after-ms` hint, instead of slowing everyone down;
//! - a stream must send its first report within `first-report-timeout-ms`, and then at least one every
//!   `idle-intervals` of its announced interval: a stream that never sends does not hold its slot;
//! - reports faster than the announced interval allows (under half of it) are dropped and counted; the
//!   latest report an agent sends right after connecting is never one of them;
//! - a message larger than `max-message-bytes`, undecodable, or with invalid identity fields ends only its
//!   own stream; fields an agent controls are clamped and counted ([`report::sanitize`]);
//! - at most `admit-streams-per-sec` new streams a second: after an outage a whole fleet reconnects at
//!   once; the streams beyond the rate are refused with a retry hint spread over the backlog, so they come
//!   back at the rate the collector takes them;
//! - when the state owner is saturated, a report is answered with a retry hint (the agent backs off).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::bucket::TokenBucket;
use super::state::{Cmd, Handle, IngestStats};
use crate::pb;
use crate::report::{self, HostReport};
use crate::tls::CertIdentity;
use crate::wire;

/// The limits of one collector's ingest.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS is configured: a stream needs a client certificate, and it must name every report's host.
    pub tls_required: bool,
    /// All streams.
    pub max_streams: usize,
    /// Streams from one peer address.
    pub max_streams_per_peer: usize,
    /// New streams admitted per second (burst: one second's worth).
    pub admit_per_sec: u32,
    /// Drop reports faster than half the announced interval.
    pub rate_limit: bool,
    /// Base of the retry hint.
    pub retry_after: Duration,
    /// Deadline of a stream's first report.
    pub first_report: Duration,
    /// A stream silent this many of its intervals is ended.
    pub idle_intervals: u32,
    /// The longest interval taken from an agent for the idle deadline.
    pub max_interval: Duration,
}

/// The service.
pub struct IngestService {
    state: Handle,
    stats: Arc<IngestStats>,
    active: Arc<AtomicUsize>,
    per_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
    next_id: AtomicU64,
    limits: Limits,
    admission: Mutex<Admission>,
}

/// The admission rate of new streams: a token bucket, and the streams refused lately (the backlog the
/// retry hints spread out).
#[derive(Debug)]
pub struct Admission {
    bucket: TokenBucket,
    /// Streams refused, decaying by the rate per second: roughly how many are waiting to come back.
    backlog: f64,
}

impl Admission {
    /// A full bucket of `rate` per second.
    pub fn new(rate: u32, now: Instant) -> Admission {
        Admission {
            bucket: TokenBucket::new(rate, now),
            backlog: 0.0,
        }
    }

    /// Admits one new stream now, or returns how long it should wait (ms): spread uniformly over the time
    /// the backlog takes to drain at the admission rate, at least one second, so the refused agents come
    /// back at the rate the collector takes them rather than together.
    pub fn take(&mut self, now: Instant, unit: f64) -> Result<(), u64> {
        let rate = self.bucket.rate();
        let dt = self.bucket.refill(now);
        self.backlog = (self.backlog - dt * rate).max(0.0);
        if self.bucket.take() {
            return Ok(());
        }
        self.backlog += 1.0;
        let drain_ms = self.backlog / rate * 1000.0;
        Err(1000 + (drain_ms * unit.clamp(0.0, 1.0)) as u64)
    }
}

impl IngestService {
    /// A service feeding `state`.
    pub fn new(state: Handle, stats: Arc<IngestStats>, limits: Limits) -> IngestService {
        IngestService {
            state,
            stats,
            active: Arc::new(AtomicUsize::new(0)),
            per_peer: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
            admission: Mutex::new(Admission::new(limits.admit_per_sec, Instant::now())),
            limits,
        }
    }

    fn retry_hint(&self) -> u64 {
        let base = self.limits.retry_after.as_millis() as u64;
        base + (base as f64 * fastrand::f64()) as u64
    }

    fn refuse(&self, why: String) -> Status {
        self.refuse_with(why, self.retry_hint())
    }

    fn refuse_with(&self, why: String, hint: u64) -> Status {
        let mut status = Status::resource_exhausted(format!("{why}; retry after {hint} ms"));
        if let Ok(v) = hint.to_string().parse() {
            status.metadata_mut().insert("retry-after-ms", v);
        }
        status
    }

    /// Takes a slot for a new stream from `peer`, or says why not.
    fn admit(&self, peer: Option<SocketAddr>) -> Result<Slot, Status> {
        let rate = self
            .admission
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now(), fastrand::f64());
        if let Err(hint) = rate {
            IngestStats::bump(&self.stats.rejected_admission);
            return Err(self.refuse_with(
                format!(
                    "too many agents connecting at once (admit-streams-per-sec = {})",
                    self.limits.admit_per_sec
                ),
                hint,
            ));
        }
        let taken = self.active.fetch_add(1, Ordering::Relaxed);
        let mut slot = Slot {
            active: self.active.clone(),
            per_peer: self.per_peer.clone(),
            peer: None,
        };
        if taken >= self.limits.max_streams {
            IngestStats::bump(&self.stats.rejected_capacity);
            return Err(self.refuse(format!(
                "collector at capacity ({} streams)",
                self.limits.max_streams
            )));
        }
        if let Some(ip) = peer.map(|p| p.ip()) {
            let mut map = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.limits.max_streams_per_peer {
                IngestStats::bump(&self.stats.rejected_per_peer);
                return Err(self.refuse(format!(
                    "{} streams from {ip} already (max-streams-per-peer)",
                    self.limits.max_streams_per_peer
                )));
            }
            *n += 1;
            slot.peer = Some(ip);
        }
        Ok(slot)
    }
}

/// A stream's place in the counts, given back when its task ends, however it ends.
struct Slot {
    active: Arc<AtomicUsize>,
    per_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.peer {
            let mut map = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// What one stream's task needs.
struct StreamCtx {
    stream: u64,
    /// With TLS: who the client certificate names; every report's host must be one of them.
    identity: Option<CertIdentity>,
    /// Fires when a newer stream of the same certificate replaces this one.
    replaced: Option<oneshot::Receiver<()>>,
    peer: Option<SocketAddr>,
    state: Handle,
    stats: Arc<IngestStats>,
    tx: mpsc::Sender<Result<pb::Ack, Status>>,
    shed_hint: u32,
    limits: Limits,
}

/// Decodes, clamps and validates one message; `Err` ends the stream with that status.
fn accept(ctx: &StreamCtx, msg: &pb::Report) -> Result<HostReport, Status> {
    let mut r = wire::report_from_pb(msg).map_err(|e| {
        IngestStats::bump(&ctx.stats.rejected_invalid);
        Status::invalid_argument(e.to_string())
    })?;
    let clamped = report::sanitize(&mut r, std::time::SystemTime::now());
    if !clamped.is_empty() {
        tracing::debug!(stream = ctx.stream, peer = ?ctx.peer, fields = ?clamped, "report fields clamped");
        ctx.stats
            .clamped
            .fetch_add(clamped.len() as u64, Ordering::Relaxed);
    }
    report::validate(&r).map_err(|why| {
        tracing::debug!(stream = ctx.stream, peer = ?ctx.peer, error = %why, "invalid report");
        IngestStats::bump(&ctx.stats.rejected_invalid);
        Status::invalid_argument(why)
    })?;
    Ok(r)
}

impl StreamCtx {
    /// Tells the state owner the stream opened, then runs it until it ends; every way out is counted and
    /// ends only this stream. `slot` holds its place in the stream caps until then.
    async fn run(mut self, mut inbound: Streaming<pb::Report>, opened: Cmd, slot: Slot) {
        let _slot = slot;
        self.state.notify(opened).await;
        let mut deadline = self.limits.first_report;
        let mut last_accepted: Option<(Instant, Duration)> = None;
        let mut accepted: u64 = 0;
        let mut replaced = self.replaced.take();
        loop {
            let next = tokio::time::timeout(deadline, inbound.message());
            let msg = tokio::select! {
                r = next => r,
                _ = async { match replaced.as_mut() { Some(r) => { let _ = r.await; } None => std::future::pending().await } } => {
                    let _ = self.tx.send(Err(Status::aborted("replaced by a newer stream of the same certificate"))).await;
                    break;
                }
            };
            let msg = match msg {
                Err(_) => {
                    IngestStats::bump(&self.stats.idle_closed);
                    let why = if last_accepted.is_none() {
                        "no report within first-report-timeout-ms"
                    } else {
                        "no report for idle-intervals of the announced interval"
                    };
                    let _ = self.tx.send(Err(Status::deadline_exceeded(why))).await;
                    break;
                }
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    // Oversized or undecodable: this stream ends, no other is touched.
                    tracing::debug!(stream = self.stream, peer = ?self.peer, error = %status, "stream ended by a bad message");
                    IngestStats::bump(&self.stats.rejected_malformed);
                    let _ = self.tx.send(Err(status)).await;
                    break;
                }
            };
            let report = match accept(&self, &msg) {
                Ok(r) => r,
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    break;
                }
            };
            if let Some(id) = &self.identity
                && !id.allows(&report.host_id, &report.az)
            {
                IngestStats::bump(&self.stats.rejected_identity);
                tracing::warn!(stream = self.stream, peer = ?self.peer, host_id = %report.host_id, az = %report.az,
                    certificate = %id.describe(), "a report for a host its certificate does not name: refused");
                let _ = self
                    .tx
                    .send(Err(Status::permission_denied(format!(
                        "the client certificate names {}, not host_id {:?} in az {:?}",
                        id.describe(),
                        report.host_id,
                        report.az
                    ))))
                    .await;
                break;
            }
            let interval = report.interval.min(self.limits.max_interval);
            deadline = interval.saturating_mul(self.limits.idle_intervals);
            let now = Instant::now();
            // Faster than half the announced interval: dropped and counted. The agent sends its latest report
            // at once on connecting and the next on its own schedule: neither of those two counts.
            if self.limits.rate_limit
                && accepted >= 2
                && let Some((at, iv)) = last_accepted
                && now.saturating_duration_since(at) < iv / 2
            {
                IngestStats::bump(&self.stats.rate_limited);
                let ack = pb::Ack {
                    seq: report.seq,
                    retry_after_ms: 0,
                    message: "report dropped: faster than the announced interval".into(),
                    compact_reports: true,
                    // Dropped, so not kept: the next report must not lean on it.
                    send_full: true,
                };
                if self.tx.send(Ok(ack)).await.is_err() {
                    break;
                }
                continue;
            }
            last_accepted = Some((now, interval));
            accepted += 1;
            match self.forward(report).await {
                Some(Ok(ack)) => {
                    let shed = ack.retry_after_ms > 0;
                    if self.tx.send(Ok(ack)).await.is_err() || shed {
                        break;
                    }
                }
                Some(Err(status)) => {
                    let _ = self.tx.send(Err(status)).await;
                    break;
                }
                None => break,
            }
        }
        self.state
            .notify(Cmd::StreamClosed {
                stream: self.stream,
            })
            .await;
    }

    /// Hands a report to the state owner; the ack, a refusal, or `None` when the owner is gone.
    async fn forward(&self, report: HostReport) -> Option<Result<pb::Ack, Status>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let seq = report.seq;
        let cmd = Cmd::Report {
            stream: self.stream,
            report: Box::new(report),
            reply: reply_tx,
        };
        match self.state.tx.try_send(cmd) {
            Ok(()) => match reply_rx.await {
                Ok(info) if info.refused => Some(Err(Status::already_exists(info.message))),
                Ok(info) => Some(Ok(pb::Ack {
                    seq,
                    retry_after_ms: 0,
                    message: info.message,
                    compact_reports: true,
                    send_full: info.send_full,
                })),
                Err(_) => None,
            },
            // The owner is saturated: shed this agent for a while rather than queue without bound.
            Err(_) => {
                IngestStats::bump(&self.stats.shed);
                Some(Ok(pb::Ack {
                    seq,
                    retry_after_ms: self.shed_hint,
                    message: "collector overloaded".into(),
                    compact_reports: false,
                    send_full: true,
                }))
            }
        }
    }
}

#[tonic::async_trait]
impl pb::ingest_server::Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<pb::Ack, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::Report>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.remote_addr();
        let identity = if self.limits.tls_required {
            match request.peer_certs() {
                Some(certs) if !certs.is_empty() => Some(CertIdentity::of(&certs[0])),
                _ => {
                    IngestStats::bump(&self.stats.rejected_identity);
                    return Err(Status::unauthenticated(
                        "a client certificate signed by the collector's client-ca is required",
                    ));
                }
            }
        } else {
            None
        };
        let slot = self.admit(peer)?;
        let stream = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(4);
        let (cancel, replaced) = oneshot::channel();
        let identity_key = identity.as_ref().map(CertIdentity::key);
        let ctx = StreamCtx {
            stream,
            identity,
            replaced: Some(replaced),
            peer,
            state: self.state.clone(),
            stats: self.stats.clone(),
            tx,
            shed_hint: u32::try_from(self.retry_hint()).unwrap_or(u32::MAX),
            limits: self.limits.clone(),
        };
        let opened = Cmd::StreamOpened {
            stream,
            peer,
            identity: identity_key,
            cancel: Some(cancel),
        };
        // `run` itself is the task, not an async block around it that also holds what it moves into `run`
        // (heaptrack: 0.5 KiB less per stream).
        tokio::spawn(ctx.run(request.into_inner(), opened, slot));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod admission_tests {
    use super::Admission;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_beyond_the_rate_is_told_to_come_back_spread_over_the_backlog() {
        let t0 = Instant::now();
        let mut a = Admission::new(100, t0);
        let admitted = (0..100).filter(|_| a.take(t0, 0.5).is_ok()).count();
        assert_eq!(admitted, 100, "one second of burst");
        // 1,000 more at the same instant: all refused, hints spread up to the ~10 s the backlog takes.
        let hints: Vec<u64> = (0..1000).map(|_| a.take(t0, 1.0).unwrap_err()).collect();
        assert!(hints.iter().all(|h| *h >= 1000));
        assert!(*hints.last().unwrap() >= 10_000, "{:?}", hints.last());
        assert_eq!(
            a.take(t0, 0.0),
            Err(1000),
            "a zero draw still waits a second"
        );
        // Time refills the bucket at the rate, never beyond one second's worth.
        let t1 = t0 + Duration::from_millis(500);
        let admitted = (0..100).filter(|_| a.take(t1, 0.5).is_ok()).count();
        assert_eq!(admitted, 50);
        let t2 = t1 + Duration::from_secs(60);
        let admitted = (0..300).filter(|_| a.take(t2, 0.5).is_ok()).count();
        assert_eq!(admitted, 100);
    }
}
