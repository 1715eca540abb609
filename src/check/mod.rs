//! The check framework: what a check is, what it returns, and the context it runs in.
//!
//! A check observes one facet of the host and returns an [`Outcome`]: a four-valued [`Status`], a one-line
//! summary, and typed [`Details`]. Each check file has three layers:
//! - `parse(text) -> Result<Data, ParseError>`: pure, fed real kernel text in tests;
//! - `evaluate(&observation, &config) -> Outcome`: pure, table-tested against every threshold;
//! - a thin `run` doing the I/O through the [`Context`] (under the host root, on the blocking pool).
//!
//! Invariants:
//! - Checks do no I/O except through the [`Context`] (files under [`HostRoot`]) or their own sockets.
//! - A failed observation is data: it becomes UNKNOWN with a reason and the file or peer named, never a panic
//!   or an error that escapes the check. The [`runner`] backs this up for panics and timeouts.
//! - Nothing starts as healthy: a check that has not observed reports UNKNOWN, never OK.

pub mod registry;
pub mod runner;
pub mod vm_cgroups;

// The set of checks, declared once: each line names the check's folder and its `Spec`; the kind, config
// and details enums and the wire mapping follow from this table (see `registry`).
registry::registry! {
    /// Memory and swap pressure.
    Memory = "memory" => memory::Memory;
    /// Conntrack table saturation.
    Conntrack = "conntrack" => conntrack::Conntrack;
    /// Linux software RAID.
    MdRaid = "md-raid" => md_raid::MdRaid;
    /// DNS resolution through every resolver.
    Dns = "dns" => dns::Dns;
    /// WireGuard peers.
    Wireguard = "wireguard" => wireguard::Wireguard;
    /// I/O pressure and saturated disks.
    Io = "io" => io::Io;
    /// The systemd units the host needs.
    Services = "services" => services::Services;
    /// Reachability of the endpoints the host depends on.
    Reach = "reach" => reach::Reach;
}

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use crate::host::{HostRoot, ReadError};
use crate::parse::ParseError;
use crate::pb;

pub use registry::Spec;

/// Health of a check; also of a host or a zone (the worst of its parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Observed and healthy.
    Ok,
    /// Observed and degraded.
    Warn,
    /// Observed and failing.
    Crit,
    /// Not observed; the reason says why.
    Unknown,
}

impl Status {
    /// Position in the worst-of order OK < UNKNOWN < WARN < CRIT.
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warn => 2,
            Status::Crit => 3,
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The worst of many; `None` when there are none.
    pub fn worst_of(it: impl IntoIterator<Item = Status>) -> Option<Status> {
        it.into_iter().reduce(Status::worst)
    }

    /// Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Crit => 2,
            Status::Unknown => 3,
        }
    }

    /// Lowercase name, as in JSON: `ok`, `warn`, `crit`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Crit => "crit",
            Status::Unknown => "unknown",
        }
    }

    /// Short uppercase label for tables: `OK`, `WARN`, `CRIT`, `UNKNOWN`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Crit => "CRIT",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// The monitoring-plugins word: `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn nagios_label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARNING",
            Status::Crit => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl Status {
    /// To the wire enum.
    pub fn to_pb(self) -> pb::Status {
        match self {
            Status::Ok => pb::Status::Ok,
            Status::Warn => pb::Status::Warn,
            Status::Crit => pb::Status::Crit,
            Status::Unknown => pb::Status::Unknown,
        }
    }

    /// From the wire enum; unspecified or unknown values (a newer peer's) are UNKNOWN.
    pub fn from_pb(v: i32) -> Status {
        match pb::Status::try_from(v) {
            Ok(pb::Status::Ok) => Status::Ok,
            Ok(pb::Status::Warn) => Status::Warn,
            Ok(pb::Status::Crit) => Status::Crit,
            _ => Status::Unknown,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a check could not observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownReason {
    /// The host lacks the facility.
    Unsupported,
    /// The probe lacks a permission or capability.
    NoPermission,
    /// The check ran over its deadline.
    TimedOut,
    /// A source could not be parsed.
    Malformed,
    /// The check panicked (a bug, contained).
    Panicked,
    /// The previous run is still in progress (wedged I/O).
    Busy,
    /// The check's configuration cannot be used on this host.
    Config,
    /// Anything else.
    Error,
}

impl UnknownReason {
    /// Kebab-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownReason::Unsupported => "unsupported",
            UnknownReason::NoPermission => "no-permission",
            UnknownReason::TimedOut => "timed-out",
            UnknownReason::Malformed => "malformed",
            UnknownReason::Panicked => "panicked",
            UnknownReason::Busy => "busy",
            UnknownReason::Config => "config",
            UnknownReason::Error => "error",
        }
    }
}

/// One Nagios performance datum: `'label'=value[uom];[warn];[crit];[min];[max]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    /// Label, unique within a run (prefixed with the check name by the renderer).
    pub label: String,
    /// Value.
    pub value: f64,
    /// Unit of measure: "", "%", "B", "s", "ms", "c".
    pub uom: &'static str,
    /// Warning range in plugin syntax (`10:` = alert below 10).
    pub warn: Option<String>,
    /// Critical range in plugin syntax.
    pub crit: Option<String>,
    /// Minimum possible value.
    pub min: Option<f64>,
    /// Maximum possible value.
    pub max: Option<f64>,
}

impl Perf {
    /// A datum with only a label, a value and a unit.
    pub fn new(label: impl Into<String>, value: f64, uom: &'static str) -> Self {
        Perf {
            label: label.into(),
            value,
            uom,
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }

    /// Sets warn and crit ranges.
    pub fn thresholds(mut self, warn: Option<String>, crit: Option<String>) -> Self {
        self.warn = warn;
        self.crit = crit;
        self
    }

    /// Sets min and max.
    pub fn bounds(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.min = min;
        self.max = max;
        self
    }
}

/// What a check returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The verdict.
    pub status: Status,
    /// One line, for humans; names the worst thing first.
    pub summary: String,
    /// Set when the status is UNKNOWN.
    pub reason: Option<UnknownReason>,
    /// What was observed.
    pub details: Details,
}

impl Outcome {
    /// An observed outcome.
    pub fn new(status: Status, summary: impl Into<String>, details: Details) -> Self {
        Outcome {
            status,
            summary: summary.into(),
            reason: None,
            details,
        }
    }

    /// No observation, with the reason.
    pub fn unknown(reason: UnknownReason, summary: impl Into<String>) -> Self {
        Outcome {
            status: Status::Unknown,
            summary: summary.into(),
            reason: Some(reason),
            details: Details::None,
        }
    }
}

/// What a verdict found, in the order found: the worst status, and one reason per finding. The summary of
/// an [`Outcome`] is the reasons, then the figures: `table 95.0% full >= 90%; 950/1000 entries (95.0%), …`.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    status: Status,
    reasons: Vec<String>,
}

impl Default for Findings {
    fn default() -> Self {
        Findings {
            status: Status::Ok,
            reasons: Vec::new(),
        }
    }
}

impl Findings {
    /// Records a finding: the status only ever gets worse.
    pub fn flag(&mut self, status: Status, why: impl Into<String>) {
        self.status = self.status.worst(status);
        self.reasons.push(why.into());
    }

    /// The worst status so far (OK without findings).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The status and the summary line: the reasons, then `figures`.
    pub fn summary(self, figures: String) -> (Status, String) {
        let summary = if self.reasons.is_empty() {
            figures
        } else {
            format!("{}; {figures}", self.reasons.join("; "))
        };
        (self.status, summary)
    }
}

/// Why an observation failed; becomes an UNKNOWN [`Outcome`]. Small, so it travels in `Result`s cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The category.
    pub reason: UnknownReason,
    /// What failed, naming the file or peer.
    pub message: String,
}

impl Failure {
    /// A failure of this kind.
    pub fn new(reason: UnknownReason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }

    /// A file that could not be read.
    pub fn read(err: &ReadError) -> Self {
        let reason = match err {
            ReadError::PermissionDenied { .. } => UnknownReason::NoPermission,
            ReadError::NotFound { .. } => UnknownReason::Unsupported,
            ReadError::TooLarge { .. } | ReadError::NotUtf8 { .. } => UnknownReason::Malformed,
            ReadError::Io { .. } => UnknownReason::Error,
        };
        Failure::new(reason, err.to_string())
    }

    /// A file that was read but could not be parsed.
    pub fn malformed(path: &Path, err: &ParseError) -> Self {
        Failure::new(
            UnknownReason::Malformed,
            format!("{}: malformed: {err}", path.display()),
        )
    }
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        Outcome::unknown(f.reason, f.message)
    }
}

/// How the probe runs, which decides how rates are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `hvprobe check`: rates are measured over a short window inside the run.
    OneShot,
    /// `hvprobe agent`: rates are measured across cycles; no check sleeps.
    Agent,
}

/// Everything a check may touch.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where `/proc`, `/sys` and `/etc` are.
    pub root: HostRoot,
    /// One-shot or agent.
    pub mode: Mode,
}

impl Context {
    /// A context for `root` in `mode`.
    pub fn new(root: HostRoot, mode: Mode) -> Self {
        Context { root, mode }
    }

    /// Runs blocking host I/O (file reads) on the blocking pool, so a wedged read never stalls the
    /// schedule. A panic inside `f` is resumed here, to be caught by the runner like any other.
    pub async fn blocking<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&HostRoot) -> T + Send + 'static,
    {
        let root = self.root.clone();
        match tokio::task::spawn_blocking(move || f(&root)).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancellation only happens at runtime shutdown; the runner reports the check as timed out.
            Err(_) => std::future::pending().await,
        }
    }
}

/// A boxed future, as returned by [`Check::run`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One check instance, holding its configuration and whatever it remembers between cycles (previous
/// counters for rates, first-seen times for stall detection).
pub trait Check: Send + 'static {
    /// Which check this is.
    fn kind(&self) -> CheckKind;
    /// The deadline of one run; past it the runner reports UNKNOWN (timed out).
    fn timeout(&self) -> Duration;
    /// Observes the host once.
    fn run<'a>(&'a mut self, ctx: &'a Context) -> BoxFuture<'a, Outcome>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_of_follows_ok_unknown_warn_crit() {
        use Status::*;
        assert_eq!(Status::worst_of([Ok, Unknown]), Some(Unknown));
        assert_eq!(Status::worst_of([Unknown, Warn]), Some(Warn));
        assert_eq!(Status::worst_of([Crit, Warn, Unknown, Ok]), Some(Crit));
        assert_eq!(Status::worst_of([Ok, Ok]), Some(Ok));
        assert_eq!(Status::worst_of([]), None);
    }

    #[test]
    fn exit_codes_are_nagios_codes() {
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Warn.exit_code(), 1);
        assert_eq!(Status::Crit.exit_code(), 2);
        assert_eq!(Status::Unknown.exit_code(), 3);
    }
}
