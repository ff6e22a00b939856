//! Learning-rate schedules, applied by the server once per optimizer step.
//!
//! A schedule maps the base learning rate (the optimizer's `lr`) and the number of
//! optimizer steps already taken to the learning rate of the next step. It is an optional
//! linear warm-up followed by one of four decays, each PyTorch's
//! `torch.optim.lr_scheduler` in closed form:
//!
//! | `kind`        | lr at decay step k (after warm-up)                        | PyTorch          |
//! |---------------|-----------------------------------------------------------|------------------|
//! | `constant`    | `lr`                                                      | —                |
//! | `step`        | `lr · gamma^⌊k / step_size⌋`                              | `StepLR`         |
//! | `exponential` | `lr · gamma^k`                                            | `ExponentialLR`  |
//! | `cosine`      | `eta_min + (lr − eta_min) (1 + cos(π k / t_max)) / 2`, then `eta_min` for k ≥ t_max | `CosineAnnealingLR` |
//!
//! Warm-up step k < `warmup_steps` uses `lr · (k + 1) / warmup_steps`, and the decay's own
//! step count starts at 0 when the warm-up ends (PyTorch: `LinearLR(start_factor =
//! 1 / warmup_steps, total_iters = warmup_steps − 1)` then the decay, in a `SequentialLR`
//! with the milestone at `warmup_steps`).
//!
//! One deliberate difference: past `t_max`, PyTorch's `CosineAnnealingLR` climbs back up
//! the cosine; here the rate stays at its floor `eta_min`.

use serde::{Deserialize, Serialize};

/// A schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A field is missing, does not apply to the kind, or holds a value outside its domain.
    #[error("schedule.{field}: {reason}")]
    Invalid {
        /// The field, as named in the job file.
        field: &'static str,
        /// Why the value is refused, with the value.
        reason: String,
    },
}

/// What follows the warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` every `step_size` steps (`StepLR`).
    Step {
        /// Steps between two decays; >= 1.
        step_size: u64,
        /// The factor of each decay, in (0, 1]; default 0.1 as in `StepLR`.
        gamma: f32,
    },
    /// Multiply by `gamma` every step (`ExponentialLR`).
    Exponential {
        /// The factor of each step, in (0, 1].
        gamma: f32,
    },
    /// Half a cosine from the base rate down to `eta_min` over `t_max` steps, then
    /// `eta_min` (`CosineAnnealingLR`).
    Cosine {
        /// Steps from the base rate to the floor; >= 1.
        t_max: u64,
        /// The floor, finite and >= 0; default 0.
        eta_min: f32,
    },
}

impl Decay {
    /// The job file's `kind`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Step { .. } => "step",
            Self::Exponential { .. } => "exponential",
            Self::Cosine { .. } => "cosine",
        }
    }
}

/// The job file's `[schedule]` section: `kind = "constant" | "step" | "exponential" |
/// "cosine"`, the kind's own fields (`step_size`, `gamma`, `t_max`, `eta_min`) and
/// `warmup_steps`.
///
/// Parsing refuses a field the kind does not use, a missing required one (`step_size` for
/// `step`, `gamma` for `exponential`, `t_max` for `cosine`) and, through
/// [`ScheduleConfig::validate`], values outside their domains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleSection", into = "ScheduleSection")]
pub struct ScheduleConfig {
    /// Steps of linear warm-up in front of `decay`; 0 for none.
    pub warmup_steps: u64,
    /// The schedule after the warm-up; its step count starts at 0 when the warm-up ends.
    pub decay: Decay,
}

impl Default for ScheduleConfig {
    /// A constant rate, no warm-up.
    fn default() -> Self {
        Self {
            warmup_steps: 0,
            decay: Decay::Constant,
        }
    }
}

impl ScheduleConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] naming the field: `step_size` or `t_max` of 0, `gamma`
    /// outside (0, 1], `eta_min` negative or not finite.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match self.decay {
            Decay::Constant => Ok(()),
            Decay::Step { step_size, gamma } => {
                at_least_one("step_size", step_size)?;
                check_gamma(gamma)
            }
            Decay::Exponential { gamma } => check_gamma(gamma),
            Decay::Cosine { t_max, eta_min } => {
                at_least_one("t_max", t_max)?;
                if eta_min.is_finite() && eta_min >= 0.0 {
                    Ok(())
                } else {
                    Err(invalid(
                        "eta_min",
                        format!("must be a finite number >= 0, got {eta_min}"),
                    ))
                }
            }
        }
    }

    /// The learning rate of the next optimizer step, when `step` steps have been taken,
    /// for the base rate `base_lr` (computed in f64, as PyTorch's schedulers do in Python).
    ///
    /// Meant for a validated config; should one be built by hand with `step_size = 0` or
    /// `t_max = 0`, they act as 1 and 0 (the floor at once) rather than divide by zero.
    #[must_use]
    pub fn lr_at(&self, base_lr: f32, step: u64) -> f32 {
        let base = f64::from(base_lr);
        if step < self.warmup_steps {
            return (base * (step + 1) as f64 / self.warmup_steps as f64) as f32;
        }
        let k = step - self.warmup_steps;
        let lr = match self.decay {
            Decay::Constant => base,
            Decay::Step { step_size, gamma } => {
                base * f64::from(gamma).powf((k / step_size.max(1)) as f64)
            }
            Decay::Exponential { gamma } => base * f64::from(gamma).powf(k as f64),
            Decay::Cosine { t_max, eta_min } => {
                let floor = f64::from(eta_min);
                if k >= t_max {
                    floor
                } else {
                    let progress = std::f64::consts::PI * k as f64 / t_max as f64;
                    floor + (base - floor) * (1.0 + progress.cos()) / 2.0
                }
            }
        };
        lr as f32
    }
}

/// An [`ScheduleError::Invalid`].
fn invalid(field: &'static str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Refuses a step count of 0.
fn at_least_one(field: &'static str, value: u64) -> Result<(), ScheduleError> {
    if value >= 1 {
        Ok(())
    } else {
        Err(invalid(field, format!("must be >= 1, got {value}")))
    }
}

/// Refuses a decay factor outside (0, 1]: 0 would stop training, above 1 the rate grows.
fn check_gamma(gamma: f32) -> Result<(), ScheduleError> {
    if gamma > 0.0 && gamma <= 1.0 {
        Ok(())
    } else {
        Err(invalid("gamma", format!("must be in (0, 1], got {gamma}")))
    }
}

/// The `kind` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ScheduleKind {
    /// [`Decay::Constant`].
    #[default]
    Constant,
    /// [`Decay::Step`].
    Step,
    /// [`Decay::Exponential`].
    Exponential,
    /// [`Decay::Cosine`].
    Cosine,
}

/// The `[schedule]` section as written: flat, every kind's fields optional.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ScheduleSection {
    /// Which decay.
    kind: ScheduleKind,
    /// Warm-up steps; 0 for none.
    #[serde(skip_serializing_if = "is_zero")]
    warmup_steps: u64,
    /// `step` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    step_size: Option<u64>,
    /// `step` and `exponential`.
    #[serde(skip_serializing_if = "Option::is_none")]
    gamma: Option<f32>,
    /// `cosine` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    t_max: Option<u64>,
    /// `cosine` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_min: Option<f32>,
}

/// For `skip_serializing_if`.
fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl TryFrom<ScheduleSection> for ScheduleConfig {
    type Error = ScheduleError;

    fn try_from(s: ScheduleSection) -> Result<Self, ScheduleError> {
        let (kind, used): (&str, &[&str]) = match s.kind {
            ScheduleKind::Constant => ("constant", &[]),
            ScheduleKind::Step => ("step", &["step_size", "gamma"]),
            ScheduleKind::Exponential => ("exponential", &["gamma"]),
            ScheduleKind::Cosine => ("cosine", &["t_max", "eta_min"]),
        };
        let given = [
            ("step_size", s.step_size.is_some()),
            ("gamma", s.gamma.is_some()),
            ("t_max", s.t_max.is_some()),
            ("eta_min", s.eta_min.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(f, is)| *is && !used.contains(f)) {
            return Err(invalid(
                field,
                format!("does not apply to kind = \"{kind}\""),
            ));
        }
        let required =
            |field: &'static str| invalid(field, format!("is required by kind = \"{kind}\""));
        let decay = match s.kind {
            ScheduleKind::Constant => Decay::Constant,
            ScheduleKind::Step => Decay::Step {
                step_size: s.step_size.ok_or_else(|| required("step_size"))?,
                gamma: s.gamma.unwrap_or(0.1),
            },
            ScheduleKind::Exponential => Decay::Exponential {
                gamma: s.gamma.ok_or_else(|| required("gamma"))?,
            },
            ScheduleKind::Cosine => Decay::Cosine {
                t_max: s.t_max.ok_or_else(|| required("t_max"))?,
                eta_min: s.eta_min.unwrap_or(0.0),
            },
        };
        let config = Self {
            warmup_steps: s.warmup_steps,
            decay,
        };
        config.validate()?;
        Ok(config)
    }
}

impl From<ScheduleConfig> for ScheduleSection {
    fn from(c: ScheduleConfig) -> Self {
        let mut s = Self {
            warmup_steps: c.warmup_steps,
            ..Self::default()
        };
        match c.decay {
            Decay::Constant => s.kind = ScheduleKind::Constant,
            Decay::Step { step_size, gamma } => {
                s.kind = ScheduleKind::Step;
                s.step_size = Some(step_size);
                s.gamma = Some(gamma);
            }
            Decay::Exponential { gamma } => {
                s.kind = ScheduleKind::Exponential;
                s.gamma = Some(gamma);
            }
            Decay::Cosine { t_max, eta_min } => {
                s.kind = ScheduleKind::Cosine;
                s.t_max = Some(t_max);
                s.eta_min = Some(eta_min);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ScheduleConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn parses_each_kind_with_torch_defaults() {
        assert_eq!(parse("").unwrap(), ScheduleConfig::default());
        assert_eq!(
            parse("kind = \"step\"\nstep_size = 30").unwrap().decay,
            Decay::Step {
                step_size: 30,
                gamma: 0.1
            }
        );
        assert_eq!(
            parse("kind = \"cosine\"\nt_max = 100\nwarmup_steps = 10").unwrap(),
            ScheduleConfig {
                warmup_steps: 10,
                decay: Decay::Cosine {
                    t_max: 100,
                    eta_min: 0.0
                }
            }
        );
        assert_eq!(
            parse("kind = \"exponential\"\ngamma = 0.9").unwrap().decay,
            Decay::Exponential { gamma: 0.9 }
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let config = ScheduleConfig {
            warmup_steps: 5,
            decay: Decay::Cosine {
                t_max: 50,
                eta_min: 1e-4,
            },
        };
        let text = toml::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);
    }

    #[test]
    fn refuses_missing_foreign_and_bad_fields_naming_them() {
        assert_eq!(
            parse("kind = \"step\"").unwrap_err(),
            "schedule.step_size: is required by kind = \"step\""
        );
        assert_eq!(
            parse("kind = \"exponential\"").unwrap_err(),
            "schedule.gamma: is required by kind = \"exponential\""
        );
        assert_eq!(
            parse("kind = \"cosine\"").unwrap_err(),
            "schedule.t_max: is required by kind = \"cosine\""
        );
        assert_eq!(
            parse("kind = \"cosine\"\nt_max = 10\ngamma = 0.5").unwrap_err(),
            "schedule.gamma: does not apply to kind = \"cosine\""
        );
        assert_eq!(
            parse("step_size = 3").unwrap_err(),
            "schedule.step_size: does not apply to kind = \"constant\""
        );
        assert_eq!(
            parse("kind = \"step\"\nstep_size = 0").unwrap_err(),
            "schedule.step_size: must be >= 1, got 0"
        );
        assert_eq!(
            parse("kind = \"exponential\"\ngamma = 1.5").unwrap_err(),
            "schedule.gamma: must be in (0, 1], got 1.5"
        );
        assert_eq!(
            parse("kind = \"step\"\nstep_size = 2\ngamma = 0.0").unwrap_err(),
            "schedule.gamma: must be in (0, 1], got 0"
        );
        assert_eq!(
            parse("kind = \"cosine\"\nt_max = 0").unwrap_err(),
            "schedule.t_max: must be >= 1, got 0"
        );
        assert_eq!(
            parse("kind = \"cosine\"\nt_max = 5\neta_min = -0.1").unwrap_err(),
            "schedule.eta_min: must be a finite number >= 0, got -0.1"
        );
        assert!(
            parse("kind = \"linear\"")
                .unwrap_err()
                .contains("unknown variant `linear`")
        );
        assert!(
            parse("warmup = 3")
                .unwrap_err()
                .contains("unknown field `warmup`")
        );
    }

    #[test]
    fn warm_up_climbs_linearly_to_the_base_rate() {
        let config = ScheduleConfig {
            warmup_steps: 4,
            decay: Decay::Constant,
        };
        let lrs: Vec<f32> = (0..6).map(|k| config.lr_at(1.0, k)).collect();
        assert_eq!(lrs, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_stays_at_its_floor_after_t_max() {
        let config = ScheduleConfig {
            warmup_steps: 0,
            decay: Decay::Cosine {
                t_max: 4,
                eta_min: 0.25,
            },
        };
        assert_eq!(config.lr_at(1.0, 0), 1.0);
        assert_eq!(config.lr_at(1.0, 2), 0.625);
        assert_eq!(config.lr_at(1.0, 4), 0.25);
        // PyTorch's CosineAnnealingLR would climb back up here.
        assert_eq!(config.lr_at(1.0, 6), 0.25);
        assert_eq!(config.lr_at(1.0, 1_000_000), 0.25);
    }

    #[test]
    fn unvalidated_zero_periods_do_not_divide_by_zero() {
        let step = ScheduleConfig {
            warmup_steps: 0,
            decay: Decay::Step {
                step_size: 0,
                gamma: 0.5,
            },
        };
        assert_eq!(step.lr_at(1.0, 2), 0.25);
        let cosine = ScheduleConfig {
            warmup_steps: 0,
            decay: Decay::Cosine {
                t_max: 0,
                eta_min: 0.5,
            },
        };
        assert_eq!(cosine.lr_at(1.0, 0), 0.5);
    }

    #[test]
    fn step_decay_counts_from_the_end_of_warm_up() {
        let config = ScheduleConfig {
            warmup_steps: 2,
            decay: Decay::Step {
                step_size: 2,
                gamma: 0.5,
            },
        };
        let lrs: Vec<f32> = (0..7).map(|k| config.lr_at(8.0, k)).collect();
        assert_eq!(lrs, [4.0, 8.0, 8.0, 8.0, 4.0, 4.0, 2.0]);
    }
}
