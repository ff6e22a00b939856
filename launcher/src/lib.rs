//! The launcher: `downpour train` (one server and N worker processes on loopback) and the
//! subcommands that run a server, a worker, a health check or an export. The speedup lab
//! (crate `downpour-bench`) runs jobs through it; the `downpour` binary joins both.
//!
//! # Layout
//! - [`allocator`]: allocator settings for every process (large buffers stay on the heap).
//! - [`certs`]: `certs`: a CA, a server and a client certificate for TLS, made with rcgen.
//! - [`cli`]: the launcher's subcommands and the job flags they share.
//! - [`commands`]: `server` and `worker`: runtimes with capped threads, signals, shutdown.
//! - [`credentials`]: the token, session-key and TLS flags, and reading the files they name.
//! - [`evaluate`]: `evaluate`: saved weights' test metrics on a job's split; the split written out.
//! - [`launch`]: `train`: one server and N worker processes on loopback, watched to the end.
//! - [`outputs`]: `server --output-dir`: a finished job's weights, report and metrics.
//! - [`metrics_endpoint`]: `--metrics-listen`: `GET /metrics` for Prometheus, bounded against hostile clients.
//! - [`processes`]: child processes with log files, tied to the launcher's life.
//! - [`progress`]: the status line (80 columns, with an ETA) and epoch lines, plain when piped.
//! - [`report`]: the JSON run report.
//! - [`run_log`]: `metrics.csv` and TensorBoard scalars, written as training goes.
//! - [`tensorboard`]: TensorBoard event files.
//! - [`weights`]: trained weights as safetensors.

pub mod allocator;
pub mod certs;
pub mod cli;
pub mod commands;
pub mod credentials;
pub mod evaluate;
pub mod launch;
pub mod metrics_endpoint;
pub mod outputs;
pub mod processes;
pub mod progress;
pub mod report;
pub mod run_log;
pub mod tensorboard;
pub mod weights;
