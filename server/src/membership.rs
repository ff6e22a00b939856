//! Who is in the job: registered workers, their shards and their counters.

use std::collections::BTreeMap;

use downpour_core::status::{StalenessStats, WorkerState, WorkerStatus};

/// One registered worker.
///
/// Invariant: `next_step` counts the pushes accepted from it (its steps are 0, 1, 2, …).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkerRecord {
    /// The label it registered with.
    pub name: String,
    /// Active, finished or left.
    pub state: WorkerState,
    /// Pulls served.
    pub pulls: u64,
    /// Gradients accepted.
    pub pushes: u64,
    /// Gradients refused.
    pub rejected_pushes: u64,
    /// Samples in accepted gradients.
    pub samples: u64,
    /// The next step it must push.
    pub next_step: u64,
    /// Loss of its last accepted gradient.
    pub last_loss: Option<f64>,
    /// When the server last heard from it (time since the server started).
    pub last_seen: std::time::Duration,
    /// Staleness of its gradients, in versions.
    pub staleness: StalenessStats,
    /// Staleness of its gradients, in steps.
    pub step_staleness: StalenessStats,
    /// Gradients discarded by the drop policy.
    pub dropped: u64,
}

/// The registered workers, by id.
///
/// Invariant: ids are handed out in increasing order from 0 and never reused.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Membership {
    /// Every worker that ever registered, by id (ordered, for deterministic iteration).
    workers: BTreeMap<u32, WorkerRecord>,
    /// The id the next registration gets.
    next_id: u32,
    /// Dead workers whose records were dropped ([`Self::fold_dead`]).
    #[serde(default)]
    folded_dead: u64,
    /// Samples in the accepted gradients of the folded workers.
    #[serde(default)]
    folded_samples: u64,
}

impl Membership {
    /// Adds a worker that will start at `start_step`; returns its id.
    pub fn register(&mut self, name: String, start_step: u64) -> u32 {
        let id = self.next_id;
        self.insert(id, name, start_step);
        id
    }

    /// Adds a worker under an id another shard assigned. Returns false (and changes
    /// nothing) when that id is already here.
    pub fn attach(&mut self, id: u32, name: String, start_step: u64) -> bool {
        if self.workers.contains_key(&id) {
            return false;
        }
        self.insert(id, name, start_step);
        true
    }

    fn insert(&mut self, id: u32, name: String, start_step: u64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
        self.workers.insert(
            id,
            WorkerRecord {
                name,
                state: WorkerState::Active,
                pulls: 0,
                pushes: 0,
                rejected_pushes: 0,
                samples: 0,
                next_step: start_step,
                last_loss: None,
                staleness: StalenessStats::default(),
                step_staleness: StalenessStats::default(),
                dropped: 0,
                last_seen: std::time::Duration::ZERO,
            },
        );
    }

    /// Worker records held (every worker ever registered, less the folded ones).
    #[must_use]
    pub fn registered(&self) -> usize {
        self.workers.len()
    }

    /// Drops the records of dead workers not heard from since `before` (time since the
    /// server started), keeping only their count and samples: the status stays small
    /// however many workers registered and died. Returns how many were folded.
    pub fn fold_dead(&mut self, before: std::time::Duration) -> usize {
        let mut folded = 0;
        let mut samples = 0u64;
        self.workers.retain(|_, r| {
            let fold = r.state == WorkerState::Dead && r.last_seen < before;
            if fold {
                folded += 1;
                samples = samples.saturating_add(r.samples);
            }
            !fold
        });
        self.folded_dead = self.folded_dead.saturating_add(folded as u64);
        self.folded_samples = self.folded_samples.saturating_add(samples);
        folded
    }

    /// Dead workers whose records were folded.
    #[must_use]
    pub fn folded_dead(&self) -> u64 {
        self.folded_dead
    }

    /// Samples in all accepted gradients, folded workers' included.
    #[must_use]
    pub fn samples_trained(&self) -> u64 {
        self.workers
            .values()
            .fold(self.folded_samples, |sum, r| sum.saturating_add(r.samples))
    }

    /// The record of `id`, if it ever registered.
    #[must_use]
    pub fn get(&self, id: u32) -> Option<&WorkerRecord> {
        self.workers.get(&id)
    }

    /// The record of `id`, mutable.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut WorkerRecord> {
        self.workers.get_mut(&id)
    }

    /// Prepares the records restored from a checkpoint for a server that has just
    /// started: every member is considered heard from at `now` (it gets a full heartbeat
    /// timeout to reconnect), and in sync mode every member redoes the step being
    /// collected at `version` (its gradient for that step, if any, was not in the checkpoint).
    pub fn restored(&mut self, now: std::time::Duration, sync_version: Option<u64>) {
        for r in self.workers.values_mut() {
            r.last_seen = now;
            if let Some(v) = sync_version
                && r.state.is_member()
            {
                r.next_step = r.next_step.min(v);
                if r.state == WorkerState::Finished && r.next_step < v {
                    r.state = WorkerState::Active;
                }
            }
        }
    }

    /// All records in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &WorkerRecord)> {
        self.workers.iter().map(|(&id, r)| (id, r))
    }

    /// Largest `next_step` over workers that have not left (0 when none).
    #[must_use]
    pub fn furthest_step(&self) -> u64 {
        self.iter()
            .filter(|(_, r)| r.state != WorkerState::Left)
            .map(|(_, r)| r.next_step)
            .max()
            .unwrap_or(0)
    }

    /// Smallest `next_step` over workers still training, if any.
    #[must_use]
    pub fn slowest_active_step(&self) -> Option<u64> {
        self.iter()
            .filter(|(_, r)| r.state == WorkerState::Active)
            .map(|(_, r)| r.next_step)
            .min()
    }

    /// Ids of the members (active or finished), in order.
    pub fn member_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter()
            .filter(|(_, r)| r.state.is_member())
            .map(|(id, _)| id)
    }

    /// Ids of the workers still training, in order.
    pub fn active_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter()
            .filter(|(_, r)| r.state == WorkerState::Active)
            .map(|(id, _)| id)
    }

    /// Counters for the status report, in id order; `data_shards(id)` gives what each computes.
    #[must_use]
    pub fn statuses(&self, data_shards: impl Fn(u32) -> Vec<u32>) -> Vec<WorkerStatus> {
        self.iter()
            .map(|(id, r)| WorkerStatus {
                id,
                name: r.name.clone(),
                state: r.state,
                data_shards: data_shards(id),
                pulls: r.pulls,
                pushes: r.pushes,
                rejected_pushes: r.rejected_pushes,
                samples: r.samples,
                next_step: r.next_step,
                last_loss: r.last_loss,
                staleness: r.staleness.clone(),
                step_staleness: r.step_staleness.clone(),
                dropped: r.dropped,
            })
            .collect()
    }
}
