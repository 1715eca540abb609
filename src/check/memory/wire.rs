//! `MemoryDetails` to and from its protobuf message.

use super::{CgroupPressure, MemoryDetails};
use crate::pb;

/// Details to wire.
pub fn to_pb(m: &MemoryDetails) -> pb::MemoryDetails {
    pb::MemoryDetails {
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
        top_cgroups: m.top_cgroups.iter().map(cgroup_to_pb).collect(),
        psi_supported: m.psi_supported,
        notes: m.notes.clone(),
    }
}

/// Details from wire.
pub fn from_pb(m: &pb::MemoryDetails) -> MemoryDetails {
    MemoryDetails {
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
        top_cgroups: m.top_cgroups.iter().map(cgroup_from_pb).collect(),
        notes: m.notes.clone(),
    }
}

fn cgroup_to_pb(c: &CgroupPressure) -> pb::CgroupPressure {
    pb::CgroupPressure {
        cgroup: c.cgroup.clone(),
        name: c.name.clone(),
        psi_some_avg10: c.psi_some_avg10,
        psi_full_avg10: c.psi_full_avg10,
        memory_current_bytes: c.memory_current_bytes,
        memory_max_bytes: c.memory_max_bytes,
        swap_current_bytes: c.swap_current_bytes,
    }
}

fn cgroup_from_pb(c: &pb::CgroupPressure) -> CgroupPressure {
    CgroupPressure {
        cgroup: c.cgroup.clone(),
        name: c.name.clone(),
        psi_some_avg10: c.psi_some_avg10,
        psi_full_avg10: c.psi_full_avg10,
        memory_current_bytes: c.memory_current_bytes,
        memory_max_bytes: c.memory_max_bytes,
        swap_current_bytes: c.swap_current_bytes,
    }
}
