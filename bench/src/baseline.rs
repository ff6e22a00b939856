//! The single-process baseline: the same job trained by the worker's model and the
//! server's optimizer step in this process, with no server and no network
//! ([`crate::local_trainer`]); its repeats are interleaved with the sweep's.

use crate::local_trainer::{LocalTrainError, train_locally};
use downpour_server::Job;

use crate::config::Target;
use crate::measure::BaselineMeasurement;

/// Why the baseline failed.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Training failed.
    #[error("single-process baseline: {0}")]
    Train(#[from] LocalTrainError),
    /// The training thread panicked.
    #[error("single-process baseline thread failed: {0}")]
    Thread(String),
}

/// Trains `job` locally once, on a blocking thread (repeat number `repeat`).
///
/// # Errors
/// [`BaselineError`] when training fails.
pub async fn run_once(
    job: &Job,
    repeat: usize,
    target: Target,
) -> Result<BaselineMeasurement, BaselineError> {
    let job = job.clone();
    let run = tokio::task::spawn_blocking(move || train_locally(&job))
        .await
        .map_err(|e| BaselineError::Thread(e.to_string()))??;
    Ok(BaselineMeasurement::from_local(repeat, &run, target))
}
