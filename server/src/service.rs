//! The gRPC layer: decode, call [`ServerCore`] under its lock, wait when told to, encode.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use downpour_proto::convert::{params_from_wire, params_to_wire, plan_to_json, status_to_wire};
use downpour_proto::limits::{
    CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES,
};
use downpour_proto::v1;
use downpour_proto::v1::parameter_server_server::{ParameterServer, ParameterServerServer};

use crate::job::Job;
use crate::server_core::{CoreError, PullOutcome, ServerCore};
use crate::timing::TimingLedger;

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How the server behaves around the job's end.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Stop serving once the job has finished and every worker has left.
    pub exit_when_done: bool,
}

/// State shared by every request handler.
#[derive(Debug)]
struct Shared {
    /// The server's logic. A std mutex, not a tokio one: it is held only inside
    /// synchronous sections (no `.await` while locked), so it never blocks the runtime
    /// for longer than one optimizer step.
    core: Mutex<ServerCore>,
    /// Encoded parameters of one version, shared by every pull of that version
    /// (`Bytes` clones are reference counts). Locked only while `core` is locked,
    /// after it, so the version it holds is never ahead of the core's.
    encoded: Mutex<Option<(u64, Vec<v1::Tensor>)>>,
    /// Bumped after every change that may let a waiting pull proceed.
    changed: watch::Sender<u64>,
    /// When the first worker registered (the job's clock), once one has.
    started_at: Mutex<Option<Instant>>,
    /// Where the job's time goes. Locked alone, or while `core` is locked and after it.
    timing: Mutex<TimingLedger>,
    /// Cancelled to stop the server; waiting pulls return `UNAVAILABLE` then.
    shutdown: CancellationToken,
    /// See [`ServeOptions`].
    options: ServeOptions,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, ServerCore> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn timing(&self) -> MutexGuard<'_, TimingLedger> {
        self.timing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn elapsed(&self) -> f64 {
        self.started_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Stops the server once the job is over, when asked to.
    fn maybe_exit(&self, core: &ServerCore) {
        if self.options.exit_when_done && core.finished() && core.all_left() {
            tracing::info!("job finished and every worker left: shutting down");
            self.shutdown.cancel();
        }
    }

    /// The encoded parameters of the core's current version.
    fn encoded_params(&self, core: &ServerCore) -> Vec<v1::Tensor> {
        let mut cache = self
            .encoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cache {
            Some((v, tensors)) if *v == core.version() => tensors.clone(),
            _ => {
                let encoding = Instant::now();
                let tensors = params_to_wire(core.params());
                self.timing().encoded(encoding.elapsed().as_secs_f64());
                *cache = Some((core.version(), tensors.clone()));
                tensors
            }
        }
    }
}

/// The `downpour.v1.ParameterServer` service.
#[derive(Debug, Clone)]
pub struct ParameterServerService {
    /// Shared by every handler.
    shared: Arc<Shared>,
}

impl ParameterServerService {
    /// A service running `job`; it stops serving when `shutdown` is cancelled.
    #[must_use]
    pub fn new(job: Job, shutdown: CancellationToken, options: ServeOptions) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                core: Mutex::new(ServerCore::new(job)),
                encoded: Mutex::new(None),
                changed,
                started_at: Mutex::new(None),
                timing: Mutex::new(TimingLedger::default()),
                shutdown,
                options,
            }),
        }
    }

    /// The tonic server for this service, with the message limits set.
    #[must_use]
    pub fn into_server(self) -> ParameterServerServer<Self> {
        ParameterServerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Serves `job` on `listener` until `shutdown` is cancelled (or, with
/// [`ServeOptions::exit_when_done`], until the job is over).
///
/// # Errors
/// [`ServeError::Transport`] when the transport fails.
pub async fn serve(
    job: Job,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let service = ParameterServerService::new(job, shutdown.clone(), options);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

fn status_of(err: &CoreError) -> Status {
    let msg = err.to_string();
    match err {
        CoreError::UnknownWorker(_) => Status::not_found(msg),
        CoreError::DepartedWorker(_)
        | CoreError::OutOfOrder { .. }
        | CoreError::BeyondLastStep { .. } => Status::failed_precondition(msg),
        CoreError::JobFull(_) => Status::resource_exhausted(msg),
        CoreError::Gradient(_) | CoreError::FutureVersion { .. } => Status::invalid_argument(msg),
    }
}

#[tonic::async_trait]
impl ParameterServer for ParameterServerService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let name = request.into_inner().name;
        let (assignment, plan) = self
            .shared
            .core()
            .register(&name)
            .map_err(|e| status_of(&e))?;
        self.shared
            .started_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(Instant::now);
        tracing::info!(
            worker = assignment.worker_id,
            name,
            shard = assignment.shard_index,
            "worker registered"
        );
        self.shared.notify();
        Ok(Response::new(v1::RegisterResponse {
            worker_id: assignment.worker_id,
            shard_index: assignment.shard_index as u64,
            shard_count: assignment.shard_count as u64,
            plan_json: plan_to_json(&plan),
        }))
    }

    async fn pull(
        &self,
        request: Request<v1::PullRequest>,
    ) -> Result<Response<v1::PullResponse>, Status> {
        let req = request.into_inner();
        let arrived = Instant::now();
        loop {
            // Subscribe before looking, so a change between the look and the wait is not lost.
            let mut changed = self.shared.changed.subscribe();
            {
                let mut core = self.shared.core();
                let outcome = core
                    .pull(req.worker_id, req.step, req.r#final)
                    .map_err(|e| status_of(&e))?;
                if let PullOutcome::Ready { version, evaluate } = outcome {
                    // Encoding below is transfer work, not waiting.
                    let waited_seconds = arrived.elapsed().as_secs_f64();
                    if req.step == 0 && !req.r#final {
                        let now = self.shared.elapsed();
                        let workers = core.job().workers();
                        self.shared
                            .timing()
                            .first_step_pulled(req.worker_id, workers, now);
                    }
                    let params = self.shared.encoded_params(&core);
                    return Ok(Response::new(v1::PullResponse {
                        version,
                        params,
                        evaluate,
                        waited_seconds,
                    }));
                }
            }
            tokio::select! {
                res = changed.changed() => {
                    if res.is_err() {
                        return Err(Status::unavailable("server shutting down"));
                    }
                }
                () = self.shared.shutdown.cancelled() => {
                    return Err(Status::unavailable("server shutting down"));
                }
            }
        }
    }

    async fn push(
        &self,
        request: Request<v1::PushRequest>,
    ) -> Result<Response<v1::PushResponse>, Status> {
        let req = request.into_inner();
        let decoding = Instant::now();
        let gradient = match params_from_wire(req.gradients) {
            Ok(g) => {
                self.shared
                    .timing()
                    .decoded(decoding.elapsed().as_secs_f64());
                g
            }
            Err(e) => {
                self.shared.core().note_rejected(req.worker_id);
                return Err(Status::invalid_argument(e.to_string()));
            }
        };
        let (outcome, applied_seconds) = {
            let mut core = self.shared.core();
            let locked = Instant::now();
            let outcome = core
                .push(req.worker_id, req.step, req.base_version, req.loss, req.samples, gradient)
                .map_err(|e| {
                    tracing::warn!(worker = req.worker_id, step = req.step, error = %e, "push rejected");
                    status_of(&e)
                })?;
            let applied_seconds = locked.elapsed().as_secs_f64();
            let done = core.training_done();
            let now = self.shared.elapsed();
            let mut timing = self.shared.timing();
            timing.applied(applied_seconds);
            if let Some(phases) = req.phases {
                timing.worker_phases(req.worker_id, phases.into());
            }
            if done {
                timing.training_ended(now);
            }
            (outcome, applied_seconds)
        };
        self.shared.notify();
        Ok(Response::new(v1::PushResponse {
            version: outcome.version,
            staleness: outcome.staleness,
            applied_seconds,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let worker = request.into_inner().worker_id;
        let version = self
            .shared
            .core()
            .heartbeat(worker)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(v1::HeartbeatResponse { version }))
    }

    async fn report_evaluation(
        &self,
        request: Request<v1::EvaluationReport>,
    ) -> Result<Response<v1::ReportEvaluationResponse>, Status> {
        let evaluation = downpour_core::status::Evaluation::from(request.into_inner());
        tracing::info!(
            version = evaluation.version,
            test_loss = evaluation.test_loss,
            test_accuracy = evaluation.test_accuracy,
            test_mse = evaluation.test_mse,
            is_final = evaluation.is_final,
            "evaluation"
        );
        {
            let mut core = self.shared.core();
            core.report_evaluation(evaluation)
                .map_err(|e| status_of(&e))?;
            let now = self.shared.elapsed();
            self.shared.timing().evaluation(now);
            self.shared.maybe_exit(&core);
        }
        self.shared.notify();
        Ok(Response::new(v1::ReportEvaluationResponse {}))
    }

    async fn leave(
        &self,
        request: Request<v1::LeaveRequest>,
    ) -> Result<Response<v1::LeaveResponse>, Status> {
        let worker = request.into_inner().worker_id;
        {
            let mut core = self.shared.core();
            core.leave(worker).map_err(|e| status_of(&e))?;
            tracing::info!(worker, "worker left");
            self.shared.maybe_exit(&core);
        }
        self.shared.notify();
        Ok(Response::new(v1::LeaveResponse {}))
    }

    async fn get_parameters(
        &self,
        _request: Request<v1::GetParametersRequest>,
    ) -> Result<Response<v1::PullResponse>, Status> {
        let core = self.shared.core();
        let params = self.shared.encoded_params(&core);
        Ok(Response::new(v1::PullResponse {
            version: core.version(),
            params,
            evaluate: false,
            waited_seconds: 0.0,
        }))
    }

    async fn status(
        &self,
        _request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let elapsed = self.shared.elapsed();
        let mut status = self.shared.core().status(elapsed);
        status.timing = self.shared.timing().report();
        Ok(Response::new(status_to_wire(&status)))
    }
}
