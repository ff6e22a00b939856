//! The server's logic, free of I/O: registration, the consistency rule, pushes, pulls,
//! evaluations and status. The gRPC layer ([`crate::service`]) only decodes, calls
//! these methods under one lock, waits when told to, and encodes.

use downpour_core::partition::ShardPlan;
use downpour_core::status::{
    CheckpointStatus, Evaluation, EvaluationError, JOB_FINISHED, ServerStatus, ShardStatus,
    StalenessStats, WorkerState,
};
use std::sync::Arc;

use downpour_core::schema::{Conformed, TensorSchema};
use downpour_core::{Assignment, ParamSet, Push, TrainingPlan};

use crate::barrier::Offer;
use crate::checkpoint::{Snapshot, TensorState};
use crate::consistency::Consistency;
use crate::job::Job;
use crate::limits::MAX_NAME_BYTES;
use crate::membership::{Membership, WorkerRecord};
use crate::optim::ParamState;
use crate::ownership::DataOwnership;
use crate::robustness::{GradientBounds, GradientError};
use crate::session::{SessionKey, Sessions, WrongSession};
use crate::store::{ParameterStore, UpdateRule};
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
    /// A registration that does not fit this shard's role.
    #[error("{0}")]
    Role(String),
    /// A checkpoint that does not fit the model or the optimizer.
    #[error("cannot resume from the checkpoint: {0}")]
    Resume(String),
    /// A gradient with no tensors that claims samples.
    #[error("worker {worker} sent no gradient for a batch of {samples} samples")]
    EmptyGradient {
        /// The worker.
        worker: u32,
        /// The samples it claims.
        samples: u64,
    },
    /// A gradient computed from a version the server has not reached.
    #[error("base version {base} is ahead of the server's version {current}")]
    FutureVersion {
        /// The version claimed.
        base: u64,
        /// The server's version.
        current: u64,
    },
    /// A worker name longer than [`MAX_NAME_BYTES`].
    #[error("worker name of {len} bytes; at most {max} are accepted", max = MAX_NAME_BYTES)]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// A registration beyond `[limits] max_workers` records.
    #[error("the server holds {limit} worker records, its limit (limits.max_workers)")]
    TooManyWorkers {
        /// The limit.
        limit: usize,
    },
    /// A call that would take part in a job that has finished.
    #[error("{JOB_FINISHED}: training is over and the final evaluation is in")]
    JobFinished,
    /// An evaluation report with values that cannot be true.
    #[error("evaluation from worker {worker}: {source}")]
    Evaluation {
        /// The worker.
        worker: u32,
        /// What is wrong.
        source: EvaluationError,
    },
    /// An evaluation report the job does not expect now from this worker.
    #[error("evaluation from worker {worker} refused: {reason}")]
    EvaluationRefused {
        /// The worker.
        worker: u32,
        /// Why.
        reason: &'static str,
    },
    /// A call acting as a worker without that worker's session secret.
    #[error(transparent)]
    WrongSession(#[from] WrongSession),
}

impl CoreError {
    /// A short name of what was wrong, as refused pushes are counted in the status.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownWorker(_) => "unknown_worker",
            Self::DepartedWorker(_) => "departed_worker",
            Self::Gradient(e) => e.reason(),
            Self::OutOfOrder { .. } => "out_of_order",
            Self::BeyondLastStep { .. } => "beyond_last_step",
            Self::Role(_) => "role",
            Self::Resume(_) => "resume",
            Self::EmptyGradient { .. } => "empty_gradient",
            Self::FutureVersion { .. } => "future_version",
            Self::NameTooLong { .. } => "name_too_long",
            Self::TooManyWorkers { .. } => "too_many_workers",
            Self::JobFinished => "job_finished",
            Self::Evaluation { .. } => "evaluation",
            Self::EvaluationRefused { .. } => "evaluation_refused",
            Self::WrongSession(_) => "wrong_session",
        }
    }
}

/// Which part of the model this server owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRole {
    /// This shard's index, `0..count`. Shard 0 also owns membership (it assigns worker
    /// ids and data shards) and evaluation, and tells workers where the other shards are.
    pub index: usize,
    /// Shards in the job.
    pub count: usize,
}

impl ShardRole {
    /// The role of a server that holds the whole model.
    #[must_use]
    pub fn single() -> Self {
        Self { index: 0, count: 1 }
    }

    /// Whether this shard assigns ids and coordinates evaluation.
    #[must_use]
    pub fn coordinates(&self) -> bool {
        self.index == 0
    }
}

/// The answer to a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// The worker may proceed with the parameters of `version`.
    Ready {
        /// The version to serve.
        version: u64,
        /// Whether this worker should evaluate these parameters.
        evaluate: bool,
        /// The logical data shards whose next batch the worker computes this step (shard 0
        /// decides; other server shards send none). Empty: push an empty gradient.
        data_shards: Vec<u32>,
    },
    /// Not yet: wait for the state to change and ask again.
    Wait,
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The worker's id and the job's data sharding.
    pub assignment: Assignment,
    /// What to train.
    pub plan: TrainingPlan,
    /// The step the worker computes next (0 at the start; later for a worker that joins
    /// late or comes back).
    pub start_step: u64,
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
    /// True when the drop policy discarded the gradient (the step still counts).
    pub dropped: bool,
}

/// The parameter server's state.
///
/// Invariants: `barrier.step() == store.version()` in sync mode; a worker's
/// `next_step` never exceeds `job.total_steps()`; `next_eval_at` is a positive
/// multiple of the evaluation interval; the store holds exactly this shard's pieces
/// of the plan.
#[derive(Debug)]
pub struct ServerCore {
    /// The validated job.
    job: Job,
    /// Which shard this is.
    role: ShardRole,
    /// Traffic counters of this shard (values owned, pushes, pulls, bytes).
    traffic: ShardStatus,
    /// Weights, optimizer state, version.
    store: ParameterStore,
    /// The names and shapes of the tensors this shard holds (fixed for its life): the
    /// one check of which tensors a gradient holds.
    schema: Arc<TensorSchema>,
    /// Registered workers.
    membership: Membership,
    /// Who computes which logical data shard (decided on shard 0 only).
    ownership: DataOwnership,
    /// Set once `min_workers` workers have registered; training runs from then on.
    started: bool,
    /// How long a worker may stay silent before it is declared dead.
    heartbeat_timeout: std::time::Duration,
    /// The consistency rule, with the sync barrier in sync mode.
    consistency: Consistency,
    /// Losses and evaluations.
    metrics: TrainingMetrics,
    /// Gradients applied (async) or received into applied steps (sync).
    gradients_applied: u64,
    /// Progress (in steps) at which the next periodic evaluation is due.
    next_eval_at: u64,
    /// The worker asked to evaluate the final parameters, once one has been.
    final_evaluator: Option<u32>,
    /// Staleness over all workers, in versions.
    staleness: StalenessStats,
    /// Staleness over all workers, in steps.
    step_staleness: StalenessStats,
    /// Checkpoints resumed from and written (kept up to date by the service).
    checkpoint: CheckpointStatus,
    /// What every gradient is checked against before it is held or applied.
    bounds: GradientBounds,
    /// The session secrets: what proves a call comes from the worker it names.
    sessions: Sessions,
}

/// The part of [`ServerCore`] a checkpoint keeps besides weights and optimizer state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CoreState {
    membership: Membership,
    ownership: DataOwnership,
    started: bool,
    gradients_applied: u64,
    next_eval_at: u64,
    metrics: TrainingMetrics,
    staleness: StalenessStats,
    step_staleness: StalenessStats,
    traffic: ShardStatus,
    /// The session key (absent in checkpoints written before session secrets).
    #[serde(default)]
    session_key: Option<SessionKey>,
}

impl ServerCore {
    /// A server holding the whole model of `job`, initialised from the job's seed.
    #[must_use]
    pub fn new(job: Job) -> Self {
        Self::with_role(job, ShardRole::single())
    }

    /// A server holding shard `role.index` of `role.count` of the model of `job`.
    ///
    /// Every shard initialises the whole model from the seed and keeps its own rows, so
    /// the initial values are the same bits whatever the number of shards.
    ///
    /// # Panics
    /// When `role.index >= role.count` (the CLI validates both).
    #[must_use]
    pub fn with_role(job: Job, role: ShardRole) -> Self {
        assert!(
            role.index < role.count,
            "shard index within the shard count"
        );
        let rule = UpdateRule {
            optimizer: job.optimizer.clone(),
            base_lr: job.base_lr(),
            schedule: job.spec.schedule,
            clip_grad_norm: job.spec.training.clip_grad_norm,
        };
        let full = job.layout.initialize(job.spec.training.seed);
        let plan = ShardPlan::new(&job.layout, role.count);
        let store = ParameterStore::new(plan.slice(&full, role.index), rule);
        let traffic = ShardStatus {
            index: role.index,
            count: role.count,
            values: store.params().num_values(),
            ..ShardStatus::default()
        };
        // Shard 0 issues secrets, so it always has a key; the others check with the job's
        // key once given one (`use_session_key`).
        let sessions = Sessions::new(role.coordinates().then(SessionKey::random));
        Self {
            schema: Arc::new(TensorSchema::of(store.params())),
            next_eval_at: job.eval_interval(),
            role,
            traffic,
            store,
            membership: Membership::default(),
            ownership: DataOwnership::new(job.workers()),
            started: false,
            heartbeat_timeout: std::time::Duration::from_secs_f64(
                job.spec.fault_tolerance.heartbeat_timeout,
            ),
            consistency: Consistency::of(&job.spec.consistency, job.aggregation(), 0),
            bounds: job.spec.robustness.bounds(),
            sessions,

            metrics: TrainingMetrics::default(),
            gradients_applied: 0,
            final_evaluator: None,
            staleness: StalenessStats::default(),
            step_staleness: StalenessStats::default(),
            checkpoint: CheckpointStatus::default(),
            job,
        }
    }

    /// Whether a checkpoint taken now is consistent: no sync step is half collected.
    #[must_use]
    pub fn at_step_boundary(&self) -> bool {
        self.consistency.between_steps()
    }

    /// Everything needed to resume this shard: weights, optimizer state, version, and
    /// membership, progress and metrics.
    #[must_use]
    pub fn snapshot(&self, job_fingerprint: String, job_toml: String) -> Snapshot {
        let state = CoreState {
            membership: self.membership.clone(),
            ownership: self.ownership.clone(),
            started: self.started,
            gradients_applied: self.gradients_applied,
            next_eval_at: self.next_eval_at,
            metrics: self.metrics.clone(),
            staleness: self.staleness.clone(),
            step_staleness: self.step_staleness.clone(),
            traffic: self.traffic.clone(),
            session_key: self.sessions.key().cloned(),
        };
        Snapshot {
            job_fingerprint,
            job_toml,
            shard_index: self.role.index,
            shard_count: self.role.count,
            version: self.version(),
            params: self.params().clone(),
            optimizer_state: self
                .store
                .states()
                .iter()
                .map(|s| TensorState {
                    step: s.step(),
                    buffers: s
                        .buffers()
                        .into_iter()
                        .map(|(n, b)| (n.to_string(), b.to_vec()))
                        .collect(),
                })
                .collect(),
            core_state: serde_json::to_value(&state).expect("core state serialises"),
        }
    }

    /// A shard resumed from `snapshot` (already checked to belong to this job and shard).
    /// `now` is the server's clock: every known worker gets a full heartbeat timeout to
    /// come back. In sync mode a step that was half collected is collected again.
    ///
    /// # Errors
    /// [`CoreError::Resume`] when the snapshot's tensors or state do not fit the model.
    pub fn resume(
        job: Job,
        role: ShardRole,
        snapshot: Snapshot,
        now: std::time::Duration,
    ) -> Result<Self, CoreError> {
        let mut core = Self::with_role(job, role);
        let bad = |what: String| CoreError::Resume(what);
        let expected: Vec<(&str, &[usize])> = core
            .params()
            .entries()
            .iter()
            .map(|e| (e.name.as_str(), e.tensor.shape()))
            .collect();
        let found: Vec<(&str, &[usize])> = snapshot
            .params
            .entries()
            .iter()
            .map(|e| (e.name.as_str(), e.tensor.shape()))
            .collect();
        if expected != found {
            return Err(bad(format!(
                "the checkpoint holds tensors {found:?}, the model has {expected:?}"
            )));
        }
        let optimizer = core.store.rule().optimizer.clone();
        let states = snapshot
            .params
            .entries()
            .iter()
            .zip(&snapshot.optimizer_state)
            .map(|(p, s)| ParamState::from_buffers(&optimizer, p.tensor.len(), s.step, &s.buffers))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let state: CoreState =
            serde_json::from_value(snapshot.core_state).map_err(|e| bad(e.to_string()))?;
        let rule = core.store.rule().clone();
        core.store = ParameterStore::resumed(snapshot.params, states, rule, snapshot.version);
        core.membership = state.membership;
        let sync = core
            .consistency
            .barrier()
            .is_some()
            .then_some(snapshot.version);
        core.membership.restored(now, sync);
        core.ownership = state.ownership;
        core.started = state.started;
        core.gradients_applied = state.gradients_applied;
        core.next_eval_at = state.next_eval_at;
        core.metrics = state.metrics;
        core.staleness = state.staleness;
        core.step_staleness = state.step_staleness;
        core.traffic = state.traffic;
        // A checkpoint from before session secrets keeps the fresh key: its workers never
        // held a secret, so they cannot come back under their ids (they register afresh).
        if let Some(key) = state.session_key {
            core.sessions = Sessions::new(Some(key));
        }
        core.consistency = Consistency::of(
            &core.job.spec.consistency,
            core.job.aggregation(),
            snapshot.version,
        );
        Ok(core)
    }

    /// Checkpoints resumed from and written, for the service to keep up to date.
    pub fn checkpoint_status_mut(&mut self) -> &mut CheckpointStatus {
        &mut self.checkpoint
    }

    /// Derives session secrets from `key` from now on: the job's key, shared by its shards
    /// (a shard resumed from a checkpoint already holds the key it was started with).
    pub fn use_session_key(&mut self, key: SessionKey) {
        self.sessions = Sessions::new(Some(key));
    }

    /// The one check that a call acting as `worker` comes from it: `secret` must be the
    /// session secret `worker` was given at registration. The service calls it before
    /// anything else the call would do, so a refused call changes nothing.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`] for an id this shard does not know (a server started
    /// afresh: the worker registers again), [`CoreError::WrongSession`] for a known worker
    /// and the wrong secret.
    pub fn authenticate(&self, worker: u32, secret: &str) -> Result<(), CoreError> {
        if self.membership.get(worker).is_none() {
            return Err(CoreError::UnknownWorker(worker));
        }
        Ok(self.sessions.check(worker, secret)?)
    }

    /// [`Self::register`] for a caller that must prove who it is: registering again under
    /// an id takes that worker's session secret (else anyone could take a worker over by
    /// registering under its id), and so does attaching to a shard other than 0, which
    /// checks the secret shard 0 issued. Returns the registration and the worker's secret.
    ///
    /// # Errors
    /// [`Self::authenticate`]'s and [`Self::register`]'s.
    pub fn register_authenticated(
        &mut self,
        name: &str,
        worker_id: Option<u32>,
        secret: &str,
    ) -> Result<(Registered, Option<String>), CoreError> {
        if let Some(id) = worker_id {
            match self.authenticate(id, secret) {
                Err(CoreError::UnknownWorker(_)) if !self.role.coordinates() => {
                    self.sessions.check(id, secret)?;
                }
                other => other?,
            }
        }
        let registered = self.register(name, worker_id)?;
        let secret = self.session_secret(registered.assignment.worker_id);
        Ok((registered, secret))
    }

    /// The session secret to hand `worker` at registration (none from a shard without a key).
    #[must_use]
    pub fn session_secret(&self, worker: u32) -> Option<String> {
        self.sessions.secret_of(worker)
    }

    /// Which shard this is.
    #[must_use]
    pub fn role(&self) -> &ShardRole {
        &self.role
    }

    /// Counts tensor bytes received in a push and sent in a pull.
    pub fn record_traffic(&mut self, received: u64, sent: u64) {
        self.traffic.bytes_received = self.traffic.bytes_received.saturating_add(received);
        self.traffic.bytes_sent = self.traffic.bytes_sent.saturating_add(sent);
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

    /// The tensors this shard holds: what a gradient must be conformed to.
    #[must_use]
    pub fn schema(&self) -> &Arc<TensorSchema> {
        &self.schema
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

    /// Adds a worker, or takes back one that registered before.
    ///
    /// On shard 0, `worker_id` `None` registers a new worker (it gets an id and, through
    /// the data ownership, a share of the data); `Some(id)` of a known worker is that
    /// worker coming back: after a lost reply or a server restart it resumes where the
    /// server's record says, and after being declared dead it joins again. The other
    /// server shards take the id shard 0 assigned.
    ///
    /// # Errors
    /// [`CoreError::JobFinished`] once the job has finished; [`CoreError::NameTooLong`];
    /// [`CoreError::TooManyWorkers`] for a new worker when `[limits] max_workers` records
    /// are held; [`CoreError::UnknownWorker`] for an id shard 0 never assigned (or whose
    /// record was folded: register afresh); [`CoreError::Role`] for a missing id on
    /// another shard.
    pub fn register(
        &mut self,
        name: &str,
        worker_id: Option<u32>,
    ) -> Result<Registered, CoreError> {
        if self.finished() {
            return Err(CoreError::JobFinished);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(CoreError::NameTooLong { len: name.len() });
        }
        let is_new = worker_id.is_none_or(|id| self.membership.get(id).is_none());
        let limit = self.job.spec.limits.max_workers;
        if is_new && self.membership.registered() >= limit {
            return Err(CoreError::TooManyWorkers { limit });
        }
        let id = match (self.role.coordinates(), worker_id) {
            (true, None) => {
                let start = self.join_step();
                self.membership.register(name.to_string(), start)
            }
            (true, Some(id)) => {
                let record = self
                    .membership
                    .get(id)
                    .ok_or(CoreError::UnknownWorker(id))?;
                if !record.state.is_member() {
                    let start = self.join_step();
                    let r = self.record_mut(id);
                    r.state = WorkerState::Active;
                    r.next_step = start;
                }
                id
            }
            (false, Some(id)) => {
                match self.membership.get(id).map(|r| r.state) {
                    None => {
                        let start = self.join_step();
                        self.membership.attach(id, name.to_string(), start);
                    }
                    Some(state) if !state.is_member() => {
                        let start = self.join_step();
                        let r = self.record_mut(id);
                        r.state = WorkerState::Active;
                        r.next_step = start;
                    }
                    Some(_) => {}
                }
                id
            }
            (false, None) => {
                return Err(CoreError::Role(format!(
                    "shard {} of {} takes workers registered with shard 0: send the worker id it assigned",
                    self.role.index, self.role.count
                )));
            }
        };
        if self.membership.member_ids().count() >= self.job.min_workers() {
            self.started = true;
        }
        self.rebalance();
        let start_step = self.membership.get(id).map_or(0, |r| r.next_step);
        let shards = self.ownership.shards_of(id);
        Ok(Registered {
            assignment: Assignment {
                worker_id: id,
                shard_index: shards.first().map_or(0, |&k| k as usize),
                shard_count: self.job.workers(),
            },
            plan: self.job.plan(),
            start_step,
        })
    }

    /// The step a worker joining now starts at: in sync mode the step after the one being
    /// collected (so it never holds up a step already under way), otherwise the slowest
    /// active worker's next step; 0 before training starts.
    fn join_step(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let step = self
            .consistency
            .join_step(self.version(), self.membership.slowest_active_step());
        step.min(self.job.total_steps())
    }

    /// Hands the data shards to the active workers (shard 0 only).
    fn rebalance(&mut self) {
        if !self.role.coordinates() {
            return;
        }
        let active = self.membership.active_ids().collect();
        let moved = self.ownership.rebalance(&active);
        if !moved.is_empty() {
            tracing::info!(?moved, "data shards reassigned");
        }
    }

    /// Whether training has started: `min_workers` workers registered at some point.
    #[must_use]
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether every worker has pushed its last step (or left, or died) and every gradient is applied.
    #[must_use]
    pub fn training_done(&self) -> bool {
        self.started
            && self.membership.active_ids().next().is_none()
            && self.consistency.between_steps()
    }

    /// Whether training is done and the final parameters have been evaluated (shard 0),
    /// or training is done (other shards).
    #[must_use]
    pub fn finished(&self) -> bool {
        self.training_done()
            && (!self.role.coordinates() || self.metrics.final_evaluation().is_some())
    }

    /// Records that `worker` was heard from at `now` (time since the server started).
    pub fn touch(&mut self, worker: u32, now: std::time::Duration) {
        if let Some(r) = self.membership.get_mut(worker) {
            r.last_seen = r.last_seen.max(now);
        }
    }

    /// Declares dead every active worker not heard from within the heartbeat timeout
    /// before `now`: it leaves the sync barrier and its data shards go to the others.
    /// Folds the records of workers dead for longer than `[limits]
    /// fold_dead_after_seconds` into a count. Returns the ids declared dead.
    pub fn expire(&mut self, now: std::time::Duration) -> Vec<u32> {
        let timeout = self.heartbeat_timeout;
        let dead: Vec<u32> = self
            .membership
            .iter()
            .filter(|(_, r)| {
                r.state == WorkerState::Active && now.saturating_sub(r.last_seen) > timeout
            })
            .map(|(id, _)| id)
            .collect();
        for &id in &dead {
            self.record_mut(id).state = WorkerState::Dead;
            tracing::warn!(
                worker = id,
                timeout_s = timeout.as_secs_f64(),
                "worker missed its heartbeat timeout: declared dead"
            );
        }
        let fold_after = self.job.spec.limits.fold_dead_after();
        let folded = self
            .membership
            .fold_dead(now.saturating_sub(timeout.saturating_add(fold_after)));
        if folded > 0 {
            tracing::info!(folded, "dead workers' records folded into a count");
        }
        if !dead.is_empty() {
            if self.final_evaluator.is_some_and(|w| dead.contains(&w))
                && self.metrics.final_evaluation().is_none()
            {
                self.final_evaluator = None;
            }
            self.rebalance();
            self.complete_barrier();
        }
        dead
    }

    /// Decides whether `worker` may start `step` now (or, with `final_pull`, whether the job's
    /// training is over), and whether it should evaluate what it receives.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`] or [`CoreError::DepartedWorker`];
    /// [`CoreError::JobFinished`] for a step's pull once the job has finished (the final
    /// pull of a member still gets the final parameters).
    pub fn pull(
        &mut self,
        worker: u32,
        step: u64,
        final_pull: bool,
    ) -> Result<PullOutcome, CoreError> {
        if !final_pull && self.finished() {
            return Err(CoreError::JobFinished);
        }
        self.member(worker)?;
        if !self.started() {
            return Ok(PullOutcome::Wait);
        }
        let outcome = if final_pull {
            if self.training_done() {
                let evaluate = self.role.coordinates() && self.final_evaluator.is_none();
                if evaluate {
                    self.final_evaluator = Some(worker);
                }
                PullOutcome::Ready {
                    version: self.version(),
                    evaluate,
                    data_shards: Vec::new(),
                }
            } else {
                PullOutcome::Wait
            }
        } else {
            let ready = self.consistency.may_start(
                step,
                self.version(),
                self.membership.slowest_active_step(),
            );
            if ready {
                PullOutcome::Ready {
                    version: self.version(),
                    evaluate: self.claim_periodic_evaluation(worker),
                    data_shards: self.ownership.shards_of(worker),
                }
            } else {
                PullOutcome::Wait
            }
        };
        if matches!(outcome, PullOutcome::Ready { .. }) {
            let record = self.record_mut(worker);
            record.pulls = record.pulls.saturating_add(1);
            self.traffic.pulls = self.traffic.pulls.saturating_add(1);
        }
        Ok(outcome)
    }

    /// Takes a worker's gradient for `push.step`, computed from `push.base_version`.
    ///
    /// Sync mode holds it at the barrier and applies the average once every active worker
    /// has pushed the step; async mode applies it at once.
    ///
    /// # Errors
    /// [`CoreError`] for an unknown or departed worker, a step out of order or beyond the
    /// job, a base version from the future, a gradient that does not fit the model, or a
    /// job that has finished.
    /// A refused push leaves the parameters untouched (and counts as rejected).
    pub fn push(&mut self, push: &Push, gradient: Conformed) -> Result<PushOutcome, CoreError> {
        self.traffic.pushes = self.traffic.pushes.saturating_add(1);
        let result = if self.finished() {
            Err(CoreError::JobFinished)
        } else {
            self.accept_push(push, gradient)
        };
        let counter = match &result {
            Ok(o) if o.duplicate => &mut self.traffic.duplicate_pushes,
            Ok(o) if o.dropped => &mut self.traffic.dropped_pushes,
            Ok(_) => &mut self.traffic.applied_pushes,
            Err(e) => {
                self.note_rejected(push.worker, e.reason());
                return result;
            }
        };
        *counter = counter.saturating_add(1);
        result
    }

    fn accept_push(&mut self, push: &Push, gradient: Conformed) -> Result<PushOutcome, CoreError> {
        let Push {
            worker,
            step,
            base_version,
            loss,
            samples,
        } = *push;
        let record = self.member(worker)?;
        let version = self.version();
        if step < record.next_step {
            return Ok(PushOutcome {
                version,
                staleness: 0,
                duplicate: true,
                dropped: false,
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
        // An empty push: the worker had no data shard this step; it only keeps pace.
        let gradient = match (gradient.is_empty(), samples) {
            (true, 0) => None,
            (true, _) => return Err(CoreError::EmptyGradient { worker, samples }),
            (false, _) => {
                self.bounds.check(&gradient)?;
                Some(gradient.into_set())
            }
        };
        let staleness = version - base_version;
        let mut dropped = false;
        match &mut self.consistency {
            Consistency::Sync(barrier) => {
                if barrier.offer(worker, gradient, samples) == Offer::Duplicate {
                    return Ok(PushOutcome {
                        version,
                        staleness,
                        duplicate: true,
                        dropped: false,
                    });
                }
            }
            Consistency::Ssp { policy, .. } | Consistency::Async { policy } => {
                if let Some(gradient) = gradient {
                    match policy.lr_scale(staleness) {
                        Some(scale) => {
                            self.store.apply(gradient, scale);
                        }
                        None => dropped = true,
                    }
                }
                self.gradients_applied = self.gradients_applied.saturating_add(1);
            }
        }
        // Steps the fastest worker has completed beyond this one (SSP bounds this by τ).
        let step_staleness = self.membership.furthest_step().max(step + 1) - (step + 1);
        self.staleness.record(staleness);
        self.step_staleness.record(step_staleness);
        let steps_per_epoch = self.job.steps_per_epoch;
        self.metrics
            .record_loss(step / steps_per_epoch, loss, samples);
        let record = self.record_mut(worker);
        record.pushes = record.pushes.saturating_add(1);
        record.samples = record.samples.saturating_add(samples);
        record.next_step = step + 1;
        record.last_loss = Some(loss);
        record.staleness.record(staleness);
        record.step_staleness.record(step_staleness);
        record.dropped = record.dropped.saturating_add(u64::from(dropped));
        if record.next_step == total {
            record.state = WorkerState::Finished;
        }
        self.complete_barrier();
        Ok(PushOutcome {
            version: self.version(),
            staleness,
            duplicate: false,
            dropped,
        })
    }

    /// Records an evaluation a worker reports: from a member of the running job, with
    /// values that can be true, of a version the server has reached; the final one only
    /// from the worker asked to make it, once.
    ///
    /// # Errors
    /// [`CoreError::UnknownWorker`] or [`CoreError::DepartedWorker`];
    /// [`CoreError::JobFinished`] once the job has finished; [`CoreError::Evaluation`] for
    /// a value that is not finite or out of range; [`CoreError::FutureVersion`];
    /// [`CoreError::EvaluationRefused`] for a final evaluation nobody asked this worker for.
    pub fn report_evaluation(&mut self, evaluation: Evaluation) -> Result<(), CoreError> {
        let worker = evaluation.worker_id;
        if self.finished() {
            return Err(CoreError::JobFinished);
        }
        self.member(worker)?;
        evaluation
            .check()
            .map_err(|source| CoreError::Evaluation { worker, source })?;
        if evaluation.version > self.version() {
            return Err(CoreError::FutureVersion {
                base: evaluation.version,
                current: self.version(),
            });
        }
        if evaluation.is_final {
            let reason = if !self.role.coordinates() {
                Some("only shard 0 takes evaluations")
            } else if !self.training_done() {
                Some("training is not over")
            } else if self.final_evaluator != Some(worker) {
                Some("another worker was asked for the final evaluation")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(CoreError::EvaluationRefused { worker, reason });
            }
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
        self.rebalance();
        self.complete_barrier();
        Ok(())
    }

    /// Counts a refused push: against its worker (when known) and under `reason`. The
    /// service calls it for a push refused before it reached the core (it did not decode
    /// or fit the model: reason `"malformed"`).
    pub fn note_rejected(&mut self, worker: u32, reason: &'static str) {
        if let Some(r) = self.membership.get_mut(worker) {
            r.rejected_pushes = r.rejected_pushes.saturating_add(1);
        }
        let count = self
            .traffic
            .refused_pushes
            .entry(reason.to_string())
            .or_default();
        *count = count.saturating_add(1);
    }

    /// Whether every worker that registered has left.
    #[must_use]
    pub fn all_left(&self) -> bool {
        self.started() && self.membership.iter().all(|(_, r)| !r.state.is_member())
    }

    /// Everything the server reports; `elapsed_seconds` is supplied by the caller's clock.
    #[must_use]
    pub fn status(&self, elapsed_seconds: f64) -> ServerStatus {
        let samples_trained = self.membership.samples_trained();
        ServerStatus {
            job: serde_json::to_value(&self.job.spec).expect("a job spec always serialises"),
            consistency: self.consistency.mode(),
            shard: self.traffic.clone(),
            checkpoint: self.checkpoint.clone(),
            version: self.version(),
            steps_per_epoch: self.job.steps_per_epoch,
            total_steps: self.job.total_steps(),
            epoch_progress: self.progress_steps() as f64 / self.job.steps_per_epoch as f64,
            expected_workers: self.job.workers(),
            finished: self.finished(),
            elapsed_seconds,
            samples_trained,
            workers: self.membership.statuses(|id| self.ownership.shards_of(id)),
            dead_workers_folded: self.membership.folded_dead(),
            epochs: self.metrics.epochs(self.versions_per_epoch()),
            evaluations: self.metrics.evaluations().to_vec(),
            final_evaluation: self.metrics.final_evaluation().cloned(),
            staleness: self.staleness.clone(),
            step_staleness: self.step_staleness.clone(),
            // Filled in by the gRPC layer, which owns the clocks.
            timing: downpour_core::timing::TimingReport::default(),
        }
    }

    /// Job progress in steps of one worker: the version in sync mode, gradients applied
    /// divided by workers in async mode.
    fn progress_steps(&self) -> u64 {
        self.consistency
            .progress_steps(self.version(), self.gradients_applied, self.job.workers())
    }

    /// Versions per epoch of the whole job.
    fn versions_per_epoch(&self) -> u64 {
        self.consistency
            .versions_per_epoch(self.job.steps_per_epoch, self.job.workers())
    }

    /// In sync mode, applies the barrier's average once no active worker owes the step.
    fn complete_barrier(&mut self) {
        let Consistency::Sync(barrier) = &mut self.consistency else {
            return;
        };
        let step = barrier.step();
        let owed = self
            .membership
            .iter()
            .any(|(_, r)| r.state.is_member() && r.next_step <= step);
        let Some(released) = barrier.release_unless_owed(owed) else {
            return;
        };
        match released.combined {
            Some(combined) => {
                self.store.apply(combined, 1.0);
            }
            None => {
                self.store.skip();
            }
        }
        self.gradients_applied = self.gradients_applied.saturating_add(released.count as u64);
    }

    /// The lowest active worker evaluates when the job's progress reaches the next evaluation point.
    fn claim_periodic_evaluation(&mut self, worker: u32) -> bool {
        if !self.role.coordinates() {
            return false;
        }
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
        if !record.state.is_member() {
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
