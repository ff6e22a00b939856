//! What the server reports about a job: progress, per-worker counters, losses, evaluations.
//!
//! The server fills these in; the launcher's progress bar and run report read them.

use serde::{Deserialize, Serialize};

use crate::consistency::ConsistencyMode;
use crate::timing::TimingReport;

/// How every refusal of a finished job begins, so that a worker knows the job is over
/// (and exits 0) rather than trying again.
pub const JOB_FINISHED: &str = "job finished";

/// Test metrics computed by a worker on the parameters of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The worker that evaluated.
    pub worker_id: u32,
    /// The parameter version evaluated.
    pub version: u64,
    /// Mean test loss.
    pub test_loss: f64,
    /// Classification: fraction of test samples classified correctly.
    pub test_accuracy: Option<f64>,
    /// Regression: mean squared error per output.
    pub test_mse: Option<f64>,
    /// Samples in the test set.
    pub test_samples: u64,
    /// True for the evaluation of the final parameters.
    pub is_final: bool,
}

/// An evaluation report whose values cannot be true.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvaluationError {
    /// A value that is not finite or outside its range.
    #[error("{what} must be {range}, got {value}")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// Its range, in words.
        range: &'static str,
        /// The value sent.
        value: f64,
    },
}

impl Evaluation {
    /// Checks that every value is finite and in its range: a loss and a mean squared
    /// error at least 0, an accuracy in [0, 1].
    ///
    /// # Errors
    /// [`EvaluationError::OutOfRange`] for the first value that is not.
    pub fn check(&self) -> Result<(), EvaluationError> {
        let at_least_zero = "finite and at least 0";
        let checks = [
            (
                "test_loss",
                Some(self.test_loss),
                at_least_zero,
                0.0,
                f64::MAX,
            ),
            (
                "test_accuracy",
                self.test_accuracy,
                "finite, in [0, 1]",
                0.0,
                1.0,
            ),
            ("test_mse", self.test_mse, at_least_zero, 0.0, f64::MAX),
        ];
        for (what, value, range, low, high) in checks {
            if let Some(value) = value
                && !(value.is_finite() && (low..=high).contains(&value))
            {
                return Err(EvaluationError::OutOfRange { what, range, value });
            }
        }
        Ok(())
    }
}

/// Gradient staleness observed: current version minus the gradient's base version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StalenessStats {
    /// Gradients observed.
    pub count: u64,
    /// Largest staleness seen.
    pub max: u64,
    /// Sum of staleness (mean = sum / count).
    pub sum: u64,
    /// `histogram[s]` gradients had staleness `s`; the last bucket holds everything at or beyond it.
    pub histogram: Vec<u64>,
}

impl StalenessStats {
    /// Buckets in the histogram; staleness at or beyond the last one is counted there.
    pub const BUCKETS: usize = 33;

    /// Records one gradient's staleness.
    pub fn record(&mut self, staleness: u64) {
        if self.histogram.is_empty() {
            self.histogram = vec![0; Self::BUCKETS];
        }
        self.count += 1;
        self.sum += staleness;
        self.max = self.max.max(staleness);
        let bucket = usize::try_from(staleness)
            .unwrap_or(usize::MAX)
            .min(Self::BUCKETS - 1);
        self.histogram[bucket] += 1;
    }

    /// Adds another worker's observations.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.histogram.is_empty() {
            self.histogram = vec![0; Self::BUCKETS];
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
        for (a, b) in self.histogram.iter_mut().zip(&other.histogram) {
            *a += b;
        }
    }

    /// Mean staleness, 0 when nothing was observed.
    #[must_use]
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// Where a worker stands in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Registered and training.
    Active,
    /// Pushed its last step and waits for the job to finish.
    Finished,
    /// Left the job.
    Left,
    /// Missed its heartbeat timeout and was removed from the job (it may come back).
    Dead,
}

impl WorkerState {
    /// Whether the worker is still part of the job (active or finished).
    #[must_use]
    pub fn is_member(self) -> bool {
        matches!(self, Self::Active | Self::Finished)
    }
}

/// Counters of one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's id.
    pub id: u32,
    /// The label it registered with.
    pub name: String,
    /// Where it stands.
    pub state: WorkerState,
    /// The logical data shards it computes now.
    pub data_shards: Vec<u32>,
    /// Pulls served.
    pub pulls: u64,
    /// Gradients accepted.
    pub pushes: u64,
    /// Gradients refused (malformed, non-finite, out of order).
    pub rejected_pushes: u64,
    /// Samples in the accepted gradients.
    pub samples: u64,
    /// The next step it will push.
    pub next_step: u64,
    /// Training loss of its last accepted gradient.
    pub last_loss: Option<f64>,
    /// Staleness of its gradients in versions (updates applied between pull and push).
    pub staleness: StalenessStats,
    /// Staleness of its gradients in steps: how many steps the fastest worker had
    /// completed beyond this gradient's step when it arrived (the quantity SSP bounds).
    pub step_staleness: StalenessStats,
    /// Gradients discarded by the `drop` staleness policy.
    pub dropped: u64,
}

/// One parameter-server shard: what it owns and the traffic it served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// This shard's index, `0..count`.
    pub index: usize,
    /// Shards in the job.
    pub count: usize,
    /// Parameter values this shard owns.
    pub values: usize,
    /// Pushes received (accepted or not).
    pub pushes: u64,
    /// Pushes accepted and applied (async, ssp) or held for the step's combined update (sync).
    #[serde(default)]
    pub applied_pushes: u64,
    /// Pushes of a step already received: retries, accepted and not applied again.
    #[serde(default)]
    pub duplicate_pushes: u64,
    /// Pushes accepted and discarded by the `drop` staleness policy.
    #[serde(default)]
    pub dropped_pushes: u64,
    /// Pulls served.
    pub pulls: u64,
    /// Tensor bytes received in pushes.
    pub bytes_received: u64,
    /// Tensor bytes sent in pulls.
    pub bytes_sent: u64,
    /// Pushes refused, by reason (`non_finite`, `value_bound`, `norm_bound`, `malformed`,
    /// `out_of_order`, …): the parameters were unchanged by each.
    #[serde(default)]
    pub refused_pushes: std::collections::BTreeMap<String, u64>,
}

/// What a server shard did with checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointStatus {
    /// The checkpoint the server resumed from, if it did.
    pub resumed_from: Option<String>,
    /// The version it resumed at.
    pub resumed_version: Option<u64>,
    /// Checkpoints written since the server started.
    pub written: u64,
    /// The last checkpoint written.
    pub last: Option<String>,
    /// The version of the last checkpoint written.
    pub last_version: Option<u64>,
}

/// Training loss and test metrics of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 0-based epoch.
    pub epoch: u64,
    /// Mean training loss over the epoch's gradients, weighted by samples.
    pub train_loss: f64,
    /// Samples trained on in the epoch.
    pub samples: u64,
    /// The evaluation at the end of the epoch, when there was one.
    pub evaluation: Option<Evaluation>,
}

/// Everything the server reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The job the server runs, as the job file would state it.
    pub job: serde_json::Value,
    /// The consistency mode (`sync`, `ssp` or `async` in JSON).
    pub consistency: ConsistencyMode,
    /// The shard that answered, and its traffic.
    pub shard: ShardStatus,
    /// Checkpoints resumed from and written.
    #[serde(default)]
    pub checkpoint: CheckpointStatus,
    /// Updates applied so far.
    pub version: u64,
    /// Steps per epoch, per worker.
    pub steps_per_epoch: u64,
    /// Steps each worker trains for in the whole job.
    pub total_steps: u64,
    /// Job progress in epochs (fractional).
    pub epoch_progress: f64,
    /// Workers the job waits for before training starts.
    pub expected_workers: usize,
    /// True once training is over (every worker pushed its last step) and the final evaluation is in.
    pub finished: bool,
    /// Seconds since the first worker registered.
    pub elapsed_seconds: f64,
    /// Samples in all accepted gradients.
    pub samples_trained: u64,
    /// Per-worker counters, by id (dead workers' records are folded into
    /// `dead_workers_folded` a while after they died).
    pub workers: Vec<WorkerStatus>,
    /// Dead workers whose records were dropped from `workers` (their samples still count).
    #[serde(default)]
    pub dead_workers_folded: u64,
    /// Per-epoch training loss and evaluations.
    pub epochs: Vec<EpochMetrics>,
    /// Every evaluation reported, in order.
    pub evaluations: Vec<Evaluation>,
    /// The evaluation of the final parameters.
    pub final_evaluation: Option<Evaluation>,
    /// Staleness over all workers, in versions.
    pub staleness: StalenessStats,
    /// Staleness over all workers, in steps.
    pub step_staleness: StalenessStats,
    /// Where the time went: worker phases, server work, the job's clock. Filled in by the
    /// gRPC layer, which owns the clocks; absent from older servers.
    #[serde(default)]
    pub timing: TimingReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluations_with_impossible_values_are_refused() {
        let good = Evaluation {
            worker_id: 0,
            version: 3,
            test_loss: 0.25,
            test_accuracy: Some(0.9),
            test_mse: None,
            test_samples: 100,
            is_final: true,
        };
        good.check().unwrap();
        let bad = [
            (
                Evaluation {
                    test_loss: f64::NAN,
                    ..good.clone()
                },
                "test_loss must be finite and at least 0, got NaN",
            ),
            (
                Evaluation {
                    test_loss: -1.0,
                    ..good.clone()
                },
                "test_loss must be finite and at least 0, got -1",
            ),
            (
                Evaluation {
                    test_accuracy: Some(f64::INFINITY),
                    ..good.clone()
                },
                "test_accuracy must be finite, in [0, 1], got inf",
            ),
            (
                Evaluation {
                    test_accuracy: Some(1.5),
                    ..good.clone()
                },
                "test_accuracy must be finite, in [0, 1], got 1.5",
            ),
            (
                Evaluation {
                    test_mse: Some(f64::NEG_INFINITY),
                    ..good.clone()
                },
                "test_mse must be finite and at least 0, got -inf",
            ),
        ];
        for (e, message) in bad {
            assert_eq!(e.check().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn staleness_histogram_counts_and_caps() {
        let mut s = StalenessStats::default();
        for v in [0, 0, 2, 100] {
            s.record(v);
        }
        assert_eq!(s.count, 4);
        assert_eq!(s.max, 100);
        assert_eq!(s.histogram[0], 2);
        assert_eq!(s.histogram[2], 1);
        assert_eq!(s.histogram[StalenessStats::BUCKETS - 1], 1);
        assert!((s.mean() - 25.5).abs() < 1e-12);
        let mut total = StalenessStats::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.count, 8);
        assert_eq!(total.histogram[0], 4);
    }
}
