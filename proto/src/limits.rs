//! Message-size limits, set on purpose on both sides, and the size of a streamed piece.
//!
//! Parameter sets travel as streams of messages of at most [`PIECE_BYTES`] of values
//! each (see [`crate::pieces`]), so the size of a model is not bounded by any message
//! limit. tonic's default receive limit, 4 MiB, is still too small for one piece plus
//! its framing; [`MAX_MESSAGE_BYTES`] stops a runaway message (a hand-built one, or a
//! peer that sends whole tensors in one message) before it exhausts memory.

/// Values per message of a streamed parameter set, in bytes of f32s: 4 MiB (1 Mi values).
///
/// Small enough that encoding the next piece overlaps sending this one and decoding the
/// previous one, large enough that the per-message cost (a gRPC frame, a `Tensor` header
/// per piece, a task wake-up) is negligible next to the copy.
pub const PIECE_BYTES: usize = 4 * 1024 * 1024;

/// Largest message either side decodes or encodes: 256 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// HTTP/2 per-stream flow-control window: 8 MiB, so a large tensor message streams
/// without waiting for a window update every 64 KiB (the HTTP/2 default).
pub const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// HTTP/2 per-connection flow-control window: 16 MiB.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Largest HTTP/2 frame the server accepts: 1 MiB (the default is 16 KiB).
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;
