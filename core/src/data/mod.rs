//! Datasets: the built-in ones (XOR, synthetic regression and classification, UCI digits,
//! an MNIST subset), CSV, LibSVM and IDX files, the deterministic train/test split and
//! feature standardisation.
//!
//! # Layout
//! - [`spec`]: the job file's `[data]` section, its validation, loading and preparing.
//! - [`xor`], [`synthetic`], [`digits`], [`mnist`]: built-in datasets, needing no files.
//! - [`csv`], [`libsvm`]: text formats, parsed with line-numbered errors.
//! - [`idx`]: the MNIST/Fashion-MNIST binary format, with errors naming file and numbers.
//! - [`gzip`]: gzip recognised by its magic bytes (IDX files, the embedded MNIST).
//! - [`field`]: one text field read as a number, a class label or a class name, shared by the text formats.
//! - [`split`]: the seeded train/test split.
//! - [`standardize`]: per-feature standardisation with the training split's statistics.
//! - [`prepared`]: a job's split, standardised data: what models train and test on.

pub mod csv;
pub mod digits;
pub mod field;
pub mod gzip;
pub mod idx;
pub mod libsvm;
pub mod mnist;
pub mod prepared;
pub mod spec;
pub mod split;
pub mod standardize;
pub mod synthetic;
pub mod xor;

use std::fmt;

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

pub use prepared::{PreparedData, SplitIndices};
pub use spec::{DataSpec, DatasetKind};
pub use standardize::Standardization;

/// The most feature values a dataset may hold in memory: 2^28 f32s, 1 GiB.
///
/// A text file's table grows with the file, but a LibSVM file's dense matrix is sized by
/// its largest index (`1 99999999999:1` alone would ask for 400 GB), and a synthetic
/// dataset by two numbers in the job file: those are checked against this bound before
/// anything is allocated. The full MNIST (60,000 × 784) holds 47 million.
pub const MAX_DATASET_VALUES: usize = 1 << 28;

/// Why a dataset could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A field of the `[data]` section is invalid.
    #[error("data.{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
    /// A data file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A binary data file (IDX) is malformed.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, with the numbers.
        reason: String,
    },
    /// A text data file is malformed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number (0 for the file as a whole).
        line: usize,
        /// What is wrong there, with the offending text.
        reason: String,
    },
}

impl DataError {
    /// A [`DataError::Parse`] at `path:line`.
    pub(crate) fn parse(path: &str, line: usize, reason: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_string(),
            line,
            reason: reason.into(),
        }
    }
}

/// What a model learns from a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Real-valued targets with this many columns.
    Regression {
        /// Target columns.
        outputs: usize,
    },
    /// Integer labels in `0..classes`.
    Classification {
        /// Number of classes.
        classes: usize,
    },
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Regression { outputs } => write!(f, "regression with {outputs} output(s)"),
            Self::Classification { classes } => write!(f, "classification with {classes} classes"),
        }
    }
}

/// How a file's label column is read.
///
/// Lives here, not in [`spec`], so that the format parsers ([`csv`], [`libsvm`]) and the
/// spec that calls them share it without importing each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Class labels: integers `0..k`, or names (any non-numeric label), numbered in sorted order.
    #[default]
    Classification,
    /// Real-valued targets.
    Regression,
}

/// The shape of one image sample, channels first as PyTorch lays it out.
///
/// Invariant: a dataset with an image shape has `channels * height * width` features,
/// row-major in `(c, h, w)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Channels (1 for grey-scale).
    pub channels: usize,
    /// Rows of pixels.
    pub height: usize,
    /// Columns of pixels.
    pub width: usize,
}

impl ImageShape {
    /// Values per image: `channels * height * width`.
    #[must_use]
    pub fn features(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl fmt::Display for ImageShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// The dimensions a model needs to know.
///
/// Invariant: when `image` is set, `features == image.features()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataShape {
    /// Feature columns.
    pub features: usize,
    /// The task.
    pub task: Task,
    /// The image shape, for image datasets (`digits`, `mnist`, `idx`); `None` for tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageShape>,
}

impl DataShape {
    /// The shape of tabular data (no image shape).
    #[must_use]
    pub fn tabular(features: usize, task: Task) -> Self {
        Self {
            features,
            task,
            image: None,
        }
    }
}

/// The targets of a dataset, one row per sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// `[samples, outputs]` real targets.
    Regression(Array2<f32>),
    /// One label per sample, each `< classes`.
    Classes {
        /// The labels.
        labels: Vec<usize>,
        /// Number of classes.
        classes: usize,
    },
}

/// Features and targets in memory.
///
/// Invariant: `features.nrows()` equals the number of targets; when `image` is set,
/// `features.ncols() == image.features()`; when `class_names` is set, the targets are
/// classes and it holds one name per class.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[samples, features]`.
    pub features: Array2<f32>,
    /// One target per row of `features`.
    pub targets: Targets,
    /// The shape of each sample when the features are an image's pixels.
    pub image: Option<ImageShape>,
    /// Class `k`'s name as the file wrote it, when the labels were names (sorted, so
    /// class `k` is the `k`-th name in byte order); `None` for numeric labels.
    pub class_names: Option<Vec<String>>,
}

impl Dataset {
    /// A table: features and targets, no image shape, numeric classes.
    #[must_use]
    pub fn new(features: Array2<f32>, targets: Targets) -> Self {
        Self {
            features,
            targets,
            image: None,
            class_names: None,
        }
    }

    /// Number of samples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.features.nrows()
    }

    /// True when the dataset has no samples.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its dimensions.
    #[must_use]
    pub fn shape(&self) -> DataShape {
        let task = match &self.targets {
            Targets::Regression(y) => Task::Regression { outputs: y.ncols() },
            Targets::Classes { classes, .. } => Task::Classification { classes: *classes },
        };
        DataShape {
            features: self.features.ncols(),
            task,
            image: self.image,
        }
    }

    /// The samples at `indices`, in that order (a mini-batch, a shard, a split).
    #[must_use]
    pub fn select(&self, indices: &[usize]) -> Self {
        let features = self.features.select(Axis(0), indices);
        let targets = match &self.targets {
            Targets::Regression(y) => Targets::Regression(y.select(Axis(0), indices)),
            Targets::Classes { labels, classes } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                classes: *classes,
            },
        };
        Self {
            features,
            targets,
            image: self.image,
            class_names: self.class_names.clone(),
        }
    }

    /// [`select`](Self::select) into `batch`, reusing its buffers: once `batch` has held a
    /// batch of this size, nothing is allocated (the worker's hot loop). Class names are
    /// not copied: a batch needs none.
    pub fn select_into(&self, indices: &[usize], batch: &mut Dataset) {
        copy_rows(&self.features, indices, &mut batch.features);
        match (&self.targets, &mut batch.targets) {
            (Targets::Regression(y), Targets::Regression(out)) => copy_rows(y, indices, out),
            (
                Targets::Classes { labels, classes },
                Targets::Classes {
                    labels: out,
                    classes: out_classes,
                },
            ) => {
                out.clear();
                out.extend(indices.iter().map(|&i| labels[i]));
                *out_classes = *classes;
            }
            (_, out) => *out = self.select(indices).targets,
        }
        batch.image = self.image;
        batch.class_names = None;
    }
}

/// Rows `indices` of `from` into `to`, which is reshaped (reallocated) only when its
/// dimensions differ.
fn copy_rows(from: &Array2<f32>, indices: &[usize], to: &mut Array2<f32>) {
    if to.dim() != (indices.len(), from.ncols()) {
        *to = Array2::zeros((indices.len(), from.ncols()));
    }
    for (mut row, &i) in to.rows_mut().into_iter().zip(indices) {
        let source = from.row(i);
        match (row.as_slice_mut(), source.as_slice()) {
            (Some(dst), Some(src)) => dst.copy_from_slice(src),
            _ => row.assign(&source),
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn select_into_matches_select_and_reuses_the_buffer() {
        let mut data = Dataset::new(
            array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]],
            Targets::Classes {
                labels: vec![0, 1, 2, 1],
                classes: 3,
            },
        );
        data.class_names = Some(vec!["a".into(), "b".into(), "c".into()]);
        let mut batch = Dataset::new(
            Array2::zeros((0, 0)),
            Targets::Regression(Array2::zeros((0, 1))),
        );
        data.select_into(&[3, 0], &mut batch);
        let expected = Dataset {
            class_names: None,
            ..data.select(&[3, 0])
        };
        assert_eq!(batch, expected);
        let buffer = batch.features.as_ptr();
        data.select_into(&[1, 2], &mut batch);
        assert_eq!(batch.features, array![[2.0, 3.0], [4.0, 5.0]]);
        assert!(matches!(&batch.targets, Targets::Classes { labels, .. } if labels == &[1, 2]));
        assert_eq!(
            batch.features.as_ptr(),
            buffer,
            "same size: the buffer is reused"
        );
        data.select_into(&[1], &mut batch);
        assert_eq!(batch.features, array![[2.0, 3.0]], "a smaller last batch");
    }

    #[test]
    fn select_into_copies_regression_targets() {
        let data = Dataset::new(
            array![[1.0], [2.0], [3.0]],
            Targets::Regression(array![[10.0], [20.0], [30.0]]),
        );
        let mut batch = data.select(&[0, 1]);
        data.select_into(&[2, 0], &mut batch);
        assert_eq!(batch, data.select(&[2, 0]));
    }
}
