//! Sanity training in plain Rust, no server: full-batch gradient descent with
//! `w -= lr * g` learns XOR with a small MLP and recovers known linear weights.

use downpour_core::model_spec::{Activation, Head, ModelKind, ModelSpec, WeightInit};
use downpour_core::{Dataset, ParamSet, Targets};
use ndarray::{Array2, array};

use super::Model;
use super::gradient_check::random_batch;

/// Plain gradient descent: `w -= lr * g` for every value.
fn descend(params: &mut ParamSet, grads: &ParamSet, lr: f32) {
    for (p, g) in params.tensors_mut().zip(grads.entries()) {
        for (w, g) in p.data_mut().iter_mut().zip(g.tensor.data()) {
            *w -= lr * g;
        }
    }
}

/// `steps` full-batch steps from the layout's initial values for `seed`; returns the
/// parameters and the first and last losses.
fn train(model: &Model, data: &Dataset, seed: u64, lr: f32, steps: usize) -> (ParamSet, f32, f32) {
    let mut params = model.layout().initialize(seed);
    let mut grads = params.zeros_like();
    let first = model.loss_and_gradient(&params, data, &mut grads).unwrap();
    let mut last = first;
    for _ in 0..steps {
        last = model.loss_and_gradient(&params, data, &mut grads).unwrap();
        descend(&mut params, &grads, lr);
    }
    (params, first, last)
}

fn xor_features() -> Array2<f32> {
    array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
}

#[test]
fn a_small_mlp_learns_xor_with_a_softmax_head() {
    let data = Dataset {
        features: xor_features(),
        targets: Targets::Classes {
            labels: vec![0, 1, 1, 0],
            classes: 2,
        },
        image: None,
        class_names: None,
    };
    let spec = ModelSpec {
        kind: ModelKind::Mlp,
        hidden: vec![8],
        activation: Activation::Tanh,
        head: Head::SoftmaxCrossEntropy,
        ..ModelSpec::default()
    };
    let model = Model::new(&spec, &data.shape()).unwrap();
    let (params, first, last) = train(&model, &data, 1, 0.5, 500);
    assert!(last < 0.1 * first, "loss went from {first} to {last}");

    let probabilities = model.predict(&params, data.features.view()).unwrap();
    let class_one: Vec<f32> = probabilities.column(1).to_vec();
    assert!(class_one[0] < 0.5 && class_one[3] < 0.5, "{class_one:?}");
    assert!(class_one[1] > 0.5 && class_one[2] > 0.5, "{class_one:?}");
    let metrics = model.evaluate(&params, &data).unwrap();
    assert_eq!(metrics.accuracy, Some(1.0));
}

#[test]
fn a_small_mlp_learns_xor_as_regression_with_an_mse_head() {
    let data = Dataset {
        features: xor_features(),
        targets: Targets::Regression(array![[0.0], [1.0], [1.0], [0.0]]),
        image: None,
        class_names: None,
    };
    let spec = ModelSpec {
        kind: ModelKind::Mlp,
        hidden: vec![8],
        activation: Activation::Relu,
        head: Head::Mse,
        ..ModelSpec::default()
    };
    let model = Model::new(&spec, &data.shape()).unwrap();
    let (params, first, last) = train(&model, &data, 3, 0.1, 500);
    assert!(last < 0.1 * first, "loss went from {first} to {last}");

    let outputs = model.predict(&params, data.features.view()).unwrap();
    let outputs: Vec<f32> = outputs.column(0).to_vec();
    assert!(outputs[0] < 0.5 && outputs[3] < 0.5, "{outputs:?}");
    assert!(outputs[1] > 0.5 && outputs[2] > 0.5, "{outputs:?}");
}

#[test]
fn linear_regression_recovers_known_weights() {
    let weight = array![[1.5f32, -2.0, 0.5], [0.0, 0.75, -1.0]];
    let bias = array![0.25f32, -0.5];
    let shape =
        downpour_core::DataShape::tabular(3, downpour_core::Task::Regression { outputs: 2 });
    let mut data = random_batch(&shape, 50, 5);
    let y = data.features.dot(&weight.t()) + &bias;
    data.targets = Targets::Regression(y);

    let spec = ModelSpec {
        kind: ModelKind::LinearRegression,
        hidden: vec![],
        init: Some(WeightInit::Zeros),
        ..ModelSpec::default()
    };
    let model = Model::new(&spec, &shape).unwrap();
    let (params, _, _) = train(&model, &data, 0, 0.5, 300);

    let learned = params.get("linear.weight").unwrap().view2().unwrap();
    for (l, w) in learned.iter().zip(&weight) {
        assert!(
            (l - w).abs() < 1e-4,
            "weights {learned} instead of {weight}"
        );
    }
    let learned = params.get("linear.bias").unwrap().view1().unwrap();
    for (l, b) in learned.iter().zip(&bias) {
        assert!((l - b).abs() < 1e-4, "bias {learned} instead of {bias}");
    }
    let metrics = model.evaluate(&params, &data).unwrap();
    assert!(metrics.mse.unwrap() < 1e-8, "{metrics:?}");
    assert_eq!(metrics.accuracy, None);
}
