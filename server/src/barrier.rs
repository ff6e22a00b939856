//! The synchronous (BSP) barrier: collect one gradient per worker for a step, then
//! release their combination (the mean, or a robust rule: [`crate::aggregation`]).

use std::collections::BTreeMap;

use downpour_core::ParamSet;

use crate::aggregation::AggregationRule;

/// What happened to a gradient offered to the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Held for the current step.
    Accepted,
    /// The worker already gave a gradient for this step; the new one is ignored.
    Duplicate,
}

/// What a released step held.
#[derive(Debug)]
pub struct Released {
    /// Workers that arrived at the step (with a gradient or with none).
    pub count: usize,
    /// Their gradients combined by the barrier's rule; `None` when none had data.
    pub combined: Option<ParamSet>,
}

/// The barrier of one sync-mode job.
///
/// Invariant: every gradient in `pending` is for `step`, conformed to the layout.
#[derive(Debug, Default)]
pub struct SyncBarrier {
    /// The step being collected; equals the store's version in sync mode.
    step: u64,
    /// Gradients for `step` by worker id, each with the samples it was computed on (`None`:
    /// the worker had no data this step). A `BTreeMap` so that the sum runs in worker-id
    /// order whatever the arrival order: sync runs are bit-identical.
    pending: BTreeMap<u32, Option<(ParamSet, u64)>>,
    /// How the held gradients are combined at release.
    rule: AggregationRule,
}

impl SyncBarrier {
    /// An empty barrier collecting `step` (a server resumed at that version: the store's
    /// version), combining gradients by `rule`.
    #[must_use]
    pub fn with_rule(step: u64, rule: AggregationRule) -> Self {
        Self {
            step,
            pending: BTreeMap::new(),
            rule,
        }
    }

    /// The step being collected.
    #[must_use]
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Whether `worker` already gave its gradient for the current step.
    #[must_use]
    pub fn has(&self, worker: u32) -> bool {
        self.pending.contains_key(&worker)
    }

    /// Number of gradients held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no gradient is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Holds `worker`'s gradient for the current step, the mean over `samples` samples;
    /// `None` when it had no data to compute on (it still counts as arrived, and is left out
    /// of the average).
    pub fn offer(&mut self, worker: u32, gradient: Option<ParamSet>, samples: u64) -> Offer {
        if self.pending.contains_key(&worker) {
            return Offer::Duplicate;
        }
        self.pending.insert(worker, gradient.map(|g| (g, samples)));
        Offer::Accepted
    }

    /// The barrier's rule: the step is released once it holds something and no active
    /// worker still `owed` it (each has pushed it, left, or died). Returns what was held.
    pub fn release_unless_owed(&mut self, owed: bool) -> Option<Released> {
        if owed || self.is_empty() {
            return None;
        }
        let count = self.len();
        Some(Released {
            count,
            combined: self.release(),
        })
    }

    /// Releases the held gradients combined by the barrier's rule (in worker-id order:
    /// the mean sums in that order, weighted by samples when workers computed on different
    /// numbers of them, see [`AggregationRule::combine_weighted`]) and moves on to the next
    /// step. `None` when no gradient was held (the step still advances).
    pub fn release(&mut self) -> Option<ParamSet> {
        let (gradients, samples): (Vec<ParamSet>, Vec<u64>) = std::mem::take(&mut self.pending)
            .into_values()
            .flatten()
            .unzip();
        self.step += 1;
        self.rule.combine_weighted(gradients, &samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_core::{NamedTensor, Tensor};

    fn grad(values: &[f32]) -> ParamSet {
        ParamSet::new(vec![NamedTensor {
            name: "w".into(),
            tensor: Tensor::new(vec![values.len()], values.to_vec()).unwrap(),
        }])
    }

    #[test]
    fn release_averages_and_advances() {
        let mut b = SyncBarrier::default();
        assert_eq!(b.offer(1, Some(grad(&[1.0, 2.0])), 32), Offer::Accepted);
        assert_eq!(b.offer(0, Some(grad(&[3.0, 6.0])), 32), Offer::Accepted);
        assert_eq!(
            b.offer(0, Some(grad(&[100.0, 100.0])), 32),
            Offer::Duplicate
        );
        let mean = b.release().unwrap();
        assert_eq!(mean.get("w").unwrap().data(), &[2.0, 4.0]);
        assert_eq!(b.step(), 1);
        assert!(b.is_empty());
        assert!(b.release().is_none());
        assert_eq!(b.step(), 2, "an empty step still advances");
        b.offer(3, None, 0);
        b.offer(4, Some(grad(&[5.0, 5.0])), 32);
        assert_eq!(
            b.release().unwrap().get("w").unwrap().data(),
            &[5.0, 5.0],
            "a worker without data is left out"
        );
    }

    #[test]
    fn the_sum_does_not_depend_on_arrival_order() {
        // Values chosen so that f32 addition is not associative on them.
        let values = [[1.0e8f32], [1.0], [-1.0e8], [0.5]];
        let mut forward = SyncBarrier::default();
        for (i, v) in values.iter().enumerate() {
            forward.offer(i as u32, Some(grad(v)), 32);
        }
        let mut backward = SyncBarrier::default();
        for (i, v) in values.iter().enumerate().rev() {
            backward.offer(i as u32, Some(grad(v)), 32);
        }
        let a = forward.release().unwrap();
        let b = backward.release().unwrap();
        assert_eq!(
            a.get("w").unwrap().data()[0].to_bits(),
            b.get("w").unwrap().data()[0].to_bits()
        );
    }

    #[test]
    fn a_worker_that_computed_on_more_samples_weighs_more_in_the_mean() {
        // Worker 0 owns two data shards after a death (64 samples), worker 1 one (32): the
        // step's gradient is the mean over all 96 samples.
        let mut b = SyncBarrier::default();
        b.offer(0, Some(grad(&[3.0, 0.0])), 64);
        b.offer(1, Some(grad(&[0.0, 3.0])), 32);
        let g = b.release().unwrap();
        assert_eq!(g.entries()[0].tensor.data(), &[2.0, 1.0]);
    }
}
