//! Every job file under `examples/` parses and validates, so the README's examples stay true;
//! so does the job the Kubernetes manifests ship.

#[test]
fn every_example_job_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // As the CLI reads it: data paths relative to the job file's folder.
            let spec = downpour_server::JobSpec::from_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            spec.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example job found in {}", dir.display());
}

#[test]
fn the_kubernetes_job_validates_and_plans_the_workers_the_manifests_start() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base");
    let spec = downpour_server::JobSpec::from_file(&dir.join("job.toml")).unwrap();
    let workers = spec.training.workers;
    spec.validate().unwrap();
    let job = std::fs::read_to_string(dir.join("worker-job.yaml")).unwrap();
    for field in ["completions", "parallelism"] {
        assert!(
            job.contains(&format!("  {field}: {workers}\n")),
            "worker-job.yaml's {field} must be the job's {workers} workers"
        );
    }
}
