//! The status page at `/`: what an operator opens when things go wrong. Server-rendered HTML, readable
//! without JavaScript, no external URL (no CDN, no font, no script), a few kilobytes, refreshed every few
//! seconds by the browser itself (`<meta http-equiv="refresh">`). Pure: the HTTP layer hands it a snapshot.
//!
//! One card per AZ (hosts, reporting, stale, worst status), the open verdicts with scope, check, hosts and
//! age, the recovery of a mass reboot (hosts back, RAID rebuilding with its ETA), and the recent timeline.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::check::Status;
use crate::fleet::{Event, VerdictView, ZonesView};
use crate::util::{fmt_duration, rfc3339};

/// Seconds between refreshes.
pub const REFRESH_SECS: u32 = 5;

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn class(s: Status) -> &'static str {
    s.as_str()
}

fn age(now: SystemTime, since: SystemTime) -> String {
    fmt_duration(now.duration_since(since).unwrap_or(Duration::ZERO))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.05em;margin:1.4em 0 .4em}\
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ccc;border-left:.5em solid #888;\
border-radius:4px;padding:.6em .9em;min-width:11em;background:#fff}\
.card.ok{border-left-color:#2a8}.card.warn{border-left-color:#e90}.card.crit{border-left-color:#d33}\
.card.unknown{border-left-color:#88a}.card b{font-size:1.1em}\
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #ddd;\
padding:.3em .5em;text-align:left;vertical-align:top}th{background:#eee}\
.st{font-weight:bold}.st.crit{color:#c22}.st.warn{color:#b60}.st.ok{color:#186}.st.unknown{color:#559}\
.banner{background:#fee;border:1px solid #d33;padding:.5em .8em;margin:.6em 0}\
.muted{color:#777}code{font-size:.95em}";

/// The page.
pub fn render(z: &ZonesView, events: &[Event], now: SystemTime) -> String {
    let mut o = String::with_capacity(8192);
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"><title>hvprobe</title><style>{STYLE}</style></head><body>\
<h1>hvprobe collector</h1><p class=\"muted\">{} — refreshes every {REFRESH_SECS} s. Missing data is <em>stale</em>, never down.</p>",
        esc(&rfc3339(now))
    );
    if let Some(why) = &z.ingest_degraded {
        let _ = write!(
            o,
            "<div class=\"banner\" id=\"ingest-degraded\">Collector ingest degraded: {} — no verdict is opened from silence meanwhile.</div>",
            esc(why)
        );
    }
    zone_cards(&mut o, z);
    verdict_table(&mut o, z, now);
    recoveries(&mut o, z, now);
    timeline(&mut o, events);
    o.push_str("</body></html>\n");
    o
}

fn zone_cards(o: &mut String, z: &ZonesView) {
    o.push_str("<h2>Availability zones</h2><div class=\"cards\" id=\"zones\">");
    if z.zones.is_empty() {
        o.push_str("<p class=\"muted\">No host has reported yet.</p>");
    }
    for zone in &z.zones {
        let _ = write!(
            o,
            "<div class=\"card {}\" data-az=\"{}\"><b>{}</b> <span class=\"st {}\">{}</span><br>{} hosts · {} reporting · {} stale<br><span class=\"muted\">{}</span></div>",
            class(zone.status),
            esc(&zone.az),
            esc(&zone.az),
            class(zone.status),
            zone.status.label(),
            zone.hosts,
            zone.reporting,
            zone.stale,
            esc(if zone.region.is_empty() {
                "-"
            } else {
                &zone.region
            }),
        );
    }
    o.push_str("</div>");
}

fn verdict_row(o: &mut String, v: &VerdictView, now: SystemTime) {
    let place = v.az.as_deref().unwrap_or(if v.region.is_empty() {
        "fleet"
    } else {
        &v.region
    });
    let hosts = if v.hosts.len() <= 6 {
        v.hosts.join(", ")
    } else {
        format!("{}, … ({} hosts)", v.hosts[..6].join(", "), v.hosts.len())
    };
    let _ = write!(
        o,
        "<tr class=\"verdict\" data-check=\"{}\" data-scope=\"{}\"><td class=\"st {}\">{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&v.check),
        v.scope.as_str(),
        class(v.status),
        v.status.label(),
        match (v.recovered_at, v.flapping) {
            (Some(_), _) => " (recovered, held)",
            (None, true) => " (flapping)",
            (None, false) => "",
        },
        v.scope.as_str(),
        esc(place),
        esc(&v.check),
        esc(&hosts),
        age(now, v.since),
        esc(&v.summary)
    );
}

fn verdict_table(o: &mut String, z: &ZonesView, now: SystemTime) {
    o.push_str("<h2>Open verdicts</h2>");
    let all: Vec<&VerdictView> = z
        .collector_verdicts
        .iter()
        .chain(&z.region_verdicts)
        .chain(z.zones.iter().flat_map(|zone| &zone.verdicts))
        .collect();
    if all.is_empty() {
        o.push_str("<p id=\"verdicts\" class=\"muted\">None: every AZ is OK.</p>");
        return;
    }
    o.push_str("<table id=\"verdicts\"><tr><th>status</th><th>scope</th><th>where</th><th>check</th><th>hosts</th><th>age</th><th>summary</th></tr>");
    for v in all {
        verdict_row(o, v, now);
    }
    o.push_str("</table>");
}

fn recoveries(o: &mut String, z: &ZonesView, now: SystemTime) {
    let tracked: Vec<_> = z
        .zones
        .iter()
        .filter_map(|zone| zone.reboot.as_ref().map(|r| (&zone.az, r)))
        .collect();
    if tracked.is_empty() {
        return;
    }
    o.push_str("<h2>Recovery after a mass reboot</h2><table id=\"recovery\"><tr><th>AZ</th><th>rebooted</th><th>back</th><th>RAID rebuilding</th><th>DNS not OK</th><th>WireGuard not OK</th><th>units not back</th><th>since</th></tr>");
    for (az, r) in tracked {
        let eta = r
            .raid_eta_secs
            .map(|s| format!(" (ETA {})", fmt_duration(Duration::from_secs(s))))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td></tr>",
            esc(az),
            r.rebooted,
            r.back,
            r.rebooted,
            r.raid_rebuilding,
            esc(&eta),
            r.dns_not_ok,
            r.wireguard_not_ok,
            esc(&r.units_not_back.join(", ")),
            age(now, r.since)
        );
    }
    o.push_str("</table>");
}

fn timeline(o: &mut String, events: &[Event]) {
    o.push_str("<h2>Recent timeline</h2>");
    if events.is_empty() {
        o.push_str("<p id=\"timeline\" class=\"muted\">No event yet.</p>");
        return;
    }
    o.push_str(
        "<table id=\"timeline\"><tr><th>time</th><th>event</th><th>where</th><th>what</th></tr>",
    );
    for e in events.iter().rev() {
        let place = [e.az.as_deref(), e.host.as_deref(), e.check.as_deref()]
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&rfc3339(e.at)),
            e.kind.as_str(),
            esc(&place),
            esc(&e.summary)
        );
    }
    o.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Scope, ZoneView};

    #[test]
    fn the_page_escapes_what_agents_send_and_names_no_external_url() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let z = ZonesView {
            zones: vec![ZoneView {
                az: "az<1>".into(),
                region: "eu".into(),
                hosts: 3,
                reporting: 2,
                stale: 1,
                status: Status::Crit,
                verdicts: vec![VerdictView {
                    scope: Scope::Az,
                    check: "dns".into(),
                    status: Status::Crit,
                    hosts: vec!["hv-1".into(), "hv-2".into()],
                    summary: "<script>alert(1)</script>".into(),
                    since: now - Duration::from_secs(120),
                    az: Some("az<1>".into()),
                    region: "eu".into(),
                    flapping: true,
                    recovered_at: None,
                }],
                reboot: None,
            }],
            region_verdicts: vec![],
            collector_verdicts: vec![],
            ingest_degraded: None,
        };
        let html = render(&z, &[], now);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("az&lt;1&gt;"));
        assert!(
            html.contains("CRIT (flapping)") && html.contains(">2m<"),
            "{html}"
        );
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
        assert!(html.len() < 16 * 1024, "small: {} bytes", html.len());
    }
}
