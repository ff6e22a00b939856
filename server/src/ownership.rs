//! Which worker computes which logical data shard.
//!
//! The training set is cut into `L` logical shards once (`training.workers` of them),
//! and every step each logical shard's next mini-batch is computed by its owner. Owners
//! change as workers come and go, so every sample is still trained on each epoch: a dead
//! or departed worker's shards go to the active workers with the fewest, and a worker
//! that joins takes one from the worker with the most (when someone holds two or more).
//! Ties go to the lowest worker id, so the assignment is deterministic.

use std::collections::BTreeSet;

/// The owner of each logical data shard.
///
/// Invariant: every owner is a member of the active set last passed to [`Self::rebalance`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataOwnership {
    /// `owners[k]` computes logical shard k; `None` while no worker is active.
    owners: Vec<Option<u32>>,
}

impl DataOwnership {
    /// `shards` logical shards, none owned yet.
    #[must_use]
    pub fn new(shards: usize) -> Self {
        Self {
            owners: vec![None; shards],
        }
    }

    /// Number of logical shards.
    #[must_use]
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when there are no logical shards.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The logical shards `worker` owns, in order.
    #[must_use]
    pub fn shards_of(&self, worker: u32) -> Vec<u32> {
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == Some(worker))
            .map(|(k, _)| k as u32)
            .collect()
    }

    /// The owner of logical shard `k`.
    #[must_use]
    pub fn owner(&self, k: usize) -> Option<u32> {
        self.owners[k]
    }

    /// Reassigns shards so that only `active` workers own them, as evenly as possible,
    /// moving as few shards as it can. Returns the shards that changed owner.
    pub fn rebalance(&mut self, active: &BTreeSet<u32>) -> Vec<usize> {
        let mut moved = Vec::new();
        if active.is_empty() {
            for (k, o) in self.owners.iter_mut().enumerate() {
                if o.take().is_some() {
                    moved.push(k);
                }
            }
            return moved;
        }
        // Orphans (unowned, or owned by a worker no longer active) go to the least loaded.
        for k in 0..self.owners.len() {
            if self.owners[k].is_none_or(|w| !active.contains(&w)) {
                self.owners[k] = Some(self.least_loaded(active));
                moved.push(k);
            }
        }
        // Then level: move one shard at a time from the most to the least loaded.
        loop {
            let least = self.least_loaded(active);
            let most = self.most_loaded(active);
            if self.count(most) <= self.count(least) + 1 {
                break;
            }
            let k = self
                .owners
                .iter()
                .rposition(|o| *o == Some(most))
                .expect("the most loaded owns a shard");
            self.owners[k] = Some(least);
            moved.push(k);
        }
        moved
    }

    fn count(&self, worker: u32) -> usize {
        self.owners.iter().filter(|o| **o == Some(worker)).count()
    }

    /// The active worker owning the fewest shards (lowest id on ties).
    fn least_loaded(&self, active: &BTreeSet<u32>) -> u32 {
        *active
            .iter()
            .min_by_key(|&&w| (self.count(w), w))
            .expect("active is not empty")
    }

    /// The active worker owning the most shards (lowest id on ties).
    fn most_loaded(&self, active: &BTreeSet<u32>) -> u32 {
        *active
            .iter()
            .min_by_key(|&&w| (std::cmp::Reverse(self.count(w)), w))
            .expect("active is not empty")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_first_workers_get_one_shard_each_in_id_order() {
        let mut o = DataOwnership::new(3);
        o.rebalance(&set(&[0, 1, 2]));
        assert_eq!(
            (o.shards_of(0), o.shards_of(1), o.shards_of(2)),
            (vec![0], vec![1], vec![2])
        );
    }

    #[test]
    fn a_dead_workers_shard_goes_to_a_survivor_and_nothing_else_moves() {
        let mut o = DataOwnership::new(3);
        o.rebalance(&set(&[0, 1, 2]));
        let moved = o.rebalance(&set(&[0, 2]));
        assert_eq!(moved, vec![1]);
        assert_eq!(o.shards_of(0), vec![0, 1]);
        assert_eq!(o.shards_of(2), vec![2]);
        assert!(
            (0..3).all(|k| o.owner(k).is_some()),
            "every shard still has an owner"
        );
    }

    #[test]
    fn a_joining_worker_takes_a_shard_from_the_most_loaded() {
        let mut o = DataOwnership::new(3);
        o.rebalance(&set(&[0, 1]));
        assert_eq!(o.shards_of(0), vec![0, 2]);
        let moved = o.rebalance(&set(&[0, 1, 5]));
        assert_eq!(moved, vec![2]);
        assert_eq!(o.shards_of(5), vec![2]);
        assert_eq!(o.shards_of(0), vec![0]);
    }

    #[test]
    fn more_workers_than_shards_leaves_some_idle() {
        let mut o = DataOwnership::new(2);
        o.rebalance(&set(&[0, 1, 2]));
        assert_eq!(o.shards_of(2), Vec::<u32>::new());
        // When a shard frees, the idle worker gets it.
        o.rebalance(&set(&[0, 2]));
        assert_eq!(o.shards_of(2), vec![1]);
    }

    #[test]
    fn no_active_worker_leaves_every_shard_unowned() {
        let mut o = DataOwnership::new(2);
        o.rebalance(&set(&[3]));
        o.rebalance(&set(&[]));
        assert!(o.owner(0).is_none() && o.owner(1).is_none());
    }

    #[test]
    fn a_global_batch_is_re_split_over_the_survivors_and_a_newcomer() {
        use downpour_core::plan::worker_batch_share;
        let share = |o: &DataOwnership, w: u32| worker_batch_share(512, 4, o.shards_of(w).len());
        let mut o = DataOwnership::new(4);
        o.rebalance(&set(&[0, 1, 2, 3]));
        assert_eq!([0, 1, 2, 3].map(|w| share(&o, w)), [Ok(128); 4]);
        // Worker 1 dies: its shard goes to the least loaded; the step still has 512 samples.
        o.rebalance(&set(&[0, 2, 3]));
        assert_eq!([0, 2, 3].map(|w| share(&o, w)), [Ok(256), Ok(128), Ok(128)]);
        // Two more die: the last worker computes the whole global batch.
        o.rebalance(&set(&[3]));
        assert_eq!(share(&o, 3), Ok(512));
        // A worker joins and takes shards over: 256 each.
        o.rebalance(&set(&[3, 7]));
        assert_eq!([3, 7].map(|w| share(&o, w)), [Ok(256); 2]);
    }
}
