//! Downpour's wire format (`downpour.v1`) and the conversions between wire and domain types.
//!
//! # Layout
//! - [`v1`]: the code generated from `proto/downpour/v1/parameter_server.proto`.
//! - [`codec`]: the gRPC codec: prost's, with decode failures answered `INVALID_ARGUMENT`.
//! - [`convert`]: tensors to and from little-endian bytes; plans and status to and from JSON.
//! - [`pieces`]: parameter sets cut into pieces for streaming, and assembled back.
//! - [`limits`]: the message-size limits both sides set, and the size of a piece.

pub mod codec;
pub mod convert;
pub mod limits;
pub mod pieces;

/// Generated from `proto/downpour/v1/parameter_server.proto`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
pub mod v1 {
    tonic::include_proto!("downpour.v1");
}

pub use convert::WireError;
pub use pieces::{EncodedPieces, ParamAssembler, ParamPieces};
