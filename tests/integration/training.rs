//! Models learn what they should, through real server and worker processes.

use downpour_core::data::DatasetKind;
use downpour_core::data::synthetic::linear_truth;
use downpour_core::model_spec::Activation;
use downpour_core::{DataSpec, ModelSpec};
use downpour_worker::model::Model;

use crate::support::{bits, train};

#[test]
fn the_default_job_reaches_96_percent_on_digits_with_4_sync_workers() {
    let run = train(&["--workers", "4", "--mode", "sync"]);
    assert!(run.accuracy() >= 0.96, "sync accuracy {}", run.accuracy());
    assert_eq!(run.report.consistency, "sync");
    assert_eq!(run.report.workers.len(), 4);
    assert!(
        run.report
            .workers
            .iter()
            .all(|w| w.pushes > 0 && w.rejected_pushes == 0)
    );
    assert_eq!(
        run.report.staleness.max, 0,
        "sync gradients are never stale"
    );
    assert_eq!(run.report.epochs.len(), 60);
    assert!(
        run.report.epochs.iter().all(|e| e.evaluation.is_some()),
        "one evaluation per epoch"
    );
    assert!(run.report.final_metrics.samples_per_second > 0.0);
    assert!(run.stdout.contains("test acc"), "{}", run.stdout);
}

#[test]
fn the_default_job_reaches_96_percent_on_digits_with_4_async_workers() {
    let run = train(&["--workers", "4", "--mode", "async"]);
    assert!(run.accuracy() >= 0.96, "async accuracy {}", run.accuracy());
    assert_eq!(run.report.consistency, "async");
    let s = &run.report.staleness;
    assert_eq!(
        s.count,
        run.report.workers.iter().map(|w| w.pushes).sum::<u64>()
    );
    assert_eq!(s.histogram.iter().sum::<u64>(), s.count);
}

#[test]
fn sync_runs_are_bit_identical_whatever_the_timing() {
    let args = [
        "--workers",
        "3",
        "--mode",
        "sync",
        "--epochs",
        "5",
        "--seed",
        "11",
    ];
    let plain = train(&args);
    let mut slowed: Vec<&str> = args.to_vec();
    slowed.extend(["--slow-worker", "0:3"]);
    let slow = train(&slowed);
    let mut other: Vec<&str> = args.to_vec();
    other.extend(["--slow-worker", "2:3"]);
    let other = train(&other);
    assert_eq!(bits(&plain.weights()), bits(&slow.weights()));
    assert_eq!(bits(&plain.weights()), bits(&other.weights()));
    assert_eq!(
        plain.report.final_metrics.test_loss,
        slow.report.final_metrics.test_loss
    );
}

#[test]
fn a_small_mlp_learns_xor_with_full_batch_gradient_descent() {
    let run = train(&[
        "--workers",
        "1",
        "--dataset",
        "xor",
        "--model",
        "mlp",
        "--hidden",
        "8",
        "--activation",
        "tanh",
        "--optimizer",
        "sgd",
        "--lr",
        "0.5",
        "--batch-size",
        "full",
        "--epochs",
        "500",
    ]);
    assert_eq!(
        run.report.final_metrics.version, 500,
        "one full-batch step per epoch"
    );
    let spec = ModelSpec {
        hidden: vec![8],
        activation: Activation::Tanh,
        ..ModelSpec::default()
    };
    let data = DataSpec::builtin(DatasetKind::Xor).load(0).unwrap();
    let model = Model::new(&spec, &data.shape()).unwrap();
    let names = model.layout().params().iter().map(|p| p.name.as_str());
    let weights = run.weights().reordered(names).expect("the model's tensors");
    let probs = model.predict(&weights, data.features.view()).unwrap();
    for (i, row) in probs.rows().into_iter().enumerate() {
        let x = data.features.row(i);
        let xor = (x[0] > 0.5) != (x[1] > 0.5);
        assert_eq!(row[1] > 0.5, xor, "input {x:?} gave P(1) = {}", row[1]);
    }
    assert_eq!(run.accuracy(), 1.0);
}

#[test]
fn linear_regression_recovers_the_true_weights_with_1_2_and_4_workers() {
    let truth = linear_truth(8, 5);
    for workers in ["1", "2", "4"] {
        let run = train(&[
            "--workers",
            workers,
            "--dataset",
            "synthetic_linear",
            "--model",
            "linear_regression",
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
            "--batch-size",
            "16",
            "--epochs",
            "30",
            "--seed",
            "5",
        ]);
        let w = run.weights();
        let weights = w.get("linear.weight").unwrap().data();
        let bias = w.get("linear.bias").unwrap().data()[0];
        for (got, want) in weights.iter().zip(&truth.weights) {
            assert!(
                (got - want).abs() < 1e-2,
                "{workers} workers: weight {got} vs {want}"
            );
        }
        assert!(
            (bias - truth.bias).abs() < 1e-2,
            "{workers} workers: bias {bias} vs {}",
            truth.bias
        );
        assert!(run.report.final_metrics.test_mse.unwrap() < 1e-3);
    }
}

#[test]
fn a_global_batch_gives_the_same_updates_per_epoch_with_1_and_2_sync_workers() {
    let sync = |workers: &str, batch: &[&str]| {
        let mut args = vec!["--workers", workers, "--mode", "sync", "--epochs", "2"];
        args.extend_from_slice(batch);
        train(&args).report.final_metrics.version
    };
    let one = sync("1", &["--global-batch", "64"]);
    let two = sync("2", &["--global-batch", "64"]);
    assert_eq!(one, two, "updates of 2 epochs with 1 and 2 workers");
    // Per-worker batches of 64 instead: a global batch of 128 and about half the updates.
    let per_worker = sync("2", &["--batch-size", "64"]);
    assert!(
        per_worker < one && 2 * per_worker >= one,
        "{per_worker} against {one}"
    );
}
