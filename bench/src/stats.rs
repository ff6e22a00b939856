//! Medians and their spread over repeats.
//!
//! Every figure the lab reports is the median of its repeats, with the smallest and
//! largest value beside it: with three to five repeats on a shared machine, the range
//! says more than a standard deviation would, and a rerun "agrees" when its median lies
//! inside the first run's range.

use serde::{Deserialize, Serialize};

/// The median of some measurements and their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values`, ignoring NaNs; `None` when nothing is left.
    #[must_use]
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// Half the range: the `±` printed beside the median.
    #[must_use]
    pub fn half_range(&self) -> f64 {
        (self.max - self.min) / 2.0
    }

    /// Half the range as a fraction of the median (0 for a zero median).
    #[must_use]
    pub fn relative_spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            self.half_range() / self.median.abs()
        }
    }

    /// `numerator` divided by every value (for a time `T1` over times `TN`): the median is
    /// `numerator / median`, the range swaps ends.
    #[must_use]
    pub fn inverted(&self, numerator: f64) -> Self {
        Self {
            median: numerator / self.median,
            min: numerator / self.max,
            max: numerator / self.min,
            n: self.n,
        }
    }

    /// Every value divided by `by` (for ratios to a reference such as T1).
    #[must_use]
    pub fn scaled(&self, by: f64) -> Self {
        Self {
            median: self.median / by,
            min: self.min / by,
            max: self.max / by,
            n: self.n,
        }
    }

    /// Whether `value` lies within the range.
    #[must_use]
    pub fn contains(&self, value: f64) -> bool {
        self.min <= value && value <= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_take_the_middle_value() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 2.0,
                min: 1.0,
                max: 3.0,
                n: 3
            }
        );
        assert_eq!(s.half_range(), 1.0);
        assert_eq!(s.relative_spread(), 0.5);
    }

    #[test]
    fn even_counts_average_the_middle_two_and_nans_are_ignored() {
        let s = Summary::of(&[4.0, f64::NAN, 1.0, 10.0, 2.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.n, 4);
        assert_eq!((s.min, s.max), (1.0, 10.0));
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn scaling_and_containment() {
        let s = Summary::of(&[100.0, 200.0, 150.0]).unwrap().scaled(50.0);
        assert_eq!((s.median, s.min, s.max), (3.0, 2.0, 4.0));
        assert!(s.contains(2.5));
        assert!(!s.contains(4.5));
        let zero = Summary::of(&[0.0]).unwrap();
        assert_eq!(zero.relative_spread(), 0.0);
    }
}
