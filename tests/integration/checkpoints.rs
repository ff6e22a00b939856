//! Checkpoints through real processes: a killed server comes back where it was, a
//! damaged newest checkpoint falls back to the previous one, another job's is refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use downpour_worker::ServerClient;

use crate::support::{ServerProcess, downpour, start_worker};

const JOB: &str =
    "[training]\nworkers = 2\nepochs = 120\n[fault_tolerance]\ncheckpoint_every_steps = 40\n";

async fn wait_for_version(client: &mut ServerClient, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.status().await.map(|s| s.version).unwrap_or(0) < version {
        assert!(Instant::now() < deadline, "version {version} never reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_server_restarts_from_its_checkpoint_and_the_workers_carry_on() {
    let ckpt = tempfile::tempdir().unwrap();
    let dir = ckpt.path().to_str().unwrap();
    let mut first = ServerProcess::start(JOB, &["--checkpoint-dir", dir]);
    let address = first.address.clone();
    let mut workers = [start_worker(&address, "a"), start_worker(&address, "b")];
    let mut client = ServerClient::connect(&address).await.unwrap();
    wait_for_version(&mut client, 1000).await;
    first.child.kill().unwrap(); // SIGKILL: no shutdown checkpoint
    first.child.wait().unwrap();
    drop(first);

    let second = ServerProcess::start_at(JOB, &["--checkpoint-dir", dir], &address);
    let mut client = ServerClient::connect(&second.address).await.unwrap();
    let status = client.status().await.unwrap();
    let resumed_at = status
        .checkpoint
        .resumed_version
        .expect("resumed from a checkpoint");
    // Killed at version 1000 or later; checkpoints every 40 versions (one may be skipped
    // while the previous one is still being written on a loaded machine).
    assert!(resumed_at >= 920, "resumed at version {resumed_at}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let s = client.status().await.unwrap();
        if s.finished {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for w in &mut workers {
        assert!(
            w.wait().unwrap().success(),
            "the workers reconnected and finished"
        );
    }
    assert_eq!(
        status.version, status.total_steps,
        "every step applied once"
    );
    assert!(status.final_evaluation.unwrap().test_accuracy.unwrap() >= 0.96);
}

fn write_checkpoints(dir: &str) {
    // A short job that writes a checkpoint every 10 steps and one at shutdown.
    let job =
        "[training]\nworkers = 1\nepochs = 2\n[fault_tolerance]\ncheckpoint_every_steps = 10\n";
    let mut server = ServerProcess::start(job, &["--checkpoint-dir", dir, "--exit-when-done"]);
    let mut w = start_worker(&server.address, "w");
    assert!(w.wait().unwrap().success());
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let ckpt = tempfile::tempdir().unwrap();
    let dir = ckpt.path().to_str().unwrap();
    write_checkpoints(dir);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "the last 3 are kept: {files:?}");
    let newest = files.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    // The same job (the flags match the job file above); the server says which checkpoint it took.
    let server = downpour()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-dir",
            dir,
            "--workers",
            "1",
            "--epochs",
            "2",
        ])
        .args(["--checkpoint-every-steps", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = stop_after_start(server);
    let previous = files[files.len() - 2].display().to_string();
    assert!(
        output.contains("truncated") || output.contains("damaged"),
        "a warning about the damaged file: {output}"
    );
    assert!(
        output.contains(&format!("resumed from checkpoint path={previous}")),
        "{output}"
    );
}

/// Lets a server start, then stops it (SIGTERM) and returns what it logged.
fn stop_after_start(child: std::process::Child) -> String {
    std::thread::sleep(Duration::from_millis(1500));
    crate::support::signal(child.id() as i32, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_checkpoint_of_another_job_is_refused_with_a_clear_message() {
    let ckpt = tempfile::tempdir().unwrap();
    let dir = ckpt.path().to_str().unwrap();
    write_checkpoints(dir);
    let out = downpour()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-dir",
            dir,
            "--workers",
            "1",
            "--epochs",
            "3",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("different job") || stderr.contains("another job"),
        "{stderr}"
    );
    assert!(stderr.contains(dir), "the message names the file: {stderr}");
}

#[tokio::test]
async fn a_running_servers_weights_export_as_safetensors() {
    let job = "[training]\nworkers = 1\nepochs = 2\n";
    let server = ServerProcess::start(job, &[]);
    let mut w = start_worker(&server.address, "w");
    assert!(w.wait().unwrap().success());
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("model.safetensors");
    let run = downpour()
        .args(["export", "--server", &server.address, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    let (version, live) = client.parameters().await.unwrap();
    assert!(String::from_utf8_lossy(&run.stdout).contains(&format!("version {version}")));
    let names = live
        .entries()
        .iter()
        .map(|e| e.name.clone())
        .collect::<Vec<_>>();
    let exported = downpour_launch::weights::read_safetensors(&out)
        .unwrap()
        .reordered(names.iter().map(String::as_str))
        .expect("the same tensors");
    assert_eq!(crate::support::bits(&exported), crate::support::bits(&live));
    // Pointing it at the wrong number of shards is refused with the reason.
    let bad = downpour()
        .args([
            "export",
            "--server",
            &format!("{0},{0}", server.address),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("shard 0 reports 1 server shard(s), 2 address(es) were given")
    );
}
