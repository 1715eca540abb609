//! The fleet as operators see it: verdicts, zones, the timeline's events, a host's status.
//!
//! These are the types the collector produces and every reader shares: the HTTP API, the gRPC Query
//! service ([`crate::wire`] maps them), `hvprobe status` and `timeline` ([`crate::diag::fleet`]). They sit
//! below all of them and import only the check statuses, so no reader depends on the collector's internals.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::check::Status;

/// Where a verdict applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One host.
    Host,
    /// One availability zone.
    Az,
    /// Every AZ of a region.
    Region,
    /// The collector itself (it lost several AZs at once: likely its own network).
    Collector,
}

impl Scope {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Host => "host",
            Scope::Az => "az",
            Scope::Region => "region",
            Scope::Collector => "collector",
        }
    }

    /// From the lowercase name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "host" => Some(Scope::Host),
            "az" => Some(Scope::Az),
            "region" => Some(Scope::Region),
            "collector" => Some(Scope::Collector),
            _ => None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A verdict opened.
    VerdictOpened,
    /// A verdict's status changed.
    VerdictChanged,
    /// A verdict closed.
    VerdictClosed,
    /// A host went stale.
    HostStale,
    /// A stale host reported again.
    HostBack,
    /// Most of an AZ rebooted.
    Rebooted,
    /// The rebooted AZ has recovered (or tracking ended).
    Recovered,
}

impl EventKind {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::VerdictOpened => "verdict-opened",
            EventKind::VerdictChanged => "verdict-changed",
            EventKind::VerdictClosed => "verdict-closed",
            EventKind::HostStale => "host-stale",
            EventKind::HostBack => "host-back",
            EventKind::Rebooted => "rebooted",
            EventKind::Recovered => "recovered",
        }
    }

    /// From the kebab-case name.
    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::VerdictOpened,
            EventKind::VerdictChanged,
            EventKind::VerdictClosed,
            EventKind::HostStale,
            EventKind::HostBack,
            EventKind::Rebooted,
            EventKind::Recovered,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Database id (0 until stored).
    pub id: i64,
    /// When (collector clock).
    pub at: SystemTime,
    /// What.
    pub kind: EventKind,
    /// Where.
    pub scope: Scope,
    /// Region, when known.
    pub region: Option<String>,
    /// AZ, when the event is about one.
    pub az: Option<String>,
    /// Host, when the event is about one.
    pub host: Option<String>,
    /// Check (`dns`, `wireguard`…, or `reachability`), when the event is about one.
    pub check: Option<String>,
    /// Status before.
    pub old_status: Option<String>,
    /// Status after.
    pub new_status: Option<String>,
    /// One line.
    pub summary: String,
}

/// Recovery of a rebooted AZ, for the zones view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// When the reboot was recognised (RFC 3339 in JSON).
    #[serde(
        serialize_with = "crate::util::ser_rfc3339",
        deserialize_with = "crate::util::de_rfc3339"
    )]
    pub since: SystemTime,
    /// Hosts that rebooted.
    pub rebooted: usize,
    /// Of those, reporting again.
    pub back: usize,
    /// Of those, rebuilding RAID.
    pub raid_rebuilding: usize,
    /// Longest RAID ETA among them, seconds.
    pub raid_eta_secs: Option<u64>,
    /// Of those, DNS not yet OK.
    pub dns_not_ok: usize,
    /// Of those, WireGuard not yet OK.
    pub wireguard_not_ok: usize,
    /// Units that were active under a host's previous boot and are not since it rebooted, as
    /// `unbound.service on hv-3` (the `services` check; at most [`MAX_UNITS_NOT_BACK`]).
    #[serde(default)]
    pub units_not_back: Vec<String>,
}

/// Most units listed in [`Recovery::units_not_back`].
pub const MAX_UNITS_NOT_BACK: usize = 50;

/// A verdict as shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictView {
    /// Where.
    pub scope: Scope,
    /// Check (or `reachability`).
    pub check: String,
    /// Status.
    pub status: Status,
    /// Hosts it covers.
    pub hosts: Vec<String>,
    /// One line.
    pub summary: String,
    /// When it opened (RFC 3339 in JSON).
    #[serde(
        serialize_with = "crate::util::ser_rfc3339",
        deserialize_with = "crate::util::de_rfc3339"
    )]
    pub since: SystemTime,
    /// AZ (null for a region or collector verdict).
    pub az: Option<String>,
    /// Region.
    pub region: String,
    /// The condition keeps coming and going: held open (flap damping) rather than opened and closed again.
    #[serde(default)]
    pub flapping: bool,
    /// Its condition recovered then (RFC 3339, null while failing); the verdict is held open until the flap
    /// window has passed since it opened, in case it comes back.
    #[serde(
        default,
        serialize_with = "crate::util::ser_opt_rfc3339",
        deserialize_with = "crate::util::de_opt_rfc3339"
    )]
    pub recovered_at: Option<SystemTime>,
}

/// One AZ in `GET /api/v1/zones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneView {
    /// AZ name.
    pub az: String,
    /// Region.
    pub region: String,
    /// Hosts known.
    pub hosts: usize,
    /// Hosts reporting (not stale).
    pub reporting: usize,
    /// Hosts stale.
    pub stale: usize,
    /// Worst open verdict (`ok` without any).
    pub status: Status,
    /// Open AZ and host verdicts.
    pub verdicts: Vec<VerdictView>,
    /// Recovery of a mass reboot, while tracked.
    pub reboot: Option<Recovery>,
}

/// `GET /api/v1/zones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZonesView {
    /// Every AZ.
    pub zones: Vec<ZoneView>,
    /// Region verdicts, listed once.
    pub region_verdicts: Vec<VerdictView>,
    /// Verdicts about the collector itself (it lost several AZs at once).
    #[serde(default)]
    pub collector_verdicts: Vec<VerdictView>,
    /// Set while the collector's own ingest sheds or lags: no verdict is opened from staleness meanwhile.
    #[serde(default)]
    pub ingest_degraded: Option<String>,
}

/// A host's status as the collector sees it: a check status, or stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    /// Worst check OK.
    Ok,
    /// Worst check WARN.
    Warn,
    /// Worst check CRIT.
    Crit,
    /// Worst check UNKNOWN (or no checks).
    Unknown,
    /// No report for `stale-after-intervals` intervals: no data, not a failure.
    Stale,
}

impl HostStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Ok => "ok",
            HostStatus::Warn => "warn",
            HostStatus::Crit => "crit",
            HostStatus::Unknown => "unknown",
            HostStatus::Stale => "stale",
        }
    }

    /// Every value, for metrics.
    pub const ALL: [HostStatus; 5] = [
        HostStatus::Ok,
        HostStatus::Warn,
        HostStatus::Crit,
        HostStatus::Unknown,
        HostStatus::Stale,
    ];

    /// A check status as a host status.
    pub fn of(s: Status) -> HostStatus {
        match s {
            Status::Ok => HostStatus::Ok,
            Status::Warn => HostStatus::Warn,
            Status::Crit => HostStatus::Crit,
            Status::Unknown => HostStatus::Unknown,
        }
    }
}
