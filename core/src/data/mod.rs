//! Datasets: the built-in ones (XOR, synthetic regression and classification, UCI digits),
//! CSV and LibSVM files, and the deterministic train/test split.
//!
//! # Layout
//! - [`spec`]: the job file's `[data]` section and its validation.
//! - [`xor`], [`synthetic`], [`digits`]: built-in datasets, needing no files.
//! - [`csv`], [`libsvm`]: file formats, parsed from text with line-numbered errors.
//! - [`field`]: one text field read as a number or a class label, shared by both formats.
//! - [`split`]: the seeded train/test split.

pub mod csv;
pub mod digits;
pub mod field;
pub mod libsvm;
pub mod spec;
pub mod split;
pub mod synthetic;
pub mod xor;

use std::fmt;

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

pub use spec::{DataSpec, DatasetKind, TaskKind};

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
    /// A data file is malformed.
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

/// The shape of one image: its features are the pixels in `(C, H, W)` row-major order
/// (PyTorch's layout: channel, then row, then column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Colour channels (1 for greyscale).
    pub channels: usize,
    /// Rows of pixels.
    pub height: usize,
    /// Columns of pixels.
    pub width: usize,
}

impl ImageShape {
    /// Values per image, `channels × height × width`: the feature count.
    #[must_use]
    pub fn values(&self) -> usize {
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
/// Invariant: when `image` is set, `features == image.values()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataShape {
    /// Feature columns.
    pub features: usize,
    /// The task.
    pub task: Task,
    /// The image every sample is, for image data; `None` for tabular data.
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
/// `features.ncols() == image.values()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[samples, features]`.
    pub features: Array2<f32>,
    /// One target per row of `features`.
    pub targets: Targets,
    /// The image each row is, for image data (`(C, H, W)` pixel order); `None` for tabular data.
    pub image: Option<ImageShape>,
}

impl Dataset {
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
        }
    }
}
