//! What a worker is told when it registers: the job's training part and its place in it.

use serde::{Deserialize, Serialize};

use crate::data::DataSpec;
use crate::model_spec::ModelSpec;

/// Samples per gradient: a number, or the whole shard (full-batch gradient descent).
///
/// In a job file: `batch_size = 32` or `batch_size = "full"`. Batch size 1 is
/// stochastic gradient descent; anything between 1 and the shard is mini-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchSize {
    /// This many samples per step (the last batch of an epoch may be smaller).
    Samples(usize),
    /// The whole shard every step: one step per epoch.
    Full(FullBatch),
}

/// The word `"full"` in a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullBatch {
    /// The whole shard.
    Full,
}

impl BatchSize {
    /// The batch size in samples for a shard of at most `largest_shard` samples.
    #[must_use]
    pub fn resolve(self, largest_shard: usize) -> usize {
        match self {
            Self::Samples(n) => n.min(largest_shard).max(1),
            Self::Full(_) => largest_shard.max(1),
        }
    }
}

/// The training part of a job: everything a worker needs besides its assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingPlan {
    /// The model.
    pub model: ModelSpec,
    /// The dataset and its split.
    pub data: DataSpec,
    /// Samples per gradient.
    pub batch_size: BatchSize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Seed of the split, the shuffles and the initial weights.
    pub seed: u64,
    /// Overlap communication with compute: push and pull in the background while the next
    /// gradient is computed on the parameters already pulled (async and ssp only).
    #[serde(default)]
    pub prefetch: bool,
}

/// A worker's place in the job, fixed at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker's id, unique for the server's lifetime.
    pub worker_id: u32,
    /// Which data shard the worker trains on (`0..shard_count`).
    pub shard_index: usize,
    /// How many shards the training set is cut into.
    pub shard_count: usize,
}
