//! Compiles `proto/hvprobe/v1/*.proto` with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/hvprobe/v1/hvprobe.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Small first buffers per stream (see `pb::LeanCodec`).
        .codec_path("crate::pb::LeanCodec")
        .file_descriptor_set_path(out.join("hvprobe_descriptor.bin"))
        .compile_fds(fds)?;
    Ok(())
}
