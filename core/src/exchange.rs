//! What a step's exchange carries besides tensors: the facts of a pushed gradient.
//!
//! The worker sends them with each gradient, the server's core takes them as one value,
//! and the wire carries them as `downpour.v1.PushHeader`.

/// The facts of one gradient: who computed it, for which step, from which version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Push {
    /// The worker.
    pub worker: u32,
    /// The step it pushes (0-based, counted per worker).
    pub step: u64,
    /// The version of the parameters the gradient was computed from.
    pub base_version: u64,
    /// Mean training loss of the batch.
    pub loss: f64,
    /// Samples in the batch (0 with an empty gradient: the worker had no data this step).
    pub samples: u64,
}
