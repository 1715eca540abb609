//! Rendering of the collector's views for `hvprobe status` (a table) and `hvprobe timeline` (the Markdown
//! table operators used to write by hand in their postmortems). Pure.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::check::Status;
use crate::fleet::{Event, Scope, VerdictView, ZonesView};
use crate::util::{fmt_duration, rfc3339};

/// Worst status of the view; drives `hvprobe status`'s exit code. A verdict held after recovering (within
/// its flap window) is listed but fails nothing now, as in the AZs' own status.
pub fn worst(z: &ZonesView) -> Status {
    let failing = |v: &VerdictView| v.recovered_at.is_none().then_some(v.status);
    Status::worst_of(
        z.zones
            .iter()
            .map(|z| z.status)
            .chain(z.region_verdicts.iter().filter_map(failing))
            .chain(z.collector_verdicts.iter().filter_map(failing)),
    )
    .unwrap_or(Status::Ok)
}

/// `hvprobe status` exit code: 0 OK, 1 WARN or UNKNOWN, 2 CRIT.
pub fn status_exit_code(z: &ZonesView) -> i32 {
    match worst(z) {
        Status::Ok => 0,
        Status::Warn | Status::Unknown => 1,
        Status::Crit => 2,
    }
}

fn age(now: SystemTime, since: SystemTime) -> String {
    fmt_duration(now.duration_since(since).unwrap_or(Duration::ZERO))
}

fn verdict_line(out: &mut String, v: &VerdictView, now: SystemTime) {
    let hosts = match v.hosts.len() {
        1 => "1 host".to_owned(),
        n => format!("{n} hosts"),
    };
    let _ = writeln!(
        out,
        "  {:<7} {:<6} {:<12} {:>9}  {:>6}  {}{}",
        v.status.label(),
        v.scope.as_str(),
        v.check,
        hosts,
        age(now, v.since),
        match (v.recovered_at, v.flapping) {
            (Some(_), _) => "[recovered, held] ",
            (None, true) => "[flapping] ",
            (None, false) => "",
        },
        v.summary
    );
}

/// The zones as a table, each open verdict under its AZ.
pub fn status_table(z: &ZonesView, now: SystemTime) -> String {
    let mut out = String::new();
    let azw = z
        .zones
        .iter()
        .map(|z| z.az.len())
        .chain([2])
        .max()
        .unwrap_or(2);
    let rw = z
        .zones
        .iter()
        .map(|z| z.region.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let _ = writeln!(
        out,
        "{:<azw$}  {:<rw$}  {:>5}  {:>9}  {:>5}  STATUS",
        "AZ", "REGION", "HOSTS", "REPORTING", "STALE"
    );
    for zone in &z.zones {
        let _ = writeln!(
            out,
            "{:<azw$}  {:<rw$}  {:>5}  {:>9}  {:>5}  {}",
            zone.az,
            if zone.region.is_empty() {
                "-"
            } else {
                &zone.region
            },
            zone.hosts,
            zone.reporting,
            zone.stale,
            zone.status.label()
        );
        for v in &zone.verdicts {
            verdict_line(&mut out, v, now);
        }
        if let Some(r) = &zone.reboot {
            let eta = r
                .raid_eta_secs
                .map(|s| format!(" (ETA {})", fmt_duration(Duration::from_secs(s))))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  REBOOT  {} hosts rebooted {} ago: {} back, {} rebuilding RAID{eta}, DNS not OK on {}, WireGuard not OK on {}",
                r.rebooted,
                age(now, r.since),
                r.back,
                r.raid_rebuilding,
                r.dns_not_ok,
                r.wireguard_not_ok
            );
            if !r.units_not_back.is_empty() {
                let _ = writeln!(
                    out,
                    "          not back since the reboot: {}",
                    r.units_not_back.join(", ")
                );
            }
        }
    }
    if !z.region_verdicts.is_empty() {
        let _ = writeln!(out, "region verdicts:");
        for v in &z.region_verdicts {
            verdict_line(&mut out, v, now);
        }
    }
    if !z.collector_verdicts.is_empty() {
        let _ = writeln!(out, "collector verdicts:");
        for v in &z.collector_verdicts {
            verdict_line(&mut out, v, now);
        }
    }
    if let Some(why) = &z.ingest_degraded {
        let _ = writeln!(
            out,
            "collector ingest degraded: {why} (no verdict is opened from silence meanwhile)"
        );
    }
    if z.zones.is_empty() {
        let _ = writeln!(out, "(no hosts known yet)");
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The component an event is about: `host/check`, `az/check`, `region/check`.
fn component(e: &Event) -> String {
    let place = match e.scope {
        Scope::Host => e.host.clone().or_else(|| e.az.clone()),
        Scope::Az => e.az.clone(),
        Scope::Region => e.region.clone().or(Some("fleet".into())),
        Scope::Collector => Some("collector".into()),
    }
    .unwrap_or_else(|| "-".into());
    match &e.check {
        Some(c) => format!("{place}/{c}"),
        None => place,
    }
}

/// The timeline as a Markdown table: `| time | scope | component | what |`.
pub fn timeline_markdown(events: &[Event]) -> String {
    let mut out = String::from("| time | scope | component | what |\n|---|---|---|---|\n");
    for e in events {
        let status = match (&e.old_status, &e.new_status) {
            (Some(a), Some(b)) => format!(" ({a} -> {b})"),
            (None, Some(b)) => format!(" ({b})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{}: {} |",
            rfc3339(e.at),
            e.scope.as_str(),
            cell(&component(e)),
            e.kind.as_str().replace('-', " "),
            status,
            cell(&e.summary)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{EventKind, Recovery, ZoneView};
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s)
    }

    #[test]
    fn status_table_and_exit_code() {
        let v = VerdictView {
            scope: Scope::Az,
            check: "dns".into(),
            status: Status::Crit,
            hosts: vec!["a".into(), "b".into(), "c".into()],
            summary: "dns CRIT on 3/3 hosts of az1 (AZ-wide)".into(),
            since: t(0),
            az: Some("az1".into()),
            region: "eu".into(),
            flapping: false,
            recovered_at: None,
        };
        let z = ZonesView {
            zones: vec![ZoneView {
                az: "az1".into(),
                region: "eu".into(),
                hosts: 3,
                reporting: 3,
                stale: 0,
                status: Status::Crit,
                verdicts: vec![v],
                reboot: Some(Recovery {
                    since: t(0),
                    rebooted: 3,
                    back: 2,
                    raid_rebuilding: 1,
                    raid_eta_secs: Some(2220),
                    dns_not_ok: 3,
                    wireguard_not_ok: 0,
                    units_not_back: vec!["unbound.service on hv-2".into()],
                }),
            }],
            region_verdicts: vec![],
            collector_verdicts: vec![],
            ingest_degraded: None,
        };
        let text = status_table(&z, t(720));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "AZ   REGION  HOSTS  REPORTING  STALE  STATUS");
        assert_eq!(lines[1], "az1  eu          3          3      0  CRIT");
        assert!(
            lines[2].starts_with("  CRIT    az     dns            3 hosts     12m  dns CRIT"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("3 hosts rebooted 12m ago: 2 back, 1 rebuilding RAID (ETA 37m)"),
            "{}",
            lines[3]
        );
        assert_eq!(status_exit_code(&z), 2);
        assert_eq!(
            status_exit_code(&ZonesView {
                zones: vec![],
                region_verdicts: vec![],
                collector_verdicts: vec![],
                ingest_degraded: None,
            }),
            0
        );
        // A region verdict held after recovering is shown as such and fails nothing now.
        let mut held = z.zones[0].verdicts[0].clone();
        held.scope = Scope::Region;
        held.recovered_at = Some(t(700));
        let z = ZonesView {
            zones: vec![],
            region_verdicts: vec![held],
            collector_verdicts: vec![],
            ingest_degraded: None,
        };
        assert!(
            status_table(&z, t(720)).contains("[recovered, held] dns CRIT"),
            "{}",
            status_table(&z, t(720))
        );
        assert_eq!(status_exit_code(&z), 0);
    }

    #[test]
    fn timeline_is_a_markdown_table() {
        let e = Event {
            id: 1,
            at: t(0),
            kind: EventKind::VerdictOpened,
            scope: Scope::Host,
            region: None,
            az: Some("az1".into()),
            host: Some("hv-3".into()),
            check: Some("dns".into()),
            old_status: None,
            new_status: Some("crit".into()),
            summary: "a | b".into(),
        };
        let md = timeline_markdown(&[e]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| time | scope | component | what |");
        assert_eq!(
            lines[2],
            "| 2026-11-18T11:06:40Z | host | hv-3/dns | verdict opened (crit): a \\| b |"
        );
    }
}
