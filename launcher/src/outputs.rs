//! `downpour server --output-dir DIR`: when the job has finished, the server writes what a
//! local `downpour train` leaves in its run directory, so that a Compose or cluster run hands
//! over a trained model without a separate export:
//!
//! - `weights.safetensors`: the final parameters, with the same metadata as `train` writes
//!   (version, job, standardisation statistics, class names);
//! - `report.json`: the run report (`RunReport`), built from the server's last status;
//! - `metrics.csv`: one row per evaluated epoch (see [`crate::run_log`]);
//! - `job.toml`: the job as the server ran it.
//!
//! Only a single server writes outputs: with several shards each holds a part of the model,
//! so `--output-dir` is refused at start-up there (use `downpour export` against every shard).
//! A server stopped before the job has finished writes nothing and says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use downpour_server::ServeOutcome;

use crate::report::{DataReport, Hardware, RunFiles, RunReport};
use crate::run_log::RunLog;
use crate::weights::{WeightsError, data_metadata, write_safetensors};

/// Why the outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The weights could not be written.
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

/// Where each output went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// `weights.safetensors`.
    pub weights: PathBuf,
    /// `report.json`.
    pub report: PathBuf,
}

/// Writes the finished job's weights, report, metrics and job file into `dir` (created).
///
/// # Errors
/// [`OutputError`] naming the file that could not be written.
pub fn write(
    dir: &Path,
    job_toml: &str,
    data: &DataReport,
    outcome: &ServeOutcome,
) -> Result<Outputs, OutputError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let status = &outcome.status;
    let job_path = dir.join("job.toml");
    std::fs::write(&job_path, job_toml).map_err(io(&job_path))?;
    let weights = dir.join("weights.safetensors");
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("downpour_version".to_string(), status.version.to_string()),
        ("job".to_string(), status.job.to_string()),
    ]);
    metadata.extend(data_metadata(
        data.standardization.as_ref(),
        data.class_names.as_deref(),
    ));
    write_safetensors(&weights, &outcome.params, metadata)?;
    let mut log =
        RunLog::create(dir, None).map_err(|(path, source)| OutputError::Io { path, source })?;
    log.observe(status)
        .map_err(|(path, source)| OutputError::Io { path, source })?;
    let files = RunFiles {
        run_dir: dir.to_path_buf(),
        job: job_path,
        weights: weights.clone(),
        logs: Vec::new(),
        metrics_csv: log.csv_path().to_path_buf(),
        tensorboard: None,
    };
    let hardware = Hardware {
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        worker_processes: status.workers.len(),
        server_processes: status.shard.count,
    };
    let report = RunReport::new(
        status,
        vec![status.shard.clone()],
        status.elapsed_seconds,
        files,
        hardware,
        data.clone(),
    );
    let report_path = dir.join("report.json");
    report.write(&report_path).map_err(io(&report_path))?;
    Ok(Outputs {
        weights,
        report: report_path,
    })
}
