//! hvprobe: a health probe for hypervisors.
//!
//! # Code map
//! Layers, top to bottom; each imports only from below (no circles).
//! - [`cli`]: argument parsing, subcommand dispatch. [`config`]: the file, composing every section.
//! - [`agent`] (schedule, uplinks) and [`collector`] (ingest, state owner, correlation, timeline, APIs).
//! - [`diag`]: one-shot and fleet rendering; the CLI prints what it returns.
//! - [`wire`]: domain ↔ protobuf by message family; each check maps its own details.
//! - [`report`]: one cycle of one host. [`fleet`]: verdicts, zones and events as every reader sees them.
//! - [`check`]: the framework, the one table of checks ([`check::registry`]), the runner, a folder per check.
//! - [`identity`], [`host`], [`parse`], [`problems`], [`exit`], [`pb`], [`sdnotify`], [`util`]: the bottom.
//!
//! # Invariants
//! - Checks do no I/O except through [`check::Context`] (files under the host root) or their own sockets.
//! - A failed observation is data (UNKNOWN with a reason), never a crash or an early exit.
//! - Generated types live in [`pb`]; [`wire`] and each check's `wire.rs` convert them. Only [`diag`] and
//!   [`cli`] (and the collector's HTTP layer) produce user-facing text.

pub mod agent;
pub mod check;
pub mod cli;
pub mod collector;
pub mod config;
pub mod diag;
pub mod exit;
pub mod fleet;
pub mod host;
pub mod hostport;
pub mod identity;
pub mod parse;
pub mod pb;
pub mod problems;
pub mod report;
pub mod sdnotify;
pub mod tls;
pub mod util;
pub mod wire;
