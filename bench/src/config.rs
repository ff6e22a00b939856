//! What a speedup sweep runs: the job (a preset, a job file, flags), the worker counts,
//! server counts and consistency modes, the repeats, the target metric, and the
//! microbenchmarks. `BenchArgs` is the command line; [`BenchConfig`] is it validated.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use downpour_core::data::Task;
use downpour_core::status::Evaluation;
use downpour_server::job::ConsistencyMode;
use downpour_server::{Job, JobError, JobSpec};

use downpour_launch::cli::JobArgs;

/// A sweep that cannot run, with the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The job is invalid (for the largest worker count, too).
    #[error(transparent)]
    Job(#[from] JobError),
    /// A sweep flag is invalid.
    #[error("{flag}: {reason}")]
    Invalid {
        /// The flag, as written on the command line.
        flag: &'static str,
        /// Why, with the value.
        reason: String,
    },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// A job the lab knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The built-in default job: a 64-128-10 MLP on the UCI digits, batch 32, Adam, 60 epochs.
    Default,
    /// A larger MLP, 784-256-128-10 (235,146 parameters), on 12,000 synthetic samples in
    /// 10 classes, batch 256, Adam, 6 epochs.
    Mlp,
    /// The same MLP with batch 2048 on 24,000 samples, 8 epochs, Adam lr 0.003: compute
    /// per step is about 15 times the communication on a 2-core machine.
    Heavy,
    /// The CNN (`[model] kind = "cnn"`: two 3×3 convolutions with pooling, 121,930
    /// parameters) on the built-in 5,000-image MNIST subset, batch 64, Adam lr 0.001,
    /// 3 epochs: compute per sample is about 35 times the MLPs', so communication hides.
    Cnn,
}

impl Preset {
    /// The preset's job, as a job file states it.
    #[must_use]
    pub fn job_toml(self) -> &'static str {
        match self {
            Self::Default => "",
            Self::Mlp => MLP_JOB,
            Self::Heavy => HEAVY_JOB,
            Self::Cnn => CNN_JOB,
        }
    }

    /// The target metric time to target is measured against.
    #[must_use]
    pub fn target(self) -> Target {
        match self {
            Self::Default => Target::Accuracy(0.95),
            Self::Mlp => Target::Accuracy(0.85),
            Self::Heavy => Target::Accuracy(0.85),
            Self::Cnn => Target::Accuracy(0.93),
        }
    }

    /// The name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Mlp => "mlp",
            Self::Heavy => "heavy",
            Self::Cnn => "cnn",
        }
    }
}

const CNN_JOB: &str = r#"
[model]
kind = "cnn"

[data]
kind = "mnist"

[training]
batch_size = 64
epochs = 3

[optimizer]
name = "adam"
lr = 0.001
"#;

const MLP_JOB: &str = r#"
[model]
kind = "mlp"
hidden = [256, 128]
activation = "relu"

[data]
kind = "synthetic_classification"
samples = 12000
features = 784
classes = 10
noise = 0.2

[training]
batch_size = 256
epochs = 6

[optimizer]
name = "adam"
lr = 0.001
"#;

const HEAVY_JOB: &str = r#"
[model]
kind = "mlp"
hidden = [256, 128]
activation = "relu"

[data]
kind = "synthetic_classification"
samples = 24000
features = 784
classes = 10
noise = 0.2

[training]
batch_size = 2048
epochs = 8

[optimizer]
name = "adam"
lr = 0.003
"#;

/// The test metric a run must reach for its time to target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Test accuracy at or above this fraction.
    Accuracy(f64),
    /// Test loss at or below this value.
    Loss(f64),
}

impl Target {
    /// Whether an evaluation reaches the target.
    #[must_use]
    pub fn reached(self, e: &Evaluation) -> bool {
        match self {
            Self::Accuracy(a) => e.test_accuracy.is_some_and(|x| x >= a),
            Self::Loss(l) => e.test_loss <= l,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accuracy(a) => write!(f, "test accuracy >= {:.1}%", a * 100.0),
            Self::Loss(l) => write!(f, "test loss <= {l}"),
        }
    }
}

/// `downpour bench`: the speedup lab.
///
/// Runs the job for every worker count, server count and consistency mode, `--repeats`
/// times each, as real server and worker processes on this machine; adds transport and
/// optimizer microbenchmarks and a single-process baseline; writes a Markdown table to
/// stdout and CSV, JSON and SVG files to `--out`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The job to run, unless `--job FILE` is given; job flags apply on top of either.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,
    /// The job (file and flags; the worker count comes from `--worker-counts`).
    #[command(flatten)]
    pub job: JobArgs,
    /// Worker counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub worker_counts: Vec<usize>,
    /// Server counts (parameter-server shards) to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub server_counts: Vec<usize>,
    /// Consistency modes to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "sync,async", value_parser = downpour_launch::cli::parse_mode)]
    pub modes: Vec<ConsistencyMode>,
    /// Runs of every configuration; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Time to target: the first evaluation with at least this test accuracy [default: the preset's].
    #[arg(long, conflicts_with = "target_loss")]
    pub target_accuracy: Option<f64>,
    /// Time to target: the first evaluation with at most this test loss.
    #[arg(long)]
    pub target_loss: Option<f64>,
    /// Simulated compute: workers sleep MS milliseconds per step instead of computing.
    #[arg(long, value_name = "MS")]
    pub simulate_compute_ms: Option<u64>,
    /// Parameter counts for the transport microbenchmark, comma-separated (the default:
    /// 70 KB, 1 MB, 10 MB and 40 MB of f32 values, the sizes jobs have).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "17500,250000,2500000,10000000"
    )]
    pub transport_params: Vec<usize>,
    /// Transfers of each size and direction, alternating gRPC and raw TCP.
    #[arg(long, default_value_t = 5)]
    pub transport_repeats: usize,
    /// Skip the transport and optimizer microbenchmarks.
    #[arg(long)]
    pub no_transport: bool,
    /// Skip the single-process baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Directory for the CSV, JSON and SVG files and the runs [default: runs/bench/<timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Before each run, wait up to this many seconds for the machine to be quiet (other
    /// processes using under 20% of its cores); 0 only measures the load.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait_idle: u64,
    /// Print the Docker Compose commands that run this sweep with per-worker CPU quotas, and exit.
    #[arg(long)]
    pub compose: bool,
}

/// One point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// Sync or async.
    pub mode: ConsistencyMode,
    /// Parameter servers.
    pub servers: usize,
    /// Worker processes.
    pub workers: usize,
    /// Workers overlap communication with compute (async and ssp only).
    #[serde(default)]
    pub prefetch: bool,
}

impl Configuration {
    /// The mode as the tables show it: `sync`, `async` or `async+prefetch`.
    #[must_use]
    pub fn label(&self) -> String {
        mode_label(self.mode, self.prefetch)
    }
}

/// `mode`'s name, with `+prefetch` where the runs prefetch.
#[must_use]
pub fn mode_label(mode: ConsistencyMode, prefetch: bool) -> String {
    if prefetch && mode != ConsistencyMode::Sync {
        format!("{}+prefetch", mode.name())
    } else {
        mode.name().to_string()
    }
}

impl std::fmt::Display for Configuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} S={} N={}", self.label(), self.servers, self.workers)
    }
}

/// A validated sweep.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// What the job was taken from: a preset's name or the job file's path.
    pub job_source: String,
    /// The job (its worker count is set per run).
    pub spec: JobSpec,
    /// The job validated for one worker (for the baseline and the cost model).
    pub job: Job,
    /// Worker counts, ascending, without duplicates.
    pub worker_counts: Vec<usize>,
    /// Server counts, ascending.
    pub server_counts: Vec<usize>,
    /// Modes, in the order given.
    pub modes: Vec<ConsistencyMode>,
    /// Runs per configuration.
    pub repeats: usize,
    /// Time to target is measured against this.
    pub target: Target,
    /// Simulated compute per step, if any.
    pub simulate_compute_ms: Option<u64>,
    /// `--prefetch`: the async and ssp runs overlap communication with compute (the job's
    /// own `consistency.prefetch` is moved here, so `spec` has it off).
    pub prefetch: bool,
    /// Transport microbenchmark sizes (empty: skipped).
    pub transport_params: Vec<usize>,
    /// Transfers per size and direction.
    pub transport_repeats: usize,
    /// Whether to run the single-process baseline.
    pub baseline: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Longest wait for a quiet machine before each run.
    pub wait_idle: std::time::Duration,
}

impl BenchConfig {
    /// Validates the command line.
    ///
    /// # Errors
    /// [`ConfigError`] naming the flag and value at fault, or the job's error.
    pub fn from_args(args: &BenchArgs) -> Result<Self, ConfigError> {
        if let Some(n) = args.job.workers {
            return Err(invalid(
                "--workers",
                format!("the sweep sets the worker count; use --worker-counts (got --workers {n})"),
            ));
        }
        let mut worker_counts = args.worker_counts.clone();
        worker_counts.sort_unstable();
        worker_counts.dedup();
        if worker_counts.is_empty() || worker_counts[0] == 0 {
            return Err(invalid(
                "--worker-counts",
                format!(
                    "expected counts of at least 1, got {:?}",
                    args.worker_counts
                ),
            ));
        }
        let mut server_counts = args.server_counts.clone();
        server_counts.sort_unstable();
        server_counts.dedup();
        if server_counts.contains(&0) {
            return Err(invalid(
                "--server-counts",
                format!(
                    "every server count must be at least 1, got {:?}",
                    args.server_counts
                ),
            ));
        }
        let mut modes = Vec::new();
        for m in &args.modes {
            if !modes.contains(m) {
                modes.push(*m);
            }
        }
        if modes.is_empty() {
            return Err(invalid("--modes", "expected sync, async or both"));
        }
        if args.repeats == 0 {
            return Err(invalid("--repeats", "must be at least 1, got 0"));
        }
        if args.transport_repeats == 0 {
            return Err(invalid("--transport-repeats", "must be at least 1, got 0"));
        }
        if let Some(&p) = args.transport_params.iter().find(|&&p| p == 0) {
            return Err(invalid(
                "--transport-params",
                format!("parameter counts must be at least 1, got {p}"),
            ));
        }

        let (mut spec, job_source) = match &args.job.job {
            Some(path) => (args.job.to_spec()?, path.display().to_string()),
            None => {
                let base = JobSpec::from_toml(args.preset.job_toml())?;
                (
                    args.job.apply_to(base)?,
                    format!("preset {}", args.preset.name()),
                )
            }
        };
        let target = match (args.target_accuracy, args.target_loss) {
            (Some(a), _) => Target::Accuracy(a),
            (None, Some(l)) => Target::Loss(l),
            (None, None) => args.preset.target(),
        };
        // Prefetch applies to the sweep's async and ssp runs; sync runs go without it.
        let prefetch = std::mem::take(&mut spec.consistency.prefetch);
        let largest = *worker_counts.last().expect("not empty");
        let mut widest = spec.clone();
        widest.training.workers = largest;
        widest.validate()?;
        let mut single = spec.clone();
        single.training.workers = 1;
        let job = single.validate()?;
        if let (Target::Accuracy(a), Task::Regression { .. }) = (target, job.shape.task) {
            return Err(invalid(
                "--target-accuracy",
                format!("a regression job has no accuracy (got {a}); use --target-loss"),
            ));
        }
        Ok(Self {
            job_source,
            spec,
            job,
            worker_counts,
            server_counts,
            modes,
            repeats: args.repeats,
            target,
            simulate_compute_ms: args.simulate_compute_ms,
            prefetch,
            transport_params: if args.no_transport {
                Vec::new()
            } else {
                args.transport_params.clone()
            },
            transport_repeats: args.transport_repeats,
            baseline: !args.no_baseline,
            out: args.out.clone().unwrap_or_else(default_out),
            wait_idle: std::time::Duration::from_secs(args.wait_idle),
        })
    }

    /// Every configuration, modes outermost, then servers, then workers.
    #[must_use]
    pub fn configurations(&self) -> Vec<Configuration> {
        let mut all = Vec::new();
        for &mode in &self.modes {
            for &servers in &self.server_counts {
                for &workers in &self.worker_counts {
                    all.push(Configuration {
                        mode,
                        servers,
                        workers,
                        prefetch: self.prefetch && mode != ConsistencyMode::Sync,
                    });
                }
            }
        }
        all
    }

    /// The job of one configuration.
    #[must_use]
    pub fn spec_for(&self, c: Configuration) -> JobSpec {
        let mut spec = self.spec.clone();
        spec.training.workers = c.workers;
        spec.consistency.mode = c.mode;
        spec.consistency.prefetch = c.prefetch;
        spec
    }
}

fn default_out() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    PathBuf::from("runs")
        .join("bench")
        .join(format!("{}-{}", now.as_secs(), std::process::id()))
}

/// Parses `downpour bench ARGS` (tests).
#[cfg(test)]
pub(crate) fn parse_args(args: &[&str]) -> BenchArgs {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .unwrap()
        .bench
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> BenchArgs {
        parse_args(args)
    }

    #[test]
    fn defaults_sweep_one_to_eight_workers_in_both_modes() {
        let c = BenchConfig::from_args(&parse(&[])).unwrap();
        assert_eq!(c.worker_counts, vec![1, 2, 4, 8]);
        assert_eq!(c.modes, vec![ConsistencyMode::Sync, ConsistencyMode::Async]);
        assert_eq!(c.configurations().len(), 8);
        assert_eq!(c.repeats, 3);
        assert_eq!(c.target, Target::Accuracy(0.95));
        assert_eq!(
            c.transport_params,
            vec![17_500, 250_000, 2_500_000, 10_000_000]
        );
        assert_eq!(c.job.workers(), 1);
        let spec = c.spec_for(Configuration {
            mode: ConsistencyMode::Async,
            servers: 1,
            workers: 4,
            prefetch: false,
        });
        assert_eq!(spec.training.workers, 4);
        assert_eq!(spec.consistency.mode, ConsistencyMode::Async);
    }

    #[test]
    fn prefetch_applies_to_the_async_runs_only() {
        let c = BenchConfig::from_args(&parse(&["--prefetch", "--worker-counts", "1"])).unwrap();
        assert!(
            !c.spec.consistency.prefetch,
            "the shared spec stays valid for sync"
        );
        let configs = c.configurations();
        let labels: Vec<String> = configs.iter().map(Configuration::label).collect();
        assert_eq!(labels, vec!["sync", "async+prefetch"]);
        assert!(!c.spec_for(configs[0]).consistency.prefetch);
        let spec = c.spec_for(configs[1]);
        assert!(spec.consistency.prefetch);
        spec.validate().unwrap();
    }

    #[test]
    fn presets_and_flags_combine() {
        let c = BenchConfig::from_args(&parse(&[
            "--preset",
            "mlp",
            "--epochs",
            "1",
            "--worker-counts",
            "4,1,2,2",
            "--modes",
            "sync",
        ]))
        .unwrap();
        assert_eq!(c.spec.model.hidden, vec![256, 128]);
        assert_eq!(c.spec.training.epochs, 1);
        assert_eq!(c.job.shape.features, 784);
        assert_eq!(c.worker_counts, vec![1, 2, 4]);
        assert_eq!(c.job_source, "preset mlp");
    }

    #[test]
    fn the_cnn_preset_is_the_cnn_on_the_built_in_mnist() {
        let c = BenchConfig::from_args(&parse(&["--preset", "cnn"])).unwrap();
        assert_eq!(c.job.shape.features, 784);
        assert_eq!(c.job.layout.num_values(), 121_930);
        assert_eq!(c.job_source, "preset cnn");
        assert_eq!(c.target, Target::Accuracy(0.93));
    }

    #[test]
    fn bad_sweeps_name_the_flag_and_value() {
        let err = |args: &[&str]| {
            BenchConfig::from_args(&parse(args))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&["--workers", "3"]),
            "--workers: the sweep sets the worker count; use --worker-counts (got --workers 3)"
        );
        assert_eq!(
            err(&["--worker-counts", "0,2"]),
            "--worker-counts: expected counts of at least 1, got [0, 2]"
        );
        assert!(
            err(&["--server-counts", "1,0"])
                .starts_with("--server-counts: every server count must be at least 1")
        );
        assert_eq!(
            err(&["--repeats", "0"]),
            "--repeats: must be at least 1, got 0"
        );
    }

    #[test]
    fn targets_compare_in_the_right_direction() {
        let e = Evaluation {
            worker_id: 0,
            version: 3,
            test_loss: 0.2,
            test_accuracy: Some(0.91),
            test_mse: None,
            test_samples: 10,
            is_final: false,
        };
        assert!(Target::Accuracy(0.9).reached(&e));
        assert!(!Target::Accuracy(0.95).reached(&e));
        assert!(Target::Loss(0.25).reached(&e));
        assert!(!Target::Loss(0.1).reached(&e));
    }
}
