//! The seeded train/test split.
//!
//! The samples are shuffled by a generator seeded from the job seed on a stream of its
//! own ([`SPLIT_STREAM`]), so the server and every worker compute the same split from
//! the same seed without exchanging it. The training set keeps the shuffled order:
//! shards are contiguous ranges of it (see [`crate::sharding`]).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::Dataset;
use crate::layout::stream_seed;

/// Random stream of the split ("split" in ASCII; the weight-init streams are the small
/// tensor indices, so they never meet it).
pub const SPLIT_STREAM: u64 = 0x7370_6C69_7400;

/// Samples held out for testing out of `n`: `round(n * test_fraction)`, at least 1 when
/// `test_fraction > 0`, and at most `n - 1` so that training keeps a sample. 0 when
/// `test_fraction == 0` or `n < 2`: nothing is held out.
///
/// # Panics
/// When `test_fraction` is not in `[0, 1)` ([`super::DataSpec::validate`] refuses it).
#[must_use]
pub fn test_len(n: usize, test_fraction: f64) -> usize {
    assert!(
        (0.0..1.0).contains(&test_fraction),
        "test_fraction must be in [0, 1), got {test_fraction}"
    );
    if test_fraction == 0.0 || n < 2 {
        return 0;
    }
    let rounded = (n as f64 * test_fraction).round() as usize;
    rounded.clamp(1, n - 1)
}

/// The sample indices of (train, test): a seeded permutation of `0..n`, the first
/// [`test_len`] for testing and the rest, in shuffled order, for training. When nothing
/// is held out the test indices are the training indices.
///
/// # Panics
/// As [`test_len`].
#[must_use]
pub fn split_indices(n: usize, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let held_out = test_len(n, test_fraction);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(stream_seed(seed, SPLIT_STREAM)));
    let train = order.split_off(held_out);
    let test = if held_out == 0 { train.clone() } else { order };
    (train, test)
}

/// Splits into (train, test); with `test_fraction == 0` the test set is the training set.
///
/// Deterministic: the same data, fraction and seed give the same split on every machine.
///
/// # Panics
/// When `test_fraction` is not in `[0, 1)` ([`super::DataSpec::validate`] refuses it).
#[must_use]
pub fn train_test_split(all: &Dataset, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let (train, test) = split_indices(all.len(), test_fraction, seed);
    (all.select(&train), all.select(&test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Targets;
    use ndarray::Array2;

    fn numbered(n: usize) -> Dataset {
        Dataset {
            features: Array2::from_shape_fn((n, 1), |(i, _)| i as f32),
            targets: Targets::Classes {
                labels: (0..n).map(|i| i % 3).collect(),
                classes: 3,
            },
            image: None,
        }
    }

    #[test]
    fn held_out_size_rounds_and_keeps_both_sides_non_empty() {
        assert_eq!(test_len(100, 0.2), 20);
        assert_eq!(test_len(1797, 0.2), 359);
        assert_eq!(test_len(10, 0.25), 3); // 2.5 rounds away from zero
        assert_eq!(test_len(4, 0.1), 1); // 0.4 would round to 0
        assert_eq!(test_len(2, 0.9), 1); // 1.8 would leave no training sample
        assert_eq!(test_len(1, 0.5), 0);
        assert_eq!(test_len(100, 0.0), 0);
    }

    #[test]
    #[should_panic(expected = "test_fraction must be in [0, 1), got 1")]
    fn refuses_a_fraction_of_one() {
        let _ = test_len(10, 1.0);
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let (train, test) = split_indices(50, 0.2, 11);
        assert_eq!((train.len(), test.len()), (40, 10));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        assert_eq!(split_indices(50, 0.2, 11), (train.clone(), test));
        assert_ne!(split_indices(50, 0.2, 12).0, train);
        assert_ne!(
            train,
            (0..40).collect::<Vec<_>>(),
            "training order is shuffled"
        );
    }

    #[test]
    fn split_selects_the_rows_with_their_targets() {
        let all = numbered(20);
        let (train, test) = train_test_split(&all, 0.25, 3);
        assert_eq!((train.len(), test.len()), (15, 5));
        let (train_idx, test_idx) = split_indices(20, 0.25, 3);
        for (data, idx) in [(&train, &train_idx), (&test, &test_idx)] {
            let Targets::Classes { labels, classes } = &data.targets else {
                unreachable!()
            };
            assert_eq!(*classes, 3);
            for (row, &i) in idx.iter().enumerate() {
                assert_eq!(data.features[[row, 0]], i as f32);
                assert_eq!(labels[row], i % 3);
            }
        }
    }

    #[test]
    fn fraction_zero_tests_on_the_training_set() {
        let all = crate::data::xor::xor();
        let (train, test) = train_test_split(&all, 0.0, 5);
        assert_eq!(train.len(), 4);
        assert_eq!(train, test);
    }
}
