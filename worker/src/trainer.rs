//! The worker's training loop: register, then for each step pull, compute the gradient
//! of the next mini-batch of its shard, push; evaluate when the server asks.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use downpour_core::data::DataError;
use downpour_core::sharding;
use downpour_core::status::Evaluation;
use downpour_core::{Dataset, ParamSet};

use crate::client::{ClientError, Push, ServerClient};
use crate::model::{Model, ModelError};
use crate::phases::PhaseClock;

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
    /// Shutdown was requested.
    #[error("cancelled")]
    Cancelled,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The server's address (`host:port` or `http://host:port`).
    pub server: String,
    /// A label for logs and status.
    pub name: String,
    /// How long to keep trying to reach the server at start-up.
    pub connect_timeout: Duration,
    /// Interval between heartbeats.
    pub heartbeat_interval: Duration,
    /// Extra time spent per step, to emulate a slow worker (tests and benchmarks only).
    pub step_delay: Duration,
    /// Simulated compute (benchmarks only): block for this long per step instead of
    /// computing the gradient, and push a zero gradient of the right shape.
    pub simulate_compute: Option<Duration>,
}

impl WorkerOptions {
    /// Options with defaults for `server`.
    #[must_use]
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            name: "worker".to_string(),
            connect_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            step_delay: Duration::ZERO,
            simulate_compute: None,
        }
    }
}

/// What a worker did.
#[derive(Debug, Clone)]
pub struct WorkerSummary {
    /// Its id.
    pub worker_id: u32,
    /// Steps pushed.
    pub steps: u64,
    /// Samples trained on.
    pub samples: u64,
    /// The final evaluation, if this worker was the one asked to make it.
    pub final_evaluation: Option<Evaluation>,
}

/// Connects to the server, retrying with backoff until `timeout` has passed.
///
/// # Errors
/// The last [`ClientError`] when the server stays unreachable, or [`WorkerError::Cancelled`].
pub async fn connect_with_retry(
    address: &str,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<ServerClient, WorkerError> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        match ServerClient::connect(address).await {
            Ok(client) => return Ok(client),
            Err(e @ ClientError::Address { .. }) => return Err(e.into()),
            Err(e) if Instant::now() + delay > deadline => return Err(e.into()),
            Err(e) => tracing::debug!(error = %e, "server not reachable yet; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Runs one worker to the end of the job.
///
/// # Errors
/// [`WorkerError`] when the server refuses a call, the data or model fail, or on shutdown
/// (the worker then leaves the job before returning).
pub async fn run(
    options: &WorkerOptions,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let mut client =
        connect_with_retry(&options.server, options.connect_timeout, &shutdown).await?;
    let (assignment, plan) = client.register(&options.name).await?;
    let id = assignment.worker_id;
    tracing::info!(
        worker = id,
        shard = assignment.shard_index,
        of = assignment.shard_count,
        "registered"
    );

    let heartbeat = spawn_heartbeat(
        client.clone(),
        id,
        options.heartbeat_interval,
        shutdown.child_token(),
    );
    let result = train(&mut client, options, &plan, assignment, &shutdown).await;
    heartbeat.cancel();
    if result.is_err() {
        // Best effort: tell the server not to wait for us.
        let _ = client.leave(id).await;
    }
    result
}

async fn train(
    client: &mut ServerClient,
    options: &WorkerOptions,
    plan: &downpour_core::TrainingPlan,
    assignment: downpour_core::Assignment,
    shutdown: &CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let id = assignment.worker_id;
    let (train, test) = plan.data.load_split(plan.seed)?;
    let model = Model::new(&plan.model, &train.shape())?;
    let (shard, shards) = (assignment.shard_index, assignment.shard_count);
    let steps_per_epoch = sharding::steps_per_epoch(train.len(), shards, plan.batch_size) as u64;
    let total_steps = steps_per_epoch * plan.epochs as u64;
    let batch = plan
        .batch_size
        .resolve(sharding::largest_shard(train.len(), shards));
    let mut gradient: Option<ParamSet> = None;
    let mut order = Vec::new();
    let mut samples = 0u64;
    let mut clock = PhaseClock::default();

    for step in 0..total_steps {
        let step_started = Instant::now();
        let (epoch, step_in_epoch) = (step / steps_per_epoch, step % steps_per_epoch);
        if step_in_epoch == 0 {
            order = sharding::epoch_order(train.len(), shard, shards, plan.seed, epoch);
        }
        let (pulled, pull_timing) = tokio::select! {
            pulled = client.pull_timed(id, step, false) => pulled?,
            () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
        };
        clock.pulled(&pull_timing);
        if pulled.evaluate {
            let evaluating = Instant::now();
            let evaluation = evaluate(&model, &pulled.params, &test, id, pulled.version, false)?;
            client.report_evaluation(&evaluation).await?;
            clock.evaluated(evaluating.elapsed());
        }
        let positions = sharding::batch_positions(&order, step_in_epoch as usize, batch);
        let batch_data = train.select(positions);
        let grads = gradient.get_or_insert_with(|| pulled.params.zeros_like());
        let computing = Instant::now();
        let loss = match options.simulate_compute {
            // Blocks the thread, as real compute would; the gradient stays zero.
            Some(pause) => {
                std::thread::sleep(pause);
                0.0
            }
            None => model.loss_and_gradient(&pulled.params, &batch_data, grads)?,
        };
        if !options.step_delay.is_zero() {
            tokio::time::sleep(options.step_delay).await;
        }
        clock.computed(computing.elapsed());
        let n = positions.len() as u64;
        let push = Push {
            worker: id,
            step,
            base_version: pulled.version,
            loss: f64::from(loss),
            samples: n,
        };
        let receipt = client
            .push_timed(&push, grads, Some(clock.totals()))
            .await?;
        clock.pushed(&receipt);
        clock.step_done(step_started.elapsed());
        samples += n;
    }

    let last = tokio::select! {
        pulled = client.pull(id, total_steps, true) => pulled?,
        () = shutdown.cancelled() => return Err(WorkerError::Cancelled),
    };
    let final_evaluation = if last.evaluate {
        let evaluation = evaluate(&model, &last.params, &test, id, last.version, true)?;
        client.report_evaluation(&evaluation).await?;
        Some(evaluation)
    } else {
        None
    };
    client.leave(id).await?;
    tracing::info!(worker = id, steps = total_steps, samples, "finished");
    Ok(WorkerSummary {
        worker_id: id,
        steps: total_steps,
        samples,
        final_evaluation,
    })
}

fn evaluate(
    model: &Model,
    params: &ParamSet,
    test: &Dataset,
    worker_id: u32,
    version: u64,
    is_final: bool,
) -> Result<Evaluation, ModelError> {
    let m = model.evaluate(params, test)?;
    Ok(Evaluation {
        worker_id,
        version,
        test_loss: m.loss,
        test_accuracy: m.accuracy,
        test_mse: m.mse,
        test_samples: m.samples as u64,
        is_final,
    })
}

/// Sends heartbeats every `interval` until `stop` is cancelled; failures are logged, not fatal.
fn spawn_heartbeat(
    mut client: ServerClient,
    worker: u32,
    interval: Duration,
    stop: CancellationToken,
) -> CancellationToken {
    let token = stop.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(e) = client.heartbeat(worker).await {
                        tracing::debug!(error = %e, "heartbeat failed");
                    }
                }
                () = stop.cancelled() => break,
            }
        }
    });
    token
}
