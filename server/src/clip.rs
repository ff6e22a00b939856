//! Global gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_` (2-norm) does it.
//!
//! The total norm is the 2-norm of all gradient tensors together. When
//! `max_norm / (total + 1e-6)` is below 1, every gradient is multiplied by it, so the
//! clipped total is just under `max_norm`. The server applies it to the averaged gradient,
//! before the optimizer. The job file sets `max_norm` as `training.clip_grad_norm`.
//!
//! [`clip_grad_norm`] does it all on tensors held in one place. Shards holding parts of the
//! gradients use the pieces instead: each sums its squares with [`grad_sq_norm`], the sums
//! are added and turned into the total by [`total_norm`], [`clip_coefficient`] decides,
//! and each shard applies [`scale_grad`].

/// torch's `clip_grad_norm_` adds this to the total norm before dividing.
pub const CLIP_EPS: f32 = 1e-6;

/// The sum of the squares of one gradient (or part of one), in f64: a partial sum that
/// shards can add up before [`total_norm`].
#[must_use]
pub fn grad_sq_norm(grad: &[f32]) -> f64 {
    // Eight independent accumulators, so the additions need not wait on each other.
    const LANES: usize = 8;
    let mut lanes = [0.0_f64; LANES];
    let chunks = grad.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (acc, &g) in lanes.iter_mut().zip(chunk) {
            *acc += f64::from(g) * f64::from(g);
        }
    }
    let tail_sum: f64 = tail.iter().map(|&g| f64::from(g) * f64::from(g)).sum();
    lanes.iter().sum::<f64>() + tail_sum
}

/// The total 2-norm from the partial sums of squares of all gradients.
#[must_use]
pub fn total_norm(sq_norms: impl IntoIterator<Item = f64>) -> f32 {
    sq_norms.into_iter().sum::<f64>().sqrt() as f32
}

/// The factor to multiply every gradient by, or `None` when the total is within
/// `max_norm` (torch multiplies by `min(max_norm / (total + 1e-6), 1)`; multiplying by 1 is
/// skipped here). A NaN total gives a NaN factor, as in torch.
#[must_use]
pub fn clip_coefficient(total_norm: f32, max_norm: f32) -> Option<f32> {
    let coefficient = max_norm / (total_norm + CLIP_EPS);
    if coefficient >= 1.0 {
        None
    } else {
        Some(coefficient)
    }
}

/// Multiplies every element of `grad` by `coefficient`.
pub fn scale_grad(grad: &mut [f32], coefficient: f32) {
    for g in grad {
        *g *= coefficient;
    }
}

/// Clips all `grads` together to a total 2-norm of `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` does, and returns the total
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let total = total_norm(grads.iter().map(|g| grad_sq_norm(g)));
    if let Some(coefficient) = clip_coefficient(total, max_norm) {
        for grad in grads.iter_mut() {
            scale_grad(grad, coefficient);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_the_global_norm_not_each_tensor() {
        let (mut a, mut b) = ([3.0_f32], [4.0_f32, 0.0]);
        let total = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert_eq!(total, 5.0);
        let coefficient = 1.0 / (5.0 + CLIP_EPS);
        assert_eq!(a, [3.0 * coefficient]);
        assert_eq!(b, [4.0 * coefficient, 0.0]);
    }

    #[test]
    fn leaves_gradients_within_the_bound_alone() {
        let mut a = [0.3_f32, -0.4];
        assert_eq!(clip_grad_norm(&mut [&mut a], 1.0), 0.5);
        assert_eq!(a, [0.3, -0.4]);
        assert_eq!(clip_coefficient(0.5, 1.0), None);
        // At exactly max_norm the 1e-6 makes the factor just below 1, as in torch.
        assert_eq!(clip_coefficient(1.0, 1.0), Some(1.0 / (1.0 + CLIP_EPS)));
    }

    #[test]
    fn partial_sums_combine_to_the_whole() {
        let grad: Vec<f32> = (0..19).map(|i| i as f32 - 9.5).collect();
        let whole = grad_sq_norm(&grad);
        let parts = [grad_sq_norm(&grad[..7]), grad_sq_norm(&grad[7..])];
        assert_eq!(whole, grad.iter().map(|&g| f64::from(g * g)).sum::<f64>());
        assert_eq!(total_norm(parts), total_norm([whole]));
        assert_eq!(grad_sq_norm(&[]), 0.0);
    }
}
