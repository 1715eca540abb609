//! `DnsDetails` to and from its protobuf message.

use super::{DnsDetails, DnsOutcome, DnsResult};
use crate::pb;

/// Details to wire.
pub fn to_pb(d: &DnsDetails) -> pb::DnsDetails {
    pb::DnsDetails {
        resolvers: d.resolvers.clone(),
        results: d.results.iter().map(result_to_pb).collect(),
        search: d.search.clone(),
        options: d.options.clone(),
        notes: d.notes.clone(),
    }
}

/// Details from wire.
pub fn from_pb(d: &pb::DnsDetails) -> DnsDetails {
    DnsDetails {
        resolvers: d.resolvers.clone(),
        results: d.results.iter().map(result_from_pb).collect(),
        search: d.search.clone(),
        options: d.options.clone(),
        notes: d.notes.clone(),
    }
}

fn result_to_pb(r: &DnsResult) -> pb::DnsResult {
    pb::DnsResult {
        resolver: r.resolver.clone(),
        name: r.name.clone(),
        record_type: r.record_type.clone(),
        outcome: outcome_to_pb(r.outcome) as i32,
        latency_ms: r.latency_ms,
        answers: r.answers.clone(),
        rcode: r.rcode.clone(),
        error: r.error.clone(),
    }
}

fn result_from_pb(r: &pb::DnsResult) -> DnsResult {
    DnsResult {
        resolver: r.resolver.clone(),
        name: r.name.clone(),
        record_type: r.record_type.clone(),
        outcome: outcome_from_pb(r.outcome),
        latency_ms: r.latency_ms,
        answers: r.answers.clone(),
        rcode: r.rcode.clone(),
        error: r.error.clone(),
    }
}

fn outcome_to_pb(o: DnsOutcome) -> pb::DnsOutcome {
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

/// A value this build does not know (a newer agent's) is `error`, never a failed decode.
fn outcome_from_pb(v: i32) -> DnsOutcome {
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
