//! Every job file under `examples/` parses and validates, so the README's examples stay true.

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
