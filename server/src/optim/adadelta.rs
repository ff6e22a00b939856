//! Adadelta (`torch.optim.Adadelta`): steps scaled by the ratio of running RMS values of
//! past updates and of gradients (Zeiler, 2012).

use serde::{Deserialize, Serialize};

use super::elementwise::{GradientPrep, average_of_squares, one_minus};
use super::simd::{self, Execution, Lanes, Sweep};
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

    /// One step of `param` (or a slice of one) with learning rate `lr`, in one pass, on
    /// the widest SIMD level and one thread.
    ///
    /// # Panics
    /// As [`Adadelta::step_with`].
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut AdadeltaState) {
        self.step_with(Execution::default(), lr, param, grad, state);
    }

    /// [`Adadelta::step`] run as `execution` says.
    ///
    /// # Panics
    /// When `grad` or a state buffer is not as long as `param`.
    /// Also when the CPU cannot run `execution.simd`.
    pub fn step_with(
        &self,
        execution: Execution,
        lr: f32,
        param: &mut [f32],
        grad: &[f32],
        state: &mut AdadeltaState,
    ) {
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
        let sweep = AdadeltaSweep {
            scalars: AdadeltaStepScalars {
                prep: GradientPrep::new(self.maximize, self.weight_decay),
                rho: self.rho as f32,
                one_minus_rho: one_minus(self.rho),
                eps: self.eps as f32,
                neg_lr: -lr,
            },
            param,
            grad,
            square_avg: &mut state.square_avg,
            acc_delta: &mut state.acc_delta,
        };
        simd::run(execution, sweep);
    }
}

/// The scalars of one Adadelta step.
#[derive(Debug, Clone, Copy)]
struct AdadeltaStepScalars {
    /// Maximize and weight decay.
    prep: GradientPrep,
    /// ρ.
    rho: f32,
    /// `1 − ρ`.
    one_minus_rho: f32,
    /// ε.
    eps: f32,
    /// −γ.
    neg_lr: f32,
}

/// One Adadelta step over one tensor (or a slice of one), swept by [`simd::run`].
#[derive(Debug)]
struct AdadeltaSweep<'a> {
    /// The step's scalars.
    scalars: AdadeltaStepScalars,
    /// θ.
    param: &'a mut [f32],
    /// g, as long as `param`.
    grad: &'a [f32],
    /// v, as long as `param`.
    square_avg: &'a mut [f32],
    /// u, as long as `param`.
    acc_delta: &'a mut [f32],
}

impl Sweep for AdadeltaSweep<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (param, param_rest) = self.param.split_at_mut(mid);
        let (grad, grad_rest) = self.grad.split_at(mid);
        let (square_avg, square_avg_rest) = self.square_avg.split_at_mut(mid);
        let (acc_delta, acc_delta_rest) = self.acc_delta.split_at_mut(mid);
        let first = Self {
            scalars: self.scalars,
            param,
            grad,
            square_avg,
            acc_delta,
        };
        let second = Self {
            scalars: self.scalars,
            param: param_rest,
            grad: grad_rest,
            square_avg: square_avg_rest,
            acc_delta: acc_delta_rest,
        };
        (first, second)
    }

    #[inline(always)]
    fn update<L: Lanes>(&mut self, at: usize) {
        let k = &self.scalars;
        let eps = L::splat(k.eps);
        let param = L::load(self.param, at);
        let g = k.prep.apply(L::load(self.grad, at), param);
        let v = average_of_squares(L::load(self.square_avg, at), g, k.rho, k.one_minus_rho);
        let u = L::load(self.acc_delta, at);
        let delta = (u + eps).sqrt() / (v + eps).sqrt() * g;
        v.store(self.square_avg, at);
        average_of_squares(u, delta, k.rho, k.one_minus_rho).store(self.acc_delta, at);
        // torch: param.add_(delta, alpha=-lr), one fused multiply-add in ATen.
        delta
            .mul_add(L::splat(k.neg_lr), param)
            .store(self.param, at);
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
