//! The I/O: one D-Bus connection kept across cycles; per cycle one `ListUnitsByNames` and a few property
//! reads per unit, sequential (systemd answers one caller at a time; a burst of parallel calls from every
//! agent would only queue there while PID 1 is busiest, during boot).
//!
//! Per unit and cycle: `InvocationID` and, for a service, `NRestarts` (restart loops); when it is not
//! active also `StateChangeTimestamp` and the service's `Result`; when inactive the activation timestamps,
//! and for one that never started its `UnitFileState`, cached for `unit-file-state-cache-secs` because
//! systemd reads the unit files from disk to answer it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::bus::{SERVICE, Systemd, UNIT, describe_bus};
use super::{Observation, ServicesConfig, UnitState, evaluate};
use crate::check::{
    BoxFuture, Check, CheckKind, Context, Failure, Outcome, Status, UnknownReason,
};
use crate::util::fmt_duration;

/// Most restarts remembered per unit (more than any sane `warn-restarts`).
const MAX_RESTARTS: usize = 256;

/// What is remembered of a unit between cycles.
#[derive(Debug, Default)]
struct History {
    invocation: Vec<u8>,
    n_restarts: Option<u32>,
    restarts: VecDeque<Instant>,
    file_state: Option<(Instant, String)>,
}

/// The `services` check: the connection and each unit's history.
pub struct ServicesCheck {
    cfg: ServicesConfig,
    names: Vec<String>,
    bus: Option<Systemd>,
    settled: bool,
    history: HashMap<String, History>,
}

impl ServicesCheck {
    /// A check with nothing remembered and no connection yet.
    pub fn new(cfg: ServicesConfig) -> Self {
        ServicesCheck {
            names: cfg.unit_names(),
            cfg,
            bus: None,
            settled: false,
            history: HashMap::new(),
        }
    }

    async fn observe(&mut self) -> Result<Observation, Failure> {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        if self.bus.is_none() {
            self.bus = Some(Systemd::connect(&self.cfg.bus, timeout).await?);
        }
        let Some(bus) = self.bus.as_ref() else {
            return Err(Failure::new(
                UnknownReason::Error,
                "no bus connection",
            ));
        };
        let listed = bus.list_units_by_names(&self.names).await?;
        if !self.settled {
            let finished = bus.manager_u64("FinishTimestampMonotonic").await?;
            let uptime = sysinfo::System::uptime().unwrap_or(0);
            self.settled =
                finished != 0 || uptime >= self.cfg.boot_settle_minutes.saturating_mul(60);
        }
        let now = Instant::now();
        let window = Duration::from_secs(self.cfg.restart_window_secs);
        let cache_for = Duration::from_secs(self.cfg.unit_file_state_cache_secs);
        let mut units = Vec::with_capacity(listed.len());
        for l in listed {
            let mut u = UnitState {
                name: l.name,
                load_state: l.load_state,
                active_state: l.active_state,
                sub_state: l.sub_state,
                result: String::new(),
                since_unix_ms: None,
                n_restarts: None,
                restarts_in_window: 0,
                unit_file_state: None,
                never_started: false,
                status: Status::Unknown,
            };
            let h = self.history.entry(u.name.clone()).or_default();
            if u.load_state != "loaded" {
                units.push(u);
                continue;
            }
            let service = u.name.ends_with(".service");
            let invocation = bus.get_bytes(&l.path, UNIT, "InvocationID").await?;
            if service {
                u.n_restarts = Some(bus.get_u32(&l.path, SERVICE, "NRestarts").await?);
            }
            if u.active_state != "active" {
                let us = bus.get_u64(&l.path, UNIT, "StateChangeTimestamp").await?;
                u.since_unix_ms = (us > 0).then_some(us / 1000);
                if service {
                    u.result = bus.get_string(&l.path, SERVICE, "Result").await?;
                }
            }
            if u.active_state == "inactive" {
                let entered = bus
                    .get_u64(&l.path, UNIT, "ActiveEnterTimestampMonotonic")
                    .await?;
                let left = bus
                    .get_u64(&l.path, UNIT, "InactiveExitTimestampMonotonic")
                    .await?;
                u.never_started = entered == 0 && left == 0;
            }
            if u.never_started {
                let fresh = h
                    .file_state
                    .as_ref()
                    .filter(|(at, _)| now.duration_since(*at) < cache_for);
                let state = match fresh {
                    Some((_, s)) => s.clone(),
                    None => {
                        let s = bus.get_string(&l.path, UNIT, "UnitFileState").await?;
                        h.file_state = Some((now, s.clone()));
                        s
                    }
                };
                u.unit_file_state = Some(state);
            }
            // A restart: systemd counted more automatic ones, or the unit runs under a new invocation.
            let counted = match (h.n_restarts, u.n_restarts) {
                (Some(before), Some(after)) => after.saturating_sub(before),
                _ => 0,
            };
            let new_invocation =
                !h.invocation.is_empty() && !invocation.is_empty() && h.invocation != invocation;
            let restarts = counted.max(u32::from(new_invocation));
            for _ in 0..restarts.min(MAX_RESTARTS as u32) {
                if h.restarts.len() == MAX_RESTARTS {
                    h.restarts.pop_front();
                }
                h.restarts.push_back(now);
            }
            while h
                .restarts
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                h.restarts.pop_front();
            }
            if !invocation.is_empty() {
                h.invocation = invocation;
            }
            h.n_restarts = u.n_restarts.or(h.n_restarts);
            u.restarts_in_window = h.restarts.len() as u32;
            units.push(u);
        }
        let now_unix_ms = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(Observation {
            now_unix_ms,
            boot_settled: self.settled,
            units,
        })
    }
}

impl Check for ServicesCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Services
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, _ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            // Inside the runner's deadline, so a wedged bus is dropped here rather than kept.
            let deadline = self.timeout().mul_f64(0.9);
            let observed = match tokio::time::timeout(deadline, self.observe()).await {
                Ok(r) => r,
                Err(_) => Err(Failure::new(
                    UnknownReason::TimedOut,
                    format!(
                        "no answer from systemd on {} within {}",
                        describe_bus(&self.cfg.bus),
                        fmt_duration(deadline)
                    ),
                )),
            };
            match observed {
                Ok(o) => evaluate(&o, &self.cfg),
                Err(f) => {
                    // The next cycle connects afresh: the bus may have restarted, or the call wedged.
                    self.bus = None;
                    f.into()
                }
            }
        })
    }
}
