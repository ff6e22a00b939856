//! The launcher's life cycle: Ctrl-C stops everything (after saving the last version's weights
//! and the report), and a failed process fails the run.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{downpour, processes_with, signal, wait_for_line, wait_with_timeout};

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
