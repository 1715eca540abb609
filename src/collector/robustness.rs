//! No report crashes the collector (issue 11): arbitrary `Report` messages — any numbers, any strings, any
//! enum values, times from any clock — go through encode, decode, sanitize, validate, the real state owner
//! (correlation included, with time driven anywhere) and every rendering of the state: the host API, the
//! zones (JSON and protobuf), `/metrics`, `hvprobe status` and the timeline's events.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use prost::Message as _;

use super::correlate::{CorrelationConfig, Engine};
use super::http::{event_json, host_json, render_metrics};
use super::state::{IngestStats, State};
use crate::pb;
use crate::{report, wire};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        "\\PC{0,40}",
        Just(String::new()),
        Just("é".repeat(40)),
    ]
}

fn details() -> impl Strategy<Value = Option<pb::check_result::Details>> {
    use pb::check_result::Details as D;
    prop_oneof![
        Just(None),
        (any::<u64>(), any::<u64>(), any::<f64>(), text()).prop_map(|(a, b, f, n)| Some(
            D::Memory(pb::MemoryDetails {
                mem_total_bytes: a,
                mem_available_bytes: b,
                mem_available_percent: f,
                psi_some_avg10: Some(f),
                notes: vec![n],
                ..Default::default()
            })
        )),
        (text(), any::<i32>(), any::<Option<u64>>(), text()).prop_map(|(name, st, eta, action)| {
            Some(D::MdRaid(pb::MdRaidDetails {
                arrays: vec![pb::MdArray {
                    name,
                    status: st,
                    sync_eta_secs: eta,
                    sync_action: action,
                    sync_pending: Some("DELAYED".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }))
        }),
        (text(), any::<i32>()).prop_map(|(resolver, outcome)| Some(D::Dns(pb::DnsDetails {
            results: vec![pb::DnsResult {
                resolver,
                outcome,
                latency_ms: f64::NAN,
                ..Default::default()
            }],
            ..Default::default()
        }))),
        (text(), text(), any::<i32>(), any::<Option<u32>>()).prop_map(
            |(k1, k2, state, port)| Some(D::Wireguard(pb::WireguardDetails {
                interfaces: vec![pb::WgInterface {
                    name: "wg0".into(),
                    public_key: Some(k1),
                    listen_port: port,
                    peers: vec![pb::WgPeer {
                        public_key: k2,
                        state,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }))
        ),
        (text(), text(), any::<bool>(), any::<u32>()).prop_map(|(name, class, up, n)| Some(
            D::Reach(pb::ReachDetails {
                targets: vec![
                    pb::TargetState {
                        name: name.clone(),
                        address: name,
                        reachable: up,
                        sent: n,
                        received: n / 2,
                        failure: Some(class),
                        kind: (n % 5) as i32,
                        status: (n % 6) as i32,
                        ..Default::default()
                    };
                    (n % 4) as usize
                ],
                ..Default::default()
            })
        )),
        (text(), text(), any::<i32>()).prop_map(|(name, state, status)| Some(D::Services(
            pb::ServicesDetails {
                boot_settled: status % 2 == 0,
                units: vec![pb::UnitState {
                    name,
                    active_state: state.clone(),
                    load_state: state,
                    status,
                    ..Default::default()
                }],
            }
        ))),
        (text(), any::<f64>()).prop_map(|(name, u)| Some(D::Io(pb::IoDetails {
            disks: vec![pb::DiskIo {
                name,
                util_percent: Some(u),
                ..Default::default()
            }],
            ..Default::default()
        }))),
    ]
}

fn check() -> impl Strategy<Value = pb::CheckResult> {
    (
        0i32..9,
        any::<i32>(),
        text(),
        any::<i32>(),
        any::<u32>(),
        details(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, status, summary, reason, duration_ms, details, details_unchanged)| {
                pb::CheckResult {
                    kind,
                    status,
                    summary,
                    reason,
                    duration_ms,
                    details,
                    details_unchanged,
                }
            },
        )
}

fn report() -> impl Strategy<Value = pb::Report> {
    (
        (
            prop_oneof![4 => (1..6u8).prop_map(|i| format!("hv-{i}")), 1 => text()],
            prop_oneof![4 => Just("az1".to_owned()), 1 => text()],
            prop_oneof![
                Just(None),
                Just(Some("eu".to_owned())),
                any::<Option<String>>()
            ],
        ),
        (
            text(),
            text(),
            any::<Option<u64>>(),
            prop_oneof![4 => 1u32..=3600, 1 => any::<u32>()],
            any::<u64>(),
            any::<u64>(),
        ),
        (
            proptest::collection::vec(check(), 0..6),
            any::<u32>(),
            any::<Option<(u64, f64)>>(),
        ),
    )
        .prop_map(
            |(
                (host_id, az, region),
                (agent_version, boot_id, boot_time_unix, interval_secs, seq, observed),
                (checks, missed_cycles, agent),
            )| pb::Report {
                host_id,
                az,
                region,
                agent_version,
                boot_id,
                boot_time_unix,
                interval_secs,
                seq,
                observed_at_unix_ms: observed,
                checks,
                missed_cycles,
                agent: agent.map(|(rss_bytes, cpu_seconds)| pb::AgentSelf {
                    rss_bytes,
                    cpu_seconds,
                }),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_report_crashes_the_state_owner_or_a_view(
        reports in proptest::collection::vec(report(), 1..12),
        ticks in proptest::collection::vec(any::<u64>(), 1..4),
    ) {
        let mut s = State::new(3, Engine::new(CorrelationConfig::default(), 3), None);
        let mut accepted = 0;
        let stats = Arc::new(IngestStats::default());
        let mut events = s.events_tx.subscribe();
        for (i, m) in reports.iter().enumerate() {
            let bytes = m.encode_to_vec();
            let Ok(decoded) = pb::Report::decode(bytes.as_slice()) else { continue };
            let Ok(mut r) = wire::report_from_pb(&decoded) else { continue };
            report::sanitize(&mut r, SystemTime::now());
            if report::validate(&r).is_err() {
                continue;
            }
            let id = r.host_id.clone();
            s.apply(i as u64, r, Instant::now());
            accepted += 1;
            prop_assert!(host_json(&s, &id).is_some());
        }
        for t in ticks {
            // Time may jump anywhere a broken clock can take it.
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(t % 400_000_000_000);
            s.handle_tick_at(now);
        }
        let zones = s.engine.zones(None);
        let _ = serde_json::to_string(&zones);
        let _ = wire::zones_to_pb(&zones);
        let _ = crate::diag::fleet::status_table(&zones, SystemTime::now());
        let _ = render_metrics(&s, &stats);
        for id in s.hosts.keys() {
            prop_assert!(host_json(&s, id).is_some());
        }
        let summaries: Vec<_> = s.hosts.values().map(|h| s.summary(h, Instant::now())).collect();
        let _ = serde_json::to_string(&summaries);
        for v in s.engine.verdicts() {
            let _ = crate::util::rfc3339(v.since);
        }
        // Most generated reports are valid: the owner really ran (not a vacuous pass).
        prop_assume!(accepted > 0);
        while let Ok(e) = events.try_recv() {
            let _ = event_json(&e);
            let _ = wire::event_to_pb(&e);
        }
    }
}

/// A report listing more reach targets than an agent can be configured with, named to look like verdict
/// keys, is clamped before correlation: at most `MAX_TARGETS`, no `/` in a name, so every verdict key still
/// reads `scope/place/reach:<target>`.
#[test]
fn reach_targets_beyond_the_agent_limits_are_clamped() {
    use crate::check::reach::{MAX_TARGETS, ProbeKind, ReachDetails, TargetState};
    use crate::check::{Details, Outcome, Status};
    let target = |i: usize| TargetState {
        name: format!("az/az9/reach:x{i}"),
        address: "10.0.0.1".repeat(40),
        kind: ProbeKind::Icmp,
        critical: true,
        sent: 3,
        received: 0,
        window_loss_percent: 0.0,
        window_probes: 0,
        rtt_p50_ms: None,
        rtt_max_ms: None,
        reachable: false,
        failure: Some("icmp.timed_out".into()),
        failure_detail: None,
        status: Status::Crit,
    };
    let mut r = report::HostReport {
        host_id: "hv-1".into(),
        az: "az1".into(),
        region: None,
        agent_version: "t".into(),
        boot_id: "b".into(),
        boot_time: None,
        interval: Duration::from_secs(10),
        seq: 1,
        observed_at: SystemTime::now(),
        missed_cycles: 0,
        agent: None,
        checks: vec![crate::check::runner::CheckReport {
            kind: crate::check::CheckKind::Reach,
            outcome: Outcome::new(
                Status::Crit,
                "cut",
                Details::Reach(ReachDetails {
                    targets: (0..MAX_TARGETS + 500).map(target).collect(),
                    icmp_raw_socket: false,
                }),
            ),
            duration: Duration::ZERO,
        }],
    };
    let clamped = report::sanitize(&mut r, SystemTime::now());
    assert!(clamped.contains(&"reach.targets"), "{clamped:?}");
    let Details::Reach(d) = &r.checks[0].outcome.details else {
        panic!("details gone")
    };
    assert_eq!(d.targets.len(), MAX_TARGETS);
    assert!(
        d.targets
            .iter()
            .all(|t| !t.name.contains('/') && t.address.len() <= 64)
    );
}
