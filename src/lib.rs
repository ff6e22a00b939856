//! The `downpour` command: the local launcher and the subcommands that run a server or a worker.
//!
//! # Layout
//! - [`allocator`]: allocator settings for every process (large buffers stay on the heap).
//! - [`bench`]: `bench`: the speedup lab: sweeps, statistics, a cost model, microbenchmarks, plots.
//! - [`cli`]: the command line and the job flags shared by every subcommand.
//! - [`commands`]: `server` and `worker`: runtimes with capped threads, signals, shutdown.
//! - [`evaluate`]: `evaluate`: saved weights' test metrics on a job's split; the split written out.
//! - [`launch`]: `train`: one server and N worker processes on loopback, watched to the end.
//! - [`processes`]: child processes with log files, tied to the launcher's life.
//! - [`progress`]: the progress bar and epoch lines.
//! - [`report`]: the JSON run report.
//! - [`weights`]: trained weights as safetensors.

pub mod allocator;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod evaluate;
pub mod launch;
pub mod processes;
pub mod progress;
pub mod report;
pub mod weights;
