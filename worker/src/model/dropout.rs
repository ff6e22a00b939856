//! `nn.Dropout(p)` in training: each value is zeroed with probability `p` and the others
//! scaled by `1 / (1 - p)`, so the expected output equals the input; the identity in
//! evaluation and prediction.
//!
//! The mask is a pure function of a [`StepKey`] and the layer's position, so a step's
//! gradient is reproducible (and checkable against finite differences with its mask fixed),
//! and different workers and steps draw different masks.

use downpour_core::layout::stream_seed;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scalar::Scalar;

/// Which gradient a pass computes: the job's seed, the worker, the step. It seeds the
/// dropout masks and nothing else (a model without dropout ignores it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepKey {
    /// The job's seed.
    pub seed: u64,
    /// The worker computing the gradient (its id, or shard).
    pub worker: u64,
    /// The training step.
    pub step: u64,
}

impl StepKey {
    /// The seed of the mask of the layer at position `layer` of the stack.
    fn layer_seed(self, layer: usize) -> u64 {
        let worker = stream_seed(self.seed, self.worker);
        let step = stream_seed(worker, self.step);
        stream_seed(step, layer as u64)
    }
}

/// Fills `mask` with `0` (probability `rate`) or `1 / (1 - rate)`, from `key` and `layer`.
pub(crate) fn fill_mask<F: Scalar>(rate: f32, key: StepKey, layer: usize, mask: &mut [F]) {
    let mut rng = StdRng::seed_from_u64(key.layer_seed(layer));
    let keep = F::of(1.0 / (1.0 - f64::from(rate)));
    for m in mask {
        *m = if rng.random::<f32>() < rate {
            F::zero()
        } else {
            keep
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_drop_the_rate_scale_the_rest_and_depend_on_the_whole_key() {
        let key = StepKey {
            seed: 7,
            worker: 1,
            step: 3,
        };
        let mut mask = vec![0.0f64; 10_000];
        fill_mask(0.25, key, 2, &mut mask);
        let dropped = mask.iter().filter(|&&m| m == 0.0).count();
        assert!((2300..2700).contains(&dropped), "{dropped} dropped");
        assert!(
            mask.iter()
                .all(|&m| m == 0.0 || (m - 4.0 / 3.0).abs() < 1e-12)
        );

        let again = |key: StepKey, layer| {
            let mut m = vec![0.0f64; 10_000];
            fill_mask(0.25, key, layer, &mut m);
            m
        };
        assert_eq!(again(key, 2), mask);
        assert_ne!(again(StepKey { step: 4, ..key }, 2), mask);
        assert_ne!(again(StepKey { worker: 0, ..key }, 2), mask);
        assert_ne!(again(StepKey { seed: 8, ..key }, 2), mask);
        assert_ne!(again(key, 3), mask);
    }
}
