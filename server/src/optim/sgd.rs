//! Stochastic gradient descent with momentum, dampening and Nesterov momentum
//! (`torch.optim.SGD`).
//!
//! Plain batch gradient descent, stochastic gradient descent and mini-batch gradient
//! descent are all this optimizer with `momentum = 0`: they differ only in how many
//! samples the averaged gradient comes from (the whole training set, one sample, a
//! mini-batch), which the workers' batch size decides, not the update rule.

use serde::{Deserialize, Serialize};

use super::elementwise::{GradientPrep, one_minus};
use super::simd::{self, Execution, Lanes, Sweep, split_optional};
use super::{NamedBuffers, OptimizerError, assert_lengths, check_non_negative};

/// The job file's `[optimizer]` section for `name = "sgd"`; names and defaults are
/// `torch.optim.SGD`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate γ before any schedule. Default `1e-3`; must be >= 0.
    pub lr: f32,
    /// Momentum factor μ; 0 turns momentum off. Default `0`; must be >= 0.
    pub momentum: f64,
    /// Dampening τ: the momentum buffer adds `(1 - τ) g`. Default `0`.
    pub dampening: f64,
    /// Coupled L2 penalty λ added to the gradient as `λ θ`. Default `0`; must be >= 0.
    pub weight_decay: f64,
    /// Nesterov momentum (NAG); needs `momentum > 0` and `dampening = 0`. Default `false`.
    pub nesterov: bool,
    /// Ascend instead of descend (negate the gradient). Default `false`.
    pub maximize: bool,
}

impl Default for SgdConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl SgdConfig {
    /// Checks the hyperparameters as `torch.optim.SGD` does (and refuses NaN and infinities)
    /// and builds the optimizer.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the field: a negative `lr`, `momentum` or
    /// `weight_decay`, or `nesterov` without momentum or with dampening.
    pub fn build(&self) -> Result<Sgd, OptimizerError> {
        check_non_negative("lr", self.lr)?;
        check_non_negative("momentum", self.momentum)?;
        if !self.dampening.is_finite() {
            return Err(OptimizerError::invalid(
                "dampening",
                format!("must be a finite number, got {}", self.dampening),
            ));
        }
        check_non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimizerError::invalid(
                "nesterov",
                format!(
                    "Nesterov momentum requires momentum > 0 and dampening = 0, got momentum = {} and dampening = {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(Sgd {
            momentum: self.momentum,
            dampening: self.dampening,
            weight_decay: self.weight_decay,
            nesterov: self.nesterov,
            maximize: self.maximize,
        })
    }
}

/// SGD's validated hyperparameters.
///
/// Update of parameter θ with gradient g at step t (t = 1, 2, ...), learning rate γ:
///
/// ```text
/// g ← −g                          if maximize
/// g ← g + λ θ                     if λ ≠ 0           (weight_decay)
/// if μ ≠ 0:                                          (momentum)
///     b ← g                       at t = 1
///     b ← μ b + (1 − τ) g         at t > 1           (dampening τ)
///     g ← g + μ b                 if nesterov
///     g ← b                       otherwise
/// θ ← θ − γ g
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// μ >= 0; 0 means no momentum buffer.
    momentum: f64,
    /// τ, finite; 0 whenever `nesterov`.
    dampening: f64,
    /// λ >= 0, coupled into the gradient.
    weight_decay: f64,
    /// Nesterov momentum; only with `momentum > 0` and `dampening = 0`.
    nesterov: bool,
    /// Negate the gradient.
    maximize: bool,
}

/// SGD's state of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SgdState {
    /// Steps taken so far; the first step seeds the momentum buffer with the gradient.
    pub step: u64,
    /// torch's `momentum_buffer` b, as long as the parameter; `Some` exactly when the
    /// optimizer has momentum (its content means nothing before the first step).
    pub momentum_buffer: Option<Vec<f32>>,
}

impl SgdState {
    /// The state's tensors under torch's names.
    pub(crate) fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        self.momentum_buffer
            .as_deref()
            .map(|b| ("momentum_buffer", b))
            .into_iter()
            .collect()
    }

    /// The state of `step` steps from checkpointed buffers.
    pub(crate) fn from_named(
        sgd: &Sgd,
        step: u64,
        named: &mut NamedBuffers<'_>,
    ) -> Result<Self, OptimizerError> {
        Ok(Self {
            step,
            momentum_buffer: named.take_if(sgd.momentum != 0.0, "momentum_buffer")?,
        })
    }
}

impl Sgd {
    /// The state of a parameter of `len` elements before its first step.
    #[must_use]
    pub fn new_state(&self, len: usize) -> SgdState {
        SgdState {
            step: 0,
            momentum_buffer: (self.momentum != 0.0).then(|| vec![0.0; len]),
        }
    }

    /// One step of `param` (or a slice of one) with learning rate `lr`, in one pass, on
    /// the widest SIMD level and one thread.
    ///
    /// # Panics
    /// As [`Sgd::step_with`].
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut SgdState) {
        self.step_with(Execution::default(), lr, param, grad, state);
    }

    /// [`Sgd::step`] run as `execution` says.
    ///
    /// # Panics
    /// When `grad` or the momentum buffer is not as long as `param`, or the buffer is
    /// missing although the optimizer has momentum (a state from another optimizer).
    /// Also when the CPU cannot run `execution.simd`.
    pub fn step_with(
        &self,
        execution: Execution,
        lr: f32,
        param: &mut [f32],
        grad: &[f32],
        state: &mut SgdState,
    ) {
        let len = param.len();
        assert_eq!(
            state.momentum_buffer.is_some(),
            self.momentum != 0.0,
            "sgd: the state's momentum buffer does not match momentum = {}",
            self.momentum
        );
        let buffer_len = state.momentum_buffer.as_ref().map_or(len, Vec::len);
        assert_lengths(
            "sgd",
            len,
            &[("grad", grad.len()), ("momentum_buffer", buffer_len)],
        );
        let sweep = SgdSweep {
            scalars: SgdStepScalars {
                prep: GradientPrep::new(self.maximize, self.weight_decay),
                neg_lr: -lr,
                first: state.step == 0,
                momentum: self.momentum as f32,
                keep: one_minus(self.dampening),
                nesterov: self.nesterov,
            },
            param,
            grad,
            momentum_buffer: state.momentum_buffer.as_deref_mut(),
        };
        simd::run(execution, sweep);
        state.step += 1;
    }
}

/// The scalars of one SGD step.
#[derive(Debug, Clone, Copy)]
struct SgdStepScalars {
    /// Maximize and weight decay.
    prep: GradientPrep,
    /// −γ.
    neg_lr: f32,
    /// t = 1: the momentum buffer starts as the gradient.
    first: bool,
    /// μ.
    momentum: f32,
    /// `1 − τ`.
    keep: f32,
    /// Nesterov momentum.
    nesterov: bool,
}

/// One SGD step over one tensor (or a slice of one), swept by [`simd::run`].
#[derive(Debug)]
struct SgdSweep<'a> {
    /// The step's scalars.
    scalars: SgdStepScalars,
    /// θ.
    param: &'a mut [f32],
    /// g, as long as `param`.
    grad: &'a [f32],
    /// b, as long as `param`: `Some` exactly when μ ≠ 0.
    momentum_buffer: Option<&'a mut [f32]>,
}

impl Sweep for SgdSweep<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (param, param_rest) = self.param.split_at_mut(mid);
        let (grad, grad_rest) = self.grad.split_at(mid);
        let (buffer, buffer_rest) = split_optional(self.momentum_buffer, mid);
        let first = Self {
            scalars: self.scalars,
            param,
            grad,
            momentum_buffer: buffer,
        };
        let second = Self {
            scalars: self.scalars,
            param: param_rest,
            grad: grad_rest,
            momentum_buffer: buffer_rest,
        };
        (first, second)
    }

    /// torch's `add_(x, alpha=a)` is one fused multiply-add in ATen's vector kernel, and so
    /// is each `x × a + y` here.
    #[inline(always)]
    fn update<L: Lanes>(&mut self, at: usize) {
        let k = &self.scalars;
        let param = L::load(self.param, at);
        let g = k.prep.apply(L::load(self.grad, at), param);
        let direction = match self.momentum_buffer.as_deref_mut() {
            None => g,
            Some(buffer) => {
                let momentum = L::splat(k.momentum);
                let b = if k.first {
                    g
                } else {
                    g.mul_add(L::splat(k.keep), L::load(buffer, at) * momentum)
                };
                b.store(buffer, at);
                if k.nesterov {
                    b.mul_add(momentum, g)
                } else {
                    b
                }
            }
        };
        direction
            .mul_add(L::splat(k.neg_lr), param)
            .store(self.param, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(config: SgdConfig) -> String {
        config.build().unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_torch_refuses_naming_the_field() {
        let base = SgdConfig::default();
        assert_eq!(
            error(SgdConfig { lr: -0.1, ..base }),
            "optimizer.lr: must be a finite number >= 0, got -0.1"
        );
        assert_eq!(
            error(SgdConfig {
                momentum: -0.5,
                ..base
            }),
            "optimizer.momentum: must be a finite number >= 0, got -0.5"
        );
        assert_eq!(
            error(SgdConfig {
                weight_decay: -1.0,
                ..base
            }),
            "optimizer.weight_decay: must be a finite number >= 0, got -1"
        );
        assert_eq!(
            error(SgdConfig {
                nesterov: true,
                ..base
            }),
            "optimizer.nesterov: Nesterov momentum requires momentum > 0 and dampening = 0, got momentum = 0 and dampening = 0"
        );
        assert_eq!(
            error(SgdConfig {
                nesterov: true,
                momentum: 0.9,
                dampening: 0.1,
                ..base
            }),
            "optimizer.nesterov: Nesterov momentum requires momentum > 0 and dampening = 0, got momentum = 0.9 and dampening = 0.1"
        );
        assert_eq!(
            error(SgdConfig {
                dampening: f64::NAN,
                ..base
            }),
            "optimizer.dampening: must be a finite number, got NaN"
        );
        assert_eq!(
            error(SgdConfig {
                lr: f32::INFINITY,
                ..base
            }),
            "optimizer.lr: must be a finite number >= 0, got inf"
        );
    }

    #[test]
    fn plain_sgd_is_theta_minus_lr_g() {
        let sgd = SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        }
        .build()
        .unwrap();
        let mut state = sgd.new_state(2);
        let mut param = [1.0, -2.0];
        sgd.step(0.5, &mut param, &[2.0, 4.0], &mut state);
        assert_eq!(param, [0.0, -4.0]);
        assert_eq!(
            state,
            SgdState {
                step: 1,
                momentum_buffer: None
            }
        );
    }

    #[test]
    fn momentum_buffer_starts_at_the_gradient_then_dampens() {
        let config = SgdConfig {
            momentum: 0.5,
            dampening: 0.5,
            ..SgdConfig::default()
        };
        let sgd = config.build().unwrap();
        let mut state = sgd.new_state(1);
        let mut param = [0.0];
        sgd.step(1.0, &mut param, &[4.0], &mut state);
        assert_eq!(state.momentum_buffer, Some(vec![4.0]));
        assert_eq!(param, [-4.0]);
        sgd.step(1.0, &mut param, &[2.0], &mut state);
        // b = 0.5 * 4 + (1 - 0.5) * 2
        assert_eq!(state.momentum_buffer, Some(vec![3.0]));
        assert_eq!(param, [-7.0]);
    }

    #[test]
    #[should_panic(expected = "sgd: grad has 1 elements, the parameter has 2")]
    fn a_gradient_of_another_length_is_a_bug() {
        let sgd = SgdConfig::default().build().unwrap();
        let mut state = sgd.new_state(2);
        sgd.step(0.1, &mut [0.0, 0.0], &[1.0], &mut state);
    }
}
