//! A simple cost model: from a one-worker profile and the machine's core count, predict
//! the throughput of N workers. docs/benchmarks.md derives it; in short:
//!
//! - One worker step costs `L = compute + communication + wait + apply + other − overlap` on
//!   its own (the latency path), all measured at N = 1; `overlap` is the communication that
//!   prefetch hides behind compute (0 without prefetch). The cores still do all of it.
//! - Sync: a round of N gradients takes `max(L, (N·(κ·compute + communication + other) + apply) / C)`:
//!   the latency path, or the cores' capacity when N processes need more CPU than C cores
//!   have. `κ` is 1 for real compute and 0 for simulated compute (a sleep uses no core).
//! - Async: each worker's step takes `max(L, N·(κ·compute + communication + other + apply) / C, N·apply)`:
//!   its own loop, the cores' capacity, or the server's lock, which applies one gradient at a time.
//! - Evaluations are serial (the evaluating worker holds up a sync round; in async the
//!   job ends when that worker does): they add `evaluations(N) × seconds per evaluation`.
//! - The job's samples are fixed; N workers take `steps(N)` steps each.

use serde::{Deserialize, Serialize};

use downpour_core::{BatchSize, sharding};
use downpour_server::job::ConsistencyMode;

use crate::bench::measure::RunMeasurement;
use crate::bench::stats::Summary;

/// What one worker's step costs, measured at N = 1 (medians over repeats).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Seconds computing the gradient (or sleeping, with simulated compute).
    pub compute: f64,
    /// Whether computing occupies a core (false for simulated compute).
    pub compute_uses_cpu: bool,
    /// Seconds moving data: pull transfer, decode, encode, push transfer.
    pub communication: f64,
    /// Seconds waiting for the parameters in pulls.
    pub wait: f64,
    /// Seconds the server holds its lock per update (checks, barrier, optimizer step).
    pub apply: f64,
    /// Seconds of bookkeeping (batch selection, the loop).
    pub other: f64,
    /// Seconds of communication and apply that ran behind compute (prefetch; else 0).
    #[serde(default)]
    pub overlap: f64,
    /// Seconds per evaluation.
    pub seconds_per_evaluation: f64,
    /// Bytes through the transport per step: the parameters pulled plus the gradient pushed.
    pub bytes_per_step: f64,
    /// Cores a call keeps busy while it lasts: 1 (the model's assumption: one side works at
    /// a time) up to 2 (the worker, the server and the kernel all busy, as with small messages).
    #[serde(default = "one")]
    pub communication_cores: f64,
}

fn one() -> f64 {
    1.0
}

impl Profile {
    /// The medians of one-worker runs. `parameters` sets the bytes per step.
    ///
    /// # Panics
    /// When `runs` is empty.
    #[must_use]
    pub fn from_runs(runs: &[&RunMeasurement], compute_uses_cpu: bool, parameters: usize) -> Self {
        assert!(!runs.is_empty(), "a profile needs at least one run");
        let median = |f: &dyn Fn(&RunMeasurement) -> f64| {
            let values: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            Summary::of(&values).map_or(0.0, |s| s.median)
        };
        Self {
            compute: median(&|r| r.phases.compute),
            compute_uses_cpu,
            communication: median(&|r| r.phases.send + r.phases.receive),
            wait: median(&|r| r.phases.wait),
            apply: median(&|r| r.phases.apply),
            other: median(&|r| r.phases.other()),
            overlap: median(&|r| r.phases.overlap),
            seconds_per_evaluation: median(&|r| r.seconds_per_evaluation),
            bytes_per_step: 2.0 * 4.0 * parameters as f64,
            communication_cores: 1.0,
        }
    }

    /// Seconds of one step on its own: the latency path.
    #[must_use]
    pub fn latency(&self) -> f64 {
        (self.compute + self.communication + self.wait + self.apply + self.other - self.overlap)
            .max(0.0)
    }

    /// Seconds of CPU one step needs, the server's lock excluded.
    #[must_use]
    pub fn cpu(&self) -> f64 {
        let compute = if self.compute_uses_cpu {
            self.compute
        } else {
            0.0
        };
        compute + self.communication_cores * self.communication + self.other
    }

    /// The same profile with every call keeping `cores` cores busy.
    #[must_use]
    pub fn with_communication_cores(&self, cores: f64) -> Self {
        Self {
            communication_cores: cores,
            ..*self
        }
    }

    /// The transport's effective throughput in this job, bytes per second.
    #[must_use]
    pub fn transport_bytes_per_second(&self) -> f64 {
        if self.communication > 0.0 {
            self.bytes_per_step / self.communication
        } else {
            0.0
        }
    }

    /// Compute time over communication time: how compute-heavy the job is.
    #[must_use]
    pub fn compute_to_communication(&self) -> f64 {
        if self.communication > 0.0 {
            self.compute / self.communication
        } else {
            f64::INFINITY
        }
    }
}

/// The parts of a job that fix how many steps and evaluations N workers make.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JobShape {
    /// Samples in the training split.
    pub train_len: usize,
    /// Samples per gradient.
    pub batch: BatchSize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Steps between evaluations; 0 means once per epoch.
    pub eval_every: u64,
}

impl JobShape {
    /// Steps each of `workers` workers takes.
    #[must_use]
    pub fn steps(&self, workers: usize) -> u64 {
        sharding::steps_per_epoch(self.train_len, workers, self.batch) as u64 * self.epochs as u64
    }

    /// Evaluations during training (the final one excluded).
    #[must_use]
    pub fn evaluations(&self, workers: usize) -> u64 {
        let interval = match self.eval_every {
            0 => sharding::steps_per_epoch(self.train_len, workers, self.batch) as u64,
            n => n,
        };
        self.steps(workers).saturating_sub(1) / interval.max(1)
    }

    /// Samples trained on by `workers` workers: each takes the largest shard's count per epoch.
    #[must_use]
    pub fn samples(&self, workers: usize) -> u64 {
        (workers * sharding::largest_shard(self.train_len, workers) * self.epochs) as u64
    }
}

/// What limits a configuration, according to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Each step's own latency: more workers would still help.
    Latency,
    /// The cores: the processes need more CPU than the machine has.
    Cores,
    /// The server's lock: it applies one gradient at a time.
    ServerLock,
}

impl Bound {
    /// A short label.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Cores => "cores",
            Self::ServerLock => "server lock",
        }
    }
}

/// The model's prediction for one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Workers.
    pub workers: usize,
    /// Seconds per worker step (one sync round).
    pub step_seconds: f64,
    /// Seconds from the start of training to its end.
    pub training_seconds: f64,
    /// Samples per second.
    pub samples_per_second: f64,
    /// Throughput over the predicted one-worker throughput.
    pub speedup: f64,
    /// What limits it.
    pub bound: Bound,
}

/// Predicts `workers` workers in `mode` on `cores` cores (fractional: the cores left
/// by other processes).
#[must_use]
pub fn predict(
    profile: &Profile,
    shape: &JobShape,
    mode: ConsistencyMode,
    workers: usize,
    cores: f64,
) -> Prediction {
    let (step_seconds, bound) = step(profile, mode, workers, cores);
    let (one, _) = step(profile, mode, 1, cores);
    let training = |n: usize, step: f64| {
        shape.steps(n) as f64 * step + shape.evaluations(n) as f64 * profile.seconds_per_evaluation
    };
    let training_seconds = training(workers, step_seconds);
    let samples_per_second = shape.samples(workers) as f64 / training_seconds;
    let one_per_second = shape.samples(1) as f64 / training(1, one);
    Prediction {
        workers,
        step_seconds,
        training_seconds,
        samples_per_second,
        speedup: samples_per_second / one_per_second,
        bound,
    }
}

/// Seconds per worker step, and what sets it.
fn step(profile: &Profile, mode: ConsistencyMode, workers: usize, cores: f64) -> (f64, Bound) {
    let n = workers as f64;
    let c = cores.max(0.1);
    let latency = profile.latency();
    let mut candidates = match mode {
        ConsistencyMode::Sync => vec![
            (latency, Bound::Latency),
            ((n * profile.cpu() + profile.apply) / c, Bound::Cores),
        ],
        ConsistencyMode::Async | ConsistencyMode::Ssp => vec![
            (latency, Bound::Latency),
            (n * (profile.cpu() + profile.apply) / c, Bound::Cores),
            (n * profile.apply, Bound::ServerLock),
        ],
    };
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    candidates[0]
}

/// The worker count beyond which the model stops predicting gains: where the cores or
/// the server's lock take over from the latency path.
#[must_use]
pub fn saturation(profile: &Profile, mode: ConsistencyMode, cores: f64) -> f64 {
    let c = cores.max(0.1);
    let latency = profile.latency();
    let by_cores = match mode {
        ConsistencyMode::Sync => (c * latency - profile.apply) / profile.cpu(),
        ConsistencyMode::Async | ConsistencyMode::Ssp => {
            c * latency / (profile.cpu() + profile.apply)
        }
    };
    match mode {
        ConsistencyMode::Sync => by_cores,
        ConsistencyMode::Async | ConsistencyMode::Ssp if profile.apply > 0.0 => {
            by_cores.min(latency / profile.apply)
        }
        ConsistencyMode::Async | ConsistencyMode::Ssp => by_cores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(compute_uses_cpu: bool) -> Profile {
        Profile {
            compute: 0.010,
            compute_uses_cpu,
            communication: 0.001,
            wait: 0.0,
            apply: 0.0005,
            other: 0.0,
            overlap: 0.0,
            seconds_per_evaluation: 0.0,
            bytes_per_step: 8.0e6,
            communication_cores: 1.0,
        }
    }

    fn shape() -> JobShape {
        JobShape {
            train_len: 1000,
            batch: BatchSize::Samples(10),
            epochs: 1,
            eval_every: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn sync_scales_with_the_latency_path_until_the_cores_run_out() {
        let p = profile(true);
        let s = shape();
        let one = predict(&p, &s, ConsistencyMode::Sync, 1, 2.0);
        assert!(close(one.step_seconds, 0.0115));
        assert!(close(one.training_seconds, 1.15));
        assert!(close(one.speedup, 1.0));
        let two = predict(&p, &s, ConsistencyMode::Sync, 2, 2.0);
        assert_eq!(two.bound, Bound::Latency);
        assert!(close(two.speedup, 2.0));
        let four = predict(&p, &s, ConsistencyMode::Sync, 4, 2.0);
        assert_eq!(four.bound, Bound::Cores);
        // (4 × 11 ms + 0.5 ms) / 2 cores = 22.25 ms per round, 25 rounds.
        assert!(close(four.step_seconds, 0.02225));
        assert!(
            close(four.speedup, 1.15 / (25.0 * 0.02225)),
            "{}",
            four.speedup
        );
    }

    #[test]
    fn async_is_bounded_by_the_cores_and_the_server_lock() {
        let p = profile(true);
        let four = predict(&p, &shape(), ConsistencyMode::Async, 4, 2.0);
        assert_eq!(four.bound, Bound::Cores);
        assert!(close(four.step_seconds, 4.0 * 0.0115 / 2.0));
        assert!(close(four.speedup, 2.0));
        let mut heavy_apply = profile(false);
        heavy_apply.apply = 0.004;
        let eight = predict(&heavy_apply, &shape(), ConsistencyMode::Async, 8, 16.0);
        assert_eq!(eight.bound, Bound::ServerLock);
        assert!(close(eight.step_seconds, 0.032));
    }

    #[test]
    fn prefetch_shortens_the_latency_path_not_the_cpu() {
        let mut p = profile(true);
        // 0.8 ms of the 1.5 ms of communication and apply ran behind compute.
        p.overlap = 0.0008;
        assert!(close(p.latency(), 0.0107));
        assert!(close(p.cpu(), 0.011), "the cores still do the work");
        let one = predict(&p, &shape(), ConsistencyMode::Async, 1, 2.0);
        assert!(close(one.step_seconds, 0.0107));
        let four = predict(&p, &shape(), ConsistencyMode::Async, 4, 2.0);
        assert_eq!(four.bound, Bound::Cores);
        assert!(close(four.step_seconds, 4.0 * 0.0115 / 2.0));
    }

    #[test]
    fn simulated_compute_uses_no_core() {
        let p = profile(false);
        let eight = predict(&p, &shape(), ConsistencyMode::Sync, 8, 2.0);
        assert_eq!(eight.bound, Bound::Latency);
        // Shards of 125 samples take 13 steps of 10: 8 workers do 104 steps' work for 100.
        assert!(close(eight.speedup, 100.0 / 13.0), "{}", eight.speedup);
        // (C × L − apply) / cpu = (2 × 11.5 − 0.5) / 1 = 22.5 workers.
        assert!(close(saturation(&p, ConsistencyMode::Sync, 2.0), 22.5));
        // Async: cores at 2 × 11.5 / 1.5 = 15.33, the lock at 11.5 / 0.5 = 23.
        assert!(close(
            saturation(&p, ConsistencyMode::Async, 2.0),
            2.0 * 0.0115 / 0.0015
        ));
    }

    #[test]
    fn evaluations_are_serial_and_counted_per_worker_count() {
        let s = JobShape {
            train_len: 1000,
            batch: BatchSize::Samples(10),
            epochs: 4,
            eval_every: 0,
        };
        assert_eq!(s.steps(1), 400);
        assert_eq!(s.evaluations(1), 3);
        assert_eq!(
            s.steps(3),
            136,
            "334 samples in the largest shard: 34 steps per epoch"
        );
        assert_eq!(s.evaluations(3), 3);
        assert_eq!(s.samples(3), 3 * 334 * 4);
        let mut p = profile(true);
        p.seconds_per_evaluation = 0.1;
        let one = predict(&p, &s, ConsistencyMode::Sync, 1, 2.0);
        assert!(close(one.training_seconds, 400.0 * 0.0115 + 0.3));
        assert!((p.transport_bytes_per_second() - 8.0e9).abs() < 1e-3);
        assert!(close(p.compute_to_communication(), 10.0));
        // Calls that keep both ends busy: (4 × (10 + 2 × 1) ms + 0.5 ms) / 2 cores per round.
        let both = profile(true).with_communication_cores(2.0);
        let four = predict(&both, &shape(), ConsistencyMode::Sync, 4, 2.0);
        assert!(close(four.step_seconds, 0.02425));
    }
}
