//! The worker's view of the parameter server when the model is split over S shards:
//! one connection and one exchange stream per shard, each step's round trip made with
//! all of them concurrently, and the full parameter set assembled from the parts.

use futures_util::future::try_join_all;

use downpour_core::ParamSet;
use downpour_core::partition::ShardPlan;
use downpour_core::status::Evaluation;

use std::time::Instant;

use downpour_core::timing::PhaseTimes;

use crate::client::{
    ClientError, ExchangeStream, ExchangeTiming, PullTiming, Pulled, Push, Receipt, Registration,
    ServerClient,
};
use crate::client_config::ClientConfig;

/// What one step's round trip with every shard returned.
#[derive(Debug, Clone)]
pub struct Exchanged {
    /// Shard 0's receipt.
    pub receipt: Receipt,
    /// Whether shard 0 asks for an evaluation of the parameters received.
    pub evaluate: bool,
    /// From shard 0: the logical data shards to compute in the next step.
    pub data_shards: Vec<u32>,
    /// Where the time went.
    pub timing: ExchangeTiming,
}

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
    /// `streams[k]`: the exchange stream with shard k, once opened; all `None` after a
    /// failed exchange, so the next one opens them again.
    streams: Vec<Option<ExchangeStream>>,
}

impl ShardedServer {
    /// Connects to the shards shard 0 named at registration (with `config`'s token and TLS
    /// settings) and attaches the worker to each under its id and session secret. With one shard this is just the connection it already has.
    ///
    /// # Errors
    /// [`ClientError`] when a shard cannot be reached or refuses the worker.
    pub async fn attach(
        shard0: ServerClient,
        config: &ClientConfig,
        registration: &Registration,
        plan: ShardPlan,
        name: &str,
    ) -> Result<Self, ClientError> {
        let mut clients = vec![shard0];
        for address in &registration.shard_addresses {
            let mut client = ServerClient::connect_with(&config.with_address(address)).await?;
            // The secret shard 0 issued proves to this shard who the worker is.
            client.set_session(
                registration.assignment.worker_id,
                registration.session.clone(),
            );
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
            streams: (0..shards).map(|_| None).collect(),
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
        self.take_parts(parts.into_iter().map(|(p, _)| Some(p)).collect());
        timing.decode += assembling.elapsed();
        Ok((evaluate, data_shards, timing))
    }

    /// One step's round trip with every shard, concurrently, each on its exchange
    /// stream (opened on first use): sends each shard its part of `gradient`, computed
    /// from parameters of the versions `base` (one per shard: [`Self::versions`] when it
    /// was computed; with prefetch, older than the last parameters received), with the
    /// worker's phase totals (to shard 0), and receives the parameters for `next_step`
    /// into [`Self::params`]. An empty `gradient` with `push.samples == 0` tells every
    /// shard the worker had no data this step. `push.base_version` is ignored: `base`
    /// gives it per shard.
    ///
    /// Returns shard 0's receipt, whether it asks for an evaluation and the logical data
    /// shards to compute in `next_step` (none without a next step), and where the time
    /// went (the longest round trip over the shards; splitting, encoding and decoding
    /// summed).
    ///
    /// # Errors
    /// [`ClientError`] when a shard refuses or a stream breaks; every stream is dropped
    /// then, and opened again on the next call.
    pub async fn exchange(
        &mut self,
        push: &Push,
        base: &[u64],
        gradient: &ParamSet,
        phases: Option<&PhaseTimes>,
        next_step: Option<u64>,
    ) -> Result<Exchanged, ClientError> {
        let result = self
            .exchange_all(push, base, gradient, phases, next_step)
            .await;
        if result.is_err() {
            self.streams.iter_mut().for_each(|s| *s = None);
        }
        result
    }

    async fn exchange_all(
        &mut self,
        push: &Push,
        base: &[u64],
        gradient: &ParamSet,
        phases: Option<&PhaseTimes>,
        next_step: Option<u64>,
    ) -> Result<Exchanged, ClientError> {
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
        let exchanges = self
            .streams
            .iter_mut()
            .zip(&self.clients)
            .zip(parts)
            .enumerate()
            .map(|(k, ((stream, client), part))| {
                let push = Push {
                    base_version: base[k],
                    ..*push
                };
                let phases = if k == 0 { phases } else { None };
                let mut client = client.clone();
                async move {
                    if stream.is_none() {
                        *stream = Some(client.open_exchange().await?);
                    }
                    let stream = stream.as_mut().expect("opened above");
                    stream
                        .exchange(&push, part.as_ref().unwrap_or(gradient), phases, next_step)
                        .await
                }
            });
        let mut replies = try_join_all(exchanges).await?;
        let mut timing = ExchangeTiming {
            encode: split,
            ..ExchangeTiming::default()
        };
        for (_, _, t) in &replies {
            timing.call = timing.call.max(t.call);
            timing.send = timing.send.max(t.send);
            timing.applied = timing.applied.max(t.applied);
            timing.waited = timing.waited.max(t.waited);
            timing.encode += t.encode;
            timing.decode += t.decode;
        }
        let receipt = replies[0].0;
        let (evaluate, data_shards) = match &mut replies[0].1 {
            Some(p) => (p.evaluate, std::mem::take(&mut p.data_shards)),
            None => (false, Vec::new()),
        };
        let assembling = Instant::now();
        let parts: Vec<Option<Pulled>> = replies.into_iter().map(|(_, p, _)| p).collect();
        self.take_parts(parts);
        timing.decode += assembling.elapsed();
        Ok(Exchanged {
            receipt,
            evaluate,
            data_shards,
            timing,
        })
    }

    /// Keeps the parameters received from each shard (none without a next step).
    fn take_parts(&mut self, parts: Vec<Option<Pulled>>) {
        if parts.len() == 1 {
            if let Some(part) = parts.into_iter().next().flatten() {
                self.versions[0] = part.version;
                self.params = part.params;
            }
            return;
        }
        for (k, part) in parts.into_iter().enumerate() {
            if let Some(part) = part {
                self.versions[k] = part.version;
                self.plan.write_part(&mut self.params, k, &part.params);
            }
        }
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
