//! Downpour's gradient worker.
//!
//! # Layout
//! - [`model`]: models with forward and backward passes on ndarray.
//! - [`client`]: typed calls to one parameter server.
//! - [`sharded_server`]: one connection per server shard; parameters assembled from the parts.
//! - [`phases`]: a worker's running per-phase time totals, sent with each push.
//! - [`trainer`]: the training loop: register, pull, compute, push, evaluate.

pub mod client;
pub mod model;
pub mod phases;
pub mod sharded_server;
pub mod trainer;

pub use client::{ClientError, ServerClient};
pub use trainer::{WorkerError, WorkerOptions, WorkerSummary, run};
