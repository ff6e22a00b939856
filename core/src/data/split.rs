//! The seeded train/test split.
use super::Dataset;

/// Splits into (train, test); with `test_fraction == 0` the test set is the training set.
#[must_use]
pub fn train_test_split(all: &Dataset, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let _ = (all, test_fraction, seed);
    todo!("data helper")
}
