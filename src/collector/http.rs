//! The collector's HTTP surface: the query API (JSON) and `/metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::state::{Handle, HostStatus, IngestStats, State};
use crate::util::rfc3339;

/// Shared by every handler.
#[derive(Clone)]
pub struct Api {
    /// The state owner.
    pub state: Handle,
    /// Ingest counters.
    pub stats: Arc<IngestStats>,
    /// The event database.
    pub db: std::path::PathBuf,
}

/// The routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/hosts/{id}", get(host))
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(api)
}

/// The status page: the zones and the last events, from one query each.
async fn page(AxState(api): AxState<Api>) -> Response {
    let Some(zones) = api.state.query(|s| s.engine.zones(None)).await else {
        return unavailable();
    };
    // The newest events (an unreadable timeline shows none rather than no page).
    let events = super::query::load_newest(api.db.clone(), 25)
        .await
        .unwrap_or_default();
    let html = super::page::render(&zones, &events, std::time::SystemTime::now());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// A JSON error body.
pub fn error(code: StatusCode, msg: &str) -> Response {
    (code, axum::Json(json!({ "error": msg }))).into_response()
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "collector state unavailable",
    )
}

async fn hosts(AxState(api): AxState<Api>) -> Response {
    let list = api
        .state
        .query(|s| {
            let now = Instant::now();
            s.hosts
                .values()
                .map(|h| s.summary(h, now))
                .collect::<Vec<_>>()
        })
        .await;
    match list {
        Some(l) => axum::Json(l).into_response(),
        None => unavailable(),
    }
}

pub(super) fn host_json(s: &State, id: &str) -> Option<serde_json::Value> {
    let h = s.hosts.get(id)?;
    let now = Instant::now();
    let summary = s.summary(h, now);
    let r = &h.report;
    Some(json!({
        "host_id": r.host_id,
        "az": r.az,
        "region": r.region,
        "status": summary.status,
        "last_seen": summary.last_seen,
        "age_secs": summary.age_secs,
        "observed_at": rfc3339(r.observed_at),
        "boot_id": r.boot_id,
        "boot_time": r.boot_time,
        "seq": r.seq,
        "interval_secs": r.interval.as_secs(),
        "missed_cycles": r.missed_cycles,
        "missed_cycles_total": h.missed_cycles_total,
        "agent_version": r.agent_version,
        "agent": r.agent,
        "conflict": summary.conflict,
        "checks": r.checks.iter().map(|c| json!({
            "check": c.kind.as_str(),
            "status": c.outcome.status,
            "summary": c.outcome.summary,
            "reason": c.outcome.reason.map(|x| x.as_str()),
            "duration_ms": c.duration.as_millis() as u64,
            "details": h.details_of(c.kind),
        })).collect::<Vec<_>>(),
    }))
}

async fn host(AxState(api): AxState<Api>, Path(id): Path<String>) -> Response {
    match api.state.query(move |s| host_json(s, &id)).await {
        Some(Some(v)) => axum::Json(v).into_response(),
        Some(None) => error(StatusCode::NOT_FOUND, "no such host"),
        None => unavailable(),
    }
}

/// `?az=NAME`.
#[derive(Debug, serde::Deserialize)]
pub struct ZonesParams {
    az: Option<String>,
}

async fn zones(AxState(api): AxState<Api>, Query(p): Query<ZonesParams>) -> Response {
    match api
        .state
        .query(move |s| s.engine.zones(p.az.as_deref()))
        .await
    {
        Some(v) => axum::Json(v).into_response(),
        None => unavailable(),
    }
}

/// `?since=RFC3339|2h&az=NAME&limit=N`.
#[derive(Debug, serde::Deserialize)]
pub struct EventsParams {
    since: Option<String>,
    az: Option<String>,
    limit: Option<usize>,
}

async fn events(AxState(api): AxState<Api>, Query(p): Query<EventsParams>) -> Response {
    let since = match p
        .since
        .as_deref()
        .map(|s| crate::util::parse_since(s, std::time::SystemTime::now()))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("since: {e}")),
    };
    match super::query::load_events(api.db.clone(), since, p.az, p.limit.unwrap_or(1000)).await {
        Ok(list) => {
            axum::Json(json!({ "events": list.iter().map(event_json).collect::<Vec<_>>() }))
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub(super) fn event_json(e: &super::correlate::Event) -> serde_json::Value {
    json!({
        "id": e.id,
        "time": rfc3339(e.at),
        "kind": e.kind.as_str(),
        "scope": e.scope.as_str(),
        "region": e.region,
        "az": e.az,
        "host": e.host,
        "check": e.check,
        "old_status": e.old_status,
        "new_status": e.new_status,
        "summary": e.summary,
    })
}

/// Escapes a Prometheus label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends one metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

pub(super) fn render_metrics(s: &State, stats: &IngestStats) -> String {
    let now = Instant::now();
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "hvprobe_collector_connected_agents",
        "gauge",
        "Agent streams open that have reported.",
        &[(String::new(), s.connected_agents() as f64)],
    );
    family(
        &mut out,
        "hvprobe_collector_streams",
        "gauge",
        "Agent streams open.",
        &[(String::new(), s.streams.len() as f64)],
    );
    family(
        &mut out,
        "hvprobe_collector_reports_total",
        "counter",
        "Reports accepted.",
        &[(String::new(), s.reports_total as f64)],
    );
    family(
        &mut out,
        "hvprobe_collector_compact_checks_total",
        "counter",
        "Checks that came without details (status and summary unchanged) and were completed from the kept ones.",
        &[(String::new(), s.compact_checks_total as f64)],
    );
    family(
        &mut out,
        "hvprobe_collector_full_reports_asked_total",
        "counter",
        "Compact checks that could not be completed (no matching details kept): the agent was asked for a full report.",
        &[(String::new(), s.full_reports_asked_total as f64)],
    );
    family(
        &mut out,
        "hvprobe_collector_missed_cycles_total",
        "counter",
        "Agent cycles that never reached this collector, as the agents reported afterwards.",
        &[(String::new(), s.missed_cycles_total as f64)],
    );
    family(
        &mut out,
        "hvprobe_collector_reports_per_second",
        "gauge",
        "Reports accepted per second over the last minute.",
        &[(String::new(), (s.rate(now) * 100.0).round() / 100.0)],
    );
    ingest_metrics(&mut out, stats);
    host_metrics(&mut out, s, now);
    engine_metrics(&mut out, s);
    out
}

/// What the ingest layer refused, dropped or clamped.
fn ingest_metrics(out: &mut String, stats: &IngestStats) {
    let r = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    family(
        out,
        "hvprobe_collector_rejected_streams_total",
        "counter",
        "Streams refused or ended by the collector, by reason.",
        &[
            ("{reason=\"capacity\"}".into(), r(&stats.rejected_capacity)),
            (
                "{reason=\"malformed\"}".into(),
                r(&stats.rejected_malformed),
            ),
            ("{reason=\"invalid\"}".into(), r(&stats.rejected_invalid)),
            ("{reason=\"shed\"}".into(), r(&stats.shed)),
            ("{reason=\"per_peer\"}".into(), r(&stats.rejected_per_peer)),
            (
                "{reason=\"admission_rate\"}".into(),
                r(&stats.rejected_admission),
            ),
            ("{reason=\"idle\"}".into(), r(&stats.idle_closed)),
            ("{reason=\"identity\"}".into(), r(&stats.rejected_identity)),
        ],
    );
    family(
        out,
        "hvprobe_collector_alert_pushes_total",
        "counter",
        "Pushes of the open verdicts to Alertmanager, by result.",
        &[
            ("{result=\"ok\"}".into(), r(&stats.alerts_sent)),
            ("{result=\"failed\"}".into(), r(&stats.alerts_failed)),
        ],
    );
    family(
        out,
        "hvprobe_collector_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed: plaintext clients, foreign CAs, timeouts.",
        &[(String::new(), r(&stats.tls_failed))],
    );
    family(
        out,
        "hvprobe_collector_accept_pauses_total",
        "counter",
        "Times the gRPC accept loop paused at admit-connections-per-sec (connections waited in the kernel's queue).",
        &[(String::new(), r(&stats.accept_pauses))],
    );
    family(
        out,
        "hvprobe_collector_connections_over_share_total",
        "counter",
        "Connections closed at once for coming beyond their source's share of admit-connections-per-sec.",
        &[(String::new(), r(&stats.refused_over_share))],
    );
    family(
        out,
        "hvprobe_collector_accept_paused_seconds_total",
        "counter",
        "Time the gRPC accept loop spent paused at admit-connections-per-sec.",
        &[(
            String::new(),
            stats.accept_paused_us.load(Ordering::Relaxed) as f64 / 1e6,
        )],
    );
    family(
        out,
        "hvprobe_collector_rate_limited_reports_total",
        "counter",
        "Reports dropped for coming faster than their agent's announced interval.",
        &[(String::new(), r(&stats.rate_limited))],
    );
    family(
        out,
        "hvprobe_collector_clamped_fields_total",
        "counter",
        "Report fields clamped at ingest (a clock off or in the wrong unit, an over-long text).",
        &[(String::new(), r(&stats.clamped))],
    );
}

/// Hosts per AZ and status, and host id conflicts.
fn host_metrics(out: &mut String, s: &State, now: Instant) {
    let counts = s.counts_by_az();
    let mut azs: Vec<&String> = counts.keys().map(|(az, _)| az).collect();
    azs.dedup();
    let mut samples = Vec::new();
    for az in azs {
        for st in HostStatus::ALL {
            let n = counts.get(&(az.clone(), st)).copied().unwrap_or(0);
            samples.push((
                format!("{{az=\"{}\",status=\"{}\"}}", label(az), st.as_str()),
                n as f64,
            ));
        }
    }
    family(
        out,
        "hvprobe_collector_hosts",
        "gauge",
        "Known hosts per AZ by status (stale = no recent report).",
        &samples,
    );
    let conflicts = s.hosts.values().filter(|h| h.conflict(now)).count();
    family(
        out,
        "hvprobe_collector_host_id_conflicts",
        "gauge",
        "Host ids another stream tried to claim in the last 5 minutes (refused).",
        &[(String::new(), conflicts as f64)],
    );
    family(
        out,
        "hvprobe_collector_twin_streams_refused_total",
        "counter",
        "Reports refused because another live stream reports the same host id.",
        &[(String::new(), s.twins_refused as f64)],
    );
}

/// Open verdicts, the collector's own health, the timeline's write errors.
fn engine_metrics(out: &mut String, s: &State) {
    let mut open: std::collections::BTreeMap<(&'static str, String), usize> =
        std::collections::BTreeMap::new();
    for v in s.engine.verdicts() {
        *open.entry((v.scope.as_str(), v.check.clone())).or_insert(0) += 1;
    }
    let samples: Vec<(String, f64)> = open
        .iter()
        .map(|((scope, check), n)| {
            (
                format!("{{scope=\"{scope}\",check=\"{}\"}}", label(check)),
                *n as f64,
            )
        })
        .collect();
    family(
        out,
        "hvprobe_collector_open_verdicts",
        "gauge",
        "Open verdicts by scope and check.",
        &samples,
    );
    family(
        out,
        "hvprobe_collector_ingest_degraded",
        "gauge",
        "1 while this collector sheds or lags: it then opens no verdict from staleness.",
        &[(
            String::new(),
            f64::from(u8::from(s.engine.ingest_degraded().is_some())),
        )],
    );
    family(
        out,
        "hvprobe_collector_inbox_depth",
        "gauge",
        "Commands waiting for the state owner at the latest tick.",
        &[(String::new(), s.inbox_depth as f64)],
    );
    family(
        out,
        "hvprobe_collector_event_write_errors_total",
        "counter",
        "Event batches the database refused (kept and retried).",
        &[(String::new(), s.event_write_errors as f64)],
    );
}

async fn metrics(AxState(api): AxState<Api>) -> Response {
    let stats = api.stats.clone();
    match api.state.query(move |s| render_metrics(s, &stats)).await {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => unavailable(),
    }
}
