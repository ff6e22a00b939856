//! The gRPC layer: decode, call [`ServerCore`] under its lock, wait when told to, encode.
//!
//! Parameter sets are streamed in pieces ([`downpour_proto::pieces`]): a push's gradient
//! is assembled as its messages arrive, so decoding overlaps the transfer; a pull's
//! parameters are sliced, without copying, out of the encoding cached for their version.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status, Streaming};

use downpour_core::schema::{Conformed, TensorSchema};
use downpour_core::status::ServerStatus;
use downpour_core::{ParamSet, Push};
use downpour_proto::convert::{params_to_wire, plan_to_json, status_to_wire};
use downpour_proto::limits::{
    CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, PIECE_BYTES, STREAM_WINDOW_BYTES,
};
use downpour_proto::pieces::{EncodedPieces, ParamAssembler, receive_set};
use downpour_proto::v1;
use downpour_proto::v1::parameter_server_server::{ParameterServer, ParameterServerServer};

use crate::auth::{Authenticated, Tokens};
use crate::checkpoint::{CheckpointStore, Snapshot};
use crate::listener::{FirstBytes, bounded_incoming};
use crate::metrics::ServerMetrics;
use crate::server_core::{CoreError, PullOutcome, ServerCore, ShardRole};
use crate::timing::TimingLedger;

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS certificate or key could not be used.
    #[error("TLS configuration: {0}")]
    Tls(tonic::transport::Error),
}

/// How the server runs: its shard, checkpoints, and what it does at the job's end.
#[derive(Debug)]
pub struct ServeOptions {
    /// Which shard of the model this server holds.
    pub role: ShardRole,
    /// On shard 0: the addresses of shards 1.., as workers reach them (told to each worker).
    pub shard_addresses: Vec<String>,
    /// Stop serving once the job has finished and every worker has left.
    pub exit_when_done: bool,
    /// Where and how often to write checkpoints, if at all.
    pub checkpointing: Option<Checkpointing>,
    /// The shard's Prometheus metrics, observed here and read at each scrape.
    pub metrics: ServerMetrics,
    /// The tokens every call is checked against ([`crate::auth`]); open by default.
    pub tokens: Tokens,
    /// TLS (and, with a client CA, mutual TLS); plaintext when `None`.
    pub tls: Option<ServerTlsConfig>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            role: ShardRole::single(),
            shard_addresses: Vec::new(),
            exit_when_done: false,
            checkpointing: None,
            metrics: ServerMetrics::default(),
            tokens: Tokens::open(),
            tls: None,
        }
    }
}

/// Where and how often a server shard writes checkpoints.
#[derive(Debug)]
pub struct Checkpointing {
    /// The checkpoint directory.
    pub store: CheckpointStore,
    /// Identifies the job and shard; written into every checkpoint.
    pub fingerprint: String,
    /// The job, written into every checkpoint.
    pub job_toml: String,
    /// Write when this many versions have passed since the last checkpoint.
    pub every_steps: Option<u64>,
    /// Write when this much time has passed since the last checkpoint.
    pub every: Option<Duration>,
}

/// When the last checkpoint was taken.
#[derive(Debug)]
struct LastCheckpoint {
    /// Its version.
    version: u64,
    /// When it was taken.
    at: Instant,
}

/// State shared by every request handler.
#[derive(Debug)]
struct Shared {
    /// The server's logic. A std mutex, not a tokio one: it is held only inside
    /// synchronous sections (no `.await` while locked), so it never blocks the runtime
    /// for longer than one optimizer step.
    core: Mutex<ServerCore>,
    /// Encoded parameters of one version (whole tensors), shared by every pull of that
    /// version: pulls stream slices of it (`Bytes` slices are reference counts). Locked
    /// only while `core` is locked, after it, so the version it holds is never ahead of
    /// the core's.
    encoded: Mutex<Option<(u64, Arc<[v1::Tensor]>)>>,
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
    /// When the service started; liveness times are measured from it.
    epoch: Instant,
    /// The last checkpoint taken (or the server's start).
    last_checkpoint: Mutex<LastCheckpoint>,
    /// True while a checkpoint is being written: one at a time.
    writing: AtomicBool,
    /// The tensors this shard holds (the core's, fixed for its life), shared here so that a
    /// gradient is checked against it as its pieces arrive, outside the core's lock.
    schema: Arc<TensorSchema>,
    /// Whether the job had already finished when the server started (it resumed a
    /// finished job's checkpoints): it then only serves status and export, refuses the
    /// rest with "job finished", and, with `exit_when_done`, exits once no worker has
    /// tried to register for [`Shared::linger`].
    finished_at_start: bool,
    /// When a worker last tried to register (or the server started).
    last_register: Mutex<Instant>,
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

    /// Time since the server started: the core's clock for liveness.
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Everything the shard reports, with the timing ledger's report.
    fn status(&self) -> downpour_core::status::ServerStatus {
        let elapsed = self.elapsed();
        let mut status = self.core().status(elapsed);
        status.timing = self.timing().report();
        status
    }

    fn elapsed(&self) -> f64 {
        self.started_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// A snapshot to write now, if a checkpoint is due (or `force`), taken under the core's
    /// lock so that it sees the step boundary the caller just reached. Claims the writer:
    /// at most one checkpoint is written at a time (a due one waits for the next chance).
    fn due_snapshot(&self, core: &ServerCore, force: bool) -> Option<Snapshot> {
        let cp = self.options.checkpointing.as_ref()?;
        if !force {
            let last = self
                .last_checkpoint
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = cp
                .every_steps
                .is_some_and(|n| core.version() >= last.version + n)
                || cp.every.is_some_and(|t| last.at.elapsed() >= t);
            let changed = core.version() != last.version || core.finished();
            // Periodic checkpoints wait for a step boundary (nothing half collected) and for
            // progress; the shutdown checkpoint is taken as things are.
            if !due || !changed || !core.at_step_boundary() {
                return None;
            }
            if self.writing.swap(true, Ordering::AcqRel) {
                return None;
            }
        }
        Some(core.snapshot(cp.fingerprint.clone(), cp.job_toml.clone()))
    }

    /// Writes `snapshot` off the runtime's threads, records it, and releases the writer.
    async fn write_checkpoint(shared: Arc<Self>, snapshot: Snapshot) {
        let version = snapshot.version;
        let writing = Instant::now();
        let writer = Arc::clone(&shared);
        let result = tokio::task::spawn_blocking(move || {
            let cp = writer
                .options
                .checkpointing
                .as_ref()
                .expect("a snapshot implies checkpointing");
            cp.store.save(&snapshot)
        })
        .await;
        let ok = matches!(result, Ok(Ok(_)));
        let metrics = &shared.options.metrics;
        metrics.checkpoint_written(writing.elapsed().as_secs_f64(), ok);
        match result {
            Ok(Ok(path)) => {
                tracing::info!(path = %path.display(), version, "checkpoint written");
                *shared
                    .last_checkpoint
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = LastCheckpoint {
                    version,
                    at: Instant::now(),
                };
                let mut core = shared.core();
                let status = core.checkpoint_status_mut();
                status.written += 1;
                status.last = Some(path.display().to_string());
                status.last_version = Some(version);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, version, "checkpoint failed; the previous one stays")
            }
            Err(e) => tracing::error!(error = %e, version, "checkpoint writer panicked"),
        }
        shared.writing.store(false, Ordering::Release);
    }

    /// Starts writing a checkpoint if one is due.
    fn checkpoint_if_due(shared: &Arc<Self>, core: &ServerCore) {
        if let Some(snapshot) = shared.due_snapshot(core, false) {
            tokio::spawn(Self::write_checkpoint(Arc::clone(shared), snapshot));
        }
    }

    /// The shutdown checkpoint: waits for a write in progress, then writes the state as it is.
    async fn final_checkpoint(shared: &Arc<Self>) {
        while shared.writing.swap(true, Ordering::AcqRel) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let snapshot = shared.due_snapshot(&shared.core(), true);
        match snapshot {
            Some(snapshot) => Self::write_checkpoint(Arc::clone(shared), snapshot).await,
            None => shared.writing.store(false, Ordering::Release),
        }
    }

    /// Stops the server once the job is over and every worker has left, when asked to. On a
    /// job that had finished before the server started, only once no worker has tried to
    /// register for [`Self::linger`]: the workers started with it (a second `docker compose
    /// up`) are told the job is over and exit 0, instead of finding no server.
    fn maybe_exit(&self, core: &ServerCore) {
        if !(self.options.exit_when_done && core.finished() && core.all_left()) {
            return;
        }
        if self.finished_at_start {
            let quiet = self
                .last_register
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed();
            if quiet < self.linger(core) {
                return;
            }
        }
        if !self.shutdown.is_cancelled() {
            tracing::info!("job finished and every worker left: shutting down");
            self.shutdown.cancel();
        }
    }

    /// How long a server started on a finished job waits for workers' last registrations:
    /// two heartbeat timeouts, at least [`FINISHED_LINGER_MIN`].
    fn linger(&self, core: &ServerCore) -> Duration {
        let heartbeat = Duration::from_secs_f64(core.job().spec.fault_tolerance.heartbeat_timeout);
        (heartbeat * 2).max(FINISHED_LINGER_MIN)
    }

    /// The encoded parameters of the core's current version.
    fn encoded_params(&self, core: &ServerCore) -> Arc<[v1::Tensor]> {
        let mut cache = self
            .encoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cache {
            Some((v, tensors)) if *v == core.version() => Arc::clone(tensors),
            _ => {
                let encoding = Instant::now();
                let tensors: Arc<[v1::Tensor]> = params_to_wire(core.params()).into();
                self.timing().encoded(encoding.elapsed().as_secs_f64());
                *cache = Some((core.version(), Arc::clone(&tensors)));
                tensors
            }
        }
    }
}

/// The least time a server started on a finished job waits for registrations before it
/// exits (with `exit_when_done`).
const FINISHED_LINGER_MIN: Duration = Duration::from_secs(10);

/// Parameters a worker may start its step with, and the facts that go with them.
#[derive(Debug)]
struct Ready {
    /// Their version.
    version: u64,
    /// Whether the worker should evaluate them.
    evaluate: bool,
    /// The logical data shards the worker computes in that step.
    data_shards: Vec<u32>,
    /// Seconds the request was held before they were ready.
    waited_seconds: f64,
    /// Their encoding, shared by every reply of this version.
    params: Arc<[v1::Tensor]>,
}

/// What the core answered to an accepted gradient.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    /// The version after the gradient was accepted.
    version: u64,
    /// The server's version minus the gradient's base version, at arrival.
    staleness: u64,
    /// Seconds under the core's lock.
    applied_seconds: f64,
}

impl Shared {
    /// Waits until `worker` may start `step` (or, with `final_pull`, until training is
    /// over) and returns the parameters to start it with.
    ///
    /// # Errors
    /// The core's refusal, or `UNAVAILABLE` when the server shuts down meanwhile.
    async fn ready(
        &self,
        worker: u32,
        session: &str,
        step: u64,
        final_pull: bool,
    ) -> Result<Ready, Status> {
        self.core()
            .authenticate(worker, session)
            .map_err(|e| status_of(&e))?;
        let arrived = Instant::now();
        loop {
            // Subscribe before looking, so a change between the look and the wait is not lost.
            let mut changed = self.changed.subscribe();
            {
                let mut core = self.core();
                let outcome = core
                    .pull(worker, step, final_pull)
                    .map_err(|e| status_of(&e))?;
                core.touch(worker, self.now());
                if let PullOutcome::Ready {
                    version,
                    evaluate,
                    data_shards,
                } = outcome
                {
                    // Encoding below is transfer work, not waiting.
                    let waited_seconds = arrived.elapsed().as_secs_f64();
                    if !final_pull {
                        self.options.metrics.waited(waited_seconds);
                    }
                    if step == 0 && !final_pull {
                        let now = self.elapsed();
                        let workers = core.job().workers();
                        self.timing().first_step_pulled(worker, workers, now);
                    }
                    let params = self.encoded_params(&core);
                    core.record_traffic(0, params.iter().map(|t| t.data.len() as u64).sum());
                    return Ok(Ready {
                        version,
                        evaluate,
                        data_shards,
                        waited_seconds,
                        params,
                    });
                }
            }
            tokio::select! {
                res = changed.changed() => {
                    if res.is_err() {
                        return Err(Status::unavailable("server shutting down"));
                    }
                }
                () = self.shutdown.cancelled() => {
                    return Err(Status::unavailable("server shutting down"));
                }
            }
        }
    }

    /// Reads the next gradient of an exchange stream, assembling its pieces as they
    /// arrive. `None` when the worker closed the stream between steps.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a gradient that does not fit together or lacks its header
    /// (counted as rejected); the transport's status when the stream breaks.
    async fn receive_gradient(
        &self,
        stream: &mut Streaming<v1::ExchangeRequest>,
    ) -> Result<Option<(v1::PushHeader, Conformed)>, Status> {
        let assembler = ParamAssembler::new().with_schema(Arc::clone(&self.schema));
        let Some(received) = receive_set(stream, assembler).await? else {
            return Ok(None);
        };
        let header = received.first.header.ok_or_else(|| {
            Status::invalid_argument("the first message of a step carries no header")
        })?;
        self.core().record_traffic(received.bytes, 0);
        let conformed = received
            .params
            .and_then(|set| Ok(self.schema.conform(set)?));
        match conformed {
            Ok(gradient) => {
                self.timing().decoded(received.decode.as_secs_f64());
                Ok(Some((header, gradient)))
            }
            Err(e) => {
                self.core().note_rejected(header.worker_id, "malformed");
                Err(Status::invalid_argument(e.to_string()))
            }
        }
    }

    /// Hands a gradient to the core (the barrier or the optimizer), records the worker's
    /// phase totals, and starts a checkpoint if one is due.
    ///
    /// # Errors
    /// The core's refusal; the parameters are unchanged then.
    fn accept(
        self: &Arc<Self>,
        header: &v1::PushHeader,
        gradient: Conformed,
    ) -> Result<Accepted, Status> {
        let push = Push::from(header);
        let accepted = {
            let mut core = self.core();
            core.authenticate(push.worker, &header.session)
                .map_err(|e| status_of(&e))?;
            core.touch(push.worker, self.now());
            let locked = Instant::now();
            let outcome = core.push(&push, gradient).map_err(|e| {
                tracing::warn!(worker = push.worker, step = push.step, error = %e, "push rejected");
                status_of(&e)
            })?;
            let applied_seconds = locked.elapsed().as_secs_f64();
            if !outcome.duplicate {
                self.options
                    .metrics
                    .pushed(applied_seconds, outcome.staleness);
            }
            let done = core.training_done();
            let now = self.elapsed();
            let mut timing = self.timing();
            timing.applied(applied_seconds);
            if let Some(phases) = header.phases {
                timing.worker_phases(push.worker, phases.into());
            }
            if done {
                timing.training_ended(now);
            }
            drop(timing);
            // Under the same lock as the push: a push that completed a step sees its boundary.
            Self::checkpoint_if_due(self, &core);
            Accepted {
                version: outcome.version,
                staleness: outcome.staleness,
                applied_seconds,
            }
        };
        self.notify();
        Ok(accepted)
    }

    /// Serves one worker's exchange stream: for each gradient, accept it, wait until the
    /// step it asks for may start, and send those parameters back; until the worker
    /// closes the stream, a request is refused, or the server shuts down.
    async fn exchange(
        self: Arc<Self>,
        mut inbound: Streaming<v1::ExchangeRequest>,
        replies: &mpsc::Sender<Result<v1::ExchangeReply, Status>>,
    ) -> Result<(), Status> {
        loop {
            let received = tokio::select! {
                received = self.receive_gradient(&mut inbound) => received?,
                () = self.shutdown.cancelled() => {
                    return Err(Status::unavailable("server shutting down"));
                }
            };
            let Some((header, gradient)) = received else {
                return Ok(());
            };
            let accepted = self.accept(&header, gradient)?;
            let mut reply = v1::ExchangeHeader {
                version: accepted.version,
                staleness: accepted.staleness,
                applied_seconds: accepted.applied_seconds,
                ..v1::ExchangeHeader::default()
            };
            let params = match header.next_step {
                Some(next) => {
                    let ready = self
                        .ready(header.worker_id, &header.session, next, false)
                        .await?;
                    reply.version = ready.version;
                    reply.evaluate = ready.evaluate;
                    reply.data_shards = ready.data_shards;
                    reply.waited_seconds = ready.waited_seconds;
                    Some(ready.params)
                }
                None => None,
            };
            for message in exchange_reply(reply, params) {
                if replies.send(Ok(message)).await.is_err() {
                    // The worker went away; its next registration tells where it is.
                    return Ok(());
                }
            }
        }
    }
}

/// The messages of an exchange's reply: `header` with the first group of pieces of
/// `params` (cut from their cached encoding without copying), one message per further
/// group, the last marked; one message without pieces when there are no parameters.
fn exchange_reply(
    header: v1::ExchangeHeader,
    params: Option<Arc<[v1::Tensor]>>,
) -> impl Iterator<Item = v1::ExchangeReply> {
    let mut header = Some(header);
    let mut groups = params
        .map(|p| EncodedPieces::new(p, PIECE_BYTES))
        .into_iter()
        .flatten()
        .peekable();
    let mut sent_any = false;
    std::iter::from_fn(move || {
        let group = match groups.next() {
            Some(group) => group,
            None if !sent_any => Vec::new(),
            None => return None,
        };
        sent_any = true;
        Some(v1::ExchangeReply {
            header: header.take(),
            params: group,
            last: groups.peek().is_none(),
        })
    })
}

/// A streamed reply of exchange messages.
pub type ExchangeStream = Pin<Box<dyn Stream<Item = Result<v1::ExchangeReply, Status>> + Send>>;

/// Reply messages an exchange prepares ahead of the transport: they are slices of the
/// cached encoding, so holding a few costs no copy.
const REPLY_MESSAGES_AHEAD: usize = 4;

/// A streamed reply of parameters: `PullResponse` messages of pieces.
pub type PullStream = Pin<Box<dyn Stream<Item = Result<v1::PullResponse, Status>> + Send>>;

/// The reply stream for `params` (whole encoded tensors): `header` with the first group
/// of pieces, then one message per further group, each cut from `params` without copying.
fn pull_stream(header: v1::PullResponse, params: Arc<[v1::Tensor]>) -> PullStream {
    let mut header = Some(header);
    let messages = EncodedPieces::new(params, PIECE_BYTES).map(move |group| {
        let mut message = header.take().unwrap_or_default();
        message.params = group;
        Ok(message)
    });
    Box::pin(tokio_stream::iter(messages))
}

/// The `downpour.v1.ParameterServer` service.
#[derive(Debug, Clone)]
pub struct ParameterServerService {
    /// Shared by every handler.
    shared: Arc<Shared>,
}

impl ParameterServerService {
    /// A service running `core`; it stops serving when `shutdown` is cancelled.
    #[must_use]
    pub fn new(core: ServerCore, shutdown: CancellationToken, options: ServeOptions) -> Self {
        let (changed, _) = watch::channel(0);
        let version = core.version();
        let schema = Arc::clone(core.schema());
        let finished_at_start = core.finished();
        if finished_at_start {
            tracing::info!(
                version,
                "the job has finished (resumed from its checkpoints): serving status and export only; registrations, pushes and pulls are refused with \"job finished\""
            );
        }
        Self {
            shared: Arc::new(Shared {
                core: Mutex::new(core),
                encoded: Mutex::new(None),
                changed,
                started_at: Mutex::new(None),
                timing: Mutex::new(TimingLedger::default()),
                shutdown,
                options,
                epoch: Instant::now(),
                last_checkpoint: Mutex::new(LastCheckpoint {
                    version,
                    at: Instant::now(),
                }),
                writing: AtomicBool::new(false),
                schema,
                finished_at_start,
                last_register: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Checks worker liveness a few times per heartbeat timeout until shutdown: a worker
    /// silent for longer than the timeout is declared dead, and waiting pulls are woken.
    pub fn spawn_liveness_check(&self) {
        let shared = Arc::clone(&self.shared);
        let timeout =
            Duration::from_secs_f64(shared.core().job().spec.fault_tolerance.heartbeat_timeout);
        let period = (timeout / 4).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shared.shutdown.cancelled() => break,
                }
                let dead = {
                    let mut core = shared.core();
                    let dead = core.expire(shared.now());
                    // A finished job's server also waits out its linger here.
                    if !dead.is_empty() || shared.finished_at_start {
                        shared.maybe_exit(&core);
                    }
                    Shared::checkpoint_if_due(&shared, &core);
                    dead
                };
                if !dead.is_empty() {
                    shared.notify();
                }
            }
        });
    }

    /// The tonic server for this service, with the message limits set.
    #[must_use]
    pub fn into_server(self) -> ParameterServerServer<Self> {
        ParameterServerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Concurrent calls (HTTP/2 streams) one connection may have open: a worker uses a few
/// (its exchange, a heartbeat, a report), a status poller one.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Serves `job` on `listener` until `shutdown` is cancelled (or, with
/// [`ServeOptions::exit_when_done`], until the job is over), under the job's `[limits]`:
/// connections bounded in number, a handshake timeout and keep-alive pings
/// ([`crate::listener`]).
///
/// # Errors
/// [`ServeError::Tls`] for an unusable certificate or key; [`ServeError::Transport`] when
/// the transport fails.
pub async fn serve(
    core: ServerCore,
    listener: TcpListener,
    shutdown: CancellationToken,
    mut options: ServeOptions,
) -> Result<ServeOutcome, ServeError> {
    let limits = core.job().spec.limits.transport();
    let tokens = std::mem::take(&mut options.tokens);
    let tls = options.tls.take();
    let service = ParameterServerService::new(core, shutdown.clone(), options);
    service.spawn_liveness_check();
    let shared = Arc::clone(&service.shared);
    // Weak: the metrics live in the options the shared state holds.
    let scraped = Arc::downgrade(&shared);
    shared
        .options
        .metrics
        .attach_status(move || scraped.upgrade().map(|s| s.status()));
    let first = if tls.is_some() {
        FirstBytes::Tls
    } else {
        FirstBytes::Preface
    };
    let incoming = bounded_incoming(listener, limits, first, shutdown.clone());
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.timeout(TLS_HANDSHAKE_TIMEOUT))
            .map_err(ServeError::Tls)?;
    }
    builder
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        // A peer that stops answering pings is dropped; so are its streams.
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        // One connection cannot open streams without bound (a worker needs a few).
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .add_service(Authenticated::new(service.into_server(), tokens))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    // A clean shutdown: write a last checkpoint.
    if shared.options.checkpointing.is_some() {
        Shared::final_checkpoint(&shared).await;
    }
    let status = shared.status();
    let params = shared.core().params().clone();
    Ok(ServeOutcome { status, params })
}

/// What a server held when it stopped: its last status and this shard's parameters.
#[derive(Debug, Clone)]
pub struct ServeOutcome {
    /// The status a Status call would have answered last.
    pub status: ServerStatus,
    /// This shard's parameters at that version.
    pub params: ParamSet,
}

/// How long a client has to complete the TLS handshake before its connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn status_of(err: &CoreError) -> Status {
    let msg = err.to_string();
    match err {
        CoreError::UnknownWorker(_) => Status::not_found(msg),
        CoreError::DepartedWorker(_)
        | CoreError::OutOfOrder { .. }
        | CoreError::BeyondLastStep { .. }
        | CoreError::JobFinished
        | CoreError::EvaluationRefused { .. } => Status::failed_precondition(msg),
        CoreError::TooManyWorkers { .. } => Status::resource_exhausted(msg),
        CoreError::Resume(_) => Status::internal(msg),
        CoreError::WrongSession(_) => Status::permission_denied(msg),
        CoreError::Gradient(_)
        | CoreError::EmptyGradient { .. }
        | CoreError::FutureVersion { .. }
        | CoreError::Role(_)
        | CoreError::NameTooLong { .. }
        | CoreError::Evaluation { .. } => Status::invalid_argument(msg),
    }
}

#[tonic::async_trait]
impl ParameterServer for ParameterServerService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let req = request.into_inner();
        let name = req.name;
        *self
            .shared
            .last_register
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        let (registered, session) = {
            let mut core = self.shared.core();
            let (registered, session) = core
                .register_authenticated(&name, req.worker_id, &req.session)
                .map_err(|e| {
                    if let CoreError::WrongSession(_) = e {
                        tracing::warn!(
                            worker = req.worker_id,
                            name,
                            "registration under a worker id refused: wrong session secret"
                        );
                    }
                    status_of(&e)
                })?;
            core.touch(registered.assignment.worker_id, self.shared.now());
            (registered, session)
        };
        let assignment = registered.assignment;
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
            plan_json: plan_to_json(&registered.plan),
            start_step: registered.start_step,
            server_shards: self.shared.options.role.count as u32,
            shard_addresses: self.shared.options.shard_addresses.clone(),
            session: session.unwrap_or_default(),
        }))
    }

    type PullStream = PullStream;
    type GetParametersStream = PullStream;

    async fn pull(
        &self,
        request: Request<v1::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let req = request.into_inner();
        let ready = self
            .shared
            .ready(req.worker_id, &req.session, req.step, req.r#final)
            .await?;
        let header = v1::PullResponse {
            version: ready.version,
            params: Vec::new(),
            evaluate: ready.evaluate,
            data_shards: ready.data_shards,
            waited_seconds: ready.waited_seconds,
        };
        Ok(Response::new(pull_stream(header, ready.params)))
    }

    type ExchangeStream = ExchangeStream;

    async fn exchange(
        &self,
        request: Request<Streaming<v1::ExchangeRequest>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let inbound = request.into_inner();
        let (replies, outgoing) = mpsc::channel(REPLY_MESSAGES_AHEAD);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            if let Err(status) = shared.exchange(inbound, &replies).await {
                let _ = replies.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let worker = req.worker_id;
        let version = {
            let mut core = self.shared.core();
            core.authenticate(worker, &req.session)
                .map_err(|e| status_of(&e))?;
            core.touch(worker, self.shared.now());
            core.heartbeat(worker).map_err(|e| status_of(&e))?
        };
        Ok(Response::new(v1::HeartbeatResponse { version }))
    }

    async fn report_evaluation(
        &self,
        request: Request<v1::EvaluationReport>,
    ) -> Result<Response<v1::ReportEvaluationResponse>, Status> {
        let report = request.into_inner();
        self.shared
            .core()
            .authenticate(report.worker_id, &report.session)
            .map_err(|e| status_of(&e))?;
        let evaluation = downpour_core::status::Evaluation::from(report);
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
        let req = request.into_inner();
        let worker = req.worker_id;
        {
            let mut core = self.shared.core();
            core.authenticate(worker, &req.session)
                .map_err(|e| status_of(&e))?;
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
    ) -> Result<Response<Self::GetParametersStream>, Status> {
        let core = self.shared.core();
        let params = self.shared.encoded_params(&core);
        let header = v1::PullResponse {
            version: core.version(),
            params: Vec::new(),
            evaluate: false,
            data_shards: Vec::new(),
            waited_seconds: 0.0,
        };
        Ok(Response::new(pull_stream(header, params)))
    }

    async fn status(
        &self,
        _request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(status_to_wire(&self.shared.status())))
    }
}
