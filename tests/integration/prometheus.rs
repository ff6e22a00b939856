//! `--metrics-listen`: a real job (2 server shards, 2 workers) with metrics endpoints,
//! scraped directly, then by a real Prometheus server (Debian's `prometheus` package),
//! whose query API must return the run's applied-update count. Without a `prometheus`
//! binary on PATH the second part prints "SKIPPED: prometheus not installed" and passes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use downpour_core::status::ServerStatus;

use crate::support::{ServerProcess, downpour, wait_with_timeout};

/// Two epochs of the digits MLP, two workers in lock-step; worker 1 is slowed down so the
/// job lasts a few seconds, long enough to scrape a worker while it trains.
const JOB: &str = r#"
[model]
kind = "mlp"
hidden = [16]

[data]
kind = "digits"

[training]
epochs = 3
workers = 2
batch_size = 64

[consistency]
mode = "sync"
"#;

/// A loopback address with a port that was free a moment ago.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET path` on `address` over HTTP/1.0; the status line and the body.
fn http_get(address: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// The body of `GET /metrics` on `address`, which must answer 200.
fn scrape(address: &str) -> String {
    let (status, body) = http_get(address, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// One sample line of an exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition: the samples, and the declared type of each family. Panics on any
/// line that is not a comment or `name{labels} value`.
fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?} parses"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let labels = body
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label=value");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        assert!(name.starts_with("downpour_"), "{line}");
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (samples, types)
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

/// Checks the naming rules on a whole exposition: every counter sample ends in `_total`,
/// every histogram has `_bucket` samples, and every duration histogram ends in `_seconds`.
fn check_naming(samples: &[Sample], types: &BTreeMap<String, String>) {
    for (family, kind) in types {
        let of_family: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name.starts_with(family.as_str()))
            .collect();
        match kind.as_str() {
            "counter" => {
                assert!(
                    !family.ends_with("_total"),
                    "{family}: the family drops _total"
                );
                assert!(
                    of_family
                        .iter()
                        .all(|s| s.name == format!("{family}_total")),
                    "{family}: counter samples end in _total"
                );
            }
            "histogram" => {
                assert!(
                    of_family
                        .iter()
                        .any(|s| s.name == format!("{family}_bucket")),
                    "{family}: a histogram has buckets"
                );
                assert!(
                    family.ends_with("_seconds") || family == "downpour_staleness_versions",
                    "{family}: durations are _seconds"
                );
            }
            "gauge" => {}
            other => panic!("{family}: unexpected type {other}"),
        }
    }
}

fn status_of(address: &str) -> ServerStatus {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(downpour_launch::commands::probe(
            &downpour_worker::ClientConfig::new(address),
            Duration::from_secs(10),
        ))
        .expect("status")
}

/// A child process killed (and reaped) on drop: nothing is left behind by a failing test.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name` on PATH, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Percent-encodes a query string value.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `query` through Prometheus's HTTP API: each result's labels and value.
fn query(prometheus: &str, query: &str) -> Vec<(serde_json::Value, f64)> {
    let path = format!("/api/v1/query?query={}", encode(query));
    let Ok((_, body)) = http_get(prometheus, &path) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return Vec::new();
    };
    assert_eq!(json["status"], "success", "{body}");
    json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

#[test]
fn prometheus_scrapes_every_shard_and_reads_back_the_applied_updates() {
    let metrics = [free_address(), free_address()];
    let worker_metrics = [free_address(), free_address()];
    let shard1 = ServerProcess::start(
        JOB,
        &[
            "--shard",
            "1",
            "--servers",
            "2",
            "--metrics-listen",
            &metrics[1],
        ],
    );
    let shard0 = ServerProcess::start(
        JOB,
        &[
            "--servers",
            "2",
            "--shard-addresses",
            &shard1.address,
            "--metrics-listen",
            &metrics[0],
        ],
    );
    let mut workers: Vec<Killed> = (0..2)
        .map(|i| {
            let mut command = downpour();
            command
                .args(["worker", "--server", &shard0.address])
                .args(["--name", &format!("w{i}")])
                .args(["--metrics-listen", &worker_metrics[i]])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if i == 1 {
                command.args(["--step-delay-ms", "100"]);
            }
            Killed(command.spawn().expect("worker starts"))
        })
        .collect();

    // A worker, while it trains.
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker_text = loop {
        let text = http_get(&worker_metrics[0], "/metrics").map(|(_, body)| body);
        if let Ok(text) = text
            && text.contains("downpour_step_phase_seconds_count")
        {
            break text;
        }
        assert!(Instant::now() < deadline, "worker 0 never served its steps");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (samples, types) = parse(&worker_text);
    check_naming(&samples, &types);
    let steps = samples
        .iter()
        .find(|s| s.name == "downpour_worker_steps_total")
        .unwrap();
    assert!(steps.value >= 1.0, "{steps:?}");
    assert!(steps.labels.contains_key("worker"), "{steps:?}");
    for phase in ["compute", "send", "apply", "wait", "receive", "evaluate"] {
        let count = value(
            &samples,
            "downpour_step_phase_seconds_count",
            &[("phase", phase)],
        );
        assert!(count >= 1.0, "{phase}: {count}");
    }
    let (status, _) = http_get(&worker_metrics[0], "/nothing").unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    for worker in &mut workers {
        assert!(wait_with_timeout(&mut worker.0, Duration::from_secs(120)).success());
    }
    // The servers stay up (no --exit-when-done): the job is over, its numbers final.
    let statuses = [status_of(&shard0.address), status_of(&shard1.address)];
    assert!(statuses[0].finished, "the job finished");
    let updates = statuses[0].version;
    assert!(updates > 0);
    assert_eq!(
        statuses[1].version, updates,
        "sync: every shard applies every step"
    );

    for (k, (address, status)) in metrics.iter().zip(&statuses).enumerate() {
        let text = scrape(address);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let (samples, types) = parse(&text);
        check_naming(&samples, &types);
        let shard = k.to_string();
        let shard = [("shard", shard.as_str())];
        assert!(samples.iter().all(|s| s.labels["shard"] == shard[0].1));
        let get = |name: &str, extra: &[(&str, &str)]| {
            let labels: Vec<(&str, &str)> = shard.iter().chain(extra).copied().collect();
            value(&samples, name, &labels)
        };
        assert_eq!(get("downpour_updates_applied_total", &[]), updates as f64);
        assert_eq!(get("downpour_version", &[]), updates as f64);
        assert_eq!(
            get("downpour_pushes_total", &[("result", "applied")]),
            status.shard.applied_pushes as f64
        );
        assert_eq!(
            status.shard.applied_pushes,
            status.workers.iter().map(|w| w.pushes).sum::<u64>()
        );
        assert_eq!(get("downpour_pulls_total", &[]), status.shard.pulls as f64);
        assert_eq!(
            get("downpour_bytes_received_total", &[]),
            status.shard.bytes_received as f64
        );
        assert_eq!(
            get("downpour_bytes_sent_total", &[]),
            status.shard.bytes_sent as f64
        );
        assert_eq!(get("downpour_workers", &[("state", "active")]), 0.0);
        // Every accepted gradient of the job went through the apply and staleness histograms.
        assert_eq!(
            get("downpour_apply_seconds_count", &[]),
            status.shard.applied_pushes as f64
        );
        assert_eq!(
            get("downpour_staleness_versions_count", &[]),
            status.shard.applied_pushes as f64
        );
        assert!(get("downpour_barrier_wait_seconds_count", &[]) >= 1.0);
        if k == 0 {
            let final_eval = status.final_evaluation.as_ref().unwrap();
            let accuracy = get("downpour_test_accuracy", &[]);
            assert!(
                (accuracy - final_eval.test_accuracy.unwrap()).abs() < 1e-9,
                "{accuracy} vs {final_eval:?}"
            );
            assert!(get("downpour_epoch", &[]) >= 3.0 - 1e-9);
            assert!(get("downpour_train_loss", &[]).is_finite());
        } else {
            assert!(!text.contains("downpour_test_accuracy"), "{text}");
        }
    }

    let Some(binary) = on_path("prometheus") else {
        eprintln!("SKIPPED: prometheus not installed (the direct scrapes above passed)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: downpour\n    static_configs:\n      - targets: ['{}', '{}']\n",
            metrics[0], metrics[1]
        ),
    )
    .unwrap();
    let web = free_address();
    let _prometheus = Killed(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    // Wait until both shards have been scraped; their values are final by then.
    let deadline = Instant::now() + Duration::from_secs(90);
    let per_shard = loop {
        let results = query(&web, "downpour_updates_applied_total");
        if results.len() == 2 {
            break results;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape both shards in time: {results:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for (labels, value) in &per_shard {
        assert_eq!(*value, updates as f64, "{labels}");
        assert_eq!(labels["job"], "downpour");
    }
    let mut shards: Vec<&str> = per_shard
        .iter()
        .map(|(l, _)| l["shard"].as_str().unwrap())
        .collect();
    shards.sort_unstable();
    assert_eq!(shards, ["0", "1"]);
    let sum = query(&web, "sum(downpour_updates_applied_total)");
    assert_eq!(sum.len(), 1, "{sum:?}");
    assert_eq!(
        sum[0].1,
        2.0 * updates as f64,
        "two shards, each applied every update"
    );
}

#[test]
fn a_metrics_address_that_cannot_be_bound_is_named_and_nothing_serves() {
    // In use: the server refuses to start rather than run without its metrics.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let out = downpour()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &taken,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("binding the metrics address {taken}")),
        "{stderr}"
    );
    drop(holder);
    // Not an address: the worker stops before it tries to reach a server.
    let out = downpour()
        .args(["worker", "--server", "127.0.0.1:1"])
        .args(["--metrics-listen", "127.0.0.1:99999"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("binding the metrics address 127.0.0.1:99999"),
        "{stderr}"
    );
}
