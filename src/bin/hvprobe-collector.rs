//! `hvprobe-collector`: the same program as `hvprobe` (`hvprobe-collector collector --config …`), linked with
//! mimalloc, which the collector's systemd unit runs. Profiled with 19,000 agents connected (`perf record`
//! during the ingest benchmark's closed loop), glibc malloc took half the collector's CPU
//! (malloc_consolidate, unlink_chunk, arena lock waits) and its cost per report grew with the heap: the
//! ceiling fell from 8,300 reports/s at 1,000 agents to 3,400 at 19,000. With mimalloc the cost per report
//! is flat (75 µs at 1,000 agents, 72 µs at 19,000). The agent keeps the system allocator (`hvprobe`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(hvprobe::cli::main());
}
