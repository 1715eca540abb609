//! The I/O: reads the sysctls and the stat file under the host root, keeps the previous reading for rates.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    ConntrackConfig, ConntrackStat, Deltas, Observation, evaluate, parse_number, parse_stat,
};
use crate::check::{
    BoxFuture, Check, CheckKind, Context, Details, Failure, Mode, Outcome, Status, UnknownReason,
};
use crate::host::HostRoot;

const COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const STAT: &str = "/proc/net/stat/nf_conntrack";

/// One reading of the files.
enum Reading {
    /// Neither count nor max exists: the module is not loaded.
    NotInUse,
    /// Count and max, and the stat file if present.
    Table {
        entries: u64,
        max: u64,
        stat: Option<(Instant, ConntrackStat)>,
    },
}

fn read_number(root: &HostRoot, rel: &str) -> Result<Option<u64>, Failure> {
    match root.read_optional(rel) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_number(&text)
            .map(Some)
            .map_err(|e| Failure::malformed(&root.path(rel), &e)),
        Err(e) => Err(Failure::read(&e)),
    }
}

fn read_stat(root: &HostRoot) -> Result<Option<(Instant, ConntrackStat)>, Failure> {
    let at = Instant::now();
    match root.read_optional(STAT) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_stat(&text)
            .map(|s| Some((at, s)))
            .map_err(|e| Failure::malformed(&root.path(STAT), &e)),
        Err(e) => Err(Failure::read(&e)),
    }
}

fn read_all(root: &HostRoot) -> Result<Reading, Failure> {
    let entries = read_number(root, COUNT)?;
    let max = read_number(root, MAX)?;
    match (entries, max) {
        (None, None) => Ok(Reading::NotInUse),
        (Some(entries), Some(max)) => Ok(Reading::Table {
            entries,
            max,
            stat: read_stat(root)?,
        }),
        (None, Some(_)) => Err(Failure::new(
            UnknownReason::Malformed,
            format!(
                "{} missing while nf_conntrack_max exists",
                root.path(COUNT).display()
            ),
        )),
        (Some(_), None) => Err(Failure::new(
            UnknownReason::Malformed,
            format!(
                "{} missing while nf_conntrack_count exists",
                root.path(MAX).display()
            ),
        )),
    }
}

fn deltas(prev: &(Instant, ConntrackStat), now: &(Instant, ConntrackStat)) -> Deltas {
    Deltas {
        drop: prev.1.delta(&now.1, "drop"),
        early_drop: prev.1.delta(&now.1, "early_drop"),
        insert_failed: prev.1.delta(&now.1, "insert_failed"),
        secs: now.0.saturating_duration_since(prev.0).as_secs_f64(),
    }
}

/// The `conntrack` check with its previous reading.
#[derive(Debug)]
pub struct ConntrackCheck {
    cfg: ConntrackConfig,
    prev: Option<(Instant, ConntrackStat)>,
}

impl ConntrackCheck {
    /// A check with this configuration.
    pub fn new(cfg: ConntrackConfig) -> Self {
        ConntrackCheck { cfg, prev: None }
    }

    async fn observe(&mut self, ctx: &Context) -> Outcome {
        let first = match ctx.mode {
            Mode::OneShot => {
                let first = ctx.blocking(read_stat).await;
                if let Ok(Some(_)) = first {
                    tokio::time::sleep(Duration::from_millis(self.cfg.window_ms)).await;
                }
                first.ok().flatten()
            }
            Mode::Agent => self.prev.take(),
        };
        let (entries, max, stat) = match ctx.blocking(read_all).await {
            Ok(Reading::NotInUse) => {
                return Outcome::new(
                    Status::Ok,
                    "conntrack not in use (module not loaded)",
                    Details::None,
                );
            }
            Ok(Reading::Table { entries, max, stat }) => (entries, max, stat),
            Err(failure) => return failure.into(),
        };
        let deltas = match (&first, &stat) {
            (Some(prev), Some(now)) => Some(deltas(prev, now)),
            _ => None,
        };
        let obs = Observation {
            entries,
            max,
            counters_available: stat.is_some(),
            deltas,
        };
        if ctx.mode == Mode::Agent {
            self.prev = stat;
        }
        evaluate(&obs, &self.cfg)
    }
}

impl Check for ConntrackCheck {
    fn kind(&self) -> CheckKind {
        CheckKind::Conntrack
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
        Box::pin(self.observe(ctx))
    }
}
