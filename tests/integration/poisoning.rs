//! Updates that cannot be poisoned: a worker that pushes 1e20 values is refused (and the
//! job ends as a clean one does), and a worker that pushes garbage every step cannot
//! steer a sync job that aggregates by trimmed mean.

use crate::support::train;

/// The default job (an MLP on the digits, Adam) with 4 sync workers, a short heartbeat
/// timeout (a refused worker stops; the others take its data), and `robustness`.
fn job_file(dir: &std::path::Path, name: &str, robustness: &str) -> String {
    let path = dir.join(name);
    let text = format!(
        "[training]\nworkers = 4\n\n[fault_tolerance]\nheartbeat_timeout = 1.0\n\n[robustness]\n{robustness}\n"
    );
    std::fs::write(&path, text).expect("job file written");
    path.display().to_string()
}

#[test]
fn one_huge_push_is_refused_and_a_garbage_worker_cannot_steer_trimmed_mean() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mean = job_file(tmp.path(), "mean.toml", "aggregation = \"mean\"");
    let clean = train(&["--job", &mean]);
    assert!(
        clean.report.refused_pushes.is_empty(),
        "{:?}",
        clean.report.refused_pushes
    );

    // Worker 3 pushes every value 1e20: refused by the value bound, it stops; the job
    // goes on with the others and ends within a point of the clean run.
    let huge = train(&["--job", &mean, "--sabotage-worker", "3:huge"]);
    assert_eq!(
        huge.report.refused_pushes.get("value_bound"),
        Some(&1),
        "{:?}",
        huge.report.refused_pushes
    );
    assert!(
        huge.stdout
            .contains("refused pushes (parameters unchanged): 1 value_bound"),
        "{}",
        huge.stdout
    );
    assert!(
        (huge.accuracy() - clean.accuracy()).abs() <= 0.01,
        "huge push: {} vs clean {}",
        huge.accuracy(),
        clean.accuracy()
    );

    // Worker 3 pushes uniform noise in ±100 every step: accepted (finite, within the
    // bound). Averaged in, it ruins the model; cut by the trimmed mean, it does not.
    let garbage_mean = train(&["--job", &mean, "--sabotage-worker", "3:garbage"]);
    assert!(
        garbage_mean.accuracy() < clean.accuracy() - 0.2,
        "garbage under mean: {} vs clean {}",
        garbage_mean.accuracy(),
        clean.accuracy()
    );
    let trimmed = job_file(tmp.path(), "trimmed.toml", "aggregation = \"trimmed_mean\"");
    let garbage_trimmed = train(&["--job", &trimmed, "--sabotage-worker", "3:garbage"]);
    assert!(
        garbage_trimmed.accuracy() >= clean.accuracy() - 0.01,
        "garbage under trimmed_mean: {} vs clean {}",
        garbage_trimmed.accuracy(),
        clean.accuracy()
    );
}

#[test]
fn a_robust_aggregation_outside_sync_mode_is_refused_at_start_up() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("job.toml");
    std::fs::write(
        &path,
        "[consistency]\nmode = \"async\"\n\n[robustness]\naggregation = \"median\"\n",
    )
    .unwrap();
    let out = crate::support::downpour()
        .args(["train", "--quiet", "--job"])
        .arg(&path)
        .output()
        .expect("downpour runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("robustness.aggregation: median combines the gradients of a sync step; mode async applies each gradient alone"),
        "{stderr}"
    );
}
