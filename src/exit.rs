//! Process exit codes, in one place below everything that returns them.
//!
//! `hvprobe check` exits with the worst status in the Nagios convention (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN, see
//! [`crate::check::Status::exit_code`]); every command uses the sysexits codes below for usage and internal
//! errors.

/// Usage or configuration error (sysexits EX_USAGE).
pub const USAGE: i32 = 64;
/// Internal error: the runtime or a thread could not start, the state owner died (sysexits EX_SOFTWARE).
pub const SOFTWARE: i32 = 70;
/// `status` and `timeline`: the collector cannot be reached or answered with an error (Nagios UNKNOWN).
pub const UNREACHABLE: i32 = 3;
