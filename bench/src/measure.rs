//! What one run measured, read from its report: throughput, time to target, the
//! per-step phase breakdown and the server's own work.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::local_trainer::LocalRun;
use downpour_core::timing::PhaseTimes;

use crate::config::{Configuration, Target};
use downpour_launch::report::RunReport;

/// One distributed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeasurement {
    /// What ran.
    pub config: Configuration,
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Samples trained on, over all workers.
    pub samples: u64,
    /// Updates applied.
    pub updates: u64,
    /// Server clock from the moment every worker was training to the last gradient.
    pub training_seconds: f64,
    /// `samples / training_seconds`.
    pub samples_per_second: f64,
    /// Server clock from the start of training to the first evaluation reaching the target.
    pub time_to_target: Option<f64>,
    /// Test accuracy of the final parameters (classification).
    pub final_accuracy: Option<f64>,
    /// Test loss of the final parameters.
    pub final_loss: f64,
    /// Evaluations during training (the final one excluded).
    pub evaluations: usize,
    /// Mean seconds per worker step in each phase, over every worker's steps.
    pub phases: PhaseTimes,
    /// Seconds per evaluation, as the evaluating worker saw them.
    pub seconds_per_evaluation: f64,
    /// Server: seconds under its lock per push (checks, barrier, optimizer step).
    pub server_apply_per_push: f64,
    /// Server: seconds decoding one pushed gradient.
    pub server_decode_per_push: f64,
    /// Server: seconds encoding one parameter version.
    pub server_encode_per_version: f64,
    /// Launcher wall time, process start-up included.
    pub wall_seconds: f64,
    /// Fraction of all cores other processes kept busy in the second before the run.
    pub busy_before: Option<f64>,
    /// Fraction of all cores processes other than the lab's used during the run.
    pub others_during: Option<f64>,
    /// Where the run's files are.
    pub run_dir: PathBuf,
}

fn per(total: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

impl RunMeasurement {
    /// Reads a run's report.
    #[must_use]
    pub fn from_report(
        config: Configuration,
        repeat: usize,
        report: &RunReport,
        target: Target,
    ) -> Self {
        let timing = &report.timing;
        let training_seconds = timing
            .training_seconds()
            .unwrap_or(report.final_metrics.training_seconds);
        let start = timing.training_started_seconds.unwrap_or(0.0);
        let time_to_target = report
            .evaluations
            .iter()
            .zip(&timing.evaluation_seconds)
            .find(|(e, _)| target.reached(e))
            .map(|(_, &at)| (at - start).max(0.0));
        let all = timing.all_workers();
        let evaluations = report.evaluations.iter().filter(|e| !e.is_final).count();
        let server = &timing.server;
        Self {
            config,
            repeat,
            samples: report.final_metrics.samples,
            updates: report.final_metrics.version,
            training_seconds,
            samples_per_second: if training_seconds > 0.0 {
                report.final_metrics.samples as f64 / training_seconds
            } else {
                0.0
            },
            time_to_target,
            final_accuracy: report.final_metrics.test_accuracy,
            final_loss: report.final_metrics.test_loss,
            evaluations,
            phases: all.per_step(),
            seconds_per_evaluation: per(all.evaluate, evaluations as u64),
            server_apply_per_push: per(server.apply, server.pushes),
            server_decode_per_push: per(server.decode, server.decodes),
            server_encode_per_version: per(server.encode, server.encodes),
            wall_seconds: report.final_metrics.wall_seconds,
            busy_before: None,
            others_during: None,
            run_dir: report.files.run_dir.clone(),
        }
    }
}

/// One single-process run (the baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineMeasurement {
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Samples trained on.
    pub samples: u64,
    /// From the first step to the last update.
    pub training_seconds: f64,
    /// `samples / training_seconds`.
    pub samples_per_second: f64,
    /// From the first step to the first evaluation reaching the target.
    pub time_to_target: Option<f64>,
    /// Test accuracy of the final parameters (classification).
    pub final_accuracy: Option<f64>,
    /// Mean seconds per step computing gradients.
    pub compute_per_step: f64,
    /// Mean seconds per step applying updates.
    pub apply_per_step: f64,
    /// Mean seconds per step evaluating.
    pub evaluate_per_step: f64,
    /// Fraction of all cores other processes kept busy in the second before the run.
    pub busy_before: Option<f64>,
    /// Fraction of all cores processes other than the lab's used during the run.
    pub others_during: Option<f64>,
}

impl BaselineMeasurement {
    /// Reads a local run.
    #[must_use]
    pub fn from_local(repeat: usize, run: &LocalRun, target: Target) -> Self {
        let steps = run.steps.max(1) as f64;
        let last = run.evaluations.last();
        Self {
            repeat,
            samples: run.samples,
            training_seconds: run.training.as_secs_f64(),
            samples_per_second: run.samples_per_second(),
            time_to_target: run
                .evaluations
                .iter()
                .find(|e| target.reached(&e.evaluation))
                .map(|e| e.seconds),
            final_accuracy: last.and_then(|e| e.evaluation.test_accuracy),
            compute_per_step: run.compute.as_secs_f64() / steps,
            apply_per_step: run.apply.as_secs_f64() / steps,
            evaluate_per_step: run.evaluate.as_secs_f64() / steps,
            busy_before: None,
            others_during: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_core::status::Evaluation;
    use downpour_core::timing::{ServerTimes, TimingReport, WorkerPhases};
    use downpour_launch::report::{FinalMetrics, Hardware, RunFiles, StalenessSummary};
    use downpour_server::job::ConsistencyMode;

    fn eval(version: u64, acc: f64, is_final: bool) -> Evaluation {
        Evaluation {
            worker_id: 0,
            version,
            test_loss: 1.0 - acc,
            test_accuracy: Some(acc),
            test_mse: None,
            test_samples: 100,
            is_final,
        }
    }

    fn phases(steps: u64, compute: f64, evaluate: f64, total: f64) -> PhaseTimes {
        PhaseTimes {
            steps,
            compute,
            evaluate,
            total,
            ..PhaseTimes::default()
        }
    }

    #[test]
    fn reads_throughput_time_to_target_and_phases() {
        let report = RunReport {
            refused_pushes: std::collections::BTreeMap::new(),
            data: downpour_launch::report::DataReport::default(),
            job: serde_json::Value::Null,
            finished: true,
            consistency: "sync".into(),
            hardware: Hardware {
                cores: 2,
                worker_processes: 2,
                server_processes: 1,
            },
            epochs: vec![],
            evaluations: vec![
                eval(10, 0.8, false),
                eval(20, 0.96, false),
                eval(30, 0.97, true),
            ],
            workers: vec![],
            staleness: StalenessSummary {
                count: 0,
                mean: 0.0,
                max: 0,
                histogram: vec![],
            },
            step_staleness: StalenessSummary {
                count: 0,
                mean: 0.0,
                max: 0,
                histogram: vec![],
            },
            shards: vec![],
            files: RunFiles {
                run_dir: "runs/x".into(),
                job: "runs/x/job.toml".into(),
                weights: "runs/x/w".into(),
                logs: vec![],
                metrics_csv: "runs/x/metrics.csv".into(),
                tensorboard: None,
            },
            final_metrics: FinalMetrics {
                test_accuracy: Some(0.97),
                test_mse: None,
                test_loss: 0.03,
                wall_seconds: 9.0,
                training_seconds: 8.0,
                samples: 6000,
                samples_per_second: 750.0,
                version: 30,
            },
            timing: TimingReport {
                workers: vec![
                    WorkerPhases {
                        worker_id: 0,
                        phases: phases(30, 3.0, 0.4, 6.0),
                    },
                    WorkerPhases {
                        worker_id: 1,
                        phases: phases(30, 3.0, 0.0, 6.0),
                    },
                ],
                server: ServerTimes {
                    pushes: 60,
                    apply: 0.6,
                    decodes: 60,
                    decode: 0.3,
                    encodes: 30,
                    encode: 0.3,
                },
                training_started_seconds: Some(1.0),
                training_ended_seconds: Some(7.0),
                evaluation_seconds: vec![3.0, 5.5, 7.5],
            },
        };
        let c = Configuration {
            mode: ConsistencyMode::Sync,
            servers: 1,
            workers: 2,
            prefetch: false,
        };
        let m = RunMeasurement::from_report(c, 1, &report, Target::Accuracy(0.95));
        assert_eq!(m.training_seconds, 6.0);
        assert_eq!(m.samples_per_second, 1000.0);
        assert_eq!(m.time_to_target, Some(4.5));
        assert_eq!(m.evaluations, 2);
        assert!((m.phases.compute - 0.1).abs() < 1e-12);
        assert!((m.phases.total - 0.2).abs() < 1e-12);
        assert!((m.seconds_per_evaluation - 0.2).abs() < 1e-12);
        assert!((m.server_apply_per_push - 0.01).abs() < 1e-12);
        assert!((m.server_encode_per_version - 0.01).abs() < 1e-12);
        let never = RunMeasurement::from_report(c, 1, &report, Target::Accuracy(0.99));
        assert_eq!(never.time_to_target, None);
    }
}
