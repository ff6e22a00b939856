//! The same training in one process, with no server and no network: the worker's model
//! and batches, the server's parameter store and optimizer step. A baseline that shows
//! what distribution costs at one worker.
//!
//! Steps follow a one-worker job exactly: the same initial weights, the same batch order,
//! the same update, the evaluations at the same versions. A sync job with one worker
//! ends with bit-identical weights.

use std::time::{Duration, Instant};

use downpour_core::data::DataError;
use downpour_core::status::Evaluation;
use downpour_core::{ParamSet, sharding};
use downpour_server::Job;
use downpour_server::store::{ParameterStore, UpdateRule};

use downpour_worker::model::{Model, ModelError};

/// Why local training failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalTrainError {
    /// The job's dataset could not be loaded.
    #[error("loading the job's data: {0}")]
    Data(#[from] DataError),
    /// The model could not be built or run on the data.
    #[error("model: {0}")]
    Model(#[from] ModelError),
}

/// An evaluation and when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvaluation {
    /// Seconds since training began.
    pub seconds: f64,
    /// The test metrics.
    pub evaluation: Evaluation,
}

/// What local training did, and where its time went.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Samples trained on.
    pub samples: u64,
    /// From the first step to the last update (loading and the final evaluation excluded).
    pub training: Duration,
    /// Computing gradients.
    pub compute: Duration,
    /// Applying updates (the optimizer step).
    pub apply: Duration,
    /// Periodic evaluations during training.
    pub evaluate: Duration,
    /// Every evaluation, the final one last.
    pub evaluations: Vec<TimedEvaluation>,
    /// The trained parameters.
    pub params: ParamSet,
}

impl LocalRun {
    /// Samples per second of training.
    #[must_use]
    pub fn samples_per_second(&self) -> f64 {
        let seconds = self.training.as_secs_f64();
        if seconds > 0.0 {
            self.samples as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Trains `job` as one worker would, in this process, on this thread.
///
/// # Errors
/// [`LocalTrainError`] when the data cannot be loaded or the model refuses it.
pub fn train_locally(job: &Job) -> Result<LocalRun, LocalTrainError> {
    let plan = job.plan();
    let (train, test) = plan.data.load_split(plan.seed)?;
    let model = Model::new(&plan.model, &train.shape())?;
    let rule = UpdateRule {
        optimizer: job.optimizer.clone(),
        base_lr: job.spec.optimizer.lr(),
        schedule: job.spec.schedule,
        clip_grad_norm: job.spec.training.clip_grad_norm,
    };
    let mut store = ParameterStore::new(job.layout.initialize(plan.seed), rule);
    let shard_batch = plan.shard_batch(1);
    let steps_per_epoch = sharding::steps_per_epoch(train.len(), 1, shard_batch) as u64;
    let total_steps = steps_per_epoch * plan.epochs as u64;
    let batch = shard_batch.resolve(sharding::largest_shard(train.len(), 1));
    let eval_interval = job.eval_interval();
    let mut grads = store.params().zeros_like();
    let mut order = Vec::new();
    let mut run = LocalRun {
        steps: total_steps,
        samples: 0,
        training: Duration::ZERO,
        compute: Duration::ZERO,
        apply: Duration::ZERO,
        evaluate: Duration::ZERO,
        evaluations: Vec::new(),
        params: ParamSet::default(),
    };

    let started = Instant::now();
    for step in 0..total_steps {
        let (epoch, step_in_epoch) = (step / steps_per_epoch, step % steps_per_epoch);
        if step_in_epoch == 0 {
            order = sharding::epoch_order(train.len(), 0, 1, plan.seed, epoch);
        }
        // The server asks for an evaluation when the version reaches a multiple of the interval.
        if step > 0 && step.is_multiple_of(eval_interval) {
            let evaluating = Instant::now();
            let metrics = model.evaluate(store.params(), &test)?;
            run.evaluate += evaluating.elapsed();
            run.evaluations.push(TimedEvaluation {
                seconds: started.elapsed().as_secs_f64(),
                evaluation: metrics.to_evaluation(0, store.version(), false),
            });
        }
        let positions = sharding::batch_positions(&order, step_in_epoch as usize, batch);
        // Selecting the batch counts as compute, as in the worker.
        let computing = Instant::now();
        let batch_data = train.select(positions);
        model.loss_and_gradient(store.params(), &batch_data, &mut grads)?;
        run.compute += computing.elapsed();
        let applying = Instant::now();
        store.apply(grads.clone(), 1.0);
        run.apply += applying.elapsed();
        run.samples += positions.len() as u64;
    }
    run.training = started.elapsed();
    let metrics = model.evaluate(store.params(), &test)?;
    run.evaluations.push(TimedEvaluation {
        seconds: started.elapsed().as_secs_f64(),
        evaluation: metrics.to_evaluation(0, store.version(), true),
    });
    run.params = store.params().clone();
    tracing::info!(
        steps = run.steps,
        samples = run.samples,
        seconds = run.training.as_secs_f64(),
        "trained locally"
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_server::JobSpec;

    #[test]
    fn learns_xor_and_evaluates_every_epoch() {
        use downpour_core::model_spec::Activation;
        use downpour_server::optim::{OptimizerConfig, OptimizerOverrides};
        let mut spec = JobSpec {
            data: downpour_core::DataSpec::builtin(downpour_core::data::DatasetKind::Xor),
            ..JobSpec::default()
        };
        spec.model.hidden = vec![8];
        spec.model.activation = Activation::Tanh;
        spec.optimizer = OptimizerConfig::with_defaults("sgd").unwrap();
        spec.optimizer
            .apply_overrides(&OptimizerOverrides {
                lr: Some(0.5),
                ..OptimizerOverrides::default()
            })
            .unwrap();
        spec.training.epochs = 500;
        spec.training.batch_size =
            downpour_core::BatchSize::Full(downpour_core::plan::FullBatch::Full);
        let job = spec.validate().unwrap();
        let run = train_locally(&job).unwrap();
        assert_eq!(run.steps, 500, "one full-batch step per epoch");
        assert_eq!(run.samples, 2000);
        // One evaluation after each epoch but the last, then the final one.
        assert_eq!(run.evaluations.len(), 500);
        let last = &run.evaluations.last().unwrap().evaluation;
        assert!(last.is_final);
        assert_eq!(last.version, 500);
        assert_eq!(last.test_accuracy, Some(1.0), "{last:?}");
        assert!(run.samples_per_second() > 0.0);
    }
}
