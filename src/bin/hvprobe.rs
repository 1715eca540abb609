//! The `hvprobe` binary: every subcommand lives in the library; this only hands over the exit code.

fn main() {
    std::process::exit(hvprobe::cli::main());
}
