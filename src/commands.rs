//! The `server` and `worker` subcommands: runtimes with capped threads, signals, shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use downpour_server::{JobError, ServeError, ServeOptions};
use downpour_worker::{WorkerError, WorkerOptions};

use crate::cli::{ServerArgs, WorkerArgs};

/// Why the server subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerCommandError {
    /// The job is invalid.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The listen address could not be bound, or the address file written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

/// Runs a parameter server until the job ends (with `--exit-when-done`) or a signal arrives.
///
/// The runtime has two worker threads: the machines this targets have few cores, and
/// the optimizer step runs on the thread that completes a step.
///
/// # Errors
/// [`ServerCommandError`] for an invalid job, an unusable address, or a transport failure.
pub fn server(args: &ServerArgs) -> Result<(), ServerCommandError> {
    let job = args.job.to_spec()?.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServerCommandError::Io {
            what: "starting the runtime".into(),
            source,
        })?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|source| ServerCommandError::Io {
                what: format!("binding {}", args.listen),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| ServerCommandError::Io {
            what: "reading the bound address".into(),
            source,
        })?;
        tracing::info!(%address, params = job.layout.num_values(), workers = job.workers(), mode = job.mode().name(), "listening");
        if let Some(path) = &args.port_file {
            std::fs::write(path, format!("{address}\n")).map_err(|source| ServerCommandError::Io {
                what: format!("writing {}", path.display()),
                source,
            })?;
        }
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        downpour_server::serve(job, listener, shutdown, ServeOptions { exit_when_done: args.exit_when_done }).await?;
        Ok(())
    })
}

/// Runs one worker on a single-threaded runtime (one core of compute per worker process).
///
/// # Errors
/// [`WorkerError`] when the server refuses it, the data or model fail, or on a signal.
pub fn worker(args: &WorkerArgs) -> Result<(), WorkerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");
    runtime.block_on(async {
        let mut options = WorkerOptions::new(args.server.clone());
        options.name = args.name.clone().unwrap_or_else(host_name);
        options.connect_timeout = Duration::from_secs(args.connect_timeout);
        options.step_delay = Duration::from_millis(args.step_delay_ms);
        options.simulate_compute = args.simulate_compute_ms.map(Duration::from_millis);
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        downpour_worker::run(&options, shutdown).await.map(|_| ())
    })
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "worker".to_string())
}
