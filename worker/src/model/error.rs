//! Why a model could not be built, or refused its parameters or data.

use downpour_core::Task;
use downpour_core::model_spec::ModelSpecError;
use downpour_core::tensor::TensorError;

/// Why a model could not be built, or refused its parameters or data.
///
/// Every message carries the numbers involved, so it can be shown as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The spec is invalid or cannot train on data of this shape.
    #[error(transparent)]
    Spec(#[from] ModelSpecError),
    /// A parameter (or gradient) set has the wrong number of tensors.
    #[error("{role}: expected {expected} tensors, got {actual}")]
    TensorCount {
        /// `"params"` or `"grads"`: which argument.
        role: &'static str,
        /// The number in the model's layout.
        expected: usize,
        /// The number in the set.
        actual: usize,
    },
    /// A tensor of a parameter (or gradient) set does not match the layout.
    #[error(
        "{role}[{index}]: expected {expected_name} of shape {expected_shape:?}, \
         got {actual_name} of shape {actual_shape:?}"
    )]
    TensorMismatch {
        /// `"params"` or `"grads"`: which argument.
        role: &'static str,
        /// Position of the tensor in the set (and in the layout).
        index: usize,
        /// The layout's name at that position.
        expected_name: String,
        /// The layout's shape at that position.
        expected_shape: Vec<usize>,
        /// The set's name at that position.
        actual_name: String,
        /// The set's shape at that position.
        actual_shape: Vec<usize>,
    },
    /// A tensor could not be viewed as a matrix or vector.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The data has the wrong number of feature columns.
    #[error("expected {expected} features, got {actual}")]
    Features {
        /// The model's input width.
        expected: usize,
        /// The data's feature columns.
        actual: usize,
    },
    /// A loss or gradient was asked of a batch with no samples.
    #[error("expected at least 1 sample, got an empty batch")]
    EmptyBatch,
    /// The targets are for another task (or another number of classes or outputs).
    #[error("expected targets for {expected}, got {actual}")]
    TargetKind {
        /// The task the model was built for.
        expected: Task,
        /// The task of the data's targets.
        actual: Task,
    },
    /// The data has a different number of targets than of feature rows.
    #[error("expected {samples} targets (one per feature row), got {targets}")]
    TargetCount {
        /// Feature rows.
        samples: usize,
        /// Targets (labels, or rows of regression targets).
        targets: usize,
    },
    /// A class label is out of range.
    #[error("sample {index} has label {label}, expected a class below {classes}")]
    Label {
        /// The sample's row in the data.
        index: usize,
        /// Its label.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
}
