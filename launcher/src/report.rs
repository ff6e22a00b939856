//! The JSON run report `downpour train` writes: the job, per-epoch metrics, per-worker
//! counters, staleness statistics, and the final metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use downpour_core::data::Standardization;
use downpour_core::status::{
    EpochMetrics, Evaluation, ServerStatus, ShardStatus, StalenessStats, WorkerStatus,
};
use downpour_core::timing::TimingReport;

/// The final numbers of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    /// Classification: test accuracy of the final parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Regression: test mean squared error of the final parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_mse: Option<f64>,
    /// Test loss of the final parameters.
    pub test_loss: f64,
    /// Launcher wall time, from start to the job's end (process start-up included).
    pub wall_seconds: f64,
    /// Training time on the server's clock: first registration to the final evaluation.
    pub training_seconds: f64,
    /// Samples trained on, over all workers.
    pub samples: u64,
    /// `samples / training_seconds`.
    pub samples_per_second: f64,
    /// Updates applied.
    pub version: u64,
}

/// Staleness over all workers, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalenessSummary {
    /// Gradients observed.
    pub count: u64,
    /// Mean staleness.
    pub mean: f64,
    /// Largest staleness.
    pub max: u64,
    /// `histogram[s]` gradients had staleness `s` (last bucket: that or more).
    pub histogram: Vec<u64>,
}

impl From<&StalenessStats> for StalenessSummary {
    fn from(s: &StalenessStats) -> Self {
        Self {
            count: s.count,
            mean: s.mean(),
            max: s.max,
            histogram: s.histogram.clone(),
        }
    }
}

/// Where the run's files are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFiles {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The job as the server ran it (TOML).
    pub job: PathBuf,
    /// The final weights (safetensors).
    pub weights: PathBuf,
    /// Process logs.
    pub logs: Vec<PathBuf>,
    /// `metrics.csv`: one row per evaluated epoch, written as training went.
    #[serde(default)]
    pub metrics_csv: PathBuf,
    /// The TensorBoard event file, with `--tensorboard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<PathBuf>,
}

/// The machine the run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// Logical cores available to the launcher.
    pub cores: usize,
    /// Worker processes, each computing on one thread.
    pub worker_processes: usize,
    /// Parameter-server processes (shards), each with two runtime threads.
    pub server_processes: usize,
}

/// What the run did to its data, so an evaluation elsewhere can reproduce it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// Samples in the training split.
    pub train_samples: usize,
    /// The training split's per-feature mean and standard deviation, applied to both
    /// splits, when the job standardises (the same as in the weights file's metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardization: Option<Standardization>,
    /// Class `k`'s name, `class_names[k]`, when the labels were names (sorted order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
}

/// The run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The job as run.
    pub job: serde_json::Value,
    /// Whether the job ran to its end; false when `train` was interrupted (Ctrl-C), and then
    /// the final numbers are the last evaluation's and the weights the last version's.
    #[serde(default = "finished_by_default")]
    pub finished: bool,
    /// `sync` or `async`.
    pub consistency: String,
    /// The machine.
    pub hardware: Hardware,
    /// Per-epoch training loss and evaluations.
    pub epochs: Vec<EpochMetrics>,
    /// Every evaluation, in order.
    pub evaluations: Vec<Evaluation>,
    /// Per-worker counters.
    pub workers: Vec<WorkerStatus>,
    /// Staleness over all workers, in versions (updates between a gradient's pull and push).
    pub staleness: StalenessSummary,
    /// Staleness over all workers, in steps (how far the fastest worker was ahead; SSP bounds it).
    pub step_staleness: StalenessSummary,
    /// Each server shard: the values it owns and the traffic it served.
    pub shards: Vec<ShardStatus>,
    /// Pushes the server refused, by reason, over every shard (each refused push left
    /// the parameters unchanged).
    #[serde(default)]
    pub refused_pushes: BTreeMap<String, u64>,
    /// The run's files.
    pub files: RunFiles,
    /// The data's split size, standardisation and class names.
    #[serde(default)]
    pub data: DataReport,
    /// The final numbers.
    #[serde(rename = "final")]
    pub final_metrics: FinalMetrics,
    /// Where the time went: per-worker phases, the server's work, the job's clock.
    #[serde(default)]
    pub timing: TimingReport,
}

fn finished_by_default() -> bool {
    true
}

impl RunReport {
    /// Builds the report from the server's final status.
    #[must_use]
    pub fn new(
        status: &ServerStatus,
        shards: Vec<ShardStatus>,
        wall_seconds: f64,
        files: RunFiles,
        hardware: Hardware,
        data: DataReport,
    ) -> Self {
        // An interrupted run has no final evaluation: its last one stands in.
        let final_eval = status
            .final_evaluation
            .clone()
            .or_else(|| status.evaluations.last().cloned());
        let training_seconds = status.elapsed_seconds;
        let mut refused_pushes = BTreeMap::new();
        for shard in &shards {
            for (reason, n) in &shard.refused_pushes {
                let total: &mut u64 = refused_pushes.entry(reason.clone()).or_default();
                *total = total.saturating_add(*n);
            }
        }
        Self {
            refused_pushes,
            job: status.job.clone(),
            finished: status.finished,
            consistency: status.consistency.name().to_string(),
            hardware,
            epochs: status.epochs.clone(),
            evaluations: status.evaluations.clone(),
            workers: status.workers.clone(),
            staleness: StalenessSummary::from(&status.staleness),
            step_staleness: StalenessSummary::from(&status.step_staleness),
            shards,
            files,
            data,
            final_metrics: FinalMetrics {
                test_accuracy: final_eval.as_ref().and_then(|e| e.test_accuracy),
                test_mse: final_eval.as_ref().and_then(|e| e.test_mse),
                test_loss: final_eval.as_ref().map_or(f64::NAN, |e| e.test_loss),
                wall_seconds,
                training_seconds,
                samples: status.samples_trained,
                samples_per_second: if training_seconds > 0.0 {
                    status.samples_trained as f64 / training_seconds
                } else {
                    0.0
                },
                version: status.version,
            },
            timing: status.timing.clone(),
        }
    }

    /// Writes the report as pretty JSON.
    ///
    /// # Errors
    /// The OS error when the file cannot be written.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("a report always serialises");
        std::fs::write(path, json + "\n")
    }
}
