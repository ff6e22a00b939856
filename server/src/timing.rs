//! The server's record of where a job's time goes: the latest phase totals each worker
//! sent, the server's own work (decoding, the locked part of pushes, encoding), and the
//! job's clock. Free of clocks itself: the gRPC layer passes the times in.

use std::collections::{BTreeMap, BTreeSet};

use downpour_core::timing::{PhaseTimes, ServerTimes, TimingReport, WorkerPhases};

/// Timing of one job, fed by the gRPC layer.
///
/// Invariant: every time is in seconds since the job's clock started (the first
/// registration), and `training_started <= training_ended` when both are set.
#[derive(Debug, Default)]
pub struct TimingLedger {
    /// The latest cumulative phases of each worker, by id.
    workers: BTreeMap<u32, PhaseTimes>,
    /// The server's own work.
    server: ServerTimes,
    /// Workers whose first step's pull has been served.
    started_workers: BTreeSet<u32>,
    /// When the last expected worker's first pull was served: every worker was training.
    training_started: Option<f64>,
    /// When the last gradient of the job was accepted.
    training_ended: Option<f64>,
    /// When each evaluation arrived, in arrival order.
    evaluations: Vec<f64>,
}

impl TimingLedger {
    /// Notes that `worker`'s pull for its first step was served at `now`; once `workers`
    /// distinct workers have been, training has started (later calls change nothing).
    pub fn first_step_pulled(&mut self, worker: u32, workers: usize, now: f64) {
        self.started_workers.insert(worker);
        if self.started_workers.len() >= workers {
            self.training_started.get_or_insert(now);
        }
    }

    /// Notes that training is over at `now` (only the first call counts).
    pub fn training_ended(&mut self, now: f64) {
        self.training_ended.get_or_insert(now);
    }

    /// Records a worker's cumulative phases; older totals (fewer steps) never replace newer ones.
    pub fn worker_phases(&mut self, worker: u32, phases: PhaseTimes) {
        let latest = self.workers.entry(worker).or_default();
        if phases.steps >= latest.steps {
            *latest = phases;
        }
    }

    /// Records the decoding of one pushed gradient.
    pub fn decoded(&mut self, seconds: f64) {
        self.server.decodes += 1;
        self.server.decode += seconds;
    }

    /// Records one push handled under the lock.
    pub fn applied(&mut self, seconds: f64) {
        self.server.pushes += 1;
        self.server.apply += seconds;
    }

    /// Records the encoding of one parameter version.
    pub fn encoded(&mut self, seconds: f64) {
        self.server.encodes += 1;
        self.server.encode += seconds;
    }

    /// Records the arrival of an evaluation at `now`.
    pub fn evaluation(&mut self, now: f64) {
        self.evaluations.push(now);
    }

    /// The report for the status.
    #[must_use]
    pub fn report(&self) -> TimingReport {
        TimingReport {
            workers: self
                .workers
                .iter()
                .map(|(&worker_id, &phases)| WorkerPhases { worker_id, phases })
                .collect(),
            server: self.server,
            training_started_seconds: self.training_started,
            training_ended_seconds: self.training_ended,
            evaluation_seconds: self.evaluations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_totals_and_the_first_clock_marks() {
        let mut ledger = TimingLedger::default();
        ledger.first_step_pulled(0, 2, 0.5);
        ledger.first_step_pulled(0, 2, 0.7);
        assert_eq!(ledger.report().training_started_seconds, None);
        ledger.first_step_pulled(1, 2, 1.0);
        ledger.first_step_pulled(1, 2, 2.0);
        let newer = PhaseTimes {
            steps: 5,
            compute: 2.5,
            ..PhaseTimes::default()
        };
        let older = PhaseTimes {
            steps: 4,
            compute: 2.0,
            ..PhaseTimes::default()
        };
        ledger.worker_phases(1, newer);
        ledger.worker_phases(1, older);
        ledger.decoded(0.25);
        ledger.applied(0.5);
        ledger.applied(0.5);
        ledger.evaluation(3.0);
        ledger.training_ended(4.0);
        ledger.training_ended(9.0);
        let r = ledger.report();
        assert_eq!(r.workers.len(), 1);
        assert_eq!(r.workers[0].phases, newer);
        assert_eq!(r.server.pushes, 2);
        assert!((r.server.apply - 1.0).abs() < 1e-12);
        assert_eq!(r.server.decodes, 1);
        assert_eq!(r.evaluation_seconds, vec![3.0]);
        assert_eq!(r.training_seconds(), Some(3.0));
    }
}
