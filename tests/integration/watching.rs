//! Watching a run from outside the terminal: the per-epoch lines when stderr is piped,
//! `metrics.csv` written as training goes, TensorBoard event files (read back with the
//! `tensorboard` Python package when it is installed), and the run directory's rules.

use std::path::Path;

use downpour_launch::report::RunReport;
use downpour_launch::run_log::CSV_HEADER;

use crate::support::{assert_success, downpour};

/// The Python that has the `tensorboard` package, if any: CI's venv first.
fn python_with_tensorboard() -> Option<String> {
    let candidates = std::env::var("DOWNPOUR_TORCH_PYTHON")
        .into_iter()
        .chain(["python3".to_string()]);
    candidates.into_iter().find(|python| {
        std::process::Command::new(python)
            .args([
                "-c",
                "import tensorboard.backend.event_processing.event_accumulator",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `(step, value)` of one scalar tag, as TensorBoard's own reader sees the event files.
fn tensorboard_scalars(python: &str, dir: &Path, tag: &str) -> Vec<(u64, f64)> {
    let script = "import sys\n\
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
        acc = EventAccumulator(sys.argv[1]); acc.Reload()\n\
        for e in acc.Scalars(sys.argv[2]): print(e.step, repr(e.value))\n";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .arg(tag)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (step, value) = l.split_once(' ').unwrap();
            (step.parse().unwrap(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_piped_run_prints_each_epoch_and_writes_metrics_csv_and_tensorboard_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let tb = tmp.path().join("tb");
    let args = ["train", "--workers", "2", "--epochs", "3"];
    // `output()` pipes stderr: not a terminal, so plain lines and no bar.
    let out = downpour()
        .args(args)
        .arg("--run-dir")
        .arg(&dir)
        .arg("--tensorboard")
        .arg(&tb)
        .output()
        .unwrap();
    assert_success(&out, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for epoch in 1..=3 {
        assert!(
            stderr.contains(&format!("epoch   {epoch}/3  train loss ")),
            "epoch {epoch} line missing:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains('\r'),
        "a bar was drawn into a pipe:\n{stderr}"
    );

    let report: RunReport =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(report.finished);
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let steps: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(
        steps[0] > 0 && steps[1] == 2 * steps[0] && steps[2] == 3 * steps[0],
        "{steps:?}"
    );
    for (row, epoch) in rows.iter().zip(&report.epochs) {
        let ev = epoch.evaluation.as_ref().unwrap();
        assert_eq!(row[1], (epoch.epoch + 1).to_string());
        assert_eq!(row[3].parse::<f64>().unwrap(), epoch.train_loss);
        assert_eq!(row[4].parse::<f64>().unwrap(), ev.test_loss);
        assert_eq!(row[5].parse::<f64>().unwrap(), ev.test_accuracy.unwrap());
        assert!(row[7].parse::<f64>().unwrap() > 0.0, "samples/s: {row:?}");
    }
    assert_eq!(report.files.metrics_csv, dir.join("metrics.csv"));

    let events = report.files.tensorboard.clone().expect("an event file");
    assert!(events.starts_with(&tb), "{}", events.display());
    match python_with_tensorboard() {
        Some(python) => {
            let acc = tensorboard_scalars(&python, &tb, "test/accuracy");
            let expected: Vec<(u64, f64)> = rows
                .iter()
                .map(|r| (r[0].parse().unwrap(), r[5].parse().unwrap()))
                .collect();
            assert_eq!(acc.len(), 3, "{acc:?}");
            for ((step, value), (want_step, want)) in acc.iter().zip(&expected) {
                assert_eq!(step, want_step);
                // Scalars are stored as f32.
                assert_eq!(*value, f64::from(*want as f32), "step {step}");
            }
            let loss = tensorboard_scalars(&python, &tb, "train/loss");
            assert_eq!(loss.len(), 3);
        }
        None => eprintln!(
            "SKIPPED: reading the event files with TensorBoard (the tensorboard Python package is not installed); the framing is checked by the launcher's unit tests"
        ),
    }
}

#[test]
fn a_used_run_directory_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.json"), "another run's report").unwrap();
    let args = ["train", "--workers", "1", "--epochs", "1", "--quiet"];
    let out = downpour()
        .args(args)
        .arg("--run-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("report.json")).unwrap(),
        "another run's report",
        "nothing may be overwritten"
    );
    let out = downpour()
        .args(args)
        .arg("--run-dir")
        .arg(&dir)
        .arg("--force")
        .output()
        .unwrap();
    assert_success(&out, &args);
    let report: RunReport =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(report.finished);
}
