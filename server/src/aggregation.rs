//! How a sync step's gradients become the one gradient the optimizer applies.
//!
//! The gradients `g_1 … g_n` (one per worker that had data, in worker-id order) are
//! combined coordinate by coordinate:
//! - `mean`: `(g_1[i] + … + g_n[i]) / n`, summed in worker-id order (bit-identical runs);
//! - `median`: the middle value of the `n` values at `i`, the mean of the two middle
//!   ones when `n` is even;
//! - `trimmed_mean`: the values at `i` are sorted, `k = ceil(trim_fraction · n)` are cut
//!   from each end (at most what leaves one value, or two when `n` is even), and the rest
//!   are averaged. With 3 or more workers, at least one value is cut from each end.
//!
//! With `median` or `trimmed_mean`, `f` bad workers of `n` cannot move a coordinate
//! outside the range of the good workers' values while `f < n / 2` (median) or `f <= k`
//! (trimmed mean): one garbage worker of three or more cannot steer a step. With 1 or 2
//! gradients every rule is the mean. Sorting uses `f32::total_cmp`; the gradients are
//! finite (checked on arrival), so the order is the numeric one.

use downpour_core::ParamSet;

use crate::robustness::Aggregation;

/// An aggregation rule with its parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregationRule {
    /// Which rule.
    pub kind: Aggregation,
    /// `trimmed_mean`'s share cut from each end.
    pub trim_fraction: f32,
}

impl Default for AggregationRule {
    fn default() -> Self {
        Self {
            kind: Aggregation::Mean,
            trim_fraction: 0.2,
        }
    }
}

impl AggregationRule {
    /// How many values `trimmed_mean` cuts from each end of `n`.
    #[must_use]
    pub fn trimmed(&self, n: usize) -> usize {
        if n < 3 {
            return 0;
        }
        // Less a little, so that a share that is a whole number of values (0.2 of 10) is not
        // rounded up by f32's representation of the fraction.
        let k = (f64::from(self.trim_fraction) * n as f64 - 1e-6).ceil() as usize;
        // Leave at least one value (two when n is even, so the middle stays symmetric).
        k.clamp(1, (n - 1) / 2)
    }

    /// Combines `gradients` (conformed to one layout, in worker-id order) into one.
    /// `None` when there are none.
    #[must_use]
    pub fn combine(&self, gradients: Vec<ParamSet>) -> Option<ParamSet> {
        let n = gradients.len();
        if n <= 2 || self.kind == Aggregation::Mean {
            return mean(gradients);
        }
        let mut gradients = gradients.into_iter();
        let mut out = gradients.next()?;
        let rest: Vec<ParamSet> = gradients.collect();
        let trim = match self.kind {
            Aggregation::Mean => unreachable!("handled above"),
            Aggregation::Median => (n - 1) / 2,
            Aggregation::TrimmedMean => self.trimmed(n),
        };
        let mut column = Vec::with_capacity(n);
        for (t, acc) in out.tensors_mut().enumerate() {
            let others: Vec<&[f32]> = rest.iter().map(|g| g.entries()[t].tensor.data()).collect();
            for (i, a) in acc.data_mut().iter_mut().enumerate() {
                column.clear();
                column.push(*a);
                column.extend(others.iter().map(|o| o[i]));
                column.sort_unstable_by(f32::total_cmp);
                *a = middle_mean(&column[trim..n - trim]);
            }
        }
        Some(out)
    }
}

impl AggregationRule {
    /// As [`Self::combine`], but the mean weighs each gradient by the samples it was
    /// computed on, `samples[i]` for `gradients[i]`: the step's gradient is then the mean over
    /// every sample of the step, as when one worker holds two data shards after another
    /// died (`global_batch`). Rule: Σᵢ sᵢ·gᵢ / Σᵢ sᵢ, summed in the order given. When every
    /// count is the same it is exactly [`Self::combine`]'s plain mean (so sync runs stay
    /// bit-identical). The robust rules count each worker once whatever it claims, so that
    /// a worker cannot buy weight by reporting more samples.
    #[must_use]
    pub fn combine_weighted(&self, gradients: Vec<ParamSet>, samples: &[u64]) -> Option<ParamSet> {
        let uneven = samples.windows(2).any(|w| w[0] != w[1]);
        let total: u64 = samples.iter().fold(0u64, |a, &s| a.saturating_add(s));
        if self.kind != Aggregation::Mean || !uneven || total == 0 {
            return self.combine(gradients);
        }
        let mut weighted = gradients.into_iter().zip(samples);
        let (mut sum, &first) = weighted.next()?;
        let scale = |t: &mut downpour_core::Tensor, w: f32| {
            t.data_mut().iter_mut().for_each(|v| *v *= w);
        };
        sum.tensors_mut().for_each(|t| scale(t, first as f32));
        for (g, &s) in weighted {
            let w = s as f32;
            for (acc, t) in sum.tensors_mut().zip(g.entries()) {
                for (a, v) in acc.data_mut().iter_mut().zip(t.tensor.data()) {
                    *a += w * v;
                }
            }
        }
        let n = total as f32;
        sum.tensors_mut()
            .for_each(|t| t.data_mut().iter_mut().for_each(|v| *v /= n));
        Some(sum)
    }
}

/// The mean of sorted values, summed in order.
fn middle_mean(kept: &[f32]) -> f32 {
    kept.iter().sum::<f32>() / kept.len() as f32
}

/// The mean of the gradients, summed in the order given, then divided by their count.
fn mean(gradients: Vec<ParamSet>) -> Option<ParamSet> {
    let mut gradients = gradients.into_iter();
    let mut sum = gradients.next()?;
    let mut count = 1usize;
    for g in gradients {
        count += 1;
        for (acc, t) in sum.tensors_mut().zip(g.entries()) {
            for (a, v) in acc.data_mut().iter_mut().zip(t.tensor.data()) {
                *a += v;
            }
        }
    }
    if count > 1 {
        let n = count as f32;
        sum.tensors_mut()
            .for_each(|t| t.data_mut().iter_mut().for_each(|v| *v /= n));
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_core::{NamedTensor, Tensor};

    fn grad(values: &[f32]) -> ParamSet {
        ParamSet::new(vec![NamedTensor {
            name: "w".into(),
            tensor: Tensor::new(vec![values.len()], values.to_vec()).unwrap(),
        }])
    }

    fn rule(kind: Aggregation) -> AggregationRule {
        AggregationRule {
            kind,
            trim_fraction: 0.2,
        }
    }

    fn combined(kind: Aggregation, gradients: &[&[f32]]) -> Vec<f32> {
        let sets = gradients.iter().map(|g| grad(g)).collect();
        rule(kind)
            .combine(sets)
            .unwrap()
            .get("w")
            .unwrap()
            .data()
            .to_vec()
    }

    #[test]
    fn trimmed_counts_cut_at_least_one_from_each_end_from_three_on() {
        let r = rule(Aggregation::TrimmedMean);
        let cut: Vec<usize> = (1..=11).map(|n| r.trimmed(n)).collect();
        assert_eq!(cut, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3]);
        let wide = AggregationRule {
            kind: Aggregation::TrimmedMean,
            trim_fraction: 0.45,
        };
        assert_eq!(wide.trimmed(4), 1);
        assert_eq!(wide.trimmed(5), 2);
    }

    #[test]
    fn one_garbage_worker_of_four_cannot_steer_median_or_trimmed_mean() {
        let good: [&[f32]; 3] = [&[1.0, -2.0], &[2.0, -1.0], &[3.0, -3.0]];
        let mut all = good.to_vec();
        all.push(&[1e6, -1e6]);
        assert_eq!(combined(Aggregation::Mean, &all), [250_001.5, -250_001.5]);
        // Sorted columns: [1, 2, 3, 1e6] and [-1e6, -3, -2, -1].
        assert_eq!(combined(Aggregation::Median, &all), [2.5, -2.5]);
        assert_eq!(combined(Aggregation::TrimmedMean, &all), [2.5, -2.5]);
    }

    #[test]
    fn an_odd_count_takes_the_middle_value() {
        let all: [&[f32]; 5] = [&[5.0], &[1.0], &[-7.0], &[3.0], &[100.0]];
        assert_eq!(combined(Aggregation::Median, &all), [3.0]);
        // ceil(0.2 * 5) = 1 cut from each end: mean of 1, 3, 5.
        assert_eq!(combined(Aggregation::TrimmedMean, &all), [3.0]);
        assert_eq!(combined(Aggregation::Mean, &all), [20.4]);
    }

    #[test]
    fn one_or_two_gradients_are_averaged_by_every_rule() {
        for kind in [
            Aggregation::Mean,
            Aggregation::Median,
            Aggregation::TrimmedMean,
        ] {
            assert_eq!(combined(kind, &[&[1.0, 4.0], &[3.0, 0.0]]), [2.0, 2.0]);
            assert_eq!(combined(kind, &[&[1.5]]), [1.5]);
        }
        assert!(rule(Aggregation::Median).combine(Vec::new()).is_none());
    }

    #[test]
    fn the_mean_sums_in_the_order_given() {
        // f32 addition is not associative: (1e8 + 1) - 1e8 = 0, but 1e8 - 1e8 + 1 = 1.
        let a = combined(Aggregation::Mean, &[&[1e8], &[1.0], &[-1e8]]);
        let b = combined(Aggregation::Mean, &[&[1e8], &[-1e8], &[1.0]]);
        assert_eq!(a, [0.0]);
        assert_eq!(b, [1.0 / 3.0]);
    }

    #[test]
    fn weighted_mean_weighs_by_samples_and_is_the_plain_mean_when_counts_agree() {
        let gs = || vec![grad(&[0.1, 7.0]), grad(&[0.2, -3.0]), grad(&[0.7, 1.0])];
        let mean = rule(Aggregation::Mean);
        let plain = mean.combine(gs()).unwrap();
        let same = mean.combine_weighted(gs(), &[32, 32, 32]).unwrap();
        let bits = |p: &ParamSet| -> Vec<u32> {
            p.entries()[0]
                .tensor
                .data()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&plain), bits(&same));
        let weighted = mean.combine_weighted(gs(), &[64, 32, 32]).unwrap();
        let w = weighted.entries()[0].tensor.data();
        assert!((w[0] - (0.2 + 0.2 + 0.7) / 4.0).abs() < 1e-6, "{w:?}");
        assert!((w[1] - (14.0 - 3.0 + 1.0) / 4.0).abs() < 1e-6, "{w:?}");
        // A robust rule counts each worker once, whatever it claims.
        let median = rule(Aggregation::Median);
        let claimed = median.combine_weighted(gs(), &[1_000_000, 1, 1]).unwrap();
        assert_eq!(bits(&claimed), bits(&median.combine(gs()).unwrap()));
    }
}
