//! The worker's training loop: register, pull the first step's parameters, then for each
//! step compute the gradient of the next mini-batch of the data shards it owns and
//! exchange it for the next step's parameters (one round trip per step); evaluate when asked.
//! The loop is written once, over [`ParameterService`]: [`run`] drives it against the
//! gRPC servers, [`train_with`] against any service (an in-process server, in the bench
//! crate).
//!
//! A worker survives the server going away: on a recoverable error it reconnects with
//! exponential backoff and jitter, registers again under its id, and resumes at the step
//! the server says (so a push whose reply was lost is never applied twice: the server
//! either has it, and says to go on, or has not, and the worker computes it again).
//!
//! A server that answers "job finished" (the job ended without this worker, or before it
//! came back) ends the worker successfully: it has nothing left to do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use downpour_core::data::DataError;
use downpour_core::partition::ShardPlan;
use downpour_core::sharding;
use downpour_core::status::Evaluation;
use downpour_core::{Dataset, ParamSet, Push, TrainingPlan};

use crate::client::{ClientError, Registration, ServerClient};
use crate::client_config::ClientConfig;
use crate::metrics::WorkerMetrics;
use crate::model::{Model, ModelError, StepKey};
use crate::parameter_service::{ParameterService, PullRequest, PulledStep, StepExchange};
use crate::phases::PhaseClock;
use crate::sabotage::Sabotage;
use crate::sharded_server::{Exchanged, ShardedServer};
use crate::step_compute::{StepCompute, StepInput};

/// Why a worker stopped before the job finished.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The server could not be reached or refused a call.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The job's dataset could not be loaded here.
    #[error("loading the job's data: {0}")]
    Data(#[from] DataError),
    /// The model could not be built or run on the data.
    #[error("model: {0}")]
    Model(#[from] ModelError),
    /// The server stayed unreachable for longer than the reconnect timeout.
    #[error("gave up after {seconds:.0} s without reaching the server: {last}")]
    GaveUp {
        /// How long it tried.
        seconds: f64,
        /// The last error.
        last: ClientError,
    },
    /// The thread computing gradients (prefetch) panicked or was cancelled.
    #[error("the compute thread failed: {0}")]
    ComputeThread(String),
    /// Shutdown was requested.
    #[error("cancelled")]
    Cancelled,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How to reach shard 0: its address (`host:port` or `http://host:port`), the token,
    /// TLS. The other shards are reached with the same token and TLS settings.
    pub server: ClientConfig,
    /// A label for logs and status.
    pub name: String,
    /// How long to keep trying to reach the server, at start-up and after losing it.
    pub connect_timeout: Duration,
    /// Interval between heartbeats.
    pub heartbeat_interval: Duration,
    /// Extra time spent per step, to emulate a slow worker (tests and benchmarks only).
    pub step_delay: Duration,
    /// Simulated compute (benchmarks only): block for this long per step instead of
    /// computing the gradient, and push a zero gradient of the right shape.
    pub simulate_compute: Option<Duration>,
    /// Tests and demonstrations only: spoil every gradient this way before pushing it.
    pub sabotage: Option<Sabotage>,
    /// The worker's Prometheus metrics, observed by the training loop.
    pub metrics: WorkerMetrics,
}

impl WorkerOptions {
    /// Options with defaults for `server`.
    #[must_use]
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: ClientConfig::new(server),
            name: "worker".to_string(),
            connect_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            step_delay: Duration::ZERO,
            simulate_compute: None,
            sabotage: None,
            metrics: WorkerMetrics::default(),
        }
    }
}

/// What a worker did.
#[derive(Debug, Clone)]
pub struct WorkerSummary {
    /// Its id (the last one, if it had to register afresh).
    pub worker_id: u32,
    /// Steps pushed.
    pub steps: u64,
    /// Samples trained on.
    pub samples: u64,
    /// Times it lost the server and came back.
    pub recoveries: u64,
    /// The final evaluation, if this worker was the one asked to make it.
    pub final_evaluation: Option<Evaluation>,
}

/// The next delay of an exponential backoff with full jitter: uniform in `[base/2, base]`,
/// where `base` doubles each attempt up to `cap`.
fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(50)
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(cap);
    base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Connects to the server, retrying with backoff and jitter until `timeout` has passed.
///
/// # Errors
/// [`WorkerError::GaveUp`] when the server stays unreachable, or [`WorkerError::Cancelled`].
pub async fn connect_with_retry(
    config: &ClientConfig,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<ServerClient, WorkerError> {
    let started = Instant::now();
    for attempt in 0u32.. {
        match ServerClient::connect_with(config).await {
            Ok(client) => return Ok(client),
            Err(e @ (ClientError::Address { .. } | ClientError::Tls { .. })) => {
                return Err(e.into());
            }
            Err(e) if started.elapsed() > timeout => {
                return Err(WorkerError::GaveUp {
                    seconds: started.elapsed().as_secs_f64(),
                    last: e,
                });
            }
            Err(e) => tracing::debug!(error = %e, "server not reachable yet; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(attempt, Duration::from_secs(2))) => {}
            () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
        }
    }
    unreachable!("the loop returns")
}

/// Connects and registers: afresh (`worker_id` `None`), or as the worker it was, proving
/// it with `session`, its session secret. A server that does not know the id (it started
/// afresh) gets a fresh registration.
async fn register(
    options: &WorkerOptions,
    worker_id: Option<u32>,
    session: &str,
    shutdown: &CancellationToken,
) -> Result<(ServerClient, Registration), WorkerError> {
    let started = Instant::now();
    for attempt in 0u32.. {
        let left = options.connect_timeout.saturating_sub(started.elapsed());
        let mut client = connect_with_retry(&options.server, left, shutdown).await?;
        if let Some(id) = worker_id {
            client.set_session(id, session);
        }
        let result = match client.register(&options.name, worker_id).await {
            Err(e) if e.code() == Some(tonic::Code::NotFound) => {
                client.register(&options.name, None).await
            }
            other => other,
        };
        match result {
            Ok(registration) => return Ok((client, registration)),
            Err(e) if e.is_recoverable() && started.elapsed() < options.connect_timeout => {
                tracing::debug!(error = %e, "registration failed; retrying");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(attempt, Duration::from_secs(2))) => {}
            () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
        }
    }
    unreachable!("the loop returns")
}

/// What a worker trains on, loaded once.
#[derive(Debug)]
struct Workload {
    /// The job's training part.
    plan: TrainingPlan,
    /// The whole training split (the worker computes on the data shards it owns); shared
    /// with the compute thread when prefetching.
    train: Arc<Dataset>,
    /// The test split.
    test: Dataset,
    /// The model; shared with the compute thread when prefetching.
    model: Arc<Model>,
    /// Logical data shards of the job.
    data_shards: usize,
    /// Steps per epoch (the same for every worker).
    steps_per_epoch: u64,
    /// Steps in the whole job.
    total_steps: u64,
    /// Samples per logical shard per step.
    batch: usize,
}

impl Workload {
    fn load(registration: &Registration) -> Result<Self, WorkerError> {
        let plan = registration.plan.clone();
        let (train, test) = plan.data.load_split(plan.seed)?;
        let model = Arc::new(Model::new(&plan.model, &train.shape())?);
        let train = Arc::new(train);
        let data_shards = registration.assignment.shard_count.max(1);
        // Each logical shard's batch: `batch_size`, or its part of the job's global batch.
        // Per step the worker computes it for every shard it owns, so its share of the
        // global batch follows the shards the server hands it in each pull reply.
        let shard_batch = plan.shard_batch(data_shards);
        let steps_per_epoch =
            sharding::steps_per_epoch(train.len(), data_shards, shard_batch) as u64;
        let batch = shard_batch.resolve(sharding::largest_shard(train.len(), data_shards));
        Ok(Self {
            total_steps: steps_per_epoch * plan.epochs as u64,
            plan,
            train,
            test,
            model,
            data_shards,
            steps_per_epoch,
            batch,
        })
    }

    /// A step's compute on this workload's data and model.
    fn step_compute(&self, options: &WorkerOptions) -> StepCompute {
        StepCompute::new(
            Arc::clone(&self.train),
            Arc::clone(&self.model),
            options.simulate_compute,
            options.sabotage,
        )
    }

    /// What seeds worker `id`'s dropout masks at `step`.
    fn step_key(&self, id: u32, step: u64) -> StepKey {
        StepKey {
            seed: self.plan.seed,
            worker: u64::from(id),
            step,
        }
    }

    /// The training-set positions of `step`'s batch of each of `shards`.
    fn batch_positions(
        &self,
        orders: &mut HashMap<(u64, u32), Vec<usize>>,
        step: u64,
        shards: &[u32],
    ) -> Vec<usize> {
        let (epoch, in_epoch) = (step / self.steps_per_epoch, step % self.steps_per_epoch);
        orders.retain(|(e, _), _| *e == epoch);
        let mut positions = Vec::new();
        for &k in shards {
            let order = orders.entry((epoch, k)).or_insert_with(|| {
                sharding::epoch_order(
                    self.train.len(),
                    k as usize,
                    self.data_shards,
                    self.plan.seed,
                    epoch,
                )
            });
            positions.extend_from_slice(sharding::batch_positions(
                order,
                in_epoch as usize,
                self.batch,
            ));
        }
        positions
    }
}

/// Runs one worker to the end of the job, coming back after losing the server.
///
/// # Errors
/// [`WorkerError`] when the server refuses a call for good, stays unreachable longer than
/// the connect timeout, the data or model fail, or on shutdown (the worker then leaves the
/// job before returning).
pub async fn run(
    options: &WorkerOptions,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let nothing_to_do = |e: &ClientError| {
        tracing::info!(error = %e, "the job has already finished: nothing to do");
        WorkerSummary {
            worker_id: 0,
            steps: 0,
            samples: 0,
            recoveries: 0,
            final_evaluation: None,
        }
    };
    let (shard0, registration) = match register(options, None, "", &shutdown).await {
        Err(WorkerError::Client(e)) if e.is_job_finished() => return Ok(nothing_to_do(&e)),
        other => other?,
    };
    let work = Workload::load(&registration)?;
    let mut id = registration.assignment.worker_id;
    tracing::info!(
        worker = id,
        data_shards = work.data_shards,
        server_shards = registration.server_shards,
        start_step = registration.start_step,
        "registered"
    );
    let split = ShardPlan::new(work.model.layout(), registration.server_shards);
    let mut session = registration.session.clone();
    let mut server = match ShardedServer::attach(
        shard0,
        &options.server,
        &registration,
        split.clone(),
        &options.name,
    )
    .await
    {
        Err(e) if e.is_job_finished() => return Ok(nothing_to_do(&e)),
        other => other?,
    };
    let (heartbeat_to, heartbeat_from) = watch::channel((id, server.clients().to_vec()));
    let heartbeat = shutdown.child_token();
    spawn_heartbeat(
        heartbeat_from,
        options.heartbeat_interval,
        heartbeat.clone(),
    );

    let mut step = registration.start_step;
    let mut progress = Progress::default();
    let result = loop {
        match train_from(
            &mut server,
            &work,
            options,
            id,
            step,
            &mut progress,
            &shutdown,
        )
        .await
        {
            Err(WorkerError::Client(e)) if e.is_job_finished() => {
                tracing::info!(worker = id, error = %e, "the job finished without this worker");
                break Ok(None);
            }
            Err(WorkerError::Client(e)) if e.is_recoverable() => {
                tracing::warn!(worker = id, error = %e, "lost the server; reconnecting");
                let (shard0, registration) =
                    match register(options, Some(id), &session, &shutdown).await {
                        Ok(r) => r,
                        Err(WorkerError::Client(e)) if e.is_job_finished() => {
                            tracing::info!(worker = id, error = %e, "the job finished meanwhile");
                            break Ok(None);
                        }
                        Err(e) => break Err(e),
                    };
                id = registration.assignment.worker_id;
                session.clone_from(&registration.session);
                step = registration.start_step;
                server = match ShardedServer::attach(
                    shard0,
                    &options.server,
                    &registration,
                    split.clone(),
                    &options.name,
                )
                .await
                {
                    Ok(s) => s,
                    Err(e) => break Err(e.into()),
                };
                let _ = heartbeat_to.send((id, server.clients().to_vec()));
                progress.recoveries += 1;
                tracing::info!(worker = id, step, "back in the job");
            }
            other => break other,
        }
    };
    heartbeat.cancel();
    match result {
        Ok(final_evaluation) => {
            tracing::info!(
                worker = id,
                steps = progress.steps,
                samples = progress.samples,
                "finished"
            );
            Ok(WorkerSummary {
                worker_id: id,
                steps: progress.steps,
                samples: progress.samples,
                recoveries: progress.recoveries,
                final_evaluation,
            })
        }
        Err(e) => {
            // Best effort: tell the servers not to wait for us.
            let _ = server.leave(id).await;
            Err(e)
        }
    }
}

/// Trains one worker, registered as `registration` says, against `server` from the
/// registration's start step to the end of the job, then makes the final evaluation when
/// asked and leaves: [`run`]'s loop without its connection, heartbeats and reconnections
/// (for a service that cannot be lost, such as an in-process server).
///
/// # Errors
/// [`WorkerError`] when the service refuses a call, the data or model fail, or on shutdown.
pub async fn train_with<S: ParameterService>(
    server: &mut S,
    registration: &Registration,
    options: &WorkerOptions,
    shutdown: &CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let work = Workload::load(registration)?;
    let id = registration.assignment.worker_id;
    let mut progress = Progress::default();
    let final_evaluation = train_from(
        server,
        &work,
        options,
        id,
        registration.start_step,
        &mut progress,
        shutdown,
    )
    .await?;
    Ok(WorkerSummary {
        worker_id: id,
        steps: progress.steps,
        samples: progress.samples,
        recoveries: 0,
        final_evaluation,
    })
}

/// Counters that survive reconnections.
#[derive(Debug, Default)]
struct Progress {
    /// Steps pushed.
    steps: u64,
    /// Samples pushed.
    samples: u64,
    /// Reconnections.
    recoveries: u64,
}

/// Trains from `step` to the end of the job, then takes part in the final evaluation and leaves.
async fn train_from<S: ParameterService>(
    server: &mut S,
    work: &Workload,
    options: &WorkerOptions,
    id: u32,
    step: u64,
    progress: &mut Progress,
    shutdown: &CancellationToken,
) -> Result<Option<Evaluation>, WorkerError> {
    if work.plan.prefetch {
        train_prefetching(server, work, options, id, step, progress, shutdown).await?;
    } else {
        train_lockstep(server, work, options, id, step, progress, shutdown).await?;
    }
    finish(server, work, id, shutdown).await
}

/// The plain loop: pull the first step's parameters, then for each step compute the
/// gradient and exchange it for the next step's parameters, one after the other.
async fn train_lockstep<S: ParameterService>(
    server: &mut S,
    work: &Workload,
    options: &WorkerOptions,
    id: u32,
    mut step: u64,
    progress: &mut Progress,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    if step >= work.total_steps {
        return Ok(());
    }
    let mut gradient: Option<ParamSet> = None;
    let mut compute = work.step_compute(options);
    let empty = ParamSet::default();
    let mut orders = HashMap::new();
    let mut clock = PhaseClock::observed_by(options.metrics.clone(), id);
    let mut step_started = Instant::now();
    let mut shards = pull_step(server, work, id, step, &mut clock, shutdown).await?;
    loop {
        let base = server.versions().to_vec();
        let positions = work.batch_positions(&mut orders, step, &shards);
        let samples = positions.len() as u64;
        let (loss, sent) = if positions.is_empty() {
            (0.0, &empty)
        } else {
            let computing = Instant::now();
            let grads = gradient.get_or_insert_with(|| server.params().zeros_like());
            let input = StepInput {
                positions: &positions,
                params: server.params(),
                key: work.step_key(id, step),
            };
            let loss = compute.run(input, grads)?.unwrap_or(0.0);
            if !options.step_delay.is_zero() {
                tokio::time::sleep(options.step_delay).await;
            }
            clock.computed(computing.elapsed());
            (loss, &*grads)
        };
        progress.samples += samples;
        let last = step + 1 == work.total_steps;
        let push = Push {
            worker: id,
            step,
            base_version: 0,
            loss: f64::from(loss),
            samples,
        };
        let next_step = (!last).then_some(step + 1);
        let exchanged = tokio::select! {
            e = server.exchange(StepExchange {
                push,
                base: &base,
                gradient: sent,
                phases: Some(clock.totals()),
                next_step,
            }) => e?,
            () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
        };
        clock.exchanged(&exchanged.timing);
        progress.steps += 1;
        options.metrics.pushed(id, samples, f64::from(loss));
        if last {
            clock.step_done(step_started.elapsed());
            return Ok(());
        }
        if exchanged.evaluate {
            evaluate_pulled(server, work, id, &mut clock).await?;
        }
        shards = exchanged.data_shards;
        clock.step_done(step_started.elapsed());
        step_started = Instant::now();
        step += 1;
    }
}

/// A gradient computed and not yet pushed.
#[derive(Debug)]
struct Pending {
    /// Its step.
    step: u64,
    /// The versions (one per shard) of the parameters it was computed from.
    base: Vec<u64>,
    /// The gradient (empty when the worker had no data this step).
    gradient: ParamSet,
    /// The batch's loss.
    loss: f32,
    /// Samples in the batch (0: no data this step).
    samples: u64,
}

/// What the compute thread hands back.
struct Computed {
    /// The step's compute and its batch buffer, returned for the next step.
    compute: StepCompute,
    /// The parameters it computed on, returned for reuse.
    params: ParamSet,
    /// The gradient buffer, filled when `loss` is `Some`.
    gradient: ParamSet,
    /// The loss, or `None` when the step had no data.
    loss: Option<f32>,
    /// Time spent computing (and in any step delay).
    took: Duration,
}

/// The prefetching loop (async and ssp): while a compute thread computes step t's
/// gradient on the parameters already received, this task exchanges step t − 1's
/// gradient for the parameters of step t + 1 (one round trip). Each gradient is based on parameters that lack
/// the worker's own previous gradient (one more step of staleness), and the step costs
/// about the longer of compute and communication instead of their sum.
async fn train_prefetching<S: ParameterService>(
    server: &mut S,
    work: &Workload,
    options: &WorkerOptions,
    id: u32,
    mut step: u64,
    progress: &mut Progress,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    if step >= work.total_steps {
        return Ok(());
    }
    let mut orders = HashMap::new();
    let mut clock = PhaseClock::observed_by(options.metrics.clone(), id);
    let mut step_started = Instant::now();
    let mut shards = pull_step(server, work, id, step, &mut clock, shutdown).await?;
    let mut pending: Option<Pending> = None;
    let mut spare_gradient: Option<ParamSet> = None;
    let mut step_compute = Some(work.step_compute(options));
    loop {
        let positions = work.batch_positions(&mut orders, step, &shards);
        let base = server.versions().to_vec();
        let params = server.take_params();
        let gradient = spare_gradient.take().unwrap_or_else(|| params.zeros_like());
        let samples = positions.len() as u64;
        let key = work.step_key(id, step);
        let compute = spawn_compute(
            step_compute.take().expect("returned by the last step"),
            options.step_delay,
            positions,
            params,
            gradient,
            key,
        );
        let last = step + 1 == work.total_steps;
        let joined = Instant::now();
        let communicate = async {
            let started = Instant::now();
            let next_step = (!last).then_some(step + 1);
            let exchanged = match &pending {
                Some(p) => Some(exchange_pending(server, id, p, &clock, next_step).await?),
                None => None,
            };
            let pulled = match (&exchanged, next_step) {
                (Some(e), Some(_)) => Some((e.evaluate, e.data_shards.clone(), None)),
                (None, Some(next)) => {
                    let request = PullRequest {
                        worker: id,
                        step: next,
                        final_pull: false,
                    };
                    let pulled = server.pull(request).await?;
                    Some((pulled.evaluate, pulled.data_shards, Some(pulled.timing)))
                }
                (_, None) => None,
            };
            Ok::<_, WorkerError>((exchanged, pulled, started.elapsed()))
        };
        let (computed, communicated) = tokio::select! {
            both = async { tokio::join!(compute, communicate) } => both,
            () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
        };
        let (exchanged, pulled, communicating) = communicated?;
        let computed = computed.map_err(|e| WorkerError::ComputeThread(e.to_string()))??;
        let together = joined.elapsed();
        step_compute = Some(computed.compute);
        if let Some(exchanged) = exchanged {
            clock.exchanged(&exchanged.timing);
            let done = pending.take().expect("a receipt is for a pending gradient");
            progress.steps += 1;
            options
                .metrics
                .pushed(id, done.samples, f64::from(done.loss));
            progress.samples += done.samples;
            if !done.gradient.is_empty() {
                spare_gradient = Some(done.gradient);
            }
        }
        clock.computed(computed.took);
        clock.overlapped((computed.took + communicating).saturating_sub(together));
        server.give_back(computed.params);
        pending = Some(match computed.loss {
            Some(loss) => Pending {
                step,
                base,
                gradient: computed.gradient,
                loss,
                samples,
            },
            None => {
                spare_gradient = Some(computed.gradient);
                Pending {
                    step,
                    base,
                    gradient: ParamSet::default(),
                    loss: 0.0,
                    samples: 0,
                }
            }
        });
        if last {
            // Nothing left to overlap with: push the last gradient and close the step.
            let done = pending.take().expect("just computed");
            let exchanged = exchange_pending(server, id, &done, &clock, None).await?;
            clock.exchanged(&exchanged.timing);
            progress.steps += 1;
            options
                .metrics
                .pushed(id, done.samples, f64::from(done.loss));
            progress.samples += done.samples;
            clock.step_done(step_started.elapsed());
            return Ok(());
        }
        let (evaluate, next_shards, pull_timing) = pulled.expect("received unless last");
        if let Some(timing) = pull_timing {
            clock.pulled(&timing);
        }
        if evaluate {
            evaluate_pulled(server, work, id, &mut clock).await?;
        }
        shards = next_shards;
        clock.step_done(step_started.elapsed());
        step_started = Instant::now();
        step += 1;
    }
}

/// Computes `positions`' gradient on a blocking thread (or sleeps, with simulated compute),
/// so that the runtime's thread stays free for the network. The thread owns `compute` and
/// the buffers and hands them back in [`Computed`].
fn spawn_compute(
    mut compute: StepCompute,
    delay: Duration,
    positions: Vec<usize>,
    params: ParamSet,
    mut gradient: ParamSet,
    key: StepKey,
) -> tokio::task::JoinHandle<Result<Computed, WorkerError>> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let input = StepInput {
            positions: &positions,
            params: &params,
            key,
        };
        let loss = compute.run(input, &mut gradient)?;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        Ok(Computed {
            compute,
            params,
            gradient,
            loss,
            took: started.elapsed(),
        })
    })
}

/// Exchanges a pending gradient, with the worker's phase totals so far, for the
/// parameters of `next_step` (none after the last step).
async fn exchange_pending<S: ParameterService>(
    server: &mut S,
    id: u32,
    p: &Pending,
    clock: &PhaseClock,
    next_step: Option<u64>,
) -> Result<Exchanged, WorkerError> {
    let push = Push {
        worker: id,
        step: p.step,
        base_version: 0,
        loss: f64::from(p.loss),
        samples: p.samples,
    };
    Ok(server
        .exchange(StepExchange {
            push,
            base: &p.base,
            gradient: &p.gradient,
            phases: Some(clock.totals()),
            next_step,
        })
        .await?)
}

/// Pulls the parameters for `step` (waiting as the mode says) and evaluates them when the
/// server asks; returns the logical data shards to compute.
async fn pull_step<S: ParameterService>(
    server: &mut S,
    work: &Workload,
    id: u32,
    step: u64,
    clock: &mut PhaseClock,
    shutdown: &CancellationToken,
) -> Result<Vec<u32>, WorkerError> {
    let request = PullRequest {
        worker: id,
        step,
        final_pull: false,
    };
    let PulledStep {
        evaluate,
        data_shards,
        timing,
    } = tokio::select! {
        pulled = server.pull(request) => pulled?,
        () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
    };
    clock.pulled(&timing);
    if evaluate {
        evaluate_pulled(server, work, id, clock).await?;
    }
    Ok(data_shards)
}

/// Evaluates the parameters just pulled and reports the result to shard 0.
async fn evaluate_pulled<S: ParameterService>(
    server: &mut S,
    work: &Workload,
    id: u32,
    clock: &mut PhaseClock,
) -> Result<(), WorkerError> {
    let evaluating = Instant::now();
    let evaluation = evaluate_params(
        &work.model,
        server.params(),
        &work.test,
        id,
        server.version(),
        false,
    )?;
    server.report_evaluation(&evaluation).await?;
    clock.evaluated(evaluating.elapsed());
    Ok(())
}

/// After the last step: waits for training to end, makes the final evaluation when asked, leaves.
async fn finish<S: ParameterService>(
    server: &mut S,
    work: &Workload,
    id: u32,
    shutdown: &CancellationToken,
) -> Result<Option<Evaluation>, WorkerError> {
    let request = PullRequest {
        worker: id,
        step: work.total_steps,
        final_pull: true,
    };
    let last = tokio::select! {
        pulled = server.pull(request) => pulled?,
        () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
    };
    let final_evaluation = if last.evaluate {
        let evaluation = evaluate_params(
            &work.model,
            server.params(),
            &work.test,
            id,
            server.version(),
            true,
        )?;
        server.report_evaluation(&evaluation).await?;
        Some(evaluation)
    } else {
        None
    };
    server.leave(id).await?;
    Ok(final_evaluation)
}

fn evaluate_params(
    model: &Model,
    params: &ParamSet,
    test: &Dataset,
    worker_id: u32,
    version: u64,
    is_final: bool,
) -> Result<Evaluation, ModelError> {
    Ok(model
        .evaluate(params, test)?
        .to_evaluation(worker_id, version, is_final))
}

/// Sends heartbeats to every shard the worker is attached to, every `interval`, until
/// `stop` is cancelled; follows reconnections through `clients`. Failures are logged, not fatal.
fn spawn_heartbeat(
    clients: watch::Receiver<(u32, Vec<ServerClient>)>,
    interval: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => break,
            }
            let (id, targets) = clients.borrow().clone();
            for mut client in targets {
                if let Err(e) = client.heartbeat(id).await {
                    tracing::debug!(error = %e, "heartbeat failed");
                }
            }
        }
    });
}
