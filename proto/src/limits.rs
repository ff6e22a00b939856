//! Message-size limits, set on purpose on both sides, and the size of a streamed piece.
//!
//! Parameter sets travel as streams of messages of at most [`PIECE_BYTES`] of values
//! each (see [`crate::pieces`]), so the size of a model is not bounded by any message
//! limit. tonic's default receive limit, 4 MiB, is still too small for one piece plus
//! its framing; [`MAX_MESSAGE_BYTES`] stops a runaway message (a hand-built one, or a
//! peer that sends whole tensors in one message) before it exhausts memory.

/// Values per message of a streamed parameter set, in bytes of f32s: 1 MiB (256 Ki values).
///
/// Small enough that encoding the next piece overlaps sending this one and decoding the
/// previous one (and that a piece stays in cache between the copies that move it), large
/// enough that the per-message cost (a gRPC frame, a `Tensor` header per piece, a task
/// wake-up) is negligible next to the copy. On the 2-core machine of docs/benchmarks.md,
/// 10M parameters: 1 MiB was the best of 256 KiB to 16 MiB, 16 MiB the worst (larger
/// than the 8 MiB stream window, and no overlap to speak of).
pub const PIECE_BYTES: usize = 1024 * 1024;

/// Largest message either side decodes or encodes: 256 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// HTTP/2 per-stream flow-control window: 8 MiB, so a large tensor message streams
/// without waiting for a window update every 64 KiB (the HTTP/2 default).
pub const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// HTTP/2 per-connection flow-control window: 16 MiB.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Largest HTTP/2 frame the server accepts: 1 MiB (the default is 16 KiB).
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// Most dimensions a tensor's shape may declare: 8 (the models have at most 4). A shape is
/// peer input; bounding its length bounds what checking and quoting it costs.
pub const MAX_RANK: usize = 8;
