//! Updates that cannot be poisoned: the job's `[robustness]` section, and the one check
//! every gradient passes before the server holds or applies it.
//!
//! ```toml
//! [robustness]
//! max_gradient_value = 1e6        # |g_i| above this: the push is refused
//! max_gradient_norm = 1e4         # optional: a 2-norm above this is refused
//! aggregation = "trimmed_mean"    # sync: "mean" (default), "trimmed_mean" or "median"
//! trim_fraction = 0.2             # trimmed_mean: the share cut from each end
//! ```
//!
//! # Why a value bound keeps the state finite
//! A value above `max_gradient_value` (or a NaN or infinity) is refused, and the bound may
//! be at most [`MAX_VALUE_BOUND`] (1e18), so every square `g_i²` the optimizers form
//! (Adam's and RMSprop's second moments, Adagrad's and Adadelta's sums) is at most 1e36,
//! below `f32::MAX` (3.4e38): one push cannot overflow any state. With the default bound
//! (1e6, squares at most 1e12) Adagrad's running sum, the only state that only grows,
//! stays finite for more than 1e26 steps. Without the bound, one push of 1e20 values
//! overflows Adam's second moment and every later update is zero.
//!
//! On a sharded server each shard checks the part of the gradient it holds: the value
//! bound is exact, the norm bound applies to each shard's part.

use serde::{Deserialize, Serialize};

use downpour_core::schema::Conformed;

use crate::clip::{grad_sq_norm, total_norm};

/// The largest `max_gradient_value` a job may set: squares of values up to it are finite
/// in f32 (1e36 < 3.4e38).
pub const MAX_VALUE_BOUND: f32 = 1e18;

/// How a sync step's gradients (one per worker with data) are combined, coordinate by
/// coordinate. See [`crate::aggregation`] for each rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// The mean (what every parameter server does).
    #[default]
    Mean,
    /// The mean of what is left after cutting the largest and smallest values.
    TrimmedMean,
    /// The median.
    Median,
}

impl Aggregation {
    /// The name the job file uses.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::TrimmedMean => "trimmed_mean",
            Self::Median => "median",
        }
    }
}

/// The job file's `[robustness]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobustnessSpec {
    /// A push holding a value whose magnitude exceeds this is refused. At most 1e18.
    #[serde(default = "default_max_gradient_value")]
    pub max_gradient_value: f32,
    /// A push whose 2-norm (over every tensor it holds) exceeds this is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gradient_norm: Option<f32>,
    /// How sync mode combines a step's gradients. Async and SSP apply each gradient alone.
    #[serde(default)]
    pub aggregation: Aggregation,
    /// `trimmed_mean`: the share of the step's gradients cut from each end, rounded up,
    /// and at most what leaves one; in `(0, 0.5)`.
    #[serde(default = "default_trim_fraction")]
    pub trim_fraction: f32,
}

fn default_max_gradient_value() -> f32 {
    1e6
}

fn default_trim_fraction() -> f32 {
    0.2
}

impl Default for RobustnessSpec {
    fn default() -> Self {
        Self {
            max_gradient_value: default_max_gradient_value(),
            max_gradient_norm: None,
            aggregation: Aggregation::default(),
            trim_fraction: default_trim_fraction(),
        }
    }
}

/// A `[robustness]` field that cannot be used, with the reason and value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RobustnessError {
    /// The field, `robustness.name`.
    pub field: &'static str,
    /// Why, with the value.
    pub reason: String,
}

impl RobustnessSpec {
    /// Checks every field.
    ///
    /// # Errors
    /// [`RobustnessError`] naming the field and its value.
    pub fn validate(&self) -> Result<(), RobustnessError> {
        let v = self.max_gradient_value;
        if !(v.is_finite() && v > 0.0 && v <= MAX_VALUE_BOUND) {
            return Err(RobustnessError {
                field: "robustness.max_gradient_value",
                reason: format!(
                    "must be positive and at most {MAX_VALUE_BOUND:e} (so squares stay finite), got {v}"
                ),
            });
        }
        if let Some(n) = self.max_gradient_norm
            && !(n.is_finite() && n > 0.0)
        {
            return Err(RobustnessError {
                field: "robustness.max_gradient_norm",
                reason: format!("must be positive, got {n}"),
            });
        }
        let f = self.trim_fraction;
        if !(f > 0.0 && f < 0.5) {
            return Err(RobustnessError {
                field: "robustness.trim_fraction",
                reason: format!("must be in (0, 0.5), got {f}"),
            });
        }
        Ok(())
    }

    /// The bounds a push is checked against.
    #[must_use]
    pub fn bounds(&self) -> GradientBounds {
        GradientBounds {
            max_value: self.max_gradient_value,
            max_norm: self.max_gradient_norm,
        }
    }
}

/// A gradient the server refuses because of its values. Nothing is changed when one is
/// returned. The gradient's tensors were already checked against the model's schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradientError {
    /// A value is NaN or infinite.
    #[error("tensor {name}: value {value} at index {index} is not finite")]
    NonFinite {
        /// The tensor.
        name: String,
        /// Flat index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A value's magnitude exceeds `robustness.max_gradient_value`.
    #[error(
        "tensor {name}: value {value:e} at index {index} exceeds robustness.max_gradient_value ({bound:e})"
    )]
    ValueBound {
        /// The tensor.
        name: String,
        /// Flat index of the first value out of bounds.
        index: usize,
        /// The value.
        value: f32,
        /// The bound.
        bound: f32,
    },
    /// The gradient's 2-norm exceeds `robustness.max_gradient_norm`.
    #[error("gradient 2-norm {norm:e} exceeds robustness.max_gradient_norm ({bound:e})")]
    NormBound {
        /// The norm.
        norm: f32,
        /// The bound.
        bound: f32,
    },
}

impl GradientError {
    /// A short name of the reason, as refusals are counted in the status.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NonFinite { .. } => "non_finite",
            Self::ValueBound { .. } => "value_bound",
            Self::NormBound { .. } => "norm_bound",
        }
    }
}

/// The bounds every gradient is checked against, once, before the server holds it at the
/// barrier or applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientBounds {
    /// The largest magnitude a value may have.
    pub max_value: f32,
    /// The largest 2-norm the gradient may have, if bounded.
    pub max_norm: Option<f32>,
}

impl Default for GradientBounds {
    fn default() -> Self {
        RobustnessSpec::default().bounds()
    }
}

impl GradientBounds {
    /// Checks that every value is finite and within the value bound, and that the norm is
    /// within the norm bound.
    ///
    /// # Errors
    /// [`GradientError`] for the first value at fault (NaN or infinity first), or the norm.
    pub fn check(&self, gradient: &Conformed) -> Result<(), GradientError> {
        for g in gradient.set().entries() {
            let data = g.tensor.data();
            let largest = largest_magnitude_bits(data);
            if largest >= EXPONENT_ALL_ONES {
                let index = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
                return Err(GradientError::NonFinite {
                    name: g.name.clone(),
                    index,
                    value: data[index],
                });
            }
            if f32::from_bits(largest) > self.max_value {
                let index = data
                    .iter()
                    .position(|v| v.abs() > self.max_value)
                    .unwrap_or(0);
                return Err(GradientError::ValueBound {
                    name: g.name.clone(),
                    index,
                    value: data[index],
                    bound: self.max_value,
                });
            }
        }
        if let Some(bound) = self.max_norm {
            let norm = total_norm(
                gradient
                    .set()
                    .entries()
                    .iter()
                    .map(|g| grad_sq_norm(g.tensor.data())),
            );
            if norm > bound {
                return Err(GradientError::NormBound { norm, bound });
            }
        }
        Ok(())
    }
}

/// The bits of an f32 whose exponent is all ones: an infinity, or a NaN above it.
const EXPONENT_ALL_ONES: u32 = 0x7f80_0000;

/// The largest magnitude in `values` as the bits of its absolute value (0 when empty).
/// For non-negative floats the bit patterns order as the values do, and NaNs and
/// infinities come above every finite value, so one integer max pass (which vectorises)
/// finds both a non-finite value and the largest magnitude.
fn largest_magnitude_bits(values: &[f32]) -> u32 {
    values
        .iter()
        .fold(0_u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_core::schema::TensorSchema;
    use downpour_core::{NamedTensor, ParamSet, Tensor};

    fn conformed(values: &[f32]) -> Conformed {
        let set = ParamSet::new(vec![NamedTensor {
            name: "w".into(),
            tensor: Tensor::new(vec![values.len()], values.to_vec()).unwrap(),
        }]);
        let schema = TensorSchema::of(&set);
        schema.conform(set).unwrap()
    }

    #[test]
    fn values_within_the_bound_pass_and_the_first_beyond_it_is_named() {
        let bounds = GradientBounds {
            max_value: 10.0,
            max_norm: None,
        };
        assert_eq!(bounds.check(&conformed(&[-10.0, 10.0, 0.0])), Ok(()));
        let err = bounds.check(&conformed(&[1.0, -10.5, 11.0])).unwrap_err();
        assert_eq!(
            err,
            GradientError::ValueBound {
                name: "w".into(),
                index: 1,
                value: -10.5,
                bound: 10.0
            }
        );
        assert_eq!(err.reason(), "value_bound");
    }

    #[test]
    fn a_nan_or_infinity_is_refused_before_any_bound() {
        let bounds = GradientBounds::default();
        let err = bounds
            .check(&conformed(&[1e20, f32::NEG_INFINITY, f32::NAN]))
            .unwrap_err();
        assert!(
            matches!(err, GradientError::NonFinite { index: 1, value, .. } if value == f32::NEG_INFINITY),
            "{err:?}"
        );
        let err = bounds.check(&conformed(&[0.0, f32::NAN])).unwrap_err();
        assert_eq!(err.reason(), "non_finite");
    }

    #[test]
    fn the_default_bound_refuses_a_push_of_1e20_values() {
        let err = GradientBounds::default()
            .check(&conformed(&[1e20; 8]))
            .unwrap_err();
        assert_eq!(err.reason(), "value_bound");
        assert!(err.to_string().contains("1e20"), "{err}");
    }

    #[test]
    fn the_norm_bound_counts_every_value() {
        let bounds = GradientBounds {
            max_value: 1e6,
            max_norm: Some(5.0),
        };
        assert_eq!(bounds.check(&conformed(&[3.0, 4.0])), Ok(()));
        let err = bounds.check(&conformed(&[3.0, 4.0, 0.1])).unwrap_err();
        assert!(
            matches!(err, GradientError::NormBound { bound: 5.0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn the_largest_magnitude_orders_as_the_values_do() {
        assert_eq!(largest_magnitude_bits(&[]), 0);
        assert_eq!(
            f32::from_bits(largest_magnitude_bits(&[-3.0, 2.0, 1e-30])),
            3.0
        );
        assert!(largest_magnitude_bits(&[1.0, f32::INFINITY]) >= EXPONENT_ALL_ONES);
        assert!(largest_magnitude_bits(&[-f32::NAN]) > EXPONENT_ALL_ONES);
        assert!(largest_magnitude_bits(&[f32::MAX]) < EXPONENT_ALL_ONES);
    }

    #[test]
    fn validation_names_the_field_and_value() {
        let mut spec = RobustnessSpec::default();
        assert_eq!(spec.validate(), Ok(()));
        spec.max_gradient_value = 1e20;
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .starts_with("robustness.max_gradient_value: must be positive and at most 1e18")
        );
        spec = RobustnessSpec {
            max_gradient_norm: Some(0.0),
            ..RobustnessSpec::default()
        };
        assert_eq!(
            spec.validate().unwrap_err().field,
            "robustness.max_gradient_norm"
        );
        spec = RobustnessSpec {
            trim_fraction: 0.5,
            ..RobustnessSpec::default()
        };
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "robustness.trim_fraction: must be in (0, 0.5), got 0.5"
        );
    }
}
