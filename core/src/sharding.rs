//! Which training samples each worker owns, and the order it visits them in each epoch.
//!
//! The training set (already shuffled by the split) is cut into `shard_count` contiguous
//! ranges whose sizes differ by at most one; worker `k` trains on range `k` only, so
//! every training sample belongs to exactly one shard. Each epoch a shard is reshuffled
//! from the job seed, the epoch and the shard index, so every run of a job visits the
//! samples in the same order on every machine.
//!
//! Every worker takes the same number of steps per epoch ([`steps_per_epoch`], computed
//! from the largest shard) because the synchronous barrier waits for one gradient per
//! worker per step. A shard one sample shorter than the largest may therefore need one
//! step more than it has samples for; that step wraps around to the start of its order
//! ([`batch_positions`]).
//!
//! Positions returned here index the training set: `train.select(&positions)`.

use std::ops::Range;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::layout::stream_seed;
use crate::plan::BatchSize;

/// Random stream of the per-epoch shuffles ("epoch" in ASCII; distinct from the
/// weight-init streams, the small tensor indices, and from the split's stream).
pub const EPOCH_SHUFFLE_STREAM: u64 = 0x6570_6F63_6800;

/// A shard count the training set cannot be cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShardingError {
    /// No shards at all.
    #[error("shard_count must be at least 1, got 0")]
    NoShards,
    /// More shards than training samples: some worker would have nothing to train on.
    #[error(
        "cannot cut {train_len} training samples into {shard_count} shards: every shard needs a sample"
    )]
    TooManyShards {
        /// Samples in the training set.
        train_len: usize,
        /// Shards asked for.
        shard_count: usize,
    },
}

/// Checks that `train_len` samples can be cut into `shard_count` non-empty shards, as
/// the other functions here assume.
///
/// # Errors
/// [`ShardingError`] when `shard_count` is 0 or exceeds `train_len`.
pub fn check_shard_count(train_len: usize, shard_count: usize) -> Result<(), ShardingError> {
    match shard_count {
        0 => Err(ShardingError::NoShards),
        n if n > train_len => Err(ShardingError::TooManyShards {
            train_len,
            shard_count,
        }),
        _ => Ok(()),
    }
}

/// The training-set positions of shard `shard_index`: the first `train_len % shard_count`
/// shards hold one sample more than the rest.
///
/// # Panics
/// When `shard_index >= shard_count`.
#[must_use]
pub fn shard_range(train_len: usize, shard_index: usize, shard_count: usize) -> Range<usize> {
    assert!(
        shard_index < shard_count,
        "shard_index {shard_index} out of range for {shard_count} shards"
    );
    let (base, extra) = (train_len / shard_count, train_len % shard_count);
    let start = shard_index * base + shard_index.min(extra);
    let len = base + usize::from(shard_index < extra);
    start..start + len
}

/// The number of samples in the largest shard: `ceil(train_len / shard_count)`.
///
/// # Panics
/// When `shard_count` is 0.
#[must_use]
pub fn largest_shard(train_len: usize, shard_count: usize) -> usize {
    assert!(shard_count > 0, "shard_count must be at least 1");
    train_len.div_ceil(shard_count)
}

/// The batch size in samples: `batch` resolved against the largest shard (a number is
/// capped at the largest shard; `"full"` is the largest shard).
///
/// # Panics
/// When `shard_count` is 0.
#[must_use]
pub fn batch_len(train_len: usize, shard_count: usize, batch: BatchSize) -> usize {
    batch.resolve(largest_shard(train_len, shard_count))
}

/// Steps each worker takes per epoch: `ceil(largest_shard / batch)`, identical on every
/// worker (the sync barrier depends on it).
///
/// # Panics
/// When `shard_count` is 0.
#[must_use]
pub fn steps_per_epoch(train_len: usize, shard_count: usize, batch: BatchSize) -> usize {
    let largest = largest_shard(train_len, shard_count);
    largest.div_ceil(batch.resolve(largest))
}

/// A shard's training-set positions in the order they are visited in `epoch`: its
/// range, shuffled by a generator seeded from (`seed`, `epoch`, `shard_index`).
///
/// # Panics
/// When `shard_index >= shard_count`.
#[must_use]
pub fn epoch_order(
    train_len: usize,
    shard_index: usize,
    shard_count: usize,
    seed: u64,
    epoch: u64,
) -> Vec<usize> {
    let mut order: Vec<usize> = shard_range(train_len, shard_index, shard_count).collect();
    let epoch_seed = stream_seed(stream_seed(seed, EPOCH_SHUFFLE_STREAM), epoch);
    let shard_seed = stream_seed(epoch_seed, shard_index as u64);
    order.shuffle(&mut StdRng::seed_from_u64(shard_seed));
    order
}

/// The positions of the `step_in_epoch`-th batch of `batch` samples in `order`: a full
/// batch, or the final remainder; never empty: a shard one sample shorter than the
/// largest wraps around to the start of its order for its last step, which then holds
/// one sample, as many as the largest shard's last step.
///
/// # Panics
/// When `order` is empty, `batch` is 0, or the step starts beyond the end of `order`
/// (`step_in_epoch * batch > order.len()`): steps come from [`steps_per_epoch`], so
/// at most the last one starts exactly at the end.
#[must_use]
pub fn batch_positions(order: &[usize], step_in_epoch: usize, batch: usize) -> &[usize] {
    assert!(!order.is_empty(), "an empty shard has no batches");
    assert!(batch > 0, "batch size must be at least 1");
    let start = step_in_epoch * batch;
    assert!(
        start <= order.len(),
        "step {step_in_epoch} of {batch} samples starts at {start}, beyond a shard of {}",
        order.len()
    );
    if start == order.len() {
        return &order[..1];
    }
    &order[start..(start + batch).min(order.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FullBatch;

    /// Training-set sizes and shard counts covering even, uneven and one-sample shards.
    fn cases() -> Vec<(usize, usize)> {
        let mut cases = Vec::new();
        for n in [1, 2, 3, 7, 10, 64, 100, 1437] {
            for shards in [1, 2, 3, 4, 7, 16] {
                if shards <= n {
                    cases.push((n, shards));
                }
            }
        }
        cases
    }

    #[test]
    fn shards_are_disjoint_contiguous_balanced_and_cover_the_training_set() {
        for (n, shards) in cases() {
            let ranges: Vec<Range<usize>> =
                (0..shards).map(|k| shard_range(n, k, shards)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[shards - 1].end, n);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "n={n} shards={shards}");
            }
            let sizes: Vec<usize> = ranges.iter().map(ExactSizeIterator::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "n={n} shards={shards}: sizes {sizes:?}");
            assert!(*min >= 1);
            assert_eq!(*max, largest_shard(n, shards));
        }
        assert_eq!(shard_range(10, 0, 3), 0..4);
        assert_eq!(shard_range(10, 1, 3), 4..7);
        assert_eq!(shard_range(10, 2, 3), 7..10);
    }

    #[test]
    fn epoch_order_permutes_the_shard_deterministically() {
        let order = epoch_order(100, 1, 3, 42, 0);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, shard_range(100, 1, 3).collect::<Vec<_>>());
        assert_ne!(order, sorted, "the order is shuffled");
        assert_eq!(
            order,
            epoch_order(100, 1, 3, 42, 0),
            "same seed and epoch, same order"
        );
        assert_ne!(
            order,
            epoch_order(100, 1, 3, 42, 1),
            "a new order each epoch"
        );
        assert_ne!(
            order,
            epoch_order(100, 1, 3, 43, 0),
            "a new order for another seed"
        );
        // Shards of equal size are not shuffled alike.
        let shifted: Vec<usize> = epoch_order(100, 2, 3, 42, 0)
            .iter()
            .map(|p| p - 33)
            .collect();
        let base: Vec<usize> = order.iter().map(|p| p - 34).collect();
        assert_ne!(shifted, base);
    }

    /// Every batch of an epoch, concatenated, for each shard.
    fn visits(n: usize, shards: usize, batch: BatchSize) -> Vec<(Vec<usize>, Vec<usize>)> {
        let steps = steps_per_epoch(n, shards, batch);
        let size = batch_len(n, shards, batch);
        (0..shards)
            .map(|k| {
                let order = epoch_order(n, k, shards, 7, 3);
                let mut seen = Vec::new();
                for step in 0..steps {
                    let positions = batch_positions(&order, step, size);
                    assert!(!positions.is_empty());
                    assert!(positions.len() <= size);
                    seen.extend_from_slice(positions);
                }
                (order, seen)
            })
            .collect()
    }

    #[test]
    fn every_shard_visits_each_sample_once_per_epoch_in_the_same_number_of_steps() {
        for (n, shards) in cases() {
            let largest = largest_shard(n, shards);
            for batch in [
                BatchSize::Samples(1),
                BatchSize::Samples(5),
                BatchSize::Samples(32),
                BatchSize::Full(FullBatch::Full),
            ] {
                let size = batch_len(n, shards, batch);
                for (order, seen) in visits(n, shards, batch) {
                    let context = format!(
                        "n={n} shards={shards} batch={batch:?} shard len={}",
                        order.len()
                    );
                    if order.len() < largest && (largest - 1).is_multiple_of(size) {
                        // The documented wrap: one extra step, holding the first sample again.
                        assert_eq!(seen[..order.len()], order[..], "{context}");
                        assert_eq!(seen[order.len()..], [order[0]], "{context}");
                    } else {
                        assert_eq!(seen, order, "{context}");
                    }
                }
            }
        }
    }

    #[test]
    fn steps_per_epoch_follows_the_largest_shard() {
        // 10 samples over 3 shards: sizes 4, 3, 3.
        assert_eq!(steps_per_epoch(10, 3, BatchSize::Samples(1)), 4);
        assert_eq!(steps_per_epoch(10, 3, BatchSize::Samples(2)), 2);
        assert_eq!(steps_per_epoch(10, 3, BatchSize::Samples(3)), 2);
        assert_eq!(steps_per_epoch(10, 3, BatchSize::Samples(100)), 1);
        assert_eq!(steps_per_epoch(10, 3, BatchSize::Full(FullBatch::Full)), 1);
        assert_eq!(batch_len(10, 3, BatchSize::Full(FullBatch::Full)), 4);
        assert_eq!(batch_len(10, 3, BatchSize::Samples(100)), 4);
    }

    #[test]
    fn batches_are_full_then_a_remainder_and_a_short_shard_wraps() {
        let order = [9, 8, 7, 6, 5];
        assert_eq!(batch_positions(&order, 0, 2), [9, 8]);
        assert_eq!(batch_positions(&order, 1, 2), [7, 6]);
        assert_eq!(batch_positions(&order, 2, 2), [5]);
        // A shard of 4 next to shards of 5 with batch 2: 3 steps, the last wraps.
        let short = [3, 1, 2, 0];
        assert_eq!(batch_positions(&short, 2, 2), [3]);
        // Full batch: the whole shard, even when it is one shorter than the largest.
        assert_eq!(batch_positions(&short, 0, 5), short);
    }

    #[test]
    #[should_panic(expected = "step 3 of 2 samples starts at 6, beyond a shard of 4")]
    fn batches_beyond_the_wrap_are_a_bug() {
        let _ = batch_positions(&[0, 1, 2, 3], 3, 2);
    }

    #[test]
    fn shard_counts_are_checked() {
        assert_eq!(check_shard_count(5, 5), Ok(()));
        assert_eq!(check_shard_count(5, 0), Err(ShardingError::NoShards));
        assert_eq!(
            check_shard_count(3, 5).unwrap_err().to_string(),
            "cannot cut 3 training samples into 5 shards: every shard needs a sample"
        );
    }
}
