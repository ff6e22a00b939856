//! Per-element pieces the update rules share, each mirroring the torch op it stands for, so
//! that every rule reads like its `torch.optim` source and rounds like it.
//!
//! PyTorch keeps hyperparameters as Python floats (f64), computes scalar arithmetic on them
//! (`1 - beta`, bias corrections, `lr * weight_decay`) in f64, and rounds the result to f32
//! where it meets a float32 tensor. Our configs hold them as f64 too (only `lr`, which
//! schedules produce per step, is f32), and the helpers here round the same way.
//!
//! The per-element helpers are generic over [`Lanes`], so one definition serves the
//! scalar fallback and every vector width. Where torch's CPU kernels round a multiply and
//! an add once (ATen's vectorized `add` with `alpha` and `lerp` call `fmadd`; `addcmul`'s
//! last multiply-add is contracted), so do the rules here.

use super::simd::Lanes;

/// What every rule first does to the raw gradient: `torch.optim`'s `maximize` and coupled
/// (L2) `weight_decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GradientPrep {
    /// Negate the gradient: ascend the objective instead of descending it.
    maximize: bool,
    /// Coefficient of the L2 term added to the gradient (torch rounds it to f32); >= 0, and
    /// 0 turns the term off.
    weight_decay: f32,
}

impl GradientPrep {
    /// The preparation for `maximize` and a coupled `weight_decay` (0 for none).
    pub(crate) fn new(maximize: bool, weight_decay: f64) -> Self {
        Self {
            maximize,
            weight_decay: weight_decay as f32,
        }
    }

    /// `g = -grad if maximize else grad`, then `g = g + weight_decay * param` when
    /// `weight_decay != 0` (torch: `grad.add(param, alpha=weight_decay)`, one fused
    /// multiply-add in ATen's vector kernel).
    #[inline(always)]
    pub(crate) fn apply<L: Lanes>(self, grad: L, param: L) -> L {
        let g = if self.maximize { -grad } else { grad };
        if self.weight_decay == 0.0 {
            g
        } else {
            param.mul_add(L::splat(self.weight_decay), g)
        }
    }
}

/// `torch.lerp(start, end, weight)` for a scalar weight, as ATen's vector kernel computes
/// it: `start + weight * (end - start)` as one fused multiply-add, from the `end` side
/// (`end + (weight - 1) * (end - start)`) when `|weight| >= 0.5`.
#[inline(always)]
pub(crate) fn lerp<L: Lanes>(start: L, end: L, weight: f32) -> L {
    let diff = end - start;
    if weight.abs() < 0.5 {
        L::splat(weight).mul_add(diff, start)
    } else {
        L::splat(weight - 1.0).mul_add(diff, end)
    }
}

/// A running average of squares, `avg * beta + (1 - beta) * x * x`
/// (torch: `avg.mul_(beta).addcmul_(x, x, value=1 - beta)`); `one_minus_beta` is
/// [`one_minus`]`(beta)`, computed once per step.
///
/// Rounded as torch's CPU build computes `addcmul` (`self + value * t1 * t2`, its last
/// multiply and add contracted into one fused multiply-add by the compiler): the rounded
/// `avg * beta`, then `((1 - beta) * x) * x + that` with one rounding.
#[inline(always)]
pub(crate) fn average_of_squares<L: Lanes>(avg: L, x: L, beta: f32, one_minus_beta: f32) -> L {
    (L::splat(one_minus_beta) * x).mul_add(x, avg * L::splat(beta))
}

/// `1 - x` as Python computes it (f64), rounded to f32 as torch rounds a scalar argument.
pub(crate) fn one_minus(x: f64) -> f32 {
    (1.0 - x) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_prep_negates_then_adds_weight_decay() {
        assert_eq!(GradientPrep::new(false, 0.0).apply(2.0_f32, 5.0), 2.0);
        assert_eq!(GradientPrep::new(true, 0.0).apply(2.0_f32, 5.0), -2.0);
        assert_eq!(GradientPrep::new(false, 0.5).apply(2.0_f32, 5.0), 4.5);
        // Weight decay is added to the negated gradient, as in torch.
        assert_eq!(GradientPrep::new(true, 0.5).apply(2.0_f32, 5.0), 0.5);
        // A zero weight decay leaves an infinite parameter out of the gradient, as torch does.
        assert_eq!(
            GradientPrep::new(false, 0.0).apply(1.0_f32, f32::INFINITY),
            1.0
        );
    }

    #[test]
    fn lerp_matches_both_branches() {
        assert_eq!(lerp(1.0_f32, 3.0, 0.25), 1.5);
        assert_eq!(lerp(1.0_f32, 3.0, 0.75), 2.5);
        assert_eq!(lerp(1.0_f32, 3.0, 1.0), 3.0);
        assert_eq!(lerp(1.0_f32, 3.0, 0.0), 1.0);
    }

    #[test]
    fn scalar_arithmetic_is_done_in_f64() {
        // 1 − 0.999 in f64 rounds to the f32 nearest 0.001; in f32 it would be 1.3e-5 off.
        assert_eq!(one_minus(0.999), 0.001_f32);
        assert_ne!(1.0 - 0.999_f32, 0.001_f32);
        assert_eq!(average_of_squares(1.0_f32, 2.0, 0.5, 0.5), 2.5);
    }
}
