//! Workers that die, join late or retry: the job goes on, through real processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use downpour_core::status::{ServerStatus, WorkerState};
use downpour_proto::convert::params_to_wire;
use downpour_proto::v1;
use downpour_worker::ServerClient;

use crate::support::{ServerProcess, bits, downpour, start_worker, train, wait_for_line};
use crate::support::{processes_with, signal, wait_with_timeout};

#[test]
fn a_worker_killed_mid_epoch_in_sync_mode_costs_at_most_one_point() {
    let args = [
        "--workers",
        "3",
        "--mode",
        "sync",
        "--epochs",
        "150",
        "--heartbeat-timeout",
        "1",
    ];
    let reference = train(&args);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut launcher = downpour()
        .arg("train")
        .args(args)
        .args(["--quiet", "--run-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = wait_for_line(&dir.join("server.addr"), Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        let found = processes_with("worker-1")
            .into_iter()
            .find(|p| processes_with(&address).contains(p));
        if let Some(pid) = found {
            break pid;
        }
        assert!(Instant::now() < deadline, "worker-1 never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(1500));
    signal(victim, libc::SIGKILL);
    let status = wait_with_timeout(&mut launcher, Duration::from_secs(120));
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the job must finish: {stderr}");
    assert!(
        stderr.contains("worker-1 failed (signal: 9"),
        "the death is reported: {stderr}"
    );

    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let report: downpour_launch::report::RunReport = serde_json::from_str(&text).unwrap();
    let dead: Vec<_> = report
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Dead)
        .collect();
    assert_eq!(dead.len(), 1, "{:?}", report.workers);
    assert!(
        dead[0].pushes < report.workers.iter().map(|w| w.pushes).max().unwrap(),
        "it died mid-run"
    );
    let (with, without) = (
        report.final_metrics.test_accuracy.unwrap(),
        reference.accuracy(),
    );
    assert!(
        (with - without).abs() <= 0.01,
        "accuracy {with} vs {without} without the fault"
    );
}

async fn wait_finished(client: &mut ServerClient, timeout: Duration) -> ServerStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = client.status().await.unwrap();
        if status.finished {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish: version {}",
            status.version
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_worker_that_joins_mid_run_takes_a_data_shard_and_its_pushes_count() {
    let job = "[training]\nworkers = 2\nmin_workers = 1\nepochs = 80\n";
    let server = ServerProcess::start(job, &[]);
    let mut first = start_worker(&server.address, "first");
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    // Let the first worker train alone for a while: it owns both data shards.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.status().await.unwrap();
        if status.version >= 200 {
            assert_eq!(status.workers[0].data_shards, vec![0, 1]);
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut late = start_worker(&server.address, "late");
    let status = wait_finished(&mut client, Duration::from_secs(120)).await;
    assert!(first.wait().unwrap().success());
    assert!(late.wait().unwrap().success());
    let late_status = status.workers.iter().find(|w| w.name == "late").unwrap();
    assert!(
        late_status.pushes > 0 && late_status.samples > 0,
        "{late_status:?}"
    );
    assert!(
        late_status.pushes < status.workers[0].pushes,
        "it joined late"
    );
    assert_eq!(
        status.workers[0].pushes, status.total_steps,
        "the first worker trained every step"
    );
    assert!(status.final_evaluation.unwrap().test_accuracy.unwrap() >= 0.95);
}

#[tokio::test]
async fn a_push_retried_after_a_lost_reply_is_applied_once() {
    let server = ServerProcess::start("[training]\nworkers = 1\n", &[]);
    let mut client = ServerClient::connect(&server.address).await.unwrap();
    let w = client
        .register("w", None)
        .await
        .unwrap()
        .assignment
        .worker_id;
    let pulled = client.pull(w, 0, false).await.unwrap();
    let mut g = pulled.params.zeros_like();
    g.tensors_mut().for_each(|t| t.data_mut().fill(0.5));
    let request = v1::ExchangeRequest {
        header: Some(v1::PushHeader {
            worker_id: w,
            step: 0,
            base_version: 0,
            loss: 1.0,
            samples: 32,
            phases: None,
            next_step: Some(1),
            session: client.session_of(w),
        }),
        gradients: params_to_wire(&g),
        last: true,
    };
    // Each attempt on a stream of its own, as after a reconnection.
    let raw = client.raw();
    let attempt = || async {
        let mut replies = raw
            .clone()
            .exchange(tokio_stream::iter(vec![request.clone()]))
            .await
            .unwrap()
            .into_inner();
        replies.message().await.unwrap().unwrap().header.unwrap()
    };
    assert_eq!(attempt().await.version, 1);
    let (_, once) = client.parameters().await.unwrap();
    // The reply was "lost": the worker sends the same gradient again.
    let again = attempt().await;
    assert_eq!(again.version, 1);
    let (version, after) = client.parameters().await.unwrap();
    assert_eq!(version, 1, "applied exactly once");
    assert_eq!(bits(&after), bits(&once));
    // And the worker, registering again under its id, is told to go on from step 1.
    let back = client.register("w", Some(w)).await.unwrap();
    assert_eq!(back.start_step, 1);
    let status = client.status().await.unwrap();
    assert_eq!(status.workers[0].pushes, 1);
}
