//! The affine layer: PyTorch's `nn.Linear`, `y = x Wᵀ + b`, and the parameters of every
//! layer that has some (a convolution's weight is the same matrix, `[out, in·kh·kw]`).
//!
//! A whole batch goes through at once: the products are ndarray matrix products
//! (matrixmultiply), never a loop over samples, written into the caller's buffers.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use super::scalar::Scalar;

/// One layer's parameters, borrowed: a dense layer's, or a convolution's with its
/// `[out, in, kh, kw]` weight read as the matrix `[out, in·kh·kw]`.
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
    /// Writes `input Wᵀ + b` for an `[samples, in]` input into `output`, `[samples, out]`.
    pub(crate) fn forward(&self, input: ArrayView2<'_, F>, mut output: ArrayViewMut2<'_, F>) {
        general_mat_mul(F::one(), &input, &self.weight.t(), F::zero(), &mut output);
        output += &self.bias;
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
        // Row by row into the buffer: no temporary.
        gradient.bias.fill(F::zero());
        for row in delta.rows() {
            gradient.bias += &row;
        }
    }

    /// Writes the loss gradient w.r.t. this layer's input, `delta W` (`[samples, in]`), into `below`.
    pub(crate) fn input_delta(&self, delta: ArrayView2<'_, F>, mut below: ArrayViewMut2<'_, F>) {
        general_mat_mul(F::one(), &delta, &self.weight, F::zero(), &mut below);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, array};

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
        let mut output = Array2::from_elem((2, 3), f64::NAN);
        layer.forward(input.view(), output.view_mut());
        assert_eq!(output, array![[3.5, -1.0, 3.0], [2.5, 0.0, 5.0]]);

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
        let mut below = Array2::from_elem((2, 2), f64::NAN);
        layer.input_delta(delta.view(), below.view_mut());
        assert_eq!(below, array![[4.0, 3.0], [0.0, -2.0]]);
    }
}
