//! What the training loop needs from a parameter server, as a trait: the loop in
//! [`crate::trainer`] is written once over it. [`ShardedServer`] implements it over gRPC
//! (one connection per server shard); an in-process implementation over the server's
//! I/O-free core lives in a crate that depends on both (the bench crate's
//! `in_process`), so this crate never depends on the server's.
//!
//! A service holds the parameters last received (the loop computes on them in place),
//! and the facts of a pull and of an exchange travel as one struct each.

use std::future::Future;

use downpour_core::status::Evaluation;
use downpour_core::timing::PhaseTimes;
use downpour_core::{ParamSet, Push};

use crate::client::{ClientError, PullTiming};
use crate::sharded_server::{Exchanged, ShardedServer};

/// One pull: the parameters a worker needs for `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRequest {
    /// The worker.
    pub worker: u32,
    /// The step it is about to compute (the job's total steps for the final pull).
    pub step: u64,
    /// The pull after the last step: it waits for training to end and may ask for the
    /// final evaluation.
    pub final_pull: bool,
}

/// What a pull said besides the parameters (which the service now holds).
#[derive(Debug, Clone, PartialEq)]
pub struct PulledStep {
    /// Whether the server asks the worker to evaluate these parameters.
    pub evaluate: bool,
    /// The logical data shards whose next batch the worker computes; empty: it has no
    /// data this step and pushes an empty gradient.
    pub data_shards: Vec<u32>,
    /// Where the pull's time went.
    pub timing: PullTiming,
}

/// One step's exchange: a gradient and the facts that travel with it out, the
/// parameters for `next_step` back.
#[derive(Debug, Clone, Copy)]
pub struct StepExchange<'a> {
    /// Who computed the gradient, for which step, its loss and samples (its
    /// `base_version` is taken from `base`, one per server shard).
    pub push: Push,
    /// The versions (one per server shard) of the parameters it was computed from.
    pub base: &'a [u64],
    /// The gradient (empty, with 0 samples, when the worker had no data this step).
    pub gradient: &'a ParamSet,
    /// The worker's phase totals so far, for the server's report.
    pub phases: Option<&'a PhaseTimes>,
    /// The step whose parameters come back; `None` after the last step (a receipt only).
    pub next_step: Option<u64>,
}

/// A parameter server as the training loop sees it.
pub trait ParameterService {
    /// The parameters of the last pull.
    fn params(&self) -> &ParamSet;

    /// The version of the last pull (shard 0's, with several shards).
    fn version(&self) -> u64;

    /// The version of each shard's part of the last pull.
    fn versions(&self) -> &[u64];

    /// Takes the parameters out (to compute on another thread) until [`Self::give_back`].
    fn take_params(&mut self) -> ParamSet;

    /// Returns parameters taken out, so the next pull can reuse their buffers.
    fn give_back(&mut self, params: ParamSet);

    /// Pulls the parameters for a step, waiting as the consistency mode says.
    ///
    /// # Errors
    /// [`ClientError`] when the server refuses or cannot be reached.
    fn pull(
        &mut self,
        request: PullRequest,
    ) -> impl Future<Output = Result<PulledStep, ClientError>> + Send;

    /// Sends a step's gradient and receives the parameters for the next step, once the
    /// consistency mode lets the worker start it (one round trip).
    ///
    /// # Errors
    /// [`ClientError`] when the server refuses or cannot be reached.
    fn exchange(
        &mut self,
        exchange: StepExchange<'_>,
    ) -> impl Future<Output = Result<Exchanged, ClientError>> + Send;

    /// Reports an evaluation.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    fn report_evaluation(
        &mut self,
        evaluation: &Evaluation,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;

    /// Leaves the job.
    ///
    /// # Errors
    /// [`ClientError`] when refused.
    fn leave(&mut self, worker: u32) -> impl Future<Output = Result<(), ClientError>> + Send;
}

impl ParameterService for ShardedServer {
    fn params(&self) -> &ParamSet {
        ShardedServer::params(self)
    }

    fn version(&self) -> u64 {
        ShardedServer::version(self)
    }

    fn versions(&self) -> &[u64] {
        ShardedServer::versions(self)
    }

    fn take_params(&mut self) -> ParamSet {
        ShardedServer::take_params(self)
    }

    fn give_back(&mut self, params: ParamSet) {
        ShardedServer::give_back(self, params);
    }

    async fn pull(&mut self, request: PullRequest) -> Result<PulledStep, ClientError> {
        let (evaluate, data_shards, timing) =
            ShardedServer::pull(self, request.worker, request.step, request.final_pull).await?;
        Ok(PulledStep {
            evaluate,
            data_shards,
            timing,
        })
    }

    async fn exchange(&mut self, e: StepExchange<'_>) -> Result<Exchanged, ClientError> {
        ShardedServer::exchange(self, &e.push, e.base, e.gradient, e.phases, e.next_step).await
    }

    async fn report_evaluation(&mut self, evaluation: &Evaluation) -> Result<(), ClientError> {
        ShardedServer::report_evaluation(self, evaluation).await
    }

    async fn leave(&mut self, worker: u32) -> Result<(), ClientError> {
        ShardedServer::leave(self, worker).await
    }
}
