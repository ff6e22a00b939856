//! Authentication and TLS over real processes: the job token on every RPC, the read-only
//! token, per-worker session secrets against impersonation, `train --tls`, and by-hand
//! servers and workers with TLS and mutual TLS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tonic::Code;

use downpour_core::token::Token;
use downpour_proto::v1;
use downpour_worker::{ClientConfig, ClientError, ClientIdentity, ClientTls, ServerClient};

use crate::support::{ServerProcess, downpour, train, wait_with_timeout};

const JOB: &str = r#"
[model]
kind = "softmax_regression"

[data]
kind = "synthetic_classification"
samples = 240
features = 4
classes = 3

[training]
workers = 2
epochs = 3
"#;

const TOKEN: &str = "job-token-0123456789";
const READ_TOKEN: &str = "read-token-9876543210";

/// Writes `text` to `dir/name` and returns the path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn config(address: &str, token: Option<&str>) -> ClientConfig {
    ClientConfig {
        token: token.map(|t| Token::parse(t).unwrap()),
        ..ClientConfig::new(address)
    }
}

async fn client(address: &str, token: Option<&str>) -> ServerClient {
    ServerClient::connect_with(&config(address, token))
        .await
        .unwrap()
}

/// The status code of each of the eight RPCs made by `client` acting as `worker` with
/// `session` (`Code::Ok` when the call was let through to the service).
async fn codes(client: &ServerClient, worker: u32, session: &str) -> Vec<(&'static str, Code)> {
    let mut raw = client.raw();
    let s = session.to_string();
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|e| e.code(), |()| Code::Ok);
    let mut out = Vec::new();
    out.push((
        "Register",
        code(
            raw.register(v1::RegisterRequest {
                name: "intruder".into(),
                worker_id: Some(worker),
                session: s.clone(),
            })
            .await
            .map(drop),
        ),
    ));
    out.push((
        "Pull",
        code(
            raw.pull(v1::PullRequest {
                worker_id: worker,
                step: 0,
                r#final: false,
                session: s.clone(),
            })
            .await
            .map(drop),
        ),
    ));
    let exchange = async {
        let mut replies = raw
            .clone()
            .exchange(tokio_stream::iter(vec![v1::ExchangeRequest {
                header: Some(v1::PushHeader {
                    worker_id: worker,
                    samples: 0,
                    session: s.clone(),
                    ..v1::PushHeader::default()
                }),
                gradients: Vec::new(),
                last: true,
            }]))
            .await?
            .into_inner();
        replies.message().await.map(drop)
    };
    out.push(("Exchange", code(exchange.await)));
    out.push((
        "Heartbeat",
        code(
            raw.heartbeat(v1::HeartbeatRequest {
                worker_id: worker,
                session: s.clone(),
            })
            .await
            .map(drop),
        ),
    ));
    out.push((
        "ReportEvaluation",
        code(
            raw.report_evaluation(v1::EvaluationReport {
                worker_id: worker,
                version: 1,
                test_loss: 0.0,
                test_accuracy: Some(1.0),
                r#final: true,
                test_samples: 1,
                session: s.clone(),
                ..v1::EvaluationReport::default()
            })
            .await
            .map(drop),
        ),
    ));
    out.push((
        "Leave",
        code(
            raw.leave(v1::LeaveRequest {
                worker_id: worker,
                session: s.clone(),
            })
            .await
            .map(drop),
        ),
    ));
    out.push((
        "Status",
        code(raw.status(v1::StatusRequest {}).await.map(drop)),
    ));
    out.push((
        "GetParameters",
        code(
            raw.get_parameters(v1::GetParametersRequest {})
                .await
                .map(drop),
        ),
    ));
    out
}

fn token_server(dir: &Path) -> ServerProcess {
    let token = write(dir, "token", &format!("{TOKEN}\n"));
    let read = write(dir, "read-token", READ_TOKEN);
    ServerProcess::start(JOB, &["--token-file", &token, "--read-token-file", &read])
}

#[tokio::test]
async fn every_rpc_needs_the_token_and_the_read_token_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());

    for token in [None, Some("wrong-token")] {
        let anonymous = client(&server.address, token).await;
        let got = codes(&anonymous, 0, "").await;
        assert!(
            got.iter().all(|(_, c)| *c == Code::Unauthenticated),
            "{token:?}: {got:?}"
        );
    }
    let reader = client(&server.address, Some(READ_TOKEN)).await;
    let got = codes(&reader, 0, "").await;
    for (rpc, code) in &got {
        let expected = if matches!(*rpc, "Status" | "GetParameters") {
            Code::Ok
        } else {
            Code::PermissionDenied
        };
        assert_eq!(*code, expected, "{rpc} with the read-only token: {got:?}");
    }
    // None of it changed the job: nobody registered, nothing was evaluated.
    let mut owner = client(&server.address, Some(TOKEN)).await;
    let status = owner.status().await.unwrap();
    assert!(status.workers.is_empty(), "{:?}", status.workers);
    assert!(status.evaluations.is_empty());
    assert_eq!(status.version, 0);
    // With the job token a worker registers and gets a session secret.
    let registration = owner.register("w", None).await.unwrap();
    assert_eq!(registration.session.len(), 64);

    // `downpour health` says why it was refused, and passes with the read-only token.
    let out = downpour()
        .args(["health", "--server", &server.address])
        .env_remove("DOWNPOUR_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unauthenticated"), "{stderr}");
    let out = downpour()
        .args(["health", "--server", &server.address])
        .env("DOWNPOUR_TOKEN", READ_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_empty_token_or_a_missing_token_file_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let job = write(dir.path(), "job.toml", JOB);
    let empty = write(dir.path(), "empty", "\n");
    let out = downpour()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--job",
            &job,
            "--token-file",
            &empty,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&empty) && stderr.contains("empty"),
        "{stderr}"
    );
    let missing = dir.path().join("missing").display().to_string();
    let out = downpour()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--job",
            &job,
            "--token-file",
            &missing,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing), "{stderr}");
}

fn worker(address: &str, name: &str, token: &str, extra: &[&str]) -> std::process::Child {
    downpour()
        .args(["worker", "--server", address, "--name", name])
        .args(extra)
        .env("DOWNPOUR_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_finished(client: &mut ServerClient) -> downpour_core::status::ServerStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = client.status().await.unwrap();
        if status.finished {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "job did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_with_the_token_cannot_act_as_another_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());
    let mut owner = client(&server.address, Some(TOKEN)).await;
    // The first honest worker registers (id 0) and waits at the barrier for the second.
    let mut first = worker(&server.address, "honest-0", TOKEN, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while owner.status().await.unwrap().workers.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "worker 0 never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An intruder holding the job token but not worker 0's secret tries every call as it.
    let intruder = client(&server.address, Some(TOKEN)).await;
    let forged = "0".repeat(64);
    for session in ["", forged.as_str()] {
        let got = codes(&intruder, 0, session).await;
        for (rpc, code) in &got {
            let expected = if matches!(*rpc, "Status" | "GetParameters") {
                Code::Ok
            } else {
                Code::PermissionDenied
            };
            assert_eq!(
                *code, expected,
                "{rpc} as worker 0 with {session:?}: {got:?}"
            );
        }
    }
    let status = owner.status().await.unwrap();
    assert_eq!(
        status.workers.len(),
        1,
        "nobody joined: {:?}",
        status.workers
    );
    assert_eq!(status.workers[0].name, "honest-0");
    assert!(
        status.workers[0].state.is_member(),
        "worker 0 did not leave"
    );
    assert!(status.evaluations.is_empty(), "no fake evaluation");

    let mut second = worker(&server.address, "honest-1", TOKEN, &[]);
    let status = wait_finished(&mut owner).await;
    assert!(wait_with_timeout(&mut first, Duration::from_secs(60)).success());
    assert!(wait_with_timeout(&mut second, Duration::from_secs(60)).success());
    assert_eq!(status.version, status.total_steps, "every step was applied");
    for w in &status.workers {
        assert_eq!(w.pushes, status.total_steps, "{w:?}");
        assert_eq!(w.rejected_pushes, 0, "{w:?}");
    }
    let fin = status.final_evaluation.expect("the final evaluation");
    assert!(
        fin.test_accuracy.unwrap() < 1.0,
        "not the intruder's fake 100%"
    );
    assert!(status.evaluations.iter().all(|e| e.test_samples > 1));
}

#[test]
fn train_with_tls_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let job = write(dir.path(), "job.toml", JOB);
    let run = train(&["--tls", "--job", &job]);
    assert!(run.dir.join("certs/ca.pem").exists());
    assert!(run.dir.join("certs/server.key").exists());
    // Trained to the end and evaluated, over TLS (the tiny job's accuracy is not the point).
    assert!(run.report.final_metrics.test_accuracy.is_some());
    assert!(run.report.final_metrics.version > 0);
    // The token was in the children's environment, never in a log or argv.
    let log = std::fs::read_to_string(run.dir.join("server.log")).unwrap();
    assert!(
        !log.contains("UNAUTHENTICATED"),
        "the run's server had a token:\n{log}"
    );
}

/// `downpour certs` into `dir` for loopback.
fn certs(dir: &Path) {
    let out = downpour()
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--hosts", "127.0.0.1,localhost"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_config(address: &str, certs: &Path, identity: bool) -> ClientConfig {
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    ClientConfig {
        tls: Some(ClientTls {
            ca_pem: read("ca.pem"),
            domain: None,
            identity: identity.then(|| ClientIdentity {
                cert_pem: read("client.pem"),
                key_pem: read("client.key"),
            }),
        }),
        ..config(address, Some(TOKEN))
    }
}

/// Connects and asks for the status, within a bound: TLS failures must be errors, not hangs.
async fn try_status(config: &ClientConfig) -> Result<(), ClientError> {
    let ask = async {
        let mut c = ServerClient::connect_with(config).await?;
        c.status().await.map(drop)
    };
    tokio::time::timeout(Duration::from_secs(15), ask)
        .await
        .expect("a TLS failure is an error, not a hang")
}

#[tokio::test]
async fn by_hand_servers_and_workers_with_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let other = dir.path().join("other");
    certs(&good);
    certs(&other);
    let p = |name: &str| good.join(name).display().to_string();
    let token = write(dir.path(), "token", TOKEN);
    let server = ServerProcess::start(
        JOB,
        &[
            "--token-file",
            &token,
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--tls-client-ca",
            &p("ca.pem"),
        ],
    );

    // Plaintext, a CA that did not sign the server, and no client certificate: all refused.
    let plain = try_status(&config(&server.address, Some(TOKEN))).await;
    assert!(plain.is_err(), "a plaintext client got through");
    let wrong_ca = try_status(&tls_config(&server.address, &other, true))
        .await
        .unwrap_err();
    assert!(
        wrong_ca.to_string().to_lowercase().contains("certificate"),
        "{wrong_ca}"
    );
    let no_cert = try_status(&tls_config(&server.address, &good, false)).await;
    assert!(
        no_cert.is_err(),
        "a client without a certificate got through"
    );

    // Workers with the CA, a client certificate and the token train to the end.
    let flags = [
        "--tls-ca",
        &p("ca.pem"),
        "--tls-cert",
        &p("client.pem"),
        "--tls-key",
        &p("client.key"),
    ];
    let mut w0 = worker(&server.address, "tls-0", TOKEN, &flags);
    let mut w1 = worker(&server.address, "tls-1", TOKEN, &flags);
    let mut owner = ServerClient::connect_with(&tls_config(&server.address, &good, true))
        .await
        .unwrap();
    let status = wait_finished(&mut owner).await;
    assert!(wait_with_timeout(&mut w0, Duration::from_secs(60)).success());
    assert!(wait_with_timeout(&mut w1, Duration::from_secs(60)).success());
    assert_eq!(status.version, status.total_steps);

    // Export over mutual TLS with the same flags.
    let out_file = dir.path().join("w.safetensors");
    let mut export = Command::new(env!("CARGO_BIN_EXE_downpour"));
    let out = export
        .args(["export", "--server", &server.address, "--out"])
        .arg(&out_file)
        .args(flags)
        .env("DOWNPOUR_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out_file.exists());
}
