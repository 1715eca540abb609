//! `ServicesDetails` to and from its protobuf message.

use super::{ServicesDetails, UnitState};
use crate::check::Status;
use crate::pb;

/// Details to wire.
pub fn to_pb(d: &ServicesDetails) -> pb::ServicesDetails {
    pb::ServicesDetails {
        boot_settled: d.boot_settled,
        units: d
            .units
            .iter()
            .map(|u| pb::UnitState {
                name: u.name.clone(),
                load_state: u.load_state.clone(),
                active_state: u.active_state.clone(),
                sub_state: u.sub_state.clone(),
                result: u.result.clone(),
                since_unix_ms: u.since_unix_ms,
                n_restarts: u.n_restarts,
                restarts_in_window: u.restarts_in_window,
                unit_file_state: u.unit_file_state.clone(),
                never_started: u.never_started,
                status: u.status.to_pb() as i32,
            })
            .collect(),
    }
}

/// Details from wire.
pub fn from_pb(d: &pb::ServicesDetails) -> ServicesDetails {
    ServicesDetails {
        boot_settled: d.boot_settled,
        units: d
            .units
            .iter()
            .map(|u| UnitState {
                name: u.name.clone(),
                load_state: u.load_state.clone(),
                active_state: u.active_state.clone(),
                sub_state: u.sub_state.clone(),
                result: u.result.clone(),
                since_unix_ms: u.since_unix_ms,
                n_restarts: u.n_restarts,
                restarts_in_window: u.restarts_in_window,
                unit_file_state: u.unit_file_state.clone(),
                never_started: u.never_started,
                status: Status::from_pb(u.status),
            })
            .collect(),
    }
}
