//! The consistency rule of a job as a value whose methods are the rules: when a worker
//! may start a step, what happens to its gradient, and how progress is counted.
//!
//! - [`Consistency::Sync`] (BSP): one gradient per active worker per step, averaged at
//!   the barrier ([`crate::barrier`], where the barrier's own rule lives).
//! - [`Consistency::Ssp`]: gradients applied as they arrive; a worker may run at most
//!   `bound` steps ahead of the slowest active worker.
//! - [`Consistency::Async`] (Downpour SGD): gradients applied as they arrive.

use crate::aggregation::AggregationRule;
use crate::barrier::SyncBarrier;
use crate::job::{ConsistencyMode, ConsistencySpec, StalenessPolicy};

/// What async and SSP do with a gradient computed `staleness` versions ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleGradients {
    /// Apply it as it is.
    Accept,
    /// Apply it with the learning rate scaled by `1 / (1 + staleness)`.
    Damp,
    /// Discard it when its staleness exceeds `max_staleness`.
    Drop {
        /// The most staleness applied.
        max_staleness: u64,
    },
}

impl StaleGradients {
    /// The learning-rate scale for a gradient `staleness` versions old; `None`: drop it.
    #[must_use]
    pub fn lr_scale(self, staleness: u64) -> Option<f32> {
        match self {
            Self::Accept => Some(1.0),
            Self::Damp => Some(1.0 / (1.0 + staleness as f32)),
            Self::Drop { max_staleness } => (staleness <= max_staleness).then_some(1.0),
        }
    }
}

/// A job's consistency rule, with the state it needs (the sync barrier).
#[derive(Debug)]
pub enum Consistency {
    /// Bulk-synchronous: the barrier collecting the current step.
    Sync(SyncBarrier),
    /// Stale-synchronous with its bound τ, in steps.
    Ssp {
        /// How many steps a worker may run ahead of the slowest active one.
        bound: u64,
        /// What a stale gradient becomes.
        policy: StaleGradients,
    },
    /// Asynchronous.
    Async {
        /// What a stale gradient becomes.
        policy: StaleGradients,
    },
}

impl Consistency {
    /// The rule of a validated `[consistency]` section, its barrier (in sync mode) at
    /// step `version`.
    #[must_use]
    pub fn of(spec: &ConsistencySpec, aggregation: AggregationRule, version: u64) -> Self {
        let policy = match spec.policy {
            StalenessPolicy::Accept => StaleGradients::Accept,
            StalenessPolicy::Damp => StaleGradients::Damp,
            StalenessPolicy::Drop => StaleGradients::Drop {
                max_staleness: spec.max_staleness.unwrap_or(u64::MAX),
            },
        };
        match spec.mode {
            ConsistencyMode::Sync => Self::Sync(SyncBarrier::with_rule(version, aggregation)),
            ConsistencyMode::Ssp => Self::Ssp {
                bound: spec.staleness.unwrap_or(u64::MAX),
                policy,
            },
            ConsistencyMode::Async => Self::Async { policy },
        }
    }

    /// The mode's name, for status and reports.
    #[must_use]
    pub fn mode(&self) -> ConsistencyMode {
        match self {
            Self::Sync(_) => ConsistencyMode::Sync,
            Self::Ssp { .. } => ConsistencyMode::Ssp,
            Self::Async { .. } => ConsistencyMode::Async,
        }
    }

    /// The sync barrier, in sync mode.
    #[must_use]
    pub fn barrier(&self) -> Option<&SyncBarrier> {
        match self {
            Self::Sync(b) => Some(b),
            _ => None,
        }
    }

    /// Whether no step is half collected (always, outside sync mode).
    #[must_use]
    pub fn between_steps(&self) -> bool {
        self.barrier().is_none_or(SyncBarrier::is_empty)
    }

    /// Whether a worker may start `step` now: in sync mode once the version has reached
    /// it, in SSP while it is within the bound of the slowest active worker's next step
    /// (`slowest`), in async mode always.
    #[must_use]
    pub fn may_start(&self, step: u64, version: u64, slowest: Option<u64>) -> bool {
        match self {
            Self::Sync(_) => version >= step,
            Self::Ssp { bound, .. } => {
                slowest.is_none_or(|slowest| step <= slowest.saturating_add(*bound))
            }
            Self::Async { .. } => true,
        }
    }

    /// The step a worker joining now starts at: in sync mode the step after the one
    /// being collected; otherwise the slowest active worker's next step.
    #[must_use]
    pub fn join_step(&self, version: u64, slowest: Option<u64>) -> u64 {
        match self {
            Self::Sync(b) => version + u64::from(!b.is_empty()),
            Self::Ssp { .. } | Self::Async { .. } => slowest.unwrap_or(0),
        }
    }

    /// The job's progress in steps of one worker: the version in sync mode, gradients
    /// applied divided by workers otherwise.
    #[must_use]
    pub fn progress_steps(&self, version: u64, applied: u64, workers: usize) -> u64 {
        match self {
            Self::Sync(_) => version,
            Self::Ssp { .. } | Self::Async { .. } => applied / workers as u64,
        }
    }

    /// Versions per epoch of the whole job: one per step in sync mode, one per gradient otherwise.
    #[must_use]
    pub fn versions_per_epoch(&self, steps_per_epoch: u64, workers: usize) -> u64 {
        match self {
            Self::Sync(_) => steps_per_epoch,
            Self::Ssp { .. } | Self::Async { .. } => steps_per_epoch * workers as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: ConsistencyMode) -> ConsistencySpec {
        ConsistencySpec {
            mode,
            staleness: (mode == ConsistencyMode::Ssp).then_some(2),
            ..ConsistencySpec::default()
        }
    }

    #[test]
    fn each_mode_lets_a_step_start_by_its_own_rule() {
        let sync = Consistency::of(&spec(ConsistencyMode::Sync), AggregationRule::default(), 3);
        assert!(sync.may_start(3, 3, Some(0)) && !sync.may_start(4, 3, Some(9)));
        let ssp = Consistency::of(&spec(ConsistencyMode::Ssp), AggregationRule::default(), 0);
        assert!(ssp.may_start(7, 0, Some(5)) && !ssp.may_start(8, 0, Some(5)));
        assert!(ssp.may_start(100, 0, None));
        let asynchronous =
            Consistency::of(&spec(ConsistencyMode::Async), AggregationRule::default(), 0);
        assert!(asynchronous.may_start(1000, 0, Some(0)));
        assert_eq!(
            [sync.mode(), ssp.mode(), asynchronous.mode()],
            [
                ConsistencyMode::Sync,
                ConsistencyMode::Ssp,
                ConsistencyMode::Async
            ]
        );
    }

    #[test]
    fn stale_gradients_are_scaled_or_dropped_by_the_policy() {
        assert_eq!(StaleGradients::Accept.lr_scale(9), Some(1.0));
        assert_eq!(StaleGradients::Damp.lr_scale(3), Some(0.25));
        let drop = StaleGradients::Drop { max_staleness: 2 };
        assert_eq!((drop.lr_scale(2), drop.lr_scale(3)), (Some(1.0), None));
    }
}
