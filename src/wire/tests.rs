//! Round trips of every message family on real data; graceful degradation with a newer peer.

use super::*;
use std::time::Duration;

use prost::Message as _;

use crate::check::conntrack::ConntrackDetails;
use crate::check::dns::{DnsDetails, DnsOutcome, DnsResult};
use crate::check::memory::{CgroupPressure, MemoryDetails};
use crate::check::runner::CheckReport;
use crate::check::{CheckKind, Details, Outcome, Status, UnknownReason};
use crate::fleet::{Event, EventKind, Recovery, Scope, VerdictView, ZoneView, ZonesView};
use crate::pb;
use crate::report::{AgentSelf, HostReport};

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
    use crate::check::md_raid::{MdRaidConfig, Observation, evaluate, mdstat::parse_mdstat, merge};
    let md = parse_mdstat(include_str!("../../tests/corpus/mdstat/procfs_fixture.txt")).unwrap();
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
        flapping: false,
        recovered_at: Some(t + Duration::from_secs(5)),
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
                units_not_back: vec!["unbound.service on hv-1".into()],
            }),
        }],
        region_verdicts: vec![VerdictView {
            scope: Scope::Region,
            az: None,
            flapping: true,
            recovered_at: None,
            ..v
        }],
        collector_verdicts: vec![],
        ingest_degraded: None,
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
    assert_eq!(Status::from_pb(99), Status::Unknown);
    assert_eq!(CheckKind::from_pb(99), None);
    let m = pb::CheckResult {
        kind: pb::CheckKind::Memory as i32,
        status: pb::Status::Unknown as i32,
        reason: 42,
        ..Default::default()
    };
    let r = check_from_pb(&m).unwrap().unwrap();
    assert_eq!(r.outcome.reason, Some(UnknownReason::Error));
}
