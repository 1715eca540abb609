//! The collector's state: one task owns it, everything else sends it messages.
//!
//! Invariants:
//! - **Missing data is stale, never "down".** A host that has not reported for `stale-after-intervals` of
//!   its own interval is `stale`; nothing here ever turns silence into a failure.
//! - **Health is state, not a log.** Only the latest report per host is kept; memory is bounded by the
//!   number of hosts.
//! - **No silent merges.** A host id reported by two live streams at once is flagged as a conflict (shown
//!   in the API and metrics, told to both agents), not blended.
//! - Queries get snapshots; the owner never waits on a reader.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::correlate::{Engine, Event, EventKind, KnownHost};
use super::store::Store;
use crate::check::{CheckKind, Details, Status};
pub use crate::fleet::HostStatus;
use crate::report::HostReport;
use crate::util::rfc3339;

/// A check's details as the collector keeps them: the encoded `CheckResult` (kind and details only). The
/// decoded structures of a large host weigh about 23 KiB; these bytes about 4. They are decoded again only
/// when the host is shown.
#[derive(Debug, Clone)]
pub struct KeptDetails {
    /// Which check.
    pub kind: CheckKind,
    bytes: Box<[u8]>,
}

impl KeptDetails {
    /// Encodes a check's details; `None` when there are none.
    pub fn encode(kind: CheckKind, d: &Details) -> Option<KeptDetails> {
        let m = crate::pb::CheckResult {
            kind: kind.to_pb() as i32,
            details: Some(d.to_pb()?),
            ..Default::default()
        };
        Some(KeptDetails {
            kind,
            bytes: prost::Message::encode_to_vec(&m).into_boxed_slice(),
        })
    }

    /// The details again.
    pub fn decode(&self) -> Details {
        <crate::pb::CheckResult as prost::Message>::decode(&*self.bytes)
            .ok()
            .and_then(|m| m.details)
            .map(|d| Details::from_pb(&d))
            .unwrap_or(Details::None)
    }
}

/// What the collector keeps per host.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// The latest report, its checks' details left out (they are in `details`).
    pub report: HostReport,
    /// The latest details of each check, encoded.
    pub details: Vec<KeptDetails>,
    /// When it arrived (collector clock).
    pub last_seen: SystemTime,
    /// Monotonic arrival time, for staleness.
    pub last_seen_at: Instant,
    /// Stream the latest report came on.
    pub stream: u64,
    /// When another stream last tried to report this host id while this one lived (and was refused), and
    /// from where.
    pub twin_refused_at: Option<Instant>,
    /// Where that twin came from.
    pub twin_peer: Option<SocketAddr>,
    /// Cycles this collector process missed from the host since its first report (the sum of the reports'
    /// `missed_cycles`), so a gap stays visible after the next report.
    pub missed_cycles_total: u64,
}

impl HostEntry {
    /// The latest details of one check (decoded now).
    pub fn details_of(&self, kind: CheckKind) -> Details {
        self.details
            .iter()
            .find(|k| k.kind == kind)
            .map_or(Details::None, KeptDetails::decode)
    }

    /// The host's status, given whether the engine holds it stale. Staleness has one source, the engine's
    /// timer, so the host API, the zones, the metrics and the timeline always agree.
    pub fn status(&self, stale: bool) -> HostStatus {
        if stale {
            HostStatus::Stale
        } else {
            HostStatus::of(self.report.status())
        }
    }
}

/// The answer to one report.
#[derive(Debug, Clone, Default)]
pub struct AckInfo {
    /// A message for the agent (conflicts).
    pub message: String,
    /// The report was refused: another live stream already reports this host id. The stream ends.
    pub refused: bool,
    /// A compact check could not be completed from the details kept: the agent must send the next report
    /// in full.
    pub send_full: bool,
}

/// How long a refused twin keeps a host flagged as conflicting.
const TWIN_MEMORY: Duration = Duration::from_secs(300);

impl HostEntry {
    /// Another stream claimed this host id recently.
    pub fn conflict(&self, now: Instant) -> bool {
        self.twin_refused_at
            .is_some_and(|t| now.saturating_duration_since(t) <= TWIN_MEMORY)
    }
}

/// Counters of the ingest layer, updated without going through the owner (so counting a refusal never
/// waits on a saturated owner).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Streams refused at capacity.
    pub rejected_capacity: AtomicU64,
    /// Streams ended by a malformed or oversized message.
    pub rejected_malformed: AtomicU64,
    /// Streams ended by a report with invalid identity fields.
    pub rejected_invalid: AtomicU64,
    /// Reports answered with a retry hint because the state owner was saturated.
    pub shed: AtomicU64,
    /// Report fields clamped at ingest (a clock off, an over-long text).
    pub clamped: AtomicU64,
    /// Streams refused because their peer address has `max-streams-per-peer` already.
    pub rejected_per_peer: AtomicU64,
    /// Streams refused beyond `admit-streams-per-sec` (told when to come back).
    pub rejected_admission: AtomicU64,
    /// Streams ended by the first-report or idle deadline.
    pub idle_closed: AtomicU64,
    /// Reports dropped for coming faster than the announced interval.
    pub rate_limited: AtomicU64,
    /// TLS handshakes that failed (plaintext clients, foreign CAs, timeouts).
    pub tls_failed: AtomicU64,
    /// Times the gRPC accept loop paused at `admit-connections-per-sec`.
    pub accept_pauses: AtomicU64,
    /// How long those pauses lasted in total (µs).
    pub accept_paused_us: AtomicU64,
    /// Connections closed at once for coming beyond their source's share of the accept pace.
    pub refused_over_share: AtomicU64,
    /// Streams ended because a report named a host its certificate does not.
    pub rejected_identity: AtomicU64,
    /// Alert pushes Alertmanager accepted.
    pub alerts_sent: AtomicU64,
    /// Alert pushes that failed (unreachable, refused, timed out).
    pub alerts_failed: AtomicU64,
}

impl IngestStats {
    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages to the state owner.
pub enum Cmd {
    /// A stream opened.
    StreamOpened {
        /// Stream id.
        stream: u64,
        /// Remote address.
        peer: Option<SocketAddr>,
        /// The client certificate's identity (with TLS): a newer stream of the same identity replaces it.
        identity: Option<String>,
        /// Ends the stream when it is replaced.
        cancel: Option<oneshot::Sender<()>>,
    },
    /// A stream ended.
    StreamClosed {
        /// Stream id.
        stream: u64,
    },
    /// A validated report.
    Report {
        /// Stream id.
        stream: u64,
        /// The report.
        report: Box<HostReport>,
        /// Where to send the ack.
        reply: oneshot::Sender<AckInfo>,
    },
    /// Read-only access to the state.
    Query(Box<dyn FnOnce(&State) + Send>),
    /// Time passes: staleness and verdicts.
    Tick,
}

/// The state owned by one task.
pub struct State {
    /// Hosts by id.
    pub hosts: BTreeMap<String, HostEntry>,
    /// Live streams and their peers.
    pub streams: HashMap<u64, Option<SocketAddr>>,
    /// Live streams' certificate identities and the handles that end them.
    stream_ids: HashMap<u64, (Option<String>, Option<oneshot::Sender<()>>)>,
    /// Streams that sent at least one report.
    pub reporting_streams: HashSet<u64>,
    /// Reports accepted.
    pub reports_total: u64,
    /// Compact checks completed from the details kept.
    pub compact_checks_total: u64,
    /// Compact checks that could not be completed (the agent was asked for a full report).
    pub full_reports_asked_total: u64,
    /// Agent cycles that never reached this collector (reported afterwards as `missed_cycles`).
    pub missed_cycles_total: u64,
    /// Arrival times of the last minute's reports, for the rate.
    recent: VecDeque<Instant>,
    /// Staleness threshold in intervals.
    pub stale_after_intervals: u32,
    /// When the collector started.
    pub started: Instant,
    /// The correlation engine.
    pub engine: Engine,
    /// The timeline on disk (absent in unit tests).
    store: Option<Store>,
    /// Stored events, for watchers.
    pub events_tx: broadcast::Sender<Event>,
    /// Event batches the disk refused (kept and retried).
    pub event_write_errors: u64,
    /// Reports refused because another live stream reports the same host id.
    pub twins_refused: u64,
    /// Ingest counters (shared with the ingest layer), to see load being shed.
    stats: Option<Arc<IngestStats>>,
    /// Shed reports seen at the last tick, and when the latest shedding was seen.
    shed_seen: u64,
    shed_at: Option<Instant>,
    /// Commands waiting in the owner's inbox at the latest tick.
    pub inbox_depth: usize,
    /// The inbox's capacity.
    pub inbox_capacity: usize,
    /// How long events are kept, and how many at most.
    retention: Option<(Duration, u64)>,
    /// Ticks since start (retention runs hourly).
    ticks: u64,
}

impl State {
    /// An empty state.
    pub fn new(stale_after_intervals: u32, engine: Engine, store: Option<Store>) -> State {
        State {
            hosts: BTreeMap::new(),
            streams: HashMap::new(),
            stream_ids: HashMap::new(),
            reporting_streams: HashSet::new(),
            reports_total: 0,
            compact_checks_total: 0,
            full_reports_asked_total: 0,
            missed_cycles_total: 0,
            recent: VecDeque::new(),
            stale_after_intervals,
            started: Instant::now(),
            engine,
            store,
            events_tx: broadcast::channel(4096).0,
            event_write_errors: 0,
            twins_refused: 0,
            stats: None,
            shed_seen: 0,
            shed_at: None,
            inbox_depth: 0,
            inbox_capacity: 0,
            retention: None,
            ticks: 0,
        }
    }

    /// Deletes events past `retain` or beyond `max_events`, every hour.
    pub fn with_retention(mut self, retain: Duration, max_events: u64) -> State {
        self.retention = Some((retain, max_events));
        self
    }

    fn prune(&mut self) {
        let (Some((retain, max)), Some(store)) = (self.retention, self.store.as_mut()) else {
            return;
        };
        match store.prune(SystemTime::now(), retain, max) {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "old events deleted (retain-days, max-events)"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the timeline"),
        }
    }

    /// Watches the ingest layer's counters (to know when the collector itself sheds load).
    pub fn with_stats(mut self, stats: Arc<IngestStats>, inbox_capacity: usize) -> State {
        self.stats = Some(stats);
        self.inbox_capacity = inbox_capacity;
        self
    }

    /// Whether this collector's own ingest is degraded now: it held agents back within the last 30 s (shed
    /// reports, refused streams at capacity or the admission rate, paused its accept loop), or its inbox is
    /// more than half full. Then no verdict opens from staleness (the monitor doubts itself).
    fn ingest_health(&mut self, now: Instant) -> Option<String> {
        let shed = self.stats.as_ref().map_or(0, |s| {
            s.shed.load(Ordering::Relaxed)
                + s.rejected_capacity.load(Ordering::Relaxed)
                + s.rejected_admission.load(Ordering::Relaxed)
                + s.accept_pauses.load(Ordering::Relaxed)
        });
        if shed > self.shed_seen {
            self.shed_seen = shed;
            self.shed_at = Some(now);
        }
        if self
            .shed_at
            .is_some_and(|t| now.saturating_duration_since(t) <= Duration::from_secs(30))
        {
            return Some(
                "this collector held agents back in the last 30 s (shed reports, refused streams or paused accepts)"
                    .into(),
            );
        }
        if self.inbox_capacity > 0 && self.inbox_depth * 2 > self.inbox_capacity {
            return Some(format!(
                "this collector lags: {} of {} inbox slots taken",
                self.inbox_depth, self.inbox_capacity
            ));
        }
        None
    }

    /// Writes events, then (and only then) makes them visible to watchers; keeps the open verdicts and
    /// the host registry on disk in step (`known`: a host that is new or has a new boot id or AZ).
    fn publish(&mut self, events: Vec<Event>, known: Option<KnownHost>) {
        if events.is_empty() && known.is_none() {
            return;
        }
        let verdicts_changed = events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::VerdictOpened | EventKind::VerdictClosed | EventKind::VerdictChanged
            )
        });
        for e in &events {
            tracing::info!(kind = e.kind.as_str(), scope = e.scope.as_str(), az = ?e.az, host = ?e.host,
                check = ?e.check, summary = %e.summary, "event");
        }
        let Some(store) = self.store.as_mut() else {
            for e in events {
                let _ = self.events_tx.send(e);
            }
            return;
        };
        // The owner runs on a thread of its own (see `spawn`): writing here blocks nothing but the owner,
        // which is the point: nothing else happens until the events are on disk.
        let engine = &self.engine;
        let result = (|| {
            let written = store.append(events)?;
            if verdicts_changed {
                store.save_verdicts(engine.verdicts())?;
            }
            if let Some(h) = &known {
                store.save_hosts(std::slice::from_ref(h))?;
            }
            Ok::<_, super::store::StoreError>(written)
        })();
        match result {
            Ok(written) => {
                for e in written {
                    let _ = self.events_tx.send(e);
                }
            }
            Err(e) => {
                self.event_write_errors += 1;
                tracing::error!(error = %e, "cannot write the timeline; events kept in memory and retried");
            }
        }
    }

    /// Takes the details of a report for keeping: fresh ones are encoded; a compact check (sent without
    /// details) keeps the bytes held for the host, but only from a check of the same kind, status and
    /// summary on the same stream — otherwise it keeps none and the agent is asked for a full report. The
    /// report's decoded details are dropped. Returns the kept details and whether to ask for a full report.
    fn keep_details(&mut self, stream: u64, report: &mut HostReport) -> (Vec<KeptDetails>, bool) {
        let mut old: Vec<KeptDetails> = Vec::new();
        let mut same = vec![false; report.checks.len()];
        if let Some(p) = self
            .hosts
            .get_mut(&report.host_id)
            .filter(|p| p.stream == stream)
        {
            old = std::mem::take(&mut p.details);
            for (i, c) in report.checks.iter().enumerate() {
                same[i] = p.report.checks.iter().any(|o| {
                    o.kind == c.kind
                        && o.outcome.status == c.outcome.status
                        && o.outcome.summary == c.outcome.summary
                });
            }
        }
        let mut kept = Vec::with_capacity(report.checks.len());
        let mut send_full = false;
        for (c, same) in report.checks.iter_mut().zip(same) {
            match &c.outcome.details {
                Details::None => {}
                Details::Unchanged => {
                    let found = old.iter().position(|k| k.kind == c.kind).filter(|_| same);
                    match found {
                        Some(i) => {
                            self.compact_checks_total += 1;
                            kept.push(old.swap_remove(i));
                        }
                        None => {
                            self.full_reports_asked_total += 1;
                            send_full = true;
                        }
                    }
                }
                d => kept.extend(KeptDetails::encode(c.kind, d)),
            }
            c.outcome.details = Details::None;
        }
        (kept, send_full)
    }

    /// Applies one report; returns what to tell the agent.
    pub fn apply(&mut self, stream: u64, mut report: HostReport, now: Instant) -> AckInfo {
        self.reports_total += 1;
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        let id = report.host_id.clone();
        // One live stream per host id: a second claimant is refused while the first lives (no silent
        // merge of two hosts' reports, no boot ids of one counted as reboots of the other).
        let identity_of = |st: u64| self.stream_ids.get(&st).and_then(|m| m.0.as_deref());
        let replaces = self.hosts.get(&id).and_then(|prev| {
            let mine = identity_of(stream)?;
            (prev.stream != stream && identity_of(prev.stream) == Some(mine)).then_some(prev.stream)
        });
        if let Some(old) = replaces {
            // The same certificate reconnected (its old connection may be half-open): the newer stream
            // takes over, the older one is ended.
            if let Some(cancel) = self.stream_ids.get_mut(&old).and_then(|m| m.1.take()) {
                let _ = cancel.send(());
            }
            self.streams.remove(&old);
            self.reporting_streams.remove(&old);
            tracing::info!(host_id = %id, stream, replaced = old, "a newer stream of the same certificate replaces the older one");
        }
        if let Some(prev) = self.hosts.get_mut(&id)
            && prev.stream != stream
            && self.streams.contains_key(&prev.stream)
        {
            let peer = self.streams.get(&stream).copied().flatten();
            let first_peer = self.streams.get(&prev.stream).copied().flatten();
            if !prev.conflict(now) {
                tracing::warn!(host_id = %id, stream, peer = ?peer, live_stream = prev.stream, live_peer = ?first_peer,
                    "a second stream claims a live host id: refused");
            }
            prev.twin_refused_at = Some(now);
            prev.twin_peer = peer;
            self.twins_refused += 1;
            return AckInfo {
                message: format!(
                    "host id {id:?} is also reported by another live stream{}: refused; fix host-id on one of them",
                    first_peer.map(|a| format!(" from {a}")).unwrap_or_default()
                ),
                refused: true,
                send_full: false,
            };
        }
        self.reporting_streams.insert(stream);
        let mut ack = AckInfo::default();
        let known = self
            .hosts
            .get(&id)
            .is_none_or(|h| h.report.boot_id != report.boot_id || h.report.az != report.az)
            .then(|| KnownHost {
                id: id.clone(),
                az: report.az.clone(),
                region: report.region.clone().unwrap_or_default(),
                boot_id: report.boot_id.clone(),
                interval: report.interval,
            });
        let events = self.engine.observe(SystemTime::now(), &report);
        let (details, send_full) = self.keep_details(stream, &mut report);
        ack.send_full = send_full;
        let missed = u64::from(report.missed_cycles);
        self.missed_cycles_total = self.missed_cycles_total.saturating_add(missed);
        let prev = self.hosts.get(&id);
        let missed_cycles_total = missed.saturating_add(prev.map_or(0, |h| h.missed_cycles_total));
        let (twin_refused_at, twin_peer) = prev
            .map(|h| (h.twin_refused_at, h.twin_peer))
            .unwrap_or_default();
        if let Some(p) = prev.filter(|h| h.conflict(now)) {
            ack.message = format!(
                "another stream{} claimed host id {id:?} and was refused: fix host-id on one of them",
                p.twin_peer
                    .map(|a| format!(" from {a}"))
                    .unwrap_or_default()
            );
        }
        self.hosts.insert(
            id,
            HostEntry {
                report,
                details,
                last_seen: SystemTime::now(),
                last_seen_at: now,
                stream,
                twin_refused_at,
                twin_peer,
                missed_cycles_total,
            },
        );
        self.publish(events, known);
        ack
    }

    /// Reports per second over the last minute (or since start, if shorter).
    pub fn rate(&self, now: Instant) -> f64 {
        let window = now
            .saturating_duration_since(self.started)
            .min(Duration::from_secs(60))
            .as_secs_f64()
            .max(1.0);
        let n = self
            .recent
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= Duration::from_secs(60))
            .count();
        n as f64 / window
    }

    /// Live streams that have reported.
    pub fn connected_agents(&self) -> usize {
        self.reporting_streams.len()
    }

    /// A tick at `now` (tests drive time).
    #[cfg(test)]
    pub(super) fn handle_tick_at(&mut self, now: SystemTime) {
        let events = self.engine.tick(now);
        self.publish(events, None);
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::StreamOpened {
                stream,
                peer,
                identity,
                cancel,
            } => {
                self.streams.insert(stream, peer);
                self.stream_ids.insert(stream, (identity, cancel));
            }
            Cmd::StreamClosed { stream } => {
                self.streams.remove(&stream);
                self.stream_ids.remove(&stream);
                self.reporting_streams.remove(&stream);
            }
            Cmd::Report {
                stream,
                report,
                reply,
            } => {
                let ack = self.apply(stream, *report, Instant::now());
                let _ = reply.send(ack);
            }
            Cmd::Query(f) => f(self),
            Cmd::Tick => {
                self.ticks += 1;
                if self.ticks % 3600 == 0 {
                    self.prune();
                }
                let degraded = self.ingest_health(Instant::now());
                self.engine.set_ingest_degraded(degraded);
                let events = self.engine.tick(SystemTime::now());
                self.publish(events, None);
            }
        }
    }
}

/// Runs the owner until every sender is gone.
pub async fn run(mut state: State, mut rx: mpsc::Receiver<Cmd>, mut queries: mpsc::Receiver<Cmd>) {
    // The systemd watchdog is fed here, by the owner itself at each tick: a wedged or dead owner stops the
    // pings and systemd restarts the collector (`WatchdogSec` in the unit).
    let watchdog = crate::sdnotify::Notifier::from_env();
    loop {
        // Unbiased: ingest and queries each get their share, whichever floods.
        let cmd = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => c,
                None => break,
            },
            Some(q) = queries.recv() => q,
        };
        if matches!(cmd, Cmd::Tick) {
            state.inbox_depth = rx.len();
            watchdog.watchdog_ping();
        }
        state.handle(cmd);
    }
}

/// Runs the owner on a dedicated thread with a runtime of its own: its synchronous database writes never
/// occupy a worker of the network runtime, and the state stays on one thread.
pub fn spawn(
    state: State,
    rx: mpsc::Receiver<Cmd>,
    queries: mpsc::Receiver<Cmd>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("hvprobe-state".into())
        .spawn(move || rt.block_on(run(state, rx, queries)))
}

/// A cheap handle for talking to the owner.
#[derive(Clone)]
pub struct Handle {
    /// The owner's inbox for ingest (reports, stream notices) and its timer.
    pub tx: mpsc::Sender<Cmd>,
    /// The owner's inbox for queries: separate and bounded, so neither a burst of queries nor a flood of
    /// reports can starve the other (the owner takes from both fairly).
    pub queries: mpsc::Sender<Cmd>,
}

impl Handle {
    /// Runs `f` on the state and returns its result; `None` if the owner is gone or its query inbox full.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        // Full query inbox: answer "unavailable" now rather than queue behind a burst.
        self.queries
            .try_send(Cmd::Query(Box::new(move |s| {
                let _ = tx.send(f(s));
            })))
            .ok()?;
        rx.await.ok()
    }

    /// Sends a notice, waiting for room: stream bookkeeping must not be lost.
    pub async fn notify(&self, cmd: Cmd) {
        let _ = self.tx.send(cmd).await;
    }
}

/// One host in `GET /api/v1/hosts`.
#[derive(Debug, Clone, Serialize)]
pub struct HostSummary {
    /// Host id.
    pub host_id: String,
    /// AZ.
    pub az: String,
    /// Region.
    pub region: Option<String>,
    /// Worst check status, or stale.
    pub status: HostStatus,
    /// When the latest report arrived, RFC 3339.
    pub last_seen: String,
    /// Seconds since then.
    pub age_secs: u64,
    /// Kernel boot id.
    pub boot_id: String,
    /// Cycle number.
    pub seq: u64,
    /// The agent's interval.
    pub interval_secs: u64,
    /// Agent version.
    pub agent_version: String,
    /// Another live stream claims this host id.
    pub conflict: bool,
    /// Per check: status and summary.
    pub checks: Vec<CheckLine>,
}

/// A check's status and summary.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    /// Stable check name.
    pub check: &'static str,
    /// Status.
    pub status: Status,
    /// Summary.
    pub summary: String,
}

impl State {
    /// The summary of one host at `now`.
    pub fn summary(&self, h: &HostEntry, now: Instant) -> HostSummary {
        let r = &h.report;
        HostSummary {
            host_id: r.host_id.clone(),
            az: r.az.clone(),
            region: r.region.clone(),
            status: h.status(self.is_stale(&r.host_id)),
            last_seen: rfc3339(h.last_seen),
            age_secs: now.saturating_duration_since(h.last_seen_at).as_secs(),
            boot_id: r.boot_id.clone(),
            seq: r.seq,
            interval_secs: r.interval.as_secs(),
            agent_version: r.agent_version.clone(),
            conflict: h.conflict(now),
            checks: r
                .checks
                .iter()
                .map(|c| CheckLine {
                    check: c.kind.as_str(),
                    status: c.outcome.status,
                    summary: c.outcome.summary.clone(),
                })
                .collect(),
        }
    }

    /// Whether the engine holds a host stale.
    pub fn is_stale(&self, host: &str) -> bool {
        self.engine.is_stale(host).unwrap_or(false)
    }

    /// Hosts per (AZ, status).
    pub fn counts_by_az(&self) -> BTreeMap<(String, HostStatus), usize> {
        let mut m = BTreeMap::new();
        for h in self.hosts.values() {
            *m.entry((
                h.report.az.clone(),
                h.status(self.is_stale(&h.report.host_id)),
            ))
            .or_insert(0) += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(3, Engine::new(Default::default(), 3), None)
    }

    fn report(id: &str, interval: u64) -> HostReport {
        HostReport {
            host_id: id.into(),
            az: "az1".into(),
            region: None,
            agent_version: "t".into(),
            boot_id: "b".into(),
            boot_time: None,
            interval: Duration::from_secs(interval),
            seq: 1,
            observed_at: SystemTime::now(),
            missed_cycles: 0,
            agent: None,
            checks: vec![],
        }
    }

    #[test]
    fn silence_makes_a_host_stale_never_down() {
        let mut s = state();
        let t0 = Instant::now();
        s.apply(1, report("hv1", 10), t0);
        let now = SystemTime::now();
        s.handle_tick_at(now + Duration::from_secs(29));
        let summary = |s: &State| s.summary(&s.hosts["hv1"], t0).status;
        assert_eq!(summary(&s), HostStatus::Unknown, "no checks yet");
        s.handle_tick_at(now + Duration::from_secs(31));
        assert_eq!(summary(&s), HostStatus::Stale);
        assert_eq!(
            s.counts_by_az().get(&("az1".to_owned(), HostStatus::Stale)),
            Some(&1),
            "the metrics agree with the host API"
        );
    }

    #[test]
    fn a_second_live_stream_for_one_host_is_refused() {
        let mut s = state();
        let t0 = Instant::now();
        s.handle(Cmd::StreamOpened {
            stream: 1,
            peer: None,
            identity: None,
            cancel: None,
        });
        s.handle(Cmd::StreamOpened {
            stream: 2,
            peer: "10.0.0.7:5000".parse().ok(),
            identity: None,
            cancel: None,
        });
        assert!(s.apply(1, report("hv1", 10), t0).message.is_empty());
        let mut twin = report("hv1", 10);
        twin.boot_id = "other".into();
        let ack = s.apply(2, twin, t0);
        assert!(ack.refused && ack.message.contains("hv1"), "{ack:?}");
        assert_eq!(s.hosts["hv1"].stream, 1, "the first stream keeps the host");
        assert_eq!(
            s.hosts["hv1"].report.boot_id, "b",
            "nothing of the twin merged"
        );
        assert!(s.hosts["hv1"].conflict(t0));
        assert_eq!(s.twins_refused, 1);
        // The first agent is told at its next report.
        let ack = s.apply(1, report("hv1", 10), t0);
        assert!(
            !ack.refused && ack.message.contains("10.0.0.7:5000"),
            "{ack:?}"
        );
        // A reconnect of the same agent (old stream closed) is not a twin.
        s.handle(Cmd::StreamOpened {
            stream: 3,
            peer: None,
            identity: None,
            cancel: None,
        });
        s.handle(Cmd::StreamClosed { stream: 1 });
        assert!(!s.apply(3, report("hv1", 10), t0).refused);
        assert!(!s.hosts["hv1"].conflict(t0 + Duration::from_secs(301)));
    }

    #[test]
    fn missed_cycles_add_up_and_outlive_the_next_report() {
        let mut s = state();
        let t0 = Instant::now();
        let with_gap = |seq: u64, missed: u32| HostReport {
            seq,
            missed_cycles: missed,
            ..report("hv1", 1)
        };
        s.apply(1, with_gap(1, 0), t0);
        s.apply(2, with_gap(5, 3), t0);
        s.apply(2, with_gap(6, 0), t0);
        s.apply(3, with_gap(9, 2), t0);
        s.apply(3, report("hv2", 1), t0);
        assert_eq!(s.hosts["hv1"].report.missed_cycles, 2);
        assert_eq!(s.hosts["hv1"].missed_cycles_total, 5);
        assert_eq!(s.hosts["hv2"].missed_cycles_total, 0);
        assert_eq!(s.missed_cycles_total, 5);
    }

    fn with_memory(mut r: HostReport, summary: &str, details: Details) -> HostReport {
        use crate::check::runner::CheckReport;
        use crate::check::{CheckKind, Outcome};
        r.checks = vec![CheckReport {
            kind: CheckKind::Memory,
            outcome: Outcome::new(Status::Ok, summary, details),
            duration: Duration::from_millis(1),
        }];
        r
    }

    fn memory_details(n: u64) -> Details {
        Details::Wireguard(crate::check::wireguard::WireguardDetails {
            interfaces: vec![],
            missing: vec![],
            notes: vec![format!("observation {n}")],
        })
    }

    #[test]
    fn compact_checks_are_completed_from_the_details_kept_and_only_when_they_match() {
        let mut s = state();
        let t0 = Instant::now();
        let full = with_memory(report("hv1", 10), "available 40%", memory_details(7));
        let compact = |summary: &str| with_memory(report("hv1", 10), summary, Details::Unchanged);
        assert!(!s.apply(1, full, t0).send_full);
        // Same status and summary: the kept details come back, twice in a row (moved, never lost).
        for _ in 0..2 {
            assert!(!s.apply(1, compact("available 40%"), t0).send_full);
            assert_eq!(
                s.hosts["hv1"].details_of(crate::check::CheckKind::Memory),
                memory_details(7)
            );
        }
        assert_eq!(s.compact_checks_total, 2);
        // A summary that does not match what is kept: no stale details, and a full report is asked for.
        let ack = s.apply(1, compact("available 12%"), t0);
        assert!(ack.send_full);
        assert_eq!(
            s.hosts["hv1"].details_of(crate::check::CheckKind::Memory),
            Details::None
        );
        // The full report comes, and compact ones work again.
        s.apply(
            1,
            with_memory(report("hv1", 10), "available 12%", memory_details(3)),
            t0,
        );
        assert!(!s.apply(1, compact("available 12%"), t0).send_full);
        assert_eq!(
            s.hosts["hv1"].details_of(crate::check::CheckKind::Memory),
            memory_details(3)
        );
        // Another stream (a reconnect) never leans on the old stream's details.
        s.handle(Cmd::StreamClosed { stream: 1 });
        assert!(s.apply(2, compact("available 12%"), t0).send_full);
        assert_eq!(s.full_reports_asked_total, 2);
    }

    #[test]
    fn rate_over_the_last_minute() {
        let mut s = state();
        s.started = Instant::now() - Duration::from_secs(120);
        let now = Instant::now();
        for i in 0..120 {
            s.apply(1, report(&format!("h{i}"), 10), now);
        }
        assert!((s.rate(now) - 2.0).abs() < 1e-9);
    }
}
