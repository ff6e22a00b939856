//! Downpour's gradient worker.
//!
//! # Layout
//! - [`model`]: models with forward and backward passes on ndarray.
//! - [`client`]: typed calls to the parameter server.
//! - [`trainer`]: the training loop: register, pull, compute, push, evaluate.

pub mod client;
pub mod model;
pub mod trainer;

pub use client::{ClientError, ServerClient};
pub use trainer::{WorkerError, WorkerOptions, WorkerSummary, run};
