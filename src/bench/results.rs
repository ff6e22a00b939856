//! The lab's results: every run, the per-configuration summaries (medians with their
//! spread), speedup and efficiency, the cost model's predictions beside them, the
//! baseline and microbenchmarks, and notes that explain the differences.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use downpour_core::timing::PhaseTimes;
use downpour_server::job::ConsistencyMode;

use crate::bench::apply_rate::ApplyRate;
use crate::bench::config::{BenchConfig, Configuration, Target, mode_label};
use crate::bench::cost_model::{self, Bound, JobShape, Prediction, Profile};
use crate::bench::machine::Machine;
use crate::bench::measure::{BaselineMeasurement, RunMeasurement};
use crate::bench::stats::Summary;
use crate::bench::transport::{TransportResult, TransportSettings};

/// Relative disagreement between predicted and measured speedup beyond which the notes
/// explain it.
pub const PREDICTION_TOLERANCE: f64 = 0.25;

/// One phase's seconds per step over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// The phase: wait, pull, decode, evaluate, compute, encode, push, apply or other.
    pub phase: String,
    /// Seconds per worker step.
    pub seconds: Summary,
}

/// One configuration over its repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// What ran.
    pub config: Configuration,
    /// Samples per second.
    pub samples_per_second: Summary,
    /// Throughput over the median one-worker throughput of the same mode (T1/TN).
    pub speedup: Option<Summary>,
    /// Median speedup over N.
    pub efficiency: Option<f64>,
    /// Seconds to the target, over the runs that reached it.
    pub time_to_target: Option<Summary>,
    /// Runs that reached the target.
    pub reached_target: usize,
    /// Runs.
    pub runs: usize,
    /// Test accuracy of the final parameters.
    pub final_accuracy: Option<Summary>,
    /// Seconds per worker step.
    pub step_seconds: Summary,
    /// Seconds per worker step in each phase.
    pub phases: Vec<PhaseSummary>,
    /// Server: seconds under its lock per push.
    pub server_apply_per_push: Summary,
    /// Server: seconds decoding one pushed gradient.
    pub server_decode_per_push: Summary,
    /// Fraction of the cores other processes kept busy just before the runs.
    pub busy_before: Option<Summary>,
    /// Fraction of the cores processes other than the lab's used during the runs.
    pub others_during: Option<Summary>,
    /// The cost model's prediction, when the sweep has one-worker runs to profile.
    pub prediction: Option<Prediction>,
    /// Measured speedup over predicted, minus 1.
    pub prediction_error: Option<f64>,
    /// The prediction for the cores other processes left free during the runs
    /// (C × (1 − their median share)), its speedup relative to one worker on those cores.
    pub prediction_under_load: Option<Prediction>,
}

impl ConfigSummary {
    /// The median seconds per step of `phase`, 0 when absent.
    #[must_use]
    pub fn phase(&self, phase: &str) -> f64 {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map_or(0.0, |p| p.seconds.median)
    }
}

/// The profile the predictions of one mode were made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeProfile {
    /// The mode.
    pub mode: ConsistencyMode,
    /// Servers.
    pub servers: usize,
    /// The one-worker profile.
    pub profile: Profile,
    /// Worker count beyond which the model predicts no more gains.
    pub saturation_workers: f64,
}

/// The single-process baseline over its repeats, and how distribution compares at N = 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineReport {
    /// Every run.
    pub runs: Vec<BaselineMeasurement>,
    /// Samples per second.
    pub samples_per_second: Summary,
    /// Seconds to the target, over the runs that reached it.
    pub time_to_target: Option<Summary>,
    /// Final test accuracy.
    pub final_accuracy: Option<Summary>,
    /// Seconds per step computing.
    pub compute_per_step: Summary,
    /// Seconds per step applying.
    pub apply_per_step: Summary,
    /// For each mode: one distributed worker's median throughput over the baseline's.
    pub distributed_ratio: Vec<(ConsistencyMode, f64)>,
}

/// The transport microbenchmarks and the settings they ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportReport {
    /// HTTP/2 and gRPC settings.
    pub settings: TransportSettings,
    /// One entry per size.
    pub results: Vec<TransportResult>,
}

/// Everything one `downpour bench` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The downpour version.
    pub downpour_version: String,
    /// When the sweep ended, seconds since the Unix epoch.
    pub created_unix_seconds: u64,
    /// The machine.
    pub machine: Machine,
    /// A preset's name or the job file.
    pub job_source: String,
    /// The job (its worker count and mode vary per run).
    pub job: serde_json::Value,
    /// The model's parameter count.
    pub parameters: usize,
    /// Samples per step of one worker.
    pub batch: usize,
    /// Training samples, batch, epochs and evaluation interval: what fixes steps and evaluations.
    pub shape: JobShape,
    /// Simulated compute per step, if the workers slept instead of computing.
    pub simulate_compute_ms: Option<u64>,
    /// Whether the async and ssp runs prefetched (overlapped communication with compute).
    #[serde(default)]
    pub prefetch: bool,
    /// Time to target is measured against this.
    pub target: Target,
    /// Runs per configuration.
    pub repeats: usize,
    /// Every distributed run.
    pub runs: Vec<RunMeasurement>,
    /// One per configuration, in sweep order.
    pub summaries: Vec<ConfigSummary>,
    /// The one-worker profiles behind the predictions.
    pub profiles: Vec<ModeProfile>,
    /// The single-process baseline.
    pub baseline: Option<BaselineReport>,
    /// gRPC against raw TCP.
    pub transport: Option<TransportReport>,
    /// Optimizer steps against memcpy.
    pub apply_rates: Vec<ApplyRate>,
    /// What the numbers mean, and why predictions and measurements differ.
    pub notes: Vec<String>,
}

/// The inputs of [`BenchReport::build`] besides the configuration.
#[derive(Debug)]
pub struct Measurements {
    /// The machine, its load recorded at both ends.
    pub machine: Machine,
    /// Every distributed run.
    pub runs: Vec<RunMeasurement>,
    /// Every baseline run.
    pub baseline: Vec<BaselineMeasurement>,
    /// Transport results.
    pub transport: Vec<TransportResult>,
    /// Apply rates.
    pub apply_rates: Vec<ApplyRate>,
}

fn summary_of(runs: &[&RunMeasurement], f: impl Fn(&RunMeasurement) -> f64) -> Summary {
    let values: Vec<f64> = runs.iter().map(|r| f(r)).collect();
    Summary::of(&values).unwrap_or(Summary {
        median: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
        n: 0,
    })
}

fn phase_summaries(runs: &[&RunMeasurement]) -> Vec<PhaseSummary> {
    let names = PhaseTimes::default().phases().map(|(name, _)| name);
    let mut out: Vec<PhaseSummary> = names
        .iter()
        .enumerate()
        .map(|(i, name)| PhaseSummary {
            phase: (*name).to_string(),
            seconds: summary_of(runs, |r| r.phases.phases()[i].1),
        })
        .collect();
    out.push(PhaseSummary {
        phase: "other".to_string(),
        seconds: summary_of(runs, |r| r.phases.other()),
    });
    out.push(PhaseSummary {
        phase: "overlap".to_string(),
        seconds: summary_of(runs, |r| r.phases.overlap),
    });
    out
}

impl BenchReport {
    /// Summarises the measurements, predicts, and explains.
    #[must_use]
    pub fn build(config: &BenchConfig, m: Measurements) -> Self {
        let parameters = config.job.layout.num_values();
        let shape = JobShape {
            train_len: config.job.train_len,
            batch: config.spec.training.batch_size,
            epochs: config.spec.training.epochs,
            eval_every: config.spec.training.eval_every,
        };
        let cores = m.machine.cores;
        let compute_uses_cpu = config.simulate_compute_ms.is_none();

        let mut profiles = Vec::new();
        let mut summaries = Vec::new();
        for c in config.configurations() {
            let runs: Vec<&RunMeasurement> = m.runs.iter().filter(|r| r.config == c).collect();
            if runs.is_empty() {
                continue;
            }
            let ones: Vec<&RunMeasurement> = m
                .runs
                .iter()
                .filter(|r| {
                    r.config.mode == c.mode
                        && r.config.servers == c.servers
                        && r.config.workers == 1
                })
                .collect();
            let profile =
                (!ones.is_empty()).then(|| Profile::from_runs(&ones, compute_uses_cpu, parameters));
            if c.workers == 1
                && let Some(p) = profile
            {
                profiles.push(ModeProfile {
                    mode: c.mode,
                    servers: c.servers,
                    profile: p,
                    saturation_workers: cost_model::saturation(&p, c.mode, cores as f64),
                });
            }
            let throughput = summary_of(&runs, |r| r.samples_per_second);
            let one =
                (!ones.is_empty()).then(|| summary_of(&ones, |r| r.samples_per_second).median);
            let speedup = one.map(|t1| throughput.scaled(t1));
            let prediction =
                profile.map(|p| cost_model::predict(&p, &shape, c.mode, c.workers, cores as f64));
            // The same model on the cores other processes left free during these runs.
            let others = Summary::of(
                &runs
                    .iter()
                    .filter_map(|r| r.others_during)
                    .collect::<Vec<_>>(),
            );
            let prediction_under_load = profile.zip(others).map(|(p, o)| {
                let free = cores as f64 * (1.0 - o.median);
                cost_model::predict(&p, &shape, c.mode, c.workers, free)
            });
            let reached: Vec<f64> = runs.iter().filter_map(|r| r.time_to_target).collect();
            let accuracies: Vec<f64> = runs.iter().filter_map(|r| r.final_accuracy).collect();
            summaries.push(ConfigSummary {
                config: c,
                samples_per_second: throughput,
                efficiency: speedup.map(|s| s.median / c.workers as f64),
                prediction_error: match (speedup, prediction) {
                    (Some(s), Some(p)) => Some(s.median / p.speedup - 1.0),
                    _ => None,
                },
                speedup,
                time_to_target: Summary::of(&reached),
                reached_target: reached.len(),
                runs: runs.len(),
                final_accuracy: Summary::of(&accuracies),
                step_seconds: summary_of(&runs, |r| r.phases.total),
                phases: phase_summaries(&runs),
                server_apply_per_push: summary_of(&runs, |r| r.server_apply_per_push),
                server_decode_per_push: summary_of(&runs, |r| r.server_decode_per_push),
                busy_before: Summary::of(
                    &runs
                        .iter()
                        .filter_map(|r| r.busy_before)
                        .collect::<Vec<_>>(),
                ),
                others_during: Summary::of(
                    &runs
                        .iter()
                        .filter_map(|r| r.others_during)
                        .collect::<Vec<_>>(),
                ),
                prediction,
                prediction_under_load,
            });
        }

        let baseline = baseline_report(&m.baseline, &summaries);
        let mut report = Self {
            downpour_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: m.machine,
            job_source: config.job_source.clone(),
            job: serde_json::to_value(&config.spec).expect("a job spec always serialises"),
            parameters,
            batch: config
                .spec
                .training
                .batch_size
                .resolve(config.job.train_len),
            shape,
            simulate_compute_ms: config.simulate_compute_ms,
            prefetch: config.prefetch,
            target: config.target,
            repeats: config.repeats,
            runs: m.runs,
            summaries,
            profiles,
            baseline,
            transport: (!m.transport.is_empty()).then(|| TransportReport {
                settings: TransportSettings::current(),
                results: m.transport,
            }),
            apply_rates: m.apply_rates,
            notes: Vec::new(),
        };
        report.notes = notes(&report);
        report
    }

    /// The summary of a configuration.
    #[must_use]
    pub fn summary(&self, mode: ConsistencyMode, workers: usize) -> Option<&ConfigSummary> {
        self.summaries
            .iter()
            .find(|s| s.config.mode == mode && s.config.workers == workers)
    }
}

fn baseline_report(
    runs: &[BaselineMeasurement],
    summaries: &[ConfigSummary],
) -> Option<BaselineReport> {
    let of = |f: &dyn Fn(&BaselineMeasurement) -> f64| {
        Summary::of(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let samples_per_second = of(&|r| r.samples_per_second)?;
    let reached: Vec<f64> = runs.iter().filter_map(|r| r.time_to_target).collect();
    let accuracies: Vec<f64> = runs.iter().filter_map(|r| r.final_accuracy).collect();
    let distributed_ratio = summaries
        .iter()
        .filter(|s| s.config.workers == 1)
        .map(|s| {
            (
                s.config.mode,
                s.samples_per_second.median / samples_per_second.median,
            )
        })
        .collect();
    Some(BaselineReport {
        runs: runs.to_vec(),
        samples_per_second,
        time_to_target: Summary::of(&reached),
        final_accuracy: Summary::of(&accuracies),
        compute_per_step: of(&|r| r.compute_per_step)?,
        apply_per_step: of(&|r| r.apply_per_step)?,
        distributed_ratio,
    })
}

/// Milliseconds, for notes.
fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

/// What the numbers mean, and why predictions and measurements differ.
fn notes(r: &BenchReport) -> Vec<String> {
    let mut notes = Vec::new();
    let cores = r.machine.cores;
    match r.simulate_compute_ms {
        None => notes.push(format!(
            "Real compute: N worker processes share {cores} cores, so compute speedup cannot exceed {cores}; \
             the server and the launcher need CPU too."
        )),
        Some(ms) => notes.push(format!(
            "Simulated compute: each worker sleeps {ms} ms per step instead of computing and pushes zeros. \
             Sleeping uses no core, so this measures how many workers one server can feed, not training speed."
        )),
    }
    let others: Vec<f64> = r.runs.iter().filter_map(|run| run.others_during).collect();
    if let Some(o) = Summary::of(&others)
        && o.max > 0.1
    {
        notes.push(format!(
            "The machine was shared: processes other than the lab's used {:.0}% of the cores during the median run \
             and up to {:.0}% (1-minute load average {} at the start). They take CPU from the runs, most of all \
             when N + 1 ≥ C; the runs with the most of it are the slowest of their configuration (runs.csv).",
            o.median * 100.0,
            o.max * 100.0,
            r.machine
                .load_at_start
                .map_or_else(|| "unknown".to_string(), |l| format!("{l:.2}")),
        ));
    }
    for p in &r.profiles {
        let pr = &p.profile;
        notes.push(format!(
            "{} profile at N = 1, per step: compute {}, communication {} ({:.2} GB/s effective for {:.1} MB), \
             wait {}, apply {}, other {}, {} per evaluation; compute/communication = {:.1}. \
             The model expects gains up to N ≈ {:.1}.",
            mode_label(p.mode, r.prefetch),
            ms(pr.compute),
            ms(pr.communication),
            pr.transport_bytes_per_second() / 1e9,
            pr.bytes_per_step / 1e6,
            ms(pr.wait),
            ms(pr.apply),
            ms(pr.other),
            ms(pr.seconds_per_evaluation),
            pr.compute_to_communication(),
            p.saturation_workers,
        ));
    }
    for s in &r.summaries {
        let (Some(err), Some(pred), Some(speedup)) = (s.prediction_error, s.prediction, s.speedup)
        else {
            continue;
        };
        if err.abs() <= PREDICTION_TOLERANCE {
            continue;
        }
        let Some(one) = r.summary(s.config.mode, 1) else {
            continue;
        };
        let mut note = explain(s, one, &pred, speedup.median, err, cores);
        if let Some(p) = r
            .profiles
            .iter()
            .find(|p| p.mode == s.config.mode && p.servers == s.config.servers)
        {
            let both = p.profile.with_communication_cores(2.0);
            let alt = cost_model::predict(
                &both,
                &r.shape,
                s.config.mode,
                s.config.workers,
                cores as f64,
            );
            let _ = write!(
                note,
                " Counting each call's time on two cores (the worker, the server and the kernel all busy, as with \
                 small messages; compute/communication here is {:.1}), the model predicts {:.2} ({:+.0}% off).",
                p.profile.compute_to_communication(),
                alt.speedup,
                (speedup.median / alt.speedup - 1.0) * 100.0
            );
        }
        if let (Some(loaded), Some(o)) = (s.prediction_under_load, s.others_during) {
            let _ = write!(
                note,
                " On the {:.2} cores other processes left free during these runs, the same model predicts {:.2} ({:+.0}% off).",
                cores as f64 * (1.0 - o.median),
                loaded.speedup,
                (speedup.median / loaded.speedup - 1.0) * 100.0
            );
        }
        notes.push(note);
    }
    if let Some(b) = &r.baseline {
        for (mode, ratio) in &b.distributed_ratio {
            notes.push(format!(
                "At N = 1 ({}), distributed throughput is {:.2}× the single-process trainer's: \
                 the difference is the network path (pull, decode, encode, push) and the server's lock{}.",
                mode_label(*mode, r.prefetch),
                ratio,
                if r.prefetch && *mode != ConsistencyMode::Sync {
                    ", less what prefetch hides behind compute"
                } else {
                    ""
                }
            ));
        }
    }
    notes
}

/// Explains a prediction that missed by more than [`PREDICTION_TOLERANCE`]: which phases
/// grew per step compared with one worker, against what the model assumed.
fn explain(
    s: &ConfigSummary,
    one: &ConfigSummary,
    pred: &Prediction,
    measured: f64,
    err: f64,
    cores: usize,
) -> String {
    let mut growth: Vec<(String, f64)> = s
        .phases
        .iter()
        .map(|p| (p.phase.clone(), p.seconds.median - one.phase(&p.phase)))
        .collect();
    growth.sort_by(|a, b| b.1.total_cmp(&a.1));
    let grew: Vec<String> = growth
        .iter()
        .filter(|(_, d)| *d > 0.0)
        .take(3)
        .map(|(name, d)| format!("{name} +{}", ms(*d)))
        .collect();
    let assumption = match pred.bound {
        Bound::Latency => format!(
            "the model expected the one-worker step ({}) to hold",
            ms(one.step_seconds.median)
        ),
        Bound::Cores => format!(
            "the model expected {} workers to share {cores} cores evenly, with a step of {}",
            s.config.workers,
            ms(pred.step_seconds)
        ),
        Bound::ServerLock => format!(
            "the model expected the server's lock to bound each step at {}",
            ms(pred.step_seconds)
        ),
    };
    let left_out = match s.config.mode {
        ConsistencyMode::Sync => {
            "stragglers (a sync round waits for the slowest worker), other processes on the same cores, \
             and cache and memory-bandwidth contention"
        }
        ConsistencyMode::Async | ConsistencyMode::Ssp => {
            "other processes on the same cores, the scheduler's unequal shares between workers, \
             and cache and memory-bandwidth contention"
        }
    };
    format!(
        "{}: measured speedup {:.2} vs predicted {:.2} ({:+.0}%). Per step {} against {} at N = 1 ({}); {}. \
         The model leaves out {left_out}.",
        s.config,
        measured,
        pred.speedup,
        err * 100.0,
        ms(s.step_seconds.median),
        ms(one.step_seconds.median),
        if grew.is_empty() {
            "no phase grew".to_string()
        } else {
            grew.join(", ")
        },
        assumption
    )
}

/// A small report with known numbers, for the tests of this module and of the output.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::bench::config::parse_args;

    /// Sync, one and two workers, two repeats, the default job.
    pub fn config() -> BenchConfig {
        BenchConfig::from_args(&parse_args(&[
            "--worker-counts",
            "1,2",
            "--modes",
            "sync",
            "--repeats",
            "2",
            "--out",
            "/nonexistent",
        ]))
        .unwrap()
    }

    /// A run with these throughput and per-step phases (milliseconds).
    pub fn run(
        workers: usize,
        repeat: usize,
        samples_per_second: f64,
        compute_ms: f64,
    ) -> RunMeasurement {
        RunMeasurement {
            config: Configuration {
                mode: ConsistencyMode::Sync,
                servers: 1,
                workers,
                prefetch: false,
            },
            repeat,
            samples: 1000,
            updates: 100,
            training_seconds: 1000.0 / samples_per_second,
            samples_per_second,
            time_to_target: Some(2.0 + repeat as f64),
            final_accuracy: Some(0.96),
            final_loss: 0.1,
            evaluations: 59,
            phases: PhaseTimes {
                steps: 1,
                receive: 0.001,
                compute: compute_ms / 1e3,
                send: 0.001,
                apply: 0.0005,
                total: compute_ms / 1e3 + 0.0025,
                ..PhaseTimes::default()
            },
            seconds_per_evaluation: 0.001,
            server_apply_per_push: 0.0005,
            server_decode_per_push: 0.0001,
            server_encode_per_version: 0.0001,
            wall_seconds: 3.0,
            busy_before: Some(0.1),
            others_during: Some(0.05),
            run_dir: "runs/x".into(),
        }
    }

    /// N = 1 at 1000 and 1100 samples/s, N = 2 at 1800 and 2000.
    pub fn report() -> BenchReport {
        let config = config();
        BenchReport::build(
            &config,
            Measurements {
                machine: Machine {
                    cores: 2,
                    cpu_model: Some("Test CPU".into()),
                    memory_gib: Some(8.0),
                    load_at_start: Some(0.1),
                    load_at_end: Some(0.2),
                    os: "linux x86_64".into(),
                    threads: "test".into(),
                    accelerator: "none".into(),
                },
                runs: vec![
                    run(1, 0, 1000.0, 1.0),
                    run(2, 0, 1800.0, 1.0),
                    run(1, 1, 1100.0, 1.0),
                    run(2, 1, 2000.0, 1.2),
                ],
                baseline: Vec::new(),
                transport: Vec::new(),
                apply_rates: Vec::new(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speedup_and_efficiency_are_relative_to_the_median_one_worker_throughput() {
        let r = fixtures::report();
        assert_eq!(r.summaries.len(), 2);
        let one = &r.summaries[0];
        assert_eq!(one.samples_per_second.median, 1050.0);
        let two = &r.summaries[1];
        assert_eq!(two.samples_per_second.median, 1900.0);
        let speedup = two.speedup.unwrap();
        assert!((speedup.median - 1900.0 / 1050.0).abs() < 1e-12);
        assert!((speedup.min - 1800.0 / 1050.0).abs() < 1e-12);
        assert!((two.efficiency.unwrap() - 1900.0 / 1050.0 / 2.0).abs() < 1e-12);
        assert!((two.phase("compute") - 0.0011).abs() < 1e-12);
        assert_eq!(two.time_to_target.unwrap().median, 2.5);
        assert_eq!(two.reached_target, 2);
        let p = two.prediction.unwrap();
        assert!((two.prediction_error.unwrap() - (speedup.median / p.speedup - 1.0)).abs() < 1e-12);
        assert_eq!(r.profiles.len(), 1);
        assert!((r.profiles[0].profile.compute - 0.001).abs() < 1e-12);
        assert!((r.profiles[0].profile.communication - 0.002).abs() < 1e-12);
        assert_eq!(r.parameters, 9610);
        assert_eq!(r.batch, 32);
    }
}
