//! Scripted scenarios on the pure engine, one per rule, with the clock in the test's hands.

use std::time::{Duration, SystemTime};

use super::*;
use crate::check::Details;
use crate::check::dns::{DnsDetails, DnsOutcome, DnsResult};
use crate::check::md_raid::{MdRaidConfig, Observation, evaluate, mdstat::parse_mdstat, merge};
use crate::check::runner::CheckReport;
use crate::check::services::{ServicesDetails, UnitState};
use crate::check::wireguard::PeerState;
use crate::check::wireguard::{InterfaceInfo, PeerInfo, Source, WireguardDetails};
use crate::check::{Outcome, UnknownReason};

const T0: u64 = 1_795_000_000;
const IV: Duration = Duration::from_secs(10);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn engine() -> Engine {
    Engine::new(CorrelationConfig::default(), 3)
}

fn check(kind: CheckKind, status: Status, summary: &str, details: Details) -> CheckReport {
    let mut outcome = Outcome::new(status, summary, details);
    if status == Status::Unknown {
        outcome.reason = Some(UnknownReason::Error);
    }
    CheckReport {
        kind,
        outcome,
        duration: Duration::from_millis(1),
    }
}

fn dns(status: Status, resolver: &str, outcome: DnsOutcome) -> CheckReport {
    check(
        CheckKind::Dns,
        status,
        &format!("{resolver} {}", outcome.as_str()),
        Details::Dns(DnsDetails {
            resolvers: vec![],
            results: vec![DnsResult {
                resolver: resolver.into(),
                name: "api.internal.".into(),
                record_type: "A".into(),
                outcome,
                latency_ms: 1.0,
                answers: vec![],
                rcode: None,
                error: None,
            }],
            search: vec![],
            options: vec![],
            notes: vec![],
        }),
    )
}

fn dns_ok() -> CheckReport {
    dns(Status::Ok, "127.0.0.1:53", DnsOutcome::Ok)
}

fn report(host: &str, az: &str, boot: &str, checks: Vec<CheckReport>) -> HostReport {
    HostReport {
        host_id: host.into(),
        az: az.into(),
        region: Some("eu".into()),
        agent_version: "t".into(),
        boot_id: boot.into(),
        boot_time: None,
        interval: IV,
        seq: 1,
        observed_at: SystemTime::UNIX_EPOCH,
        missed_cycles: 0,
        agent: None,
        checks,
    }
}

fn opened(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::VerdictOpened)
        .collect()
}

/// Feeds one cycle (every host reports once at `t`), then a tick.
fn cycle(e: &mut Engine, t: SystemTime, reports: &[HostReport]) -> Vec<Event> {
    let mut ev = Vec::new();
    for r in reports {
        ev.extend(e.observe(t, r));
    }
    ev.extend(e.tick(t));
    ev
}

/// A verdict that recovered sooner than the flap window after opening: from `from` to just before
/// `close_at` it stays open, held (no event but the one saying so, which the caller has seen), and at
/// `close_at` (the window since it opened) it closes. Returns that cycle's events.
fn held_until(e: &mut Engine, from: u64, close_at: u64, reports: &[HostReport]) -> Vec<Event> {
    let ev = cycles(e, from, (close_at - from) / 10, reports);
    assert!(ev.is_empty(), "held quietly: {ev:#?}");
    assert!(
        e.verdicts().count() > 0 && e.verdicts().all(|v| v.recovered_at.is_some()),
        "{:#?}",
        e.verdicts().collect::<Vec<_>>()
    );
    cycle(e, at(close_at), reports)
}

/// A verdict entering its hold: it ends with one `verdict-changed` saying so, and nothing opened or closed.
fn assert_held(ev: &[Event]) {
    let held = ev
        .iter()
        .filter(|x| x.summary.starts_with("recovered; held open"))
        .count();
    assert!(
        held == 1
            && ev
                .last()
                .is_some_and(|x| x.kind == EventKind::VerdictChanged
                    && x.summary.starts_with("recovered; held open"))
            && ev.iter().all(|x| x.kind == EventKind::VerdictChanged),
        "{ev:#?}"
    );
}

/// `n` hosts `hv-0`.. of az1 reporting conntrack: CRIT for the indices in `bad`, OK for the others.
fn conntrack_fleet(n: usize, bad: &[usize]) -> Vec<HostReport> {
    (0..n)
        .map(|i| {
            let s = if bad.contains(&i) {
                Status::Crit
            } else {
                Status::Ok
            };
            report(&format!("hv-{i}"), "az1", "b1", vec![conntrack(s)])
        })
        .collect()
}

/// `n` cycles, 10 s apart from `from` seconds; every event they produced.
fn cycles(e: &mut Engine, from: u64, n: u64, reports: &[HostReport]) -> Vec<Event> {
    (0..n)
        .flat_map(|i| cycle(e, at(from + i * 10), reports))
        .collect()
}

#[test]
fn az_wide_dns_failure_is_one_verdict_not_n() {
    let mut e = engine();
    let fleet: Vec<HostReport> = (0..10)
        .map(|i| {
            report(
                &format!("hv-{i}"),
                "az1",
                "b1",
                vec![dns(Status::Crit, "10.0.0.53:53", DnsOutcome::Servfail)],
            )
        })
        .collect();
    let first = cycle(&mut e, at(0), &fleet);
    assert!(
        opened(&first).is_empty(),
        "one bad report is not enough (open-after-cycles = 2)"
    );
    // Condition active from the second cycle; the verdict settles for one interval, then opens.
    let ev = cycles(&mut e, 10, 4, &fleet);
    let o = opened(&ev);
    assert_eq!(o.len(), 1, "{o:#?}");
    assert_eq!(
        o[0].at,
        at(30),
        "opened one settle time (11 s) after the second cycle"
    );
    assert_eq!(o[0].scope, Scope::Az);
    assert_eq!(o[0].check.as_deref(), Some("dns"));
    assert!(
        o[0].summary.contains("10/10 hosts of az1 (AZ-wide)"),
        "{}",
        o[0].summary
    );
    assert!(
        o[0].summary.contains("AZ recursor or upstream"),
        "{}",
        o[0].summary
    );
    let z = e.zones(None);
    assert_eq!(z.zones[0].verdicts.len(), 1);
    assert_eq!(z.zones[0].verdicts[0].hosts.len(), 10);
    assert_eq!(z.zones[0].status, Status::Crit);
    // Recovery: two good cycles end it. It opened 30 s ago, less than the flap window (300 s): held open
    // (saying so) until 300 s after it opened, in case it comes back, then closed with one event.
    let good: Vec<HostReport> = (0..10)
        .map(|i| report(&format!("hv-{i}"), "az1", "b1", vec![dns_ok()]))
        .collect();
    assert!(
        cycle(&mut e, at(50), &good).is_empty(),
        "one good cycle is not enough"
    );
    assert_held(&cycle(&mut e, at(60), &good));
    assert_eq!(e.verdicts().next().unwrap().recovered_at, Some(at(60)));
    let closed = held_until(&mut e, 70, 330, &good);
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].kind, EventKind::VerdictClosed);
    assert_eq!(e.verdicts().count(), 0);
}

#[test]
fn two_dead_local_resolvers_in_a_healthy_az_are_two_local_verdicts() {
    let mut e = engine();
    let fleet: Vec<HostReport> = (0..40)
        .map(|i| {
            let d = if i < 2 {
                dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)
            } else {
                dns_ok()
            };
            report(&format!("hv-{i:02}"), "az1", "b1", vec![d])
        })
        .collect();
    let ev = cycles(&mut e, 0, 5, &fleet);
    let o = opened(&ev);
    assert_eq!(o.len(), 2, "{o:#?}");
    for v in &o {
        assert_eq!(v.scope, Scope::Host);
        assert!(
            v.summary.contains("(local: 2/40 hosts of az1)"),
            "{}",
            v.summary
        );
        assert!(
            v.summary
                .contains("the local resolver is down on this host"),
            "{}",
            v.summary
        );
    }
    assert_eq!(o[0].host.as_deref(), Some("hv-00"));
}

#[test]
fn an_az_going_silent_is_unreachable_never_down() {
    let mut e = engine();
    let fleet: Vec<HostReport> = (0..10)
        .map(|i| report(&format!("hv-{i}"), "az1", "b1", vec![dns_ok()]))
        .collect();
    cycle(&mut e, at(0), &fleet);
    cycle(&mut e, at(10), &fleet);
    // 8 of 10 go silent (power cut); 2 keep reporting.
    for t in [20, 30, 40] {
        cycle(&mut e, at(t), &fleet[8..]);
    }
    let mut ev = cycle(&mut e, at(45), &fleet[8..]);
    ev.extend(cycles(&mut e, 50, 3, &fleet[8..]));
    let stale: Vec<&Event> = ev
        .iter()
        .filter(|x| x.kind == EventKind::HostStale)
        .collect();
    assert_eq!(stale.len(), 8);
    let o = opened(&ev);
    assert_eq!(o.len(), 1, "{o:#?}");
    assert_eq!(o[0].check.as_deref(), Some("reachability"));
    assert!(
        o[0].summary
            .starts_with("az1 unreachable: 8/10 hosts silent"),
        "{}",
        o[0].summary
    );
    assert!(o[0].summary.contains("stale, not down"));
    let z = &e.zones(None).zones[0];
    assert_eq!((z.hosts, z.reporting, z.stale), (10, 2, 8));
    let all = serde_json::to_string(&e.zones(None)).unwrap();
    assert!(!all.contains("down\""), "no host is called down: {all}");
    // They come back: host-back events, the verdict closes.
    let ev = cycle(&mut e, at(80), &fleet);
    assert_eq!(
        ev.iter().filter(|x| x.kind == EventKind::HostBack).count(),
        8
    );
    assert!(
        ev.iter()
            .any(|x| x.kind == EventKind::VerdictClosed
                && x.check.as_deref() == Some("reachability"))
    );
}

#[test]
fn a_slow_trickle_of_stale_hosts_is_not_an_unreachable_az() {
    let mut e = engine();
    let fleet: Vec<HostReport> = (0..6)
        .map(|i| report(&format!("hv-{i}"), "az1", "b1", vec![dns_ok()]))
        .collect();
    cycle(&mut e, at(0), &fleet);
    // One host decommissioned every 10 minutes: never correlated within the 120 s window.
    let mut t = 0;
    for gone in 1..=4 {
        for _ in 0..60 {
            t += 10;
            cycle(&mut e, at(t), &fleet[gone..]);
        }
    }
    assert!(
        e.verdicts().all(|v| v.check != "reachability"),
        "{:?}",
        e.verdicts().collect::<Vec<_>>()
    );
}

fn md_check(text: &str) -> CheckReport {
    let md = parse_mdstat(text).unwrap();
    let out = evaluate(
        &Observation {
            arrays: merge(Vec::new(), Some(&md)),
            md_present: true,
            ..Observation::default()
        },
        &MdRaidConfig::default(),
    );
    CheckReport {
        kind: CheckKind::MdRaid,
        outcome: out,
        duration: Duration::ZERO,
    }
}

#[test]
fn an_az_rebooting_with_raid_resync_is_one_event_with_recovery_counts() {
    let mut e = engine();
    let clean = "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n";
    let resync = "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  [=>..]  resync = 8.5% (8/100) finish=37.0min speed=1000K/sec\n";
    let before: Vec<HostReport> = (0..6)
        .map(|i| {
            report(
                &format!("hv-{i}"),
                "az1",
                "boot-1",
                vec![md_check(clean), dns_ok()],
            )
        })
        .collect();
    cycle(&mut e, at(0), &before);
    // Power cut: every host comes back with a new boot id; two rebuild RAID, one has DNS not yet up.
    let after: Vec<HostReport> = (0..6)
        .map(|i| {
            let md = if i < 2 {
                md_check(resync)
            } else {
                md_check(clean)
            };
            let d = if i == 5 {
                dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)
            } else {
                dns_ok()
            };
            report(&format!("hv-{i}"), "az1", "boot-2", vec![md, d])
        })
        .collect();
    let mut events = Vec::new();
    for (i, r) in after.iter().enumerate() {
        events.extend(e.observe(at(300 + i as u64 * 30), r));
    }
    let reboots: Vec<&Event> = events
        .iter()
        .filter(|x| x.kind == EventKind::Rebooted)
        .collect();
    assert_eq!(
        reboots.len(),
        1,
        "one event for the AZ, not one per host: {events:#?}"
    );
    assert!(
        reboots[0].summary.starts_with("az1 rebooted: 3/6 hosts"),
        "{}",
        reboots[0].summary
    );
    let r = e.zones(None).zones[0].reboot.clone().unwrap();
    assert_eq!(
        (r.rebooted, r.back, r.raid_rebuilding, r.dns_not_ok),
        (6, 6, 2, 1)
    );
    assert_eq!(r.raid_eta_secs, Some(37 * 60));
    // Recovery: RAID in sync and DNS up everywhere -> one recovered event.
    let healthy: Vec<HostReport> = (0..6)
        .map(|i| {
            report(
                &format!("hv-{i}"),
                "az1",
                "boot-2",
                vec![md_check(clean), dns_ok()],
            )
        })
        .collect();
    let ev = cycle(&mut e, at(3000), &healthy);
    let rec: Vec<&Event> = ev
        .iter()
        .filter(|x| x.kind == EventKind::Recovered)
        .collect();
    assert_eq!(rec.len(), 1, "{ev:#?}");
    assert!(
        rec[0]
            .summary
            .starts_with("az1 recovered: all 6 rebooted hosts back"),
        "{}",
        rec[0].summary
    );
    assert!(e.zones(None).zones[0].reboot.is_none());
}

fn key(host: &str) -> String {
    format!("key-of-{host}=")
}

/// `host` with one interface whose peers are `peers` (host, state).
fn wg(host: &str, peers: &[(&str, PeerState)]) -> CheckReport {
    let bad = peers.iter().filter(|(_, s)| *s != PeerState::Ok).count();
    let status = if bad == 0 { Status::Ok } else { Status::Warn };
    check(
        CheckKind::Wireguard,
        status,
        &format!("wg0: {bad}/{} peers down", peers.len()),
        Details::Wireguard(WireguardDetails {
            interfaces: vec![InterfaceInfo {
                name: "wg0".into(),
                source: Source::Kernel,
                listen_port: Some(51820),
                up: true,
                public_key: Some(key(host)),
                peers: peers
                    .iter()
                    .map(|(h, s)| PeerInfo {
                        public_key: key(h),
                        endpoint: None,
                        allowed_ips: vec![],
                        latest_handshake_age_secs: Some(5),
                        handshake_clock_skew: false,
                        rx_bytes: 0,
                        tx_bytes: 0,
                        persistent_keepalive_secs: None,
                        probe_target: None,
                        probe_rtt_ms: None,
                        one_way_secs: None,
                        state: *s,
                        conntrack: vec![],
                    })
                    .collect(),
                status,
                summary: String::new(),
            }],
            missing: vec![],
            notes: vec![],
        }),
    )
}

/// A WireGuard full mesh of `names`: each reporting host (`reports`) sees every other one, `Unreachable` where
/// `lost(host, peer)`, `Ok` elsewhere.
fn mesh_fleet(
    names: &[&str],
    reports: impl Fn(&str) -> bool,
    lost: impl Fn(&str, &str) -> bool,
) -> Vec<HostReport> {
    names
        .iter()
        .filter(|h| reports(h))
        .map(|h| {
            let peers: Vec<(&str, PeerState)> = names
                .iter()
                .filter(|p| *p != h)
                .map(|p| {
                    let state = if lost(h, p) {
                        PeerState::Unreachable
                    } else {
                        PeerState::Ok
                    };
                    (*p, state)
                })
                .collect();
            report(h, "az1", "b1", vec![wg(h, &peers)])
        })
        .collect()
}

#[test]
fn a_dead_wireguard_host_seen_by_all_its_peers_is_one_verdict() {
    let mut e = engine();
    let names = ["hv-a", "hv-b", "hv-c", "hv-d", "hv-e"];
    let mesh = |dead: Option<&str>| -> Vec<HostReport> {
        mesh_fleet(&names, |h| Some(h) != dead, |_, p| Some(p) == dead)
    };
    cycle(&mut e, at(0), &mesh(None));
    cycle(&mut e, at(10), &mesh(None));
    // hv-e dies: its agent is silent too; the four others lose it.
    let mut ev = Vec::new();
    for t in [20, 30, 40, 50] {
        ev.extend(cycle(&mut e, at(t), &mesh(Some("hv-e"))));
    }
    let o = opened(&ev);
    assert_eq!(
        o.len(),
        1,
        "one verdict about hv-e, not one per peer nor an AZ-wide wireguard fault: {o:#?}"
    );
    assert_eq!(o[0].host.as_deref(), Some("hv-e"));
    assert!(
        o[0].summary
            .starts_with("hv-e unreachable over WireGuard: lost by 4/4 of its peers"),
        "{}",
        o[0].summary
    );
    assert!(
        e.verdicts().all(|v| v.host.as_deref() == Some("hv-e")),
        "{:#?}",
        e.verdicts().collect::<Vec<_>>()
    );
    assert!(
        e.verdicts()
            .any(|v| v.summary.contains("hv-e itself is stale")),
        "after 3 intervals hv-e is stale"
    );
}

/// Marks `host`'s peer `toward` with a suspect conntrack entry on its flow.
fn with_stale_flow(mut r: HostReport, toward: &str) -> HostReport {
    use crate::check::wireguard::{FlowDirection, FlowInfo};
    for c in &mut r.checks {
        if let Details::Wireguard(w) = &mut c.outcome.details {
            for p in w.interfaces.iter_mut().flat_map(|i| i.peers.iter_mut()) {
                if p.public_key == key(toward) {
                    p.conntrack.push(FlowInfo {
                        direction: FlowDirection::Outbound,
                        original: "10.0.0.1:51820 -> 10.0.0.4:51820".into(),
                        reply: "10.0.0.4:51820 -> 10.0.0.1:51820".into(),
                        state: "UNREPLIED".into(),
                        timeout_secs: 29,
                        nat: None,
                        suspect: Some("UNREPLIED while the peer is down".into()),
                        drop_command: Some("conntrack -D -p udp".into()),
                    });
                }
            }
        }
    }
    r
}

#[test]
fn a_mesh_verdict_names_the_hosts_holding_stale_conntrack_on_the_link() {
    let mut e = engine();
    let names = ["hv-a", "hv-b", "hv-c", "hv-d"];
    // hv-d is alive but its links are blackholed: hv-a and hv-b hold stale flows toward it, and hv-d
    // one toward hv-c; hv-c's own flow looks right.
    let fleet = |broken: bool, stale: bool| -> Vec<HostReport> {
        mesh_fleet(
            &names,
            |_| true,
            |h, p| broken && (h == "hv-d" || p == "hv-d"),
        )
        .into_iter()
        .map(|r| match (stale, r.host_id.as_str()) {
            (true, "hv-a" | "hv-b") => with_stale_flow(r, "hv-d"),
            (true, "hv-d") => with_stale_flow(r, "hv-c"),
            _ => r,
        })
        .collect()
    };
    cycles(&mut e, 0, 2, &fleet(false, false));
    let ev = cycles(&mut e, 20, 4, &fleet(true, true));
    let o = opened(&ev);
    assert_eq!(o.len(), 1, "{o:#?}");
    assert_eq!(o[0].host.as_deref(), Some("hv-d"));
    assert!(
        o[0].summary
            .contains("stale UDP conntrack on hv-a, hv-b, hv-d ("),
        "{}",
        o[0].summary
    );
    // The flows are dropped but the link is still down: the verdict stays, and stops blaming conntrack.
    cycles(&mut e, 60, 2, &fleet(true, false));
    let v: Vec<_> = e.verdicts().collect();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(!v[0].summary.contains("conntrack"), "{}", v[0].summary);
    // The mesh heals: the verdict, younger than the flap window, is held until the window has passed since
    // it opened, then closes.
    let ev = cycles(&mut e, 80, 2, &fleet(false, false));
    assert_held(&ev);
    let opened_at = e.opened["host/hv-d/wireguard-mesh"];
    let close_at = opened_at.duration_since(at(0)).unwrap().as_secs() + 300;
    let ev = held_until(&mut e, 100, close_at, &fleet(false, false));
    assert!(
        ev.iter().any(|x| x.kind == EventKind::VerdictClosed),
        "{ev:#?}"
    );
    assert_eq!(e.verdicts().count(), 0);
}

/// Compact reports carry no details: the engine keeps each host's facts (WireGuard peers, DNS results, md
/// arrays) from its previous snapshot, so a mesh verdict neither closes nor changes while nothing changed.
#[test]
fn compact_reports_keep_the_facts_a_verdict_stands_on() {
    let mut e = engine();
    let names = ["hv-a", "hv-b", "hv-c", "hv-d"];
    let fleet = |dead: bool| -> Vec<HostReport> {
        mesh_fleet(&names, |h| !dead || h != "hv-d", |_, p| dead && p == "hv-d")
    };
    let compact = |reports: Vec<HostReport>| -> Vec<HostReport> {
        reports
            .into_iter()
            .map(|mut r| {
                for c in &mut r.checks {
                    c.outcome.details = Details::Unchanged;
                }
                r
            })
            .collect()
    };
    cycles(&mut e, 0, 2, &fleet(false));
    let ev = cycles(&mut e, 20, 4, &fleet(true));
    assert_eq!(opened(&ev).len(), 1, "{ev:#?}");
    let before: Vec<_> = e.verdicts().cloned().collect();
    let ev = cycles(&mut e, 60, 6, &compact(fleet(true)));
    assert!(
        ev.iter().all(|x| x.kind != EventKind::VerdictClosed),
        "compact reports closed a verdict: {ev:#?}"
    );
    let after: Vec<_> = e.verdicts().cloned().collect();
    assert_eq!(before.len(), after.len());
    assert_eq!(before[0].summary, after[0].summary);
    // A full report that says the mesh healed closes it.
    let ev = cycles(&mut e, 120, 6, &fleet(false));
    assert!(
        ev.iter().any(|x| x.kind == EventKind::VerdictClosed),
        "{ev:#?}"
    );
}

#[test]
fn a_single_flicker_never_alerts() {
    let mut e = engine();
    let mut events = Vec::new();
    for i in 0..20 {
        let d = if i == 7 {
            dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)
        } else {
            dns_ok()
        };
        events.extend(cycle(
            &mut e,
            at(i * 10),
            &[report("hv-1", "az1", "b1", vec![d])],
        ));
    }
    assert!(events.is_empty(), "{events:#?}");
}

/// Issue 10: a check alternating every cycle is one flapping verdict, held open while it flaps and closed
/// once it has been quiet for the flap window — never a string of open/close events.
#[test]
fn a_check_alternating_every_cycle_is_one_flapping_verdict() {
    let mut e = engine();
    let mut events = Vec::new();
    for i in 0..40 {
        let d = if i % 2 == 0 {
            dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)
        } else {
            dns_ok()
        };
        events.extend(cycle(
            &mut e,
            at(i * 10),
            &[report("hv-1", "az1", "b1", vec![d])],
        ));
    }
    let o = opened(&events);
    assert_eq!(o.len(), 1, "{events:#?}");
    assert!(
        o[0].summary.starts_with("flapping: dns CRIT on hv-1"),
        "{}",
        o[0].summary
    );
    assert!(
        events.iter().all(|x| x.kind != EventKind::VerdictClosed),
        "{events:#?}"
    );
    assert!(e.zones(None).zones[0].verdicts[0].flapping);
    // Quiet: OK for two cycles is not enough while it flapped; OK for the flap window (300 s) is.
    let ok = [report("hv-1", "az1", "b1", vec![dns_ok()])];
    let quiet = cycles(&mut e, 400, 25, &ok);
    assert!(
        quiet.iter().all(|x| x.kind != EventKind::VerdictClosed),
        "{quiet:#?}"
    );
    let end = cycles(&mut e, 650, 6, &ok);
    let closed: Vec<&Event> = end
        .iter()
        .filter(|x| x.kind == EventKind::VerdictClosed)
        .collect();
    assert_eq!(closed.len(), 1, "{end:#?}");
    assert_eq!(e.verdicts().count(), 0);
}

/// Issue 10, the reported case: 2 cycles CRIT / 2 cycles OK at a 1 s interval for 20 s opened and closed 5
/// verdicts. Issue 22: it still opened 2 (the first episode opened and closed before anything looked like
/// flapping). Now: one verdict, never closed while it flaps.
#[test]
fn two_crit_two_ok_for_twenty_seconds_is_one_flapping_verdict() {
    let mut e = engine();
    let mut events = Vec::new();
    let mut r = report("hv-1", "az1", "b1", vec![]);
    r.interval = Duration::from_secs(1);
    for i in 0..20u64 {
        let d = if i % 4 < 2 {
            dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)
        } else {
            dns_ok()
        };
        let mut ri = r.clone();
        ri.checks = vec![d];
        events.extend(e.observe(at(i), &ri));
        events.extend(e.tick(at(i) + Duration::from_millis(500)));
    }
    let o = opened(&events);
    let closed = events
        .iter()
        .filter(|x| x.kind == EventKind::VerdictClosed)
        .count();
    assert!(o.len() == 1 && closed == 0, "{events:#?}");
    assert_eq!(e.verdicts().count(), 1);
    assert!(
        e.verdicts().all(|v| v.flapping),
        "{:#?}",
        e.verdicts().collect::<Vec<_>>()
    );
}

/// Issue 22: a host verdict held after recovering whose host fails again as part of an AZ-wide fault is
/// folded into the AZ verdict: one `verdict-changed` on the AZ verdict, no `verdict-closed` that would read
/// as recovery, and no host left in two verdicts.
#[test]
fn a_held_host_verdict_whose_host_joins_an_az_verdict_is_folded_into_it() {
    let mut e = engine();
    let fleet = |bad: &[usize]| conntrack_fleet(10, bad);
    cycles(&mut e, 0, 2, &fleet(&[]));
    assert_eq!(opened(&cycles(&mut e, 20, 4, &fleet(&[0]))).len(), 1);
    assert_held(&cycles(&mut e, 60, 2, &fleet(&[])));
    // An AZ-wide fault on three other hosts: its own verdict.
    let ev = cycles(&mut e, 80, 4, &fleet(&[1, 2, 3]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictOpened, Scope::Az, None)],
        "{ev:#?}"
    );
    // hv-0 fails again, with them: folded into the AZ verdict.
    let ev = cycles(&mut e, 120, 3, &fleet(&[0, 1, 2, 3]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictChanged, Scope::Az, None)],
        "{ev:#?}"
    );
    assert!(
        ev[0]
            .summary
            .starts_with("now also folding host verdict on hv-0: "),
        "{}",
        ev[0].summary
    );
    let vs: Vec<&Verdict> = e.verdicts().collect();
    assert_eq!(vs.len(), 1, "{vs:#?}");
    assert_eq!(vs[0].hosts, ["hv-0", "hv-1", "hv-2", "hv-3"]);
}

/// Issue 22: a host flapping in runs of three cycles (CRIT x3, OK x3, ...) at the default 10 s interval
/// opened a verdict, closed it and opened a second one within the flap window. Now: one verdict, which
/// recovers and is held, comes back as the same verdict (flapping), and closes once, a flap window after
/// the flapping stopped.
#[test]
fn a_host_flapping_in_runs_of_three_cycles_is_one_verdict_from_open_to_close() {
    let mut e = engine();
    let bad = [report(
        "hv-1",
        "az1",
        "b1",
        vec![dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)],
    )];
    let ok = [report("hv-1", "az1", "b1", vec![dns_ok()])];
    let mut events = Vec::new();
    for i in 0..30u64 {
        let r = if i % 6 < 3 { &bad } else { &ok };
        events.extend(cycle(&mut e, at(i * 10), r));
    }
    let verdict_events: Vec<&Event> = events
        .iter()
        .filter(|x| x.check.as_deref() == Some("dns"))
        .collect();
    assert_eq!(opened(&events).len(), 1, "{verdict_events:#?}");
    assert!(
        events.iter().all(|x| x.kind != EventKind::VerdictClosed),
        "{verdict_events:#?}"
    );
    // It recovered once (held), came back as the same verdict, then was damped as flapping.
    let summaries: Vec<&str> = verdict_events.iter().map(|x| x.summary.as_str()).collect();
    assert!(
        summaries[1].starts_with("recovered; held open")
            && summaries[2]
                .starts_with("back within the flap window, the same verdict: flapping: dns CRIT"),
        "{summaries:#?}"
    );
    assert!(e.verdicts().all(|v| v.flapping && v.hosts == ["hv-1"]));
    // Quiet: closed once, the flap window after its last CRIT (at 260 s), not before.
    let quiet = cycles(&mut e, 300, 27, &ok);
    assert!(
        quiet.iter().all(|x| x.kind != EventKind::VerdictClosed),
        "{quiet:#?}"
    );
    let end = cycles(&mut e, 570, 3, &ok);
    assert_eq!(
        kinds(&end),
        [(EventKind::VerdictClosed, Scope::Host, Some("hv-1".into()))],
        "{end:#?}"
    );
    assert_eq!(e.verdicts().count(), 0);
}

#[test]
fn the_same_fault_in_every_az_is_one_region_verdict() {
    let mut e = engine();
    let fleet: Vec<HostReport> = ["az1", "az2", "az3"]
        .iter()
        .flat_map(|az| {
            (0..4).map(move |i| {
                report(
                    &format!("{az}-hv{i}"),
                    az,
                    "b1",
                    vec![dns(Status::Crit, "10.0.0.53:53", DnsOutcome::Timeout)],
                )
            })
        })
        .collect();
    let ev = cycles(&mut e, 0, 5, &fleet);
    let o = opened(&ev);
    assert_eq!(o.len(), 1, "{o:#?}");
    assert_eq!(o[0].scope, Scope::Region);
    assert!(
        o[0].summary
            .starts_with("dns CRIT in every AZ of region eu (az1, az2, az3): 12 hosts"),
        "{}",
        o[0].summary
    );
    let z = e.zones(None);
    assert_eq!(z.region_verdicts.len(), 1);
    assert!(z.zones.iter().all(|z| z.verdicts.is_empty()));
}

#[test]
fn status_changes_and_restored_verdicts() {
    let mut e = engine();
    let fleet = |s: Status| -> Vec<HostReport> {
        (0..4)
            .map(|i| {
                report(
                    &format!("hv-{i}"),
                    "az1",
                    "b1",
                    vec![dns(s, "10.0.0.53:53", DnsOutcome::Servfail)],
                )
            })
            .collect()
    };
    let warm = cycles(&mut e, 0, 4, &fleet(Status::Warn));
    assert_eq!(opened(&warm).len(), 1);
    let ev = cycle(&mut e, at(40), &fleet(Status::Crit));
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0].kind, EventKind::VerdictChanged);
    assert_eq!(
        (ev[0].old_status.as_deref(), ev[0].new_status.as_deref()),
        (Some("warn"), Some("crit"))
    );

    // A restarted collector restores the open verdict and does not close it before the hosts reported.
    let saved: Vec<Verdict> = e.verdicts().cloned().collect();
    let mut fresh = engine();
    fresh.restore(at(100), e.registry(), saved);
    assert!(
        fresh.tick(at(101)).is_empty(),
        "nothing closes while warming up"
    );
    let ev = cycle(&mut fresh, at(105), &fleet(Status::Crit));
    assert!(ev.is_empty(), "{ev:#?}");
    let ev = cycle(&mut fresh, at(115), &fleet(Status::Crit));
    assert!(
        ev.is_empty(),
        "the same verdict, not closed and reopened: {ev:#?}"
    );
    assert_eq!(fresh.verdicts().count(), 1);
    // Reboot detection works across the restart: the registry kept the boot ids.
    let rebooted: Vec<HostReport> = (0..4)
        .map(|i| report(&format!("hv-{i}"), "az1", "b2", vec![dns_ok()]))
        .collect();
    let ev = cycle(&mut fresh, at(200), &rebooted);
    assert!(ev.iter().any(|x| x.kind == EventKind::Rebooted), "{ev:#?}");
}

#[test]
fn resolver_locality() {
    assert!(loopback("127.0.0.1:53"));
    assert!(loopback("127.0.0.53:53"));
    assert!(loopback("[::1]:53"));
    assert!(!loopback("10.0.0.53:53"));
    assert!(!loopback("[fe80::1%eth0]:53"));
}

#[test]
fn a_host_verdict_closed_by_silence_says_so() {
    let mut e = engine();
    let bad = report(
        "hv-1",
        "az1",
        "b1",
        vec![dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)],
    );
    let ok: Vec<HostReport> = (2..6)
        .map(|i| report(&format!("hv-{i}"), "az1", "b1", vec![dns_ok()]))
        .collect();
    let all: Vec<HostReport> = std::iter::once(&bad).chain(&ok).cloned().collect();
    assert_eq!(opened(&cycles(&mut e, 0, 4, &all)).len(), 1);
    // hv-1 goes silent while the others keep reporting: its verdict closes, but not as "recovered".
    let ev = cycles(&mut e, 40, 5, &ok);
    let closed: Vec<&Event> = ev
        .iter()
        .filter(|x| x.kind == EventKind::VerdictClosed)
        .collect();
    assert_eq!(closed.len(), 1, "{ev:#?}");
    assert!(
        closed[0]
            .summary
            .starts_with("no data (hosts stale), not recovered: dns CRIT on hv-1"),
        "{}",
        closed[0].summary
    );
}

fn conntrack(status: Status) -> CheckReport {
    check(
        CheckKind::Conntrack,
        status,
        if status == Status::Ok {
            "10/1000 entries (1.0%)"
        } else {
            "table 95.0% full >= 90%"
        },
        Details::None,
    )
}

fn kinds(events: &[Event]) -> Vec<(EventKind, Scope, Option<String>)> {
    events
        .iter()
        .filter(|x| {
            matches!(
                x.kind,
                EventKind::VerdictOpened | EventKind::VerdictChanged | EventKind::VerdictClosed
            )
        })
        .map(|x| (x.kind, x.scope, x.host.clone()))
        .collect()
}

/// Issue 10: conntrack saturated 2 hosts (2 host verdicts), then spread to 6 of 8: one AZ verdict that
/// folds them with one `verdict-changed` (no `closed` that reads as recovery), keeping the earliest `since`;
/// then it shrank back to one host: after its settle time the AZ verdict gives way to one host verdict
/// (its own `since`); then that host recovers and the verdict closes.
#[test]
fn a_fault_spreading_and_shrinking_folds_and_unfolds() {
    let mut e = engine();
    let fleet = |bad: &[usize]| conntrack_fleet(8, bad);
    cycles(&mut e, 0, 2, &fleet(&[]));
    let ev = cycles(&mut e, 20, 4, &fleet(&[1, 2]));
    assert_eq!(
        kinds(&ev),
        [
            (EventKind::VerdictOpened, Scope::Host, Some("hv-1".into())),
            (EventKind::VerdictOpened, Scope::Host, Some("hv-2".into()))
        ]
    );
    let first_since = e.verdicts().map(|v| v.since).min().unwrap();
    let ev = cycles(&mut e, 60, 4, &fleet(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictChanged, Scope::Az, None)],
        "{ev:#?}"
    );
    assert!(ev[0].summary.starts_with("escalated to az scope, folding host verdict on hv-1, host verdict on hv-2: conntrack CRIT on 3/8 hosts of az1 (AZ-wide)"), "{}", ev[0].summary);
    let vs: Vec<&Verdict> = e.verdicts().collect();
    assert_eq!(vs.len(), 1);
    assert_eq!(
        vs[0].since, first_since,
        "the AZ verdict keeps the earliest since"
    );
    assert_eq!(vs[0].hosts.len(), 6);
    // Shrinks to hv-4 alone; hv-4's own condition began at 60.
    let ev = cycles(&mut e, 100, 4, &fleet(&[4]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictChanged, Scope::Az, None)],
        "{ev:#?}"
    );
    assert!(
        ev.iter().any(|x| x
            .summary
            .starts_with("de-escalated: no longer az-wide, still failing: host verdict on hv-4")),
        "{ev:#?}"
    );
    let vs: Vec<&Verdict> = e.verdicts().collect();
    assert_eq!(
        (vs.len(), vs[0].scope, vs[0].hosts.clone()),
        (1, Scope::Host, vec!["hv-4".to_owned()])
    );
    assert_eq!(vs[0].since, at(60), "the host keeps its own since");
    // hv-4 recovers. The fault has had a verdict since the host verdicts opened (the AZ verdict and hv-4's
    // took their place): held until the flap window has passed since then, then closed.
    let ev = cycles(&mut e, 140, 3, &fleet(&[]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictChanged, Scope::Host, Some("hv-4".into()))]
    );
    assert_held(&ev);
    let close_at = e.opened["host/hv-4/conntrack"]
        .duration_since(at(0))
        .unwrap()
        .as_secs()
        + 300;
    let ev = held_until(&mut e, 170, close_at, &fleet(&[]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictClosed, Scope::Host, Some("hv-4".into()))]
    );
    assert_eq!(e.verdicts().count(), 0);
}

/// Issue 10: 2 hosts' local resolvers down (2 host verdicts), then the AZ recursor dies: one AZ DNS verdict
/// folding the two, not three alerts.
#[test]
fn local_resolvers_then_the_az_recursor_is_one_az_verdict() {
    let mut e = engine();
    let fleet = |recursor_dead: bool| -> Vec<HostReport> {
        (0..8)
            .map(|i| {
                let d = if i < 2 {
                    dns(Status::Crit, "127.0.0.1:53", DnsOutcome::Refused)
                } else if recursor_dead {
                    dns(Status::Crit, "10.0.0.53:53", DnsOutcome::Servfail)
                } else {
                    dns_ok()
                };
                report(&format!("hv-{i}"), "az1", "b1", vec![d])
            })
            .collect()
    };
    let ev = cycles(&mut e, 0, 4, &fleet(false));
    assert_eq!(opened(&ev).len(), 2);
    let ev = cycles(&mut e, 40, 4, &fleet(true));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictChanged, Scope::Az, None)],
        "{ev:#?}"
    );
    let vs: Vec<&Verdict> = e.verdicts().collect();
    assert_eq!((vs.len(), vs[0].hosts.len()), (1, 8), "{vs:#?}");
    assert!(
        vs[0].summary.contains("AZ recursor or upstream"),
        "{}",
        vs[0].summary
    );
}

/// Issue 10, the power cut: an AZ goes silent (one unreachable verdict), every host comes back with a new
/// boot id (the verdict closes, one `rebooted`), three resync RAID (one AZ md-raid verdict), then the arrays
/// are in sync (the md-raid verdict closes, listing no OK host meanwhile) and one `recovered`.
#[test]
fn a_power_cut_opens_and_closes_every_verdict() {
    let mut e = engine();
    let clean = "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n";
    let resync = "md0 : active raid1 a[0] b[1]\n  100 blocks [2/2] [UU]\n  [=>..]  resync = 8.5% (8/100) finish=37.0min speed=1000K/sec\n";
    let fleet = |boot: &str, syncing: &[usize]| -> Vec<HostReport> {
        (0..8)
            .map(|i| {
                let md = if syncing.contains(&i) {
                    md_check(resync)
                } else {
                    md_check(clean)
                };
                report(&format!("hv-{i}"), "az1", boot, vec![md, dns_ok()])
            })
            .collect()
    };
    cycles(&mut e, 0, 3, &fleet("boot-1", &[]));
    // Power cut: silence.
    let mut ev = Vec::new();
    for t in (30..120).step_by(10) {
        ev.extend(e.tick(at(t)));
    }
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictOpened, Scope::Az, None)],
        "{ev:#?}"
    );
    assert!(
        e.verdicts()
            .all(|v| v.check == "reachability" && v.hosts.len() == 8)
    );
    // Power back: every host reports with a new boot id; three resync their arrays.
    let ev = cycles(&mut e, 200, 4, &fleet("boot-2", &[2, 3, 4]));
    assert_eq!(
        ev.iter().filter(|x| x.kind == EventKind::Rebooted).count(),
        1,
        "{ev:#?}"
    );
    assert_eq!(
        ev.iter().filter(|x| x.kind == EventKind::HostBack).count(),
        8
    );
    assert!(
        ev.iter()
            .any(|x| x.kind == EventKind::VerdictClosed
                && x.check.as_deref() == Some("reachability")),
        "{ev:#?}"
    );
    let md: Vec<&Verdict> = e.verdicts().filter(|v| v.check == "md-raid").collect();
    assert_eq!(md.len(), 1, "{:#?}", e.verdicts().collect::<Vec<_>>());
    assert_eq!((md[0].scope, md[0].hosts.len()), (Scope::Az, 3));
    assert_eq!(
        e.verdicts().count(),
        1,
        "reachability closed, only md-raid open"
    );
    // Two hosts finish: the verdict shrinks (never lists a host that reports OK after close-after-cycles).
    let ev = cycles(&mut e, 240, 2, &fleet("boot-2", &[4]));
    let md: Vec<&Verdict> = e.verdicts().filter(|v| v.check == "md-raid").collect();
    assert!(md.iter().all(|v| v.hosts == ["hv-4"]), "{md:#?} {ev:#?}");
    // All in sync: the AZ recovered; the md-raid verdict, younger than the flap window, is held until the
    // window has passed since it opened, then closes.
    let ev = cycles(&mut e, 300, 4, &fleet("boot-2", &[]));
    assert!(ev.iter().any(|x| x.kind == EventKind::Recovered), "{ev:#?}");
    assert!(e.zones(None).zones[0].reboot.is_none());
    // It narrowed to hv-4 first (de-escalated), keeping the time the fault's verdict opened.
    let held: Vec<&Verdict> = e.verdicts().collect();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0].key, "host/hv-4/md-raid");
    let md_opened = e.opened["host/hv-4/md-raid"];
    assert!(
        e.verdicts().all(|v| v.recovered_at.is_some()),
        "{:#?}",
        e.verdicts().collect::<Vec<_>>()
    );
    let close_at = md_opened.duration_since(at(0)).unwrap().as_secs() + 300;
    let ev = held_until(&mut e, 340, close_at, &fleet("boot-2", &[]));
    assert_eq!(
        kinds(&ev),
        [(EventKind::VerdictClosed, Scope::Host, Some("hv-4".into()))],
        "{ev:#?}"
    );
    assert_eq!(e.verdicts().count(), 0);
}

/// Issue 10: one agent announcing `interval_secs = 3600` must not hold an AZ verdict back for an hour.
#[test]
fn one_slow_agent_does_not_delay_the_az_verdict() {
    let mut e = engine();
    let fleet: Vec<HostReport> = (0..6)
        .map(|i| {
            let mut r = report(
                &format!("hv-{i}"),
                "az1",
                "b1",
                vec![conntrack(Status::Crit)],
            );
            if i == 0 {
                r.interval = Duration::from_secs(3600);
            }
            r
        })
        .collect();
    let ev = cycles(&mut e, 0, 5, &fleet);
    let o = opened(&ev);
    assert_eq!(o.len(), 1, "{ev:#?}");
    assert_eq!(o[0].scope, Scope::Az);
    assert!(o[0].at <= at(40), "opened at {:?}", o[0].at);
}

/// Issue 10: hosts of two AZs going stale together are the collector cut off, one verdict about itself;
/// while ingest sheds, silence opens nothing.
#[test]
fn several_azs_silent_at_once_is_the_collector_and_shedding_opens_nothing() {
    let mut e = engine();
    let fleet: Vec<HostReport> = ["az1", "az2", "az3"]
        .iter()
        .flat_map(|az| {
            (0..4).map(move |i| report(&format!("{az}-hv{i}"), az, "b1", vec![dns_ok()]))
        })
        .collect();
    cycles(&mut e, 0, 3, &fleet);
    // az1 and az2 go silent at once; az3 keeps reporting.
    let az3: Vec<HostReport> = fleet[8..].to_vec();
    let ev = cycles(&mut e, 30, 8, &az3);
    let o = opened(&ev);
    assert_eq!(o.len(), 1, "{ev:#?}");
    assert_eq!(o[0].scope, Scope::Collector);
    assert!(
        o[0].summary
            .starts_with("this collector lost 2 AZs at once (az1, az2): 8 hosts silent"),
        "{}",
        o[0].summary
    );
    assert_eq!(e.zones(None).collector_verdicts.len(), 1);
    // They come back: closed.
    let ev = cycles(&mut e, 120, 2, &fleet);
    assert!(
        ev.iter()
            .any(|x| x.kind == EventKind::VerdictClosed && x.scope == Scope::Collector),
        "{ev:#?}"
    );
    // Shedding: the same silence opens nothing, and the zones view says why.
    e.set_ingest_degraded(Some("shedding load".into()));
    let ev = cycles(&mut e, 200, 8, &az3);
    assert!(opened(&ev).is_empty(), "{ev:#?}");
    assert_eq!(
        e.zones(None).ingest_degraded.as_deref(),
        Some("shedding load")
    );
    e.set_ingest_degraded(None);
    let ev = cycles(&mut e, 300, 3, &az3);
    assert_eq!(
        opened(&ev).len(),
        1,
        "once ingest is healthy the silence counts: {ev:#?}"
    );
}

/// Issue 10 regression: a collector that started with an empty database held every verdict open for its
/// first 50 s (the warm-up meant for restored verdicts applied to all). Only restored verdicts wait.
#[test]
fn a_fresh_collector_closes_verdicts_at_once() {
    // stale-after-intervals = 10: the old warm-up would have held verdicts for 120 s. A short flap window
    // (30 s) so that its own hold ends well before.
    let cfg = CorrelationConfig {
        flap_window_secs: 30,
        ..CorrelationConfig::default()
    };
    let mut e = Engine::new(cfg, 10);
    e.restore(at(0), Vec::new(), Vec::new());
    let bad = [report("hv-1", "az1", "b1", vec![conntrack(Status::Crit)])];
    let ok = [report("hv-1", "az1", "b1", vec![conntrack(Status::Ok)])];
    assert_eq!(opened(&cycles(&mut e, 0, 4, &bad)).len(), 1);
    let ev = cycles(&mut e, 40, 3, &ok);
    assert!(
        ev.iter().any(|x| x.kind == EventKind::VerdictClosed),
        "{ev:#?}"
    );
}

/// The services check of a host: `units` as (name, active state); CRIT when one is not active.
fn services(units: &[(&str, &str)]) -> CheckReport {
    let units: Vec<UnitState> = units
        .iter()
        .map(|(name, state)| UnitState {
            name: (*name).into(),
            load_state: "loaded".into(),
            active_state: (*state).into(),
            sub_state: String::new(),
            result: String::new(),
            since_unix_ms: None,
            n_restarts: Some(0),
            restarts_in_window: 0,
            unit_file_state: None,
            never_started: false,
            status: if *state == "active" {
                Status::Ok
            } else {
                Status::Crit
            },
        })
        .collect();
    let down: Vec<String> = units
        .iter()
        .filter(|u| u.status != Status::Ok)
        .map(|u| format!("{} {}", u.name, u.active_state))
        .collect();
    let status = if down.is_empty() {
        Status::Ok
    } else {
        Status::Crit
    };
    check(
        CheckKind::Services,
        status,
        &down.join("; "),
        Details::Services(ServicesDetails {
            boot_settled: true,
            units,
        }),
    )
}

/// The power cut: six hosts reboot, unbound does not come back on five. One AZ verdict names the unit, the
/// recovery tracking names it per host, and neither ends before unbound is back everywhere.
#[test]
fn a_unit_that_did_not_come_back_after_an_az_reboot_is_one_verdict_and_holds_recovery() {
    let mut e = engine();
    let up = [
        ("unbound.service", "active"),
        ("libvirtd.service", "active"),
    ];
    let fleet = |boot: &str, unbound_down: &[usize]| -> Vec<HostReport> {
        (0..6)
            .map(|i| {
                let units = if unbound_down.contains(&i) {
                    services(&[
                        ("unbound.service", "failed"),
                        ("libvirtd.service", "active"),
                    ])
                } else {
                    services(&up)
                };
                report(&format!("hv-{i}"), "az1", boot, vec![units, dns_ok()])
            })
            .collect()
    };
    cycles(&mut e, 0, 3, &fleet("boot-1", &[]));
    let down = [0, 1, 2, 3, 4];
    let mut ev = cycles(&mut e, 300, 6, &fleet("boot-2", &down));
    assert_eq!(
        ev.iter().filter(|x| x.kind == EventKind::Rebooted).count(),
        1,
        "{ev:#?}"
    );
    let opened_now: Vec<&Event> = opened(&ev);
    assert_eq!(opened_now.len(), 1, "one verdict for the AZ: {ev:#?}");
    assert_eq!(opened_now[0].scope, Scope::Az);
    assert!(
        opened_now[0].summary.contains(
            "services CRIT on 5/6 hosts of az1 (AZ-wide) — unbound.service down on 5/6 hosts"
        ),
        "{}",
        opened_now[0].summary
    );
    let r = e.zones(None).zones[0]
        .reboot
        .clone()
        .expect("recovery tracked");
    assert_eq!(
        r.units_not_back,
        (0..5)
            .map(|i| format!("unbound.service on hv-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(r.dns_not_ok, 0);

    // unbound comes back on three hosts: the verdict stays (one verdict, now on 2 hosts), recovery names
    // the two left, and nothing says "recovered".
    ev = cycles(&mut e, 400, 4, &fleet("boot-2", &[3, 4]));
    assert!(ev.iter().all(|x| x.kind != EventKind::Recovered), "{ev:#?}");
    let r = e.zones(None).zones[0]
        .reboot
        .clone()
        .expect("recovery tracked");
    assert_eq!(
        r.units_not_back,
        ["unbound.service on hv-3", "unbound.service on hv-4"]
    );
    // Back everywhere: the verdict closes (once its flap window since opening has passed) and the AZ recovers.
    ev = cycles(&mut e, 500, 40, &fleet("boot-2", &[]));
    assert_eq!(
        ev.iter()
            .filter(|x| x.kind == EventKind::VerdictClosed)
            .count(),
        1,
        "{ev:#?}"
    );
    let rec: Vec<&Event> = ev
        .iter()
        .filter(|x| x.kind == EventKind::Recovered)
        .collect();
    assert_eq!(rec.len(), 1, "{ev:#?}");
    assert!(rec[0].summary.contains("units back"), "{}", rec[0].summary);
    assert!(e.zones(None).zones[0].reboot.is_none());
    assert_eq!(e.verdicts().count(), 0);
}

/// A host back after the reboot whose services check cannot see systemd yet (UNKNOWN) has not shown its
/// units are back; one that stopped reporting the check is not counted at all.
#[test]
fn units_are_back_only_when_seen_active_again() {
    let mut e = engine();
    let up = services(&[("unbound.service", "active")]);
    let before: Vec<HostReport> = (0..3)
        .map(|i| report(&format!("hv-{i}"), "az1", "b1", vec![up.clone()]))
        .collect();
    cycles(&mut e, 0, 2, &before);
    let unknown = check(
        CheckKind::Services,
        Status::Unknown,
        "cannot connect to the system bus",
        Details::None,
    );
    let after = vec![
        report("hv-0", "az1", "b2", vec![unknown]),
        report("hv-1", "az1", "b2", vec![up.clone()]),
        report("hv-2", "az1", "b2", vec![dns_ok()]),
    ];
    // The first cycle after the reboot, before any verdict could open: recovery waits for the unit.
    let ev = cycles(&mut e, 300, 1, &after);
    assert!(opened(&ev).is_empty(), "{ev:#?}");
    assert!(ev.iter().all(|x| x.kind != EventKind::Recovered), "{ev:#?}");
    let r = e.zones(None).zones[0]
        .reboot
        .clone()
        .expect("recovery tracked");
    assert_eq!(r.units_not_back, ["unbound.service on hv-0"]);

    // hv-0 reboots again before systemd ever answered: the unit it must get back is still unbound.
    let again = report("hv-0", "az1", "b3", after[0].checks.clone());
    e.observe(at(320), &again);
    let r = e.zones(None).zones[0]
        .reboot
        .clone()
        .expect("recovery tracked");
    assert_eq!(r.units_not_back, ["unbound.service on hv-0"]);
}

/// The reach check of a host: `down` lists the targets it cannot reach (with the failure class), of the
/// targets `s3` (critical) and `gw`.
fn reach_check(down: &[(&str, &str)]) -> CheckReport {
    use crate::check::reach::{ProbeKind, ReachDetails, TargetState};
    let targets: Vec<TargetState> = [("s3", true), ("gw", false)]
        .iter()
        .map(|(name, critical)| {
            let cut = down.iter().find(|(n, _)| n == name);
            TargetState {
                name: (*name).into(),
                address: if *name == "s3" {
                    "10.0.0.5".into()
                } else {
                    "10.0.0.1".into()
                },
                kind: ProbeKind::Icmp,
                critical: *critical,
                sent: 3,
                received: if cut.is_some() { 0 } else { 3 },
                window_loss_percent: 0.0,
                window_probes: 3,
                rtt_p50_ms: None,
                rtt_max_ms: None,
                reachable: cut.is_none(),
                failure: cut.map(|(_, class)| (*class).to_owned()),
                failure_detail: None,
                status: if cut.is_some() {
                    Status::Crit
                } else {
                    Status::Ok
                },
            }
        })
        .collect();
    let status = if down.is_empty() {
        Status::Ok
    } else {
        Status::Crit
    };
    check(
        CheckKind::Reach,
        status,
        "reach",
        Details::Reach(ReachDetails {
            targets,
            icmp_raw_socket: false,
        }),
    )
}

/// Two AZs of three hosts; `cut(i)` says what host i cannot reach.
fn reach_fleet(cut: impl Fn(usize) -> Vec<(&'static str, &'static str)>) -> Vec<HostReport> {
    (0..6)
        .map(|i| {
            let az = if i < 3 { "az1" } else { "az2" };
            report(&format!("hv-{i}"), az, "b1", vec![reach_check(&cut(i))])
        })
        .collect()
}

fn open_keys(e: &Engine) -> Vec<String> {
    e.verdicts()
        .filter(|v| v.recovered_at.is_none())
        .map(|v| v.key.clone())
        .collect()
}

/// One host cut -> a host verdict for that target; the AZ cut -> it escalates into one AZ verdict (changed,
/// never closed as if recovered); every AZ cut -> one target verdict; back -> closed.
#[test]
fn reach_is_judged_per_target_at_host_az_and_target_scope() {
    let mut e = engine();
    cycles(&mut e, 0, 2, &reach_fleet(|_| vec![]));
    assert!(open_keys(&e).is_empty());

    let ev = cycles(
        &mut e,
        20,
        4,
        &reach_fleet(|i| {
            if i == 0 {
                vec![("s3", "icmp.timed_out")]
            } else {
                vec![]
            }
        }),
    );
    assert_eq!(open_keys(&e), ["host/hv-0/reach:10.0.0.5"], "{ev:#?}");
    let v = e.verdicts().next().unwrap();
    assert_eq!(v.status, Status::Crit);
    assert!(
        v.summary.starts_with(
            "hv-0 cannot reach s3 (10.0.0.5): icmp.timed_out (local: 1/3 hosts of az1 probing it)"
        ),
        "{}",
        v.summary
    );

    // The whole of az1 loses s3: one AZ verdict, the host verdict folded into it.
    let ev = cycles(
        &mut e,
        60,
        4,
        &reach_fleet(|i| {
            if i < 3 {
                vec![("s3", "icmp.timed_out")]
            } else {
                vec![]
            }
        }),
    );
    assert_eq!(open_keys(&e), ["az/az1/reach:10.0.0.5"], "{ev:#?}");
    assert!(
        ev.iter().all(|x| x.kind != EventKind::VerdictClosed),
        "escalation is a change, not a recovery: {ev:#?}"
    );
    assert!(
        e.verdicts()
            .next()
            .unwrap()
            .summary
            .starts_with("az1 cannot reach s3 (10.0.0.5): 3/3 hosts, icmp.timed_out"),
        "{:#?}",
        e.verdicts().collect::<Vec<_>>()
    );

    // Every AZ loses it: the target is down.
    cycles(
        &mut e,
        100,
        4,
        &reach_fleet(|_| vec![("s3", "icmp.host_unreachable")]),
    );
    assert_eq!(open_keys(&e), ["target/10.0.0.5/reach:10.0.0.5"]);
    let v = e.verdicts().next().unwrap();
    assert_eq!(v.scope, Scope::Region);
    assert!(
        v.summary.starts_with("target s3 (10.0.0.5) down: unreachable from 6/6 hosts in every AZ probing it (az1, az2), icmp.host_unreachable"),
        "{}",
        v.summary
    );

    // A non-critical target cut on one host is WARN, and its own verdict next to the target's.
    cycles(
        &mut e,
        140,
        4,
        &reach_fleet(|i| {
            let mut d = vec![("s3", "icmp.host_unreachable")];
            if i == 4 {
                d.push(("gw", "icmp.admin_prohibited"));
            }
            d
        }),
    );
    assert_eq!(
        open_keys(&e),
        ["host/hv-4/reach:10.0.0.1", "target/10.0.0.5/reach:10.0.0.5"]
    );
    assert_eq!(
        e.verdicts()
            .find(|v| v.key == "host/hv-4/reach:10.0.0.1")
            .map(|v| v.status),
        Some(Status::Warn)
    );

    // Everything back: everything closes.
    let ev = cycles(&mut e, 180, 40, &reach_fleet(|_| vec![]));
    assert_eq!(e.verdicts().count(), 0, "{ev:#?}");
}
