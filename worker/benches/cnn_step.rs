//! One CNN training step in one process on one thread: the loss and gradient of the
//! `cnn` preset (121,930 parameters) on a batch of 64 random 1×28×28 images, the work a
//! worker does per step. Its PyTorch counterpart is `scripts/bench/torch_cnn.py`
//! (`torch.set_num_threads(1)`, the same network, batch and input).
//!
//! Run: `cargo bench -p downpour-worker --bench cnn_step`. Criterion reports the time
//! per step and the throughput in samples (elements) per second; docs/benchmarks.md
//! records both sides. `scripts/bench/cnn_vs_torch.sh` runs the two one after the other.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use downpour_core::model_spec::ModelKind;
use downpour_core::{DataShape, Dataset, ImageShape, ModelSpec, Targets};
use downpour_worker::model::{Model, StepKey};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Samples per step.
const BATCH: usize = 64;

fn mnist_like(samples: usize) -> Dataset {
    let mut rng = StdRng::seed_from_u64(1);
    Dataset {
        features: Array2::from_shape_simple_fn((samples, 784), || rng.random_range(0.0..1.0)),
        targets: Targets::Classes {
            labels: (0..samples).map(|_| rng.random_range(0..10)).collect(),
            classes: 10,
        },
        image: Some(ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        }),
    }
}

fn cnn_step(c: &mut Criterion) {
    let batch = mnist_like(BATCH);
    let shape: DataShape = batch.shape();
    let model = Model::new(&ModelSpec::of_kind(ModelKind::Cnn), &shape).expect("cnn fits mnist");
    let params = model.layout().initialize(7);
    let mut grads = params.zeros_like();
    let mut group = c.benchmark_group("cnn");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut step = 0;
    group.bench_function("loss_and_gradient_batch64", |b| {
        b.iter(|| {
            step += 1;
            let key = StepKey {
                seed: 0,
                worker: 0,
                step,
            };
            black_box(
                model
                    .loss_and_gradient_at(&params, &batch, &mut grads, key)
                    .expect("shapes match"),
            )
        });
    });
    group.bench_function("forward_batch64", |b| {
        b.iter(|| black_box(model.evaluate(&params, &batch).expect("shapes match")));
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    cnn_step(&mut c);
    c.final_summary();
}
