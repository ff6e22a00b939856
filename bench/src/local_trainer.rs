//! The same training in one process, with no server process and no network: the
//! worker's own loop ([`downpour_worker::train_with`]) against the server's core in this
//! process ([`crate::in_process`]). A baseline that shows what distribution costs at
//! one worker.
//!
//! It is one worker of the job, so it follows a one-worker job exactly: the same initial
//! weights, the same batch order, the same update, the evaluations at the same versions.
//! A sync job with one worker ends with bit-identical weights.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use downpour_core::ParamSet;
use downpour_core::status::Evaluation;
use downpour_server::Job;
use downpour_worker::{WorkerError, WorkerOptions, train_with};

use crate::in_process::InProcessServer;

/// Why local training failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalTrainError {
    /// The worker failed: its data, its model, or a call the core refused.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The runtime the loop runs on could not be built.
    #[error("building the runtime: {0}")]
    Runtime(#[from] std::io::Error),
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

/// Trains `job` as its one worker would, in this process, on this thread.
///
/// # Errors
/// [`LocalTrainError`] when the data cannot be loaded, the model refuses it, or the core
/// refuses a call.
pub fn train_locally(job: &Job) -> Result<LocalRun, LocalTrainError> {
    let server = InProcessServer::new(job.clone());
    let (mut client, registration) = server
        .register("single-process", None)
        .map_err(WorkerError::from)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = WorkerOptions::new("in-process");
    let summary = runtime.block_on(train_with(
        &mut client,
        &registration,
        &options,
        &CancellationToken::new(),
    ))?;
    let record = server.record();
    let started = record.first_pull.unwrap_or_else(Instant::now);
    let phases = record.phases.unwrap_or_default();
    let run = LocalRun {
        steps: summary.steps,
        samples: summary.samples,
        training: record
            .last_update
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(started)),
        compute: Duration::from_secs_f64(phases.compute),
        apply: record.applying,
        evaluate: Duration::from_secs_f64(phases.evaluate),
        evaluations: record
            .evaluations
            .into_iter()
            .map(|(at, evaluation)| TimedEvaluation {
                seconds: at.saturating_duration_since(started).as_secs_f64(),
                evaluation,
            })
            .collect(),
        params: server.core().params().clone(),
    };
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
