//! Training losses per epoch and the evaluations workers report.

use downpour_core::status::{EpochMetrics, Evaluation};

/// Loss sums per epoch and every evaluation.
///
/// Invariant: `loss_sums[e]` and `samples[e]` cover the gradients of worker steps in epoch `e`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TrainingMetrics {
    /// Sum of `loss × samples` per epoch.
    loss_sums: Vec<f64>,
    /// Samples per epoch.
    samples: Vec<u64>,
    /// Evaluations in the order reported.
    evaluations: Vec<Evaluation>,
    /// The evaluation of the final parameters.
    final_evaluation: Option<Evaluation>,
}

impl TrainingMetrics {
    /// Records the mean loss of a gradient of `samples` samples from `epoch`.
    pub fn record_loss(&mut self, epoch: u64, loss: f64, samples: u64) {
        let e = usize::try_from(epoch).expect("epochs fit in usize");
        if self.loss_sums.len() <= e {
            self.loss_sums.resize(e + 1, 0.0);
            self.samples.resize(e + 1, 0);
        }
        self.loss_sums[e] += loss * samples as f64;
        self.samples[e] = self.samples[e].saturating_add(samples);
    }

    /// Records an evaluation; a final one also becomes [`Self::final_evaluation`].
    pub fn record_evaluation(&mut self, evaluation: Evaluation) {
        if evaluation.is_final {
            self.final_evaluation = Some(evaluation.clone());
        }
        self.evaluations.push(evaluation);
    }

    /// The evaluation of the final parameters, once reported.
    #[must_use]
    pub fn final_evaluation(&self) -> Option<&Evaluation> {
        self.final_evaluation.as_ref()
    }

    /// Every evaluation, in order.
    #[must_use]
    pub fn evaluations(&self) -> &[Evaluation] {
        &self.evaluations
    }

    /// Per-epoch metrics. `versions_per_epoch` maps an evaluation's version to the epoch
    /// it ends (the last evaluation within an epoch is that epoch's).
    #[must_use]
    pub fn epochs(&self, versions_per_epoch: u64) -> Vec<EpochMetrics> {
        let mut epochs: Vec<EpochMetrics> = self
            .loss_sums
            .iter()
            .zip(&self.samples)
            .enumerate()
            .map(|(e, (&sum, &n))| EpochMetrics {
                epoch: e as u64,
                train_loss: if n == 0 { 0.0 } else { sum / n as f64 },
                samples: n,
                evaluation: None,
            })
            .collect();
        for ev in &self.evaluations {
            if ev.version == 0 {
                continue;
            }
            let e = usize::try_from(ev.version.div_ceil(versions_per_epoch.max(1)) - 1)
                .unwrap_or(usize::MAX);
            if let Some(slot) = epochs.get_mut(e) {
                slot.evaluation = Some(ev.clone());
            }
        }
        epochs
    }
}
