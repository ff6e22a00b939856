//! Transport microbenchmarks: a worker's per-step exchange (its gradient out, the next
//! parameters back) through Downpour's gRPC path (a real `downpour server` process, the
//! worker's client), against a raw TCP round trip of the same bytes both ways on loopback,
//! alternated in one run (the order swapping every step) so both see the same machine.
//! The default sizes are those jobs have: 70 KB, 1 MB, 10 MB and 40 MB of parameters.
//!
//! - Exchange: [`exchange`], the worker's own call (one round trip over its long-lived
//!   Exchange stream: the gradient out, the next step's parameters back), its wall clock minus the server's
//!   time applying the gradient (the optimizer's cost, reported by the server, not the
//!   wire's). The cost model uses its median (`cost_model::Profile::measured_exchange`).
//! - Raw TCP round trip: the gradient's bytes written with an 8-byte length, the peer
//!   reading them into a reused buffer and writing the parameters' bytes back the same way.
//!
//! Push and pull are also timed on their own, each against a one-way raw transfer:
//!
//! Parameter sets travel as gRPC streams of pieces of at most
//! [`downpour_proto::limits::PIECE_BYTES`] each, so encoding, transfer and decoding
//! overlap (see `docs/architecture.md`, "Wire format"):
//!
//! - gRPC push: a gradient sent over the exchange stream with no parameters asked back,
//!   from the first piece's encoding to the receipt
//!   (the client encodes piece k+1 while piece k is sent and the server assembles the
//!   pieces as they arrive), minus the server's time applying the gradient (it reports
//!   that).
//! - gRPC pull, right after a push: the server streaming call (the server encodes the new
//!   version once, then streams slices of that encoding) while the client assembles the
//!   pieces as they arrive.
//! - Raw TCP: the same number of bytes, already in memory, written with an 8-byte length
//!   and read by the other side into a buffer it reuses; no encoding, no framing, no
//!   allocation: the best loopback can do.
//!
//! Both are reported end to end and as transfer only (codec times subtracted). The codec
//! times are sums over the pieces; since they now overlap the transfer, "transfer only"
//! subtracts time that partly ran alongside it and overstates the transfer's speed: the
//! end-to-end ratio is the one that counts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use downpour_core::tensor::ParamSet;
use downpour_proto::limits::{
    CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, PIECE_BYTES, STREAM_WINDOW_BYTES,
};
use downpour_worker::ServerClient;
use downpour_worker::client::{ClientError, ExchangeStream, ExchangeTiming, Push};

use crate::stats::Summary;
use downpour_launch::launch::{LaunchError, wait_for_address};
use downpour_launch::processes::ChildProcess;

/// Why a transport benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A socket, file or process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not start.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A call to the server failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The raw TCP thread panicked.
    #[error("the raw TCP benchmark thread failed: {0}")]
    Thread(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransportError {
    let what = what.into();
    move |source| TransportError::Io { what, source }
}

/// The transport settings both sides use, recorded with the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportSettings {
    /// HTTP/2 per-stream flow-control window, both sides.
    pub stream_window_bytes: u32,
    /// HTTP/2 per-connection flow-control window, both sides.
    pub connection_window_bytes: u32,
    /// Largest HTTP/2 frame the server accepts (pushes travel in frames up to this).
    pub server_max_frame_bytes: u32,
    /// Largest HTTP/2 frame the client accepts (pulls travel in frames up to this).
    pub client_max_frame_bytes: u32,
    /// Largest gRPC message either side encodes or decodes.
    pub max_message_bytes: usize,
    /// Bytes of values per message of a streamed parameter set; 0 in results recorded
    /// before parameter sets were streamed (one message per call).
    #[serde(default)]
    pub piece_bytes: usize,
    /// Nagle's algorithm off on both sides.
    pub tcp_nodelay: bool,
}

impl TransportSettings {
    /// The settings of this build.
    #[must_use]
    pub fn current() -> Self {
        Self {
            stream_window_bytes: STREAM_WINDOW_BYTES,
            connection_window_bytes: CONNECTION_WINDOW_BYTES,
            server_max_frame_bytes: MAX_FRAME_BYTES,
            client_max_frame_bytes: downpour_worker::client::CLIENT_MAX_FRAME_BYTES,
            max_message_bytes: MAX_MESSAGE_BYTES,
            piece_bytes: PIECE_BYTES,
            tcp_nodelay: true,
        }
    }
}

/// Push and pull of one size, both ways, both transports (seconds per transfer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportResult {
    /// Parameters moved.
    pub parameters: usize,
    /// Bytes of f32 values moved.
    pub bytes: usize,
    /// gRPC push, end to end.
    pub grpc_push: Summary,
    /// gRPC pull, end to end.
    pub grpc_pull: Summary,
    /// Raw TCP, client to server.
    pub tcp_push: Summary,
    /// Raw TCP, server to client.
    pub tcp_pull: Summary,
    /// Client: encoding the gradient (summed over its pieces).
    pub encode: Summary,
    /// Server: decoding the gradient (summed over its pieces; its mean over the run's pushes).
    pub server_decode: f64,
    /// Server: encoding the parameters (its mean over the run's versions).
    pub server_encode: f64,
    /// Client: decoding the parameters (summed over their pieces).
    pub decode: Summary,
    /// One step's exchange through Downpour (gradient out, parameters back), the server's
    /// apply excluded; absent in results recorded before it was measured.
    #[serde(default)]
    pub exchange: Option<Summary>,
    /// A raw TCP round trip of the same bytes both ways.
    #[serde(default)]
    pub tcp_round_trip: Option<Summary>,
}

/// Gigabytes per second for `bytes` in `seconds`.
#[must_use]
pub fn gb_per_second(bytes: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        0.0
    }
}

impl TransportResult {
    /// The exchange's cost over the raw round trip's (medians): 1 is the wire's floor.
    #[must_use]
    pub fn exchange_cost_ratio(&self) -> Option<f64> {
        Some(self.exchange?.median / self.tcp_round_trip?.median)
    }

    /// gRPC push throughput over raw TCP's, end to end (medians).
    #[must_use]
    pub fn push_ratio(&self) -> f64 {
        self.tcp_push.median / self.grpc_push.median
    }

    /// gRPC pull throughput over raw TCP's, end to end (medians).
    #[must_use]
    pub fn pull_ratio(&self) -> f64 {
        self.tcp_pull.median / self.grpc_pull.median
    }

    /// gRPC push seconds without the encoding on either side.
    #[must_use]
    pub fn grpc_push_transfer(&self) -> f64 {
        (self.grpc_push.median - self.encode.median - self.server_decode).max(f64::MIN_POSITIVE)
    }

    /// gRPC pull seconds without the encoding on either side.
    #[must_use]
    pub fn grpc_pull_transfer(&self) -> f64 {
        (self.grpc_pull.median - self.decode.median - self.server_encode).max(f64::MIN_POSITIVE)
    }

    /// gRPC push throughput over raw TCP's, transfer only.
    #[must_use]
    pub fn push_transfer_ratio(&self) -> f64 {
        self.tcp_push.median / self.grpc_push_transfer()
    }

    /// gRPC pull throughput over raw TCP's, transfer only.
    #[must_use]
    pub fn pull_transfer_ratio(&self) -> f64 {
        self.tcp_pull.median / self.grpc_pull_transfer()
    }
}

/// The exchange cost for a job of `parameters` values, from the sizes measured: linear in
/// log–log between the two sizes around it; the nearest size's own cost a factor of 4 or
/// less beyond the smallest or largest (small exchanges cost their latency, whatever the
/// size); `None` farther out or without exchange measurements.
#[must_use]
pub fn exchange_at(parameters: usize, results: &[TransportResult]) -> Option<f64> {
    let mut points: Vec<(f64, f64)> = results
        .iter()
        .filter_map(|r| Some((r.parameters as f64, r.exchange?.median)))
        .filter(|&(p, s)| p > 0.0 && s > 0.0)
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let x = parameters as f64;
    let (&first, &last) = (points.first()?, points.last()?);
    if x <= first.0 {
        return (x * 4.0 >= first.0).then_some(first.1);
    }
    if x >= last.0 {
        return (x <= last.0 * 4.0).then_some(last.1);
    }
    let i = points.iter().position(|p| p.0 >= x)?;
    let ((x0, y0), (x1, y1)) = (points[i - 1], points[i]);
    let t = (x.ln() - x0.ln()) / (x1.ln() - x0.ln());
    Some((y0.ln() + t * (y1.ln() - y0.ln())).exp())
}

/// A model shape with about `parameters` values: `features → hidden → 10`.
#[must_use]
pub fn mlp_for(parameters: usize) -> (usize, usize) {
    let features = ((parameters as f64).sqrt() as usize).clamp(2, 3000);
    let hidden = ((parameters.saturating_sub(10)) as f64 / (features + 11) as f64).round() as usize;
    (features, hidden.max(1))
}

fn job_toml(parameters: usize, transfers: usize) -> String {
    let (features, hidden) = mlp_for(parameters);
    // Async with one worker: every pull is served at once; SGD with a tiny rate keeps
    // the server's apply short (and it is subtracted anyway).
    format!(
        "[model]\nkind = \"mlp\"\nhidden = [{hidden}]\n\n\
         [data]\nkind = \"synthetic_classification\"\nsamples = 20\nfeatures = {features}\nclasses = 10\n\n\
         [training]\nworkers = 1\nbatch_size = 32\nepochs = {}\n\n\
         [optimizer]\nname = \"sgd\"\nlr = 1e-6\n\n\
         [consistency]\nmode = \"async\"\n",
        2 * transfers + 4
    )
}

/// Runs the benchmark for each size in `sizes`, `repeats` transfers each (after one warm-up).
/// The server's job file and log go to `dir`.
///
/// # Errors
/// [`TransportError`] when the server, a socket or a call fails.
pub async fn run(
    sizes: &[usize],
    repeats: usize,
    dir: &Path,
    interrupt: &CancellationToken,
) -> Result<Vec<TransportResult>, TransportError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut results = Vec::new();
    for &parameters in sizes {
        results.push(one_size(parameters, repeats, dir, interrupt).await?);
    }
    Ok(results)
}

async fn one_size(
    parameters: usize,
    repeats: usize,
    dir: &Path,
    interrupt: &CancellationToken,
) -> Result<TransportResult, TransportError> {
    let job = dir.join(format!("transport-{parameters}.toml"));
    std::fs::write(&job, job_toml(parameters, repeats))
        .map_err(io(format!("writing {}", job.display())))?;
    let port_file = dir.join(format!("transport-{parameters}.addr"));
    let _ = std::fs::remove_file(&port_file);
    let exe = std::env::current_exe().map_err(io("locating the downpour binary"))?;
    let mut server = ChildProcess::spawn(
        "transport server",
        &exe,
        &[
            "server".into(),
            "--job".into(),
            job.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--port-file".into(),
            port_file.display().to_string(),
        ],
        // An open server on loopback: none of the caller's tokens or TLS settings apply.
        &downpour_launch::credentials::SECURITY_ENV.map(|name| (name, None)),
        dir.join(format!("transport-{parameters}.log")),
    )
    .map_err(io("starting the transport server"))?;
    let result = async {
        let address = wait_for_address(&mut server, &port_file, interrupt).await?;
        measure(&address, repeats).await
    }
    .await;
    server.stop(Duration::from_secs(5)).await;
    result
}

/// What one exchange cost.
#[derive(Debug, Clone, Copy)]
pub struct StepCost {
    /// The version of the parameters that came back.
    pub version: u64,
    /// The exchange's wall clock minus the server's apply.
    pub wire: Duration,
    /// Where its time went, as the client saw it.
    pub timing: ExchangeTiming,
}

/// One step's exchange through Downpour: `gradient` out with `push`'s facts, the
/// parameters for the next step back, in one round trip over the worker's long-lived
/// stream (the worker's own call).
///
/// # Errors
/// [`ClientError`] when the call fails.
pub async fn exchange(
    stream: &mut ExchangeStream,
    push: &Push,
    gradient: &ParamSet,
) -> Result<StepCost, ClientError> {
    let started = Instant::now();
    let (receipt, pulled, timing) = stream
        .exchange(push, gradient, None, Some(push.step + 1))
        .await?;
    let wall = started.elapsed();
    Ok(StepCost {
        version: pulled.map_or(receipt.version, |p| p.version),
        wire: wall.saturating_sub(timing.applied.min(timing.call)),
        timing,
    })
}

/// Seconds of each kind, per transfer.
#[derive(Debug, Default)]
struct Samples {
    exchange: Vec<f64>,
    tcp_round_trip: Vec<f64>,
    grpc_push: Vec<f64>,
    grpc_pull: Vec<f64>,
    tcp_push: Vec<f64>,
    tcp_pull: Vec<f64>,
    encode: Vec<f64>,
    decode: Vec<f64>,
}

async fn measure(address: &str, repeats: usize) -> Result<TransportResult, TransportError> {
    let mut client = ServerClient::connect(address).await?;
    let assignment = client.register("transport-bench", None).await?.assignment;
    let id = assignment.worker_id;
    let (first, _) = client.pull_timed(id, 0, false).await?;
    let parameters = first.params.num_values();
    let bytes = 4 * parameters;
    let mut gradient = first.params.zeros_like();
    gradient.tensors_mut().for_each(|t| t.data_mut().fill(1e-3));
    drop(first);

    let (raw_address, raw_thread) = start_raw_server(bytes)?;
    let mut raw = RawClient::connect(raw_address, bytes)?;
    let mut samples = Samples::default();
    let mut version = 0;
    let mut stream = client.open_exchange().await?;
    for round in 0..=repeats as u64 {
        let step = 2 * round;
        let push = Push {
            worker: id,
            step,
            base_version: version,
            loss: 0.0,
            samples: 1,
        };
        // The gradient alone (no parameters back), then a pull: push and pull timed apart.
        let (_, _, receipt) = stream.exchange(&push, &gradient, None, None).await?;
        let (pulled, timing) = client.pull_timed(id, step + 1, false).await?;
        version = pulled.version;
        drop(pulled);
        // Then the next step's exchange (gradient out, parameters back) and the raw round
        // trip, which goes first alternating, so neither always runs on a warmer machine.
        let fused = Push {
            step: step + 1,
            base_version: version,
            ..push
        };
        let raw_first = round % 2 == 1;
        let mut raw_times = None;
        if raw_first {
            let (back, times) = raw_round(raw).await?;
            raw = back;
            raw_times = Some(times);
        }
        let e = exchange(&mut stream, &fused, &gradient).await?;
        version = e.version;
        let (tcp_round_trip, tcp_push, tcp_pull) = match raw_times {
            Some(times) => times,
            None => {
                let (back, times) = raw_round(raw).await?;
                raw = back;
                times
            }
        };
        if round == 0 {
            continue; // warm-up
        }
        samples.exchange.push(e.wire.as_secs_f64());
        samples.tcp_round_trip.push(tcp_round_trip.as_secs_f64());
        let applied = receipt.applied.min(receipt.call);
        samples
            .grpc_push
            .push((receipt.call - applied).as_secs_f64());
        samples
            .grpc_pull
            .push((timing.call + timing.decode).as_secs_f64());
        samples.encode.push(receipt.encode.as_secs_f64());
        samples.decode.push(timing.decode.as_secs_f64());
        samples.tcp_push.push(tcp_push.as_secs_f64());
        samples.tcp_pull.push(tcp_pull.as_secs_f64());
    }
    raw.close();
    raw_thread
        .join()
        .map_err(|_| TransportError::Thread("panicked".into()))?
        .map_err(io("raw TCP server"))?;
    let status = client.status().await?;
    let server = status.timing.server;
    let _ = client.leave(id).await;
    let summary = |v: &[f64]| Summary::of(v).expect("at least one transfer");
    Ok(TransportResult {
        parameters,
        bytes,
        grpc_push: summary(&samples.grpc_push),
        grpc_pull: summary(&samples.grpc_pull),
        tcp_push: summary(&samples.tcp_push),
        tcp_pull: summary(&samples.tcp_pull),
        encode: summary(&samples.encode),
        decode: summary(&samples.decode),
        server_decode: mean(server.decode, server.decodes),
        server_encode: mean(server.encode, server.encodes),
        exchange: Summary::of(&samples.exchange),
        tcp_round_trip: Summary::of(&samples.tcp_round_trip),
    })
}

/// One round trip, one push and one pull over raw TCP, on a blocking thread.
async fn raw_round(
    mut raw: RawClient,
) -> Result<(RawClient, (Duration, Duration, Duration)), TransportError> {
    let (raw, round_trip, push, pull) = tokio::task::spawn_blocking(move || {
        let round_trip = raw.round_trip();
        let push = raw.push();
        let pull = raw.pull();
        (raw, round_trip, push, pull)
    })
    .await
    .map_err(|e| TransportError::Thread(e.to_string()))?;
    Ok((
        raw,
        (
            round_trip.map_err(io("raw TCP round trip"))?,
            push.map_err(io("raw TCP push"))?,
            pull.map_err(io("raw TCP pull"))?,
        ),
    ))
}

fn mean(total: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

/// The raw TCP peer: for `P`, reads a length-prefixed payload and acknowledges with one
/// byte; for `G`, writes a length-prefixed payload of `bytes` bytes; for `X`, reads a
/// length-prefixed payload and answers with its own; stops at end of stream.
fn start_raw_server(
    bytes: usize,
) -> Result<(SocketAddr, std::thread::JoinHandle<std::io::Result<()>>), TransportError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding the raw TCP server"))?;
    let address = listener
        .local_addr()
        .map_err(io("reading the raw TCP address"))?;
    let handle = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let payload = vec![0x5a_u8; bytes];
        let mut received = Vec::new();
        let mut op = [0u8; 1];
        loop {
            if stream.read(&mut op)? == 0 {
                return Ok(());
            }
            match op[0] {
                b'P' => {
                    let mut len = [0u8; 8];
                    stream.read_exact(&mut len)?;
                    received.resize(u64::from_le_bytes(len) as usize, 0);
                    stream.read_exact(&mut received)?;
                    std::hint::black_box(&received);
                    stream.write_all(&[1])?;
                }
                b'G' => {
                    stream.write_all(&(payload.len() as u64).to_le_bytes())?;
                    stream.write_all(&payload)?;
                }
                b'X' => {
                    let mut len = [0u8; 8];
                    stream.read_exact(&mut len)?;
                    received.resize(u64::from_le_bytes(len) as usize, 0);
                    stream.read_exact(&mut received)?;
                    std::hint::black_box(&received);
                    stream.write_all(&(payload.len() as u64).to_le_bytes())?;
                    stream.write_all(&payload)?;
                }
                other => {
                    return Err(std::io::Error::other(format!("unknown op {other}")));
                }
            }
        }
    });
    Ok((address, handle))
}

/// The raw TCP client.
#[derive(Debug)]
struct RawClient {
    /// The connection.
    stream: TcpStream,
    /// What it pushes.
    payload: Vec<u8>,
    /// Where pulls land, reused.
    received: Vec<u8>,
}

impl RawClient {
    fn connect(address: SocketAddr, bytes: usize) -> Result<Self, TransportError> {
        let stream = TcpStream::connect(address).map_err(io("connecting to the raw TCP server"))?;
        stream
            .set_nodelay(true)
            .map_err(io("setting TCP_NODELAY"))?;
        Ok(Self {
            stream,
            payload: vec![0xa5_u8; bytes],
            received: Vec::new(),
        })
    }

    /// Sends the payload and waits for the acknowledgement.
    fn push(&mut self) -> std::io::Result<Duration> {
        let started = Instant::now();
        self.stream.write_all(b"P")?;
        self.stream
            .write_all(&(self.payload.len() as u64).to_le_bytes())?;
        self.stream.write_all(&self.payload)?;
        let mut ack = [0u8; 1];
        self.stream.read_exact(&mut ack)?;
        Ok(started.elapsed())
    }

    /// Sends the payload and reads the peer's back into the reused buffer: the floor of
    /// one exchange.
    fn round_trip(&mut self) -> std::io::Result<Duration> {
        let started = Instant::now();
        self.stream.write_all(b"X")?;
        self.stream
            .write_all(&(self.payload.len() as u64).to_le_bytes())?;
        self.stream.write_all(&self.payload)?;
        let mut len = [0u8; 8];
        self.stream.read_exact(&mut len)?;
        self.received.resize(u64::from_le_bytes(len) as usize, 0);
        self.stream.read_exact(&mut self.received)?;
        std::hint::black_box(&self.received);
        Ok(started.elapsed())
    }

    /// Asks for the payload and reads it into the reused buffer.
    fn pull(&mut self) -> std::io::Result<Duration> {
        let started = Instant::now();
        self.stream.write_all(b"G")?;
        let mut len = [0u8; 8];
        self.stream.read_exact(&mut len)?;
        self.received.resize(u64::from_le_bytes(len) as usize, 0);
        self.stream.read_exact(&mut self.received)?;
        std::hint::black_box(&self.received);
        Ok(started.elapsed())
    }

    fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_shapes_hit_the_parameter_counts() {
        for (target, tolerance) in [(1_000_000, 0.01), (10_000_000, 0.01), (1000, 0.05)] {
            let (f, h) = mlp_for(target);
            let p = f * h + h + 10 * h + 10;
            let error = (p as f64 - target as f64).abs() / target as f64;
            assert!(error < tolerance, "{target}: {f}x{h} gives {p}");
        }
        assert_eq!(mlp_for(1_000_000), (1000, 989));
    }

    #[test]
    fn raw_tcp_moves_the_bytes_both_ways() {
        let (address, thread) = start_raw_server(1 << 16).unwrap();
        let mut client = RawClient::connect(address, 1 << 16).unwrap();
        assert!(client.push().unwrap() > Duration::ZERO);
        assert!(client.pull().unwrap() > Duration::ZERO);
        assert!(client.round_trip().unwrap() > Duration::ZERO);
        assert_eq!(client.received.len(), 1 << 16, "the peer's bytes came back");
        assert!(client.received.iter().all(|&b| b == 0x5a));
        client.close();
        thread.join().unwrap().unwrap();
    }

    #[test]
    fn the_exchange_cost_is_interpolated_between_the_sizes_measured() {
        let at = |parameters: usize, ms: f64| TransportResult {
            parameters,
            exchange: Some(Summary::of(&[ms / 1e3]).unwrap()),
            ..result()
        };
        let results = [at(1_000_000, 4.0), at(10_000, 0.2), at(100_000, 0.8)];
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(exchange_at(100_000, &results), 0.0008));
        // Halfway in log between 100k and 1M: the geometric mean of 0.8 and 4 ms.
        assert!(close(
            exchange_at(316_228, &results),
            (0.0008f64 * 0.004).sqrt()
        ));
        assert!(
            close(exchange_at(3_000, &results), 0.0002),
            "latency-bound below"
        );
        assert!(close(exchange_at(4_000_000, &results), 0.004));
        assert_eq!(exchange_at(2_000, &results), None, "too far below");
        assert_eq!(exchange_at(5_000_000, &results), None, "too far above");
        assert_eq!(
            exchange_at(100_000, &[result()]),
            None,
            "no exchange measured"
        );
    }

    fn result() -> TransportResult {
        let s = |x: f64| Summary::of(&[x]).unwrap();
        TransportResult {
            parameters: 1_000_000,
            bytes: 4_000_000,
            grpc_push: s(0.004),
            grpc_pull: s(0.008),
            tcp_push: s(0.002),
            tcp_pull: s(0.002),
            encode: s(0.001),
            server_decode: 0.001,
            server_encode: 0.002,
            decode: s(0.002),
            exchange: None,
            tcp_round_trip: None,
        }
    }

    #[test]
    fn ratios_compare_medians() {
        let s = |x: f64| Summary::of(&[x]).unwrap();
        let r = TransportResult {
            exchange: Some(s(0.006)),
            tcp_round_trip: Some(s(0.004)),
            ..result()
        };
        assert!((r.exchange_cost_ratio().unwrap() - 1.5).abs() < 1e-12);
        assert!((r.push_ratio() - 0.5).abs() < 1e-12);
        assert!((r.pull_ratio() - 0.25).abs() < 1e-12);
        assert!((r.grpc_push_transfer() - 0.002).abs() < 1e-12);
        assert!((r.pull_transfer_ratio() - 0.5).abs() < 1e-12);
        assert!((gb_per_second(r.bytes, r.tcp_push.median) - 2.0).abs() < 1e-12);
    }
}
