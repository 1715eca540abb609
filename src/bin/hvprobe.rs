//! The `hvprobe` binary: every subcommand lives in the library; this only hands over the exit code. It keeps
//! the system allocator: the agent's footprint (about 7 MiB RSS) is mostly code pages, and mimalloc's own
//! reservations tripled it.

fn main() {
    std::process::exit(hvprobe::cli::main());
}
