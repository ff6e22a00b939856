//! Feature standardisation: `x' = (x - mean) / std` per feature, with the statistics of
//! the training split only, so the test split never leaks into training.
//!
//! The rule is scikit-learn's `StandardScaler`: the mean and the population standard
//! deviation (divisor n, not n - 1), accumulated in f64 and stored as f32. A feature that
//! is constant on the training split (std 0) is set to 0 everywhere, in the training and
//! the test split alike, rather than divided by zero.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use super::DataError;

/// Per-feature statistics of a training split.
///
/// Invariant: `mean` and `std` have one entry per feature; every `std` is finite and
/// non-negative, 0 exactly for a constant feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    /// Each feature's mean over the training split.
    pub mean: Vec<f32>,
    /// Each feature's population standard deviation over the training split.
    pub std: Vec<f32>,
}

impl Standardization {
    /// The statistics of `train`'s columns.
    #[must_use]
    pub fn fit(train: &Array2<f32>) -> Self {
        let n = train.nrows().max(1) as f64;
        let mut mean = Vec::with_capacity(train.ncols());
        let mut std = Vec::with_capacity(train.ncols());
        for column in train.axis_iter(Axis(1)) {
            let m = column.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = column
                .iter()
                .map(|&x| (f64::from(x) - m).powi(2))
                .sum::<f64>()
                / n;
            mean.push(m as f32);
            std.push(var.sqrt() as f32);
        }
        Self { mean, std }
    }

    /// Features the statistics cover.
    #[must_use]
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Standardises `features` in place: `(x - mean) / std`, and 0 where `std` is 0.
    ///
    /// # Errors
    /// [`DataError::Invalid`] when `features` has another number of columns than the
    /// statistics (statistics saved with other weights, for instance).
    pub fn apply(&self, features: &mut Array2<f32>) -> Result<(), DataError> {
        if features.ncols() != self.features() {
            return Err(DataError::Invalid {
                field: "standardize",
                reason: format!(
                    "the statistics cover {} features, the data has {}",
                    self.features(),
                    features.ncols()
                ),
            });
        }
        for mut row in features.axis_iter_mut(Axis(0)) {
            for ((x, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = if s > 0.0 { (*x - m) / s } else { 0.0 };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn training_statistics_give_zero_mean_unit_variance() {
        let train = array![[1.0f32, 100.0, 5.0], [3.0, 300.0, 5.0], [5.0, 200.0, 5.0]];
        let stats = Standardization::fit(&train);
        assert_eq!(stats.mean, vec![3.0, 200.0, 5.0]);
        // Population std: sqrt(8 / 3) and sqrt(20000 / 3).
        assert_eq!(stats.std[0], (8.0f64 / 3.0).sqrt() as f32);
        assert_eq!(stats.std[1], (20000.0f64 / 3.0).sqrt() as f32);
        assert_eq!(stats.std[2], 0.0);
        let mut scaled = train.clone();
        stats.apply(&mut scaled).unwrap();
        for j in 0..2 {
            let column = scaled.column(j);
            let mean: f32 = column.sum() / 3.0;
            let var: f32 = column.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 3.0;
            assert!(mean.abs() < 1e-6, "column {j}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-5, "column {j}: variance {var}");
        }
        assert_eq!(scaled[[0, 0]], -2.0 / stats.std[0]);
        assert!(
            scaled.column(2).iter().all(|&x| x == 0.0),
            "constant feature left at zero"
        );
    }

    #[test]
    fn test_data_uses_the_training_statistics() {
        let stats = Standardization::fit(&array![[0.0f32, 7.0], [2.0, 7.0]]);
        let mut test = array![[4.0f32, 9.0]];
        stats.apply(&mut test).unwrap();
        assert_eq!(test, array![[3.0, 0.0]]);
        let err = stats.apply(&mut array![[1.0f32]]).unwrap_err().to_string();
        assert_eq!(
            err,
            "data.standardize: the statistics cover 2 features, the data has 1"
        );
    }
}
