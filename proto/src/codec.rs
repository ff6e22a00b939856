//! The gRPC codec of every call: prost's encoding, and a decoder whose failures are
//! `INVALID_ARGUMENT`.
//!
//! tonic-prost answers a message that does not decode with `INTERNAL` (as the gRPC status
//! code guide suggests for a server's own faults); but a malformed message is the sender's
//! fault, not the server's: it gets `INVALID_ARGUMENT`, so that clients, monitoring and our
//! own workers tell a bad request from a broken server. The generated code uses this
//! codec (`codec_path` in `build.rs`).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Prost's codec, with decode failures mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    /// The message types.
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder { _type: PhantomData }
    }
}

/// Decodes `U` with prost; a message that does not decode is `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U> {
    /// The message type.
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // prost's message names the field and the wire problem, never the bytes.
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed message: {e}")))
    }
}
