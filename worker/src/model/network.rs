//! The computation every model is: affine layers, an activation between
//! consecutive ones, and a loss on the last one's outputs.
//!
//! Linear, logistic and softmax regression are the one-layer case (no activation
//! is ever applied); an MLP has one layer per hidden width plus the output layer.

use downpour_core::model_spec::Activation;
use ndarray::{Array2, ArrayView2};

use super::activation::{activate, backpropagate};
use super::linear::{Linear, LinearGradient};
use super::loss::{Loss, Target};
use super::scalar::Scalar;

/// The non-linearity and loss of a stack of [`Linear`] layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    /// Applied to the output of every layer but the last.
    pub(crate) activation: Activation,
    /// Applied to the last layer's raw outputs.
    pub(crate) loss: Loss,
}

impl Network {
    /// The last layer's raw outputs (logits) for an `[samples, in]` input.
    ///
    /// With no layers, the input itself.
    pub(crate) fn forward<F: Scalar>(
        &self,
        layers: &[Linear<'_, F>],
        input: ArrayView2<'_, F>,
    ) -> Array2<F> {
        let Some((output_layer, hidden_layers)) = layers.split_last() else {
            return input.to_owned();
        };
        let mut hidden: Option<Array2<F>> = None;
        for layer in hidden_layers {
            let mut z = layer.forward(hidden.as_ref().map_or(input, |a| a.view()));
            activate(self.activation, &mut z);
            hidden = Some(z);
        }
        output_layer.forward(hidden.as_ref().map_or(input, |a| a.view()))
    }

    /// The mean loss over the batch; the gradient of it w.r.t. every layer's
    /// parameters is written into `gradients` (one per layer, same shapes).
    ///
    /// `target` matches the outputs and the batch is not empty (the caller's invariants).
    pub(crate) fn loss_and_gradient<F: Scalar>(
        &self,
        layers: &[Linear<'_, F>],
        input: ArrayView2<'_, F>,
        target: Target<'_, F>,
        gradients: &mut [LinearGradient<'_, F>],
    ) -> f64 {
        let Some((output_layer, hidden_layers)) = layers.split_last() else {
            let mut outputs = input.to_owned();
            return self.loss.mean_and_gradient(&mut outputs, target);
        };
        // hidden[l] is the activated output of layer l, the input of layer l + 1.
        let mut hidden: Vec<Array2<F>> = Vec::with_capacity(hidden_layers.len());
        for layer in hidden_layers {
            let mut z = layer.forward(hidden.last().map_or(input, |a| a.view()));
            activate(self.activation, &mut z);
            hidden.push(z);
        }
        let mut delta = output_layer.forward(hidden.last().map_or(input, |a| a.view()));
        let loss = self.loss.mean_and_gradient(&mut delta, target);

        for (l, (layer, gradient)) in layers.iter().zip(gradients.iter_mut()).enumerate().rev() {
            let layer_input = if l == 0 { input } else { hidden[l - 1].view() };
            layer.backward(layer_input, delta.view(), gradient);
            if l > 0 {
                let mut below = layer.input_delta(delta.view());
                backpropagate(self.activation, &mut below, hidden[l - 1].view());
                delta = below;
            }
        }
        loss
    }
}
