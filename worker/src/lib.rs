//! Downpour's gradient worker.
//!
//! # Layout
//! - [`model`]: models with forward and backward passes on ndarray.
//! - [`client_config`]: everything a client needs to reach a server: address, token, TLS.
//! - [`client`]: typed calls to one parameter server.
//! - [`sharded_server`]: one connection per server shard; parameters assembled from the parts.
//! - [`parameter_service`]: what the training loop needs from a server, as a trait (gRPC here;
//!   in process in the bench crate); pull and exchange facts as structs.
//! - [`metrics`]: the worker's Prometheus metrics: steps, samples, phase times, loss.
//! - [`phases`]: a worker's running per-phase time totals, sent with each push.
//! - [`sabotage`]: tests only: a worker that pushes garbage or huge gradients.
//! - `step_compute`: one step's compute (batch, gradient, loss), shared by both loops.
//! - [`trainer`]: the training loop: register, pull, compute, push, evaluate.

pub mod client;
pub mod client_config;
pub mod metrics;
pub mod model;
pub mod parameter_service;
pub mod phases;
pub mod sabotage;
pub mod sharded_server;
mod step_compute;
pub mod trainer;

pub use client::{ClientError, ServerClient};
pub use client_config::{ClientConfig, ClientIdentity, ClientTls};
pub use parameter_service::{ParameterService, PullRequest, PulledStep, StepExchange};
pub use trainer::{WorkerError, WorkerOptions, WorkerSummary, run, train_with};
