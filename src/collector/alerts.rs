//! Verdicts pushed to Alertmanager (API v2), which operators already run: it deduplicates across
//! collectors, routes, and holds the silences a maintenance needs.
//!
//! - Every open verdict is one alert: labels `alertname="HvprobeVerdict"`, `severity` (`critical`,
//!   `warning`), `scope`, `check`, `az`, `region`, and `host` for host verdicts; annotations `summary`,
//!   `hosts`, `since`, and `recovered_at` while it is held after recovering. Labels carry no
//!   collector-specific value, so the collectors of every AZ push identical alerts and Alertmanager keeps
//!   one.
//! - Pushed within about a second of a verdict opening, changing or closing (the pusher follows the
//!   timeline's live feed), and re-sent every `alert-resend-secs` while open with `endsAt` four resends
//!   ahead (an alert of a collector that died resolves by itself unless another collector still sends it).
//! - An alert whose labels are no longer sent (its verdict closed, or changed severity or scope) is sent
//!   resolved (`endsAt` = when it stopped) at once and for three resends more, so one lost push does not
//!   leave it firing.
//! - Never in the way of ingest: a task of its own reads the open verdicts through the query queue, posts
//!   with a deadline, and backs off per Alertmanager on failure (counted in `/metrics`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::correlate::{Event, EventKind, Verdict};
use super::state::{Handle, IngestStats};
use crate::check::Status;
use crate::hostport::HostPort;
use crate::util::rfc3339;

/// How many resends a resolved alert is repeated after the push that resolved it.
const RESOLVED_REPEATS: u32 = 3;

/// A burst of verdict events (one recomputation) is gathered this long into one push.
const GATHER: Duration = Duration::from_millis(200);

/// At most one push per this long, however fast verdicts change.
const MIN_GAP: Duration = Duration::from_secs(1);

/// Each push's deadline per Alertmanager.
const DEADLINE: Duration = Duration::from_secs(5);

/// An Alertmanager to push to: its `host:port` (a name is resolved at every push) and the path prefix it
/// is served under (`--web.route-prefix`), empty for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `10.1.0.9:9093`, `am.example:9093`, `[fd00::9]:9093`.
    pub at: HostPort,
    /// `/alertmanager`, or empty.
    pub prefix: String,
}

/// An Alertmanager from `http://host:port[/prefix]`.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url:?}: expected http://host:port[/path] (only plain HTTP is supported)")
    })?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let at = HostPort::parse(authority).map_err(|e| format!("{url:?}: {e}"))?;
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
    {
        return Err(format!("{url:?}: the path must be a plain path prefix"));
    }
    Ok(Target {
        at,
        prefix: path.trim_end_matches('/').to_owned(),
    })
}

/// One verdict as an Alertmanager alert.
pub fn alert(v: &Verdict, ends: SystemTime) -> Value {
    let severity = match v.status {
        Status::Crit => "critical",
        _ => "warning",
    };
    let mut labels = json!({
        "alertname": "HvprobeVerdict",
        "severity": severity,
        "scope": v.scope.as_str(),
        "check": v.check,
        "az": v.az.clone().unwrap_or_default(),
        "region": v.region,
    });
    if let (Some(h), Some(map)) = (&v.host, labels.as_object_mut()) {
        map.insert("host".into(), json!(h));
    }
    let mut annotations = json!({
        "summary": v.summary,
        "hosts": v.hosts.join(", "),
        "since": rfc3339(v.since),
    });
    // Held after recovering (flap window): still firing, saying since when it is OK.
    if let (Some(t), Some(map)) = (v.recovered_at, annotations.as_object_mut()) {
        map.insert("recovered_at".into(), json!(rfc3339(t)));
    }
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(v.since),
        "endsAt": rfc3339(ends),
    })
}

/// What Alertmanager tells alerts apart by: their label set.
fn fingerprint(alert: &Value) -> String {
    alert["labels"].to_string()
}

/// What is sent at each push: the open alerts and, for a while, the ones that stopped.
#[derive(Debug, Default)]
struct Outbox {
    /// Fingerprint -> the alert as last sent open.
    open: BTreeMap<String, Value>,
    /// Fingerprint -> the alert sent resolved, and until when it is repeated.
    resolved: BTreeMap<String, (Value, SystemTime)>,
}

impl Outbox {
    /// Takes the verdicts open now; returns the alerts to send.
    fn update(&mut self, verdicts: &[Verdict], now: SystemTime, resend: Duration) -> Vec<Value> {
        let ends = now + resend.saturating_mul(4);
        let open: BTreeMap<String, Value> = verdicts
            .iter()
            .map(|v| {
                let a = alert(v, ends);
                (fingerprint(&a), a)
            })
            .collect();
        let repeat_until = now + resend.saturating_mul(RESOLVED_REPEATS);
        for (fp, mut a) in std::mem::take(&mut self.open) {
            if !open.contains_key(&fp) {
                a["endsAt"] = json!(rfc3339(now));
                self.resolved.insert(fp, (a, repeat_until));
            }
        }
        self.resolved
            .retain(|fp, (_, until)| !open.contains_key(fp) && *until >= now);
        self.open = open;
        self.open
            .values()
            .cloned()
            .chain(self.resolved.values().map(|(a, _)| a.clone()))
            .collect()
    }
}

/// POSTs `body` to `<prefix>/api/v2/alerts` of `target` over plain HTTP/1.1, within `deadline`.
async fn post(target: &Target, body: &str, deadline: Duration) -> Result<(), String> {
    let name = target.at.to_string();
    let attempt = async {
        let mut last = format!("{name}: no address");
        let mut stream = None;
        for a in target.at.resolve(deadline).await? {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("connect {a}: {e}"),
            }
        }
        let mut s = stream.ok_or(last)?;
        let req = format!(
            "POST {}/api/v2/alerts HTTP/1.1\r\nHost: {name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            target.prefix,
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send to {name}: {e}"))?;
        let mut head = vec![0u8; 64];
        let n = s
            .read(&mut head)
            .await
            .map_err(|e| format!("read from {name}: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]);
        let code = line.split_whitespace().nth(1).unwrap_or("");
        if code.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "{name} answered {:?}",
                line.lines().next().unwrap_or("")
            ))
        }
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| format!("{name}: no answer within {} s", deadline.as_secs()))?
}

/// Waits for the next reason to push: a verdict event (gathered with the rest of its burst) or the resend
/// time. Returns false when the feed closed (the collector is stopping).
async fn next_push(events: &mut broadcast::Receiver<Event>, resend_at: Instant) -> bool {
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(resend_at) => return true,
            r = events.recv() => match r {
                Ok(e) if !matches!(
                    e.kind,
                    EventKind::VerdictOpened | EventKind::VerdictChanged | EventKind::VerdictClosed
                ) => continue,
                // A verdict event, or events missed: something changed.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    tokio::time::sleep(GATHER).await;
                    while !matches!(events.try_recv(), Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)) {}
                    return true;
                }
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    }
}

/// Runs the pusher until the state owner is gone.
pub async fn run(
    state: Handle,
    targets: Vec<Target>,
    resend: Duration,
    stats: Arc<IngestStats>,
    mut events: broadcast::Receiver<Event>,
) {
    let mut outbox = Outbox::default();
    let mut backoff: Vec<u32> = vec![0; targets.len()];
    let mut resend_at = Instant::now();
    let mut last_push: Option<Instant> = None;
    loop {
        if !next_push(&mut events, resend_at).await {
            return;
        }
        if let Some(t) = last_push {
            tokio::time::sleep_until(t + MIN_GAP).await;
        }
        let resend_tick = Instant::now() >= resend_at;
        last_push = Some(Instant::now());
        let Some(open) = state
            .query(|s| s.engine.verdicts().cloned().collect::<Vec<_>>())
            .await
        else {
            if state.tx.is_closed() {
                return;
            }
            continue;
        };
        let alerts = outbox.update(&open, SystemTime::now(), resend);
        if resend_tick {
            resend_at = Instant::now() + resend;
        }
        if alerts.is_empty() {
            continue;
        }
        let body = Value::Array(alerts).to_string();
        for (i, target) in targets.iter().enumerate() {
            // Skip a failing Alertmanager for 2^n pushes (at most 32), so it is not hammered.
            if backoff[i] > 0 && !tick_due(backoff[i]) {
                continue;
            }
            match post(target, &body, DEADLINE).await {
                Ok(()) => {
                    backoff[i] = 0;
                    stats.alerts_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    backoff[i] = (backoff[i] + 1).min(5);
                    stats.alerts_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(alertmanager = %target.at, error = %e, "cannot push alerts");
                }
            }
        }
    }
}

/// After `n` failures in a row, try again on one push in 2^n (random, so collectors do not align).
fn tick_due(n: u32) -> bool {
    fastrand::u32(..1u32 << n.min(5)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Scope;

    #[test]
    fn labels_are_the_same_from_every_collector() {
        let v = Verdict {
            key: "host/hv-3/dns".into(),
            scope: Scope::Host,
            region: "eu".into(),
            az: Some("az1".into()),
            host: Some("hv-3".into()),
            check: "dns".into(),
            status: Status::Crit,
            hosts: vec!["hv-3".into()],
            summary: "dns CRIT on hv-3".into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            flapping: false,
            recovered_at: None,
        };
        let a = alert(&v, SystemTime::now());
        assert_eq!(
            a["labels"],
            json!({"alertname": "HvprobeVerdict", "severity": "critical", "scope": "host", "check": "dns",
                   "az": "az1", "region": "eu", "host": "hv-3"})
        );
        assert_eq!(a["annotations"]["since"], rfc3339(v.since));
        assert_eq!(a["startsAt"], a["annotations"]["since"]);
        assert!(a["annotations"].get("recovered_at").is_none());
        let held = Verdict {
            recovered_at: Some(v.since + Duration::from_secs(30)),
            ..v.clone()
        };
        let a = alert(&held, SystemTime::now());
        assert_eq!(
            a["annotations"]["recovered_at"],
            rfc3339(v.since + Duration::from_secs(30))
        );
        assert_eq!(
            a["labels"]["severity"], "critical",
            "held: still firing as it was"
        );
    }

    fn verdict(key: &str, status: Status) -> Verdict {
        Verdict {
            key: key.into(),
            scope: Scope::Az,
            region: String::new(),
            az: Some("az1".into()),
            host: None,
            check: "dns".into(),
            status,
            hosts: vec!["hv-1".into(), "hv-2".into(), "hv-3".into()],
            summary: "az1: dns".into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            flapping: false,
            recovered_at: None,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_100 + secs)
    }

    #[test]
    fn a_closed_verdict_is_sent_resolved_for_three_resends_then_dropped() {
        let mut o = Outbox::default();
        let resend = Duration::from_secs(60);
        let v = verdict("az/az1/dns", Status::Crit);
        let sent = o.update(std::slice::from_ref(&v), at(0), resend);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["endsAt"], json!(rfc3339(at(240))));
        let sent = o.update(&[], at(5), resend);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0]["endsAt"],
            json!(rfc3339(at(5))),
            "resolved when it closed"
        );
        assert_eq!(sent[0]["labels"]["az"], "az1");
        // Repeated with the same end for three resends, then no longer sent.
        let sent = o.update(&[], at(185), resend);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["endsAt"], json!(rfc3339(at(5))));
        assert!(o.update(&[], at(186), resend).is_empty());
    }

    #[test]
    fn a_severity_change_resolves_the_old_label_set_at_once() {
        let mut o = Outbox::default();
        let resend = Duration::from_secs(60);
        o.update(&[verdict("az/az1/dns", Status::Warn)], at(0), resend);
        let sent = o.update(&[verdict("az/az1/dns", Status::Crit)], at(10), resend);
        let by_severity = |s: &str| {
            sent.iter()
                .find(|a| a["labels"]["severity"] == s)
                .cloned()
                .unwrap_or_else(|| panic!("no {s} alert in {sent:?}"))
        };
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(by_severity("warning")["endsAt"], json!(rfc3339(at(10))));
        assert_eq!(by_severity("critical")["endsAt"], json!(rfc3339(at(250))));
        // Back to warning: the warning alert fires again and is no longer sent resolved.
        let sent = o.update(&[verdict("az/az1/dns", Status::Warn)], at(20), resend);
        let warning: Vec<&Value> = sent
            .iter()
            .filter(|a| a["labels"]["severity"] == "warning")
            .collect();
        assert_eq!(warning.len(), 1, "{sent:?}");
        assert_eq!(warning[0]["endsAt"], json!(rfc3339(at(260))));
    }

    #[test]
    fn targets_take_names_addresses_and_a_path_prefix() {
        let t = |u: &str| parse_target(u);
        assert_eq!(
            t("http://127.0.0.1:9093/").unwrap(),
            Target {
                at: HostPort::Addr("127.0.0.1:9093".parse().unwrap()),
                prefix: String::new()
            }
        );
        let named = t("http://am-1.example:9093/alertmanager/").unwrap();
        assert_eq!(named.at, HostPort::Name("am-1.example".into(), 9093));
        assert_eq!(named.prefix, "/alertmanager");
        for (bad, why) in [
            ("https://am:9093", "only plain HTTP"),
            ("http://am", "expected host:port"),
            ("http://a m:9093", "neither"),
            ("http://am:9093/x?y=1", "plain path"),
        ] {
            let e = t(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
