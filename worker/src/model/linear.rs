//! The affine layer every model is built of: PyTorch's `nn.Linear`, `y = x Wᵀ + b`.
//!
//! A whole batch goes through at once: the products are ndarray `dot`s (matrixmultiply),
//! never a loop over samples, and the gradients are written into the caller's buffers.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use super::scalar::Scalar;

/// One layer's parameters, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linear<'a, F> {
    /// `[out, in]`.
    pub(crate) weight: ArrayView2<'a, F>,
    /// `[out]`.
    pub(crate) bias: ArrayView1<'a, F>,
}

/// Where one layer's gradient goes: the same shapes as its [`Linear`].
#[derive(Debug)]
pub(crate) struct LinearGradient<'a, F> {
    /// `[out, in]`.
    pub(crate) weight: ArrayViewMut2<'a, F>,
    /// `[out]`.
    pub(crate) bias: ArrayViewMut1<'a, F>,
}

impl<F: Scalar> Linear<'_, F> {
    /// `input Wᵀ + b` for an `[samples, in]` input: `[samples, out]`.
    pub(crate) fn forward(&self, input: ArrayView2<'_, F>) -> Array2<F> {
        let mut output = input.dot(&self.weight.t());
        output += &self.bias;
        output
    }

    /// Writes the parameter gradient for `delta`, the loss gradient w.r.t. this
    /// layer's `[samples, out]` output on `input`: `∂W = deltaᵀ input`, `∂b = Σ_rows delta`.
    ///
    /// Overwrites `gradient` (it does not accumulate).
    pub(crate) fn backward(
        &self,
        input: ArrayView2<'_, F>,
        delta: ArrayView2<'_, F>,
        gradient: &mut LinearGradient<'_, F>,
    ) {
        general_mat_mul(
            F::one(),
            &delta.t(),
            &input,
            F::zero(),
            &mut gradient.weight,
        );
        gradient.bias.assign(&delta.sum_axis(Axis(0)));
    }

    /// The loss gradient w.r.t. this layer's input: `delta W`, `[samples, in]`.
    pub(crate) fn input_delta(&self, delta: ArrayView2<'_, F>) -> Array2<F> {
        delta.dot(&self.weight)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, array};

    use super::*;

    #[test]
    fn forward_and_backward_follow_pytorch_shapes() {
        let weight = array![[1.0f64, 2.0], [0.0, -1.0], [3.0, 1.0]];
        let bias = array![0.5, 0.0, -1.0];
        let layer = Linear {
            weight: weight.view(),
            bias: bias.view(),
        };
        let input = array![[1.0, 1.0], [2.0, 0.0]];
        assert_eq!(
            layer.forward(input.view()),
            array![[3.5, -1.0, 3.0], [2.5, 0.0, 5.0]]
        );

        let delta = array![[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]];
        let mut weight_grad = Array2::from_elem((3, 2), f64::NAN);
        let mut bias_grad = Array1::from_elem(3, f64::NAN);
        layer.backward(
            input.view(),
            delta.view(),
            &mut LinearGradient {
                weight: weight_grad.view_mut(),
                bias: bias_grad.view_mut(),
            },
        );
        assert_eq!(weight_grad, array![[1.0, 1.0], [4.0, 0.0], [1.0, 1.0]]);
        assert_eq!(bias_grad, array![1.0, 2.0, 1.0]);
        assert_eq!(
            layer.input_delta(delta.view()),
            array![[4.0, 3.0], [0.0, -2.0]]
        );
    }
}
