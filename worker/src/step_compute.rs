//! One step's compute, the rule the lockstep and prefetching loops share: the gradient of
//! a mini-batch on the parameters of the step, and the batch's loss.

use std::sync::Arc;
use std::time::Duration;

use downpour_core::{Dataset, ParamSet};

use crate::model::{Model, ModelError, StepKey};
use crate::sabotage::Sabotage;

/// What one step computes on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepInput<'a> {
    /// The training-set positions of the step's batch (every shard the worker owns).
    pub positions: &'a [usize],
    /// The parameters of the step.
    pub params: &'a ParamSet,
    /// Seeds the step's dropout masks.
    pub key: StepKey,
}

/// The data and model a worker computes with, and the batch buffer it reuses from step to
/// step. Owned by one loop at a time: the prefetching loop moves it to its compute thread
/// and gets it back with the gradient.
#[derive(Debug)]
pub(crate) struct StepCompute {
    /// The whole training split (positions index it).
    train: Arc<Dataset>,
    /// The model.
    model: Arc<Model>,
    /// Simulated compute (benchmarks): sleep this long instead of computing, and leave the
    /// gradient as it was.
    simulate: Option<Duration>,
    /// Tests only: what this worker does to each gradient it computes.
    sabotage: Option<Sabotage>,
    /// The last step's batch; refilled in place, so a step allocates nothing for it once
    /// the batch size has been seen.
    batch: Dataset,
}

impl StepCompute {
    pub(crate) fn new(
        train: Arc<Dataset>,
        model: Arc<Model>,
        simulate: Option<Duration>,
        sabotage: Option<Sabotage>,
    ) -> Self {
        let batch = train.select(&[]);
        Self {
            train,
            model,
            simulate,
            sabotage,
            batch,
        }
    }

    /// The gradient of `input`'s batch on its parameters, into `gradient`, and the batch's
    /// loss; with simulated compute, a sleep (blocking the thread, as real compute would)
    /// and a loss of 0. `None` when the step has no data.
    ///
    /// # Errors
    /// [`ModelError`] when the model refuses the batch.
    pub(crate) fn run(
        &mut self,
        input: StepInput<'_>,
        gradient: &mut ParamSet,
    ) -> Result<Option<f32>, ModelError> {
        if input.positions.is_empty() {
            return Ok(None);
        }
        if let Some(pause) = self.simulate {
            std::thread::sleep(pause);
            return Ok(Some(0.0));
        }
        self.train.select_into(input.positions, &mut self.batch);
        let loss =
            self.model
                .loss_and_gradient_at(input.params, &self.batch, gradient, input.key)?;
        if let Some(sabotage) = self.sabotage {
            sabotage.spoil(gradient, input.key.step);
        }
        Ok(Some(loss))
    }
}
