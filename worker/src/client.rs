//! The worker's side of `downpour.v1`: typed calls over a tonic channel.
//!
//! Parameter sets are streamed in pieces ([`downpour_proto::pieces`]): a push encodes
//! the next message while the previous ones are on the wire, a pull assembles the
//! parameters as the messages arrive.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use downpour_core::status::{Evaluation, ServerStatus};
use downpour_core::timing::PhaseTimes;
use downpour_core::{Assignment, ParamSet, TrainingPlan};
use downpour_proto::convert::{plan_from_json, status_from_wire};
use downpour_proto::limits::{
    CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, PIECE_BYTES, STREAM_WINDOW_BYTES,
};
use downpour_proto::pieces::{ParamAssembler, ParamPieces, receive_set};
use downpour_proto::v1::parameter_server_client::ParameterServerClient;
use downpour_proto::{WireError, v1};

/// Largest HTTP/2 frame this client accepts, so pulled parameters arrive in frames this
/// large (h2's default is 16 KiB): the server's limit, [`MAX_FRAME_BYTES`].
pub const CLIENT_MAX_FRAME_BYTES: u32 = MAX_FRAME_BYTES;

/// Push messages encoded ahead of the one being sent: enough to keep the wire busy while
/// the next is encoded, few enough to bound the memory a push holds beyond its gradient.
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
    #[error("cannot connect to {address}: {source}")]
    Connect {
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
            Self::Address { .. } | Self::Wire(_) => false,
        }
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
}

/// What a push says besides the gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Push {
    /// The worker.
    pub worker: u32,
    /// The step it pushes.
    pub step: u64,
    /// The version of the parameters the gradient was computed from.
    pub base_version: u64,
    /// Mean training loss of the batch.
    pub loss: f64,
    /// Samples in the batch.
    pub samples: u64,
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

/// What a push returned, and where its time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PushReceipt {
    /// Current version minus the gradient's base version, as the server saw it.
    pub staleness: u64,
    /// Encoding the gradient into little-endian bytes: the pieces' encoding, summed.
    pub encode: Duration,
    /// The whole call, encoding excluded (the pieces are encoded while earlier ones are
    /// sent, so this is the call's wall clock minus `encode`).
    pub call: Duration,
    /// The server's time on this push under its lock (checks, barrier, optimizer step).
    pub applied: Duration,
}

/// A connection to one parameter server. Cheap to clone (clones share the channel).
#[derive(Debug, Clone)]
pub struct ServerClient {
    /// The generated client with message limits set.
    inner: ParameterServerClient<Channel>,
}

/// Accepts `host:port` as well as `http://host:port`.
fn normalise(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

impl ServerClient {
    /// Connects to `address` (`host:port` or `http://host:port`).
    ///
    /// # Errors
    /// [`ClientError::Address`] or [`ClientError::Connect`].
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        let uri = normalise(address);
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| ClientError::Address {
                address: address.to_string(),
                reason: e.to_string(),
            })?
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
        Ok(Self {
            inner: ParameterServerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// Joins the job: with shard 0 (`worker_id` `None`: it assigns the id), or with
    /// another server shard under the id shard 0 assigned.
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
        Ok(Registration {
            assignment,
            plan,
            server_shards: (reply.server_shards as usize).max(1),
            shard_addresses: reply.shard_addresses,
            start_step: reply.start_step,
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

    /// Sends the gradient of `step`, computed from `base_version`; returns the staleness the server saw.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn push(
        &mut self,
        worker: u32,
        step: u64,
        base_version: u64,
        loss: f64,
        samples: u64,
        gradient: &ParamSet,
    ) -> Result<u64, ClientError> {
        let push = Push {
            worker,
            step,
            base_version,
            loss,
            samples,
        };
        Ok(self.push_timed(&push, gradient, None).await?.staleness)
    }

    /// As [`Self::push`], sending the worker's cumulative phase times along, and
    /// returning where the time went.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn push_timed(
        &mut self,
        push: &Push,
        gradient: &ParamSet,
        phases: Option<&PhaseTimes>,
    ) -> Result<PushReceipt, ClientError> {
        let called = Instant::now();
        let header = v1::PushRequest {
            worker_id: push.worker,
            step: push.step,
            base_version: push.base_version,
            loss: push.loss,
            samples: push.samples,
            gradients: Vec::new(),
            phases: phases.map(v1::PhaseTimes::from),
        };
        let (messages, outgoing) = mpsc::channel(PUSH_MESSAGES_AHEAD);
        let (encode, reply) = tokio::join!(
            send_gradient(header, gradient, messages),
            self.inner.push(ReceiverStream::new(outgoing)),
        );
        let reply = reply.map_err(rpc("push"))?.into_inner();
        Ok(PushReceipt {
            staleness: reply.staleness,
            encode,
            call: called.elapsed().saturating_sub(encode),
            applied: Duration::try_from_secs_f64(reply.applied_seconds).unwrap_or_default(),
        })
    }

    /// Says `worker` is alive; returns the server's version.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn heartbeat(&mut self, worker: u32) -> Result<u64, ClientError> {
        let reply = self
            .inner
            .heartbeat(v1::HeartbeatRequest { worker_id: worker })
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
            .report_evaluation(v1::EvaluationReport::from(evaluation))
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
            .leave(v1::LeaveRequest { worker_id: worker })
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
    pub fn raw(&self) -> ParameterServerClient<Channel> {
        self.inner.clone()
    }
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> ClientError {
    move |status| ClientError::Rpc { call, status }
}

/// Encodes `gradient` one message group at a time and sends the messages, `header`'s
/// fields in the first, while the call sends the earlier ones; returns the time spent
/// encoding. Stops early when the call has dropped its end (it failed).
async fn send_gradient(
    header: v1::PushRequest,
    gradient: &ParamSet,
    messages: mpsc::Sender<v1::PushRequest>,
) -> Duration {
    let mut header = Some(header);
    let mut groups = ParamPieces::new(gradient, PIECE_BYTES);
    let mut encode = Duration::ZERO;
    loop {
        let encoding = Instant::now();
        let group = groups.next();
        encode += encoding.elapsed();
        let Some(group) = group else { break };
        let mut message = header.take().unwrap_or_default();
        message.gradients = group;
        if messages.send(message).await.is_err() {
            break;
        }
    }
    encode
}

/// Reads a stream of parameter pieces to its end, assembling them as they arrive;
/// returns the first message (its pieces taken), the parameters and the time spent
/// assembling.
///
/// # Errors
/// [`ClientError::Rpc`] when the stream breaks; [`ClientError::Wire`] when it carries no
/// message or its pieces do not fit together.
async fn receive_params(
    stream: Streaming<v1::PullResponse>,
    call: &'static str,
) -> Result<(v1::PullResponse, ParamSet, Duration), ClientError> {
    let received = receive_set(stream, ParamAssembler::new())
        .await
        .map_err(rpc(call))?
        .ok_or(WireError::EmptyStream { what: call })?;
    Ok((received.first, received.params?, received.decode))
}
