//! `MdRaidDetails` to and from its protobuf message.

use super::{ArrayInfo, MdRaidDetails, MemberInfo};
use crate::check::Status;
use crate::pb;

/// Details to wire.
pub fn to_pb(m: &MdRaidDetails) -> pb::MdRaidDetails {
    pb::MdRaidDetails {
        arrays: m.arrays.iter().map(array_to_pb).collect(),
        missing_expected: m.missing_expected.clone(),
        personalities: m.personalities.clone(),
    }
}

/// Details from wire.
pub fn from_pb(m: &pb::MdRaidDetails) -> MdRaidDetails {
    MdRaidDetails {
        arrays: m.arrays.iter().map(array_from_pb).collect(),
        missing_expected: m.missing_expected.clone(),
        personalities: m.personalities.clone(),
    }
}

fn array_to_pb(a: &ArrayInfo) -> pb::MdArray {
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
        status: a.status.to_pb() as i32,
        summary: a.summary.clone(),
    }
}

fn array_from_pb(a: &pb::MdArray) -> ArrayInfo {
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
        status: Status::from_pb(a.status),
        summary: a.summary.clone(),
    }
}
