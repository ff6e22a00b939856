//! `downpour train`: one server and N worker processes on loopback, watched to the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use downpour_core::ParamSet;
use downpour_core::partition::ShardPlan;
use downpour_core::status::{ServerStatus, ShardStatus};
use downpour_core::token::Token;
use downpour_server::session::SessionKey;
use downpour_server::{Job, JobError, JobSpec};
use downpour_worker::{ClientConfig, ClientError, ClientTls, ServerClient};

use crate::certs::{CertFiles, CertsError, make_certs};
use crate::cli::TrainArgs;
use crate::credentials::{SECURITY_ENV, SESSION_KEY_ENV, TOKEN_ENV};
use crate::processes::ChildProcess;
use crate::progress::Progress;
use crate::report::{DataReport, Hardware, RunFiles, RunReport};
use crate::run_log::RunLog;
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
    let (spec, run_dir) = job_and_run_dir(args)?;
    let job: Job = spec.clone().validate()?;
    let workers = job.workers();
    let delays = slow_workers(&args.slow_worker, workers)?;
    let sabotaged = sabotaged_workers(&args.sabotage_worker, workers)?;

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
    // Checkpoints are kept in the run directory when the job asks for them, and a resumed
    // run reads them back from there.
    let ft = &spec.fault_tolerance;
    let checkpoints = args.resume.is_some()
        || ft.checkpoint_every_steps.is_some()
        || ft.checkpoint_every_seconds.is_some();

    let mut run_log =
        RunLog::create(&run_dir, args.tensorboard.as_deref()).map_err(|(path, source)| {
            LaunchError::Io {
                what: format!("creating {}", path.display()),
                source,
            }
        })?;
    let security = RunSecurity::new(&run_dir, args.tls)?;

    let started = Instant::now();
    let mut progress = Progress::new(args.quiet);
    let metrics_ports = metrics_ports(args.metrics_port_base, args.servers, workers)?;
    for (name, port) in &metrics_ports {
        progress.println(&format!(
            "metrics: {name} at http://127.0.0.1:{port}/metrics"
        ));
    }
    let metrics_listen = |name: &str| {
        metrics_ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, port)| format!("127.0.0.1:{port}"))
    };
    progress.phase("starting the server");
    let servers_wanted = args.servers;
    let mut servers: Vec<ChildProcess> = Vec::with_capacity(servers_wanted);
    let mut children = Vec::new();
    // Every shard's address, shard 0 first, once all have started.
    let mut addresses = Vec::with_capacity(servers_wanted);
    let plan = ShardPlan::new(&job.layout, servers_wanted);
    let result = async {
        // Shards 1.. first: shard 0 must be told where they are.
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
                checkpoints,
            };
            let metrics = metrics_listen(&server_name(shard, servers_wanted));
            let (child, address) = start_server(&run, shard, &peers, metrics, &interrupt).await?;
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
            if let Some(listen) = metrics_listen(&name) {
                wargs.extend(["--metrics-listen".into(), listen]);
            }
            let log = run_dir.join(format!("{name}.log"));
            children.push(
                ChildProcess::spawn(&name, &exe, &wargs, &env_refs(&worker_env), log)
                    .map_err(io(format!("starting {name}")))?,
            );
        }
        let mut view = RunView {
            progress: &mut progress,
            log: &mut run_log,
        };
        let status = watch(
            &mut servers,
            &mut children,
            &security.client(&address)?,
            &mut view,
            &interrupt,
        )
        .await?;
        let (params, shards) = collect(&plan, &addresses, &security).await?;
        Ok::<_, LaunchError>((status, params, shards))
    }
    .await;
    progress.finish();
    for child in &mut children {
        child.stop(Duration::from_secs(5)).await;
    }
    // Interrupted with every server up: the workers are stopped, so the last version is
    // final; save it and the report before stopping the servers.
    let interrupted = matches!(result, Err(LaunchError::Interrupted));
    let result = match result {
        Err(LaunchError::Interrupted) if addresses.len() == servers_wanted => {
            progress.println("interrupted: saving the last version's weights and the report");
            salvage(&plan, &addresses, &security).await.map_err(|e| {
                progress.println(&format!("could not save the last version: {e}"));
                LaunchError::Interrupted
            })
        }
        other => other,
    };
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
        metrics_csv: run_log.csv_path().to_path_buf(),
        tensorboard: run_log.events_path().map(Path::to_path_buf),
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
    if interrupted {
        progress.println(&format!(
            "wrote {} and {} (version {version}, not finished)",
            report_path.display(),
            report.files.weights.display()
        ));
        return Err(LaunchError::Interrupted);
    }
    Ok(TrainOutcome {
        report,
        report_path,
    })
}

/// Every shard's current parameters, assembled, and each shard's traffic.
async fn collect(
    plan: &ShardPlan,
    addresses: &[String],
    security: &RunSecurity,
) -> Result<(ParamSet, Vec<ShardStatus>), LaunchError> {
    let mut params = plan.zeros();
    let mut shards = Vec::with_capacity(addresses.len());
    for (k, shard_address) in addresses.iter().enumerate() {
        let mut client = ServerClient::connect_with(&security.client(shard_address)?).await?;
        let (_, part) = client.parameters().await?;
        plan.write_part(&mut params, k, &part);
        shards.push(client.status().await?.shard);
    }
    Ok((params, shards))
}

/// After an interruption: shard 0's status and every shard's parameters, as they are.
async fn salvage(
    plan: &ShardPlan,
    addresses: &[String],
    security: &RunSecurity,
) -> Result<(ServerStatus, ParamSet, Vec<ShardStatus>), LaunchError> {
    let status = ServerClient::connect_with(&security.client(&addresses[0])?)
        .await?
        .status()
        .await?;
    let (params, shards) = collect(plan, addresses, security).await?;
    Ok((status, params, shards))
}

/// The job and the run directory: from the flags, or, with `--resume RUN_DIR`, the job that
/// run wrote and that run's directory.
fn job_and_run_dir(args: &TrainArgs) -> Result<(JobSpec, PathBuf), LaunchError> {
    let Some(dir) = &args.resume else {
        let run_dir = args.run_dir.clone().unwrap_or_else(default_run_dir);
        refuse_a_used_run_dir(&run_dir, args.force)?;
        return Ok((args.job.to_spec()?, run_dir));
    };
    if args.job.job.is_some() {
        return Err(LaunchError::Usage(format!(
            "--resume takes the job from {}; --job cannot be given too",
            dir.join("job.toml").display()
        )));
    }
    let job_file = dir.join("job.toml");
    if !job_file.is_file() {
        return Err(LaunchError::Usage(format!(
            "--resume {}: no job.toml there; it is not a run directory",
            dir.display()
        )));
    }
    if !dir.join("checkpoints").is_dir() {
        return Err(LaunchError::Usage(format!(
            "--resume {}: that run kept no checkpoints (train with --checkpoint-every-steps N or --checkpoint-every-seconds S to keep them)",
            dir.display()
        )));
    }
    let mut job_args = args.job.clone();
    job_args.job = Some(job_file);
    Ok((job_args.to_spec()?, dir.clone()))
}

/// A run directory that holds files already is refused unless `force`: reusing one would
/// overwrite another run's report and weights without a word.
fn refuse_a_used_run_dir(run_dir: &Path, force: bool) -> Result<(), LaunchError> {
    let used = std::fs::read_dir(run_dir).is_ok_and(|mut entries| entries.next().is_some());
    if used && !force {
        return Err(LaunchError::Usage(format!(
            "the run directory {} is not empty (another run's files would be overwritten); \
             choose another --run-dir, or pass --force to reuse it",
            run_dir.display()
        )));
    }
    Ok(())
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

/// The process name of server shard `shard` of `count`.
fn server_name(shard: usize, count: usize) -> String {
    if count == 1 {
        "server".to_string()
    } else {
        format!("server-{shard}")
    }
}

/// `--metrics-port-base P`: each process's name and metrics port, shard K on P+K, worker I
/// on P+servers+I; none without the flag.
///
/// # Errors
/// [`LaunchError::Usage`] when the last port would exceed 65535.
fn metrics_ports(
    base: Option<u16>,
    servers: usize,
    workers: usize,
) -> Result<Vec<(String, u16)>, LaunchError> {
    let Some(base) = base else {
        return Ok(Vec::new());
    };
    let names = (0..servers)
        .map(|k| server_name(k, servers))
        .chain((0..workers).map(|i| format!("worker-{i}")));
    names
        .enumerate()
        .map(|(offset, name)| {
            u16::try_from(usize::from(base) + offset)
                .map(|port| (name, port))
                .map_err(|_| {
                    LaunchError::Usage(format!(
                        "--metrics-port-base {base}: {servers} servers and {workers} workers need ports up to {}, above 65535",
                        usize::from(base) + servers + workers - 1
                    ))
                })
        })
        .collect()
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
    /// Whether each shard keeps checkpoints, in `RUN_DIR/checkpoints/<name>`.
    checkpoints: bool,
}

/// Starts server shard `shard` of `run.count` and waits for its address.
async fn start_server(
    run: &ServerRun<'_>,
    shard: usize,
    peers: &[String],
    metrics_listen: Option<String>,
    interrupt: &CancellationToken,
) -> Result<(ChildProcess, String), LaunchError> {
    let ServerRun {
        exe,
        run_dir,
        job_path,
        count,
        security,
        checkpoints,
    } = *run;
    let name = server_name(shard, count);
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
    if checkpoints {
        let dir = run_dir.join("checkpoints").join(&name);
        sargs.extend(["--checkpoint-dir".into(), dir.display().to_string()]);
    }
    if let Some(listen) = metrics_listen {
        sargs.extend(["--metrics-listen".into(), listen]);
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

/// What the launcher shows and logs of each status it polls.
struct RunView<'a> {
    /// The terminal.
    progress: &'a mut Progress,
    /// `metrics.csv` and TensorBoard.
    log: &'a mut RunLog,
}

impl RunView<'_> {
    fn update(&mut self, status: &ServerStatus) -> Result<(), LaunchError> {
        self.progress.update(status);
        self.log
            .observe(status)
            .map_err(|(path, source)| LaunchError::Io {
                what: format!("writing {}", path.display()),
                source,
            })
    }
}

/// Watches the processes and the server's status until every worker has exited.
async fn watch(
    servers: &mut [ChildProcess],
    workers: &mut [ChildProcess],
    address: &ClientConfig,
    view: &mut RunView<'_>,
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
            view.update(&status)?;
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
                        view.progress.println(&format!(
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
            view.update(&status)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_ports_count_shards_then_workers() {
        assert!(metrics_ports(None, 2, 3).unwrap().is_empty());
        let ports = metrics_ports(Some(9100), 2, 2).unwrap();
        let expected = [
            ("server-0", 9100),
            ("server-1", 9101),
            ("worker-0", 9102),
            ("worker-1", 9103),
        ];
        assert_eq!(ports, expected.map(|(n, p)| (n.to_string(), p)).to_vec());
        assert_eq!(metrics_ports(Some(9100), 1, 1).unwrap()[0].0, "server");
        let err = metrics_ports(Some(65534), 2, 2).unwrap_err();
        assert!(err.to_string().contains("65537"), "{err}");
    }
}
