//! The gRPC ingest service: agents' streams in, acks out.
//!
//! Protection, so that an overloaded collector never turns into "every host is down":
//! - at most `max-streams` streams: beyond, new streams are refused with RESOURCE_EXHAUSTED and a jittered
//!   `retry-after-ms` hint, instead of slowing everyone down;
//! - a message larger than `max-message-bytes`, undecodable, or with invalid identity fields ends only its
//!   own stream;
//! - when the state owner is saturated, a report is answered with a retry hint (the agent backs off).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::state::{Cmd, Handle, IngestStats};
use crate::pb;
use crate::report;
use crate::wire;

/// The service.
pub struct IngestService {
    state: Handle,
    stats: Arc<IngestStats>,
    active: Arc<AtomicUsize>,
    next_id: AtomicU64,
    max_streams: usize,
    retry_after: Duration,
}

impl IngestService {
    /// A service feeding `state`.
    pub fn new(
        state: Handle,
        stats: Arc<IngestStats>,
        max_streams: usize,
        retry_after: Duration,
    ) -> IngestService {
        IngestService {
            state,
            stats,
            active: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
            max_streams,
            retry_after,
        }
    }

    fn retry_hint(&self) -> u64 {
        let base = self.retry_after.as_millis() as u64;
        base + (base as f64 * fastrand::f64()) as u64
    }
}

/// Decrements the stream count when a stream task ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl pb::ingest_server::Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<pb::Ack, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::Report>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let taken = self.active.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.active.clone());
        if taken >= self.max_streams {
            IngestStats::bump(&self.stats.rejected_capacity);
            let hint = self.retry_hint();
            let mut status = Status::resource_exhausted(format!(
                "collector at capacity ({} streams); retry after {hint} ms",
                self.max_streams
            ));
            if let Ok(v) = hint.to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
            return Err(status);
        }
        let stream = self.next_id.fetch_add(1, Ordering::Relaxed);
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let state = self.state.clone();
        let stats = self.stats.clone();
        let shed_hint = u32::try_from(self.retry_hint()).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            let _slot = slot;
            state.notify(Cmd::StreamOpened { stream, peer }).await;
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        // Oversized or undecodable: this stream ends, no other is touched.
                        tracing::debug!(stream, ?peer, error = %status, "stream ended by a bad message");
                        IngestStats::bump(&stats.rejected_malformed);
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let parsed = wire::report_from_pb(&msg)
                    .map_err(|e| e.to_string())
                    .and_then(|mut r| {
                        let clamped = report::sanitize(&mut r, std::time::SystemTime::now());
                        if !clamped.is_empty() {
                            tracing::debug!(stream, ?peer, fields = ?clamped, "report fields clamped");
                            stats.clamped.fetch_add(clamped.len() as u64, Ordering::Relaxed);
                        }
                        report::validate(&r).map(|()| r)
                    });
                let report = match parsed {
                    Ok(r) => r,
                    Err(why) => {
                        tracing::debug!(stream, ?peer, error = %why, "invalid report");
                        IngestStats::bump(&stats.rejected_invalid);
                        let _ = tx.send(Err(Status::invalid_argument(why))).await;
                        break;
                    }
                };
                let (reply_tx, reply_rx) = oneshot::channel();
                let seq = report.seq;
                let cmd = Cmd::Report {
                    stream,
                    report: Box::new(report),
                    reply: reply_tx,
                };
                let ack = match state.tx.try_send(cmd) {
                    Ok(()) => match reply_rx.await {
                        Ok(info) => pb::Ack {
                            seq,
                            retry_after_ms: 0,
                            message: info.message,
                        },
                        Err(_) => break,
                    },
                    // The owner is saturated: shed this agent for a while rather than queue without bound.
                    Err(_) => {
                        IngestStats::bump(&stats.shed);
                        pb::Ack {
                            seq,
                            retry_after_ms: shed_hint,
                            message: "collector overloaded".into(),
                        }
                    }
                };
                let shed = ack.retry_after_ms > 0;
                if tx.send(Ok(ack)).await.is_err() || shed {
                    break;
                }
            }
            state.notify(Cmd::StreamClosed { stream }).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
