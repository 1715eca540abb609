//! The `hvprobe` binary: every subcommand lives in the library; this only hands over the exit code.

/// mimalloc rather than glibc malloc: under a large fleet the collector's cost per report grew with the
/// heap under glibc (see the note next to the dependency in Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(hvprobe::cli::main());
}
