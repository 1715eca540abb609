//! `IoDetails` to and from its protobuf message.

use super::{CgroupIoPressure, DiskIo, IoDetails};
use crate::pb;

/// Details to wire.
pub fn to_pb(d: &IoDetails) -> pb::IoDetails {
    pb::IoDetails {
        psi_supported: d.psi_supported,
        psi_some_avg10: d.psi_some_avg10,
        psi_some_avg60: d.psi_some_avg60,
        psi_full_avg10: d.psi_full_avg10,
        psi_full_avg60: d.psi_full_avg60,
        disks: d
            .disks
            .iter()
            .map(|x| pb::DiskIo {
                name: x.name.clone(),
                util_percent: x.util_percent,
                await_ms: x.await_ms,
                read_iops: x.read_iops,
                write_iops: x.write_iops,
                read_kib_per_sec: x.read_kib_per_sec,
                write_kib_per_sec: x.write_kib_per_sec,
                in_flight: x.in_flight,
            })
            .collect(),
        window_secs: d.window_secs,
        top_cgroups: d
            .top_cgroups
            .iter()
            .map(|c| pb::CgroupIoPressure {
                cgroup: c.cgroup.clone(),
                name: c.name.clone(),
                psi_some_avg10: c.psi_some_avg10,
                psi_full_avg10: c.psi_full_avg10,
            })
            .collect(),
        notes: d.notes.clone(),
    }
}

/// Details from wire.
pub fn from_pb(d: &pb::IoDetails) -> IoDetails {
    IoDetails {
        psi_supported: d.psi_supported,
        psi_some_avg10: d.psi_some_avg10,
        psi_some_avg60: d.psi_some_avg60,
        psi_full_avg10: d.psi_full_avg10,
        psi_full_avg60: d.psi_full_avg60,
        disks: d
            .disks
            .iter()
            .map(|x| DiskIo {
                name: x.name.clone(),
                util_percent: x.util_percent,
                await_ms: x.await_ms,
                read_iops: x.read_iops,
                write_iops: x.write_iops,
                read_kib_per_sec: x.read_kib_per_sec,
                write_kib_per_sec: x.write_kib_per_sec,
                in_flight: x.in_flight,
            })
            .collect(),
        window_secs: d.window_secs,
        top_cgroups: d
            .top_cgroups
            .iter()
            .map(|c| CgroupIoPressure {
                cgroup: c.cgroup.clone(),
                name: c.name.clone(),
                psi_some_avg10: c.psi_some_avg10,
                psi_full_avg10: c.psi_full_avg10,
            })
            .collect(),
        notes: d.notes.clone(),
    }
}
