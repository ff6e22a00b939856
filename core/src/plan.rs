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

/// A `[training] global_batch` that cannot be split evenly over the logical data shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GlobalBatchError {
    /// Fewer samples than shards: some shard would give none.
    #[error("must be at least training.workers ({shard_count}), got {global_batch}")]
    TooSmall {
        /// Samples per step asked for.
        global_batch: usize,
        /// Logical data shards of the job.
        shard_count: usize,
    },
    /// Not a multiple of the shard count: the shards would give batches of two sizes.
    #[error(
        "must be a multiple of training.workers ({shard_count}), got {global_batch}; {below} or {above} would do"
    )]
    Uneven {
        /// Samples per step asked for.
        global_batch: usize,
        /// Logical data shards of the job.
        shard_count: usize,
        /// The nearest multiple below.
        below: usize,
        /// The nearest multiple above.
        above: usize,
    },
}

/// The rule that keeps a job's global batch whatever the number of active workers.
///
/// The training set is cut into `shard_count` logical data shards once, and every step
/// each shard gives `global_batch / shard_count` samples, computed by the worker that
/// owns the shard at that step. A worker's share of the step is therefore that batch
/// times the shards it owns ([`worker_batch_share`]): with N active workers of
/// `shard_count`, `global_batch / N` when N divides the shard count; when a worker dies
/// the server hands its shards to the others (so their shares grow), and when one joins
/// it takes shards over (so they shrink). The sum stays `global_batch`.
///
/// # Errors
/// [`GlobalBatchError`] when `global_batch` is below `shard_count` or not a multiple of it.
pub fn shard_batch_of_global(
    global_batch: usize,
    shard_count: usize,
) -> Result<usize, GlobalBatchError> {
    let shard_count = shard_count.max(1);
    if global_batch < shard_count {
        return Err(GlobalBatchError::TooSmall {
            global_batch,
            shard_count,
        });
    }
    if !global_batch.is_multiple_of(shard_count) {
        let below = global_batch - global_batch % shard_count;
        return Err(GlobalBatchError::Uneven {
            global_batch,
            shard_count,
            below,
            above: below + shard_count,
        });
    }
    Ok(global_batch / shard_count)
}

/// Samples per step that a worker owning `owned_shards` of the job's `shard_count`
/// logical shards computes under a global batch of `global_batch`: its share.
///
/// # Errors
/// As [`shard_batch_of_global`].
pub fn worker_batch_share(
    global_batch: usize,
    shard_count: usize,
    owned_shards: usize,
) -> Result<usize, GlobalBatchError> {
    Ok(shard_batch_of_global(global_batch, shard_count)? * owned_shards)
}

/// The training part of a job: everything a worker needs besides its assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingPlan {
    /// The model.
    pub model: ModelSpec,
    /// The dataset and its split.
    pub data: DataSpec,
    /// Samples per gradient of each logical data shard; replaced by `global_batch` when
    /// that is set (see [`TrainingPlan::shard_batch`]).
    pub batch_size: BatchSize,
    /// Samples per step for the whole job, split over the logical data shards by
    /// [`shard_batch_of_global`]; checked by the server's job validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    /// Passes over the training set.
    pub epochs: usize,
    /// Seed of the split, the shuffles and the initial weights.
    pub seed: u64,
    /// Overlap communication with compute: push and pull in the background while the next
    /// gradient is computed on the parameters already pulled (async and ssp only).
    #[serde(default)]
    pub prefetch: bool,
}

impl TrainingPlan {
    /// The batch each logical data shard gives per step among `shard_count`:
    /// `global_batch / shard_count` when the job keeps a global batch, else `batch_size`.
    ///
    /// # Panics
    /// When `global_batch` does not split evenly: the server validates it before any
    /// worker is told the plan.
    #[must_use]
    pub fn shard_batch(&self, shard_count: usize) -> BatchSize {
        match self.global_batch {
            None => self.batch_size,
            Some(global) => BatchSize::Samples(
                shard_batch_of_global(global, shard_count)
                    .unwrap_or_else(|e| panic!("training.global_batch: {e}")),
            ),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_batch_splits_evenly_over_the_shards() {
        assert_eq!(shard_batch_of_global(512, 1), Ok(512));
        assert_eq!(shard_batch_of_global(512, 2), Ok(256));
        assert_eq!(shard_batch_of_global(512, 4), Ok(128));
        assert_eq!(shard_batch_of_global(3, 3), Ok(1));
    }

    #[test]
    fn a_worker_share_is_its_shards_batches_and_the_shares_add_up() {
        // Four shards, 2048 samples per step: four workers take 512 each, two take 1024.
        assert_eq!(worker_batch_share(2048, 4, 1), Ok(512));
        assert_eq!(worker_batch_share(2048, 4, 2), Ok(1024));
        // A worker that holds every shard (the others died) computes the whole batch.
        assert_eq!(worker_batch_share(2048, 4, 4), Ok(2048));
        for owned in [[1, 1, 1, 1], [2, 1, 1, 0], [2, 2, 0, 0], [3, 1, 0, 0]] {
            let total: usize = owned
                .iter()
                .map(|&k| worker_batch_share(2048, 4, k).unwrap())
                .sum();
            assert_eq!(total, 2048, "{owned:?}");
        }
    }

    #[test]
    fn a_global_batch_that_cannot_be_split_is_refused_with_the_numbers() {
        assert_eq!(
            shard_batch_of_global(256, 3).unwrap_err().to_string(),
            "must be a multiple of training.workers (3), got 256; 255 or 258 would do"
        );
        assert_eq!(
            shard_batch_of_global(2, 4).unwrap_err().to_string(),
            "must be at least training.workers (4), got 2"
        );
    }
}
