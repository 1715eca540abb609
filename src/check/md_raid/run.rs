//! The I/O: sysfs and mdstat under the host root; progress remembered across cycles for stall detection.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::mdstat::parse_mdstat;
use super::{ArrayInfo, MdRaidConfig, Observation, evaluate, merge, sysfs};
use crate::check::{BoxFuture, Check, CheckKind, Context, Failure, Mode, Outcome};
use crate::host::HostRoot;

const MDSTAT: &str = "/proc/mdstat";

/// Progress bookkeeping of one syncing array, for stall detection.
#[derive(Debug, Clone, Copy)]
struct Progress {
    done: u64,
    since: Instant,
}

/// Tracks sync positions across cycles and says which arrays are stalled.
#[derive(Debug, Default)]
pub struct StallTracker {
    seen: HashMap<String, Progress>,
}

impl StallTracker {
    /// Updates the tracker with this cycle's arrays (at `now`) and sets `stalled_secs` on arrays whose
    /// resync/recovery/reshape has not moved for at least `after`.
    pub fn observe(&mut self, arrays: &mut [ArrayInfo], now: Instant, after: Duration) {
        let mut keep = HashMap::new();
        for a in arrays.iter_mut() {
            let (true, None, Some(done)) =
                (a.syncing(), a.sync_pending.as_ref(), a.sync_done_sectors)
            else {
                continue;
            };
            let key = format!("{}:{}", a.key(), a.sync_action);
            let entry = match self.seen.get(&key) {
                Some(p) if p.done == done => *p,
                _ => Progress { done, since: now },
            };
            let still = now.saturating_duration_since(entry.since);
            if still >= after {
                a.stalled_secs = Some(still.as_secs());
            }
            keep.insert(key, entry);
        }
        self.seen = keep;
    }
}

/// Reads both sources. `Err` only when every source failed.
fn read_all(root: &HostRoot) -> Result<Observation, Failure> {
    let mut problems = Vec::new();
    let sys = match sysfs::read_arrays(root) {
        Ok(s) => s,
        Err(f) => {
            problems.push(f.message.clone());
            None
        }
    };
    let md = match root.read_optional(MDSTAT) {
        Ok(None) => None,
        Ok(Some(text)) => match parse_mdstat(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                let f = Failure::malformed(&root.path(MDSTAT), &e);
                if sys.as_ref().is_none_or(|s| s.is_empty()) {
                    return Err(f);
                }
                problems.push(f.message);
                None
            }
        },
        Err(e) => {
            let f = Failure::read(&e);
            if sys.as_ref().is_none_or(|s| s.is_empty()) {
                return Err(f);
            }
            problems.push(f.message);
            None
        }
    };
    let md_present = md.is_some() || sys.as_ref().is_some_and(|s| !s.is_empty());
    Ok(Observation {
        personalities: md
            .as_ref()
            .map(|m| m.personalities.clone())
            .unwrap_or_default(),
        arrays: merge(sys.unwrap_or_default(), md.as_ref()),
        md_present,
        problems,
    })
}

/// The `md-raid` check.
#[derive(Debug)]
pub struct MdRaidCheck {
    cfg: MdRaidConfig,
    stalls: StallTracker,
}

impl MdRaidCheck {
    /// A check with this configuration.
    pub fn new(cfg: MdRaidConfig) -> Self {
        MdRaidCheck {
            cfg,
            stalls: StallTracker::default(),
        }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let mut obs = match ctx.blocking(read_all).await {
            Ok(o) => o,
            Err(f) => return f.into(),
        };
        if ctx.mode == Mode::Agent {
            self.stalls.observe(
                &mut obs.arrays,
                Instant::now(),
                Duration::from_secs(self.cfg.stall_after_secs),
            );
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for MdRaidCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::MdRaid
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}
