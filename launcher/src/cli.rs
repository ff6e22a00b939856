//! The launcher's command line: `downpour train | server | worker | health | export |
//! evaluate`, and the job flags they share. The binary adds `bench` (crate
//! `downpour-bench`) beside them.
//!
//! A job is read from `--job FILE` (TOML, see the README) when given, then any flag
//! below overrides the matching field. The result is validated once, before anything starts.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use downpour_core::BatchSize;
use downpour_core::data::{DatasetKind, TaskKind};
use downpour_core::layer_spec::LayerSpec;
use downpour_core::model_spec::{Activation, ModelKind};
use downpour_core::plan::FullBatch;
use downpour_server::job::{ConsistencyMode, StalenessPolicy};
use downpour_server::optim::{OptimizerConfig, OptimizerOverrides};
use downpour_server::{JobError, JobSpec};

use crate::credentials::{ClientSecurityArgs, ServerSecurityArgs};

/// The launcher's subcommands (the binary flattens them into its own).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train on this machine: one server and N worker processes on loopback, with progress.
    Train(TrainArgs),
    /// Run a parameter server for a job.
    Server(ServerArgs),
    /// Run one worker against a server; it receives the job when it registers.
    Worker(WorkerArgs),
    /// Exit 0 if a server answers a status request, non-zero otherwise (container health checks).
    Health(HealthArgs),
    /// Save a running server's current parameters as safetensors (all shards, assembled).
    Export(ExportArgs),
    /// Print the test metrics of saved weights on the job's split (`--split-out` writes the split).
    Evaluate(EvaluateArgs),
    /// Make a CA, a server certificate and a client certificate for TLS (PEM files).
    Certs(CertsArgs),
}

/// `downpour certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.pem, ca.key, server.pem, server.key, client.pem, client.key to.
    #[arg(long)]
    pub out: PathBuf,
    /// Names and IP addresses the servers are reached at, comma-separated (the server
    /// certificate is valid for each), e.g. `server,localhost,127.0.0.1`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub hosts: Vec<String>,
}

/// `downpour evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The job (the run directory's `job.toml` reproduces the run), with any overrides.
    #[command(flatten)]
    pub job: JobArgs,
    /// The trained weights (safetensors, e.g. RUN_DIR/weights.safetensors).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Also write the split's sample indices (0-based, file order) to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub split_out: Option<PathBuf>,
}

/// `downpour export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Every server shard's address, shard 0 first, comma-separated (one for a single server).
    #[arg(long, value_delimiter = ',', required = true, env = "DOWNPOUR_SERVER")]
    pub server: Vec<String>,
    /// The safetensors file to write.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Token and TLS.
    #[command(flatten)]
    pub security: ClientSecurityArgs,
}

/// `downpour train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// Where to write the JSON run report [default: RUN_DIR/report.json].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Directory for the job file, logs, report and weights [default: runs/<timestamp>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Parameter-server shards: the model's parameters are split over this many server processes.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// Slow the worker process named worker-K down by MS milliseconds per step, as `K:MS` (tests and benchmarks).
    #[arg(long, value_name = "K:MS")]
    pub slow_worker: Vec<String>,
    /// Tests and demonstrations only: make worker-K spoil every gradient it pushes, as
    /// `K:garbage` (uniform noise in ±100, accepted by the server's bounds: see
    /// `robustness.aggregation`) or `K:huge` (every value 1e20: refused).
    #[arg(long, value_name = "K:KIND")]
    pub sabotage_worker: Vec<String>,
    /// Simulated compute (benchmarks): every worker sleeps MS milliseconds per step instead
    /// of computing its gradient, and pushes zeros.
    #[arg(long, value_name = "MS")]
    pub simulate_compute_ms: Option<u64>,
    /// Print no progress bar, only the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Also write TensorBoard event files (scalars: losses, test metrics, throughput) here.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Reuse a run directory that is not empty (its files are overwritten).
    #[arg(long)]
    pub force: bool,
    /// Continue the run in RUN_DIR from its checkpoints: its `job.toml` is the job (flags
    /// may still change the checkpoint cadence), its servers resume from the newest valid
    /// checkpoint under RUN_DIR/checkpoints, and its files are brought up to date.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "run_dir")]
    pub resume: Option<PathBuf>,
    /// Serve Prometheus metrics on 127.0.0.1: server shard K on port P+K, worker I on
    /// P+SERVERS+I (the URLs are printed at start); see docs/metrics.md.
    #[arg(long, value_name = "P")]
    pub metrics_port_base: Option<u16>,
    /// Run everything over TLS: make a CA and certificates in RUN_DIR/certs first. (A
    /// fresh random token always protects the run's servers.)
    #[arg(long)]
    pub tls: bool,
}

/// `downpour server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The job.
    #[command(flatten)]
    pub job: JobArgs,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50051", env = "DOWNPOUR_LISTEN")]
    pub listen: String,
    /// Write the bound address (`host:port`) to this file once listening.
    #[arg(long)]
    pub port_file: Option<PathBuf>,
    /// Stop once the job has finished and every worker has left.
    #[arg(long)]
    pub exit_when_done: bool,
    /// This server's shard of the model, `0..servers`. Shard 0 is the one workers connect to.
    #[arg(long, default_value_t = 0, env = "DOWNPOUR_SHARD")]
    pub shard: usize,
    /// Parameter-server shards in the job.
    #[arg(long, default_value_t = 1, env = "DOWNPOUR_SERVERS")]
    pub servers: usize,
    /// Write checkpoints to this directory, and resume from the newest valid one in it.
    #[arg(long, env = "DOWNPOUR_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Resume from this checkpoint file instead of the newest in the directory.
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// When the job has finished, write `weights.safetensors`, `report.json`, `metrics.csv`
    /// and `job.toml` here (a single server only).
    #[arg(long, value_name = "DIR", env = "DOWNPOUR_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,
    /// Shard 0 only: the addresses of shards 1.. as workers reach them, comma-separated.
    #[arg(long, value_delimiter = ',', env = "DOWNPOUR_SHARD_ADDRESSES")]
    pub shard_addresses: Vec<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. `0.0.0.0:9100`); see docs/metrics.md.
    #[arg(long, value_name = "ADDR", env = "DOWNPOUR_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Tokens, session key and TLS.
    #[command(flatten)]
    pub security: ServerSecurityArgs,
}

impl ServerArgs {
    /// Checks the shard flags against each other and the job.
    ///
    /// # Errors
    /// A message naming the flag and values.
    pub fn check_shards(&self, spec: &JobSpec) -> Result<(), JobError> {
        let bad = |field, reason| Err(JobError::Invalid { field, reason });
        if self.servers == 0 {
            return bad("--servers", "must be at least 1, got 0".into());
        }
        if self.shard >= self.servers {
            return bad(
                "--shard",
                format!(
                    "must be below --servers {}, got {}",
                    self.servers, self.shard
                ),
            );
        }
        // Shard 0 lists shards 1..; the other shards need no list but may be given the same
        // one (ignored), so that one pod template or environment serves every shard.
        let listed = self.shard_addresses.len();
        let fits = listed == self.servers - 1 || (self.shard != 0 && listed == 0);
        if !fits {
            let expected = if self.shard == 0 {
                format!("{}", self.servers - 1)
            } else {
                format!("0 or {}", self.servers - 1)
            };
            return bad(
                "--shard-addresses",
                format!(
                    "shard {} of {} needs {expected} address(es) (shard 0 lists shards 1..), got {listed}",
                    self.shard, self.servers,
                ),
            );
        }
        check_clipping(spec, self.servers)
    }
}

/// Global gradient clipping needs the whole gradient in one place.
///
/// # Errors
/// [`JobError::Invalid`] when clipping is asked for with several server shards.
pub fn check_clipping(spec: &JobSpec, servers: usize) -> Result<(), JobError> {
    if servers > 1
        && let Some(c) = spec.training.clip_grad_norm
    {
        return Err(JobError::Invalid {
            field: "training.clip_grad_norm",
            reason: format!(
                "global-norm clipping ({c}) needs the whole gradient on one server; it is not supported with {servers} server shards"
            ),
        });
    }
    Ok(())
}

/// `downpour worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The server's address, `host:port`.
    #[arg(long, env = "DOWNPOUR_SERVER")]
    pub server: String,
    /// A label for logs and status [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds to keep trying to reach the server at start-up.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout: u64,
    /// Sleep this many milliseconds per step, to emulate a slow worker (tests and benchmarks).
    #[arg(long, default_value_t = 0)]
    pub step_delay_ms: u64,
    /// Simulated compute (benchmarks): block MS milliseconds per step instead of computing
    /// the gradient, and push zeros.
    #[arg(long, value_name = "MS")]
    pub simulate_compute_ms: Option<u64>,
    /// Tests and demonstrations only: spoil every gradient before pushing it: `garbage`
    /// (uniform noise in ±100) or `huge` (every value 1e20).
    #[arg(long, value_name = "KIND", value_parser = downpour_worker::sabotage::Sabotage::parse)]
    pub sabotage: Option<downpour_worker::sabotage::Sabotage>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. `0.0.0.0:9100`); see docs/metrics.md.
    #[arg(long, value_name = "ADDR", env = "DOWNPOUR_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Token and TLS.
    #[command(flatten)]
    pub security: ClientSecurityArgs,
}

/// `downpour health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server's address, `host:port`.
    #[arg(long, env = "DOWNPOUR_SERVER")]
    pub server: String,
    /// Seconds to wait for the connection and the answer together.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Token (the job's or the read-only one) and TLS.
    #[command(flatten)]
    pub security: ClientSecurityArgs,
}

/// The job file and the flags that override its common fields.
#[derive(Debug, Clone, Default, Args)]
pub struct JobArgs {
    /// Job file (TOML). Without one, the built-in default job: an MLP on the UCI digits with Adam.
    #[arg(long, value_name = "FILE", env = "DOWNPOUR_JOB")]
    pub job: Option<PathBuf>,
    /// Number of workers (training.workers).
    #[arg(long, short = 'w', env = "DOWNPOUR_WORKERS")]
    pub workers: Option<usize>,
    /// Consistency mode: sync, ssp or async (consistency.mode).
    #[arg(long, value_parser = parse_mode, env = "DOWNPOUR_MODE")]
    pub mode: Option<ConsistencyMode>,
    /// SSP's staleness bound in steps (consistency.staleness).
    #[arg(long, env = "DOWNPOUR_STALENESS")]
    pub staleness: Option<u64>,
    /// Stale-gradient policy for async and ssp: accept, drop or damp (consistency.policy).
    #[arg(long, value_parser = parse_policy)]
    pub policy: Option<StalenessPolicy>,
    /// The drop policy's limit, in versions (consistency.max_staleness).
    #[arg(long)]
    pub max_staleness: Option<u64>,
    /// Async and ssp: push and pull behind the next step's compute, at the cost of one
    /// step of staleness (consistency.prefetch).
    #[arg(long, env = "DOWNPOUR_PREFETCH")]
    pub prefetch: bool,
    /// Model kind: linear_regression, logistic_regression, softmax_regression, mlp, cnn
    /// (the convolutional preset, for image data) or sequential (model.kind).
    #[arg(long, value_parser = parse_model)]
    pub model: Option<ModelKind>,
    /// The layers of a sequential model, comma-separated, e.g.
    /// "conv2d 8 3, relu, max_pool2d 2, flatten, dense 10" (model.layers; see docs/models.md).
    #[arg(long, value_delimiter = ',', value_parser = parse_layer)]
    pub layers: Option<Vec<LayerSpec>>,
    /// Hidden layer widths, comma-separated, e.g. 128,64 (model.hidden).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Hidden activation: relu, sigmoid or tanh (model.activation).
    #[arg(long, value_parser = parse_activation)]
    pub activation: Option<Activation>,
    /// Dataset: xor, synthetic_linear, synthetic_classification, digits, mnist, csv, libsvm
    /// or idx (data.kind).
    #[arg(long, value_parser = parse_dataset)]
    pub dataset: Option<DatasetKind>,
    /// Data file for csv or libsvm (data.path), relative to the current directory.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// How csv and libsvm labels are read: classification or regression (data.task).
    /// A linear_regression model implies regression.
    #[arg(long, value_parser = parse_task)]
    pub task: Option<TaskKind>,
    /// The csv label column: a header name or a 0-based index (data.label_column).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Fraction of samples held out for testing, in [0, 1) (data.test_fraction).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Standardise every feature with the training split's mean and standard deviation
    /// (data.standardize).
    #[arg(long)]
    pub standardize: bool,
    /// Optimizer: sgd, adam, adamw, adagrad, adadelta or rmsprop, with its defaults (optimizer.name).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate (optimizer.lr).
    #[arg(long)]
    pub lr: Option<f32>,
    /// Momentum, for sgd and rmsprop (optimizer.momentum).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (optimizer.weight_decay).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Samples per gradient, or `full` for the whole shard (training.batch_size).
    #[arg(long, value_parser = parse_batch)]
    pub batch_size: Option<BatchSize>,
    /// Samples per step for the whole job, kept however many workers are active; replaces
    /// --batch-size (training.global_batch).
    #[arg(long)]
    pub global_batch: Option<usize>,
    /// Passes over the training set (training.epochs).
    #[arg(long, env = "DOWNPOUR_EPOCHS")]
    pub epochs: Option<usize>,
    /// Seed (training.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate every this many steps; 0 = every epoch (training.eval_every).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Start training once this many workers have registered (training.min_workers).
    #[arg(long, env = "DOWNPOUR_MIN_WORKERS")]
    pub min_workers: Option<usize>,
    /// Seconds without a heartbeat before a worker is declared dead (fault_tolerance.heartbeat_timeout).
    #[arg(long, env = "DOWNPOUR_HEARTBEAT_TIMEOUT")]
    pub heartbeat_timeout: Option<f64>,
    /// Write a checkpoint every this many updates (fault_tolerance.checkpoint_every_steps).
    #[arg(long, env = "DOWNPOUR_CHECKPOINT_EVERY_STEPS")]
    pub checkpoint_every_steps: Option<u64>,
    /// Write a checkpoint every this many seconds (fault_tolerance.checkpoint_every_seconds).
    #[arg(long)]
    pub checkpoint_every_seconds: Option<f64>,
}

impl JobArgs {
    /// Reads the job file (if any) and applies the flags.
    ///
    /// # Errors
    /// [`JobError`] for an unreadable or malformed file, or a flag that does not apply.
    pub fn to_spec(&self) -> Result<JobSpec, JobError> {
        let spec = match &self.job {
            Some(path) => JobSpec::from_file(path)?,
            None => JobSpec::default(),
        };
        self.apply_to(spec)
    }

    /// Applies the flags (not `--job`) to `spec`: a job file's, the default job, or a preset.
    ///
    /// # Errors
    /// [`JobError`] for a flag that does not apply.
    pub fn apply_to(&self, mut spec: JobSpec) -> Result<JobSpec, JobError> {
        let t = &mut spec.training;
        if let Some(n) = self.workers {
            t.workers = n;
        }
        if let Some(b) = self.batch_size {
            t.batch_size = b;
        }
        if self.global_batch.is_some() {
            t.global_batch = self.global_batch;
        }
        if let Some(e) = self.epochs {
            t.epochs = e;
        }
        if let Some(s) = self.seed {
            t.seed = s;
        }
        if let Some(e) = self.eval_every {
            t.eval_every = e;
        }
        if self.min_workers.is_some() {
            t.min_workers = self.min_workers;
        }
        let f = &mut spec.fault_tolerance;
        if let Some(h) = self.heartbeat_timeout {
            f.heartbeat_timeout = h;
        }
        if self.checkpoint_every_steps.is_some() {
            f.checkpoint_every_steps = self.checkpoint_every_steps;
        }
        if self.checkpoint_every_seconds.is_some() {
            f.checkpoint_every_seconds = self.checkpoint_every_seconds;
        }
        let c = &mut spec.consistency;
        if let Some(m) = self.mode {
            c.mode = m;
        }
        if self.staleness.is_some() {
            c.staleness = self.staleness;
        }
        if let Some(p) = self.policy {
            c.policy = p;
        }
        if self.max_staleness.is_some() {
            c.max_staleness = self.max_staleness;
        }
        if self.prefetch {
            c.prefetch = true;
        }
        if let Some(kind) = self.model {
            spec.model.kind = kind;
            if kind != ModelKind::Mlp && self.hidden.is_none() {
                spec.model.hidden.clear();
            }
        }
        if let Some(h) = &self.hidden {
            spec.model.hidden.clone_from(h);
        }
        if let Some(layers) = &self.layers {
            spec.model.kind = ModelKind::Sequential;
            spec.model.layers.clone_from(layers);
            if self.hidden.is_none() {
                spec.model.hidden.clear();
            }
        }
        if let Some(a) = self.activation {
            spec.model.activation = a;
        }
        if let Some(kind) = self.dataset {
            spec.data = downpour_core::DataSpec::builtin(kind);
        }
        if let Some(p) = &self.data_path {
            // Absolute, so the job file the launcher writes means the same from its folder.
            spec.data.path = Some(std::path::absolute(p).unwrap_or_else(|_| p.clone()));
        }
        if self.task.is_some() {
            spec.data.task = self.task;
        }
        if self.label_column.is_some() {
            spec.data.label_column.clone_from(&self.label_column);
        }
        if let Some(f) = self.test_fraction {
            spec.data.test_fraction = f;
        }
        if self.standardize {
            spec.data.standardize = true;
        }
        if let Some(name) = &self.optimizer {
            spec.optimizer = OptimizerConfig::with_defaults(name)?;
        }
        spec.optimizer.apply_overrides(&OptimizerOverrides {
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        })?;
        Ok(spec)
    }
}

/// Parses a consistency mode (`sync`, `ssp`, `async`), for clap.
///
/// # Errors
/// The choices and the value given.
pub fn parse_mode(s: &str) -> Result<ConsistencyMode, String> {
    parse_named(s, "sync, ssp, async")
}

fn parse_policy(s: &str) -> Result<StalenessPolicy, String> {
    parse_named(s, "accept, drop, damp")
}

fn parse_batch(s: &str) -> Result<BatchSize, String> {
    if s == "full" {
        return Ok(BatchSize::Full(FullBatch::Full));
    }
    s.parse::<usize>()
        .map(BatchSize::Samples)
        .map_err(|_| format!("expected a number of samples or `full`, got {s}"))
}

/// Parses a snake_case enum value through its serde name.
fn parse_named<T: serde::de::DeserializeOwned>(s: &str, expected: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("expected one of {expected}, got {s}"))
}

fn parse_model(s: &str) -> Result<ModelKind, String> {
    parse_named(
        s,
        "linear_regression, logistic_regression, softmax_regression, mlp, cnn, sequential",
    )
}

fn parse_layer(s: &str) -> Result<LayerSpec, String> {
    s.trim().parse()
}

fn parse_activation(s: &str) -> Result<Activation, String> {
    parse_named(s, "relu, sigmoid, tanh")
}

fn parse_dataset(s: &str) -> Result<DatasetKind, String> {
    parse_named(
        s,
        "xor, synthetic_linear, synthetic_classification, digits, mnist, csv, libsvm, idx",
    )
}

fn parse_task(s: &str) -> Result<TaskKind, String> {
    parse_named(s, "classification, regression")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The binary's shape: the launcher's subcommands at the top.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("downpour").chain(args.iter().copied())).unwrap()
    }

    fn shard_check(args: &[&str]) -> Result<(), String> {
        let Command::Server(s) = parse(&[&["server"], args].concat()).command else {
            panic!("not server")
        };
        let spec = s.job.to_spec().unwrap();
        s.check_shards(&spec).map_err(|e| e.to_string())
    }

    #[test]
    fn every_shard_may_be_given_the_same_address_list_but_shard_0_needs_it() {
        let list = "--shard-addresses=a:1,b:1";
        assert_eq!(shard_check(&["--servers=3", "--shard=0", list]), Ok(()));
        assert_eq!(shard_check(&["--servers=3", "--shard=2", list]), Ok(()));
        assert_eq!(shard_check(&["--servers=3", "--shard=1"]), Ok(()));
        let short = shard_check(&["--servers=3", "--shard=0", "--shard-addresses=a:1"]);
        assert!(
            short.as_ref().unwrap_err().contains("needs 2 address(es)"),
            "{short:?}"
        );
        let odd = shard_check(&["--servers=3", "--shard=1", "--shard-addresses=a:1"]);
        assert!(
            odd.as_ref().unwrap_err().contains("needs 0 or 2"),
            "{odd:?}"
        );
        assert!(shard_check(&["--servers=3", "--shard=0"]).is_err());
    }

    #[test]
    fn flags_override_the_default_job() {
        let Command::Train(t) = parse(&[
            "train",
            "--workers",
            "3",
            "--mode",
            "async",
            "--batch-size",
            "full",
            "--lr",
            "0.5",
        ])
        .command
        else {
            panic!("not train")
        };
        let spec = t.job.to_spec().unwrap();
        assert_eq!(spec.training.workers, 3);
        assert_eq!(spec.consistency.mode, ConsistencyMode::Async);
        assert!(matches!(spec.training.batch_size, BatchSize::Full(_)));
        assert!((spec.optimizer.lr() - 0.5).abs() < f32::EPSILON);
    }

    #[test]
    fn the_cnn_preset_and_sequential_layers_are_chosen_by_flag() {
        let Command::Train(t) = parse(&["train", "--model", "cnn"]).command else {
            panic!("not train")
        };
        let spec = t.job.to_spec().unwrap();
        assert_eq!(spec.model.kind, ModelKind::Cnn);
        assert!(spec.model.hidden.is_empty());
        let Command::Train(t) = parse(&[
            "train",
            "--layers",
            "conv2d 8 3 padding=1, relu, max_pool2d 2, flatten, dense 10",
        ])
        .command
        else {
            panic!("not train")
        };
        let spec = t.job.to_spec().unwrap();
        assert_eq!(spec.model.kind, ModelKind::Sequential);
        let layers: Vec<String> = spec.model.layers.iter().map(ToString::to_string).collect();
        assert_eq!(
            layers,
            [
                "conv2d 8 3 padding=1",
                "relu",
                "max_pool2d 2",
                "flatten",
                "dense 10"
            ]
        );
        assert!(spec.model.hidden.is_empty());
    }

    #[test]
    fn global_batch_flag_sets_training_global_batch() {
        let Command::Train(t) =
            parse(&["train", "--workers", "2", "--global-batch", "512"]).command
        else {
            panic!("not train")
        };
        let job = t.job.to_spec().unwrap().validate().unwrap();
        assert_eq!(job.spec.training.global_batch, Some(512));
        assert_eq!(job.global_batch, 512);
    }

    #[test]
    fn choosing_a_dataset_takes_its_defaults() {
        let Command::Train(t) = parse(&["train", "--dataset", "xor"]).command else {
            panic!("not train")
        };
        let spec = t.job.to_spec().unwrap();
        assert_eq!(
            spec.data.test_fraction, 0.0,
            "XOR is tested on its four points"
        );
    }

    #[test]
    fn a_bad_flag_value_is_refused_with_the_choices() {
        let err = Cli::try_parse_from(["downpour", "train", "--mode", "eventual"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected one of sync, ssp, async, got eventual"),
            "{err}"
        );
        let err = Cli::try_parse_from(["downpour", "train", "--model", "rnn"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("got rnn"), "{err}");
        let err = Cli::try_parse_from(["downpour", "train", "--layers", "dense 4, lstm 3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"lstm 3\": unknown layer"), "{err}");
    }

    #[test]
    fn data_flags_set_the_data_section() {
        let Command::Train(t) = parse(&[
            "train",
            "--dataset",
            "csv",
            "--data-path",
            "prices.csv",
            "--task",
            "regression",
            "--label-column",
            "price",
            "--test-fraction",
            "0.3",
            "--standardize",
        ])
        .command
        else {
            panic!("not train")
        };
        let spec = t.job.to_spec().unwrap();
        let data = &spec.data;
        assert_eq!(data.kind, DatasetKind::Csv);
        assert_eq!(data.task, Some(TaskKind::Regression));
        assert_eq!(data.label_column.as_deref(), Some("price"));
        assert_eq!(data.test_fraction, 0.3);
        assert!(data.standardize);
        let path = data.path.as_deref().unwrap();
        assert!(
            path.is_absolute() && path.ends_with("prices.csv"),
            "{path:?}"
        );
        let err = Cli::try_parse_from(["downpour", "train", "--task", "ranking"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected one of classification, regression, got ranking"),
            "{err}"
        );
    }

    #[test]
    fn health_takes_a_server_and_a_default_timeout() {
        let Command::Health(h) = parse(&["health", "--server", "127.0.0.1:50051"]).command else {
            panic!("not health")
        };
        assert_eq!(h.server, "127.0.0.1:50051");
        assert_eq!(h.timeout, 5);
    }

    #[test]
    fn a_missing_job_file_names_the_path() {
        let args = JobArgs {
            job: Some("/nonexistent/job.toml".into()),
            ..JobArgs::default()
        };
        let err = args.to_spec().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/job.toml"), "{err}");
    }
}
