//! The job: what to train and how, read once from a TOML file (plus CLI overrides),
//! validated once at start-up into a [`Job`] that the rest of the server trusts.
//!
//! ```toml
//! [model]
//! kind = "mlp"
//! hidden = [128]
//!
//! [data]
//! kind = "digits"
//!
//! [training]
//! batch_size = 32
//! epochs = 60
//! workers = 4
//!
//! [optimizer]
//! name = "adam"
//! lr = 0.003
//!
//! [consistency]
//! mode = "sync"
//! ```

use serde::{Deserialize, Serialize};

use std::path::Path;

use downpour_core::data::{DataError, DataShape, DatasetKind, Standardization, TaskKind};
use downpour_core::model_spec::{ModelKind, ModelSpecError};
use downpour_core::sharding;
use downpour_core::{BatchSize, DataSpec, ModelSpec, ParameterLayout, TrainingPlan};

use crate::aggregation::AggregationRule;
use crate::limits::{LimitsError, LimitsSpec};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerError, OptimizerOverrides};
use crate::robustness::{RobustnessError, RobustnessSpec};
use crate::schedule::{ScheduleConfig, ScheduleError};

/// A job that cannot run, with the field and value at fault.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job file is not valid TOML or has unknown fields or wrong types.
    #[error("job file: {0}")]
    Parse(String),
    /// A `[training]` or `[consistency]` field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, `section.name`.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
    /// The `[model]` section is invalid or does not fit the data.
    #[error(transparent)]
    Model(#[from] ModelSpecError),
    /// The `[data]` section is invalid or its file is unreadable or malformed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The `[optimizer]` section is invalid.
    #[error(transparent)]
    Optimizer(#[from] OptimizerError),
    /// The `[schedule]` section is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The `[robustness]` section is invalid.
    #[error(transparent)]
    Robustness(#[from] RobustnessError),
    /// The `[limits]` section is invalid.
    #[error(transparent)]
    Limits(#[from] LimitsError),
}

pub use downpour_core::consistency::{ConsistencyMode, StalenessPolicy};

/// The job file's `[consistency]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencySpec {
    /// `sync`, `ssp` or `async`.
    #[serde(default)]
    pub mode: ConsistencyMode,
    /// SSP's bound τ: how many steps a worker may run ahead of the slowest. 0 behaves as
    /// sync's lock-step; a very large bound behaves as async.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<u64>,
    /// What to do with stale gradients in async and SSP modes.
    #[serde(default)]
    pub policy: StalenessPolicy,
    /// The `drop` policy's limit, in versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness: Option<u64>,
    /// Prefetch (async and ssp): while a worker computes step t + 1's gradient on the
    /// parameters it already has, it pushes step t's gradient and pulls the parameters
    /// for step t + 2, so communication runs behind compute. Every gradient is then
    /// computed from parameters that lack the worker's own previous gradient: one more
    /// step of staleness.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefetch: bool,
}

impl ConsistencySpec {
    /// Checks that the fields fit the mode.
    ///
    /// # Errors
    /// [`JobError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), JobError> {
        match (self.mode, self.staleness) {
            (ConsistencyMode::Ssp, None) => {
                return Err(invalid(
                    "consistency.staleness",
                    "ssp needs a staleness bound (steps), e.g. staleness = 2".into(),
                ));
            }
            (ConsistencyMode::Sync | ConsistencyMode::Async, Some(t)) => {
                return Err(invalid(
                    "consistency.staleness",
                    format!(
                        "a staleness bound applies to ssp only, got {t} with mode {}",
                        self.mode.name()
                    ),
                ));
            }
            _ => {}
        }
        if self.prefetch {
            match (self.mode, self.staleness) {
                (ConsistencyMode::Sync, _) => {
                    return Err(invalid(
                        "consistency.prefetch",
                        "sync applies every gradient before the next step; prefetch needs async or ssp"
                            .into(),
                    ));
                }
                (ConsistencyMode::Ssp, Some(0)) => {
                    return Err(invalid(
                        "consistency.prefetch",
                        "prefetch adds one step of staleness; ssp with staleness = 0 allows none (use 1 or more)"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        if self.mode == ConsistencyMode::Sync && self.policy != StalenessPolicy::Accept {
            return Err(invalid(
                "consistency.policy",
                format!(
                    "sync gradients are never stale; policy {:?} applies to async and ssp",
                    self.policy
                )
                .to_lowercase(),
            ));
        }
        match (self.policy, self.max_staleness) {
            (StalenessPolicy::Drop, None) => Err(invalid(
                "consistency.max_staleness",
                "the drop policy needs a limit, e.g. max_staleness = 4".into(),
            )),
            (StalenessPolicy::Accept | StalenessPolicy::Damp, Some(m)) => Err(invalid(
                "consistency.max_staleness",
                format!("only the drop policy uses a limit, got {m}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The job file's `[training]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Samples per gradient of each logical data shard: a number (1 is SGD) or `"full"`
    /// (the whole shard: batch GD). The job's global batch is `workers` times this.
    /// Ignored when `global_batch` is set.
    #[serde(default = "default_batch_size")]
    pub batch_size: BatchSize,
    /// Samples per step for the whole job, kept whatever the number of active workers:
    /// each of the `workers` logical data shards gives `global_batch / workers` per step
    /// (so it must be a multiple of `workers`), and a worker computes the batches of the
    /// shards it owns. Replaces `batch_size`. See docs/optimizers.md, "Adding workers".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    /// The linear scaling rule: multiply the optimizer's `lr` by the job's global batch
    /// (`workers × batch_size`, or `global_batch`) over this base batch, the batch `lr`
    /// was tuned for. Needs a warm-up (`schedule.warmup_steps >= 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_scaling_base_batch: Option<usize>,
    /// Passes over the training set.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Seed of the initial weights, the split, the shuffles and synthetic data.
    #[serde(default)]
    pub seed: u64,
    /// Workers the job is planned for: the training set is cut into this many data
    /// shards. Workers may join later (they take over data shards) and may die (their
    /// shards are handed to the others).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Training starts once this many workers have registered (default: `workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_workers: Option<usize>,
    /// Evaluate on the test split every this many steps; 0 means once per epoch.
    #[serde(default)]
    pub eval_every: u64,
    /// Clip the global 2-norm of each applied gradient to this value (`clip_grad_norm_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f32>,
}

fn default_batch_size() -> BatchSize {
    BatchSize::Samples(32)
}
fn default_epochs() -> usize {
    60
}
fn default_workers() -> usize {
    1
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            global_batch: None,
            lr_scaling_base_batch: None,
            epochs: default_epochs(),
            seed: 0,
            workers: default_workers(),
            min_workers: None,
            eval_every: 0,
            clip_grad_norm: None,
        }
    }
}

/// The default job's optimizer: Adam, lr 0.003, PyTorch's defaults otherwise.
/// (An `[optimizer]` section that names adam without an lr gets PyTorch's 0.001.)
fn default_optimizer() -> OptimizerConfig {
    let mut adam = OptimizerConfig::default();
    adam.apply_overrides(&OptimizerOverrides {
        lr: Some(3e-3),
        ..OptimizerOverrides::default()
    })
    .expect("adam takes an lr");
    adam
}

/// The job file's `[fault_tolerance]` section: liveness and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultToleranceSpec {
    /// A worker not heard from for this many seconds is declared dead: it leaves the
    /// sync barrier and its data shards go to the others.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: f64,
    /// Write a checkpoint every this many versions (updates), when a checkpoint directory is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<u64>,
    /// Write a checkpoint every this many seconds, when a checkpoint directory is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_seconds: Option<f64>,
    /// Checkpoints kept in the directory (older ones are deleted).
    #[serde(default = "default_keep_checkpoints")]
    pub keep_checkpoints: usize,
}

fn default_heartbeat_timeout() -> f64 {
    10.0
}
fn default_keep_checkpoints() -> usize {
    3
}

impl Default for FaultToleranceSpec {
    fn default() -> Self {
        Self {
            heartbeat_timeout: default_heartbeat_timeout(),
            checkpoint_every_steps: None,
            checkpoint_every_seconds: None,
            keep_checkpoints: default_keep_checkpoints(),
        }
    }
}

impl FaultToleranceSpec {
    /// Checks the values.
    ///
    /// # Errors
    /// [`JobError::Invalid`] naming the field and value.
    pub fn validate(&self) -> Result<(), JobError> {
        if !(self.heartbeat_timeout.is_finite() && self.heartbeat_timeout > 0.0) {
            return Err(invalid(
                "fault_tolerance.heartbeat_timeout",
                format!(
                    "must be a positive number of seconds, got {}",
                    self.heartbeat_timeout
                ),
            ));
        }
        if self.checkpoint_every_steps == Some(0) {
            return Err(invalid(
                "fault_tolerance.checkpoint_every_steps",
                "must be at least 1, got 0".into(),
            ));
        }
        if let Some(t) = self.checkpoint_every_seconds
            && !(t.is_finite() && t > 0.0)
        {
            return Err(invalid(
                "fault_tolerance.checkpoint_every_seconds",
                format!("must be a positive number of seconds, got {t}"),
            ));
        }
        if self.keep_checkpoints == 0 {
            return Err(invalid(
                "fault_tolerance.keep_checkpoints",
                "must be at least 1, got 0".into(),
            ));
        }
        Ok(())
    }
}

/// A job as written: the parsed job file with CLI overrides applied, not yet validated.
///
/// Every section has a default; the defaults together are the main job: an MLP on the
/// built-in digits, trained with Adam.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The model.
    #[serde(default)]
    pub model: ModelSpec,
    /// The dataset and its split.
    #[serde(default)]
    pub data: DataSpec,
    /// Batch size, epochs, seed, workers, evaluation.
    #[serde(default)]
    pub training: TrainingSpec,
    /// The optimizer and its hyperparameters (torch.optim names). Without an
    /// `[optimizer]` section: Adam with lr 0.003 (and PyTorch's other defaults).
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Sync, SSP or async, and the staleness policy.
    #[serde(default)]
    pub consistency: ConsistencySpec,
    /// Heartbeats and checkpoints.
    #[serde(default)]
    pub fault_tolerance: FaultToleranceSpec,
    /// Bounds on gradients, and how sync mode combines a step's gradients.
    #[serde(default)]
    pub robustness: RobustnessSpec,
    /// What any peer may make the server hold, and the transport's timeouts.
    #[serde(default)]
    pub limits: LimitsSpec,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            model: ModelSpec::default(),
            data: DataSpec::default(),
            training: TrainingSpec::default(),
            optimizer: default_optimizer(),
            schedule: ScheduleConfig::default(),
            consistency: ConsistencySpec::default(),
            fault_tolerance: FaultToleranceSpec::default(),
            robustness: RobustnessSpec::default(),
            limits: LimitsSpec::default(),
        }
    }
}

impl JobSpec {
    /// Parses a job file.
    ///
    /// # Errors
    /// [`JobError::Parse`] with the parser's message (line, column, field).
    pub fn from_toml(text: &str) -> Result<Self, JobError> {
        toml::from_str(text).map_err(|e| JobError::Parse(e.to_string()))
    }

    /// Reads and parses the job file at `path`; relative data paths in it are resolved
    /// against the file's folder (made absolute, so the job means the same from anywhere).
    ///
    /// # Errors
    /// [`JobError::Parse`] naming the file when it cannot be read or parsed.
    pub fn from_file(path: &Path) -> Result<Self, JobError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| JobError::Parse(format!("cannot read {}: {e}", path.display())))?;
        let mut spec = Self::from_toml(&text).map_err(|e| match e {
            JobError::Parse(m) => JobError::Parse(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let folder = path.parent().unwrap_or(Path::new(""));
        let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        spec.data.resolve_paths(&folder);
        Ok(spec)
    }

    /// The job as a TOML document (what the launcher hands the server).
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a job spec always serialises")
    }

    /// The job as checkpoints identify it: everything but `[fault_tolerance]` and
    /// `[limits]` (a server may come back with another heartbeat timeout, checkpoint
    /// cadence or bounds).
    #[must_use]
    pub fn identity_toml(&self) -> String {
        let mut identity = self.clone();
        identity.fault_tolerance = FaultToleranceSpec::default();
        identity.limits = LimitsSpec::default();
        identity.to_toml()
    }

    /// Validates every section, loads the dataset to learn its shape, and derives the plan.
    ///
    /// # Errors
    /// [`JobError`] naming the first bad field and its value.
    pub fn validate(mut self) -> Result<Job, JobError> {
        // A regression model implies a regression task for files whose task is unset, so
        // integer targets (prices, counts) are not read as hundreds of classes.
        if self.model.kind == ModelKind::LinearRegression
            && matches!(self.data.kind, DatasetKind::Csv | DatasetKind::Libsvm)
            && self.data.task.is_none()
        {
            self.data.task = Some(TaskKind::Regression);
        }
        let t = &self.training;
        if t.epochs == 0 {
            return Err(invalid(
                "training.epochs",
                "must be at least 1, got 0".into(),
            ));
        }
        if t.workers == 0 {
            return Err(invalid(
                "training.workers",
                "must be at least 1, got 0".into(),
            ));
        }
        if t.batch_size == BatchSize::Samples(0) {
            return Err(invalid(
                "training.batch_size",
                "must be at least 1 (or \"full\"), got 0".into(),
            ));
        }
        // The batch of each logical shard per step: the global batch's rule lives in core.
        let shard_batch = match t.global_batch {
            Some(global) => BatchSize::Samples(
                downpour_core::plan::shard_batch_of_global(global, t.workers)
                    .map_err(|e| invalid("training.global_batch", e.to_string()))?,
            ),
            None => t.batch_size,
        };
        if let Some(base) = t.lr_scaling_base_batch {
            if base == 0 {
                return Err(invalid(
                    "training.lr_scaling_base_batch",
                    "must be at least 1, got 0".into(),
                ));
            }
            if self.schedule.warmup_steps == 0 {
                return Err(invalid(
                    "training.lr_scaling_base_batch",
                    format!(
                        "the linear scaling rule (lr x global batch / {base}) needs a warm-up: set schedule.warmup_steps to at least 1"
                    ),
                ));
            }
        }
        if let Some(c) = t.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(invalid(
                "training.clip_grad_norm",
                format!("must be positive, got {c}"),
            ));
        }
        self.consistency.validate()?;
        self.fault_tolerance.validate()?;
        self.robustness.validate()?;
        self.limits.validate()?;
        if self.robustness.aggregation != crate::robustness::Aggregation::Mean
            && self.consistency.mode != ConsistencyMode::Sync
        {
            return Err(invalid(
                "robustness.aggregation",
                format!(
                    "{} combines the gradients of a sync step; mode {} applies each gradient alone",
                    self.robustness.aggregation.name(),
                    self.consistency.mode.name()
                ),
            ));
        }
        if let Some(m) = t.min_workers
            && !(1..=t.workers).contains(&m)
        {
            return Err(invalid(
                "training.min_workers",
                format!(
                    "must be between 1 and training.workers ({}), got {m}",
                    t.workers
                ),
            ));
        }
        self.model.validate()?;
        self.data.validate()?;
        let optimizer = self.optimizer.build()?;
        self.schedule.validate()?;
        let prepared = self.data.prepare(t.seed, None)?;
        let train = prepared.train;
        if train.len() < t.workers {
            return Err(invalid(
                "training.workers",
                format!(
                    "{} workers need at least one training sample each, the training split has {}",
                    t.workers,
                    train.len()
                ),
            ));
        }
        let shape = train.shape();
        let layout = self.model.layout(&shape)?;
        let steps_per_epoch = sharding::steps_per_epoch(train.len(), t.workers, shard_batch) as u64;
        let global_batch = t.workers * sharding::batch_len(train.len(), t.workers, shard_batch);
        Ok(Job {
            train_len: train.len(),
            standardization: prepared.standardization,
            class_names: train.class_names,
            shape,
            layout,
            optimizer,
            steps_per_epoch,
            global_batch,
            spec: self,
        })
    }
}

fn invalid(field: &'static str, reason: String) -> JobError {
    JobError::Invalid { field, reason }
}

/// A validated job, with what the server derives from it.
///
/// Invariant: built only by [`JobSpec::validate`], so every field is consistent with `spec`.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job as written.
    pub spec: JobSpec,
    /// Samples in the training split.
    pub train_len: usize,
    /// Features and task of the data.
    pub shape: DataShape,
    /// The model's parameters.
    pub layout: ParameterLayout,
    /// The optimizer, built from validated hyperparameters.
    pub optimizer: Optimizer,
    /// Steps per epoch for every worker (the same for all: the sync barrier relies on it).
    pub steps_per_epoch: u64,
    /// The training split's feature statistics, when the job standardises (every worker
    /// computes the same from the job).
    pub standardization: Option<Standardization>,
    /// Class `k`'s name, when the dataset's labels are names.
    pub class_names: Option<Vec<String>>,
    /// Samples per step for the whole job: `training.global_batch`, or `workers` times
    /// the resolved `batch_size`.
    pub global_batch: usize,
}

impl Job {
    /// The learning rate before the schedule: the optimizer's `lr`, times
    /// `global_batch / lr_scaling_base_batch` under the linear scaling rule (computed in
    /// f64, rounded once to f32).
    #[must_use]
    pub fn base_lr(&self) -> f32 {
        let lr = self.spec.optimizer.lr();
        match self.spec.training.lr_scaling_base_batch {
            None => lr,
            Some(base) => (f64::from(lr) * self.global_batch as f64 / base as f64) as f32,
        }
    }

    /// Steps every worker trains for.
    #[must_use]
    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch * self.spec.training.epochs as u64
    }

    /// Steps between evaluations on the test split.
    #[must_use]
    pub fn eval_interval(&self) -> u64 {
        match self.spec.training.eval_every {
            0 => self.steps_per_epoch,
            n => n,
        }
    }

    /// How the sync barrier combines a step's gradients.
    #[must_use]
    pub fn aggregation(&self) -> AggregationRule {
        AggregationRule {
            kind: self.spec.robustness.aggregation,
            trim_fraction: self.spec.robustness.trim_fraction,
        }
    }

    /// The consistency mode.
    #[must_use]
    pub fn mode(&self) -> ConsistencyMode {
        self.spec.consistency.mode
    }

    /// Workers the job is planned for: the number of logical data shards.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.spec.training.workers
    }

    /// Workers that must register before training starts.
    #[must_use]
    pub fn min_workers(&self) -> usize {
        self.spec
            .training
            .min_workers
            .unwrap_or(self.spec.training.workers)
    }

    /// What each worker is told at registration.
    #[must_use]
    pub fn plan(&self) -> TrainingPlan {
        TrainingPlan {
            model: self.spec.model.clone(),
            data: self.spec.data.clone(),
            batch_size: self.spec.training.batch_size,
            global_batch: self.spec.training.global_batch,
            epochs: self.spec.training.epochs,
            seed: self.spec.training.seed,
            prefetch: self.spec.consistency.prefetch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_job() {
        assert_eq!(JobSpec::from_toml("").unwrap(), JobSpec::default());
    }

    #[test]
    fn the_default_job_round_trips_through_toml() {
        let spec = JobSpec::default();
        assert_eq!(JobSpec::from_toml(&spec.to_toml()).unwrap(), spec);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = JobSpec::from_toml("[training]\nepoch = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = JobSpec::from_toml("[training]\nepochs = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("epochs"), "{err}");
    }

    #[test]
    fn batch_size_accepts_a_number_or_full() {
        let spec = JobSpec::from_toml("[training]\nbatch_size = \"full\"\n").unwrap();
        assert!(matches!(spec.training.batch_size, BatchSize::Full(_)));
        let spec = JobSpec::from_toml("[training]\nbatch_size = 1\n").unwrap();
        assert_eq!(spec.training.batch_size, BatchSize::Samples(1));
        assert!(JobSpec::from_toml("[training]\nbatch_size = \"half\"\n").is_err());
    }

    #[test]
    fn validation_names_the_bad_field_and_value() {
        let mut spec = JobSpec::default();
        spec.training.epochs = 0;
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "training.epochs: must be at least 1, got 0"
        );
        let mut spec = JobSpec::default();
        spec.training.clip_grad_norm = Some(-1.0);
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "training.clip_grad_norm: must be positive, got -1"
        );
    }

    #[test]
    fn a_global_batch_keeps_the_updates_per_epoch_whatever_the_workers() {
        let job = |training: &str| {
            JobSpec::from_toml(&format!("[training]\n{training}\n"))
                .unwrap()
                .validate()
                .unwrap()
        };
        let one = job("global_batch = 64\nworkers = 1");
        let two = job("global_batch = 64\nworkers = 2");
        assert_eq!(one.steps_per_epoch, one.train_len.div_ceil(64) as u64);
        assert_eq!(two.steps_per_epoch, one.steps_per_epoch);
        assert_eq!((one.global_batch, two.global_batch), (64, 64));
        assert_eq!(two.plan().shard_batch(2), BatchSize::Samples(32));
        // Per-worker batches instead: the global batch doubles, the updates halve.
        let per_worker = job("batch_size = 64\nworkers = 2");
        assert_eq!(per_worker.global_batch, 128);
        assert_eq!(
            per_worker.steps_per_epoch,
            per_worker.train_len.div_ceil(2).div_ceil(64) as u64
        );
    }

    #[test]
    fn the_linear_scaling_rule_multiplies_lr_by_the_global_over_the_base_batch() {
        let job = |training: &str| {
            let text = format!(
                "[training]\n{training}\n[optimizer]\nname = \"sgd\"\nlr = 0.1\n[schedule]\nkind = \"constant\"\nwarmup_steps = 5\n"
            );
            JobSpec::from_toml(&text).unwrap().validate().unwrap()
        };
        assert_eq!(job("batch_size = 32\nworkers = 4").base_lr(), 0.1);
        let scaled = job("batch_size = 32\nworkers = 4\nlr_scaling_base_batch = 32");
        assert_eq!(scaled.base_lr(), 0.4);
        let global = job("global_batch = 256\nworkers = 2\nlr_scaling_base_batch = 64");
        assert_eq!(global.base_lr(), 0.4);
    }

    #[test]
    fn global_batch_and_lr_scaling_errors_name_the_field_and_numbers() {
        assert_eq!(
            check("[training]\nglobal_batch = 100\nworkers = 3\n").unwrap(),
            "training.global_batch: must be a multiple of training.workers (3), got 100; 99 or 102 would do"
        );
        assert_eq!(
            check("[training]\nlr_scaling_base_batch = 32\n").unwrap(),
            "training.lr_scaling_base_batch: the linear scaling rule (lr x global batch / 32) needs a warm-up: set schedule.warmup_steps to at least 1"
        );
        assert_eq!(
            check("[training]\nlr_scaling_base_batch = 0\n").unwrap(),
            "training.lr_scaling_base_batch: must be at least 1, got 0"
        );
    }

    /// The validation error of the job file `toml`, if any.
    fn check(toml: &str) -> Option<String> {
        JobSpec::from_toml(toml)
            .unwrap()
            .validate()
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn consistency_fields_must_fit_the_mode() {
        assert_eq!(
            check("[consistency]\nmode = \"ssp\"\n").unwrap(),
            "consistency.staleness: ssp needs a staleness bound (steps), e.g. staleness = 2"
        );
        assert!(
            check("[consistency]\nmode = \"async\"\nstaleness = 2\n")
                .unwrap()
                .starts_with("consistency.staleness")
        );
        assert!(
            check("[consistency]\npolicy = \"damp\"\n")
                .unwrap()
                .starts_with("consistency.policy")
        );
        assert!(
            check("[consistency]\nmode = \"async\"\npolicy = \"drop\"\n")
                .unwrap()
                .starts_with("consistency.max_staleness")
        );
        assert!(check("[consistency]\nmode = \"ssp\"\nstaleness = 0\npolicy = \"drop\"\nmax_staleness = 3\n").is_none());
    }

    #[test]
    fn prefetch_needs_room_for_one_step_of_staleness() {
        assert_eq!(
            check("[consistency]\nprefetch = true\n").unwrap(),
            "consistency.prefetch: sync applies every gradient before the next step; prefetch needs async or ssp"
        );
        assert!(
            check("[consistency]\nmode = \"ssp\"\nstaleness = 0\nprefetch = true\n")
                .unwrap()
                .starts_with("consistency.prefetch: prefetch adds one step of staleness")
        );
        assert!(check("[consistency]\nmode = \"ssp\"\nstaleness = 1\nprefetch = true\n").is_none());
        let job = JobSpec::from_toml("[consistency]\nmode = \"async\"\nprefetch = true\n")
            .unwrap()
            .validate()
            .unwrap();
        assert!(job.plan().prefetch, "the workers learn it from the plan");
        assert!(!JobSpec::default().validate().unwrap().plan().prefetch);
        // Off by default, and then absent from the job file (fingerprints of older jobs hold).
        assert!(!JobSpec::default().to_toml().contains("prefetch"));
    }

    #[test]
    fn a_regression_model_implies_a_regression_task() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prices.csv"),
            "x,price\n1,347\n2,12\n3,40\n4,7\n5,9\n",
        )
        .unwrap();
        let job_file = dir.path().join("job.toml");
        std::fs::write(
            &job_file,
            "[model]\nkind = \"linear_regression\"\n[data]\nkind = \"csv\"\npath = \"prices.csv\"\n",
        )
        .unwrap();
        let spec = JobSpec::from_file(&job_file).unwrap();
        assert_eq!(
            spec.data.path.as_deref(),
            Some(dir.path().join("prices.csv").as_path())
        );
        let job = spec.clone().validate().unwrap();
        assert_eq!(
            job.shape.task,
            downpour_core::Task::Regression { outputs: 1 }
        );
        assert_eq!(job.spec.data.task, Some(TaskKind::Regression));
        // A classification model on the same file still reads classes (347 + 1 of them).
        let mut softmax = spec;
        softmax.model.kind = ModelKind::SoftmaxRegression;
        softmax.model.hidden.clear();
        let job = softmax.validate().unwrap();
        assert_eq!(
            job.shape.task,
            downpour_core::Task::Classification { classes: 348 }
        );
    }

    #[test]
    fn the_default_job_validates_into_digits_with_an_mlp() {
        let job = JobSpec::default().validate().unwrap();
        assert_eq!(job.shape.features, 64);
        assert_eq!(job.layout.params().len(), 4);
        assert_eq!(job.train_len, 1797 - 359);
        assert_eq!(job.steps_per_epoch, (1438u64).div_ceil(32));
        assert_eq!(job.eval_interval(), job.steps_per_epoch);
    }
}
