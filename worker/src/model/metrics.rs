//! How well a model does on a dataset: what [`crate::model::Model::evaluate`] reports
//! (the fields of `downpour_core::status::Evaluation`, without the job's bookkeeping).

/// A model's loss and quality on a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// The mean loss, reduced as in training (PyTorch's defaults).
    pub loss: f64,
    /// Classification data: the fraction of samples whose predicted class
    /// (largest output, or `p > 0.5` for logistic regression) is the label, in `[0, 1]`.
    /// `None` on regression data.
    pub accuracy: Option<f64>,
    /// Regression data: the squared error averaged over samples and outputs
    /// (equal to `loss`, the mean squared error). `None` on classification data.
    pub mse: Option<f64>,
    /// Samples evaluated (at least 1).
    pub samples: usize,
}

impl Metrics {
    /// The evaluation `worker_id` reports of these metrics, taken at `version`.
    #[must_use]
    pub fn to_evaluation(
        &self,
        worker_id: u32,
        version: u64,
        is_final: bool,
    ) -> downpour_core::status::Evaluation {
        downpour_core::status::Evaluation {
            worker_id,
            version,
            test_loss: self.loss,
            test_accuracy: self.accuracy,
            test_mse: self.mse,
            test_samples: self.samples as u64,
            is_final,
        }
    }
}
