//! What model a job trains: its kind (or its own layers), hidden layers, activation,
//! head and initialisation.
//!
//! The spec is shared by the server (which derives the parameter layout and
//! initialises it) and the workers (which build the forward and backward passes);
//! both go through [`ModelSpec::stack`], the one place a spec becomes layers.

use serde::{Deserialize, Serialize};

use crate::data::{DataShape, Task};
use crate::layer_spec::LayerSpec;
use crate::layer_stack::{Dims, LayerStack, Naming};
use crate::layout::ParameterLayout;
pub use crate::layout::WeightInit;

/// A model spec that cannot train on the data it is given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelSpecError {
    /// A field holds a value outside its domain.
    #[error("model.{field}: {reason}")]
    Invalid {
        /// The field, as named in the job file.
        field: &'static str,
        /// Why the value is refused, with the value.
        reason: String,
    },
    /// The model does not fit the dataset's task.
    #[error("model.kind = \"{kind}\" cannot train on {task}")]
    TaskMismatch {
        /// The model kind.
        kind: &'static str,
        /// The dataset's task, described.
        task: String,
    },
}

/// The family of model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// `y = W x + b`, mean squared error. Regression data.
    LinearRegression,
    /// `p = sigmoid(w · x + b)`, binary cross-entropy. Two-class data.
    LogisticRegression,
    /// `p = softmax(W x + b)`, cross-entropy. Classification data.
    SoftmaxRegression,
    /// A multi-layer perceptron with [`ModelSpec::hidden`] layers and a [`Head`].
    Mlp,
    /// The convolutional network for 28×28 greyscale digits ([`cnn_layers`]), on any image input.
    Cnn,
    /// The layers in [`ModelSpec::layers`], in order, and a [`Head`].
    Sequential,
}

impl ModelKind {
    /// The name used in job files.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::LinearRegression => "linear_regression",
            Self::LogisticRegression => "logistic_regression",
            Self::SoftmaxRegression => "softmax_regression",
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Sequential => "sequential",
        }
    }
}

/// Hidden-layer non-linearity of an MLP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// Output layer and loss of an MLP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Softmax over classes, cross-entropy loss. Classification data.
    #[default]
    SoftmaxCrossEntropy,
    /// Linear outputs, mean squared error (one-hot targets on classification data).
    Mse,
}

/// The `cnn` preset: `conv2d 32 3, relu, max_pool2d 2, conv2d 64 3, relu, max_pool2d 2,
/// flatten, dense 64, relu, dense {outputs}`.
///
/// On a 1×28×28 input the flatten gives 64×5×5 = 1,600 features and the model has
/// 121,930 parameters for 10 classes; on other images the flatten size follows.
#[must_use]
pub fn cnn_layers(outputs: usize) -> Vec<LayerSpec> {
    let conv = |channels| LayerSpec::Conv2d {
        channels,
        kernel: 3,
        stride: 1,
        padding: 0,
    };
    vec![
        conv(32),
        LayerSpec::Relu,
        LayerSpec::MaxPool2d { size: 2 },
        conv(64),
        LayerSpec::Relu,
        LayerSpec::MaxPool2d { size: 2 },
        LayerSpec::Flatten,
        LayerSpec::Dense { units: 64 },
        LayerSpec::Relu,
        LayerSpec::Dense { units: outputs },
    ]
}

/// The model a job trains.
///
/// In a job file `kind` may be left out when `layers` is given (it is then `sequential`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelSection")]
pub struct ModelSpec {
    /// The family of model.
    pub kind: ModelKind,
    /// Widths of the hidden layers, input side first (MLP only; empty otherwise).
    pub hidden: Vec<usize>,
    /// The layers of a `sequential` model, input side first (empty for every other kind).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSpec>,
    /// Hidden-layer activation (MLP only).
    pub activation: Activation,
    /// Output layer and loss (MLP, CNN and sequential models).
    pub head: Head,
    /// Weight initialisation; `None` picks He normal for models with ReLUs and Xavier uniform otherwise.
    pub init: Option<WeightInit>,
    /// Constant every bias starts at.
    pub bias_init: f32,
}

/// The `[model]` section as written: `kind` may be left out when `layers` is given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSection {
    kind: Option<ModelKind>,
    #[serde(default)]
    hidden: Vec<usize>,
    #[serde(default)]
    layers: Vec<LayerSpec>,
    #[serde(default)]
    activation: Activation,
    #[serde(default)]
    head: Head,
    #[serde(default)]
    init: Option<WeightInit>,
    #[serde(default)]
    bias_init: f32,
}

impl TryFrom<ModelSection> for ModelSpec {
    type Error = String;

    fn try_from(s: ModelSection) -> Result<Self, String> {
        let kind = match (s.kind, s.layers.is_empty()) {
            (Some(kind), _) => kind,
            (None, false) => ModelKind::Sequential,
            (None, true) => {
                return Err("model.kind: missing; give a kind (linear_regression, \
                            logistic_regression, softmax_regression, mlp, cnn) or model.layers"
                    .into());
            }
        };
        Ok(Self {
            kind,
            hidden: s.hidden,
            layers: s.layers,
            activation: s.activation,
            head: s.head,
            init: s.init,
            bias_init: s.bias_init,
        })
    }
}

impl Default for ModelSpec {
    /// The default job's model: a 128-unit ReLU MLP with a softmax head.
    fn default() -> Self {
        Self {
            kind: ModelKind::Mlp,
            hidden: vec![128],
            layers: Vec::new(),
            activation: Activation::Relu,
            head: Head::SoftmaxCrossEntropy,
            init: None,
            bias_init: 0.0,
        }
    }
}

impl ModelSpec {
    /// A preset or one-layer model of `kind` with the default head and initialisation
    /// (for an MLP, the default hidden layer).
    #[must_use]
    pub fn of_kind(kind: ModelKind) -> Self {
        let hidden = if kind == ModelKind::Mlp {
            vec![128]
        } else {
            Vec::new()
        };
        Self {
            kind,
            hidden,
            ..Self::default()
        }
    }

    /// A `sequential` model of these layers.
    #[must_use]
    pub fn sequential(layers: Vec<LayerSpec>) -> Self {
        Self {
            kind: ModelKind::Sequential,
            hidden: Vec::new(),
            layers,
            ..Self::default()
        }
    }

    /// Checks the spec on its own.
    ///
    /// # Errors
    /// [`ModelSpecError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ModelSpecError> {
        if self.kind == ModelKind::Mlp {
            if self.hidden.is_empty() {
                return Err(invalid(
                    "hidden",
                    "an MLP needs at least one hidden layer, got []".into(),
                ));
            }
            if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
                return Err(invalid(
                    "hidden",
                    format!("layer {i} has width 0 in {:?}", self.hidden),
                ));
            }
        } else if !self.hidden.is_empty() {
            return Err(invalid(
                "hidden",
                format!(
                    "only an mlp has hidden layers, got {:?} for {}",
                    self.hidden,
                    self.kind.name()
                ),
            ));
        }
        match (self.kind, self.layers.is_empty()) {
            (ModelKind::Sequential, true) => {
                return Err(invalid(
                    "layers",
                    "a sequential model needs at least one layer, got []".into(),
                ));
            }
            (ModelKind::Sequential, false) | (_, true) => {}
            (kind, false) => {
                return Err(invalid(
                    "layers",
                    format!(
                        "only a sequential model lists its layers, got {} layer(s) for {}; \
                         leave model.kind out or set it to \"sequential\"",
                        self.layers.len(),
                        kind.name()
                    ),
                ));
            }
        }
        if !self.bias_init.is_finite() {
            return Err(invalid(
                "bias_init",
                format!("must be finite, got {}", self.bias_init),
            ));
        }
        Ok(())
    }

    /// The number of model outputs on data of this shape.
    ///
    /// # Errors
    /// [`ModelSpecError::TaskMismatch`] when the model cannot learn the task.
    pub fn outputs(&self, shape: &DataShape) -> Result<usize, ModelSpecError> {
        let mismatch = || ModelSpecError::TaskMismatch {
            kind: self.kind.name(),
            task: shape.task.to_string(),
        };
        let headed = matches!(
            self.kind,
            ModelKind::Mlp | ModelKind::Cnn | ModelKind::Sequential
        );
        match (self.kind, shape.task) {
            (ModelKind::LinearRegression, Task::Regression { outputs }) => Ok(outputs),
            (ModelKind::LogisticRegression, Task::Classification { classes: 2 }) => Ok(1),
            (ModelKind::SoftmaxRegression, Task::Classification { classes }) => Ok(classes),
            (_, Task::Classification { classes }) if headed => Ok(classes),
            (_, Task::Regression { outputs }) if headed && self.head == Head::Mse => Ok(outputs),
            _ => Err(mismatch()),
        }
    }

    /// The weight initialisation in force (the explicit one, or the default for the model).
    #[must_use]
    pub fn weight_init(&self) -> WeightInit {
        let relu = match self.kind {
            ModelKind::Mlp => self.activation == Activation::Relu,
            ModelKind::Cnn => true,
            ModelKind::Sequential => self.layers.contains(&LayerSpec::Relu),
            _ => false,
        };
        self.init.unwrap_or(if relu {
            WeightInit::HeNormal
        } else {
            WeightInit::XavierUniform
        })
    }

    /// The model as layers resolved for data of `shape`: what each layer receives and gives.
    ///
    /// The one-layer models are one `dense`; an MLP is `dense`/activation pairs and a
    /// last `dense` (its input read as flat features even for image data); the `cnn`
    /// preset and `sequential` models start from the image when the data has one.
    ///
    /// # Errors
    /// As [`ModelSpec::validate`] and [`ModelSpec::outputs`]; [`ModelSpecError::Invalid`]
    /// on `layers` when the layers do not fit the data or one another, or when a
    /// sequential model's last layer gives another number of outputs than the task needs.
    pub fn stack(&self, shape: &DataShape) -> Result<LayerStack, ModelSpecError> {
        self.validate()?;
        let outputs = self.outputs(shape)?;
        let flat = Dims::Flat(shape.features);
        let data_dims = shape.image.map_or(flat, Dims::Image);
        let activation = match self.activation {
            Activation::Relu => LayerSpec::Relu,
            Activation::Sigmoid => LayerSpec::Sigmoid,
            Activation::Tanh => LayerSpec::Tanh,
        };
        let output_layer = LayerSpec::Dense { units: outputs };
        let stack = match self.kind {
            ModelKind::LinearRegression
            | ModelKind::LogisticRegression
            | ModelKind::SoftmaxRegression => {
                LayerStack::resolve(&[output_layer], flat, Naming::Single)
            }
            ModelKind::Mlp => {
                let mut layers: Vec<LayerSpec> = self
                    .hidden
                    .iter()
                    .flat_map(|&units| [LayerSpec::Dense { units }, activation])
                    .collect();
                layers.push(output_layer);
                LayerStack::resolve(&layers, flat, Naming::DenseIndex)
            }
            ModelKind::Cnn => {
                if shape.image.is_none() {
                    return Err(invalid(
                        "kind",
                        format!(
                            "cnn needs image data (C×H×W), got {} tabular features; \
                             use an image dataset such as digits or mnist",
                            shape.features
                        ),
                    ));
                }
                LayerStack::resolve(&cnn_layers(outputs), data_dims, Naming::Sequential)
            }
            ModelKind::Sequential => {
                LayerStack::resolve(&self.layers, data_dims, Naming::Sequential)
            }
        }
        .map_err(|e| invalid("layers", e.reason))?;
        if stack.outputs() != outputs {
            return Err(invalid(
                "layers",
                format!(
                    "the last layer gives {} output(s), {} needs {outputs}",
                    stack.outputs(),
                    shape.task
                ),
            ));
        }
        Ok(stack)
    }

    /// The parameters this model has on data of this shape, in order.
    ///
    /// Names and shapes follow PyTorch: `linear.weight`/`linear.bias` for the one-layer
    /// models, `layers.{i}.weight`/`layers.{i}.bias` for an MLP, and `{i}.weight`/`{i}.bias`
    /// (the layer's position) for `cnn` and `sequential`, as `torch.nn.Sequential` names
    /// them. Dense weights are `[out, in]`, convolution weights `[out, in, kh, kw]`.
    ///
    /// # Errors
    /// As [`ModelSpec::stack`].
    pub fn layout(&self, shape: &DataShape) -> Result<ParameterLayout, ModelSpecError> {
        let stack = self.stack(shape)?;
        Ok(ParameterLayout::new(
            stack.parameters(self.weight_init(), self.bias_init),
        ))
    }
}

fn invalid(field: &'static str, reason: String) -> ModelSpecError {
    ModelSpecError::Invalid { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits_shape() -> DataShape {
        DataShape::tabular(64, Task::Classification { classes: 10 })
    }

    #[test]
    fn mlp_layout_names_and_shapes_follow_pytorch() {
        let layout = ModelSpec::default().layout(&digits_shape()).unwrap();
        let got: Vec<(&str, &[usize])> = layout
            .params()
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("layers.0.weight", &[128, 64][..]),
                ("layers.0.bias", &[128][..]),
                ("layers.1.weight", &[10, 128][..]),
                ("layers.1.bias", &[10][..]),
            ]
        );
        assert_eq!(layout.num_values(), 64 * 128 + 128 + 10 * 128 + 10);
    }

    #[test]
    fn models_refuse_data_of_the_wrong_task() {
        let linear = ModelSpec {
            kind: ModelKind::LinearRegression,
            hidden: vec![],
            ..ModelSpec::default()
        };
        let err = linear.layout(&digits_shape()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model.kind = \"linear_regression\" cannot train on classification with 10 classes"
        );
        let logistic = ModelSpec {
            kind: ModelKind::LogisticRegression,
            hidden: vec![],
            ..ModelSpec::default()
        };
        assert!(logistic.layout(&digits_shape()).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let spec = ModelSpec {
            hidden: vec![8, 0],
            ..ModelSpec::default()
        };
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "model.hidden: layer 1 has width 0 in [8, 0]"
        );
    }

    fn mnist_shape() -> DataShape {
        DataShape {
            image: Some(crate::data::ImageShape {
                channels: 1,
                height: 28,
                width: 28,
            }),
            ..DataShape::tabular(784, Task::Classification { classes: 10 })
        }
    }

    #[test]
    fn the_cnn_preset_has_torch_names_and_121930_parameters_on_mnist() {
        let layout = ModelSpec::of_kind(ModelKind::Cnn)
            .layout(&mnist_shape())
            .unwrap();
        let got: Vec<(&str, &[usize])> = layout
            .params()
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("0.weight", &[32, 1, 3, 3][..]),
                ("0.bias", &[32][..]),
                ("3.weight", &[64, 32, 3, 3][..]),
                ("3.bias", &[64][..]),
                ("7.weight", &[64, 1600][..]),
                ("7.bias", &[64][..]),
                ("9.weight", &[10, 64][..]),
                ("9.bias", &[10][..]),
            ]
        );
        assert_eq!(layout.num_values(), 121_930);
        assert_eq!(
            ModelSpec::of_kind(ModelKind::Cnn).weight_init(),
            WeightInit::HeNormal
        );
    }

    #[test]
    fn the_cnn_flatten_follows_the_input_and_needs_an_image() {
        let digits = DataShape {
            image: Some(crate::data::ImageShape {
                channels: 1,
                height: 8,
                width: 8,
            }),
            ..digits_shape()
        };
        // 8 -> conv 6 -> pool 3 -> conv 1 -> pool would need 2: refused, naming the layer.
        assert_eq!(
            ModelSpec::of_kind(ModelKind::Cnn)
                .layout(&digits)
                .unwrap_err()
                .to_string(),
            "model.layers: layer 5 (max_pool2d 2) needs an input of at least 2×2, got a 64×1×1 image"
        );
        let err = ModelSpec::of_kind(ModelKind::Cnn)
            .layout(&digits_shape())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("model.kind: cnn needs image data"), "{err}");
    }

    #[test]
    fn a_job_file_may_give_layers_without_a_kind() {
        let spec: ModelSpec = serde_json::from_str(
            r#"{"layers": ["conv2d 4 3 padding=1", "relu", "max_pool2d 2", "flatten",
                           "dropout 0.5", "dense 10"]}"#,
        )
        .unwrap();
        assert_eq!(spec.kind, ModelKind::Sequential);
        assert_eq!(spec.weight_init(), WeightInit::HeNormal);
        let layout = spec
            .layout(&DataShape {
                image: Some(crate::data::ImageShape {
                    channels: 1,
                    height: 8,
                    width: 8,
                }),
                ..digits_shape()
            })
            .unwrap();
        let names: Vec<&str> = layout.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "5.weight", "5.bias"]);
        assert_eq!(layout.params()[2].shape, [10, 4 * 4 * 4]);
        // The spec travels in the plan and comes back the same.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);

        let err = serde_json::from_str::<ModelSpec>("{}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("model.kind: missing"), "{err}");
        let err = serde_json::from_str::<ModelSpec>(r#"{"layers": ["dense x"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("\"dense x\": units must be a positive integer"),
            "{err}"
        );
    }

    #[test]
    fn a_sequential_model_must_end_on_the_task_outputs() {
        let spec = ModelSpec::sequential(vec![
            LayerSpec::Dense { units: 8 },
            LayerSpec::Tanh,
            LayerSpec::Dense { units: 3 },
        ]);
        assert_eq!(
            spec.layout(&digits_shape()).unwrap_err().to_string(),
            "model.layers: the last layer gives 3 output(s), classification with 10 classes needs 10"
        );
        let mlp_with_layers = ModelSpec {
            layers: vec![LayerSpec::Relu],
            ..ModelSpec::default()
        };
        assert!(
            mlp_with_layers
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("model.layers: only a sequential model lists its layers")
        );
    }
}
