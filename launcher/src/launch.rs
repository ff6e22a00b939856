//! `downpour train`: one server and N worker processes on loopback, watched to the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use downpour_core::partition::ShardPlan;
use downpour_core::status::ServerStatus;
use downpour_core::token::Token;
use downpour_server::session::SessionKey;
use downpour_server::{Job, JobError};
use downpour_worker::{ClientConfig, ClientError, ClientTls, ServerClient};

use crate::certs::{CertFiles, CertsError, make_certs};
use crate::cli::TrainArgs;
use crate::credentials::{SECURITY_ENV, SESSION_KEY_ENV, TOKEN_ENV};
use crate::processes::ChildProcess;
use crate::progress::Progress;
use crate::report::{DataReport, Hardware, RunFiles, RunReport};
use crate::weights::{WeightsError, data_metadata, write_safetensors};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The job is invalid.
    #[error(transparent)]
    Job(#[from] JobError),
    /// A flag is malformed.
    #[error("{0}")]
    Usage(String),
    /// A file or process could not be created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A child process failed.
    #[error("{name} failed ({status}); last lines of {log}:\n{tail}")]
    ChildFailed {
        /// The process.
        name: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The server could not be queried.
    #[error("talking to the server: {0}")]
    Client(#[from] ClientError),
    /// The weights could not be written.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The run's TLS certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted; every process was stopped")]
    Interrupted,
}

/// What a successful run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The report, as written.
    pub report: RunReport,
    /// Where it was written.
    pub report_path: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// Parses `--slow-worker K:MS` values into a per-worker delay in milliseconds.
fn slow_workers(specs: &[String], workers: usize) -> Result<HashMap<usize, u64>, LaunchError> {
    let mut delays = HashMap::new();
    for s in specs {
        let parsed = s
            .split_once(':')
            .and_then(|(k, ms)| Some((k.parse::<usize>().ok()?, ms.parse::<u64>().ok()?)));
        match parsed {
            Some((k, ms)) if k < workers => {
                delays.insert(k, ms);
            }
            _ => {
                return Err(LaunchError::Usage(format!(
                    "--slow-worker expects K:MS with K < {workers}, got {s}"
                )));
            }
        }
    }
    Ok(delays)
}

/// Parses `--sabotage-worker K:KIND` values into the kind each named worker is given.
fn sabotaged_workers(
    specs: &[String],
    workers: usize,
) -> Result<HashMap<usize, String>, LaunchError> {
    let mut kinds = HashMap::new();
    for s in specs {
        let parsed = s.split_once(':').and_then(|(k, kind)| {
            let k = k.parse::<usize>().ok()?;
            downpour_worker::sabotage::Sabotage::parse(kind).ok()?;
            Some((k, kind.to_string()))
        });
        match parsed {
            Some((k, kind)) if k < workers => {
                kinds.insert(k, kind);
            }
            _ => {
                return Err(LaunchError::Usage(format!(
                    "--sabotage-worker expects K:garbage or K:huge with K < {workers}, got {s}"
                )));
            }
        }
    }
    Ok(kinds)
}

/// The secrets and certificates of one local run: a fresh random token for every process,
/// a session key shared by the servers, and, with `--tls`, the run's certificates.
#[derive(Debug)]
struct RunSecurity {
    /// The token every process of the run uses (given to children in the environment).
    token: Token,
    /// The servers' session key.
    session_key: SessionKey,
    /// The run's certificates, with `--tls`.
    certs: Option<CertFiles>,
}

impl RunSecurity {
    /// Fresh secrets; with `tls`, certificates for loopback in `run_dir/certs`.
    fn new(run_dir: &Path, tls: bool) -> Result<Self, LaunchError> {
        let token = SessionKey::random().to_hex();
        let certs = tls
            .then(|| {
                make_certs(
                    &run_dir.join("certs"),
                    &["127.0.0.1".into(), "localhost".into()],
                )
            })
            .transpose()?;
        Ok(Self {
            token: Token::parse(&token).expect("64 hex digits are a token"),
            session_key: SessionKey::random(),
            certs,
        })
    }

    /// A child's environment: the launcher's security settings removed, then the run's
    /// token (and, for servers, the session key) set.
    fn env(&self, server: bool) -> Vec<(&'static str, Option<String>)> {
        let mut env: Vec<(&str, Option<String>)> =
            SECURITY_ENV.iter().map(|&name| (name, None)).collect();
        env.push((TOKEN_ENV, Some(self.token.expose().to_string())));
        if server {
            env.push((SESSION_KEY_ENV, Some(self.session_key.to_hex())));
        }
        env
    }

    /// The TLS flags of a server (`server`) or a worker.
    fn tls_args(&self, server: bool) -> Vec<String> {
        let Some(c) = &self.certs else {
            return Vec::new();
        };
        let path = |p: &PathBuf| p.display().to_string();
        if server {
            vec![
                "--tls-cert".into(),
                path(&c.server_cert),
                "--tls-key".into(),
                path(&c.server_key),
            ]
        } else {
            vec!["--tls-ca".into(), path(&c.ca_cert)]
        }
    }

    /// How the launcher itself reaches `address`.
    fn client(&self, address: &str) -> Result<ClientConfig, LaunchError> {
        let tls = match &self.certs {
            None => None,
            Some(c) => Some(ClientTls {
                ca_pem: std::fs::read(&c.ca_cert)
                    .map_err(io(format!("reading {}", c.ca_cert.display())))?,
                domain: None,
                identity: None,
            }),
        };
        Ok(ClientConfig {
            address: address.to_string(),
            token: Some(self.token.clone()),
            tls,
        })
    }
}

/// Borrows an environment list as [`ChildProcess::spawn`] takes it.
fn env_refs<'a>(env: &'a [(&'static str, Option<String>)]) -> Vec<(&'a str, Option<&'a str>)> {
    env.iter().map(|(n, v)| (*n, v.as_deref())).collect()
}

/// Runs a job locally and writes its report. Stops every process on `interrupt`.
///
/// # Errors
/// [`LaunchError`] when the job is invalid, a process fails, or on interruption.
pub async fn train(
    args: &TrainArgs,
    interrupt: CancellationToken,
) -> Result<TrainOutcome, LaunchError> {
    let spec = args.job.to_spec()?;
    let job: Job = spec.clone().validate()?;
    let workers = job.workers();
    let delays = slow_workers(&args.slow_worker, workers)?;
    let sabotaged = sabotaged_workers(&args.sabotage_worker, workers)?;

    let run_dir = args.run_dir.clone().unwrap_or_else(default_run_dir);
    std::fs::create_dir_all(&run_dir).map_err(io(format!("creating {}", run_dir.display())))?;
    let job_path = run_dir.join("job.toml");
    std::fs::write(&job_path, spec.to_toml())
        .map_err(io(format!("writing {}", job_path.display())))?;
    if args.servers == 0 {
        return Err(LaunchError::Usage(
            "--servers must be at least 1, got 0".into(),
        ));
    }
    crate::cli::check_clipping(&spec, args.servers)?;
    let exe = std::env::current_exe().map_err(io("locating the downpour binary"))?;
    let security = RunSecurity::new(&run_dir, args.tls)?;

    let started = Instant::now();
    let mut progress = Progress::new(args.quiet);
    progress.phase("starting the server");
    let servers_wanted = args.servers;
    let mut servers: Vec<ChildProcess> = Vec::with_capacity(servers_wanted);
    let mut children = Vec::new();
    let result = async {
        // Shards 1.. first: shard 0 must be told where they are.
        let mut addresses = Vec::with_capacity(servers_wanted);
        for shard in (0..servers_wanted).rev() {
            let peers = if shard == 0 {
                addresses.iter().rev().cloned().collect::<Vec<String>>()
            } else {
                Vec::new()
            };
            let run = ServerRun {
                exe: &exe,
                run_dir: &run_dir,
                job_path: &job_path,
                count: servers_wanted,
                security: &security,
            };
            let (child, address) = start_server(&run, shard, &peers, &interrupt).await?;
            servers.push(child);
            addresses.push(address);
        }
        servers.reverse();
        addresses.reverse();
        let address = addresses[0].clone();
        let worker_env = security.env(false);
        progress.phase(&format!("starting {workers} workers"));
        for k in 0..workers {
            let mut wargs = vec![
                "worker".to_string(),
                "--server".into(),
                address.clone(),
                "--name".into(),
                format!("worker-{k}"),
            ];
            if let Some(ms) = delays.get(&k) {
                wargs.extend(["--step-delay-ms".into(), ms.to_string()]);
            }
            if let Some(kind) = sabotaged.get(&k) {
                wargs.extend(["--sabotage".into(), kind.clone()]);
            }
            if let Some(ms) = args.simulate_compute_ms {
                wargs.extend(["--simulate-compute-ms".into(), ms.to_string()]);
            }
            wargs.extend(security.tls_args(false));
            let name = format!("worker-{k}");
            let log = run_dir.join(format!("{name}.log"));
            children.push(
                ChildProcess::spawn(&name, &exe, &wargs, &env_refs(&worker_env), log)
                    .map_err(io(format!("starting {name}")))?,
            );
        }
        let status = watch(
            &mut servers,
            &mut children,
            &security.client(&address)?,
            &mut progress,
            &interrupt,
        )
        .await?;
        let plan = ShardPlan::new(&job.layout, servers_wanted);
        let mut params = plan.zeros();
        let mut shards = Vec::with_capacity(servers_wanted);
        for (k, shard_address) in addresses.iter().enumerate() {
            let mut client = ServerClient::connect_with(&security.client(shard_address)?).await?;
            let (_, part) = client.parameters().await?;
            plan.write_part(&mut params, k, &part);
            shards.push(client.status().await?.shard);
        }
        Ok::<_, LaunchError>((status, params, shards))
    }
    .await;
    progress.finish();
    for child in &mut children {
        child.stop(Duration::from_secs(5)).await;
    }
    for server in &mut servers {
        server.stop(Duration::from_secs(5)).await;
    }
    let (status, params, shards) = result?;
    let version = status.version;

    let weights = run_dir.join("weights.safetensors");
    let mut metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("downpour_version".to_string(), version.to_string()),
        ("job".to_string(), status.job.to_string()),
    ]);
    metadata.extend(data_metadata(
        job.standardization.as_ref(),
        job.class_names.as_deref(),
    ));
    write_safetensors(&weights, &params, metadata)?;
    let mut logs: Vec<PathBuf> = servers.iter().map(|s| s.log.clone()).collect();
    logs.extend(children.iter().map(|c| c.log.clone()));
    let files = RunFiles {
        run_dir: run_dir.clone(),
        job: job_path,
        weights,
        logs,
    };
    let hardware = Hardware {
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        worker_processes: workers,
        server_processes: servers_wanted,
    };
    let report = RunReport::new(
        &status,
        shards,
        started.elapsed().as_secs_f64(),
        files,
        hardware,
        DataReport {
            train_samples: job.train_len,
            standardization: job.standardization.clone(),
            class_names: job.class_names.clone(),
        },
    );
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| run_dir.join("report.json"));
    report
        .write(&report_path)
        .map_err(io(format!("writing {}", report_path.display())))?;
    Ok(TrainOutcome {
        report,
        report_path,
    })
}

fn default_run_dir() -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    PathBuf::from("runs").join(format!("{}-{}", now.as_secs(), std::process::id()))
}

fn failed(child: &ChildProcess, status: String) -> LaunchError {
    LaunchError::ChildFailed {
        name: child.name.clone(),
        status,
        log: child.log.display().to_string(),
        tail: child.log_tail(15),
    }
}

/// What every server shard of a run is started with.
#[derive(Debug)]
struct ServerRun<'a> {
    /// The `downpour` binary.
    exe: &'a Path,
    /// The run directory (logs, address files).
    run_dir: &'a Path,
    /// The job file.
    job_path: &'a Path,
    /// Shards in the run.
    count: usize,
    /// The run's token, session key and certificates.
    security: &'a RunSecurity,
}

/// Starts server shard `shard` of `run.count` and waits for its address.
async fn start_server(
    run: &ServerRun<'_>,
    shard: usize,
    peers: &[String],
    interrupt: &CancellationToken,
) -> Result<(ChildProcess, String), LaunchError> {
    let ServerRun {
        exe,
        run_dir,
        job_path,
        count,
        security,
    } = *run;
    let name = if count == 1 {
        "server".to_string()
    } else {
        format!("server-{shard}")
    };
    let port_file = run_dir.join(format!("{name}.addr"));
    let _ = std::fs::remove_file(&port_file);
    let mut sargs = vec![
        "server".to_string(),
        "--job".into(),
        job_path.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--port-file".into(),
        port_file.display().to_string(),
        "--shard".into(),
        shard.to_string(),
        "--servers".into(),
        count.to_string(),
    ];
    if !peers.is_empty() {
        sargs.extend(["--shard-addresses".into(), peers.join(",")]);
    }
    sargs.extend(security.tls_args(true));
    let env = security.env(true);
    let log = run_dir.join(format!("{name}.log"));
    let mut child = ChildProcess::spawn(&name, exe, &sargs, &env_refs(&env), log)
        .map_err(io(format!("starting {name}")))?;
    let address = wait_for_address(&mut child, &port_file, interrupt).await?;
    Ok((child, address))
}

/// Waits for the server to write its address, failing if it exits first.
///
/// # Errors
/// [`LaunchError`] when the server exits first, the file stays empty too long, or on
/// interruption.
pub async fn wait_for_address(
    server: &mut ChildProcess,
    port_file: &Path,
    interrupt: &CancellationToken,
) -> Result<String, LaunchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(port_file)
            && text.ends_with('\n')
        {
            return Ok(text.trim().to_string());
        }
        if let Some(status) = server.try_wait().map_err(io("watching the server"))? {
            return Err(failed(server, status.to_string()));
        }
        if Instant::now() > deadline {
            return Err(failed(server, "did not start listening within 60 s".into()));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            () = interrupt.cancelled() => return Err(LaunchError::Interrupted),
        }
    }
}

/// Watches the processes and the server's status until every worker has exited.
async fn watch(
    servers: &mut [ChildProcess],
    workers: &mut [ChildProcess],
    address: &ClientConfig,
    progress: &mut Progress,
    interrupt: &CancellationToken,
) -> Result<ServerStatus, LaunchError> {
    let mut client: Option<ServerClient> = None;
    let mut last_status: Option<ServerStatus> = None;
    let mut reported = vec![false; workers.len()];
    let mut failures = Vec::new();
    loop {
        if client.is_none() {
            client = ServerClient::connect_with(address).await.ok();
        }
        if let Some(c) = client.as_mut()
            && let Ok(status) = c.status().await
        {
            progress.update(&status);
            last_status = Some(status);
        }
        for server in servers.iter_mut() {
            if let Some(status) = server.try_wait().map_err(io("watching the server"))? {
                return Err(failed(server, status.to_string()));
            }
        }
        let mut running = 0;
        for (k, w) in workers.iter_mut().enumerate() {
            match w.try_wait().map_err(io("watching the workers"))? {
                Some(status) if !status.success() => {
                    if !reported[k] {
                        // A dead worker does not stop the job: the server hands its data
                        // to the others once it misses its heartbeat timeout.
                        reported[k] = true;
                        progress.println(&format!(
                            "warning: {} failed ({status}); the job goes on without it",
                            w.name
                        ));
                        failures.push(failed(w, status.to_string()));
                    }
                }
                Some(_) => {}
                None => running += 1,
            }
        }
        if running == 0 {
            let status = match client.as_mut() {
                Some(c) => c.status().await?,
                None => last_status
                    .ok_or_else(|| failed(&servers[0], "never answered a status request".into()))?,
            };
            progress.update(&status);
            if !status.finished {
                return Err(failures.pop().unwrap_or_else(|| {
                    failed(&servers[0], "workers exited before the job finished".into())
                }));
            }
            return Ok(status);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = interrupt.cancelled() => return Err(LaunchError::Interrupted),
        }
    }
}
