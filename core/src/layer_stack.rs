//! A model as a stack of layers resolved for one input: what each layer receives and
//! gives per sample, and the names, shapes and initialisation of its parameters.
//!
//! Every model kind is such a stack (the one-layer models are one `dense`, an MLP is
//! `dense`/activation pairs), so the shape rules below are the only ones: the worker
//! builds its passes from a [`LayerStack`] and the server its layout.
//!
//! | layer | input | output |
//! |---|---|---|
//! | `dense N` | `F` features | `N` |
//! | `conv2d C K stride=S padding=P` | image `c×h×w` | `C × (⌊(h+2P-K)/S⌋+1) × (⌊(w+2P-K)/S⌋+1)` |
//! | `max_pool2d K` | image `c×h×w` | `c × ⌊h/K⌋ × ⌊w/K⌋` |
//! | `flatten` | image `c×h×w` | `c·h·w` features |
//! | activations, `dropout` | anything | the same |

use std::fmt;

use crate::data::ImageShape;
use crate::layer_spec::LayerSpec;
use crate::layout::{Init, ParameterSpec, WeightInit};

/// Layers that do not fit their input or one another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct StackError {
    /// Which layer, what it received and what it needs.
    pub reason: String,
}

/// What one sample is between two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dims {
    /// A vector of this many features.
    Flat(usize),
    /// An image, stored as its `(C, H, W)` values in row-major order.
    Image(ImageShape),
}

impl Dims {
    /// Values per sample.
    #[must_use]
    pub fn values(&self) -> usize {
        match self {
            Self::Flat(n) => *n,
            Self::Image(image) => image.features(),
        }
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flat(n) => write!(f, "{n} features"),
            Self::Image(image) => write!(f, "a {image} image"),
        }
    }
}

/// How a stack's parameters are named (PyTorch's names for the equivalent module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `linear.weight`, `linear.bias`: a module with one `nn.Linear` called `linear`.
    Single,
    /// `layers.{i}.weight` for the `i`-th dense layer: an `nn.ModuleList` of linears.
    DenseIndex,
    /// `{i}.weight` for the layer at position `i`: an `nn.Sequential` of every layer.
    Sequential,
}

/// One layer and the shapes around it.
#[derive(Debug, Clone, PartialEq)]
pub struct StackLayer {
    /// The layer.
    pub layer: LayerSpec,
    /// What it receives per sample.
    pub input: Dims,
    /// What it gives per sample.
    pub output: Dims,
    /// Its parameters' name prefix (`"3"` for `3.weight`); `None` for a layer without parameters.
    pub name: Option<String>,
}

impl StackLayer {
    /// Its weight's shape, PyTorch's (`[out, in]`, `[out, in, kh, kw]`), and its
    /// fans as `torch.nn.init` computes them; `None` for a layer without parameters.
    #[must_use]
    pub fn weight_shape(&self) -> Option<(Vec<usize>, usize, usize)> {
        match (self.layer, self.input) {
            (LayerSpec::Dense { units }, input) => {
                Some((vec![units, input.values()], input.values(), units))
            }
            (
                LayerSpec::Conv2d {
                    channels, kernel, ..
                },
                Dims::Image(input),
            ) => {
                let area = kernel * kernel;
                Some((
                    vec![channels, input.channels, kernel, kernel],
                    input.channels * area,
                    channels * area,
                ))
            }
            _ => None,
        }
    }
}

/// A model's layers, each with its input and output, checked to fit one another.
///
/// Invariants: not empty; each layer's input is the previous one's output; the last
/// output is flat.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStack {
    /// The layers, input side first.
    layers: Vec<StackLayer>,
}

impl LayerStack {
    /// Resolves `layers` for samples of `input`, naming parameters by `naming`.
    ///
    /// # Errors
    /// [`StackError`] naming the layer and the shapes when a layer does not fit what it receives (a convolution on flat features, a
    /// dense layer on an image, a kernel larger than its input), when the stack is
    /// empty, or when it ends on an image.
    pub fn resolve(layers: &[LayerSpec], input: Dims, naming: Naming) -> Result<Self, StackError> {
        if layers.is_empty() {
            return Err(invalid("a stack needs at least one layer, got []".into()));
        }
        let mut resolved = Vec::with_capacity(layers.len());
        let mut dims = input;
        let mut dense_index = 0;
        for (index, &layer) in layers.iter().enumerate() {
            let output = output_of(layer, dims)
                .map_err(|why| invalid(format!("layer {index} ({layer}) {why}")))?;
            let name = layer.has_parameters().then(|| match naming {
                Naming::Single => "linear".to_string(),
                Naming::DenseIndex => {
                    dense_index += 1;
                    format!("layers.{}", dense_index - 1)
                }
                Naming::Sequential => index.to_string(),
            });
            resolved.push(StackLayer {
                layer,
                input: dims,
                output,
                name,
            });
            dims = output;
        }
        if let Dims::Image(image) = dims {
            return Err(invalid(format!(
                "the stack ends on a {image} image; end it with \"flatten\" and a dense layer"
            )));
        }
        Ok(Self { layers: resolved })
    }

    /// The layers, input side first.
    #[must_use]
    pub fn layers(&self) -> &[StackLayer] {
        &self.layers
    }

    /// What the first layer receives per sample.
    #[must_use]
    pub fn input(&self) -> Dims {
        self.layers[0].input
    }

    /// The width of the last layer's output.
    #[must_use]
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].output.values()
    }

    /// Every layer's weight then bias, input side first, drawn by `scheme` and starting at `bias_init`.
    #[must_use]
    pub fn parameters(&self, scheme: WeightInit, bias_init: f32) -> Vec<ParameterSpec> {
        let mut params = Vec::new();
        for layer in &self.layers {
            let (Some(prefix), Some((shape, fan_in, fan_out))) =
                (&layer.name, layer.weight_shape())
            else {
                continue;
            };
            let out = shape[0];
            params.push(ParameterSpec {
                name: format!("{prefix}.weight"),
                shape,
                init: Init::Weight {
                    scheme,
                    fan_in,
                    fan_out,
                },
            });
            params.push(ParameterSpec {
                name: format!("{prefix}.bias"),
                shape: vec![out],
                init: Init::Constant(bias_init),
            });
        }
        params
    }
}

/// What `layer` gives for `input`, or why it cannot take it (completing "layer i (...) ").
fn output_of(layer: LayerSpec, input: Dims) -> Result<Dims, String> {
    match (layer, input) {
        (LayerSpec::Dense { units }, Dims::Flat(_)) => Ok(Dims::Flat(units)),
        (LayerSpec::Dense { .. }, Dims::Image(image)) => Err(format!(
            "needs flat features, got a {image} image; put \"flatten\" before it"
        )),
        (
            LayerSpec::Conv2d {
                channels,
                kernel,
                stride,
                padding,
            },
            Dims::Image(image),
        ) => {
            let side = |n: usize| {
                (n + 2 * padding)
                    .checked_sub(kernel)
                    .map(|room| room / stride + 1)
            };
            match (side(image.height), side(image.width)) {
                (Some(height), Some(width)) => Ok(Dims::Image(ImageShape {
                    channels,
                    height,
                    width,
                })),
                _ => Err(format!(
                    "needs an input of at least {kernel}×{kernel} after padding {padding}, got a {image} image"
                )),
            }
        }
        (LayerSpec::MaxPool2d { size }, Dims::Image(image)) => {
            if image.height < size || image.width < size {
                return Err(format!(
                    "needs an input of at least {size}×{size}, got a {image} image"
                ));
            }
            Ok(Dims::Image(ImageShape {
                channels: image.channels,
                height: image.height / size,
                width: image.width / size,
            }))
        }
        (LayerSpec::Flatten, Dims::Image(image)) => Ok(Dims::Flat(image.features())),
        (LayerSpec::Conv2d { .. } | LayerSpec::MaxPool2d { .. } | LayerSpec::Flatten, flat) => {
            Err(format!(
                "needs an image (C×H×W) input, got {flat}; image data carries its shape \
                 (e.g. the digits and mnist datasets)"
            ))
        }
        (
            LayerSpec::Relu | LayerSpec::Tanh | LayerSpec::Sigmoid | LayerSpec::Dropout { .. },
            same,
        ) => Ok(same),
    }
}

fn invalid(reason: String) -> StackError {
    StackError { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(texts: &[&str]) -> Vec<LayerSpec> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn image(channels: usize, height: usize, width: usize) -> Dims {
        Dims::Image(ImageShape {
            channels,
            height,
            width,
        })
    }

    #[test]
    fn shapes_follow_pytorch_through_conv_pool_and_flatten() {
        let stack = LayerStack::resolve(
            &layers(&[
                "conv2d 4 3 stride=2 padding=1",
                "relu",
                "max_pool2d 2",
                "flatten",
                "dense 5",
            ]),
            image(2, 9, 7),
            Naming::Sequential,
        )
        .unwrap();
        let outputs: Vec<Dims> = stack.layers().iter().map(|l| l.output).collect();
        // (9 + 2 - 3) / 2 + 1 = 5, (7 + 2 - 3) / 2 + 1 = 4; pooled 2×2.
        assert_eq!(
            outputs,
            vec![
                image(4, 5, 4),
                image(4, 5, 4),
                image(4, 2, 2),
                Dims::Flat(16),
                Dims::Flat(5)
            ]
        );
        let params: Vec<(String, Vec<usize>)> = stack
            .parameters(WeightInit::HeNormal, 0.0)
            .into_iter()
            .map(|p| (p.name, p.shape))
            .collect();
        assert_eq!(
            params,
            vec![
                ("0.weight".to_string(), vec![4, 2, 3, 3]),
                ("0.bias".to_string(), vec![4]),
                ("4.weight".to_string(), vec![5, 16]),
                ("4.bias".to_string(), vec![5]),
            ]
        );
    }

    #[test]
    fn convolution_fans_count_the_kernel_as_torch_does() {
        let stack = LayerStack::resolve(
            &layers(&["conv2d 8 3", "flatten"]),
            image(2, 5, 5),
            Naming::Sequential,
        )
        .unwrap();
        let params = stack.parameters(WeightInit::XavierUniform, 0.0);
        assert_eq!(
            params[0].init,
            Init::Weight {
                scheme: WeightInit::XavierUniform,
                fan_in: 2 * 9,
                fan_out: 8 * 9
            }
        );
    }

    #[test]
    fn misfitting_layers_are_refused_with_the_layer_and_the_shapes() {
        let err = |texts: &[&str], input| {
            LayerStack::resolve(&layers(texts), input, Naming::Sequential)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&["dense 4"], image(1, 8, 8)),
            "layer 0 (dense 4) needs flat features, got a 1×8×8 image; put \"flatten\" before it"
        );
        assert!(
            err(&["conv2d 4 3"], Dims::Flat(64))
                .starts_with("layer 0 (conv2d 4 3) needs an image (C×H×W) input, got 64 features")
        );
        assert_eq!(
            err(&["conv2d 4 5", "flatten"], image(1, 4, 4)),
            "layer 0 (conv2d 4 5) needs an input of at least 5×5 after padding 0, got a 1×4×4 image"
        );
        assert_eq!(
            err(&["relu", "max_pool2d 3"], image(1, 2, 8)),
            "layer 1 (max_pool2d 3) needs an input of at least 3×3, got a 1×2×8 image"
        );
        assert_eq!(
            err(&["conv2d 4 3"], image(1, 8, 8)),
            "the stack ends on a 4×6×6 image; end it with \"flatten\" and a dense layer"
        );
        assert_eq!(
            err(&[], Dims::Flat(3)),
            "a stack needs at least one layer, got []"
        );
    }
}
