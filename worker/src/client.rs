//! The worker's side of `downpour.v1`: typed calls over a tonic channel.
//!
//! A step is one round trip on a long-lived exchange stream ([`ExchangeStream`]): the
//! gradient goes out, the parameters for the next step come back. Parameter sets are
//! streamed in pieces ([`downpour_proto::pieces`]): the worker encodes the next message
//! while the previous ones are on the wire, and assembles the parameters as they arrive.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub use downpour_core::Push;
use downpour_core::status::{Evaluation, ServerStatus};
use downpour_core::timing::PhaseTimes;
use downpour_core::{Assignment, ParamSet, TrainingPlan};
use downpour_proto::convert::{plan_from_json, push_header, status_from_wire};
use downpour_proto::limits::{
    CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, PIECE_BYTES, STREAM_WINDOW_BYTES,
};
use downpour_proto::pieces::{ParamAssembler, ParamPieces, receive_set};
use downpour_proto::v1::parameter_server_client::ParameterServerClient;
use downpour_proto::{WireError, v1};

use crate::client_config::ClientConfig;

/// Largest HTTP/2 frame this client accepts, so pulled parameters arrive in frames this
/// large (h2's default is 16 KiB): the server's limit, [`MAX_FRAME_BYTES`].
pub const CLIENT_MAX_FRAME_BYTES: u32 = MAX_FRAME_BYTES;

/// Gradient messages encoded ahead of the one being sent: enough to keep the wire busy
/// while the next is encoded, few enough to bound the memory a step holds beyond its gradient.
const PUSH_MESSAGES_AHEAD: usize = 2;

/// A call to the server that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI.
    #[error("invalid server address {address}: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The connection could not be made.
    #[error("cannot connect to {address}: {}", transport_chain(.source))]
    Connect {
        /// The server's address.
        address: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS settings (CA, client certificate) could not be used.
    #[error("TLS settings for {address}: {source}")]
    Tls {
        /// The server's address.
        address: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("server refused {call}: {} ({:?})", .status.message(), .status.code())]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// The status.
        status: tonic::Status,
    },
    /// The server's answer does not decode.
    #[error("malformed reply: {0}")]
    Wire(#[from] WireError),
}

impl ClientError {
    /// Whether re-connecting and re-registering may cure it: the server is unreachable or
    /// restarting, or it no longer knows this worker as it expects (declared dead, restarted
    /// from a checkpoint, or started afresh).
    #[must_use]
    pub fn is_recoverable(&self) -> bool {
        use tonic::Code;
        if self.is_job_finished() {
            return false;
        }
        match self {
            Self::Connect { .. } => true,
            Self::Rpc { status, .. } => matches!(
                status.code(),
                Code::Unavailable
                    | Code::Unknown
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::Internal
                    | Code::FailedPrecondition
                    | Code::NotFound
            ),
            Self::Address { .. } | Self::Tls { .. } | Self::Wire(_) => false,
        }
    }

    /// Whether the server refused the call because the job has finished: the worker has
    /// nothing left to do and ends successfully.
    #[must_use]
    pub fn is_job_finished(&self) -> bool {
        matches!(self, Self::Rpc { status, .. }
            if status.code() == tonic::Code::FailedPrecondition
                && status.message().starts_with(downpour_core::status::JOB_FINISHED))
    }

    /// The gRPC status code, for a refused call.
    #[must_use]
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// What a server answers to a registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The worker's id and data shard.
    pub assignment: Assignment,
    /// The training plan.
    pub plan: TrainingPlan,
    /// Parameter-server shards in the job.
    pub server_shards: usize,
    /// From shard 0: where shards 1.. are.
    pub shard_addresses: Vec<String>,
    /// The step to compute next.
    pub start_step: u64,
    /// The worker's session secret, which every later call acting as it carries (empty
    /// from a server that issues none).
    pub session: String,
}

/// Parameters received from a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Their version.
    pub version: u64,
    /// The parameters.
    pub params: ParamSet,
    /// Whether this worker should evaluate them and report.
    pub evaluate: bool,
    /// The logical data shards to compute this step (from shard 0).
    pub data_shards: Vec<u32>,
}

/// Where the time of one pull went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PullTiming {
    /// The whole call, decoding excluded (the pieces are decoded as they arrive, so this
    /// is the call's wall clock minus `decode`).
    pub call: Duration,
    /// How long the server held the pull before the parameters were ready.
    pub waited: Duration,
    /// Decoding the tensors from little-endian bytes: the pieces' assembly, summed.
    pub decode: Duration,
}

/// What the server answered to a gradient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The version after the gradient was accepted, or of the parameters sent back.
    pub version: u64,
    /// The server's version minus the gradient's base version, at arrival.
    pub staleness: u64,
}

/// Where the time of one exchange went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExchangeTiming {
    /// The whole round trip, from the first piece encoded to the last one decoded.
    pub call: Duration,
    /// Sending: from the start until the last gradient message was handed to the
    /// transport (its encoding included).
    pub send: Duration,
    /// Encoding the gradient into little-endian bytes: the pieces' encoding, summed.
    pub encode: Duration,
    /// The server's time on the gradient under its lock (barrier, optimizer step).
    pub applied: Duration,
    /// How long the server held the reply before the next parameters were ready.
    pub waited: Duration,
    /// Decoding the parameters from little-endian bytes: the pieces' assembly, summed.
    pub decode: Duration,
}

/// One worker's long-lived exchange stream with one server: each
/// [`Self::exchange`] sends a step's gradient and receives the parameters for the
/// step it asks for. Opened once ([`ServerClient::open_exchange`]); after an error it
/// must be dropped and opened again.
#[derive(Debug)]
pub struct ExchangeStream {
    /// Gradient messages to the server; the call sends them as they come.
    outgoing: mpsc::Sender<v1::ExchangeRequest>,
    /// The server's replies, one set of messages per gradient.
    incoming: Streaming<v1::ExchangeReply>,
    /// The session secrets of the workers this client acts as (the client's, shared).
    sessions: Sessions,
}

impl ExchangeStream {
    /// Sends `gradient` with `push`'s facts and the worker's phase totals, and receives
    /// the parameters for `next_step` (`None`: only the receipt, for the last step).
    /// The server answers once its consistency rule lets the worker start `next_step`.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the server refuses the gradient or the stream breaks;
    /// [`ClientError::Wire`] when the reply does not decode.
    pub async fn exchange(
        &mut self,
        push: &Push,
        gradient: &ParamSet,
        phases: Option<&PhaseTimes>,
        next_step: Option<u64>,
    ) -> Result<(Receipt, Option<Pulled>, ExchangeTiming), ClientError> {
        let called = Instant::now();
        let mut header = push_header(push, phases, next_step);
        header.session = self.sessions.of(push.worker);
        let (sent, received) = tokio::join!(
            send_gradient(header, gradient, &self.outgoing, called),
            receive_set(&mut self.incoming, ParamAssembler::new()),
        );
        let received = received
            .map_err(rpc("exchange"))?
            .ok_or_else(|| ClientError::Rpc {
                call: "exchange",
                status: tonic::Status::unavailable("the server closed the exchange stream"),
            })?;
        let reply = received.first.header.unwrap_or_default();
        let params = received.params?;
        let (encode, send) = sent;
        let timing = ExchangeTiming {
            call: called.elapsed(),
            send,
            encode,
            applied: seconds(reply.applied_seconds),
            waited: seconds(reply.waited_seconds),
            decode: received.decode,
        };
        let receipt = Receipt {
            version: reply.version,
            staleness: reply.staleness,
        };
        let pulled = next_step.map(|_| Pulled {
            version: reply.version,
            params,
            evaluate: reply.evaluate,
            data_shards: reply.data_shards,
        });
        Ok((receipt, pulled, timing))
    }
}

/// A duration the server reported in seconds (zero when not a valid one).
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<tonic::metadata::AsciiMetadataValue>);

impl BearerToken {
    /// Adds `value` (`Bearer <token>`) to every call; `None` adds nothing.
    #[must_use]
    pub fn new(value: Option<tonic::metadata::AsciiMetadataValue>) -> Self {
        Self(value)
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The channel every call goes through: the connection, and the token added to each call.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// A connection to one parameter server. Cheap to clone (clones share the channel).
///
/// Once [`Self::register`] has answered for a worker (or [`Self::set_session`] was called),
/// every call acting as that worker carries its session secret.
#[derive(Debug, Clone)]
pub struct ServerClient {
    /// The generated client with message limits set.
    inner: ParameterServerClient<AuthChannel>,
    /// The session secrets of the workers this client acts as, shared by its clones.
    sessions: Sessions,
}

/// Session secrets by worker id, shared by a client and its clones (a test client may act
/// as several workers; a worker's heartbeat task holds a clone).
#[derive(Debug, Clone, Default)]
struct Sessions(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, String>>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u32, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `worker`'s secret, empty when unknown.
    fn of(&self, worker: u32) -> String {
        self.lock().get(&worker).cloned().unwrap_or_default()
    }

    fn set(&self, worker: u32, secret: String) {
        self.lock().insert(worker, secret);
    }
}

/// A transport error with its causes, so that "transport error" says what went wrong
/// underneath (a refused certificate, a closed connection).
fn transport_chain(e: &tonic::transport::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ServerClient {
    /// Connects to `address` (`host:port` or `http://host:port`), in plaintext, with no token.
    ///
    /// # Errors
    /// [`ClientError::Address`] or [`ClientError::Connect`].
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        Self::connect_with(&ClientConfig::new(address)).await
    }

    /// Connects as `config` says: its address, token and TLS settings.
    ///
    /// # Errors
    /// [`ClientError::Address`], [`ClientError::Tls`] or [`ClientError::Connect`].
    pub async fn connect_with(config: &ClientConfig) -> Result<Self, ClientError> {
        let address = &config.address;
        let uri = config.uri();
        let mut endpoint =
            Endpoint::from_shared(uri.clone()).map_err(|e| ClientError::Address {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        if let Some(tls) = config.tls_config() {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| ClientError::Tls {
                    address: address.clone(),
                    source,
                })?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
            .max_frame_size(Some(CLIENT_MAX_FRAME_BYTES));
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                address: uri,
                source,
            })?;
        let token = config
            .authorization()
            .map_err(|reason| ClientError::Address {
                address: address.clone(),
                reason,
            })?;
        Ok(Self {
            inner: ParameterServerClient::with_interceptor(channel, BearerToken(token))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            sessions: Sessions::default(),
        })
    }

    /// Acts as `worker`, holding `session`, from now on (to register again under its id,
    /// or to attach to another shard).
    pub fn set_session(&self, worker: u32, session: impl Into<String>) {
        self.sessions.set(worker, session.into());
    }

    /// The session secret calls acting as `worker` carry (empty when unknown).
    #[must_use]
    pub fn session_of(&self, worker: u32) -> String {
        self.sessions.of(worker)
    }

    /// Joins the job: with shard 0 (`worker_id` `None`: it assigns the id), or with
    /// another server shard under the id shard 0 assigned. With an id, the call carries
    /// the session secret set with [`Self::set_session`]. The secret the server answers
    /// becomes this client's.
    ///
    /// # Errors
    /// [`ClientError`] when refused or malformed.
    pub async fn register(
        &mut self,
        name: &str,
        worker_id: Option<u32>,
    ) -> Result<Registration, ClientError> {
        let reply = self
            .inner
            .register(v1::RegisterRequest {
                name: name.to_string(),
                worker_id,
                session: worker_id.map(|w| self.sessions.of(w)).unwrap_or_default(),
            })
            .await
            .map_err(rpc("register"))?
            .into_inner();
        let plan = plan_from_json(&reply.plan_json)?;
        let assignment = Assignment {
            worker_id: reply.worker_id,
            shard_index: usize::try_from(reply.shard_index).unwrap_or(usize::MAX),
            shard_count: usize::try_from(reply.shard_count).unwrap_or(usize::MAX),
        };
        // Shard 0 answers the secret; another shard answers the one it checked (or none).
        if !reply.session.is_empty() {
            self.sessions.set(reply.worker_id, reply.session.clone());
        }
        Ok(Registration {
            assignment,
            plan,
            server_shards: (reply.server_shards as usize).max(1),
            shard_addresses: reply.shard_addresses,
            start_step: reply.start_step,
            session: self.sessions.of(reply.worker_id),
        })
    }

    /// Waits until the server lets `worker` start `step` (or, with `final_pull`, until training is over).
    ///
    /// # Errors
    /// [`ClientError`] when refused or malformed.
    pub async fn pull(
        &mut self,
        worker: u32,
        step: u64,
        final_pull: bool,
    ) -> Result<Pulled, ClientError> {
        Ok(self.pull_timed(worker, step, final_pull).await?.0)
    }

    /// As [`Self::pull`], and where the time went.
    ///
    /// # Errors
    /// [`ClientError`] when refused or malformed.
    pub async fn pull_timed(
        &mut self,
        worker: u32,
        step: u64,
        final_pull: bool,
    ) -> Result<(Pulled, PullTiming), ClientError> {
        let called = Instant::now();
        let stream = self
            .inner
            .pull(v1::PullRequest {
                worker_id: worker,
                step,
                r#final: final_pull,
                session: self.sessions.of(worker),
            })
            .await
            .map_err(rpc("pull"))?
            .into_inner();
        let (header, params, decode) = receive_params(stream, "pull").await?;
        let timing = PullTiming {
            call: called.elapsed().saturating_sub(decode),
            waited: Duration::try_from_secs_f64(header.waited_seconds).unwrap_or_default(),
            decode,
        };
        let pulled = Pulled {
            version: header.version,
            params,
            evaluate: header.evaluate,
            data_shards: header.data_shards,
        };
        Ok((pulled, timing))
    }

    /// Opens this worker's exchange stream with the server.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the server refuses the call.
    pub async fn open_exchange(&mut self) -> Result<ExchangeStream, ClientError> {
        let (outgoing, messages) = mpsc::channel(PUSH_MESSAGES_AHEAD);
        let incoming = self
            .inner
            .exchange(ReceiverStream::new(messages))
            .await
            .map_err(rpc("exchange"))?
            .into_inner();
        Ok(ExchangeStream {
            outgoing,
            incoming,
            sessions: self.sessions.clone(),
        })
    }

    /// Says `worker` is alive; returns the server's version.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn heartbeat(&mut self, worker: u32) -> Result<u64, ClientError> {
        let reply = self
            .inner
            .heartbeat(v1::HeartbeatRequest {
                worker_id: worker,
                session: self.sessions.of(worker),
            })
            .await
            .map_err(rpc("heartbeat"))?;
        Ok(reply.into_inner().version)
    }

    /// Reports test metrics.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn report_evaluation(&mut self, evaluation: &Evaluation) -> Result<(), ClientError> {
        self.inner
            .report_evaluation(v1::EvaluationReport {
                session: self.sessions.of(evaluation.worker_id),
                ..v1::EvaluationReport::from(evaluation)
            })
            .await
            .map_err(rpc("report_evaluation"))?;
        Ok(())
    }

    /// Leaves the job.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn leave(&mut self, worker: u32) -> Result<(), ClientError> {
        self.inner
            .leave(v1::LeaveRequest {
                worker_id: worker,
                session: self.sessions.of(worker),
            })
            .await
            .map_err(rpc("leave"))?;
        Ok(())
    }

    /// The server's status.
    ///
    /// # Errors
    /// [`ClientError`] when refused or malformed.
    pub async fn status(&mut self) -> Result<ServerStatus, ClientError> {
        let reply = self
            .inner
            .status(v1::StatusRequest {})
            .await
            .map_err(rpc("status"))?
            .into_inner();
        Ok(status_from_wire(&reply)?)
    }

    /// The current parameters and their version (no membership needed).
    ///
    /// # Errors
    /// [`ClientError`] when refused or malformed.
    pub async fn parameters(&mut self) -> Result<(u64, ParamSet), ClientError> {
        let stream = self
            .inner
            .get_parameters(v1::GetParametersRequest {})
            .await
            .map_err(rpc("get_parameters"))?
            .into_inner();
        let (header, params, _) = receive_params(stream, "get_parameters").await?;
        Ok((header.version, params))
    }

    /// The raw generated client, for tests that send malformed messages on purpose.
    #[must_use]
    pub fn raw(&self) -> ParameterServerClient<AuthChannel> {
        self.inner.clone()
    }
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> ClientError {
    move |status| ClientError::Rpc { call, status }
}

/// Encodes `gradient` one message group at a time and sends the messages, `header` in
/// the first, the last marked, while the transport sends the earlier ones; returns the
/// time spent encoding and the time from `started` until the last message was handed
/// over. Stops early when the stream has dropped its end (it failed).
async fn send_gradient(
    header: v1::PushHeader,
    gradient: &ParamSet,
    messages: &mpsc::Sender<v1::ExchangeRequest>,
    started: Instant,
) -> (Duration, Duration) {
    let mut header = Some(header);
    let mut groups = ParamPieces::new(gradient, PIECE_BYTES).peekable();
    let mut encode = Duration::ZERO;
    loop {
        let encoding = Instant::now();
        let group = groups.next();
        let last = groups.peek().is_none();
        encode += encoding.elapsed();
        let Some(group) = group else { break };
        let message = v1::ExchangeRequest {
            header: header.take(),
            gradients: group,
            last,
        };
        if messages.send(message).await.is_err() {
            break;
        }
    }
    (encode, started.elapsed())
}

/// Reads a stream of parameter pieces to its end, assembling them as they arrive;
/// returns the first message (its pieces taken), the parameters and the time spent
/// assembling.
///
/// # Errors
/// [`ClientError::Rpc`] when the stream breaks; [`ClientError::Wire`] when it carries no
/// message or its pieces do not fit together.
async fn receive_params(
    mut stream: Streaming<v1::PullResponse>,
    call: &'static str,
) -> Result<(v1::PullResponse, ParamSet, Duration), ClientError> {
    let received = receive_set(&mut stream, ParamAssembler::new())
        .await
        .map_err(rpc(call))?
        .ok_or(WireError::EmptyStream { what: call })?;
    Ok((received.first, received.params?, received.decode))
}
