//! The data a job trains and tests on: the dataset, split by the seed, standardised
//! with the training split's statistics when the job asks for it.
//!
//! The server, every worker and `downpour evaluate` build it from the job alone, so they
//! agree on every sample without exchanging data.

use serde::{Deserialize, Serialize};

use super::Dataset;
use super::standardize::Standardization;

/// Which samples of the whole dataset (0-based, in file order) are in each split.
///
/// Invariant: `train` and `test` are disjoint unless nothing is held out, in which case
/// `test` equals `train`; `train` is in the shuffled order that training shards follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitIndices {
    /// Samples of the training split, in training order.
    pub train: Vec<usize>,
    /// Samples of the test split.
    pub test: Vec<usize>,
}

/// The training and test data of a job, ready for a model.
///
/// Invariant: `train` holds the samples `split.train` and `test` the samples `split.test`
/// of the dataset, both transformed by `standardization` when it is set.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
    /// Which samples each split holds.
    pub split: SplitIndices,
    /// The training split's feature statistics, when the job standardises.
    pub standardization: Option<Standardization>,
}
