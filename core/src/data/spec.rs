//! The job file's `[data]` section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset};

/// Which dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// The four XOR points, two classes.
    Xor,
    /// `y = W x + b + noise` with known true weights.
    SyntheticLinear,
    /// Gaussian clusters, one per class.
    SyntheticClassification,
    /// UCI optical digits, 8×8 images, 10 classes, shipped in the binary.
    Digits,
    /// A CSV file (`path`, `label_column`, `task`, `header`).
    Csv,
    /// A LibSVM/SVMlight file (`path`, `task`, optional `features`).
    Libsvm,
}

/// How a file's label column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Integer class labels `0..k`.
    Classification,
    /// Real-valued targets.
    Regression,
}

/// The job file's `[data]` section: which dataset, and how much of it is held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Which dataset.
    pub kind: DatasetKind,
    /// Fraction of samples held out for testing, in `[0, 1)`; 0 tests on the training set.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Synthetic datasets: number of samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// Synthetic datasets: number of features; LibSVM: the feature count (default: the largest index seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<usize>,
    /// Synthetic classification: number of classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Synthetic datasets: standard deviation of the noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<f32>,
    /// CSV and LibSVM: the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// CSV: the label column, by header name or 0-based index (default: `label`, else the last column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// CSV and LibSVM: how labels are read (default classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskKind>,
    /// CSV: whether the first line is a header (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
}

fn default_test_fraction() -> f64 {
    0.2
}

impl Default for DataSpec {
    /// The built-in digits with a 20% test split.
    fn default() -> Self {
        Self::builtin(DatasetKind::Digits)
    }
}

impl DataSpec {
    /// A spec for `kind` with every optional field at its default.
    #[must_use]
    pub fn builtin(kind: DatasetKind) -> Self {
        Self {
            kind,
            test_fraction: default_test_fraction(),
            samples: None,
            features: None,
            classes: None,
            noise: None,
            path: None,
            label_column: None,
            task: None,
            header: None,
        }
    }

    /// Checks the fields that apply to `kind`, and refuses the ones that do not.
    ///
    /// # Errors
    /// [`DataError::Invalid`] naming the field and value.
    pub fn validate(&self) -> Result<(), DataError> {
        todo!("data helper")
    }

    /// Makes or reads the whole dataset. Synthetic data is drawn from `seed`.
    ///
    /// # Errors
    /// [`DataError`] for an invalid spec, an unreadable or malformed file.
    pub fn load(&self, seed: u64) -> Result<Dataset, DataError> {
        let _ = seed;
        todo!("data helper")
    }

    /// Loads the dataset and splits it into (train, test) by `test_fraction` and `seed`.
    ///
    /// # Errors
    /// As [`DataSpec::load`].
    pub fn load_split(&self, seed: u64) -> Result<(Dataset, Dataset), DataError> {
        let all = self.load(seed)?;
        Ok(super::split::train_test_split(
            &all,
            self.test_fraction,
            seed,
        ))
    }
}
