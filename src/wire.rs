//! The only module that knows the generated protobuf types: conversions between the domain types
//! (`check::*`) and `hvprobe.v1` messages, both ways.
//!
//! Invariant: `from_pb(to_pb(x)) == x` for every check result (round-trip tested), so what the collector
//! shows is exactly what the agent observed. Unknown enum values from a newer peer decode to UNKNOWN,
//! never to an error: an old collector must keep working with a new agent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::check::conntrack::ConntrackDetails;
use crate::check::dns::{DnsDetails, DnsOutcome, DnsResult};
use crate::check::md_raid::{ArrayInfo, MdRaidDetails, MemberInfo};
use crate::check::memory::{CgroupPressure, MemoryDetails};
use crate::check::runner::CheckReport;
use crate::check::wireguard::{InterfaceInfo, PeerInfo, PeerState, Source, WireguardDetails};
use crate::check::{CheckKind, Details, Outcome, Status, UnknownReason};
use crate::fleet::{Event, EventKind, Recovery, Scope, VerdictView, ZoneView, ZonesView};
use crate::pb;
use crate::report::{AgentSelf, HostReport};

/// Why a message could not be turned into domain types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// A required field was empty or unspecified.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field had a value the domain does not accept.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was wrong.
        why: String,
    },
}

/// A host report to wire.
pub fn report_to_pb(r: &HostReport) -> pb::Report {
    pb::Report {
        host_id: r.host_id.clone(),
        az: r.az.clone(),
        region: r.region.clone(),
        agent_version: r.agent_version.clone(),
        boot_id: r.boot_id.clone(),
        boot_time_unix: r.boot_time,
        interval_secs: u32::try_from(r.interval.as_secs()).unwrap_or(u32::MAX),
        seq: r.seq,
        observed_at_unix_ms: r
            .observed_at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        checks: r.checks.iter().map(check_to_pb).collect(),
        missed_cycles: r.missed_cycles,
        agent: r.agent.map(|a| pb::AgentSelf {
            rss_bytes: a.rss_bytes,
            cpu_seconds: a.cpu_seconds,
        }),
    }
}

/// A host report from wire. Check kinds this build does not know are dropped; a malformed check result
/// rejects the whole report.
pub fn report_from_pb(m: &pb::Report) -> Result<HostReport, WireError> {
    let mut checks = Vec::with_capacity(m.checks.len());
    for c in &m.checks {
        if let Some(r) = check_from_pb(c)? {
            checks.push(r);
        }
    }
    Ok(HostReport {
        host_id: m.host_id.clone(),
        az: m.az.clone(),
        region: m.region.clone().filter(|r| !r.is_empty()),
        agent_version: m.agent_version.clone(),
        boot_id: m.boot_id.clone(),
        boot_time: m.boot_time_unix,
        interval: Duration::from_secs(u64::from(m.interval_secs)),
        seq: m.seq,
        observed_at: UNIX_EPOCH + Duration::from_millis(m.observed_at_unix_ms),
        missed_cycles: m.missed_cycles,
        agent: m.agent.map(|a| AgentSelf {
            rss_bytes: a.rss_bytes,
            cpu_seconds: if a.cpu_seconds.is_finite() {
                a.cpu_seconds
            } else {
                0.0
            },
        }),
        checks,
    })
}

fn scope_to_pb(s: Scope) -> pb::Scope {
    match s {
        Scope::Host => pb::Scope::Host,
        Scope::Az => pb::Scope::Az,
        Scope::Region => pb::Scope::Region,
    }
}

fn scope_from_pb(v: i32) -> Scope {
    match pb::Scope::try_from(v) {
        Ok(pb::Scope::Region) => Scope::Region,
        Ok(pb::Scope::Az) => Scope::Az,
        _ => Scope::Host,
    }
}

fn kind_of_event_to_pb(k: EventKind) -> pb::EventKind {
    match k {
        EventKind::VerdictOpened => pb::EventKind::VerdictOpened,
        EventKind::VerdictChanged => pb::EventKind::VerdictChanged,
        EventKind::VerdictClosed => pb::EventKind::VerdictClosed,
        EventKind::HostStale => pb::EventKind::HostStale,
        EventKind::HostBack => pb::EventKind::HostBack,
        EventKind::Rebooted => pb::EventKind::Rebooted,
        EventKind::Recovered => pb::EventKind::Recovered,
    }
}

fn kind_of_event_from_pb(v: i32) -> EventKind {
    match pb::EventKind::try_from(v) {
        Ok(pb::EventKind::VerdictOpened) => EventKind::VerdictOpened,
        Ok(pb::EventKind::VerdictClosed) => EventKind::VerdictClosed,
        Ok(pb::EventKind::HostStale) => EventKind::HostStale,
        Ok(pb::EventKind::HostBack) => EventKind::HostBack,
        Ok(pb::EventKind::Rebooted) => EventKind::Rebooted,
        Ok(pb::EventKind::Recovered) => EventKind::Recovered,
        _ => EventKind::VerdictChanged,
    }
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A timeline event to wire.
pub fn event_to_pb(e: &Event) -> pb::TimelineEvent {
    pb::TimelineEvent {
        id: e.id,
        at_unix_ms: unix_ms(e.at),
        kind: kind_of_event_to_pb(e.kind) as i32,
        scope: scope_to_pb(e.scope) as i32,
        region: e.region.clone(),
        az: e.az.clone(),
        host: e.host.clone(),
        check: e.check.clone(),
        old_status: e.old_status.clone(),
        new_status: e.new_status.clone(),
        summary: e.summary.clone(),
    }
}

/// A timeline event from wire.
pub fn event_from_pb(e: &pb::TimelineEvent) -> Event {
    Event {
        id: e.id,
        at: from_unix_ms(e.at_unix_ms),
        kind: kind_of_event_from_pb(e.kind),
        scope: scope_from_pb(e.scope),
        region: e.region.clone(),
        az: e.az.clone(),
        host: e.host.clone(),
        check: e.check.clone(),
        old_status: e.old_status.clone(),
        new_status: e.new_status.clone(),
        summary: e.summary.clone(),
    }
}

fn verdict_to_pb(v: &VerdictView) -> pb::VerdictMsg {
    pb::VerdictMsg {
        scope: scope_to_pb(v.scope) as i32,
        check: v.check.clone(),
        status: status_to_pb(v.status) as i32,
        hosts: v.hosts.clone(),
        summary: v.summary.clone(),
        since_unix_ms: unix_ms(v.since),
        az: v.az.clone(),
        region: v.region.clone(),
    }
}

fn verdict_from_pb(v: &pb::VerdictMsg) -> VerdictView {
    VerdictView {
        scope: scope_from_pb(v.scope),
        check: v.check.clone(),
        status: status_from_pb(v.status),
        hosts: v.hosts.clone(),
        summary: v.summary.clone(),
        since: from_unix_ms(v.since_unix_ms),
        az: v.az.clone(),
        region: v.region.clone(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The zones view to wire.
pub fn zones_to_pb(z: &ZonesView) -> pb::ZonesReply {
    pb::ZonesReply {
        zones: z
            .zones
            .iter()
            .map(|z| pb::Zone {
                az: z.az.clone(),
                region: z.region.clone(),
                hosts: count(z.hosts),
                reporting: count(z.reporting),
                stale: count(z.stale),
                status: status_to_pb(z.status) as i32,
                verdicts: z.verdicts.iter().map(verdict_to_pb).collect(),
                reboot: z.reboot.as_ref().map(|r| pb::Recovery {
                    since_unix_ms: unix_ms(r.since),
                    rebooted: count(r.rebooted),
                    back: count(r.back),
                    raid_rebuilding: count(r.raid_rebuilding),
                    raid_eta_secs: r.raid_eta_secs,
                    dns_not_ok: count(r.dns_not_ok),
                    wireguard_not_ok: count(r.wireguard_not_ok),
                }),
            })
            .collect(),
        region_verdicts: z.region_verdicts.iter().map(verdict_to_pb).collect(),
    }
}

/// The zones view from wire.
pub fn zones_from_pb(z: &pb::ZonesReply) -> ZonesView {
    ZonesView {
        zones: z
            .zones
            .iter()
            .map(|z| ZoneView {
                az: z.az.clone(),
                region: z.region.clone(),
                hosts: z.hosts as usize,
                reporting: z.reporting as usize,
                stale: z.stale as usize,
                status: status_from_pb(z.status),
                verdicts: z.verdicts.iter().map(verdict_from_pb).collect(),
                reboot: z.reboot.as_ref().map(|r| Recovery {
                    since: from_unix_ms(r.since_unix_ms),
                    rebooted: r.rebooted as usize,
                    back: r.back as usize,
                    raid_rebuilding: r.raid_rebuilding as usize,
                    raid_eta_secs: r.raid_eta_secs,
                    dns_not_ok: r.dns_not_ok as usize,
                    wireguard_not_ok: r.wireguard_not_ok as usize,
                }),
            })
            .collect(),
        region_verdicts: z.region_verdicts.iter().map(verdict_from_pb).collect(),
    }
}

/// Milliseconds since the epoch of a wall-clock time (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Domain status to wire.
pub fn status_to_pb(s: Status) -> pb::Status {
    match s {
        Status::Ok => pb::Status::Ok,
        Status::Warn => pb::Status::Warn,
        Status::Crit => pb::Status::Crit,
        Status::Unknown => pb::Status::Unknown,
    }
}

/// Wire status to domain; unspecified or unknown values are UNKNOWN.
pub fn status_from_pb(v: i32) -> Status {
    match pb::Status::try_from(v) {
        Ok(pb::Status::Ok) => Status::Ok,
        Ok(pb::Status::Warn) => Status::Warn,
        Ok(pb::Status::Crit) => Status::Crit,
        _ => Status::Unknown,
    }
}

fn reason_to_pb(r: Option<UnknownReason>) -> pb::UnknownReason {
    match r {
        None => pb::UnknownReason::Unspecified,
        Some(UnknownReason::Unsupported) => pb::UnknownReason::Unsupported,
        Some(UnknownReason::NoPermission) => pb::UnknownReason::NoPermission,
        Some(UnknownReason::TimedOut) => pb::UnknownReason::TimedOut,
        Some(UnknownReason::Malformed) => pb::UnknownReason::Malformed,
        Some(UnknownReason::Panicked) => pb::UnknownReason::Panicked,
        Some(UnknownReason::Busy) => pb::UnknownReason::Busy,
        Some(UnknownReason::Config) => pb::UnknownReason::Config,
        Some(UnknownReason::Error) => pb::UnknownReason::Error,
    }
}

fn reason_from_pb(v: i32) -> Option<UnknownReason> {
    match pb::UnknownReason::try_from(v).ok()? {
        pb::UnknownReason::Unspecified => None,
        pb::UnknownReason::Unsupported => Some(UnknownReason::Unsupported),
        pb::UnknownReason::NoPermission => Some(UnknownReason::NoPermission),
        pb::UnknownReason::TimedOut => Some(UnknownReason::TimedOut),
        pb::UnknownReason::Malformed => Some(UnknownReason::Malformed),
        pb::UnknownReason::Panicked => Some(UnknownReason::Panicked),
        pb::UnknownReason::Busy => Some(UnknownReason::Busy),
        pb::UnknownReason::Config => Some(UnknownReason::Config),
        pb::UnknownReason::Error => Some(UnknownReason::Error),
    }
}

/// Domain check kind to wire.
pub fn kind_to_pb(k: CheckKind) -> pb::CheckKind {
    match k {
        CheckKind::Memory => pb::CheckKind::Memory,
        CheckKind::Conntrack => pb::CheckKind::Conntrack,
        CheckKind::MdRaid => pb::CheckKind::MdRaid,
        CheckKind::Dns => pb::CheckKind::Dns,
        CheckKind::Wireguard => pb::CheckKind::Wireguard,
    }
}

/// Wire check kind to domain; `None` for unspecified or a kind this build does not know.
pub fn kind_from_pb(v: i32) -> Option<CheckKind> {
    match pb::CheckKind::try_from(v).ok()? {
        pb::CheckKind::Unspecified => None,
        pb::CheckKind::Memory => Some(CheckKind::Memory),
        pb::CheckKind::Conntrack => Some(CheckKind::Conntrack),
        pb::CheckKind::MdRaid => Some(CheckKind::MdRaid),
        pb::CheckKind::Dns => Some(CheckKind::Dns),
        pb::CheckKind::Wireguard => Some(CheckKind::Wireguard),
    }
}

/// One check's report to wire.
pub fn check_to_pb(r: &CheckReport) -> pb::CheckResult {
    pb::CheckResult {
        kind: kind_to_pb(r.kind) as i32,
        status: status_to_pb(r.outcome.status) as i32,
        summary: r.outcome.summary.clone(),
        reason: reason_to_pb(r.outcome.reason) as i32,
        duration_ms: u32::try_from(r.duration.as_millis()).unwrap_or(u32::MAX),
        details: details_to_pb(&r.outcome.details),
    }
}

/// One check's report from wire. A kind this build does not know is skipped by the caller (`Ok(None)`).
pub fn check_from_pb(m: &pb::CheckResult) -> Result<Option<CheckReport>, WireError> {
    let Some(kind) = kind_from_pb(m.kind) else {
        return Ok(None);
    };
    if m.summary.len() > 4096 {
        return Err(WireError::Invalid {
            field: "summary",
            why: format!("{} bytes, at most 4096", m.summary.len()),
        });
    }
    let status = status_from_pb(m.status);
    let reason = if status == Status::Unknown {
        Some(reason_from_pb(m.reason).unwrap_or(UnknownReason::Error))
    } else {
        None
    };
    Ok(Some(CheckReport {
        kind,
        outcome: Outcome {
            status,
            summary: m.summary.clone(),
            reason,
            details: m
                .details
                .as_ref()
                .map(details_from_pb)
                .unwrap_or(Details::None),
        },
        duration: Duration::from_millis(u64::from(m.duration_ms)),
    }))
}

fn details_to_pb(d: &Details) -> Option<pb::check_result::Details> {
    use pb::check_result::Details as D;
    Some(match d {
        Details::None => return None,
        Details::Memory(m) => D::Memory(pb::MemoryDetails {
            mem_total_bytes: m.mem_total_bytes,
            mem_available_bytes: m.mem_available_bytes,
            mem_available_percent: m.mem_available_percent,
            mem_available_estimated: m.mem_available_estimated,
            swap_total_bytes: m.swap_total_bytes,
            swap_free_bytes: m.swap_free_bytes,
            psi_some_avg10: m.psi_some_avg10,
            psi_some_avg60: m.psi_some_avg60,
            psi_full_avg10: m.psi_full_avg10,
            psi_full_avg60: m.psi_full_avg60,
            swap_in_pages_per_sec: m.swap_in_pages_per_sec,
            swap_out_pages_per_sec: m.swap_out_pages_per_sec,
            oom_kills: m.oom_kills,
            window_secs: m.window_secs,
            top_cgroups: m
                .top_cgroups
                .iter()
                .map(|c| pb::CgroupPressure {
                    cgroup: c.cgroup.clone(),
                    name: c.name.clone(),
                    psi_some_avg10: c.psi_some_avg10,
                    psi_full_avg10: c.psi_full_avg10,
                    memory_current_bytes: c.memory_current_bytes,
                    memory_max_bytes: c.memory_max_bytes,
                    swap_current_bytes: c.swap_current_bytes,
                })
                .collect(),
            psi_supported: m.psi_supported,
            notes: m.notes.clone(),
        }),
        Details::Conntrack(c) => D::Conntrack(pb::ConntrackDetails {
            entries: c.entries,
            max: c.max,
            used_percent: c.used_percent,
            counters_available: c.counters_available,
            drop_per_sec: c.drop_per_sec,
            early_drop_per_sec: c.early_drop_per_sec,
            insert_failed_per_sec: c.insert_failed_per_sec,
            drop_delta: c.drop_delta,
            early_drop_delta: c.early_drop_delta,
            insert_failed_delta: c.insert_failed_delta,
            window_secs: c.window_secs,
        }),
        Details::MdRaid(m) => D::MdRaid(pb::MdRaidDetails {
            arrays: m.arrays.iter().map(md_array_to_pb).collect(),
            missing_expected: m.missing_expected.clone(),
            personalities: m.personalities.clone(),
        }),
        Details::Dns(d) => D::Dns(pb::DnsDetails {
            resolvers: d.resolvers.clone(),
            results: d
                .results
                .iter()
                .map(|r| pb::DnsResult {
                    resolver: r.resolver.clone(),
                    name: r.name.clone(),
                    record_type: r.record_type.clone(),
                    outcome: dns_outcome_to_pb(r.outcome) as i32,
                    latency_ms: r.latency_ms,
                    answers: r.answers.clone(),
                    rcode: r.rcode.clone(),
                    error: r.error.clone(),
                })
                .collect(),
            search: d.search.clone(),
            options: d.options.clone(),
            notes: d.notes.clone(),
        }),
        Details::Wireguard(w) => D::Wireguard(pb::WireguardDetails {
            interfaces: w.interfaces.iter().map(wg_interface_to_pb).collect(),
            missing: w.missing.clone(),
            notes: w.notes.clone(),
        }),
    })
}

fn wg_interface_to_pb(i: &InterfaceInfo) -> pb::WgInterface {
    pb::WgInterface {
        name: i.name.clone(),
        source: match i.source {
            Source::Kernel => pb::WgSource::Kernel,
            Source::Userspace => pb::WgSource::Userspace,
        } as i32,
        listen_port: i.listen_port.map(u32::from),
        up: i.up,
        public_key: i.public_key.clone(),
        peers: i
            .peers
            .iter()
            .map(|p| pb::WgPeer {
                public_key: p.public_key.clone(),
                endpoint: p.endpoint.clone(),
                allowed_ips: p.allowed_ips.clone(),
                latest_handshake_age_secs: p.latest_handshake_age_secs,
                handshake_clock_skew: p.handshake_clock_skew,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive_secs: p.persistent_keepalive_secs.map(u32::from),
                probe_target: p.probe_target.clone(),
                probe_rtt_ms: p.probe_rtt_ms,
                one_way_secs: p.one_way_secs,
                state: match p.state {
                    PeerState::Ok => pb::WgPeerState::Ok,
                    PeerState::Never => pb::WgPeerState::Never,
                    PeerState::Stale => pb::WgPeerState::Stale,
                    PeerState::Unreachable => pb::WgPeerState::Unreachable,
                    PeerState::OneWay => pb::WgPeerState::OneWay,
                } as i32,
            })
            .collect(),
        status: status_to_pb(i.status) as i32,
        summary: i.summary.clone(),
    }
}

fn wg_interface_from_pb(i: &pb::WgInterface) -> InterfaceInfo {
    InterfaceInfo {
        name: i.name.clone(),
        source: match pb::WgSource::try_from(i.source) {
            Ok(pb::WgSource::Kernel) => Source::Kernel,
            _ => Source::Userspace,
        },
        listen_port: i.listen_port.and_then(|p| u16::try_from(p).ok()),
        up: i.up,
        public_key: i.public_key.clone(),
        peers: i
            .peers
            .iter()
            .map(|p| PeerInfo {
                public_key: p.public_key.clone(),
                endpoint: p.endpoint.clone(),
                allowed_ips: p.allowed_ips.clone(),
                latest_handshake_age_secs: p.latest_handshake_age_secs,
                handshake_clock_skew: p.handshake_clock_skew,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                persistent_keepalive_secs: p
                    .persistent_keepalive_secs
                    .and_then(|k| u16::try_from(k).ok()),
                probe_target: p.probe_target.clone(),
                probe_rtt_ms: p.probe_rtt_ms,
                one_way_secs: p.one_way_secs,
                // A state this build does not know is shown as never-ok rather than as healthy.
                state: match pb::WgPeerState::try_from(p.state) {
                    Ok(pb::WgPeerState::Ok) => PeerState::Ok,
                    Ok(pb::WgPeerState::Stale) => PeerState::Stale,
                    Ok(pb::WgPeerState::Unreachable) => PeerState::Unreachable,
                    Ok(pb::WgPeerState::OneWay) => PeerState::OneWay,
                    _ => PeerState::Never,
                },
            })
            .collect(),
        status: status_from_pb(i.status),
        summary: i.summary.clone(),
    }
}

fn dns_outcome_to_pb(o: DnsOutcome) -> pb::DnsOutcome {
    match o {
        DnsOutcome::Ok => pb::DnsOutcome::Ok,
        DnsOutcome::Refused => pb::DnsOutcome::Refused,
        DnsOutcome::Timeout => pb::DnsOutcome::Timeout,
        DnsOutcome::Servfail => pb::DnsOutcome::Servfail,
        DnsOutcome::Nxdomain => pb::DnsOutcome::Nxdomain,
        DnsOutcome::RefusedRcode => pb::DnsOutcome::RefusedRcode,
        DnsOutcome::WrongAnswer => pb::DnsOutcome::WrongAnswer,
        DnsOutcome::Error => pb::DnsOutcome::Error,
    }
}

fn dns_outcome_from_pb(v: i32) -> DnsOutcome {
    match pb::DnsOutcome::try_from(v) {
        Ok(pb::DnsOutcome::Ok) => DnsOutcome::Ok,
        Ok(pb::DnsOutcome::Refused) => DnsOutcome::Refused,
        Ok(pb::DnsOutcome::Timeout) => DnsOutcome::Timeout,
        Ok(pb::DnsOutcome::Servfail) => DnsOutcome::Servfail,
        Ok(pb::DnsOutcome::Nxdomain) => DnsOutcome::Nxdomain,
        Ok(pb::DnsOutcome::RefusedRcode) => DnsOutcome::RefusedRcode,
        Ok(pb::DnsOutcome::WrongAnswer) => DnsOutcome::WrongAnswer,
        _ => DnsOutcome::Error,
    }
}

fn md_array_to_pb(a: &ArrayInfo) -> pb::MdArray {
    pb::MdArray {
        name: a.name.clone(),
        uuid: a.uuid.clone(),
        level: a.level.clone(),
        state: a.state.clone(),
        raid_disks: a.raid_disks,
        active_disks: a.active_disks,
        failed_disks: a.failed_disks,
        spare_disks: a.spare_disks,
        degraded: a.degraded,
        status_map: a.status_map.clone(),
        sync_action: a.sync_action.clone(),
        sync_pending: a.sync_pending.clone(),
        sync_percent: a.sync_percent,
        sync_eta_secs: a.sync_eta_secs,
        sync_speed_kib_per_sec: a.sync_speed_kib_per_sec,
        sync_done_sectors: a.sync_done_sectors,
        sync_total_sectors: a.sync_total_sectors,
        mismatch_cnt: a.mismatch_cnt,
        read_only: a.read_only,
        container: a.container,
        members: a
            .members
            .iter()
            .map(|m| pb::MdMember {
                name: m.name.clone(),
                flags: m.flags.clone(),
            })
            .collect(),
        source: a.source.clone(),
        stalled_secs: a.stalled_secs,
        status: status_to_pb(a.status) as i32,
        summary: a.summary.clone(),
    }
}

fn md_array_from_pb(a: &pb::MdArray) -> ArrayInfo {
    ArrayInfo {
        name: a.name.clone(),
        uuid: a.uuid.clone(),
        level: a.level.clone(),
        state: a.state.clone(),
        raid_disks: a.raid_disks,
        active_disks: a.active_disks,
        failed_disks: a.failed_disks,
        spare_disks: a.spare_disks,
        degraded: a.degraded,
        status_map: a.status_map.clone(),
        sync_action: a.sync_action.clone(),
        sync_pending: a.sync_pending.clone(),
        sync_percent: a.sync_percent,
        sync_eta_secs: a.sync_eta_secs,
        sync_speed_kib_per_sec: a.sync_speed_kib_per_sec,
        sync_done_sectors: a.sync_done_sectors,
        sync_total_sectors: a.sync_total_sectors,
        mismatch_cnt: a.mismatch_cnt,
        read_only: a.read_only,
        container: a.container,
        members: a
            .members
            .iter()
            .map(|m| MemberInfo {
                name: m.name.clone(),
                flags: m.flags.clone(),
            })
            .collect(),
        source: a.source.clone(),
        stalled_secs: a.stalled_secs,
        status: status_from_pb(a.status),
        summary: a.summary.clone(),
    }
}

fn details_from_pb(d: &pb::check_result::Details) -> Details {
    use pb::check_result::Details as D;
    match d {
        D::Memory(m) => Details::Memory(MemoryDetails {
            mem_total_bytes: m.mem_total_bytes,
            mem_available_bytes: m.mem_available_bytes,
            mem_available_percent: m.mem_available_percent,
            mem_available_estimated: m.mem_available_estimated,
            swap_total_bytes: m.swap_total_bytes,
            swap_free_bytes: m.swap_free_bytes,
            psi_supported: m.psi_supported,
            psi_some_avg10: m.psi_some_avg10,
            psi_some_avg60: m.psi_some_avg60,
            psi_full_avg10: m.psi_full_avg10,
            psi_full_avg60: m.psi_full_avg60,
            swap_in_pages_per_sec: m.swap_in_pages_per_sec,
            swap_out_pages_per_sec: m.swap_out_pages_per_sec,
            oom_kills: m.oom_kills,
            window_secs: m.window_secs,
            top_cgroups: m
                .top_cgroups
                .iter()
                .map(|c| CgroupPressure {
                    cgroup: c.cgroup.clone(),
                    name: c.name.clone(),
                    psi_some_avg10: c.psi_some_avg10,
                    psi_full_avg10: c.psi_full_avg10,
                    memory_current_bytes: c.memory_current_bytes,
                    memory_max_bytes: c.memory_max_bytes,
                    swap_current_bytes: c.swap_current_bytes,
                })
                .collect(),
            notes: m.notes.clone(),
        }),
        D::Conntrack(c) => Details::Conntrack(ConntrackDetails {
            entries: c.entries,
            max: c.max,
            used_percent: c.used_percent,
            counters_available: c.counters_available,
            drop_per_sec: c.drop_per_sec,
            early_drop_per_sec: c.early_drop_per_sec,
            insert_failed_per_sec: c.insert_failed_per_sec,
            drop_delta: c.drop_delta,
            early_drop_delta: c.early_drop_delta,
            insert_failed_delta: c.insert_failed_delta,
            window_secs: c.window_secs,
        }),
        D::MdRaid(m) => Details::MdRaid(MdRaidDetails {
            arrays: m.arrays.iter().map(md_array_from_pb).collect(),
            missing_expected: m.missing_expected.clone(),
            personalities: m.personalities.clone(),
        }),
        D::Dns(d) => Details::Dns(DnsDetails {
            resolvers: d.resolvers.clone(),
            results: d
                .results
                .iter()
                .map(|r| DnsResult {
                    resolver: r.resolver.clone(),
                    name: r.name.clone(),
                    record_type: r.record_type.clone(),
                    outcome: dns_outcome_from_pb(r.outcome),
                    latency_ms: r.latency_ms,
                    answers: r.answers.clone(),
                    rcode: r.rcode.clone(),
                    error: r.error.clone(),
                })
                .collect(),
            search: d.search.clone(),
            options: d.options.clone(),
            notes: d.notes.clone(),
        }),
        D::Wireguard(w) => Details::Wireguard(WireguardDetails {
            interfaces: w.interfaces.iter().map(wg_interface_from_pb).collect(),
            missing: w.missing.clone(),
            notes: w.notes.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn roundtrip(r: &CheckReport) -> CheckReport {
        let bytes = check_to_pb(r).encode_to_vec();
        let decoded = pb::CheckResult::decode(bytes.as_slice()).unwrap();
        check_from_pb(&decoded).unwrap().unwrap()
    }

    #[test]
    fn memory_and_conntrack_round_trip() {
        let mem = CheckReport {
            kind: CheckKind::Memory,
            outcome: Outcome::new(
                Status::Warn,
                "psi some avg10 12.00 >= 10",
                Details::Memory(MemoryDetails {
                    mem_total_bytes: 100,
                    mem_available_bytes: 40,
                    mem_available_percent: 40.0,
                    mem_available_estimated: true,
                    swap_total_bytes: 0,
                    swap_free_bytes: 0,
                    psi_supported: true,
                    psi_some_avg10: Some(12.0),
                    psi_some_avg60: Some(1.0),
                    psi_full_avg10: None,
                    psi_full_avg60: None,
                    swap_in_pages_per_sec: Some(0.5),
                    swap_out_pages_per_sec: None,
                    oom_kills: Some(0),
                    window_secs: 1.0,
                    top_cgroups: vec![CgroupPressure {
                        cgroup: "machine-qemu\\x2d1\\x2da.scope".into(),
                        name: "qemu-1-a".into(),
                        psi_some_avg10: 3.0,
                        psi_full_avg10: 1.0,
                        memory_current_bytes: Some(5),
                        memory_max_bytes: None,
                        swap_current_bytes: Some(0),
                    }],
                    notes: vec!["n".into()],
                }),
            ),
            duration: Duration::from_millis(1003),
        };
        assert_eq!(roundtrip(&mem), mem);
        let ct = CheckReport {
            kind: CheckKind::Conntrack,
            outcome: Outcome::new(
                Status::Crit,
                "3 new flow(s) dropped",
                Details::Conntrack(ConntrackDetails {
                    entries: 9,
                    max: 10,
                    used_percent: 90.0,
                    counters_available: true,
                    drop_per_sec: Some(3.0),
                    early_drop_per_sec: Some(0.0),
                    insert_failed_per_sec: None,
                    drop_delta: Some(3),
                    early_drop_delta: Some(0),
                    insert_failed_delta: None,
                    window_secs: 1.0,
                }),
            ),
            duration: Duration::from_millis(2),
        };
        assert_eq!(roundtrip(&ct), ct);
        let unknown = CheckReport {
            kind: CheckKind::Conntrack,
            outcome: Outcome::unknown(UnknownReason::TimedOut, "no result within 3000 ms"),
            duration: Duration::from_millis(3000),
        };
        assert_eq!(roundtrip(&unknown), unknown);
    }

    #[test]
    fn md_raid_round_trips_on_real_data() {
        use crate::check::md_raid::{
            MdRaidConfig, Observation, evaluate, mdstat::parse_mdstat, merge,
        };
        let md = parse_mdstat(include_str!("../tests/corpus/mdstat/procfs_fixture.txt")).unwrap();
        let obs = Observation {
            arrays: merge(Vec::new(), Some(&md)),
            personalities: md.personalities.clone(),
            md_present: true,
            problems: Vec::new(),
        };
        let r = CheckReport {
            kind: CheckKind::MdRaid,
            outcome: evaluate(&obs, &MdRaidConfig::default()),
            duration: Duration::from_millis(1),
        };
        assert!(matches!(&r.outcome.details, Details::MdRaid(d) if d.arrays.len() == 18));
        assert_eq!(roundtrip(&r), r);
    }

    #[test]
    fn dns_round_trips() {
        let outcomes = [
            DnsOutcome::Ok,
            DnsOutcome::Refused,
            DnsOutcome::Timeout,
            DnsOutcome::Servfail,
            DnsOutcome::Nxdomain,
            DnsOutcome::RefusedRcode,
            DnsOutcome::WrongAnswer,
            DnsOutcome::Error,
        ];
        let r = CheckReport {
            kind: CheckKind::Dns,
            outcome: Outcome::new(
                Status::Warn,
                "127.0.0.1:53 refused (not running?); 10.1.2.3:53 ok 3ms",
                Details::Dns(DnsDetails {
                    resolvers: vec!["127.0.0.1".into()],
                    results: outcomes
                        .iter()
                        .map(|o| DnsResult {
                            resolver: "127.0.0.1:53".into(),
                            name: "api.internal.".into(),
                            record_type: "A".into(),
                            outcome: *o,
                            latency_ms: 1.5,
                            answers: vec!["10.0.0.5".into()],
                            rcode: Some("NOERROR".into()),
                            error: None,
                        })
                        .collect(),
                    search: vec!["example.com".into()],
                    options: vec!["edns0".into()],
                    notes: vec![],
                }),
            ),
            duration: Duration::from_millis(4),
        };
        assert_eq!(roundtrip(&r), r);
    }

    #[test]
    fn host_reports_round_trip() {
        let r = HostReport {
            host_id: "hv-12".into(),
            az: "az1".into(),
            region: Some("eu-1".into()),
            agent_version: "0.1.0".into(),
            boot_id: "f0a8fbc4-5bf7-42bd-b3e7-1734791cd19c".into(),
            boot_time: Some(1_795_239_769),
            interval: Duration::from_secs(10),
            seq: 42,
            observed_at: UNIX_EPOCH + Duration::from_millis(1_795_240_000_123),
            missed_cycles: 3,
            agent: Some(AgentSelf {
                rss_bytes: 5 << 20,
                cpu_seconds: 1.25,
            }),
            checks: vec![CheckReport {
                kind: CheckKind::Conntrack,
                outcome: Outcome::unknown(UnknownReason::Busy, "previous run still in progress"),
                duration: Duration::ZERO,
            }],
        };
        let bytes = report_to_pb(&r).encode_to_vec();
        let back = report_from_pb(&pb::Report::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn zones_and_events_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let v = VerdictView {
            scope: Scope::Az,
            check: "dns".into(),
            status: Status::Crit,
            hosts: vec!["hv-1".into(), "hv-2".into()],
            summary: "dns CRIT on 2/2 hosts".into(),
            since: t,
            az: Some("az1".into()),
            region: "eu".into(),
        };
        let z = ZonesView {
            zones: vec![ZoneView {
                az: "az1".into(),
                region: "eu".into(),
                hosts: 2,
                reporting: 2,
                stale: 0,
                status: Status::Crit,
                verdicts: vec![v.clone()],
                reboot: Some(Recovery {
                    since: t,
                    rebooted: 2,
                    back: 1,
                    raid_rebuilding: 1,
                    raid_eta_secs: Some(600),
                    dns_not_ok: 0,
                    wireguard_not_ok: 1,
                }),
            }],
            region_verdicts: vec![VerdictView {
                scope: Scope::Region,
                az: None,
                ..v
            }],
        };
        assert_eq!(zones_from_pb(&zones_to_pb(&z)), z);
        for kind in [
            EventKind::VerdictOpened,
            EventKind::HostStale,
            EventKind::Recovered,
            EventKind::VerdictChanged,
        ] {
            let e = Event {
                id: 7,
                at: t,
                kind,
                scope: Scope::Host,
                region: None,
                az: Some("az1".into()),
                host: Some("hv-1".into()),
                check: Some("dns".into()),
                old_status: None,
                new_status: Some("crit".into()),
                summary: "x".into(),
            };
            assert_eq!(event_from_pb(&event_to_pb(&e)), e);
        }
    }

    #[test]
    fn unknown_values_from_a_newer_peer_degrade_gracefully() {
        assert_eq!(status_from_pb(99), Status::Unknown);
        assert_eq!(kind_from_pb(99), None);
        let m = pb::CheckResult {
            kind: pb::CheckKind::Memory as i32,
            status: pb::Status::Unknown as i32,
            reason: 42,
            ..Default::default()
        };
        let r = check_from_pb(&m).unwrap().unwrap();
        assert_eq!(r.outcome.reason, Some(UnknownReason::Error));
    }
}
