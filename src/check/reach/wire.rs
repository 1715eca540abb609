//! `ReachDetails` to and from its protobuf message.

use super::{ProbeKind, ReachDetails, TargetState};
use crate::check::Status;
use crate::pb;

fn kind_to_pb(k: ProbeKind) -> i32 {
    (match k {
        ProbeKind::Icmp => pb::ProbeKind::Icmp,
        ProbeKind::Tcp => pb::ProbeKind::Tcp,
        ProbeKind::Tls => pb::ProbeKind::Tls,
    }) as i32
}

/// Details to wire.
pub fn to_pb(d: &ReachDetails) -> pb::ReachDetails {
    pb::ReachDetails {
        icmp_raw_socket: d.icmp_raw_socket,
        targets: d
            .targets
            .iter()
            .map(|t| pb::TargetState {
                name: t.name.clone(),
                address: t.address.clone(),
                kind: kind_to_pb(t.kind),
                critical: t.critical,
                sent: t.sent,
                received: t.received,
                window_loss_percent: t.window_loss_percent,
                window_probes: t.window_probes,
                rtt_p50_ms: t.rtt_p50_ms,
                rtt_max_ms: t.rtt_max_ms,
                reachable: t.reachable,
                failure: t.failure.clone(),
                failure_detail: t.failure_detail.clone(),
                status: t.status.to_pb() as i32,
            })
            .collect(),
    }
}

/// Details from wire. A probe kind this build does not know reads as `tcp` (it is shown, never probed).
pub fn from_pb(d: &pb::ReachDetails) -> ReachDetails {
    ReachDetails {
        icmp_raw_socket: d.icmp_raw_socket,
        targets: d
            .targets
            .iter()
            .map(|t| TargetState {
                name: t.name.clone(),
                address: t.address.clone(),
                kind: match pb::ProbeKind::try_from(t.kind) {
                    Ok(pb::ProbeKind::Icmp) => ProbeKind::Icmp,
                    Ok(pb::ProbeKind::Tls) => ProbeKind::Tls,
                    _ => ProbeKind::Tcp,
                },
                critical: t.critical,
                sent: t.sent,
                received: t.received,
                window_loss_percent: t.window_loss_percent,
                window_probes: t.window_probes,
                rtt_p50_ms: t.rtt_p50_ms,
                rtt_max_ms: t.rtt_max_ms,
                reachable: t.reachable,
                failure: t.failure.clone(),
                failure_detail: t.failure_detail.clone(),
                status: Status::from_pb(t.status),
            })
            .collect(),
    }
}
