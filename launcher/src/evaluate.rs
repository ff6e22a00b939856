//! `downpour evaluate`: the test metrics of saved weights on a job's split, and the split
//! itself written out so that it can be reproduced elsewhere.
//!
//! The data is prepared exactly as in training ([`downpour_core::DataSpec::prepare`]): the
//! same seeded split and, when the job standardises, the statistics saved in the weights
//! file's metadata. The model is the one the workers evaluate with, so the test accuracy
//! equals the run report's final one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use downpour_core::data::SplitIndices;
use downpour_core::{NamedTensor, ParamSet};
use downpour_server::JobError;
use downpour_worker::model::{Metrics, Model, ModelError};

use crate::cli::EvaluateArgs;
use crate::weights::{WeightsError, read_safetensors, read_standardization};

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The job is invalid or its data cannot be read.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The weights file cannot be read.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The weights do not fit the job's model.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The weights file.
        path: String,
        /// Which tensor, and the shapes.
        reason: String,
    },
    /// The model refused the data or the weights.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The split file cannot be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The split file `--split-out` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitFile {
    /// The dataset kind, as in the job file.
    pub dataset: String,
    /// The job's seed, from which the split is drawn.
    pub seed: u64,
    /// The fraction held out.
    pub test_fraction: f64,
    /// Samples in the whole dataset.
    pub samples: usize,
    /// The sample indices of each split; `train` in training order.
    #[serde(flatten)]
    pub indices: SplitIndices,
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOutcome {
    /// The test metrics.
    pub metrics: Metrics,
    /// Samples in the training split.
    pub train_samples: usize,
    /// Which standardisation statistics were applied.
    pub standardization: StandardizationSource,
}

/// Where the statistics `evaluate` standardised with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardizationSource {
    /// The job does not standardise.
    None,
    /// The weights file's metadata (written by `downpour train`).
    Saved,
    /// Recomputed from the training split (a weights file without them, e.g. from `export`).
    TrainingSplit,
}

/// Evaluates the weights in `args.weights` on the test split of `args.job`.
///
/// # Errors
/// [`EvaluateError`] for an invalid job, an unreadable weights file, weights of another
/// model, or a split file that cannot be written.
pub fn evaluate(args: &EvaluateArgs) -> Result<EvaluateOutcome, EvaluateError> {
    let job = args.job.to_spec()?.validate()?;
    let data = &job.spec.data;
    let seed = job.spec.training.seed;
    let statistics = read_standardization(&args.weights)?;
    let saved_statistics = statistics.is_some();
    if saved_statistics && !data.standardize {
        return Err(EvaluateError::Mismatch {
            path: args.weights.display().to_string(),
            reason: "holds standardisation statistics, but the job does not standardise \
                     (set [data] standardize = true, or pass --standardize)"
                .to_string(),
        });
    }
    let prepared = data
        .prepare(seed, statistics)
        .map_err(|e| EvaluateError::Job(JobError::Data(e)))?;
    if let Some(out) = &args.split_out {
        let file = SplitFile {
            dataset: data.kind.name().to_string(),
            seed,
            test_fraction: data.test_fraction,
            samples: prepared.train.len() + held_out(&prepared.split),
            indices: prepared.split.clone(),
        };
        let json = serde_json::to_string_pretty(&file).expect("a split always serialises");
        std::fs::write(out, json + "\n").map_err(|source| EvaluateError::Io {
            path: out.display().to_string(),
            source,
        })?;
    }
    let model = Model::new(&job.spec.model, &prepared.train.shape())?;
    let params = in_layout_order(&model, read_safetensors(&args.weights)?, &args.weights)?;
    let metrics = model.evaluate(&params, &prepared.test)?;
    Ok(EvaluateOutcome {
        metrics,
        train_samples: prepared.train.len(),
        standardization: match (prepared.standardization.is_some(), saved_statistics) {
            (false, _) => StandardizationSource::None,
            (true, true) => StandardizationSource::Saved,
            (true, false) => StandardizationSource::TrainingSplit,
        },
    })
}

/// Test samples that are not also training samples (0 when nothing is held out).
fn held_out(split: &SplitIndices) -> usize {
    if split.test == split.train {
        0
    } else {
        split.test.len()
    }
}

/// The file's tensors in the model's layout order, each checked for its name and shape.
fn in_layout_order(model: &Model, file: ParamSet, path: &Path) -> Result<ParamSet, EvaluateError> {
    let mismatch = |reason: String| EvaluateError::Mismatch {
        path: path.display().to_string(),
        reason,
    };
    let layout = model.layout().params();
    if file.entries().len() != layout.len() {
        let names: Vec<&str> = file.entries().iter().map(|e| e.name.as_str()).collect();
        return Err(mismatch(format!(
            "holds {} tensors ({}), the job's model has {}",
            names.len(),
            names.join(", "),
            layout.len()
        )));
    }
    let mut entries = Vec::with_capacity(layout.len());
    for spec in layout {
        let tensor = file.get(&spec.name).ok_or_else(|| {
            mismatch(format!(
                "no tensor {}, which the job's model needs",
                spec.name
            ))
        })?;
        if tensor.shape() != spec.shape.as_slice() {
            return Err(mismatch(format!(
                "tensor {} has shape {:?}, the job's model expects {:?}",
                spec.name,
                tensor.shape(),
                spec.shape
            )));
        }
        entries.push(NamedTensor {
            name: spec.name.clone(),
            tensor: tensor.clone(),
        });
    }
    Ok(ParamSet::new(entries))
}

/// The lines `downpour evaluate` prints.
#[must_use]
pub fn describe(outcome: &EvaluateOutcome) -> String {
    let m = &outcome.metrics;
    let quality = match (m.accuracy, m.mse) {
        (Some(a), _) => format!("test accuracy {:.2}% ", a * 100.0),
        (None, Some(mse)) => format!("test mse {mse:.6} "),
        (None, None) => String::new(),
    };
    format!(
        "{quality}test loss {:.6} on {} test samples ({} training samples{})\n",
        m.loss,
        m.samples,
        outcome.train_samples,
        match outcome.standardization {
            StandardizationSource::None => "",
            StandardizationSource::Saved => ", standardised with the saved statistics",
            StandardizationSource::TrainingSplit =>
                ", standardised with the training split's statistics",
        }
    )
}
