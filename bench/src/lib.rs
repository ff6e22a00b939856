//! `downpour bench`, the speedup lab (crate `downpour-bench`, over the launcher crate `downpour-launch`): the same job for several worker counts and
//! consistency modes, with repeats, as real processes on this machine; throughput,
//! speedup, efficiency, time to a target and the per-step phase breakdown, each a median
//! with its spread; a cost model's prediction beside them; transport and optimizer
//! microbenchmarks; a single-process baseline. docs/benchmarks.md explains the method.
//!
//! # Layout
//! - [`config`]: the command line, presets and targets, validated into a sweep.
//! - [`machine`]: cores, CPU, memory and load of the machine.
//! - [`runner`]: one configuration through the launcher (`downpour train`'s code).
//! - [`measure`]: what one run measured, read from its report.
//! - [`local_trainer`]: the worker's model and the server's optimizer step in one process.
//! - [`in_process`]: the server's core behind the worker's `ParameterService`: the worker's
//!   own loop with no network.
//! - [`baseline`]: the single-process trainer, repeated like the sweep.
//! - [`transport`]: gRPC push and pull against raw TCP on loopback.
//! - [`apply_rate`]: the optimizer step against memcpy.
//! - [`stats`]: medians and their spread.
//! - [`cost_model`]: the prediction from a one-worker profile and the core count.
//! - [`results`]: summaries, speedups, predictions and notes.
//! - [`output`]: Markdown, CSV and JSON.
//! - [`plots`]: speedup and phase-breakdown SVGs.
//! - [`compose`]: the Docker Compose commands for per-worker CPU quotas.

pub mod apply_rate;
pub mod baseline;
pub mod compose;
pub mod config;
pub mod cost_model;
pub mod in_process;
pub mod local_trainer;
pub mod machine;
pub mod measure;
pub mod output;
pub mod plots;
pub mod results;
pub mod runner;
pub mod stats;
pub mod transport;

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

pub use config::{BenchArgs, BenchConfig, ConfigError};
pub use results::BenchReport;

use baseline::BaselineError;
use config::Configuration;
use downpour_launch::launch::LaunchError;
use machine::Machine;
use measure::{BaselineMeasurement, RunMeasurement};
use plots::PlotError;
use results::Measurements;
use transport::TransportError;

/// Other processes' share of the cores under which the machine counts as quiet.
const QUIET: f64 = 0.2;

/// Why the lab stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The sweep is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A run failed or was interrupted.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A transport benchmark failed.
    #[error("transport benchmark: {0}")]
    Transport(#[from] TransportError),
    /// The baseline failed.
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// An output file could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BenchError {
    /// Whether the lab stopped because of Ctrl-C or SIGTERM.
    #[must_use]
    pub fn interrupted(&self) -> bool {
        matches!(self, Self::Launch(LaunchError::Interrupted))
    }
}

/// Progress, for the binary to show.
#[derive(Debug)]
pub enum BenchEvent<'a> {
    /// A stage begins.
    Stage(String),
    /// A distributed run finished.
    Run {
        /// 1-based.
        index: usize,
        /// Runs in the sweep.
        total: usize,
        /// What it measured.
        measurement: &'a RunMeasurement,
    },
    /// A baseline run finished.
    Baseline(&'a BaselineMeasurement),
}

/// What the lab produced.
#[derive(Debug)]
pub struct BenchOutcome {
    /// The results.
    pub report: BenchReport,
    /// The files written (JSON, CSV, Markdown, SVG).
    pub files: Vec<PathBuf>,
}

/// Runs the sweep, the baseline and the microbenchmarks, and writes the files into
/// `config.out`. Repeats are the outer loop (each repeat runs every configuration and the
/// baseline once), so a change in the machine's load spreads over all of them.
///
/// # Errors
/// [`BenchError`] when a run fails, a file cannot be written, or on interruption.
pub async fn run(
    config: &BenchConfig,
    interrupt: CancellationToken,
    on_event: &mut dyn FnMut(BenchEvent<'_>),
) -> Result<BenchOutcome, BenchError> {
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|source| BenchError::Io {
        what: format!("creating {}", out.display()),
        source,
    })?;
    let mut machine = Machine::detect();

    let mut transport_results = Vec::new();
    let mut apply_rates = Vec::new();
    if !config.transport_params.is_empty() {
        on_event(BenchEvent::Stage(format!(
            "transport: gRPC against raw TCP for {:?} parameters",
            config.transport_params
        )));
        transport_results = transport::run(
            &config.transport_params,
            config.transport_repeats,
            &out.join("transport"),
            &interrupt,
        )
        .await?;
        on_event(BenchEvent::Stage(
            "optimizer apply rate against memcpy".into(),
        ));
        let (job, sizes, repeats) = (
            config.job.clone(),
            config.transport_params.clone(),
            config.transport_repeats,
        );
        apply_rates =
            tokio::task::spawn_blocking(move || apply_rate::measure(&job, &sizes, repeats))
                .await
                .map_err(|e| BaselineError::Thread(e.to_string()))?;
    }

    let configurations: Vec<Configuration> = config.configurations();
    let total = configurations.len() * config.repeats;
    let runs_dir = out.join("runs");
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for repeat in 0..config.repeats {
        if config.baseline {
            on_event(BenchEvent::Stage(format!(
                "single-process baseline, repeat {}",
                repeat + 1
            )));
            let busy = machine::wait_for_quiet(config.wait_idle, QUIET).await;
            let probe = machine::OthersProbe::start();
            let mut b = baseline::run_once(&config.job, repeat, config.target).await?;
            b.busy_before = busy;
            b.others_during = probe.and_then(machine::OthersProbe::finish);
            on_event(BenchEvent::Baseline(&b));
            baseline_runs.push(b);
        }
        for &c in &configurations {
            if interrupt.is_cancelled() {
                return Err(LaunchError::Interrupted.into());
            }
            let busy = machine::wait_for_quiet(config.wait_idle, QUIET).await;
            let probe = machine::OthersProbe::start();
            let mut m = runner::run_once(config, c, repeat, &runs_dir, &interrupt).await?;
            m.busy_before = busy;
            m.others_during = probe.and_then(machine::OthersProbe::finish);
            runs.push(m);
            on_event(BenchEvent::Run {
                index: runs.len(),
                total,
                measurement: runs.last().expect("just pushed"),
            });
        }
    }
    machine.finish();

    let report = BenchReport::build(
        config,
        Measurements {
            machine,
            runs,
            baseline: baseline_runs,
            transport: transport_results,
            apply_rates,
        },
    );
    let mut files = output::write_files(&report, out).map_err(|source| BenchError::Io {
        what: format!("writing the results into {}", out.display()),
        source,
    })?;
    files.extend(plots::draw(&report, out)?);
    Ok(BenchOutcome { report, files })
}
