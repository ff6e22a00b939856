//! The speedup lab end to end: a tiny sweep writes its table, files and plots; and the
//! single-process baseline trains exactly what one sync worker trains.

use downpour_bench::BenchReport;
use downpour_bench::local_trainer::train_locally;
use downpour_server::JobSpec;

use crate::support::{assert_success, bits, downpour, train};

#[test]
fn a_tiny_sweep_writes_the_table_the_files_and_the_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench");
    let args = [
        "bench",
        "--epochs",
        "1",
        "--worker-counts",
        "1,2",
        "--modes",
        "sync",
        "--repeats",
        "1",
        "--target-accuracy",
        "0.5",
        "--transport-params",
        "5000",
        "--transport-repeats",
        "1",
        "--out",
    ];
    let output = downpour().args(args).arg(&out).output().unwrap();
    assert_success(&output, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| sync | 1 | 2 |"), "{stdout}");
    assert!(
        stdout.contains("**2 cores**") || stdout.contains("cores**"),
        "{stdout}"
    );
    assert!(stdout.contains("single process"), "{stdout}");
    assert!(stdout.contains("raw TCP"), "{stdout}");

    let json = std::fs::read_to_string(out.join("bench.json")).unwrap();
    let report: BenchReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.summaries.len(), 2);
    let two = &report.summaries[1];
    assert_eq!(two.config.workers, 2);
    assert!(two.samples_per_second.median > 0.0);
    assert!(two.speedup.is_some() && two.prediction.is_some());
    assert!(two.step_seconds.median > 0.0);
    assert!(
        report
            .runs
            .iter()
            .all(|r| r.phases.compute > 0.0 && r.phases.steps == 1),
        "phases per step: {:?}",
        report.runs
    );
    assert_eq!(report.baseline.as_ref().unwrap().runs.len(), 1);
    let transport = &report.transport.as_ref().unwrap().results;
    assert_eq!(transport.len(), 1);
    assert!(transport[0].grpc_push.median > 0.0 && transport[0].tcp_pull.median > 0.0);
    let (exchange, round_trip) = (
        transport[0].exchange.unwrap(),
        transport[0].tcp_round_trip.unwrap(),
    );
    assert!(exchange.median > 0.0 && round_trip.median > 0.0);
    assert!(
        stdout.contains("Per-step exchange through Downpour"),
        "{stdout}"
    );
    let profile = &report.profiles[0].profile;
    assert!(profile.measured_exchange.is_some());
    assert_eq!(
        profile.measured_exchange,
        downpour_bench::transport::exchange_at(report.parameters, transport),
        "the cost model uses the exchange measured at the job's size"
    );
    if let (Some(t1), Some(t2), Some(saved)) = (
        report.summaries[0].time_to_target,
        two.time_to_target,
        two.time_to_target_speedup,
    ) {
        assert!((saved.median - t1.median / t2.median).abs() < 1e-9);
    }
    assert_eq!(report.apply_rates.len(), 1);

    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 3, "{summary}");
    let columns = lines[0].split(',').count();
    assert!(
        lines.iter().all(|l| l.split(',').count() == columns),
        "{summary}"
    );
    assert!(lines[2].starts_with("sync,1,2,1,"), "{summary}");
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 3, "{runs}");
    for plot in ["speedup.svg", "phases.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{plot}"
        );
    }
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("Phase breakdown")
    );
}

#[test]
fn the_single_process_baseline_trains_exactly_what_one_sync_worker_trains() {
    let run = train(&["--workers", "1", "--mode", "sync", "--epochs", "2"]);
    let job_file = std::fs::read_to_string(run.dir.join("job.toml")).unwrap();
    let job = JobSpec::from_toml(&job_file).unwrap().validate().unwrap();
    let local = train_locally(&job).unwrap();
    // The weights file lists tensors by name.
    let sorted = |mut v: Vec<(String, Vec<u32>)>| {
        v.sort();
        v
    };
    assert_eq!(sorted(bits(&local.params)), sorted(bits(&run.weights())));
    assert_eq!(local.steps, run.report.final_metrics.version);
    // The report's JSON may round the last bit.
    let local_accuracy = local.evaluations.last().unwrap().evaluation.test_accuracy;
    assert!((local_accuracy.unwrap() - run.accuracy()).abs() < 1e-12);
}

#[test]
fn the_compose_mode_prints_the_commands() {
    let args = [
        "bench",
        "--compose",
        "--worker-counts",
        "1,4",
        "--repeats",
        "1",
        "--prefetch",
    ];
    let output = downpour().args(args).output().unwrap();
    assert_success(&output, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("WORKERS=4 MODE=async DOWNPOUR_PREFETCH=true WORKER_CPUS=")
            && stdout.contains("--scale worker=4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WORKERS=4 MODE=sync DOWNPOUR_PREFETCH=false WORKER_CPUS="),
        "sync runs do not prefetch: {stdout}"
    );
}
