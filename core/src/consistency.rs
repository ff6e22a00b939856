//! The consistency modes and stale-gradient policies as jobs, status and reports name
//! them. The rules they imply live in the server (`downpour_server::consistency`).

use serde::{Deserialize, Serialize};

/// How the server orders gradient updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyMode {
    /// Bulk-synchronous (BSP): each step waits for one gradient from every active
    /// worker, applies their average (summed in worker-id order), then serves the next version.
    #[default]
    Sync,
    /// Stale-synchronous (SSP): gradients are applied as they arrive, but a worker may
    /// run at most `staleness` steps ahead of the slowest active worker; its pull waits otherwise.
    Ssp,
    /// Asynchronous (ASP, Downpour SGD): each gradient is applied as it arrives.
    Async,
}

impl ConsistencyMode {
    /// The name used in job files and status.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Ssp => "ssp",
            Self::Async => "async",
        }
    }
}

/// What async and SSP modes do with a stale gradient (staleness counted in versions:
/// updates applied between the gradient's pull and its push).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalenessPolicy {
    /// Apply it as it is.
    #[default]
    Accept,
    /// Discard it when its staleness exceeds `max_staleness` (the step still counts as done).
    Drop,
    /// Apply it with the learning rate scaled by `1 / (1 + staleness)`.
    Damp,
}
