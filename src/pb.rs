//! Generated code for `proto/hvprobe/v1/hvprobe.proto` (package `hvprobe.v1`), built by `build.rs` with
//! protox and tonic-prost-build.
//!
//! At the bottom of the crate: it imports nothing of hvprobe. Who converts these types: [`crate::wire`] for
//! reports, timeline and zones, and each check's own `wire.rs` for its details message.
#![allow(missing_docs, clippy::all, clippy::pedantic)] // generated; every message is documented in the .proto

tonic::include_proto!("hvprobe.v1");

/// The gRPC codec of hvprobe's services: prost, with small first buffers. tonic's default gives every
/// stream an 8 KiB decode buffer and an 8 KiB encode buffer up front; a collector holds one stream per
/// agent for as long as the agent lives, and an agent's messages are a few KiB (acks a few bytes), so
/// that default was a third of the collector's memory per agent. The buffers still grow to fit any
/// message up to the configured limit.
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(std::marker::PhantomData)
    }
}

/// First capacity of a stream's decode buffer (a compact report fits; a full one grows it once).
pub const DECODE_BUFFER: usize = 1024;
/// First capacity of a stream's encode buffer (an ack is a few bytes).
pub const ENCODE_BUFFER: usize = 256;

impl<T, U> tonic::codec::Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(tonic::codec::BufferSettings::new(
            ENCODE_BUFFER,
            32 * 1024,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<T, U>::raw_decoder(tonic::codec::BufferSettings::new(
            DECODE_BUFFER,
            32 * 1024,
        ))
    }
}
