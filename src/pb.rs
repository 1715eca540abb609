//! Generated code for `proto/hvprobe/v1/hvprobe.proto` (package `hvprobe.v1`), built by `build.rs` with
//! protox and tonic-prost-build.
//!
//! At the bottom of the crate: it imports nothing of hvprobe. Who converts these types: [`crate::wire`] for
//! reports, timeline and zones, and each check's own `wire.rs` for its details message.
#![allow(missing_docs, clippy::all, clippy::pedantic)] // generated; every message is documented in the .proto

tonic::include_proto!("hvprobe.v1");
