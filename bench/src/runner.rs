//! Runs one configuration of the sweep: the job with N workers through the launcher
//! (`downpour train`'s own code: one server and N worker processes on loopback), and
//! reads what it measured.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::config::{BenchConfig, Configuration};
use crate::measure::RunMeasurement;
use downpour_launch::cli::{JobArgs, TrainArgs};
use downpour_launch::launch::{self, LaunchError};

/// Runs `c` once (repeat number `repeat`), its files under `runs_dir`.
///
/// # Errors
/// [`LaunchError`] when the job is invalid, a process fails, or on interruption.
pub async fn run_once(
    config: &BenchConfig,
    c: Configuration,
    repeat: usize,
    runs_dir: &Path,
    interrupt: &CancellationToken,
) -> Result<RunMeasurement, LaunchError> {
    let name = format!("{}-s{}-n{}-r{repeat}", c.label(), c.servers, c.workers);
    let dir = runs_dir.join(&name);
    std::fs::create_dir_all(&dir).map_err(|source| LaunchError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let job_path = dir.join("bench-job.toml");
    std::fs::write(&job_path, config.spec_for(c).to_toml()).map_err(|source| LaunchError::Io {
        what: format!("writing {}", job_path.display()),
        source,
    })?;
    let args = TrainArgs {
        job: JobArgs {
            job: Some(job_path),
            ..JobArgs::default()
        },
        report: None,
        run_dir: Some(dir),
        servers: c.servers,
        slow_worker: Vec::new(),
        sabotage_worker: Vec::new(),
        simulate_compute_ms: config.simulate_compute_ms,
        quiet: true,
        tensorboard: None,
        // The folder already holds the sweep's job file.
        force: true,
        resume: None,
        metrics_port_base: None,
        tls: false,
    };
    let outcome = launch::train(&args, interrupt.clone()).await?;
    Ok(RunMeasurement::from_report(
        c,
        repeat,
        &outcome.report,
        config.target,
    ))
}
