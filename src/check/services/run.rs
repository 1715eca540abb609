//! The I/O: one D-Bus connection kept across cycles; per cycle one `ListUnitsByNames` and a few property
//! reads per unit.
//!
//! Per unit and cycle: `InvocationID` and, for a service, `NRestarts` (restart loops); when it is not
//! active also `StateChangeTimestamp` and the service's `Result`; when inactive the activation timestamps,
//! and for one that never started its `UnitFileState`, cached for `unit-file-state-cache-secs` because
//! systemd reads the unit files from disk to answer it. The property reads of a cycle go out as one batch:
//! a cycle is two round trips to systemd (three when a unit file state is due), whatever the unit count.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use zbus::zvariant::OwnedValue;

use super::bus::{MANAGER, MANAGER_PATH, Prop, SERVICE, Systemd, UNIT, describe_bus};
use super::{Observation, ServicesConfig, UnitState, evaluate};
use crate::check::{
    BoxFuture, Check, CheckKind, Context, Failure, Outcome, Status, UnknownReason,
};
use crate::util::fmt_duration;

/// Most restarts remembered per unit (more than any sane `warn-restarts`).
const MAX_RESTARTS: usize = 256;

/// The interface a property belongs to: the service's own (`NRestarts`, `Result`) or every unit's.
fn iface_of(name: &str) -> &'static str {
    match name {
        "NRestarts" | "Result" => SERVICE,
        _ => UNIT,
    }
}

/// A property's value as the type systemd documents for it.
fn value<T>(v: OwnedValue, what: impl FnOnce() -> String) -> Result<T, Failure>
where
    T: TryFrom<OwnedValue>,
    T::Error: std::fmt::Display,
{
    T::try_from(v).map_err(|e| {
        Failure::new(
            UnknownReason::Malformed,
            format!("{}: unexpected type: {e}", what()),
        )
    })
}

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
        let now = Instant::now();
        let window = Duration::from_secs(self.cfg.restart_window_secs);
        let cache_for = Duration::from_secs(self.cfg.unit_file_state_cache_secs);

        // Which properties each loaded unit needs this cycle, all read in one batch; until the boot has
        // settled, the manager's FinishTimestampMonotonic (0 while systemd is still starting) first.
        let mut props: Vec<Prop<'_>> = Vec::new();
        if !self.settled {
            props.push(Prop {
                path: MANAGER_PATH,
                iface: MANAGER,
                name: "FinishTimestampMonotonic",
            });
        }
        let mut wants: Vec<Vec<&'static str>> = Vec::with_capacity(listed.len());
        for l in &listed {
            let mut w: Vec<&'static str> = Vec::new();
            if l.load_state == "loaded" {
                let service = l.name.ends_with(".service");
                w.push("InvocationID");
                if service {
                    w.push("NRestarts");
                }
                if l.active_state != "active" {
                    w.push("StateChangeTimestamp");
                    if service {
                        w.push("Result");
                    }
                }
                if l.active_state == "inactive" {
                    w.push("ActiveEnterTimestampMonotonic");
                    w.push("InactiveExitTimestampMonotonic");
                }
            }
            props.extend(w.iter().map(|name| Prop {
                path: &l.path,
                iface: iface_of(name),
                name,
            }));
            wants.push(w);
        }
        let mut values = bus.get_many(&props).await?.into_iter();
        let missing =
            || Failure::new(UnknownReason::Error, "systemd Properties.Get: a reply is missing");
        if !self.settled {
            let finished: u64 = value(values.next().ok_or_else(missing)?, || {
                "systemd Manager.FinishTimestampMonotonic".into()
            })?;
            let uptime = sysinfo::System::uptime().unwrap_or(0);
            self.settled =
                finished != 0 || uptime >= self.cfg.boot_settle_minutes.saturating_mul(60);
        }

        let mut units = Vec::with_capacity(listed.len());
        let mut need_file_state = Vec::new();
        for (l, w) in listed.iter().zip(&wants) {
            let mut u = UnitState {
                name: l.name.clone(),
                load_state: l.load_state.clone(),
                active_state: l.active_state.clone(),
                sub_state: l.sub_state.clone(),
                result: String::new(),
                since_unix_ms: None,
                n_restarts: None,
                restarts_in_window: 0,
                unit_file_state: None,
                never_started: false,
                status: Status::Unknown,
            };
            let mut invocation = Vec::new();
            let (mut entered, mut left) = (None, None);
            for name in w {
                let v = values.next().ok_or_else(missing)?;
                let what = || format!("systemd {name} of {}", l.name);
                match *name {
                    "InvocationID" => invocation = value(v, what)?,
                    "NRestarts" => u.n_restarts = Some(value(v, what)?),
                    "StateChangeTimestamp" => {
                        let us: u64 = value(v, what)?;
                        u.since_unix_ms = (us > 0).then_some(us / 1000);
                    }
                    "Result" => u.result = value(v, what)?,
                    "ActiveEnterTimestampMonotonic" => entered = Some(value::<u64>(v, what)?),
                    _ => left = Some(value::<u64>(v, what)?),
                }
            }
            u.never_started = entered == Some(0) && left == Some(0);
            let h = self.history.entry(u.name.clone()).or_default();
            if u.never_started {
                match h.file_state.as_ref().filter(|(at, _)| now.duration_since(*at) < cache_for) {
                    Some((_, state)) => u.unit_file_state = Some(state.clone()),
                    None => need_file_state.push(units.len()),
                }
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

        // UnitFileState only for units that never started, and cached: systemd reads the unit files from
        // disk to answer it.
        if !need_file_state.is_empty() {
            let props: Vec<Prop<'_>> = need_file_state
                .iter()
                .map(|i| Prop {
                    path: &listed[*i].path,
                    iface: UNIT,
                    name: "UnitFileState",
                })
                .collect();
            let states = bus.get_many(&props).await?;
            for (i, v) in need_file_state.iter().zip(states) {
                let u = &mut units[*i];
                let state: String = value(v, || format!("systemd UnitFileState of {}", u.name))?;
                if let Some(h) = self.history.get_mut(&u.name) {
                    h.file_state = Some((now, state.clone()));
                }
                u.unit_file_state = Some(state);
            }
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
            if self.names.is_empty() {
                return Outcome::unknown(
                    UnknownReason::Config,
                    "no units to watch: list them in the services check's `units`",
                );
            }
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
