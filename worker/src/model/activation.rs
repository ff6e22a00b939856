//! Hidden-layer non-linearities: applied in place going forward, and their
//! derivatives taken from the outputs going backward.
//!
//! All three derivatives are functions of the activation's output (`relu' = [a > 0]`,
//! `sigmoid' = a (1 - a)`, `tanh' = 1 - a²`), so the forward pass keeps only the
//! outputs and overwrites the pre-activations.

use downpour_core::model_spec::Activation;
use ndarray::{ArrayView2, ArrayViewMut2, Zip};

use super::scalar::Scalar;

/// `1 / (1 + e^-x)` without overflow for large `|x|`.
pub(crate) fn sigmoid<F: Scalar>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}

/// Replaces every pre-activation in `z` by the activation of it.
pub(crate) fn activate<F: Scalar>(activation: Activation, mut z: ArrayViewMut2<'_, F>) {
    match activation {
        Activation::Relu => z.mapv_inplace(|v| v.max(F::zero())),
        Activation::Sigmoid => z.mapv_inplace(sigmoid),
        Activation::Tanh => z.mapv_inplace(F::tanh),
    }
}

/// Turns `delta`, the loss gradient w.r.t. the activation's `output`, into the
/// gradient w.r.t. its input (the pre-activation), in place.
///
/// `delta` and `output` have the same shape (the caller's invariant).
pub(crate) fn backpropagate<F: Scalar>(
    activation: Activation,
    delta: ArrayViewMut2<'_, F>,
    output: ArrayView2<'_, F>,
) {
    let zip = Zip::from(delta).and(output);
    match activation {
        // A select, not a branch, so the loop vectorises.
        Activation::Relu => zip.for_each(|d, &a| *d = if a > F::zero() { *d } else { F::zero() }),
        Activation::Sigmoid => zip.for_each(|d, &a| *d *= a * (F::one() - a)),
        Activation::Tanh => zip.for_each(|d, &a| *d *= F::one() - a * a),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn sigmoid_is_stable_and_symmetric() {
        assert_eq!(sigmoid(0.0f32), 0.5);
        assert_eq!(sigmoid(1000.0f32), 1.0);
        assert_eq!(sigmoid(-1000.0f32), 0.0);
        let (p, q) = (sigmoid(2.5f64), sigmoid(-2.5f64));
        assert!((p + q - 1.0).abs() < 1e-15);
        assert!((p - 1.0 / (1.0 + (-2.5f64).exp())).abs() < 1e-15);
    }

    #[test]
    fn activations_map_values() {
        let z = array![[-2.0f64, 0.0, 3.0]];
        let mut relu = z.clone();
        activate(Activation::Relu, relu.view_mut());
        assert_eq!(relu, array![[0.0, 0.0, 3.0]]);
        let mut tanh = z.clone();
        activate(Activation::Tanh, tanh.view_mut());
        assert!((tanh[[0, 2]] - 3.0f64.tanh()).abs() < 1e-15);
        let mut sig = z;
        activate(Activation::Sigmoid, sig.view_mut());
        assert_eq!(sig[[0, 1]], 0.5);
    }

    /// Each derivative, taken from the output, against a central difference of the activation.
    #[test]
    fn derivatives_match_central_differences() {
        let z = array![[-1.7f64, -0.3, 0.4, 2.2]];
        let h = 1e-6;
        for activation in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
            let mut output = z.clone();
            activate(activation, output.view_mut());
            let mut delta = ndarray::Array2::ones(z.raw_dim());
            backpropagate(activation, delta.view_mut(), output.view());
            let (mut up, mut down) = (z.clone() + h, z.clone() - h);
            activate(activation, up.view_mut());
            activate(activation, down.view_mut());
            let numeric = (up - down) / (2.0 * h);
            for (a, n) in delta.iter().zip(&numeric) {
                assert!((a - n).abs() < 1e-8, "{activation:?}: {a} vs {n}");
            }
        }
    }
}
