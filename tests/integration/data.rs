//! Data as users bring it: tabular files on very different scales, standardised, against
//! scikit-learn; `evaluate` reproducing a run's test accuracy; damaged IDX files refused.

use std::path::{Path, PathBuf};

use downpour_core::data::split::split_indices;
use downpour_launch::cli::{EvaluateArgs, JobArgs};
use downpour_launch::evaluate::{SplitFile, StandardizationSource, evaluate};

use crate::support::{Run, assert_success, downpour, train};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.toml"))
}

/// scikit-learn's `make_pipeline(StandardScaler(), LogisticRegression(max_iter=10_000))`
/// (1.9.1, C = 1.0) on each example's split (seed 0, 20% held out), as printed by
/// `tests/reference/compare_tabular_sklearn.py`.
const SKLEARN_STANDARDISED: [(&str, f64); 3] = [
    ("wine", 35.0 / 36.0),
    ("breast_cancer", 111.0 / 114.0),
    ("iris", 27.0 / 30.0),
];

fn train_example(name: &str) -> Run {
    let job = example(name);
    train(&["--job", job.to_str().unwrap()])
}

#[test]
fn standardised_tabular_data_is_within_two_points_of_scikit_learn() {
    for (name, reference) in SKLEARN_STANDARDISED {
        let run = train_example(name);
        let accuracy = run.accuracy();
        assert!(
            accuracy >= reference - 0.02,
            "{name}: {accuracy:.4} against scikit-learn's {reference:.4}"
        );
        let stats = run
            .report
            .data
            .standardization
            .as_ref()
            .expect("the report holds the statistics");
        let features = match name {
            "wine" => 13,
            "breast_cancer" => 30,
            _ => 4,
        };
        assert_eq!(stats.mean.len(), features, "{name}");
        assert!(
            stats.std.iter().all(|&s| s > 0.0),
            "{name}: {:?}",
            stats.std
        );
        // The same statistics are in the weights file's metadata.
        let saved =
            downpour_launch::weights::read_standardization(&run.dir.join("weights.safetensors"))
                .unwrap();
        assert_eq!(saved.as_ref(), Some(stats), "{name}");
        if name == "iris" {
            assert_eq!(
                run.report.data.class_names.as_deref().unwrap(),
                ["setosa", "versicolor", "virginica"]
            );
        }
    }
}

#[test]
fn evaluate_reproduces_the_reported_test_accuracy_and_writes_the_split() {
    let run = train_example("breast_cancer");
    let dir = tempfile::tempdir().unwrap();
    let split_out = dir.path().join("split.json");
    let args = EvaluateArgs {
        job: JobArgs {
            job: Some(run.dir.join("job.toml")),
            ..JobArgs::default()
        },
        weights: run.dir.join("weights.safetensors"),
        split_out: Some(split_out.clone()),
    };
    let outcome = evaluate(&args).unwrap();
    let reported = &run.report.final_metrics;
    assert_eq!(outcome.metrics.accuracy, reported.test_accuracy);
    assert_eq!(outcome.metrics.loss, reported.test_loss);
    assert_eq!(outcome.metrics.samples, 114);
    assert_eq!(outcome.standardization, StandardizationSource::Saved);

    let split: SplitFile =
        serde_json::from_str(&std::fs::read_to_string(&split_out).unwrap()).unwrap();
    assert_eq!(
        (split.samples, split.seed, split.test_fraction),
        (569, 0, 0.2)
    );
    let (train, test) = split_indices(569, 0.2, 0);
    assert_eq!((split.indices.train, split.indices.test), (train, test));

    // The binary prints the same accuracy.
    let (job_file, weights_file) = (
        run.dir.join("job.toml"),
        run.dir.join("weights.safetensors"),
    );
    let cli = [
        "evaluate",
        "--job",
        job_file.to_str().unwrap(),
        "--weights",
        weights_file.to_str().unwrap(),
    ];
    let out = downpour().args(cli).output().unwrap();
    assert_success(&out, &cli);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!(
        "test accuracy {:.2}% ",
        reported.test_accuracy.unwrap() * 100.0
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.contains("on 114 test samples"), "{stdout}");
}

#[test]
fn evaluate_refuses_weights_of_another_model_or_preparation() {
    let run = train_example("iris");
    let refused = |extra: &[&str]| {
        let out = downpour()
            .arg("evaluate")
            .args(extra)
            .arg("--weights")
            .arg(run.dir.join("weights.safetensors"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused(&["--dataset", "digits"]);
    assert!(
        stderr.contains("weights.safetensors: holds standardisation statistics, but the job does not standardise"),
        "{stderr}"
    );
    let stderr = refused(&["--dataset", "digits", "--standardize"]);
    assert!(
        stderr.contains("data.standardize: the statistics cover 4 features, the data has 64"),
        "{stderr}"
    );
    // The same tensors without metadata (as `export` writes them) against the digits MLP.
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.safetensors");
    downpour_launch::weights::write_safetensors(&bare, &run.weights(), Default::default()).unwrap();
    let out = downpour()
        .args(["evaluate", "--dataset", "digits", "--weights"])
        .arg(&bare)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "bare.safetensors: holds 2 tensors (linear.bias, linear.weight), the job's model has 4"
        ),
        "{stderr}"
    );
}

#[test]
fn a_damaged_idx_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("train-images-idx3-ubyte");
    let labels = dir.path().join("train-labels-idx1-ubyte");
    // 3 images of 2×2, one pixel missing.
    let pixels = [0u8; 11];
    std::fs::write(
        &images,
        downpour_core::data::idx::encode(
            downpour_core::data::idx::IMAGES_MAGIC,
            &[3, 2, 2],
            &pixels,
        ),
    )
    .unwrap();
    std::fs::write(
        &labels,
        downpour_core::data::idx::encode(downpour_core::data::idx::LABELS_MAGIC, &[3], &[0, 1, 2]),
    )
    .unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[data]\nkind = \"idx\"\nimages = \"train-images-idx3-ubyte\"\nlabels = \"train-labels-idx1-ubyte\"\n",
    )
    .unwrap();
    let out = downpour()
        .args(["train", "--quiet", "--run-dir"])
        .arg(dir.path().join("run"))
        .arg("--job")
        .arg(&job)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: truncated: 3 images of 2×2 need 12 bytes after the 16-byte header, the file has 11",
            images.display()
        )),
        "{stderr}"
    );
}
