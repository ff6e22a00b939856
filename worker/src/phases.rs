//! A worker's running per-phase totals: what each step spent waiting, transferring,
//! decoding, evaluating, computing, encoding and waiting for the server to apply.
//!
//! The totals travel with every push, so the server (and `downpour bench`) can show
//! where a step's time goes.

use std::time::Duration;

use downpour_core::timing::PhaseTimes;

use crate::client::{PullTiming, PushReceipt};

/// Phase totals over the steps completed so far.
#[derive(Debug, Clone, Default)]
pub struct PhaseClock {
    /// The totals; `steps` counts the steps closed with [`Self::step_done`].
    totals: PhaseTimes,
}

impl PhaseClock {
    /// Adds a pull: the server's wait, the rest of the call, and the decoding.
    pub fn pulled(&mut self, timing: &PullTiming) {
        let waited = timing.waited.min(timing.call);
        self.totals.wait += waited.as_secs_f64();
        self.totals.pull += (timing.call - waited).as_secs_f64();
        self.totals.decode += timing.decode.as_secs_f64();
    }

    /// Adds an evaluation.
    pub fn evaluated(&mut self, took: Duration) {
        self.totals.evaluate += took.as_secs_f64();
    }

    /// Adds a gradient computation (or its simulation).
    pub fn computed(&mut self, took: Duration) {
        self.totals.compute += took.as_secs_f64();
    }

    /// Adds a push: the encoding, the transfer, and the server's time applying it.
    pub fn pushed(&mut self, receipt: &PushReceipt) {
        let applied = receipt.applied.min(receipt.call);
        self.totals.encode += receipt.encode.as_secs_f64();
        self.totals.push += (receipt.call - applied).as_secs_f64();
        self.totals.apply += applied.as_secs_f64();
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
    fn splits_calls_into_wait_transfer_and_apply() {
        let mut clock = PhaseClock::default();
        clock.pulled(&PullTiming {
            call: ms(10),
            waited: ms(7),
            decode: ms(1),
        });
        clock.computed(ms(20));
        clock.pushed(&PushReceipt {
            staleness: 0,
            encode: ms(1),
            call: ms(6),
            applied: ms(2),
        });
        clock.step_done(ms(40));
        let t = clock.totals();
        assert_eq!(t.steps, 1);
        assert!((t.wait - 0.007).abs() < 1e-9);
        assert!((t.pull - 0.003).abs() < 1e-9);
        assert!((t.push - 0.004).abs() < 1e-9);
        assert!((t.apply - 0.002).abs() < 1e-9);
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
        assert_eq!(clock.totals().pull, 0.0);
    }
}
