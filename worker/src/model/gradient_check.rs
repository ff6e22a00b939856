//! Test support: every backward pass checked against central differences of the loss.
//!
//! The passes are generic over the float type, so the check runs the very same code
//! in `f64`: with a step of `1e-6` the central difference is then accurate to about
//! `1e-9` on these small problems (truncation ~ h² |L'''|, rounding ~ 1e-16 |L| / h),
//! and the tolerance can be `1e-7` relative: far below any real mistake (a wrong
//! sign, a missing factor of 2 or of 1/batch, a wrong derivative), as
//! [`the_check_catches_wrong_gradients`] shows. The public `f32` path is then
//! compared with the checked `f64` gradient on the same inputs.

use downpour_core::layer_spec::LayerSpec;
use downpour_core::model_spec::{Activation, Head, ModelKind, ModelSpec};
use downpour_core::{DataShape, Dataset, ImageShape, NamedTensor, ParamSet, Targets, Task, Tensor};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::linear::{Linear, LinearGradient};
use super::loss::Target;
use super::network::Mode;
use super::{Model, StepKey};

/// Step of the central differences.
const STEP: f64 = 1e-6;
/// Largest accepted `|analytic - numeric| / (1 + |numeric|)` in `f64`.
const TOLERANCE: f64 = 1e-7;
/// Largest accepted `|f32 - f64| / (1 + |f64|)` between the public path and the checked one.
const F32_TOLERANCE: f64 = 1e-6;

/// Random parameters for `model`, every value uniform in `[-1, 1]` (biases included,
/// so that no bias gradient is checked only at zero).
pub(super) fn random_params(model: &Model, seed: u64) -> ParamSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let entries = model
        .layout()
        .params()
        .iter()
        .map(|p| {
            let n = p.shape.iter().product();
            let data = (0..n).map(|_| rng.random_range(-1.0..=1.0)).collect();
            NamedTensor {
                name: p.name.clone(),
                tensor: Tensor::new(p.shape.clone(), data).expect("n is the shape's product"),
            }
        })
        .collect();
    ParamSet::new(entries)
}

/// `samples` random samples of `shape`: features and regression targets uniform
/// in `[-1, 1]`, labels uniform over the classes.
pub(super) fn random_batch(shape: &DataShape, samples: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let features =
        Array2::from_shape_simple_fn((samples, shape.features), || rng.random_range(-1.0..=1.0));
    let targets = match shape.task {
        Task::Regression { outputs } => {
            Targets::Regression(Array2::from_shape_simple_fn((samples, outputs), || {
                rng.random_range(-1.0..=1.0)
            }))
        }
        Task::Classification { classes } => Targets::Classes {
            labels: (0..samples).map(|_| rng.random_range(0..classes)).collect(),
            classes,
        },
    };
    Dataset {
        features,
        targets,
        image: shape.image,
        class_names: None,
    }
}

/// The step every check computes: it fixes the dropout masks, so the loss is a smooth
/// function of the parameters and central differences apply.
const KEY: StepKey = StepKey {
    seed: 5,
    worker: 2,
    step: 11,
};

/// A model's parameters and one batch, widened to `f64`.
#[derive(Debug, Clone)]
struct Problem {
    /// The model whose passes are checked.
    model: Model,
    /// Each parametrised layer's weight as the matrix `[out, in]` (`[out, in·kh·kw]`).
    weights: Vec<Array2<f64>>,
    /// Each layer's `[out]` bias; as many as `weights`.
    biases: Vec<Array1<f64>>,
    /// `[samples, in]`.
    features: Array2<f64>,
    /// Regression targets, `[samples, outputs]`; `None` on classification data.
    values: Option<Array2<f64>>,
    /// Class labels, one per sample; empty on regression data.
    labels: Vec<usize>,
}

impl Problem {
    fn new(model: &Model, params: &ParamSet, batch: &Dataset) -> Self {
        let widen = |t: &Tensor| t.data().iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let entries = params.entries();
        let weights = entries
            .iter()
            .step_by(2)
            .map(|e| {
                let out = e.tensor.shape()[0];
                Array2::from_shape_vec((out, e.tensor.len() / out), widen(&e.tensor))
                    .expect("shape fits")
            })
            .collect();
        let biases = entries
            .iter()
            .skip(1)
            .step_by(2)
            .map(|e| Array1::from(widen(&e.tensor)))
            .collect();
        let (values, labels) = match &batch.targets {
            Targets::Regression(y) => (Some(y.mapv(f64::from)), Vec::new()),
            Targets::Classes { labels, .. } => (None, labels.clone()),
        };
        Self {
            model: model.clone(),
            weights,
            biases,
            features: batch.features.mapv(f64::from),
            values,
            labels,
        }
    }

    fn layers(&self) -> Vec<Linear<'_, f64>> {
        self.weights
            .iter()
            .zip(&self.biases)
            .map(|(w, b)| Linear {
                weight: w.view(),
                bias: b.view(),
            })
            .collect()
    }

    fn target(&self) -> Target<'_, f64> {
        match &self.values {
            Some(y) => Target::Values(y.view()),
            None => Target::Labels(&self.labels),
        }
    }

    /// The mean loss, by the forward pass alone.
    fn loss(&self) -> f64 {
        let network = &self.model.network;
        let mut ws = network.workspace();
        let mut outputs = network
            .forward(
                &self.layers(),
                self.features.view(),
                Mode::Train(KEY),
                &mut ws,
            )
            .to_owned();
        network
            .loss
            .mean_and_gradient(&mut outputs.view_mut(), self.target())
    }

    /// The backward pass's gradient, flattened in layout order.
    fn analytic_gradient(&self) -> Vec<f64> {
        let mut weights: Vec<_> = self
            .weights
            .iter()
            .map(|w| Array2::from_elem(w.raw_dim(), f64::NAN))
            .collect();
        let mut biases: Vec<_> = self
            .biases
            .iter()
            .map(|b| Array1::from_elem(b.raw_dim(), f64::NAN))
            .collect();
        let mut gradients: Vec<_> = weights
            .iter_mut()
            .zip(&mut biases)
            .map(|(w, b)| LinearGradient {
                weight: w.view_mut(),
                bias: b.view_mut(),
            })
            .collect();
        let mut ws = self.model.network.workspace();
        // Twice on one workspace: buffers left by a pass must not change the next.
        for _ in 0..2 {
            self.model.network.loss_and_gradient(
                &self.layers(),
                self.features.view(),
                self.target(),
                &mut gradients,
                KEY,
                &mut ws,
            );
        }
        weights
            .iter()
            .zip(&biases)
            .flat_map(|(w, b)| w.iter().chain(b).copied())
            .collect()
    }

    /// Central differences of [`Problem::loss`], flattened in layout order.
    fn numeric_gradient(&self) -> Vec<f64> {
        let mut probe = self.clone();
        let mut gradient = Vec::new();
        for layer in 0..self.weights.len() {
            for tensor in 0..2 {
                let len = if tensor == 0 {
                    self.weights[layer].len()
                } else {
                    self.biases[layer].len()
                };
                for i in 0..len {
                    let original = *probe.value_mut(layer, tensor, i);
                    *probe.value_mut(layer, tensor, i) = original + STEP;
                    let up = probe.loss();
                    *probe.value_mut(layer, tensor, i) = original - STEP;
                    let down = probe.loss();
                    *probe.value_mut(layer, tensor, i) = original;
                    gradient.push((up - down) / (2.0 * STEP));
                }
            }
        }
        gradient
    }

    /// The `i`-th value (row-major) of layer `layer`'s weight (`tensor == 0`) or bias.
    fn value_mut(&mut self, layer: usize, tensor: usize, i: usize) -> &mut f64 {
        let values = if tensor == 0 {
            self.weights[layer].as_slice_mut()
        } else {
            self.biases[layer].as_slice_mut()
        };
        &mut values.expect("owned arrays are contiguous")[i]
    }
}

/// The worst disagreement between two gradients: `max |a - b| / (1 + |b|)`.
fn worst_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "gradients of different lengths");
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f64::max)
}

/// Checks `spec`'s backward pass on a random problem of `shape`: against central
/// differences in `f64`, and the public `f32` path against the `f64` one.
fn check(spec: &ModelSpec, shape: &DataShape, seed: u64) {
    let model = Model::new(spec, shape).expect("the spec fits the shape");
    let params = random_params(&model, seed);
    let batch = random_batch(shape, 6, seed + 1);
    let problem = Problem::new(&model, &params, &batch);

    let analytic = problem.analytic_gradient();
    let numeric = problem.numeric_gradient();
    let error = worst_error(&analytic, &numeric);
    assert!(
        error < TOLERANCE,
        "{spec:?}: backward pass disagrees with central differences by {error:e}"
    );
    // The check is not vacuous: every tensor has a clearly non-zero gradient.
    let mut offset = 0;
    for p in model.layout().params() {
        let n: usize = p.shape.iter().product();
        let largest = numeric[offset..offset + n]
            .iter()
            .fold(0.0f64, |m, g| m.max(g.abs()));
        assert!(
            largest > 1e-3,
            "{spec:?}: {} has a gradient of {largest:e}",
            p.name
        );
        offset += n;
    }

    let mut grads = params.zeros_like();
    grads
        .tensors_mut()
        .for_each(|t| t.data_mut().fill(f32::NAN));
    let loss = model
        .loss_and_gradient_at(&params, &batch, &mut grads, KEY)
        .unwrap();
    let loss_error = (f64::from(loss) - problem.loss()).abs() / (1.0 + problem.loss().abs());
    assert!(
        loss_error < F32_TOLERANCE,
        "{spec:?}: f32 loss off by {loss_error:e}"
    );
    let public: Vec<f64> = grads
        .entries()
        .iter()
        .flat_map(|e| e.tensor.data().iter().map(|&g| f64::from(g)))
        .collect();
    let error = worst_error(&public, &analytic);
    assert!(
        error < F32_TOLERANCE,
        "{spec:?}: f32 gradient off the f64 one by {error:e}"
    );
}

fn one_layer(kind: ModelKind) -> ModelSpec {
    ModelSpec {
        kind,
        hidden: vec![],
        ..ModelSpec::default()
    }
}

fn classes(features: usize, classes: usize) -> DataShape {
    DataShape::tabular(features, Task::Classification { classes })
}

fn regression(features: usize, outputs: usize) -> DataShape {
    DataShape::tabular(features, Task::Regression { outputs })
}

#[test]
fn linear_regression_gradient_matches_central_differences() {
    check(
        &one_layer(ModelKind::LinearRegression),
        &regression(3, 2),
        10,
    );
}

#[test]
fn logistic_regression_gradient_matches_central_differences() {
    check(
        &one_layer(ModelKind::LogisticRegression),
        &classes(3, 2),
        20,
    );
}

#[test]
fn softmax_regression_gradient_matches_central_differences() {
    check(&one_layer(ModelKind::SoftmaxRegression), &classes(4, 3), 30);
}

/// Two hidden layers, so the gradient flows through the activation twice.
#[test]
fn every_mlp_activation_and_head_matches_central_differences() {
    let data = [
        (Head::SoftmaxCrossEntropy, classes(4, 3)),
        (Head::Mse, classes(4, 3)),
        (Head::Mse, regression(4, 2)),
    ];
    for (seed, activation) in [Activation::Relu, Activation::Sigmoid, Activation::Tanh]
        .into_iter()
        .enumerate()
    {
        for (head, shape) in &data {
            let spec = ModelSpec {
                kind: ModelKind::Mlp,
                hidden: vec![5, 4],
                activation,
                head: *head,
                ..ModelSpec::default()
            };
            check(&spec, shape, 40 + seed as u64);
        }
    }
}

fn image(channels: usize, height: usize, width: usize, classes: usize) -> DataShape {
    DataShape {
        image: Some(ImageShape {
            channels,
            height,
            width,
        }),
        ..DataShape::tabular(channels * height * width, Task::Classification { classes })
    }
}

fn sequential(layers: &[&str], head: Head) -> ModelSpec {
    ModelSpec {
        head,
        ..ModelSpec::sequential(
            layers
                .iter()
                .map(|l| l.parse::<LayerSpec>().unwrap())
                .collect(),
        )
    }
}

/// Two convolutions (the second strided and padded, so patches overlap the border and
/// skip positions), pooling with a ragged edge, flatten, and dense layers, under both heads.
#[test]
fn convolution_pooling_and_flatten_match_central_differences() {
    let layers = [
        "conv2d 3 3 padding=1",
        "relu",
        "max_pool2d 2",
        "conv2d 4 2 stride=2 padding=1",
        "tanh",
        "flatten",
        "dense 5",
        "sigmoid",
        "dense 3",
    ];
    for (seed, head) in [(60, Head::SoftmaxCrossEntropy), (61, Head::Mse)] {
        check(&sequential(&layers, head), &image(2, 7, 7, 3), seed);
    }
    // A strided convolution straight onto a pooled image, whose windows do not tile it.
    check(
        &sequential(
            &["conv2d 2 3 stride=2", "max_pool2d 2", "flatten", "dense 3"],
            Head::SoftmaxCrossEntropy,
        ),
        &image(1, 11, 9, 3),
        62,
    );
}

/// Dropout with the step's mask fixed, after a dense layer and after a convolution,
/// and activations that cannot work in place (after dropout, after the input).
#[test]
fn dropout_with_a_fixed_mask_matches_central_differences() {
    check(
        &sequential(
            &[
                "sigmoid",
                "conv2d 3 3",
                "dropout 0.3",
                "tanh",
                "flatten",
                "dense 6",
                "dropout 0.5",
                "sigmoid",
                "dense 3",
            ],
            Head::SoftmaxCrossEntropy,
        ),
        &image(1, 5, 5, 3),
        70,
    );
}

/// The tolerance is tight enough for the check to fail on the usual mistakes.
#[test]
fn the_check_catches_wrong_gradients() {
    let spec = ModelSpec {
        kind: ModelKind::Mlp,
        hidden: vec![5],
        activation: Activation::Tanh,
        head: Head::Mse,
        ..ModelSpec::default()
    };
    let shape = regression(3, 2);
    let model = Model::new(&spec, &shape).unwrap();
    let problem = Problem::new(
        &model,
        &random_params(&model, 7),
        &random_batch(&shape, 6, 8),
    );
    let analytic = problem.analytic_gradient();
    let numeric = problem.numeric_gradient();
    assert!(worst_error(&analytic, &numeric) < TOLERANCE);

    let scaled = |factor: f64| analytic.iter().map(|g| g * factor).collect::<Vec<_>>();
    let mut one_entry_off = analytic.clone();
    one_entry_off[3] += 1e-5;
    let mut bias_forgotten = analytic.clone();
    let last = bias_forgotten.len() - 1;
    bias_forgotten[last] = 0.0;
    let mutants = [
        ("sign flipped", scaled(-1.0)),
        ("doubled", scaled(2.0)),
        ("halved (MSE's factor 2 missing)", scaled(0.5)),
        ("sum instead of mean over 6 samples", scaled(6.0)),
        ("one entry off by 1e-5", one_entry_off),
        ("last bias gradient missing", bias_forgotten),
    ];
    for (mistake, wrong) in mutants {
        let error = worst_error(&wrong, &numeric);
        assert!(
            error > 10.0 * TOLERANCE,
            "{mistake}: the check would pass it ({error:e})"
        );
    }
}
