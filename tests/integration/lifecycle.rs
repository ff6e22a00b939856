//! The launcher's life cycle: Ctrl-C stops everything (after saving the last version's weights
//! and the report), and a failed process fails the run; a finished job stays finished: a
//! worker that comes back after the end exits 0, and a server started on a finished job's
//! checkpoints serves status and exits when asked.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use downpour_core::status::JOB_FINISHED;
use downpour_worker::ServerClient;

use crate::support::{
    downpour, processes_with, signal, start_worker, wait_for_line, wait_with_timeout,
};

/// Starts a long local run and waits until its workers are training.
fn start_long_run(dir: &Path) -> (Child, String) {
    let child = downpour()
        .args([
            "train",
            "--workers",
            "2",
            "--epochs",
            "100000",
            "--quiet",
            "--run-dir",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let address = wait_for_line(&dir.join("server.addr"), Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(&address).len() < 2 {
        assert!(Instant::now() < deadline, "workers never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    (child, address)
}

fn assert_no_orphans(dir: &Path, address: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = processes_with(address)
            .into_iter()
            .chain(processes_with(&dir.display().to_string()))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_stops_the_server_and_every_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut launcher, address) = start_long_run(&dir);
    signal(launcher.id() as i32, libc::SIGINT);
    let status = wait_with_timeout(&mut launcher, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_no_orphans(&dir, &address);
    // The last version's weights and the report were saved before the servers stopped.
    let report: downpour_launch::report::RunReport =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(!report.finished);
    assert!(report.final_metrics.version > 0, "no step was trained");
    let weights = dir.join("weights.safetensors");
    assert_eq!(
        safetensors_metadata(&weights)["downpour_version"],
        report.final_metrics.version.to_string(),
        "the weights are the report's version"
    );
    let params = downpour_launch::weights::read_safetensors(&weights).unwrap();
    assert!(!params.entries().is_empty());
    assert!(
        stderr.contains("wrote ") && stderr.contains("not finished"),
        "{stderr}"
    );
}

/// The `__metadata__` of a safetensors file.
fn safetensors_metadata(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    header["__metadata__"].as_object().unwrap().clone()
}

#[test]
fn when_every_worker_dies_the_run_fails_with_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut launcher, address) = start_long_run(&dir);
    for pid in processes_with(&address) {
        if processes_with("worker-").contains(&pid) {
            signal(pid, libc::SIGKILL);
        }
    }
    let status = wait_with_timeout(&mut launcher, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("failed (signal: 9"), "{stderr}");
    assert_no_orphans(&dir, &address);
}

#[test]
fn a_dead_server_fails_the_run_with_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut launcher, address) = start_long_run(&dir);
    let server = processes_with(&dir.join("job.toml").display().to_string());
    assert_eq!(server.len(), 1, "one server process");
    signal(server[0], libc::SIGKILL);
    let status = wait_with_timeout(&mut launcher, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("failed"), "{stderr}");
    assert_no_orphans(&dir, &address);
}

#[test]
fn train_keeps_checkpoints_in_the_run_directory_and_resume_finishes_an_interrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // About 10 ms a step: long enough to interrupt after the first checkpoints.
    let job = [
        "--workers",
        "2",
        "--epochs",
        "12",
        "--slow-worker",
        "0:10",
        "--slow-worker",
        "1:10",
        "--heartbeat-timeout",
        "2",
        "--quiet",
    ];
    let mut launcher = downpour()
        .arg("train")
        .args(job)
        .args(["--checkpoint-every-steps", "40", "--run-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoints = dir.join("checkpoints").join("server");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(&checkpoints).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".dpck"))
    }) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint in {}",
            checkpoints.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(launcher.id() as i32, libc::SIGINT);
    let status = wait_with_timeout(&mut launcher, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    let read_report = || -> downpour_launch::report::RunReport {
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
    };
    let interrupted = read_report();
    assert!(!interrupted.finished);
    assert!(interrupted.final_metrics.version > 0);

    // Without checkpoints there is nothing to resume from.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("job.toml"), "").unwrap();
    let out = downpour()
        .arg("train")
        .arg("--resume")
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kept no checkpoints"), "{stderr}");

    let out = downpour()
        .args(["train", "--quiet", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = read_report();
    assert!(resumed.finished);
    assert_eq!(
        resumed.epochs.len(),
        12,
        "every epoch, before and after the interruption"
    );
    assert!(resumed.final_metrics.version > interrupted.final_metrics.version);
    // Sync mode: one version a step, so the job ends at 12 epochs' steps, as metrics.csv's
    // first row (the end of epoch 1) counts them.
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 12, "{csv}");
    let per_epoch: u64 = rows[0].split(',').next().unwrap().parse().unwrap();
    assert_eq!(resumed.final_metrics.version, 12 * per_epoch);
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.contains("resumed from checkpoint"), "{log}");
    assert!(resumed.final_metrics.test_accuracy.unwrap() > 0.9);
}

/// `downpour server` for a 1-worker, 2-epoch job writing checkpoints to `ckpt`, its log
/// captured; returns the process and its address.
fn start_checkpointed_server(ckpt: &Path, port_file: &Path, extra: &[&str]) -> (Child, String) {
    let child = downpour()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--epochs",
            "2",
        ])
        .args(["--heartbeat-timeout", "2", "--checkpoint-dir"])
        .arg(ckpt)
        .arg("--port-file")
        .arg(port_file)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = wait_for_line(port_file, Duration::from_secs(30));
    (child, address)
}

async fn wait_finished(client: &mut ServerClient) -> downpour_core::status::ServerStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.status().await.unwrap();
        if status.finished {
            return status;
        }
        assert!(Instant::now() < deadline, "the job did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_comes_back_after_the_end_exits_0_and_the_job_stays_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let (mut server, address) = start_checkpointed_server(&ckpt, &tmp.path().join("a.addr"), &[]);
    let mut worker = start_worker(&address, "w");
    assert!(wait_with_timeout(&mut worker, Duration::from_secs(60)).success());
    let mut client = ServerClient::connect(&address).await.unwrap();
    let finished = wait_finished(&mut client).await;

    // A worker started after the end is told so and exits 0 at once.
    let started = Instant::now();
    let mut late = start_worker(&address, "late");
    let code = wait_with_timeout(&mut late, Duration::from_secs(30));
    assert!(code.success(), "the late worker exits 0: {code}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A bare Register after the end: FAILED_PRECONDITION "job finished" for a new name; the
    // id of the worker that trained, without its session secret, is refused before that
    // (authentication comes first: no client learns anything as another worker).
    let refused = client.register("again", None).await.unwrap_err();
    assert!(refused.is_job_finished(), "{refused}");
    assert_eq!(refused.code(), Some(tonic::Code::FailedPrecondition));
    assert!(refused.to_string().contains(JOB_FINISHED), "{refused}");
    let impostor = client.register("again", Some(0)).await.unwrap_err();
    assert_eq!(
        impostor.code(),
        Some(tonic::Code::PermissionDenied),
        "{impostor}"
    );
    let after = client.status().await.unwrap();
    assert!(after.finished, "status stays finished");
    assert_eq!(after.version, finished.version);
    assert_eq!(
        after.workers.len(),
        1,
        "nobody was added: {:?}",
        after.workers
    );
    assert_eq!(after.final_evaluation, finished.final_evaluation);

    // Stopped (a shutdown checkpoint of the finished job), then started again on it.
    signal(server.id() as i32, libc::SIGTERM);
    wait_with_timeout(&mut server, Duration::from_secs(30));
    let started = Instant::now();
    let (mut again, address) =
        start_checkpointed_server(&ckpt, &tmp.path().join("b.addr"), &["--exit-when-done"]);
    let mut client = ServerClient::connect(&address).await.unwrap();
    let status = client.status().await.unwrap();
    assert!(status.finished, "the resumed job is finished");
    assert_eq!(status.version, finished.version);
    let (version, params) = client.parameters().await.unwrap();
    assert_eq!(version, finished.version);
    assert!(params.num_values() > 0, "export still works");
    let mut returning = start_worker(&address, "w");
    assert!(wait_with_timeout(&mut returning, Duration::from_secs(30)).success());
    // It exits by itself once no worker has tried to register for a while.
    let code = wait_with_timeout(&mut again, Duration::from_secs(60));
    assert!(code.success(), "{code}");
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "it waited for workers"
    );
    let mut log = String::new();
    std::io::Read::read_to_string(again.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("the job has finished"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
}
