//! Sabotage, for tests and demonstrations only: a worker that pushes bad gradients, to
//! show what the server's bounds and robust aggregation do with them.
//!
//! - `garbage`: every step, every gradient value is replaced by a value drawn uniformly
//!   from `[-GARBAGE_SCALE, GARBAGE_SCALE]` (finite and within the default value bound, so
//!   the server accepts it: only a robust `aggregation` keeps it from steering the steps);
//! - `huge`: every gradient value is `HUGE_VALUE` (1e20: finite, so the server's value
//!   bound, not its finiteness check, refuses it and the worker stops).

use rand::{Rng, SeedableRng};

use downpour_core::ParamSet;

/// The magnitude of a `garbage` value's range.
pub const GARBAGE_SCALE: f32 = 100.0;

/// The value of every element of a `huge` gradient.
pub const HUGE_VALUE: f32 = 1e20;

/// What a sabotaging worker does to each gradient it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// Uniform noise in `[-GARBAGE_SCALE, GARBAGE_SCALE]`.
    Garbage,
    /// Every value `HUGE_VALUE`.
    Huge,
}

impl Sabotage {
    /// The sabotage named `name` (`garbage` or `huge`).
    ///
    /// # Errors
    /// The name and the choices, for any other name.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "garbage" => Ok(Self::Garbage),
            "huge" => Ok(Self::Huge),
            other => Err(format!(
                "unknown sabotage {other:?}: expected garbage or huge"
            )),
        }
    }

    /// Spoils `gradient` in place; `step` seeds the garbage, so a run is repeatable.
    pub fn spoil(self, gradient: &mut ParamSet, step: u64) {
        match self {
            Self::Garbage => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(step ^ 0x5ab0_7a6e);
                for t in gradient.tensors_mut() {
                    for v in t.data_mut() {
                        *v = rng.random_range(-GARBAGE_SCALE..=GARBAGE_SCALE);
                    }
                }
            }
            Self::Huge => {
                for t in gradient.tensors_mut() {
                    t.data_mut().fill(HUGE_VALUE);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downpour_core::{NamedTensor, Tensor};

    fn gradient() -> ParamSet {
        ParamSet::new(vec![NamedTensor {
            name: "w".into(),
            tensor: Tensor::new(vec![1000], vec![0.01; 1000]).unwrap(),
        }])
    }

    #[test]
    fn garbage_fills_the_range_and_repeats_per_step() {
        let mut a = gradient();
        Sabotage::Garbage.spoil(&mut a, 3);
        let data = a.get("w").unwrap().data();
        assert!(data.iter().all(|v| v.abs() <= GARBAGE_SCALE));
        let spread = data.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
        assert!(spread > 0.9 * GARBAGE_SCALE, "{spread}");
        let mut b = gradient();
        Sabotage::Garbage.spoil(&mut b, 3);
        assert_eq!(a, b);
        Sabotage::Garbage.spoil(&mut b, 4);
        assert_ne!(a, b);
    }

    #[test]
    fn huge_sets_every_value_and_names_parse() {
        let mut g = gradient();
        Sabotage::Huge.spoil(&mut g, 0);
        assert!(g.get("w").unwrap().data().iter().all(|&v| v == 1e20));
        assert_eq!(Sabotage::parse("huge"), Ok(Sabotage::Huge));
        assert_eq!(Sabotage::parse("garbage"), Ok(Sabotage::Garbage));
        assert!(
            Sabotage::parse("nan")
                .unwrap_err()
                .contains("garbage or huge")
        );
    }
}
