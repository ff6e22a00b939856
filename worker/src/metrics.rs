//! A worker's Prometheus metrics: every family is named `downpour_*` and labelled `worker`
//! (the id the server assigned; docs/metrics.md lists them).
//!
//! The training loop observes them in two places: each pushed gradient ([`WorkerMetrics::pushed`])
//! and each closed step's phase times ([`crate::phases::PhaseClock`]).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use downpour_core::timing::PhaseTimes;

/// The `worker` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    /// The worker's id.
    worker: u32,
}

/// The `worker` and `phase` labels of a phase histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    /// The worker's id.
    worker: u32,
    /// compute, send, wait, receive, apply or evaluate.
    phase: &'static str,
}

/// Buckets of a phase's seconds in one step: 100 µs to about 26 s.
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 4.0, 10))
}

/// The worker's metrics: cheap to clone (every field is a shared handle).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// Steps pushed (gradients the server accepted).
    steps: Family<WorkerLabel, Counter>,
    /// Samples in the pushed gradients.
    samples: Family<WorkerLabel, Counter>,
    /// Seconds per step in each phase.
    step_phase_seconds: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    /// Training loss of the last pushed batch.
    train_loss: Family<WorkerLabel, Gauge<f64, AtomicU64>>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self {
            steps: Family::default(),
            samples: Family::default(),
            step_phase_seconds: Family::new_with_constructor(phase_histogram),
            train_loss: Family::default(),
        }
    }
}

impl WorkerMetrics {
    /// Registers every family into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "downpour_worker_steps",
            "Steps this worker pushed",
            self.steps.clone(),
        );
        registry.register(
            "downpour_worker_samples",
            "Samples in the gradients this worker pushed",
            self.samples.clone(),
        );
        registry.register_with_unit(
            "downpour_step_phase",
            "Time per step in each phase: compute, send, wait, receive, apply, evaluate",
            Unit::Seconds,
            self.step_phase_seconds.clone(),
        );
        registry.register(
            "downpour_worker_train_loss",
            "Training loss of the last batch this worker pushed",
            self.train_loss.clone(),
        );
    }

    /// `worker` pushed a gradient of `samples` samples (0: no data this step) with `loss`.
    pub fn pushed(&self, worker: u32, samples: u64, loss: f64) {
        let label = WorkerLabel { worker };
        self.steps.get_or_create(&label).inc();
        if samples > 0 {
            self.samples.get_or_create(&label).inc_by(samples);
            self.train_loss.get_or_create(&label).set(loss);
        }
    }

    /// `worker` closed a step: its phases took `after` minus `before` (running totals).
    pub fn step_done(&self, worker: u32, before: &PhaseTimes, after: &PhaseTimes) {
        for ((phase, was), (_, is)) in before.phases().into_iter().zip(after.phases()) {
            self.step_phase_seconds
                .get_or_create(&PhaseLabel { worker, phase })
                .observe((is - was).max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_of_a_known_state() {
        let metrics = WorkerMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.pushed(3, 32, 0.5);
        metrics.pushed(3, 0, 9.0);
        let before = PhaseTimes::default();
        let after = PhaseTimes {
            steps: 1,
            compute: 0.01,
            wait: 0.2,
            ..PhaseTimes::default()
        };
        metrics.step_done(3, &before, &after);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE downpour_worker_steps counter",
            r#"downpour_worker_steps_total{worker="3"} 2"#,
            r#"downpour_worker_samples_total{worker="3"} 32"#,
            // The empty step leaves the loss of the last real batch.
            r#"downpour_worker_train_loss{worker="3"} 0.5"#,
            "# TYPE downpour_step_phase_seconds histogram",
            r#"downpour_step_phase_seconds_sum{worker="3",phase="compute"} 0.01"#,
            r#"downpour_step_phase_seconds_bucket{le="0.1024",worker="3",phase="wait"} 0"#,
            r#"downpour_step_phase_seconds_bucket{le="0.4096",worker="3",phase="wait"} 1"#,
            r#"downpour_step_phase_seconds_count{worker="3",phase="evaluate"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
