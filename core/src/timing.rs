//! Where a job's time goes: each worker's per-phase seconds, the server's own work, and
//! the job's clock (when training started and ended, when each evaluation arrived).
//!
//! Workers measure their phases and send the cumulative totals with each gradient; the
//! server keeps the latest totals per worker and measures its own work. The launcher's
//! report and the speedup lab (`downpour bench`) read them from the status.

use serde::{Deserialize, Serialize};

/// Seconds a worker spent in each phase of its steps, summed over `steps` steps.
///
/// A step is one exchange with the server: compute the gradient, send it, the server
/// applies it and waits until the worker may go on, the parameters are received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    /// Steps covered (each computed and exchanged).
    pub steps: u64,
    /// Computing the gradient (or sleeping, with simulated compute), plus any step delay.
    pub compute: f64,
    /// Sending the gradient: encoding its pieces and writing them to the stream.
    pub send: f64,
    /// The server holding the reply until the next parameters were ready (the sync
    /// barrier, the SSP bound).
    pub wait: f64,
    /// Receiving the parameters: the rest of the round trip, their decoding included.
    pub receive: f64,
    /// The server applying the gradient (the barrier's average, the optimizer step).
    pub apply: f64,
    /// Evaluating on the test split when the server asked.
    pub evaluate: f64,
    /// Communication hidden behind compute (prefetch): the seconds of send, wait,
    /// receive and apply that ran while the gradient was being computed. Those phases
    /// count their whole duration, so the step is their sum minus this.
    #[serde(default)]
    pub overlap: f64,
    /// The whole steps, wall clock: the phases above (less the overlap) plus bookkeeping.
    pub total: f64,
}

impl PhaseTimes {
    /// The phases' names and seconds, in the order a step runs them.
    #[must_use]
    pub fn phases(&self) -> [(&'static str, f64); 6] {
        [
            ("compute", self.compute),
            ("send", self.send),
            ("apply", self.apply),
            ("wait", self.wait),
            ("receive", self.receive),
            ("evaluate", self.evaluate),
        ]
    }

    /// Seconds of communication: everything but compute and evaluation.
    #[must_use]
    pub fn communication(&self) -> f64 {
        self.send + self.wait + self.receive + self.apply
    }

    /// Time not in any named phase (selecting the batch, the loop itself); never negative.
    #[must_use]
    pub fn other(&self) -> f64 {
        let named: f64 = self.phases().iter().map(|(_, s)| s).sum();
        (self.total - (named - self.overlap)).max(0.0)
    }

    /// The mean seconds per step (`steps` becomes 1); all zero when no step is covered.
    #[must_use]
    pub fn per_step(&self) -> Self {
        if self.steps == 0 {
            return Self::default();
        }
        let n = self.steps as f64;
        Self {
            steps: 1,
            compute: self.compute / n,
            send: self.send / n,
            wait: self.wait / n,
            receive: self.receive / n,
            apply: self.apply / n,
            evaluate: self.evaluate / n,
            overlap: self.overlap / n,
            total: self.total / n,
        }
    }

    /// Adds another worker's (or another run's) totals.
    pub fn add(&mut self, other: &Self) {
        self.steps += other.steps;
        self.compute += other.compute;
        self.send += other.send;
        self.wait += other.wait;
        self.receive += other.receive;
        self.apply += other.apply;
        self.evaluate += other.evaluate;
        self.overlap += other.overlap;
        self.total += other.total;
    }
}

/// The latest phase totals one worker sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerPhases {
    /// The worker's id.
    pub worker_id: u32,
    /// Its cumulative phase times.
    pub phases: PhaseTimes,
}

/// The server's own work, summed since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerTimes {
    /// Pushes decoded from the wire.
    pub decodes: u64,
    /// Seconds decoding pushed tensors from bytes (outside the lock, in parallel).
    pub decode: f64,
    /// Pushes handled under the lock.
    pub pushes: u64,
    /// Seconds handling pushes under the lock: checks, the barrier's average, the optimizer step.
    pub apply: f64,
    /// Parameter versions encoded for pulls.
    pub encodes: u64,
    /// Seconds encoding parameters into bytes (once per version, shared by every pull).
    pub encode: f64,
}

/// Where a job's time went, as the server saw it. Clock values are seconds since the
/// first worker registered (the clock of [`crate::status::ServerStatus::elapsed_seconds`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingReport {
    /// The latest phase totals of each worker that pushed, by id.
    pub workers: Vec<WorkerPhases>,
    /// The server's own work.
    pub server: ServerTimes,
    /// When every worker had been served the parameters for its first step: all were training.
    pub training_started_seconds: Option<f64>,
    /// When the last gradient of the job was accepted: training was over.
    pub training_ended_seconds: Option<f64>,
    /// `evaluation_seconds[i]`: when the status's `evaluations[i]` arrived.
    pub evaluation_seconds: Vec<f64>,
}

impl TimingReport {
    /// Every worker's phase totals added together.
    #[must_use]
    pub fn all_workers(&self) -> PhaseTimes {
        let mut total = PhaseTimes::default();
        for w in &self.workers {
            total.add(&w.phases);
        }
        total
    }

    /// Seconds from the start of training to its end, once both are known.
    #[must_use]
    pub fn training_seconds(&self) -> Option<f64> {
        Some(self.training_ended_seconds? - self.training_started_seconds?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PhaseTimes {
        PhaseTimes {
            steps: 4,
            compute: 4.0,
            send: 1.0,
            wait: 0.4,
            receive: 1.0,
            apply: 0.4,
            evaluate: 0.0,
            overlap: 0.0,
            total: 8.0,
        }
    }

    #[test]
    fn overlapped_communication_is_not_counted_twice() {
        // 4 s of compute with 2.8 s of communication, 2 s of it behind the compute.
        let p = PhaseTimes {
            overlap: 2.0,
            total: 5.0,
            ..sample()
        };
        assert!((p.other() - 0.2).abs() < 1e-12, "{}", p.other());
        assert!((p.per_step().overlap - 0.5).abs() < 1e-12);
        let mut sum = p;
        sum.add(&p);
        assert!((sum.overlap - 4.0).abs() < 1e-12);
    }

    #[test]
    fn per_step_divides_every_phase_by_the_steps() {
        let p = sample().per_step();
        assert_eq!(p.steps, 1);
        assert!((p.compute - 1.0).abs() < 1e-12);
        assert!((p.total - 2.0).abs() < 1e-12);
        assert!((p.other() - 0.3).abs() < 1e-12, "{}", p.other());
        assert_eq!(PhaseTimes::default().per_step(), PhaseTimes::default());
    }

    #[test]
    fn totals_add_up_over_workers() {
        let report = TimingReport {
            workers: vec![
                WorkerPhases {
                    worker_id: 0,
                    phases: sample(),
                },
                WorkerPhases {
                    worker_id: 1,
                    phases: sample(),
                },
            ],
            training_started_seconds: Some(1.5),
            training_ended_seconds: Some(4.0),
            ..TimingReport::default()
        };
        let all = report.all_workers();
        assert_eq!(all.steps, 8);
        assert!((all.compute - 8.0).abs() < 1e-12);
        assert_eq!(report.training_seconds(), Some(2.5));
    }
}
