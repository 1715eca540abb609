//! Runs checks concurrently, each under its own deadline, and turns every failure into data.
//!
//! Invariants:
//! - One check's error, timeout or panic makes *that* check UNKNOWN and never delays or stops the others.
//! - At most one run of a check is in flight. A run that overran its deadline is left to finish in the
//!   background (cancelling it could not interrupt a blocking read anyway); until it does, later cycles
//!   report the check UNKNOWN (busy) instead of piling up more stuck readers on a sick host.
//! - The runner holds no clock of its own beyond the deadlines: the caller decides when to run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Check, CheckKind, Context, Outcome, Status, UnknownReason};

/// The result of one check in one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Which check.
    pub kind: CheckKind,
    /// What it found.
    pub outcome: Outcome,
    /// How long it took (the deadline, when it timed out).
    pub duration: Duration,
}

struct Slot {
    kind: CheckKind,
    timeout: Duration,
    check: Arc<Mutex<Box<dyn Check>>>,
    /// When the run that still holds the check started, if it overran.
    overrun_since: Option<Instant>,
}

/// A set of check instances, run together.
pub struct Runner {
    slots: Vec<Slot>,
}

impl Runner {
    /// A runner over these checks (in the order results are reported).
    pub fn new(checks: Vec<Box<dyn Check>>) -> Self {
        let slots = checks
            .into_iter()
            .map(|c| Slot {
                kind: c.kind(),
                timeout: c.timeout(),
                check: Arc::new(Mutex::new(c)),
                overrun_since: None,
            })
            .collect();
        Runner { slots }
    }

    /// Kinds of the checks, in order.
    pub fn kinds(&self) -> Vec<CheckKind> {
        self.slots.iter().map(|s| s.kind).collect()
    }

    /// Runs every check once, concurrently, and returns one report per check in order.
    pub async fn run_once(&mut self, ctx: &Context) -> Vec<CheckReport> {
        let start = Instant::now();
        let mut handles = Vec::with_capacity(self.slots.len());
        for slot in &mut self.slots {
            let Ok(mut guard) = slot.check.clone().try_lock_owned() else {
                handles.push(None);
                continue;
            };
            slot.overrun_since = None;
            let ctx = ctx.clone();
            handles.push(Some(tokio::spawn(async move {
                let t = Instant::now();
                let outcome = guard.run(&ctx).await;
                (outcome, t.elapsed())
            })));
        }
        let mut reports = Vec::with_capacity(self.slots.len());
        for (slot, handle) in self.slots.iter_mut().zip(handles) {
            let Some(mut handle) = handle else {
                let since = slot.overrun_since.unwrap_or(start);
                reports.push(CheckReport {
                    kind: slot.kind,
                    outcome: Outcome::unknown(
                        UnknownReason::Busy,
                        format!(
                            "previous run still in progress after {:.1}s (wedged I/O?)",
                            start.saturating_duration_since(since).as_secs_f64()
                        ),
                    ),
                    duration: Duration::ZERO,
                });
                continue;
            };
            let deadline = tokio::time::Instant::from_std(start + slot.timeout);
            let report = match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok((outcome, duration))) => CheckReport {
                    kind: slot.kind,
                    outcome: sanitize(outcome),
                    duration,
                },
                Ok(Err(e)) => {
                    let what = if e.is_panic() {
                        let payload = e.into_panic();
                        let msg = payload
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic".into());
                        tracing::error!(check = %slot.kind, panic = %msg, "check panicked; reported as unknown");
                        (UnknownReason::Panicked, format!("check panicked: {msg}"))
                    } else {
                        (UnknownReason::Error, "check was cancelled".into())
                    };
                    CheckReport {
                        kind: slot.kind,
                        outcome: Outcome::unknown(what.0, what.1),
                        duration: start.elapsed(),
                    }
                }
                Err(_) => {
                    slot.overrun_since = Some(start);
                    CheckReport {
                        kind: slot.kind,
                        outcome: Outcome::unknown(
                            UnknownReason::TimedOut,
                            format!("no result within {} ms", slot.timeout.as_millis()),
                        ),
                        duration: slot.timeout,
                    }
                }
            };
            reports.push(report);
        }
        reports
    }
}

/// Enforces the outcome contract whatever a check returned: UNKNOWN always has a reason, a summary is one
/// line, and a reason never rides on a known status.
fn sanitize(mut o: Outcome) -> Outcome {
    if o.status == Status::Unknown {
        o.reason.get_or_insert(UnknownReason::Error);
    } else {
        o.reason = None;
    }
    if o.summary.contains(['\n', '\r']) {
        o.summary = o.summary.replace(['\n', '\r'], " ");
    }
    if o.summary.is_empty() {
        o.summary = o.status.as_str().to_owned();
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{BoxFuture, Details, Mode};
    use crate::host::HostRoot;

    enum Behaviour {
        Ok,
        Panic,
        Sleep(Duration),
        Block(Duration),
    }

    struct Fake {
        kind: CheckKind,
        behaviour: Behaviour,
        timeout: Duration,
    }

    impl Check for Fake {
        fn kind(&self) -> CheckKind {
            self.kind
        }
        fn timeout(&self) -> Duration {
            self.timeout
        }
        fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome> {
            Box::pin(async move {
                match self.behaviour {
                    Behaviour::Ok => Outcome::new(Status::Ok, "fine\nreally", Details::None),
                    Behaviour::Panic => panic!("boom in a check"),
                    Behaviour::Sleep(d) => {
                        tokio::time::sleep(d).await;
                        Outcome::new(Status::Ok, "slept", Details::None)
                    }
                    Behaviour::Block(d) => {
                        ctx.blocking(move |_| std::thread::sleep(d)).await;
                        Outcome::new(Status::Ok, "blocked", Details::None)
                    }
                }
            })
        }
    }

    fn fake(kind: CheckKind, behaviour: Behaviour, timeout_ms: u64) -> Box<dyn Check> {
        Box::new(Fake {
            kind,
            behaviour,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    fn ctx() -> Context {
        Context::new(HostRoot::new("/nonexistent"), Mode::Agent)
    }

    #[tokio::test]
    async fn panic_and_timeout_are_contained() {
        let mut r = Runner::new(vec![
            fake(CheckKind::Memory, Behaviour::Panic, 1000),
            fake(CheckKind::Conntrack, Behaviour::Ok, 1000),
            fake(
                CheckKind::Memory,
                Behaviour::Sleep(Duration::from_secs(30)),
                50,
            ),
        ]);
        let t = Instant::now();
        let reports = r.run_once(&ctx()).await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a sleeping check held up the run"
        );
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].outcome.status, Status::Unknown);
        assert_eq!(reports[0].outcome.reason, Some(UnknownReason::Panicked));
        assert!(reports[0].outcome.summary.contains("boom in a check"));
        assert_eq!(reports[1].outcome.status, Status::Ok);
        assert_eq!(reports[1].outcome.summary, "fine really");
        assert_eq!(reports[2].outcome.reason, Some(UnknownReason::TimedOut));
    }

    #[tokio::test]
    async fn a_wedged_check_is_busy_next_cycle_not_duplicated() {
        let mut r = Runner::new(vec![fake(
            CheckKind::Memory,
            Behaviour::Block(Duration::from_millis(400)),
            50,
        )]);
        let first = r.run_once(&ctx()).await;
        assert_eq!(first[0].outcome.reason, Some(UnknownReason::TimedOut));
        let second = r.run_once(&ctx()).await;
        assert_eq!(
            second[0].outcome.reason,
            Some(UnknownReason::Busy),
            "{:?}",
            second[0]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The wedged run finished in the meantime: the check runs again (and overruns again).
        let third = r.run_once(&ctx()).await;
        assert_eq!(third[0].outcome.reason, Some(UnknownReason::TimedOut));
    }
}
