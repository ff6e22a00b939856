//! Bad configuration is refused at start-up with the field and value named, and nothing starts.

use crate::support::downpour;

fn fails_with(args: &[&str], job: Option<&str>, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = downpour();
    cmd.arg("train")
        .args(args)
        .args(["--quiet", "--run-dir"])
        .arg(dir.path().join("run"));
    if let Some(text) = job {
        let path = dir.path().join("job.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--job").arg(&path);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert!(
        !dir.path().join("run").join("server.log").exists(),
        "no process was started"
    );
}

#[test]
fn an_unknown_field_in_the_job_file_is_named() {
    fails_with(
        &[],
        Some("[training]\nepochz = 3\n"),
        "unknown field `epochz`",
    );
}

#[test]
fn a_malformed_job_file_reports_where() {
    fails_with(&[], Some("[training\nepochs = 3\n"), "job.toml");
}

#[test]
fn an_invalid_value_names_field_and_value() {
    fails_with(
        &["--epochs", "0"],
        None,
        "training.epochs: must be at least 1, got 0",
    );
    fails_with(
        &[],
        Some("[model]\nkind = \"mlp\"\nhidden = [32, 0]\n"),
        "model.hidden: layer 1 has width 0 in [32, 0]",
    );
    fails_with(
        &["--model", "linear_regression"],
        None,
        "cannot train on classification with 10 classes",
    );
}

#[test]
fn a_malformed_data_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,x,1\n").unwrap();
    fails_with(
        &["--dataset", "csv", "--data-path", csv.to_str().unwrap()],
        None,
        &format!("{}:3", csv.display()),
    );
}

#[test]
fn prefetch_in_sync_mode_is_refused() {
    fails_with(
        &["--prefetch"],
        None,
        "consistency.prefetch: sync applies every gradient before the next step",
    );
    fails_with(
        &["--mode", "ssp", "--staleness", "0", "--prefetch"],
        None,
        "consistency.prefetch: prefetch adds one step of staleness",
    );
}
