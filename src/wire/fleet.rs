//! The Query service's messages: zones with their verdicts, and timeline events.

use super::{from_unix_ms, unix_ms};
use crate::check::Status;
use crate::fleet::{Event, EventKind, Recovery, Scope, VerdictView, ZoneView, ZonesView};
use crate::pb;

fn scope_to_pb(s: Scope) -> pb::Scope {
    match s {
        Scope::Host => pb::Scope::Host,
        Scope::Az => pb::Scope::Az,
        Scope::Region => pb::Scope::Region,
        Scope::Collector => pb::Scope::Collector,
    }
}

fn scope_from_pb(v: i32) -> Scope {
    match pb::Scope::try_from(v) {
        Ok(pb::Scope::Region) => Scope::Region,
        Ok(pb::Scope::Collector) => Scope::Collector,
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
        status: v.status.to_pb() as i32,
        hosts: v.hosts.clone(),
        summary: v.summary.clone(),
        since_unix_ms: unix_ms(v.since),
        az: v.az.clone(),
        region: v.region.clone(),
        flapping: v.flapping,
        recovered_unix_ms: v.recovered_at.map(unix_ms),
    }
}

fn verdict_from_pb(v: &pb::VerdictMsg) -> VerdictView {
    VerdictView {
        scope: scope_from_pb(v.scope),
        check: v.check.clone(),
        status: Status::from_pb(v.status),
        hosts: v.hosts.clone(),
        summary: v.summary.clone(),
        since: from_unix_ms(v.since_unix_ms),
        az: v.az.clone(),
        region: v.region.clone(),
        flapping: v.flapping,
        recovered_at: v.recovered_unix_ms.map(from_unix_ms),
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
                status: z.status.to_pb() as i32,
                verdicts: z.verdicts.iter().map(verdict_to_pb).collect(),
                reboot: z.reboot.as_ref().map(|r| pb::Recovery {
                    since_unix_ms: unix_ms(r.since),
                    rebooted: count(r.rebooted),
                    back: count(r.back),
                    raid_rebuilding: count(r.raid_rebuilding),
                    raid_eta_secs: r.raid_eta_secs,
                    dns_not_ok: count(r.dns_not_ok),
                    wireguard_not_ok: count(r.wireguard_not_ok),
                    units_not_back: r.units_not_back.clone(),
                }),
            })
            .collect(),
        region_verdicts: z.region_verdicts.iter().map(verdict_to_pb).collect(),
        collector_verdicts: z.collector_verdicts.iter().map(verdict_to_pb).collect(),
        ingest_degraded: z.ingest_degraded.clone(),
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
                status: Status::from_pb(z.status),
                verdicts: z.verdicts.iter().map(verdict_from_pb).collect(),
                reboot: z.reboot.as_ref().map(|r| Recovery {
                    since: from_unix_ms(r.since_unix_ms),
                    rebooted: r.rebooted as usize,
                    back: r.back as usize,
                    raid_rebuilding: r.raid_rebuilding as usize,
                    raid_eta_secs: r.raid_eta_secs,
                    dns_not_ok: r.dns_not_ok as usize,
                    wireguard_not_ok: r.wireguard_not_ok as usize,
                    units_not_back: r
                        .units_not_back
                        .iter()
                        .take(crate::fleet::MAX_UNITS_NOT_BACK)
                        .cloned()
                        .collect(),
                }),
            })
            .collect(),
        region_verdicts: z.region_verdicts.iter().map(verdict_from_pb).collect(),
        collector_verdicts: z.collector_verdicts.iter().map(verdict_from_pb).collect(),
        ingest_degraded: z.ingest_degraded.clone(),
    }
}
