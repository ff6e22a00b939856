//! An in-process parameter server: the server's I/O-free core
//! ([`downpour_server::server_core::ServerCore`]) behind the worker's
//! [`ParameterService`], so the worker's own training loop runs with no network and no
//! process. It lives here, not in the worker crate, so that the worker never depends on
//! the server.
//!
//! [`InProcessServer`] is one job's core, shared by its workers; [`InProcessClient`] is
//! one worker's handle. A pull the consistency rule holds back waits until a push, a
//! report or a departure changes the core's state, as the gRPC service's pulls do.
//! An exchange is the core's push (the gradient conformed to the model's schema first, as
//! the gRPC layer does), then its pull of the next step (waiting as above).
//! Pulls copy the parameters out of the core and exchanges copy the gradient in (the
//! core takes it by value), standing for the wire's decode and encode.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use downpour_core::status::Evaluation;
use downpour_core::timing::PhaseTimes;
use downpour_core::{ParamSet, Push};
use downpour_server::Job;
use downpour_server::server_core::{PullOutcome, ServerCore};
use downpour_worker::client::{ClientError, ExchangeTiming, PullTiming, Receipt, Registration};
use downpour_worker::sharded_server::Exchanged;
use downpour_worker::{ParameterService, PullRequest, PulledStep, StepExchange};

/// One job's server core, shared by the workers trained against it.
#[derive(Debug, Clone)]
pub struct InProcessServer {
    /// The core. A std mutex: it is locked only inside the synchronous calls below, never
    /// across an `.await`.
    core: Arc<Mutex<ServerCore>>,
    /// Signalled after every call that may let a waiting pull proceed.
    changed: Arc<Notify>,
    /// When things happened, for the single-process trainer's report. Its own std mutex,
    /// locked briefly and never while the core's is held.
    record: Arc<Mutex<Record>>,
}

/// What the server saw and when: the single-process trainer's timeline.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The first pull served: training begins.
    pub first_pull: Option<Instant>,
    /// The last gradient taken.
    pub last_update: Option<Instant>,
    /// Time in the core's push (checks, barrier, optimizer step), summed.
    pub applying: Duration,
    /// The latest phase totals a worker sent with a gradient.
    pub phases: Option<PhaseTimes>,
    /// Every evaluation reported, with when it was.
    pub evaluations: Vec<(Instant, Evaluation)>,
}

/// A core's refusal as the worker's error (not recoverable: there is nothing to reconnect to).
fn refused(call: &'static str, e: &impl std::fmt::Display) -> ClientError {
    ClientError::Rpc {
        call,
        status: tonic::Status::invalid_argument(e.to_string()),
    }
}

impl InProcessServer {
    /// A server for `job`, at version 0.
    #[must_use]
    pub fn new(job: Job) -> Self {
        Self {
            core: Arc::new(Mutex::new(ServerCore::new(job))),
            changed: Arc::new(Notify::new()),
            record: Arc::default(),
        }
    }

    /// What the server saw and when, so far.
    #[must_use]
    pub fn record(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.record.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The core, for reading its state (a poisoned lock still holds a consistent core:
    /// every call on it either completes or leaves it unchanged).
    pub fn core(&self) -> MutexGuard<'_, ServerCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a worker named `name` (a fresh one for `None`, a returning one by id).
    ///
    /// # Errors
    /// [`ClientError`] when the core refuses the registration.
    pub fn register(
        &self,
        name: &str,
        worker_id: Option<u32>,
    ) -> Result<(InProcessClient, Registration), ClientError> {
        let registered = self
            .core()
            .register(name, worker_id)
            .map_err(|e| refused("register", &e))?;
        self.changed.notify_waiters();
        let registration = Registration {
            assignment: registered.assignment,
            plan: registered.plan,
            server_shards: 1,
            shard_addresses: Vec::new(),
            start_step: registered.start_step,
            session: String::new(),
        };
        let client = InProcessClient {
            server: self.clone(),
            params: ParamSet::default(),
            versions: [0],
        };
        Ok((client, registration))
    }
}

/// One worker's handle on an [`InProcessServer`].
#[derive(Debug)]
pub struct InProcessClient {
    /// The server.
    server: InProcessServer,
    /// The parameters of the last pull (empty before the first).
    params: ParamSet,
    /// The version of the last pull: one shard.
    versions: [u64; 1],
}

impl InProcessClient {
    /// Waits until the core lets `request` proceed, then copies the parameters out.
    /// Returns whether to evaluate, the data shards, the time waited and the copy's time.
    async fn wait_and_copy(
        &mut self,
        request: PullRequest,
    ) -> Result<(bool, Vec<u32>, Duration, Duration), ClientError> {
        let changed = Arc::clone(&self.server.changed);
        let mut waited = Duration::ZERO;
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            // Registered before the core is asked, so a change in between is not missed.
            notified.as_mut().enable();
            let ready = {
                let mut core = self.server.core();
                match core
                    .pull(request.worker, request.step, request.final_pull)
                    .map_err(|e| refused("pull", &e))?
                {
                    PullOutcome::Ready {
                        version,
                        evaluate,
                        data_shards,
                    } => {
                        let copying = Instant::now();
                        self.params.clone_from(core.params());
                        self.versions[0] = version;
                        Some((evaluate, data_shards, copying.elapsed()))
                    }
                    PullOutcome::Wait => None,
                }
            };
            if let Some((evaluate, data_shards, copy)) = ready {
                self.server.note(|r| {
                    r.first_pull.get_or_insert_with(Instant::now);
                });
                return Ok((evaluate, data_shards, waited, copy));
            }
            let waiting = Instant::now();
            notified.await;
            waited += waiting.elapsed();
        }
    }
}

impl ParameterService for InProcessClient {
    fn params(&self) -> &ParamSet {
        &self.params
    }

    fn version(&self) -> u64 {
        self.versions[0]
    }

    fn versions(&self) -> &[u64] {
        &self.versions
    }

    fn take_params(&mut self) -> ParamSet {
        std::mem::take(&mut self.params)
    }

    fn give_back(&mut self, params: ParamSet) {
        if self.params.is_empty() {
            self.params = params;
        }
    }

    async fn pull(&mut self, request: PullRequest) -> Result<PulledStep, ClientError> {
        let called = Instant::now();
        let (evaluate, data_shards, waited, decode) = self.wait_and_copy(request).await?;
        Ok(PulledStep {
            evaluate,
            data_shards,
            timing: PullTiming {
                call: called.elapsed().saturating_sub(decode),
                waited,
                decode,
            },
        })
    }

    async fn exchange(&mut self, e: StepExchange<'_>) -> Result<Exchanged, ClientError> {
        let called = Instant::now();
        let gradient = e.gradient.clone();
        let encode = called.elapsed();
        let push = Push {
            base_version: e.base[0],
            ..e.push
        };
        let applying = Instant::now();
        let outcome = {
            let mut core = self.server.core();
            let conformed = core
                .schema()
                .conform(gradient)
                .map_err(|err| refused("exchange", &err))?;
            core.push(&push, conformed)
                .map_err(|err| refused("exchange", &err))?
        };
        let applied = applying.elapsed();
        self.server.changed.notify_waiters();
        self.server.note(|r| {
            r.last_update = Some(Instant::now());
            r.applying += applied;
            if let Some(p) = e.phases {
                r.phases = Some(*p);
            }
        });
        let mut receipt = Receipt {
            version: outcome.version,
            staleness: outcome.staleness,
        };
        let (mut evaluate, mut data_shards) = (false, Vec::new());
        let (mut waited, mut decode) = (Duration::ZERO, Duration::ZERO);
        if let Some(step) = e.next_step {
            let request = PullRequest {
                worker: push.worker,
                step,
                final_pull: false,
            };
            (evaluate, data_shards, waited, decode) = self.wait_and_copy(request).await?;
            receipt.version = self.versions[0];
        }
        Ok(Exchanged {
            receipt,
            evaluate,
            data_shards,
            timing: ExchangeTiming {
                call: called.elapsed(),
                send: encode,
                encode,
                applied,
                waited,
                decode,
            },
        })
    }

    async fn report_evaluation(&mut self, evaluation: &Evaluation) -> Result<(), ClientError> {
        self.server
            .core()
            .report_evaluation(evaluation.clone())
            .map_err(|e| refused("report_evaluation", &e))?;
        self.server.changed.notify_waiters();
        self.server
            .note(|r| r.evaluations.push((Instant::now(), evaluation.clone())));
        Ok(())
    }

    async fn leave(&mut self, worker: u32) -> Result<(), ClientError> {
        self.server
            .core()
            .leave(worker)
            .map_err(|e| refused("leave", &e))?;
        self.server.changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_server::JobSpec;
    use downpour_server::job::ConsistencyMode;
    use downpour_worker::{WorkerOptions, train_with};
    use tokio_util::sync::CancellationToken;

    /// The default job (digits, 64-128-10 MLP), shortened to `epochs`.
    fn job(mode: ConsistencyMode, workers: usize, epochs: usize) -> Job {
        let mut spec = JobSpec::default();
        spec.training.epochs = epochs;
        spec.training.workers = workers;
        spec.consistency.mode = mode;
        spec.validate().unwrap()
    }

    fn bits(p: &ParamSet) -> Vec<u32> {
        p.entries()
            .iter()
            .flat_map(|e| e.tensor.data().iter().map(|v| v.to_bits()))
            .collect()
    }

    async fn train_one(server: &InProcessServer, name: &str) -> downpour_worker::WorkerSummary {
        let (mut client, registration) = server.register(name, None).unwrap();
        let options = WorkerOptions::new("in-process");
        train_with(
            &mut client,
            &registration,
            &options,
            &CancellationToken::new(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn one_sync_worker_in_process_updates_once_per_step_and_records_its_timeline() {
        let job = job(ConsistencyMode::Sync, 1, 2);
        let server = InProcessServer::new(job);
        let summary = train_one(&server, "w0").await;
        assert!(summary.steps > 0);
        assert_eq!(server.core().version(), summary.steps);
        let last = summary.final_evaluation.expect("the only worker evaluates");
        assert!(last.is_final);
        assert_eq!(last.version, summary.steps);
        let record = server.record();
        assert!(record.first_pull.unwrap() <= record.last_update.unwrap());
        assert!(record.applying > Duration::ZERO);
        let phases = record.phases.expect("the worker sends its phase totals");
        assert!(phases.compute > 0.0);
        // One evaluation after each epoch but the last, then the final one.
        assert_eq!(record.evaluations.len(), 2);
        assert!(record.evaluations.last().unwrap().1.is_final);
    }

    #[tokio::test]
    async fn two_async_workers_in_process_apply_every_step_of_both() {
        let job = job(ConsistencyMode::Async, 2, 1);
        let server = InProcessServer::new(job);
        let (a, b) = tokio::join!(train_one(&server, "a"), train_one(&server, "b"));
        assert_eq!(a.steps, b.steps, "equal shards, equal steps");
        assert!(a.steps > 0);
        let core = server.core();
        assert_eq!(core.version(), a.steps + b.steps, "async applies each push");
        assert!(core.finished() || core.all_left());
        assert_eq!(
            [a.final_evaluation.is_some(), b.final_evaluation.is_some()]
                .iter()
                .filter(|&&e| e)
                .count(),
            1,
            "exactly one worker makes the final evaluation"
        );
    }

    #[tokio::test]
    async fn two_sync_workers_in_process_wait_for_each_other_at_every_step() {
        let job = job(ConsistencyMode::Sync, 2, 1);
        let server = InProcessServer::new(job);
        let (a, b) = tokio::join!(train_one(&server, "a"), train_one(&server, "b"));
        assert_eq!(a.steps, b.steps);
        assert_eq!(
            server.core().version(),
            a.steps,
            "one update per round of two"
        );
    }

    #[tokio::test]
    async fn a_retried_push_through_the_service_is_applied_once() {
        let job = job(ConsistencyMode::Async, 1, 1);
        let server = InProcessServer::new(job);
        let (mut client, registration) = server.register("w", None).unwrap();
        let id = registration.assignment.worker_id;
        client
            .pull(PullRequest {
                worker: id,
                step: 0,
                final_pull: false,
            })
            .await
            .unwrap();
        let mut gradient = client.params().zeros_like();
        gradient.tensors_mut().for_each(|t| t.data_mut().fill(0.01));
        let exchange = StepExchange {
            push: Push {
                worker: id,
                step: 0,
                base_version: 0,
                loss: 1.0,
                samples: 32,
            },
            base: &[0],
            gradient: &gradient,
            phases: None,
            next_step: None,
        };
        let first = client.exchange(exchange).await.unwrap();
        assert_eq!(first.receipt.version, 1);
        let after_first = bits(server.core().params());
        client.exchange(exchange).await.unwrap();
        assert_eq!(server.core().version(), 1, "the retry is not applied again");
        assert_eq!(bits(server.core().params()), after_first);
    }

    #[tokio::test]
    async fn a_refused_call_names_the_call_and_the_reason() {
        let server = InProcessServer::new(job(ConsistencyMode::Sync, 1, 1));
        let (mut client, _) = server.register("w", None).unwrap();
        let err = client
            .pull(PullRequest {
                worker: 99,
                step: 0,
                final_pull: false,
            })
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pull") && text.contains("99"), "{text}");
        assert!(!err.is_recoverable());
    }
}
