//! A worker's running per-phase totals: what each step spent computing, sending the
//! gradient, on the server applying it and waiting, receiving the parameters, and evaluating.
//!
//! The totals travel with every gradient, so the server (and `downpour bench`) can show
//! where a step's time goes.

use std::time::Duration;

use downpour_core::timing::PhaseTimes;

use crate::client::{ExchangeTiming, PullTiming};
use crate::metrics::WorkerMetrics;

/// Phase totals over the steps completed so far.
#[derive(Debug, Clone, Default)]
pub struct PhaseClock {
    /// The totals; `steps` counts the steps closed with [`Self::step_done`].
    totals: PhaseTimes,
    /// The totals when the last step closed: a step's phases are the difference.
    at_last_step: PhaseTimes,
    /// Where each closed step's phases are observed, with the worker's id.
    observer: Option<(WorkerMetrics, u32)>,
}

impl PhaseClock {
    /// A clock whose closed steps are observed in `metrics` as `worker`'s.
    #[must_use]
    pub fn observed_by(metrics: WorkerMetrics, worker: u32) -> Self {
        Self {
            observer: Some((metrics, worker)),
            ..Self::default()
        }
    }

    /// Adds a pull: the server's wait, and the rest of the call as receiving.
    pub fn pulled(&mut self, timing: &PullTiming) {
        let waited = timing.waited.min(timing.call);
        self.totals.wait += waited.as_secs_f64();
        self.totals.receive += (timing.call - waited + timing.decode).as_secs_f64();
    }

    /// Adds an exchange: sending the gradient, the server applying it and waiting until
    /// the next step may start, and the rest of the round trip as receiving.
    pub fn exchanged(&mut self, timing: &ExchangeTiming) {
        let mut left = timing.call;
        let mut take = |d: Duration| {
            let d = d.min(left);
            left -= d;
            d.as_secs_f64()
        };
        self.totals.send += take(timing.send);
        self.totals.apply += take(timing.applied);
        self.totals.wait += take(timing.waited);
        self.totals.receive += left.as_secs_f64();
    }

    /// Adds an evaluation.
    pub fn evaluated(&mut self, took: Duration) {
        self.totals.evaluate += took.as_secs_f64();
    }

    /// Adds a gradient computation (or its simulation).
    pub fn computed(&mut self, took: Duration) {
        self.totals.compute += took.as_secs_f64();
    }

    /// Adds communication that ran while the gradient was being computed (prefetch): it
    /// is already counted in its phases, and the step did not wait for it.
    pub fn overlapped(&mut self, took: Duration) {
        self.totals.overlap += took.as_secs_f64();
    }

    /// Closes a step that took `took` in all.
    pub fn step_done(&mut self, took: Duration) {
        self.totals.steps += 1;
        self.totals.total += took.as_secs_f64();
        if let Some((metrics, worker)) = &self.observer {
            metrics.step_done(*worker, &self.at_last_step, &self.totals);
        }
        self.at_last_step = self.totals;
    }

    /// The totals over the steps closed so far.
    #[must_use]
    pub fn totals(&self) -> &PhaseTimes {
        &self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn splits_an_exchange_into_send_apply_wait_and_receive() {
        let mut clock = PhaseClock::default();
        clock.pulled(&PullTiming {
            call: ms(10),
            waited: ms(7),
            decode: ms(1),
        });
        clock.computed(ms(20));
        clock.exchanged(&ExchangeTiming {
            call: ms(12),
            send: ms(3),
            encode: ms(1),
            applied: ms(2),
            waited: ms(4),
            decode: ms(1),
        });
        clock.step_done(ms(45));
        let t = clock.totals();
        assert_eq!(t.steps, 1);
        assert!((t.wait - 0.011).abs() < 1e-9);
        assert!((t.send - 0.003).abs() < 1e-9);
        assert!((t.apply - 0.002).abs() < 1e-9);
        // The pull's 3 ms of transfer and 1 ms of decoding, the exchange's last 3 ms.
        assert!((t.receive - 0.007).abs() < 1e-9);
        assert!((t.other() - 0.002).abs() < 1e-9, "{}", t.other());
    }

    #[test]
    fn a_server_time_longer_than_the_call_is_capped() {
        let mut clock = PhaseClock::default();
        clock.pulled(&PullTiming {
            call: ms(1),
            waited: ms(5),
            decode: Duration::ZERO,
        });
        assert!((clock.totals().wait - 0.001).abs() < 1e-9);
        assert_eq!(clock.totals().receive, 0.0);
        clock.exchanged(&ExchangeTiming {
            call: ms(4),
            send: ms(1),
            applied: ms(2),
            waited: ms(9),
            ..ExchangeTiming::default()
        });
        let t = clock.totals();
        assert!((t.wait - 0.002).abs() < 1e-9, "{}", t.wait);
        assert_eq!(t.receive, 0.0);
    }
}
