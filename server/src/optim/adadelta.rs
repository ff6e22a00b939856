//! Adadelta (`torch.optim.Adadelta`): steps scaled by the ratio of running RMS values of
//! past updates and of gradients (Zeiler, 2012).

use serde::{Deserialize, Serialize};

use super::elementwise::{GradientPrep, average_of_squares, one_minus};
use super::{NamedBuffers, OptimizerError, assert_lengths, check_non_negative};

/// The job file's `[optimizer]` section for `name = "adadelta"`; names and defaults are
/// `torch.optim.Adadelta`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdadeltaConfig {
    /// Learning rate γ scaling the delta, before any schedule. Default `1.0`; must be >= 0.
    pub lr: f32,
    /// ρ: decay rate of both running averages. Default `0.9`; must be in [0, 1].
    pub rho: f64,
    /// ε added inside both square roots. Default `1e-6`; must be >= 0.
    pub eps: f64,
    /// Coupled L2 penalty λ added to the gradient as `λ θ`. Default `0`; must be >= 0.
    pub weight_decay: f64,
    /// Ascend instead of descend (negate the gradient). Default `false`.
    pub maximize: bool,
}

impl Default for AdadeltaConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl AdadeltaConfig {
    /// Checks the hyperparameters as `torch.optim.Adadelta` does (and refuses NaN and
    /// infinities) and builds the optimizer.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the field: a negative `lr`, `eps` or
    /// `weight_decay`, or `rho` outside [0, 1].
    pub fn build(&self) -> Result<Adadelta, OptimizerError> {
        check_non_negative("lr", self.lr)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(OptimizerError::invalid(
                "rho",
                format!("must be in [0, 1], got {}", self.rho),
            ));
        }
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        Ok(Adadelta {
            rho: self.rho,
            eps: self.eps,
            weight_decay: self.weight_decay,
            maximize: self.maximize,
        })
    }
}

/// Adadelta's validated hyperparameters.
///
/// Update of parameter θ with gradient g, learning rate γ; both averages start at zero:
///
/// ```text
/// g ← −g                                  if maximize
/// g ← g + λ θ                             if λ ≠ 0      (weight_decay)
/// v ← ρ v + (1 − ρ) g²                                  (square_avg)
/// Δ ← sqrt(u + ε) / sqrt(v + ε) · g
/// u ← ρ u + (1 − ρ) Δ²                                  (acc_delta)
/// θ ← θ − γ Δ
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adadelta {
    /// ρ in [0, 1].
    rho: f64,
    /// ε >= 0.
    eps: f64,
    /// λ >= 0, coupled into the gradient.
    weight_decay: f64,
    /// Negate the gradient.
    maximize: bool,
}

/// Adadelta's state of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct AdadeltaState {
    /// Steps taken so far (the rule does not use it; torch keeps it too).
    pub step: u64,
    /// torch's `square_avg` v: running mean of the squared gradient, as long as the parameter.
    pub square_avg: Vec<f32>,
    /// torch's `acc_delta` u: running mean of the squared update, as long as the parameter.
    pub acc_delta: Vec<f32>,
}

impl AdadeltaState {
    /// The state's tensors under torch's names.
    pub(crate) fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        vec![
            ("square_avg", &self.square_avg),
            ("acc_delta", &self.acc_delta),
        ]
    }

    /// The state of `step` steps from checkpointed buffers.
    pub(crate) fn from_named(
        step: u64,
        named: &mut NamedBuffers<'_>,
    ) -> Result<Self, OptimizerError> {
        Ok(Self {
            step,
            square_avg: named.take("square_avg")?,
            acc_delta: named.take("acc_delta")?,
        })
    }
}

impl Adadelta {
    /// The state of a parameter of `len` elements before its first step.
    #[must_use]
    pub fn new_state(&self, len: usize) -> AdadeltaState {
        AdadeltaState {
            step: 0,
            square_avg: vec![0.0; len],
            acc_delta: vec![0.0; len],
        }
    }

    /// One step of `param` (or a slice of one) with learning rate `lr`, in one pass.
    ///
    /// # Panics
    /// When `grad` or a state buffer is not as long as `param`.
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut AdadeltaState) {
        assert_lengths(
            "adadelta",
            param.len(),
            &[
                ("grad", grad.len()),
                ("square_avg", state.square_avg.len()),
                ("acc_delta", state.acc_delta.len()),
            ],
        );
        state.step += 1;
        let prep = GradientPrep::new(self.maximize, self.weight_decay);
        let (rho, one_minus_rho) = (self.rho as f32, one_minus(self.rho));
        let (eps, neg_lr) = (self.eps as f32, -lr);
        let averages = state.square_avg.iter_mut().zip(&mut state.acc_delta);
        for ((p, &g), (v, u)) in param.iter_mut().zip(grad).zip(averages) {
            let g = prep.apply(g, *p);
            *v = average_of_squares(*v, g, rho, one_minus_rho);
            let delta = (*u + eps).sqrt() / (*v + eps).sqrt() * g;
            *u = average_of_squares(*u, delta, rho, one_minus_rho);
            *p += neg_lr * delta;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_torch_refuses_naming_the_field() {
        let base = AdadeltaConfig::default();
        let error = |config: AdadeltaConfig| config.build().unwrap_err().to_string();
        assert_eq!(
            error(AdadeltaConfig { rho: 1.5, ..base }),
            "optimizer.rho: must be in [0, 1], got 1.5"
        );
        assert_eq!(
            error(AdadeltaConfig { rho: -0.5, ..base }),
            "optimizer.rho: must be in [0, 1], got -0.5"
        );
        assert_eq!(
            error(AdadeltaConfig { eps: -1.0, ..base }),
            "optimizer.eps: must be a finite number >= 0, got -1"
        );
        assert_eq!(
            error(AdadeltaConfig { lr: -1.0, ..base }),
            "optimizer.lr: must be a finite number >= 0, got -1"
        );
        assert_eq!(
            error(AdadeltaConfig {
                weight_decay: -1.0,
                ..base
            }),
            "optimizer.weight_decay: must be a finite number >= 0, got -1"
        );
        // rho = 1 is allowed, as in torch (the averages then never move).
        assert!(AdadeltaConfig { rho: 1.0, ..base }.build().is_ok());
    }

    #[test]
    fn first_step_is_sqrt_eps_over_rms_of_the_gradient() {
        let config = AdadeltaConfig {
            rho: 0.75,
            eps: 1.0,
            ..AdadeltaConfig::default()
        };
        let adadelta = config.build().unwrap();
        let mut state = adadelta.new_state(1);
        let mut param = [10.0];
        adadelta.step(1.0, &mut param, &[4.0], &mut state);
        // v = 0.25 · 16 = 4; Δ = sqrt(0 + 1) / sqrt(4 + 1) · 4; u = 0.25 Δ².
        let delta = 1.0 / 5.0_f32.sqrt() * 4.0;
        assert_eq!(state.square_avg, [4.0]);
        assert_eq!(param, [10.0 - delta]);
        assert_eq!(state.acc_delta, [0.25 * delta * delta]);
    }
}
