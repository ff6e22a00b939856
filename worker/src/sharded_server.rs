//! The worker's view of the parameter server when the model is split over S shards:
//! one connection per shard, pulls and pushes sent to all of them concurrently, and the
//! full parameter set assembled from the parts.

use futures_util::future::try_join_all;

use downpour_core::ParamSet;
use downpour_core::partition::ShardPlan;
use downpour_core::status::Evaluation;

use std::time::{Duration, Instant};

use downpour_core::timing::PhaseTimes;

use crate::client::{ClientError, PullTiming, Push, PushReceipt, Registration, ServerClient};

/// Connections to every shard of one job.
///
/// Invariants: `clients[k]` talks to shard k; `versions[k]` is the version of the
/// parameters last pulled from shard k; `params` holds the full model assembled from
/// the last pull of every shard, in layout order (or, after [`Self::take_params`] and
/// before the next pull, a full-size buffer whose values are stale).
#[derive(Debug)]
pub struct ShardedServer {
    /// One client per shard; shard 0 is the one the worker registered with.
    clients: Vec<ServerClient>,
    /// How the model is split.
    plan: ShardPlan,
    /// The version last pulled from each shard.
    versions: Vec<u64>,
    /// The full parameters last pulled.
    params: ParamSet,
    /// A full-size buffer handed back with [`Self::give_back`], reused by the next
    /// [`Self::take_params`] instead of allocating one.
    spare: Option<ParamSet>,
}

impl ShardedServer {
    /// Connects to the shards shard 0 named at registration and attaches the worker to
    /// each under its id. With one shard this is just the connection it already has.
    ///
    /// # Errors
    /// [`ClientError`] when a shard cannot be reached or refuses the worker.
    pub async fn attach(
        shard0: ServerClient,
        registration: &Registration,
        plan: ShardPlan,
        name: &str,
    ) -> Result<Self, ClientError> {
        let mut clients = vec![shard0];
        for address in &registration.shard_addresses {
            let mut client = ServerClient::connect(address).await?;
            client
                .register(name, Some(registration.assignment.worker_id))
                .await?;
            clients.push(client);
        }
        let shards = clients.len();
        Ok(Self {
            params: plan.zeros(),
            clients,
            plan,
            versions: vec![0; shards],
            spare: None,
        })
    }

    /// The client of shard 0 (evaluations and status go there).
    #[must_use]
    pub fn coordinator(&self) -> &ServerClient {
        &self.clients[0]
    }

    /// Every client, shard 0 first (for heartbeats and leaving).
    #[must_use]
    pub fn clients(&self) -> &[ServerClient] {
        &self.clients
    }

    /// The parameters last pulled.
    #[must_use]
    pub fn params(&self) -> &ParamSet {
        &self.params
    }

    /// The version last pulled from shard 0 (the one evaluations are reported against).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.versions[0]
    }

    /// The versions last pulled, one per shard: what a gradient computed now is based on.
    #[must_use]
    pub fn versions(&self) -> &[u64] {
        &self.versions
    }

    /// Takes the parameters last pulled (to compute on them while the next pull lands),
    /// leaving the spare buffer (or a new one) for that pull.
    pub fn take_params(&mut self) -> ParamSet {
        let spare = self.spare.take().unwrap_or_else(|| self.plan.zeros());
        std::mem::replace(&mut self.params, spare)
    }

    /// Hands back a buffer taken with [`Self::take_params`], for the next one.
    pub fn give_back(&mut self, params: ParamSet) {
        self.spare = Some(params);
    }

    /// Pulls every shard's part for `step` (each waits as its consistency rule says) and
    /// assembles the full parameters. Returns whether shard 0 asks for an evaluation, the
    /// logical data shards to compute this step, and where the time went (the longest
    /// wait and call over the shards, which run concurrently; decoding and assembling summed).
    ///
    /// # Errors
    /// [`ClientError`] when a shard refuses.
    pub async fn pull(
        &mut self,
        worker: u32,
        step: u64,
        final_pull: bool,
    ) -> Result<(bool, Vec<u32>, PullTiming), ClientError> {
        let pulls = self.clients.iter().map(|c| {
            let mut c = c.clone();
            async move { c.pull_timed(worker, step, final_pull).await }
        });
        let mut parts = try_join_all(pulls).await?;
        let mut timing = PullTiming::default();
        for (_, t) in &parts {
            timing.call = timing.call.max(t.call);
            timing.waited = timing.waited.max(t.waited);
            timing.decode += t.decode;
        }
        let evaluate = parts[0].0.evaluate;
        let data_shards = std::mem::take(&mut parts[0].0.data_shards);
        let assembling = Instant::now();
        if parts.len() == 1 {
            let (part, _) = parts.into_iter().next().expect("one part");
            self.versions[0] = part.version;
            self.params = part.params;
        } else {
            for (k, (part, _)) in parts.into_iter().enumerate() {
                self.versions[k] = part.version;
                self.plan.write_part(&mut self.params, k, &part.params);
            }
        }
        timing.decode += assembling.elapsed();
        Ok((evaluate, data_shards, timing))
    }

    /// Pushes each shard its part of `gradient`, computed from parameters of the versions
    /// `base` (one per shard: [`Self::versions`] at the time it was computed; with prefetch,
    /// older than the last pull), with the worker's phase totals (to shard 0). An empty
    /// `gradient` with `samples == 0` tells every shard the worker had no data this step.
    /// Returns where the time went (splitting and encoding summed; the longest call and
    /// apply over the shards).
    ///
    /// # Errors
    /// [`ClientError`] when a shard refuses.
    #[allow(clippy::too_many_arguments, reason = "one push's worth of facts")]
    pub async fn push(
        &mut self,
        base: &[u64],
        worker: u32,
        step: u64,
        loss: f64,
        samples: u64,
        gradient: &ParamSet,
        phases: Option<&PhaseTimes>,
    ) -> Result<PushReceipt, ClientError> {
        let splitting = Instant::now();
        // One shard, or nothing to split: every shard gets the gradient as it is.
        let parts: Vec<Option<ParamSet>> = if self.clients.len() == 1 || gradient.is_empty() {
            vec![None; self.clients.len()]
        } else {
            (0..self.clients.len())
                .map(|k| Some(self.plan.slice(gradient, k)))
                .collect()
        };
        let split = splitting.elapsed();
        let pushes = self
            .clients
            .iter()
            .zip(parts)
            .enumerate()
            .map(|(k, (c, part))| {
                let mut c = c.clone();
                let push = Push {
                    worker,
                    step,
                    base_version: base[k],
                    loss,
                    samples,
                };
                let phases = if k == 0 { phases } else { None };
                async move {
                    c.push_timed(&push, part.as_ref().unwrap_or(gradient), phases)
                        .await
                }
            });
        let receipts = try_join_all(pushes).await?;
        let mut receipt = PushReceipt {
            staleness: receipts[0].staleness,
            encode: split,
            call: Duration::ZERO,
            applied: Duration::ZERO,
        };
        for r in &receipts {
            receipt.encode += r.encode;
            receipt.call = receipt.call.max(r.call);
            receipt.applied = receipt.applied.max(r.applied);
        }
        Ok(receipt)
    }

    /// Reports an evaluation to shard 0.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    pub async fn report_evaluation(&mut self, evaluation: &Evaluation) -> Result<(), ClientError> {
        self.clients[0].report_evaluation(evaluation).await
    }

    /// Leaves every shard.
    ///
    /// # Errors
    /// The first [`ClientError`].
    pub async fn leave(&mut self, worker: u32) -> Result<(), ClientError> {
        let leaves = self.clients.iter().map(|c| {
            let mut c = c.clone();
            async move { c.leave(worker).await }
        });
        try_join_all(leaves).await?;
        Ok(())
    }
}
