//! The server's logic, free of I/O: registration, the consistency rule, pushes, pulls,
//! evaluations and status. The gRPC layer ([`crate::service`]) only decodes, calls
//! these methods under one lock, waits when told to, and encodes.

use downpour_core::status::{Evaluation, ServerStatus, StalenessStats, WorkerState};
use downpour_core::{Assignment, ParamSet, TrainingPlan};

use crate::barrier::{Offer, SyncBarrier};
use crate::job::{ConsistencyMode, Job};
use crate::membership::{Membership, WorkerRecord};
use crate::store::{GradientError, ParameterStore, UpdateRule};
use crate::training_metrics::TrainingMetrics;

/// A request the server refuses. State is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// No worker ever registered with this id.
    #[error("unknown worker id {0}")]
    UnknownWorker(u32),
    /// The worker left the job.
    #[error("worker {0} has left the job")]
    DepartedWorker(u32),
    /// Every shard of the job is taken.
    #[error("the job is full: all {0} workers have registered")]
    JobFull(usize),
    /// The gradient does not fit the model.
    #[error(transparent)]
    Gradient(#[from] GradientError),
    /// A push for a step the worker has not reached in order.
    #[error("worker {worker} pushed step {step}, but its next step is {expected}")]
    OutOfOrder {
        /// The worker.
        worker: u32,
        /// The step pushed.
        step: u64,
        /// The step expected.
        expected: u64,
    },
    /// A push beyond the last step of the job.
    #[error("worker {worker} pushed step {step}, but the job has {total} steps per worker")]
    BeyondLastStep {
        /// The worker.
        worker: u32,
        /// The step pushed.
        step: u64,
        /// Steps per worker.
        total: u64,
    },
    /// A gradient computed from a version the server has not reached.
    #[error("base version {base} is ahead of the server's version {current}")]
    FutureVersion {
        /// The version claimed.
        base: u64,
        /// The server's version.
        current: u64,
    },
}

/// The answer to a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    /// The worker may proceed with the parameters of `version`.
    Ready {
        /// The version to serve.
        version: u64,
        /// Whether this worker should evaluate these parameters.
        evaluate: bool,
    },
    /// Not yet: wait for the state to change and ask again.
    Wait,
}

/// The answer to an accepted push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// The version after the push.
    pub version: u64,
    /// Current version minus the gradient's base version, at arrival.
    pub staleness: u64,
    /// True when the step had already been received: a retry, not applied again.
    pub duplicate: bool,
}

/// The parameter server's state.
///
/// Invariants: `barrier.step() == store.version()` in sync mode; a worker's
/// `next_step` never exceeds `job.total_steps()`; `next_eval_at` is a positive
/// multiple of the evaluation interval.
#[derive(Debug)]
pub struct ServerCore {
    /// The validated job.
    job: Job,
    /// Weights, optimizer state, version.
    store: ParameterStore,
    /// Registered workers.
    membership: Membership,
    /// Sync mode's barrier (unused in async mode).
    barrier: SyncBarrier,
    /// Losses and evaluations.
    metrics: TrainingMetrics,
    /// Gradients applied (async) or received into applied steps (sync).
    gradients_applied: u64,
    /// Progress (in steps) at which the next periodic evaluation is due.
    next_eval_at: u64,
    /// The worker asked to evaluate the final parameters, once one has been.
    final_evaluator: Option<u32>,
    /// Staleness over all workers.
    staleness: StalenessStats,
}

impl ServerCore {
    /// A server for `job`, its parameters initialised from the job's seed.
    #[must_use]
    pub fn new(job: Job) -> Self {
        let rule = UpdateRule {
            optimizer: job.optimizer.clone(),
            base_lr: job.spec.optimizer.lr(),
            schedule: job.spec.schedule.clone(),
            clip_grad_norm: job.spec.training.clip_grad_norm,
        };
        let store = ParameterStore::new(&job.layout, job.spec.training.seed, rule);
        Self {
            next_eval_at: job.eval_interval(),
            job,
            store,
            membership: Membership::default(),
            barrier: SyncBarrier::default(),
            metrics: TrainingMetrics::default(),
            gradients_applied: 0,
            final_evaluator: None,
            staleness: StalenessStats::default(),
        }
    }

    /// The job.
    #[must_use]
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The current parameters.
    #[must_use]
    pub fn params(&self) -> &ParamSet {
        self.store.params()
    }

    /// The parameter store (weights, optimizer state, version).
    #[must_use]
    pub fn store(&self) -> &ParameterStore {
        &self.store
    }

    /// The current version.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.store.version()
    }

    /// Adds a worker; returns its assignment and the training plan.
    ///
    /// # Errors
    /// [`CoreError::JobFull`] once every shard is taken.
    pub fn register(&mut self, name: &str) -> Result<(Assignment, TrainingPlan), CoreError> {
        let shards = self.job.workers();
        if self.membership.registered() >= shards {
            return Err(CoreError::JobFull(shards));
        }
        let shard_index = self.membership.registered();
        let worker_id = self.membership.register(name.to_string(), shard_index);
        let assignment = Assignment {
            worker_id,
            shard_index,
            shard_count: shards,
        };
        Ok((assignment, self.job.plan()))
    }

    /// Whether every expected worker has registered, so training may begin.
    #[must_use]
    pub fn started(&self) -> bool {
        self.membership.registered() >= self.job.workers()
    }

    /// Whether every worker has pushed its last step (or left) and every gradient is applied.
    #[must_use]
    pub fn training_done(&self) -> bool {
        self.started() && self.membership.active_ids().next().is_none() && self.barrier.is_empty()
    }

    /// Whether training is done and the final parameters have been evaluated.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.training_done() && self.metrics.final_evaluation().is_some()
    }

    /// Decides whether `worker` may start `step` now (or, with `final_pull`, whether the job's
    /// training is over), and whether it should evaluate what it receives.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`] or [`CoreError::DepartedWorker`].
    pub fn pull(
        &mut self,
        worker: u32,
        step: u64,
        final_pull: bool,
    ) -> Result<PullOutcome, CoreError> {
        self.member(worker)?;
        if !self.started() {
            return Ok(PullOutcome::Wait);
        }
        let outcome = if final_pull {
            if self.training_done() {
                let evaluate = self.final_evaluator.is_none();
                if evaluate {
                    self.final_evaluator = Some(worker);
                }
                PullOutcome::Ready {
                    version: self.version(),
                    evaluate,
                }
            } else {
                PullOutcome::Wait
            }
        } else {
            let ready = match self.job.mode() {
                ConsistencyMode::Sync => self.version() >= step,
                ConsistencyMode::Async => true,
            };
            if ready {
                PullOutcome::Ready {
                    version: self.version(),
                    evaluate: self.claim_periodic_evaluation(worker),
                }
            } else {
                PullOutcome::Wait
            }
        };
        if matches!(outcome, PullOutcome::Ready { .. }) {
            self.record_mut(worker).pulls += 1;
        }
        Ok(outcome)
    }

    /// Takes a worker's gradient for `step`, computed from `base_version`.
    ///
    /// Sync mode holds it at the barrier and applies the average once every active worker
    /// has pushed the step; async mode applies it at once.
    ///
    /// # Errors
    /// [`CoreError`] for an unknown or departed worker, a step out of order or beyond the
    /// job, a base version from the future, or a gradient that does not fit the model.
    /// A refused push leaves the parameters untouched (and counts as rejected).
    pub fn push(
        &mut self,
        worker: u32,
        step: u64,
        base_version: u64,
        loss: f64,
        samples: u64,
        gradient: ParamSet,
    ) -> Result<PushOutcome, CoreError> {
        let result = self.accept_push(worker, step, base_version, loss, samples, gradient);
        if result.is_err()
            && let Some(r) = self.membership.get_mut(worker)
        {
            r.rejected_pushes += 1;
        }
        result
    }

    fn accept_push(
        &mut self,
        worker: u32,
        step: u64,
        base_version: u64,
        loss: f64,
        samples: u64,
        gradient: ParamSet,
    ) -> Result<PushOutcome, CoreError> {
        let record = self.member(worker)?;
        let version = self.version();
        if step < record.next_step {
            return Ok(PushOutcome {
                version,
                staleness: 0,
                duplicate: true,
            });
        }
        let total = self.job.total_steps();
        if step >= total {
            return Err(CoreError::BeyondLastStep {
                worker,
                step,
                total,
            });
        }
        if step > record.next_step {
            return Err(CoreError::OutOfOrder {
                worker,
                step,
                expected: record.next_step,
            });
        }
        if base_version > version {
            return Err(CoreError::FutureVersion {
                base: base_version,
                current: version,
            });
        }
        let gradient = self.store.conform(gradient)?;
        let staleness = version - base_version;
        match self.job.mode() {
            ConsistencyMode::Sync => {
                if self.barrier.offer(worker, gradient) == Offer::Duplicate {
                    return Ok(PushOutcome {
                        version,
                        staleness,
                        duplicate: true,
                    });
                }
            }
            ConsistencyMode::Async => {
                self.store.apply(gradient, 1.0);
                self.gradients_applied += 1;
            }
        }
        self.staleness.record(staleness);
        let steps_per_epoch = self.job.steps_per_epoch;
        self.metrics
            .record_loss(step / steps_per_epoch, loss, samples);
        let record = self.record_mut(worker);
        record.pushes += 1;
        record.samples += samples;
        record.next_step = step + 1;
        record.last_loss = Some(loss);
        record.staleness.record(staleness);
        if record.next_step == total {
            record.state = WorkerState::Finished;
        }
        self.complete_barrier();
        Ok(PushOutcome {
            version: self.version(),
            staleness,
            duplicate: false,
        })
    }

    /// Records an evaluation a worker reports.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`] for an id that never registered.
    pub fn report_evaluation(&mut self, evaluation: Evaluation) -> Result<(), CoreError> {
        if self.membership.get(evaluation.worker_id).is_none() {
            return Err(CoreError::UnknownWorker(evaluation.worker_id));
        }
        self.metrics.record_evaluation(evaluation);
        Ok(())
    }

    /// Records that a worker is alive; returns the current version.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`] or [`CoreError::DepartedWorker`].
    pub fn heartbeat(&mut self, worker: u32) -> Result<u64, CoreError> {
        self.member(worker)?;
        Ok(self.version())
    }

    /// Removes a worker from the job. A sync step it had not pushed no longer waits for it.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`]; leaving twice is not an error.
    pub fn leave(&mut self, worker: u32) -> Result<(), CoreError> {
        let record = self
            .membership
            .get_mut(worker)
            .ok_or(CoreError::UnknownWorker(worker))?;
        record.state = WorkerState::Left;
        if self.final_evaluator == Some(worker) && self.metrics.final_evaluation().is_none() {
            self.final_evaluator = None;
        }
        self.complete_barrier();
        Ok(())
    }

    /// Counts a push refused before it reached the core (it did not decode).
    pub fn note_rejected(&mut self, worker: u32) {
        if let Some(r) = self.membership.get_mut(worker) {
            r.rejected_pushes += 1;
        }
    }

    /// Whether every worker that registered has left.
    #[must_use]
    pub fn all_left(&self) -> bool {
        self.started()
            && self
                .membership
                .iter()
                .all(|(_, r)| r.state == WorkerState::Left)
    }

    /// Everything the server reports; `elapsed_seconds` is supplied by the caller's clock.
    #[must_use]
    pub fn status(&self, elapsed_seconds: f64) -> ServerStatus {
        let samples_trained = self.membership.iter().map(|(_, r)| r.samples).sum();
        ServerStatus {
            job: serde_json::to_value(&self.job.spec).expect("a job spec always serialises"),
            consistency: self.job.mode().name().to_string(),
            version: self.version(),
            steps_per_epoch: self.job.steps_per_epoch,
            total_steps: self.job.total_steps(),
            epoch_progress: self.progress_steps() as f64 / self.job.steps_per_epoch as f64,
            expected_workers: self.job.workers(),
            finished: self.finished(),
            elapsed_seconds,
            samples_trained,
            workers: self.membership.statuses(),
            epochs: self.metrics.epochs(self.versions_per_epoch()),
            evaluations: self.metrics.evaluations().to_vec(),
            final_evaluation: self.metrics.final_evaluation().cloned(),
            staleness: self.staleness.clone(),
            // Filled in by the gRPC layer, which owns the clocks.
            timing: downpour_core::timing::TimingReport::default(),
        }
    }

    /// Job progress in steps of one worker: the version in sync mode, gradients applied
    /// divided by workers in async mode.
    fn progress_steps(&self) -> u64 {
        match self.job.mode() {
            ConsistencyMode::Sync => self.version(),
            ConsistencyMode::Async => self.gradients_applied / self.job.workers() as u64,
        }
    }

    /// Versions per epoch of the whole job.
    fn versions_per_epoch(&self) -> u64 {
        match self.job.mode() {
            ConsistencyMode::Sync => self.job.steps_per_epoch,
            ConsistencyMode::Async => self.job.steps_per_epoch * self.job.workers() as u64,
        }
    }

    /// In sync mode, applies the barrier's average once no active worker owes the step.
    fn complete_barrier(&mut self) {
        if self.job.mode() != ConsistencyMode::Sync || self.barrier.is_empty() {
            return;
        }
        let step = self.barrier.step();
        let owed = self
            .membership
            .iter()
            .any(|(_, r)| r.state != WorkerState::Left && r.next_step <= step);
        if owed {
            return;
        }
        let count = self.barrier.len() as u64;
        if let Some(mean) = self.barrier.release() {
            self.store.apply(mean, 1.0);
            self.gradients_applied += count;
        }
    }

    /// The lowest active worker evaluates when the job's progress reaches the next evaluation point.
    fn claim_periodic_evaluation(&mut self, worker: u32) -> bool {
        let evaluator = self.membership.active_ids().next();
        let progress = self.progress_steps();
        if evaluator != Some(worker)
            || progress < self.next_eval_at
            || progress >= self.job.total_steps()
        {
            return false;
        }
        let interval = self.job.eval_interval();
        self.next_eval_at = (progress / interval + 1) * interval;
        true
    }

    fn member(&self, worker: u32) -> Result<&WorkerRecord, CoreError> {
        let record = self
            .membership
            .get(worker)
            .ok_or(CoreError::UnknownWorker(worker))?;
        if record.state == WorkerState::Left {
            return Err(CoreError::DepartedWorker(worker));
        }
        Ok(record)
    }

    fn record_mut(&mut self, worker: u32) -> &mut WorkerRecord {
        self.membership
            .get_mut(worker)
            .expect("caller checked membership")
    }
}
