//! Starting a server shard: afresh, or from the newest valid checkpoint in its
//! directory, or from a named checkpoint; and saying which.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checkpoint::{CheckpointError, CheckpointStore, fingerprint};
use crate::job::Job;
use crate::server_core::{CoreError, ServerCore, ShardRole};
use crate::service::Checkpointing;

/// Why a server shard could not start from its checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The checkpoint directory or file could not be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint does not fit the job's model or optimizer.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A shard ready to serve, and where it came from.
#[derive(Debug)]
pub struct Started {
    /// The shard's state.
    pub core: ServerCore,
    /// The checkpoint it resumed from, if any.
    pub resumed_from: Option<PathBuf>,
    /// How it will write checkpoints, if it does.
    pub checkpointing: Option<Checkpointing>,
}

/// Starts shard `role` of `job`: from `named` when given, else from the newest valid
/// checkpoint in `dir` when there is one, else afresh. With `dir`, the shard also writes
/// checkpoints there at the job's cadence.
///
/// # Errors
/// [`ResumeError`] for an unusable directory, a checkpoint of another job, a named file
/// that does not load, or one whose tensors do not fit the model.
pub fn start(
    job: Job,
    role: ShardRole,
    dir: Option<&Path>,
    named: Option<&Path>,
) -> Result<Started, ResumeError> {
    let job_toml = job.spec.identity_toml();
    let fp = fingerprint(&job_toml, role.index, role.count);
    let ft = &job.spec.fault_tolerance;
    let store = dir
        .map(|d| CheckpointStore::open(d, ft.keep_checkpoints))
        .transpose()?;
    let found = match (named, &store) {
        (Some(path), _) => Some((path.to_path_buf(), CheckpointStore::load(path, &fp)?)),
        (None, Some(store)) => store.load_latest(&fp)?,
        (None, None) => None,
    };
    let checkpointing = store.map(|store| Checkpointing {
        store,
        fingerprint: fp,
        job_toml,
        every_steps: ft.checkpoint_every_steps,
        every: ft.checkpoint_every_seconds.map(Duration::from_secs_f64),
    });
    let (core, resumed_from) = match found {
        Some((path, snapshot)) => {
            let version = snapshot.version;
            let mut core = ServerCore::resume(job, role, snapshot, Duration::ZERO)?;
            let status = core.checkpoint_status_mut();
            status.resumed_from = Some(path.display().to_string());
            status.resumed_version = Some(version);
            tracing::info!(path = %path.display(), version, "resumed from checkpoint");
            (core, Some(path))
        }
        None => {
            if dir.is_some() {
                tracing::info!("no checkpoint to resume from: starting afresh");
            }
            (ServerCore::with_role(job, role), None)
        }
    };
    Ok(Started {
        core,
        resumed_from,
        checkpointing,
    })
}
