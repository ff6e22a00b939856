//! The `server`, `worker` and `health` subcommands: runtimes with capped threads, signals, shutdown.

use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use downpour_core::status::ServerStatus;
use downpour_server::metrics::ServerMetrics;
use downpour_server::server_core::ShardRole;
use downpour_server::{JobError, ServeError, ServeOptions};
use downpour_worker::{ClientConfig, ClientError, ServerClient, WorkerError, WorkerOptions};

use crate::cli::{HealthArgs, ServerArgs, WorkerArgs};
use crate::credentials::CredentialError;
use crate::metrics_endpoint::spawn_metrics_endpoint;
use crate::report::DataReport;

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
    /// The checkpoints could not be used.
    #[error(transparent)]
    Resume(#[from] downpour_server::resume::ResumeError),
    /// The finished job's outputs could not be written.
    #[error(transparent)]
    Outputs(#[from] crate::outputs::OutputError),
    /// A token, key or certificate could not be loaded.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
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
    let spec = args.job.to_spec()?;
    args.check_shards(&spec)?;
    if args.output_dir.is_some() && args.servers > 1 {
        return Err(ServerCommandError::Job(JobError::Invalid {
            field: "--output-dir",
            reason: format!(
                "each of {} shards holds only a part of the model; write the weights with `downpour export` against every shard",
                args.servers
            ),
        }));
    }
    let job_toml = spec.to_toml();
    let job = spec.validate()?;
    // What the outputs need of the job once it has been handed to the core.
    let data = DataReport {
        train_samples: job.train_len,
        standardization: job.standardization.clone(),
        class_names: job.class_names.clone(),
    };
    let role = ShardRole {
        index: args.shard,
        count: args.servers,
    };
    let security = args.security.load()?;
    let params = job.layout.num_values();
    let (workers, mode) = (job.workers(), job.mode().name());
    // Resume (or refuse a checkpoint of another job) before listening.
    let mut started = downpour_server::resume::start(
        job,
        role.clone(),
        args.checkpoint_dir.as_deref(),
        args.resume_from.as_deref(),
    )?;
    if let Some(key) = security.session_key {
        started.core.use_session_key(key);
    } else if args.shard > 0 {
        tracing::warn!(
            shard = args.shard,
            "no session key (--session-key-file or DOWNPOUR_SESSION_KEY): this shard cannot \
             check workers' session secrets; give every shard of the job the same key"
        );
    }
    if !security.tokens.required() {
        tracing::warn!(
            "no token (--token-file or DOWNPOUR_TOKEN): the server is UNAUTHENTICATED, \
             anyone who can reach {} can read the weights and act as a worker",
            args.listen
        );
    }
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
        let address = listener
            .local_addr()
            .map_err(|source| ServerCommandError::Io {
                what: "reading the bound address".into(),
                source,
            })?;
        tracing::info!(
            %address,
            params,
            workers,
            mode,
            shard = args.shard,
            servers = args.servers,
            "listening"
        );
        if let Some(path) = &args.port_file {
            std::fs::write(path, format!("{address}\n")).map_err(|source| {
                ServerCommandError::Io {
                    what: format!("writing {}", path.display()),
                    source,
                }
            })?;
        }
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        let metrics = ServerMetrics::default();
        if let Some(address) = &args.metrics_listen {
            let mut registry = Registry::default();
            metrics.register(&mut registry, args.shard);
            spawn_metrics_endpoint(address, registry, shutdown.clone())
                .await
                .map_err(|source| ServerCommandError::Io {
                    what: format!("binding the metrics address {address}"),
                    source,
                })?;
        }
        let options = ServeOptions {
            role,
            // Only shard 0 tells workers where the others are.
            shard_addresses: if args.shard == 0 {
                args.shard_addresses.clone()
            } else {
                Vec::new()
            },
            exit_when_done: args.exit_when_done,
            checkpointing: started.checkpointing,
            metrics,
            tokens: security.tokens,
            tls: security.tls,
        };
        let outcome = downpour_server::serve(started.core, listener, shutdown, options).await?;
        if let Some(dir) = &args.output_dir {
            if outcome.status.finished {
                let written = crate::outputs::write(dir, &job_toml, &data, &outcome)?;
                tracing::info!(
                    weights = %written.weights.display(),
                    report = %written.report.display(),
                    version = outcome.status.version,
                    "wrote the finished job's outputs"
                );
            } else {
                tracing::warn!(
                    dir = %dir.display(),
                    version = outcome.status.version,
                    "stopped before the job finished: no outputs written"
                );
            }
        }
        Ok(())
    })
}

/// Why the worker subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerCommandError {
    /// The worker stopped.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A token or certificate could not be loaded.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The metrics address could not be bound.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs one worker on a single-threaded runtime (one core of compute per worker process).
///
/// # Errors
/// [`WorkerCommandError`] for an unusable token or certificate, or when the server refuses
/// the worker, the data or model fail, the metrics address cannot be bound, or on a signal.
pub fn worker(args: &WorkerArgs) -> Result<(), WorkerCommandError> {
    let server = args.security.config(&args.server)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");
    runtime.block_on(async {
        let mut options = WorkerOptions::new(args.server.clone());
        options.server = server;
        options.name = args.name.clone().unwrap_or_else(host_name);
        options.connect_timeout = Duration::from_secs(args.connect_timeout);
        options.step_delay = Duration::from_millis(args.step_delay_ms);
        options.simulate_compute = args.simulate_compute_ms.map(Duration::from_millis);
        options.sabotage = args.sabotage;
        let shutdown = CancellationToken::new();
        cancel_on_signal(shutdown.clone());
        if let Some(address) = &args.metrics_listen {
            let mut registry = Registry::default();
            options.metrics.register(&mut registry);
            spawn_metrics_endpoint(address, registry, shutdown.clone())
                .await
                .map_err(|source| WorkerCommandError::Io {
                    what: format!("binding the metrics address {address}"),
                    source,
                })?;
        }
        downpour_worker::run(&options, shutdown).await?;
        Ok(())
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

/// Why the health probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The server could not be reached, or refused the status request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A token or certificate could not be loaded.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// No answer in time.
    #[error("{server} did not answer a status request within {seconds} s")]
    Timeout {
        /// The server's address.
        server: String,
        /// The time allowed.
        seconds: u64,
    },
}

/// Asks the server for its status once: the probe behind container health checks.
///
/// # Errors
/// [`HealthError`] when the server cannot be reached, refuses, or does not answer in time.
pub fn health(args: &HealthArgs) -> Result<(), HealthError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");
    let config = args.security.config(&args.server)?;
    runtime
        .block_on(probe(&config, Duration::from_secs(args.timeout)))
        .map(|_| ())
}

/// Connects to `server` and asks for its status, all within `timeout`.
///
/// # Errors
/// [`HealthError`] when the server cannot be reached, refuses, or does not answer in time.
pub async fn probe(server: &ClientConfig, timeout: Duration) -> Result<ServerStatus, HealthError> {
    let ask = async {
        let mut client = ServerClient::connect_with(server).await?;
        Ok(client.status().await?)
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| HealthError::Timeout {
            server: server.address.clone(),
            seconds: timeout.as_secs(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_running_server_is_healthy() {
        let job = downpour_server::JobSpec::default().validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(downpour_server::serve(
            downpour_server::server_core::ServerCore::new(job),
            listener,
            shutdown.clone(),
            ServeOptions::default(),
        ));
        let status = probe(&ClientConfig::new(address), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!status.finished);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = probe(&ClientConfig::new(address), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HealthError::Client(_)), "{err}");
    }
}
