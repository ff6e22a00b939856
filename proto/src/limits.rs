//! Message-size limits, set on purpose on both sides.
//!
//! tonic's default receive limit is 4 MiB; a 10-million-parameter model is 40 MB
//! of f32s per pull and per push. 256 MiB leaves room for 60M parameters and
//! stops a runaway message before it exhausts memory.

/// Largest message either side decodes or encodes: 256 MiB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
