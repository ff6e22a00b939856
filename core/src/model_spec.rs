//! What model a job trains: its kind, hidden layers, activation, head and initialisation.
//!
//! The spec is shared by the server (which derives the parameter layout and
//! initialises it) and the workers (which build the forward and backward passes).

use serde::{Deserialize, Serialize};

use crate::data::{DataShape, Task};
use crate::layout::{Init, ParameterLayout, ParameterSpec};

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

/// Weight initialisation (PyTorch's `torch.nn.init` formulas, gain 1 for Xavier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightInit {
    /// `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))` (Glorot and Bengio, 2010).
    XavierUniform,
    /// `N(0, 2 / (fan_in + fan_out))`.
    XavierNormal,
    /// `U(-a, a)`, `a = sqrt(6 / fan_in)` (He et al., 2015).
    HeUniform,
    /// `N(0, 2 / fan_in)`.
    HeNormal,
    /// All weights zero (sensible only for convex models).
    Zeros,
}

/// The model a job trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The family of model.
    pub kind: ModelKind,
    /// Widths of the hidden layers, input side first (MLP only; empty otherwise).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Hidden-layer activation (MLP only).
    #[serde(default)]
    pub activation: Activation,
    /// Output layer and loss (MLP only).
    #[serde(default)]
    pub head: Head,
    /// Weight initialisation; `None` picks He normal for ReLU MLPs and Xavier uniform otherwise.
    #[serde(default)]
    pub init: Option<WeightInit>,
    /// Constant every bias starts at.
    #[serde(default)]
    pub bias_init: f32,
}

impl Default for ModelSpec {
    /// The default job's model: a 128-unit ReLU MLP with a softmax head.
    fn default() -> Self {
        Self {
            kind: ModelKind::Mlp,
            hidden: vec![128],
            activation: Activation::Relu,
            head: Head::SoftmaxCrossEntropy,
            init: None,
            bias_init: 0.0,
        }
    }
}

impl ModelSpec {
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
        match (self.kind, shape.task) {
            (ModelKind::LinearRegression, Task::Regression { outputs }) => Ok(outputs),
            (ModelKind::LogisticRegression, Task::Classification { classes: 2 }) => Ok(1),
            (ModelKind::SoftmaxRegression, Task::Classification { classes }) => Ok(classes),
            (ModelKind::Mlp, Task::Classification { classes }) => Ok(classes),
            (ModelKind::Mlp, Task::Regression { outputs }) if self.head == Head::Mse => Ok(outputs),
            _ => Err(mismatch()),
        }
    }

    /// The weight initialisation in force (the explicit one, or the default for the activation).
    #[must_use]
    pub fn weight_init(&self) -> WeightInit {
        self.init.unwrap_or(match (self.kind, self.activation) {
            (ModelKind::Mlp, Activation::Relu) => WeightInit::HeNormal,
            _ => WeightInit::XavierUniform,
        })
    }

    /// Widths of every layer, input first, output last.
    ///
    /// # Errors
    /// As [`ModelSpec::outputs`].
    pub fn layer_widths(&self, shape: &DataShape) -> Result<Vec<usize>, ModelSpecError> {
        let outputs = self.outputs(shape)?;
        let mut widths = vec![shape.features];
        widths.extend(&self.hidden);
        widths.push(outputs);
        Ok(widths)
    }

    /// The parameters this model has on data of this shape, in order.
    ///
    /// Names follow PyTorch: `linear.weight`/`linear.bias` for the one-layer models,
    /// `layers.{i}.weight`/`layers.{i}.bias` for an MLP. Weights are `[out, in]`.
    ///
    /// # Errors
    /// As [`ModelSpec::outputs`].
    pub fn layout(&self, shape: &DataShape) -> Result<ParameterLayout, ModelSpecError> {
        self.validate()?;
        let widths = self.layer_widths(shape)?;
        let weight_init = self.weight_init();
        let mut params = Vec::with_capacity(2 * (widths.len() - 1));
        for (i, pair) in widths.windows(2).enumerate() {
            let prefix = if self.kind == ModelKind::Mlp {
                format!("layers.{i}")
            } else {
                "linear".to_string()
            };
            let (fan_in, fan_out) = (pair[0], pair[1]);
            params.push(ParameterSpec {
                name: format!("{prefix}.weight"),
                shape: vec![fan_out, fan_in],
                init: Init::Weight {
                    scheme: weight_init,
                    fan_in,
                    fan_out,
                },
            });
            params.push(ParameterSpec {
                name: format!("{prefix}.bias"),
                shape: vec![fan_out],
                init: Init::Constant(self.bias_init),
            });
        }
        Ok(ParameterLayout::new(params))
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
}
