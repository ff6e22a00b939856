//! Message-size limits, set on purpose on both sides.
//!
//! tonic's default receive limit is 4 MiB; a 10-million-parameter model is 40 MB
//! of f32s per pull and per push. 256 MiB leaves room for 60M parameters and
//! stops a runaway message before it exhausts memory.

/// Largest message either side decodes or encodes: 256 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// HTTP/2 per-stream flow-control window: 8 MiB, so a large tensor message streams
/// without waiting for a window update every 64 KiB (the HTTP/2 default).
pub const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// HTTP/2 per-connection flow-control window: 16 MiB.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Largest HTTP/2 frame the server accepts: 1 MiB (the default is 16 KiB).
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;
