//! Downpour's parameter server.
//!
//! # Layout
//! - [`auth`]: the bearer-token check on every RPC (job token, read-only token).
//! - [`session`]: per-worker session secrets, derived from the servers' key and checked in constant time.
//! - [`job`]: the job file, its validation, and the validated [`job::Job`].
//! - [`optim`]: the optimizers, one file each, with PyTorch's exact update rules.
//! - [`schedule`]: learning-rate schedules, applied once per optimizer step.
//! - [`clip`]: global gradient-norm clipping.
//! - [`store`]: the parameter store: weights, optimizer state, version.
//! - [`robustness`]: the `[robustness]` section and the one check of a gradient's values (finite, bounded).
//! - [`aggregation`]: how a sync step's gradients are combined: mean, trimmed mean, median.
//! - [`barrier`]: the sync (BSP) barrier that combines one gradient per worker per step.
//! - [`consistency`]: the consistency rule as a type: when a step may start, what a stale gradient becomes.
//! - [`checkpoint`]: checkpoint files: atomic writes, checksums, retention, resuming from the newest valid one.
//! - [`metrics`]: the shard's Prometheus metrics: read from the status at scrape time, or observed.
//! - [`limits`]: the `[limits]` section: registered workers, names, connections, handshake and keep-alive timeouts.
//! - [`listener`]: the listener: a bound on connections and on how long one may stay silent before its HTTP/2 preface.
//! - [`membership`]: registered workers, their liveness and counters.
//! - [`ownership`]: which worker computes which logical data shard.
//! - [`training_metrics`]: losses per epoch and reported evaluations.
//! - [`server_core`]: the server's logic, free of I/O, driven by calls.
//! - [`resume`]: starting a shard afresh or from its newest valid checkpoint.
//! - [`service`]: the gRPC layer over the core, periodic and shutdown checkpoints, and [`service::serve`].
//! - [`timing`]: where a job's time goes: worker phases, server work, the job's clock.

pub mod aggregation;
pub mod auth;
pub mod barrier;
pub mod checkpoint;
pub mod clip;
pub mod consistency;
pub mod job;
pub mod limits;
pub mod listener;
pub mod membership;
pub mod metrics;
pub mod optim;
pub mod ownership;
pub mod resume;
pub mod robustness;
pub mod schedule;
pub mod server_core;
pub mod service;
pub mod session;
pub mod store;
pub mod timing;
pub mod training_metrics;

pub use job::{Job, JobError, JobSpec};
pub use service::{ServeError, ServeOptions, ServeOutcome, serve};
