//! hvprobe: a health probe for hypervisors.
//!
//! # Code map
//! - [`check`]: the check framework ([`check::Check`], [`check::Outcome`], four-valued [`check::Status`]),
//!   the registry naming every check, the runner (deadlines, panic isolation), one file per check.
//! - [`host`]: [`host::HostRoot`], the only way checks reach `/proc`, `/sys`, `/etc`.
//! - [`parse`]: shared defensive parsers for kernel text (PSI, `key value` files).
//! - [`config`]: strict TOML configuration, validation with the key named.
//! - [`identity`]: hostname, kernel, boot id, boot time.
//! - [`diag`]: rendering of one-shot results (human, JSON, Nagios); the CLI prints what it returns.
//! - [`wire`]: the only module that knows the generated protobuf types.
//! - [`agent`]: the scheduled agent and its uplinks to the collectors (backoff, jitter, sd_notify).
//! - [`collector`]: gRPC ingest, the state owner, the HTTP API and metrics.
//! - [`report`]: one cycle of one host, as the agent sends it and the collector keeps it.
//! - [`cli`]: argument parsing, subcommand dispatch, exit codes.
//!
//! # Invariants
//! - Checks do no I/O except through [`check::Context`] (files under the host root) or their own sockets.
//! - A failed observation is data (UNKNOWN with a reason), never a crash or an early exit.
//! - Only [`wire`] touches generated proto types; only [`diag`] and [`cli`] produce user-facing text.

pub mod agent;
pub mod check;
pub mod cli;
pub mod collector;
pub mod config;
pub mod diag;
pub mod exit;
pub mod fleet;
pub mod host;
pub mod identity;
pub mod parse;
pub mod pb;
pub mod problems;
pub mod report;
pub mod sdnotify;
pub mod util;
pub mod wire;
