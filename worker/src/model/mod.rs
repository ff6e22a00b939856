//! Models with forward and backward passes on ndarray: linear, logistic and softmax
//! regression, multi-layer perceptrons, the `cnn` preset and any `sequential` stack of
//! dense, convolution, pooling, flatten, activation and dropout layers.
//!
//! Every model is a stack of layers with a loss on the last one (the one-layer models
//! are the stack of one dense layer). A [`Model`] is built from a [`ModelSpec`] for
//! data of a [`DataShape`], holds no parameters, and computes the loss and its gradient
//! for a batch on parameters it is handed, writing the gradient into a caller-owned
//! buffer; its intermediate buffers are kept and reused from call to call.
//!
//! # Layout
//! - [`Model`] (here): checks parameters and data, then runs the network.
//! - [`error`]: [`ModelError`], why a model refused its spec, parameters or data.
//! - [`metrics`]: [`Metrics`], what an evaluation reports.
//! - [`dropout`]: [`StepKey`], which step a gradient is for, and the masks it seeds.
//! - `network`: the layer stack's forward and backward passes, and their reusable workspace.
//! - `linear`: the affine layer `x Wᵀ + b` and its gradients.
//! - `conv`: the convolution as im2col and one matrix product per image, and its gradients.
//! - `pool`: max-pooling and its gradient.
//! - `activation`: ReLU, sigmoid and tanh, and their derivatives.
//! - `loss`: mean squared error, binary and softmax cross-entropy, and their output links.
//! - `scalar`: the float type the passes are generic over (`f32`, and `f64` for checks).
//! - `gradient_check` (tests): every backward pass against central differences in `f64`.
//! - `sanity_training` (tests): plain gradient descent learns XOR, known linear weights, and digits with a CNN.

pub mod dropout;
pub mod error;
pub mod metrics;

mod activation;
mod conv;
mod linear;
mod loss;
mod network;
mod pool;
mod scalar;

#[cfg(test)]
mod gradient_check;
#[cfg(test)]
mod sanity_training;

use std::fmt;
use std::sync::Mutex;

use downpour_core::{
    DataShape, Dataset, ModelSpec, ParamSet, ParameterLayout, Targets, Task, Tensor,
};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

pub use dropout::StepKey;
pub use error::ModelError;
pub use metrics::Metrics;

use linear::{Linear, LinearGradient};
use loss::{Loss, Target};
use network::{Mode, Network, Workspace};

/// Rows evaluated at once, bounding the memory [`Model::evaluate`] needs on a large dataset.
const EVALUATION_CHUNK_ROWS: usize = 4096;

/// A model's computation for data of one shape: it holds no parameter values.
pub struct Model {
    /// The parameters' names and shapes, in order: each parametrised layer's weight
    /// (`[out, in]` or `[out, in, kh, kw]`) then its bias `[out]`, input side first.
    layout: ParameterLayout,
    /// The data the model takes: its feature count is the first layer's input
    /// width, and every batch's targets must be for exactly this task.
    shape: DataShape,
    /// The layers and the loss on the last one's outputs.
    network: Network,
    /// Buffers of finished passes, for the next ones. A pass takes one (or makes one when
    /// none is free) and puts it back when done, so concurrent passes on a shared model
    /// never share a buffer; a std mutex, held only to pop and push, never during a pass.
    workspaces: Mutex<Vec<Workspace<f32>>>,
}

impl Clone for Model {
    /// The same model with no buffers yet.
    fn clone(&self) -> Self {
        Self {
            layout: self.layout.clone(),
            shape: self.shape,
            network: self.network.clone(),
            workspaces: Mutex::new(Vec::new()),
        }
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("layout", &self.layout)
            .field("shape", &self.shape)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Builds the model `spec` describes for data of `shape`.
    ///
    /// # Errors
    /// [`ModelError::Spec`] when the spec is invalid or cannot learn the task
    /// (e.g. logistic regression on ten classes, a convolution on tabular data).
    pub fn new(spec: &ModelSpec, shape: &DataShape) -> Result<Self, ModelError> {
        let stack = spec.stack(shape)?;
        let layout = spec.layout(shape)?;
        Ok(Self {
            layout,
            shape: *shape,
            network: Network::new(&stack, Loss::of_spec(spec)),
            workspaces: Mutex::new(Vec::new()),
        })
    }

    /// The parameters' names and shapes (PyTorch's: `linear.weight`, `layers.0.bias`, `3.weight`, ...).
    #[must_use]
    pub fn layout(&self) -> &ParameterLayout {
        &self.layout
    }

    /// The data shape the model was built for.
    #[must_use]
    pub fn data_shape(&self) -> &DataShape {
        &self.shape
    }

    /// [`Model::loss_and_gradient_at`] with the default [`StepKey`] (seed, worker and
    /// step 0): for models without dropout, where the key changes nothing.
    ///
    /// # Errors
    /// As [`Model::loss_and_gradient_at`].
    pub fn loss_and_gradient(
        &self,
        params: &ParamSet,
        batch: &Dataset,
        grads: &mut ParamSet,
    ) -> Result<f32, ModelError> {
        self.loss_and_gradient_at(params, batch, grads, StepKey::default())
    }

    /// Mean loss over `batch` and its gradient w.r.t. every parameter, written into
    /// `grads`, for the step `key` names (it seeds the dropout masks).
    ///
    /// The loss is PyTorch's default reduction: mean squared error over every
    /// element (samples × outputs), binary or softmax cross-entropy over samples.
    /// `grads` must have the layout's names and shapes (e.g. `params.zeros_like()`,
    /// reused from step to step); every value in it is overwritten.
    ///
    /// # Errors
    /// When `params` or `grads` does not match the layout ([`ModelError::TensorCount`],
    /// [`ModelError::TensorMismatch`]), or the batch is empty, has the wrong number of
    /// features, or targets of another task or out of range ([`ModelError::EmptyBatch`],
    /// [`ModelError::Features`], [`ModelError::TargetKind`], [`ModelError::TargetCount`],
    /// [`ModelError::Label`]). `grads` is untouched then.
    pub fn loss_and_gradient_at(
        &self,
        params: &ParamSet,
        batch: &Dataset,
        grads: &mut ParamSet,
        key: StepKey,
    ) -> Result<f32, ModelError> {
        let target = self.target(batch)?;
        let layers = self.layers(params)?;
        let mut gradients = self.gradients(grads)?;
        let loss = self.with_workspace(|ws| {
            self.network.loss_and_gradient(
                &layers,
                batch.features.as_standard_layout().view(),
                target,
                &mut gradients,
                key,
                ws,
            )
        });
        #[allow(clippy::cast_possible_truncation)]
        Ok(loss as f32)
    }

    /// The mean loss on `data` (as in training, without dropout), plus accuracy on
    /// classification data or the mean squared error on regression data.
    ///
    /// # Errors
    /// As [`Model::loss_and_gradient`], for `params` and `data`.
    pub fn evaluate(&self, params: &ParamSet, data: &Dataset) -> Result<Metrics, ModelError> {
        let target = self.target(data)?;
        let layers = self.layers(params)?;
        let samples = data.len();
        // Row-major, as the passes need: borrowed when it already is (datasets are), copied otherwise.
        let features = data.features.as_standard_layout();
        let mut loss_sum = 0.0;
        let mut correct = 0;
        let mut outputs = 0;
        self.with_workspace(|ws| {
            for start in (0..samples).step_by(EVALUATION_CHUNK_ROWS) {
                let rows = start..samples.min(start + EVALUATION_CHUNK_ROWS);
                let chunk_target = target.rows(rows.clone());
                let mut chunk_outputs: ArrayViewMut2<'_, f32> =
                    self.network
                        .forward(&layers, features.slice(s![rows, ..]), Mode::Evaluate, ws);
                outputs = chunk_outputs.ncols();
                if let Target::Labels(labels) = chunk_target {
                    let predicted = self.network.loss.predicted_classes(chunk_outputs.view());
                    correct += predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
                }
                loss_sum +=
                    self.network
                        .loss
                        .sum_and_gradient(&mut chunk_outputs, chunk_target, 0.0);
            }
        });
        let loss = loss_sum / self.network.loss.divisor(samples, outputs) as f64;
        let (accuracy, mse) = match self.shape.task {
            Task::Classification { .. } => (Some(correct as f64 / samples as f64), None),
            Task::Regression { .. } => (None, Some(loss)),
        };
        Ok(Metrics {
            loss,
            accuracy,
            mse,
            samples,
        })
    }

    /// The model's outputs for `[samples, features]` inputs: class probabilities
    /// (`[samples, classes]`; for logistic regression `[1 - p, p]`) under a
    /// cross-entropy loss, the raw outputs under mean squared error (the values
    /// on regression data, the one-hot scores on classification data).
    ///
    /// # Errors
    /// When `params` does not match the layout, or `features` has the wrong number
    /// of columns ([`ModelError::Features`]).
    pub fn predict(
        &self,
        params: &ParamSet,
        features: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>, ModelError> {
        self.check_features(features.ncols())?;
        let layers = self.layers(params)?;
        let contiguous = features.as_standard_layout();
        let logits = self.with_workspace(|ws| {
            self.network
                .forward(&layers, contiguous.view(), Mode::Evaluate, ws)
                .to_owned()
        });
        Ok(self.network.loss.link(logits))
    }

    /// Runs `pass` on a free workspace, then keeps the workspace for the next pass.
    fn with_workspace<T>(&self, pass: impl FnOnce(&mut Workspace<f32>) -> T) -> T {
        let taken = self
            .workspaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut ws = taken.unwrap_or_else(|| self.network.workspace());
        let result = pass(&mut ws);
        self.workspaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ws);
        result
    }

    fn check_features(&self, actual: usize) -> Result<(), ModelError> {
        if actual == self.shape.features {
            Ok(())
        } else {
            Err(ModelError::Features {
                expected: self.shape.features,
                actual,
            })
        }
    }

    /// Checks a dataset against the model's shape and returns its targets.
    fn target<'a>(&self, data: &'a Dataset) -> Result<Target<'a, f32>, ModelError> {
        self.check_features(data.features.ncols())?;
        let samples = data.len();
        if samples == 0 {
            return Err(ModelError::EmptyBatch);
        }
        let actual = data.shape().task;
        if actual != self.shape.task {
            return Err(ModelError::TargetKind {
                expected: self.shape.task,
                actual,
            });
        }
        let targets = match &data.targets {
            Targets::Regression(y) => y.nrows(),
            Targets::Classes { labels, .. } => labels.len(),
        };
        if targets != samples {
            return Err(ModelError::TargetCount { samples, targets });
        }
        Ok(match &data.targets {
            Targets::Regression(y) => Target::Values(y.view()),
            Targets::Classes { labels, classes } => {
                if let Some((index, &label)) =
                    labels.iter().enumerate().find(|(_, l)| **l >= *classes)
                {
                    return Err(ModelError::Label {
                        index,
                        label,
                        classes: *classes,
                    });
                }
                Target::Labels(labels)
            }
        })
    }

    /// Checks every tensor's name and shape against the layout, in order.
    fn check_tensors(&self, set: &ParamSet, role: &'static str) -> Result<(), ModelError> {
        let expected = self.layout.params();
        if set.len() != expected.len() {
            return Err(ModelError::TensorCount {
                role,
                expected: expected.len(),
                actual: set.len(),
            });
        }
        for (index, (spec, entry)) in expected.iter().zip(set.entries()).enumerate() {
            if spec.name != entry.name || spec.shape != entry.tensor.shape() {
                return Err(ModelError::TensorMismatch {
                    role,
                    index,
                    expected_name: spec.name.clone(),
                    expected_shape: spec.shape.clone(),
                    actual_name: entry.name.clone(),
                    actual_shape: entry.tensor.shape().to_vec(),
                });
            }
        }
        Ok(())
    }

    /// The parameters as one borrowed [`Linear`] per parametrised layer.
    fn layers<'a>(&self, params: &'a ParamSet) -> Result<Vec<Linear<'a, f32>>, ModelError> {
        self.check_tensors(params, "params")?;
        Ok(params
            .entries()
            .chunks_exact(2)
            .map(|pair| Linear {
                weight: matrix(&pair[0].tensor),
                bias: ndarray::ArrayView1::from(pair[1].tensor.data()),
            })
            .collect())
    }

    /// The gradient buffer as one mutable [`LinearGradient`] per parametrised layer.
    fn gradients<'a>(
        &self,
        grads: &'a mut ParamSet,
    ) -> Result<Vec<LinearGradient<'a, f32>>, ModelError> {
        self.check_tensors(grads, "grads")?;
        let mut tensors = grads.tensors_mut();
        let mut gradients = Vec::with_capacity(self.network.parametrised());
        while let (Some(weight), Some(bias)) = (tensors.next(), tensors.next()) {
            let (out, len) = (weight.shape()[0], weight.len());
            gradients.push(LinearGradient {
                weight: ArrayViewMut2::from_shape((out, len / out), weight.data_mut())
                    .expect("a weight's values are its shape's product"),
                bias: ndarray::ArrayViewMut1::from(bias.data_mut()),
            });
        }
        Ok(gradients)
    }
}

/// A weight tensor as the matrix `[out, everything else]` (row-major, as PyTorch's).
fn matrix(tensor: &Tensor) -> ArrayView2<'_, f32> {
    let out = tensor.shape()[0];
    ArrayView2::from_shape((out, tensor.len() / out), tensor.data())
        .expect("a weight's values are its shape's product")
}

#[cfg(test)]
mod tests {
    use downpour_core::model_spec::{Activation, Head, ModelKind};
    use downpour_core::{NamedTensor, Tensor};
    use ndarray::Axis;

    use super::gradient_check::{random_batch, random_params};
    use super::*;

    fn digits() -> DataShape {
        DataShape::tabular(64, Task::Classification { classes: 10 })
    }

    fn one_layer(kind: ModelKind) -> ModelSpec {
        ModelSpec {
            kind,
            hidden: vec![],
            ..ModelSpec::default()
        }
    }

    /// One model of each kind, with data it trains on.
    fn every_kind() -> Vec<(ModelSpec, DataShape)> {
        let regression = DataShape::tabular(5, Task::Regression { outputs: 3 });
        let binary = DataShape::tabular(5, Task::Classification { classes: 2 });
        let mlp = |activation, head| ModelSpec {
            kind: ModelKind::Mlp,
            hidden: vec![7, 6],
            activation,
            head,
            ..ModelSpec::default()
        };
        vec![
            (one_layer(ModelKind::LinearRegression), regression),
            (one_layer(ModelKind::LogisticRegression), binary),
            (one_layer(ModelKind::SoftmaxRegression), digits()),
            (mlp(Activation::Relu, Head::SoftmaxCrossEntropy), digits()),
            (mlp(Activation::Sigmoid, Head::Mse), digits()),
            (mlp(Activation::Tanh, Head::Mse), regression),
        ]
    }

    /// The mean-loss gradient of the whole batch is the size-weighted mean of its
    /// parts' gradients, whether the parts are single samples or mini-batches.
    #[test]
    fn batch_size_one_mini_batches_and_the_full_batch_agree() {
        for (spec, shape) in every_kind() {
            let model = Model::new(&spec, &shape).unwrap();
            let params = random_params(&model, 3);
            let data = random_batch(&shape, 10, 4);
            let mut full = params.zeros_like();
            let full_loss = model.loss_and_gradient(&params, &data, &mut full).unwrap();

            for batch_size in [1, 3, 10] {
                let mut grads = params.zeros_like();
                let mut loss = 0.0;
                let mut mean = params.zeros_like();
                let indices: Vec<usize> = (0..data.len()).collect();
                for part in indices.chunks(batch_size) {
                    let batch = data.select(part);
                    let weight = part.len() as f32 / data.len() as f32;
                    loss += weight
                        * model
                            .loss_and_gradient(&params, &batch, &mut grads)
                            .unwrap();
                    for (m, g) in mean.tensors_mut().zip(grads.entries()) {
                        for (m, g) in m.data_mut().iter_mut().zip(g.tensor.data()) {
                            *m += weight * g;
                        }
                    }
                }
                assert!(
                    (loss - full_loss).abs() < 1e-5 * (1.0 + full_loss.abs()),
                    "{spec:?}, batches of {batch_size}: loss {loss} vs {full_loss}"
                );
                for (m, f) in mean.entries().iter().zip(full.entries()) {
                    let name = &f.name;
                    for (m, f) in m.tensor.data().iter().zip(f.tensor.data()) {
                        assert!(
                            (m - f).abs() < 1e-5 * (1.0 + f.abs()),
                            "{spec:?}, batches of {batch_size}, {name}: {m} vs {f}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn evaluation_agrees_with_training_loss_across_chunks() {
        for (spec, shape) in every_kind() {
            let model = Model::new(&spec, &shape).unwrap();
            let params = random_params(&model, 5);
            let data = random_batch(&shape, EVALUATION_CHUNK_ROWS + 123, 6);
            let mut grads = params.zeros_like();
            let loss = model.loss_and_gradient(&params, &data, &mut grads).unwrap();
            let metrics = model.evaluate(&params, &data).unwrap();
            assert_eq!(metrics.samples, data.len());
            assert!(
                (metrics.loss - f64::from(loss)).abs() < 1e-5 * (1.0 + metrics.loss),
                "{spec:?}: {metrics:?} vs {loss}"
            );
            match shape.task {
                Task::Regression { .. } => {
                    assert_eq!(metrics.mse, Some(metrics.loss));
                    assert_eq!(metrics.accuracy, None);
                }
                Task::Classification { .. } => {
                    let accuracy = metrics.accuracy.unwrap();
                    assert!((0.0..=1.0).contains(&accuracy));
                    assert_eq!(metrics.mse, None);
                }
            }
        }
    }

    #[test]
    fn accuracy_counts_argmax_and_logistic_threshold() {
        let shape = DataShape::tabular(1, Task::Classification { classes: 2 });
        let model = Model::new(&one_layer(ModelKind::LogisticRegression), &shape).unwrap();
        // p = sigmoid(x): class 1 exactly for x > 0.
        let params = ParamSet::new(vec![
            NamedTensor {
                name: "linear.weight".into(),
                tensor: Tensor::new(vec![1, 1], vec![1.0]).unwrap(),
            },
            NamedTensor {
                name: "linear.bias".into(),
                tensor: Tensor::zeros(&[1]),
            },
        ]);
        let data = Dataset {
            features: ndarray::array![[-2.0], [-1.0], [1.0], [3.0]],
            targets: Targets::Classes {
                labels: vec![0, 1, 1, 1],
                classes: 2,
            },
            image: None,
            class_names: None,
        };
        let metrics = model.evaluate(&params, &data).unwrap();
        assert_eq!(metrics.accuracy, Some(0.75));
    }

    #[test]
    fn predictions_are_probabilities_or_values() {
        for (spec, shape) in every_kind() {
            let model = Model::new(&spec, &shape).unwrap();
            let params = random_params(&model, 9);
            let data = random_batch(&shape, 4, 10);
            let predicted = model.predict(&params, data.features.view()).unwrap();
            let columns = match (shape.task, spec.kind) {
                (Task::Regression { outputs }, _) => outputs,
                (Task::Classification { classes }, _) => classes,
            };
            assert_eq!(predicted.dim(), (4, columns), "{spec:?}");
            if model.network.loss != Loss::MeanSquaredError {
                for total in predicted.sum_axis(Axis(1)) {
                    assert!((total - 1.0).abs() < 1e-6, "{spec:?}: rows sum to {total}");
                }
                assert!(predicted.iter().all(|p| (0.0..=1.0).contains(p)));
            }
        }
    }

    #[test]
    fn refuses_a_spec_that_cannot_learn_the_task() {
        let err = Model::new(&one_layer(ModelKind::LogisticRegression), &digits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model.kind = \"logistic_regression\" cannot train on classification with 10 classes"
        );
    }

    #[test]
    fn refuses_mismatched_parameters_and_gradients_with_the_numbers() {
        let model = Model::new(&ModelSpec::default(), &digits()).unwrap();
        let params = model.layout().initialize(1);
        let data = random_batch(&digits(), 3, 1);

        let short = ParamSet::new(params.entries()[..3].to_vec());
        let mut grads = params.zeros_like();
        let err = model
            .loss_and_gradient(&short, &data, &mut grads)
            .unwrap_err();
        assert_eq!(err.to_string(), "params: expected 4 tensors, got 3");

        let mut entries = params.zeros_like().into_entries();
        entries[2].tensor = Tensor::zeros(&[64, 10]);
        let mut wrong = ParamSet::new(entries);
        let err = model
            .loss_and_gradient(&params, &data, &mut wrong)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "grads[2]: expected layers.1.weight of shape [10, 128], \
             got layers.1.weight of shape [64, 10]"
        );
    }

    #[test]
    fn refuses_mismatched_data_with_the_numbers() {
        let model = Model::new(&ModelSpec::default(), &digits()).unwrap();
        let params = model.layout().initialize(1);
        let mut grads = params.zeros_like();
        grads.tensors_mut().for_each(|t| t.data_mut().fill(7.0));
        let mut refuse = |data: &Dataset| {
            model
                .loss_and_gradient(&params, data, &mut grads)
                .unwrap_err()
                .to_string()
        };

        let narrow = random_batch(
            &DataShape {
                features: 63,
                ..digits()
            },
            2,
            1,
        );
        assert_eq!(refuse(&narrow), "expected 64 features, got 63");

        let empty = random_batch(&digits(), 0, 1);
        assert_eq!(
            refuse(&empty),
            "expected at least 1 sample, got an empty batch"
        );

        let regression = random_batch(
            &DataShape::tabular(64, Task::Regression { outputs: 1 }),
            2,
            1,
        );
        assert_eq!(
            refuse(&regression),
            "expected targets for classification with 10 classes, got regression with 1 output(s)"
        );

        let mut bad_label = random_batch(&digits(), 3, 1);
        bad_label.targets = Targets::Classes {
            labels: vec![0, 10, 2],
            classes: 10,
        };
        assert_eq!(
            refuse(&bad_label),
            "sample 1 has label 10, expected a class below 10"
        );

        let mut short_targets = random_batch(&digits(), 3, 1);
        short_targets.targets = Targets::Classes {
            labels: vec![0, 1],
            classes: 10,
        };
        assert_eq!(
            refuse(&short_targets),
            "expected 3 targets (one per feature row), got 2"
        );

        // Refused before anything was written.
        assert!(
            grads
                .entries()
                .iter()
                .all(|e| e.tensor.data().iter().all(|&g| g == 7.0))
        );

        let err = model.predict(&params, narrow.features.view()).unwrap_err();
        assert_eq!(err.to_string(), "expected 64 features, got 63");
    }
}
