//! The verdict on what systemd said, pure: table-tested against every state.
//!
//! Per unit, worst first:
//! - CRIT: `not-found`, a load error (`bad-setting`, `error`), `masked`, `failed`, or enabled but never
//!   started this boot once the boot has settled;
//! - CRIT / WARN: `activating` or `deactivating` for `crit-activating-secs` / `warn-activating-secs`;
//! - WARN: `warn-restarts` restarts within `restart-window-secs` (a restart loop), waiting to be restarted
//!   after a failure (`auto-restart`: all one run can see of a loop), or stopped (`inactive` after having
//!   run: a listed unit is meant to run);
//! - OK: `active` or `reloading`; an enabled unit not started yet while the boot settles.

use std::time::Duration;

use super::{ServicesConfig, ServicesDetails, UnitState};
use crate::check::{Details, Findings, Outcome, Status};
use crate::util::fmt_duration;

/// What one run observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Wall clock of the observation, Unix milliseconds.
    pub now_unix_ms: u64,
    /// Boot finished, or uptime past the settle time.
    pub boot_settled: bool,
    /// The units in configured order (their `status` is set here).
    pub units: Vec<UnitState>,
}

/// `since 16:03:04Z (5m ago)` for a state entered at `since_ms`, or nothing when unknown.
fn since(u: &UnitState, now_ms: u64) -> String {
    let Some(ms) = u.since_unix_ms.filter(|ms| *ms > 0) else {
        return String::new();
    };
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    let ago = Duration::from_secs(now_ms.saturating_sub(ms) / 1000);
    format!(
        " since {} ({} ago)",
        humantime::format_rfc3339_seconds(at),
        fmt_duration(ago)
    )
}

/// `, result exit-code, 4 restarts` — what systemd knows of how it ended.
fn how(u: &UnitState) -> String {
    let mut s = String::new();
    if !u.result.is_empty() && u.result != "success" {
        s.push_str(&format!(", result {}", u.result));
    }
    if let Some(n) = u.n_restarts.filter(|n| *n > 0) {
        s.push_str(&format!(", {n} restarts"));
    }
    s
}

/// One unit's status and, when not OK (or waiting), why.
fn judge(u: &UnitState, o: &Observation, cfg: &ServicesConfig) -> (Status, Option<String>) {
    let name = &u.name;
    let now = o.now_unix_ms;
    match u.load_state.as_str() {
        "not-found" => return (Status::Crit, Some(format!("{name} not found"))),
        "masked" => return (Status::Crit, Some(format!("{name} masked"))),
        "bad-setting" | "error" => {
            return (
                Status::Crit,
                Some(format!("{name} load error ({})", u.load_state)),
            );
        }
        _ => {}
    }
    let state = if u.sub_state == u.active_state || u.sub_state.is_empty() {
        u.active_state.clone()
    } else {
        format!("{} ({})", u.active_state, u.sub_state)
    };
    let loop_why = (u.restarts_in_window >= cfg.warn_restarts).then(|| {
        format!(
            "{name} restart loop: {} restarts in {}",
            u.restarts_in_window,
            fmt_duration(Duration::from_secs(cfg.restart_window_secs))
        )
    });
    match u.active_state.as_str() {
        "failed" => (
            Status::Crit,
            Some(format!("{name} {state}{}{}", since(u, now), how(u))),
        ),
        "activating" | "deactivating" => {
            let for_secs = u
                .since_unix_ms
                .filter(|ms| *ms > 0)
                .map(|ms| now.saturating_sub(ms) / 1000);
            let status = match for_secs {
                Some(s) if s >= cfg.crit_activating_secs => Status::Crit,
                Some(s) if s >= cfg.warn_activating_secs => Status::Warn,
                _ if loop_why.is_some() || u.sub_state == "auto-restart" => Status::Warn,
                _ => Status::Ok,
            };
            let why = match (status, loop_why) {
                (Status::Ok, _) => None,
                (_, Some(l)) if for_secs.unwrap_or(0) < cfg.warn_activating_secs => {
                    Some(format!("{l}, now {state}{}", how(u)))
                }
                _ => Some(format!("{name} {state}{}{}", since(u, now), how(u))),
            };
            (status, why)
        }
        "inactive" if u.never_started => {
            let enabled = u
                .unit_file_state
                .as_deref()
                .is_some_and(|s| s.starts_with("enabled"));
            match (enabled, o.boot_settled) {
                (true, true) => (
                    Status::Crit,
                    Some(format!("{name} enabled but never started this boot")),
                ),
                (true, false) => (
                    Status::Ok,
                    Some(format!("{name} not started yet (boot still settling)")),
                ),
                (false, _) => (
                    Status::Warn,
                    Some(format!(
                        "{name} inactive, never started ({})",
                        u.unit_file_state.as_deref().unwrap_or("unit file state unknown")
                    )),
                ),
            }
        }
        "inactive" => (
            Status::Warn,
            Some(format!("{name} {state}{}{}", since(u, now), how(u))),
        ),
        // active, reloading, refreshing, maintenance: up.
        _ => match loop_why {
            Some(l) => (Status::Warn, Some(format!("{l}, now {state}{}", how(u)))),
            None => (Status::Ok, None),
        },
    }
}

/// The verdict: the worst unit's, its reason first; then how many are up.
pub fn evaluate(o: &Observation, cfg: &ServicesConfig) -> Outcome {
    let mut units = o.units.clone();
    let mut reasons: Vec<(Status, String)> = Vec::new();
    for u in &mut units {
        let (status, why) = judge(u, o, cfg);
        u.status = status;
        if let Some(w) = why {
            reasons.push((status, w));
        }
    }
    // Worst first; units of equal status stay in configured order.
    reasons.sort_by_key(|(s, _)| std::cmp::Reverse(s.severity()));
    let mut f = Findings::default();
    for (s, w) in reasons {
        f.flag(s, w);
    }
    let up = units.iter().filter(|u| u.is_up()).count();
    let figures = if up == units.len() {
        format!("all {up} units active")
    } else {
        format!("{up}/{} units active", units.len())
    };
    let (status, summary) = f.summary(figures);
    Outcome::new(
        status,
        summary,
        Details::Services(ServicesDetails {
            boot_settled: o.boot_settled,
            units,
        }),
    )
}
