//! The float type the forward and backward passes are written over.
//!
//! Training runs in `f32`. The same code runs in `f64` in the gradient checks, so
//! finite differences there are exact enough for tight tolerances.

use std::fmt::Debug;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::Float;

/// A float the models compute in: `f32` for training, `f64` for gradient checks.
pub(crate) trait Scalar:
    LinalgScalar
    + Float
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Debug
    + Send
    + Sync
{
    /// `v` rounded to this type.
    fn of(v: f64) -> Self;
    /// The value as an `f64` (exact for both implementations).
    fn widen(self) -> f64;
}

impl Scalar for f32 {
    #[allow(clippy::cast_possible_truncation)]
    fn of(v: f64) -> Self {
        v as f32
    }

    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Scalar for f64 {
    fn of(v: f64) -> Self {
        v
    }

    fn widen(self) -> f64 {
        self
    }
}
