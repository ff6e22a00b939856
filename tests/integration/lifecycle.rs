//! The launcher's life cycle: Ctrl-C stops everything, and a failed process fails the run.

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
