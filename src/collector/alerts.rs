//! Verdicts pushed to Alertmanager (API v2), which operators already run: it deduplicates across
//! collectors, routes, and holds the silences a maintenance needs.
//!
//! - Every open verdict is one alert: labels `alertname="HvprobeVerdict"`, `severity` (`critical`,
//!   `warning`), `scope`, `check`, `az`, `region`, and `host` for host verdicts; annotations `summary`,
//!   `hosts`, `since`. Labels carry no collector-specific value, so the collectors of every AZ push
//!   identical alerts and Alertmanager keeps one.
//! - Re-sent every `alert-resend-secs` while open, with `endsAt` four resends ahead (an alert of a collector
//!   that died resolves by itself unless another collector still sends it); sent with `endsAt` = now when
//!   the verdict closes, and for a few more resends, so one lost push does not leave it firing.
//! - Never in the way of ingest: a task of its own reads the open verdicts through the query queue, posts
//!   with a deadline, and backs off per Alertmanager on failure (counted in `/metrics`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::correlate::Verdict;
use super::state::{Handle, IngestStats};
use crate::check::Status;
use crate::util::rfc3339;

/// How many resends a resolved alert is repeated.
const RESOLVED_REPEATS: u32 = 3;

/// An Alertmanager's `host:port`, from `http://host:port[/]`.
pub fn parse_target(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: expected http://ip:port"))?
        .trim_end_matches('/');
    rest.parse()
        .map_err(|e| format!("{url:?}: {e} (an ip:port address)"))
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
    json!({
        "labels": labels,
        "annotations": {
            "summary": v.summary,
            "hosts": v.hosts.join(", "),
            "since": rfc3339(v.since),
        },
        "startsAt": rfc3339(v.since),
        "endsAt": rfc3339(ends),
    })
}

/// POSTs `body` to `/api/v2/alerts` of `addr` over plain HTTP/1.1, within `deadline`.
async fn post(addr: SocketAddr, body: &str, deadline: Duration) -> Result<(), String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "POST /api/v2/alerts HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut head = vec![0u8; 64];
        let n = s
            .read(&mut head)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]);
        let code = line.split_whitespace().nth(1).unwrap_or("");
        if code.starts_with('2') {
            Ok(())
        } else {
            Err(format!(
                "{addr} answered {:?}",
                line.lines().next().unwrap_or("")
            ))
        }
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| format!("{addr}: no answer within {} s", deadline.as_secs()))?
}

/// Runs the pusher until the state owner is gone.
pub async fn run(
    state: Handle,
    targets: Vec<SocketAddr>,
    resend: Duration,
    stats: Arc<IngestStats>,
) {
    // Closed verdicts still to be sent as resolved, with how many times left.
    let mut resolved: BTreeMap<String, (Verdict, u32)> = BTreeMap::new();
    let mut open: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut backoff: Vec<u32> = vec![0; targets.len()];
    let mut tick = tokio::time::interval(resend);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(now_open) = state
            .query(|s| {
                s.engine
                    .verdicts()
                    .map(|v| (v.key.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            })
            .await
        else {
            if state.tx.is_closed() {
                return;
            }
            continue;
        };
        for (k, v) in std::mem::take(&mut open) {
            if !now_open.contains_key(&k) {
                resolved.insert(k, (v, RESOLVED_REPEATS));
            }
        }
        open = now_open;
        let now = SystemTime::now();
        let ends = now + resend.saturating_mul(4);
        let mut alerts: Vec<Value> = open.values().map(|v| alert(v, ends)).collect();
        alerts.extend(resolved.values().map(|(v, _)| alert(v, now)));
        resolved.retain(|_, (_, left)| {
            *left -= 1;
            *left > 0
        });
        if alerts.is_empty() {
            continue;
        }
        let body = Value::Array(alerts).to_string();
        for (i, addr) in targets.iter().enumerate() {
            // Skip a failing Alertmanager for 2^n resends (at most 32), so it is not hammered.
            if backoff[i] > 0 && !tick_due(backoff[i]) {
                continue;
            }
            match post(*addr, &body, Duration::from_secs(5)).await {
                Ok(()) => {
                    backoff[i] = 0;
                    stats.alerts_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    backoff[i] = (backoff[i] + 1).min(5);
                    stats.alerts_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(alertmanager = %addr, error = %e, "cannot push alerts");
                }
            }
        }
    }
}

/// After `n` failures in a row, try again on one resend in 2^n (random, so collectors do not align).
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
        };
        let a = alert(&v, SystemTime::now());
        assert_eq!(
            a["labels"],
            json!({"alertname": "HvprobeVerdict", "severity": "critical", "scope": "host", "check": "dns",
                   "az": "az1", "region": "eu", "host": "hv-3"})
        );
        assert_eq!(a["annotations"]["since"], rfc3339(v.since));
        assert_eq!(a["startsAt"], a["annotations"]["since"]);
        assert!(parse_target("http://127.0.0.1:9093/").is_ok());
        assert!(parse_target("https://am:9093").is_err());
    }
}
