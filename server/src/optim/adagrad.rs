//! Adagrad (`torch.optim.Adagrad`): per-element learning rates from the sum of squared
//! gradients (Duchi, Hazan and Singer, 2011).

use serde::{Deserialize, Serialize};

use super::elementwise::GradientPrep;
use super::simd::{self, Execution, Lanes, Sweep};
use super::{NamedBuffers, OptimizerError, assert_lengths, check_non_negative};

/// The job file's `[optimizer]` section for `name = "adagrad"`; names and defaults are
/// `torch.optim.Adagrad`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdagradConfig {
    /// Learning rate γ before any schedule. Default `1e-2`; must be >= 0.
    pub lr: f32,
    /// η: step t uses `γ / (1 + (t − 1) η)`. Default `0`; must be >= 0.
    pub lr_decay: f64,
    /// Coupled L2 penalty λ added to the gradient as `λ θ`. Default `0`; must be >= 0.
    pub weight_decay: f64,
    /// The value the sum of squares starts at. Default `0`; must be >= 0.
    pub initial_accumulator_value: f64,
    /// ε added to the denominator, after the square root. Default `1e-10`; must be >= 0.
    pub eps: f64,
    /// Ascend instead of descend (negate the gradient). Default `false`.
    pub maximize: bool,
}

impl Default for AdagradConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl AdagradConfig {
    /// Checks the hyperparameters as `torch.optim.Adagrad` does (and refuses NaN and
    /// infinities) and builds the optimizer.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the field when `lr`, `lr_decay`, `weight_decay`,
    /// `initial_accumulator_value` or `eps` is negative.
    pub fn build(&self) -> Result<Adagrad, OptimizerError> {
        check_non_negative("lr", self.lr)?;
        check_non_negative("lr_decay", self.lr_decay)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        check_non_negative("eps", self.eps)?;
        Ok(Adagrad {
            lr_decay: self.lr_decay,
            weight_decay: self.weight_decay,
            initial_accumulator_value: self.initial_accumulator_value,
            eps: self.eps,
            maximize: self.maximize,
        })
    }
}

/// Adagrad's validated hyperparameters.
///
/// Update of parameter θ with gradient g at step t (t = 1, 2, ...), learning rate γ; the
/// sum s starts at `initial_accumulator_value`:
///
/// ```text
/// g ← −g                           if maximize
/// g ← g + λ θ                      if λ ≠ 0      (weight_decay)
/// γ_t ← γ / (1 + (t − 1) η)                      (lr_decay η, in f64)
/// s ← s + g²
/// θ ← θ − γ_t · g / (sqrt(s) + ε)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adagrad {
    /// η >= 0.
    lr_decay: f64,
    /// λ >= 0, coupled into the gradient.
    weight_decay: f64,
    /// The sum's starting value, >= 0.
    initial_accumulator_value: f64,
    /// ε >= 0.
    eps: f64,
    /// Negate the gradient.
    maximize: bool,
}

/// Adagrad's state of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct AdagradState {
    /// Steps taken so far (t after the step); drives the learning-rate decay.
    pub step: u64,
    /// torch's `sum` s: the running sum of squared gradients, as long as the parameter.
    pub sum: Vec<f32>,
}

impl AdagradState {
    /// The state's tensors under torch's names.
    pub(crate) fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        vec![("sum", &self.sum)]
    }

    /// The state of `step` steps from checkpointed buffers.
    pub(crate) fn from_named(
        step: u64,
        named: &mut NamedBuffers<'_>,
    ) -> Result<Self, OptimizerError> {
        Ok(Self {
            step,
            sum: named.take("sum")?,
        })
    }
}

impl Adagrad {
    /// The state of a parameter of `len` elements before its first step.
    #[must_use]
    pub fn new_state(&self, len: usize) -> AdagradState {
        AdagradState {
            step: 0,
            sum: vec![self.initial_accumulator_value as f32; len],
        }
    }

    /// One step of `param` (or a slice of one) with learning rate `lr`, in one pass, on
    /// the widest SIMD level and one thread.
    ///
    /// # Panics
    /// As [`Adagrad::step_with`].
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut AdagradState) {
        self.step_with(Execution::default(), lr, param, grad, state);
    }

    /// [`Adagrad::step`] run as `execution` says.
    ///
    /// # Panics
    /// When `grad` or the sum is not as long as `param`.
    /// Also when the CPU cannot run `execution.simd`.
    pub fn step_with(
        &self,
        execution: Execution,
        lr: f32,
        param: &mut [f32],
        grad: &[f32],
        state: &mut AdagradState,
    ) {
        assert_lengths(
            "adagrad",
            param.len(),
            &[("grad", grad.len()), ("sum", state.sum.len())],
        );
        state.step += 1;
        let decayed = f64::from(lr) / (1.0 + (state.step - 1) as f64 * self.lr_decay);
        let neg_clr = (-decayed) as f32;
        let sweep = AdagradSweep {
            scalars: AdagradStepScalars {
                prep: GradientPrep::new(self.maximize, self.weight_decay),
                neg_clr,
                eps: self.eps as f32,
            },
            param,
            grad,
            sum: &mut state.sum,
        };
        simd::run(execution, sweep);
    }
}

/// The scalars of one Adagrad step.
#[derive(Debug, Clone, Copy)]
struct AdagradStepScalars {
    /// Maximize and weight decay.
    prep: GradientPrep,
    /// −γ̃, the decayed learning rate negated.
    neg_clr: f32,
    /// ε.
    eps: f32,
}

/// One Adagrad step over one tensor (or a slice of one), swept by [`simd::run`].
#[derive(Debug)]
struct AdagradSweep<'a> {
    /// The step's scalars.
    scalars: AdagradStepScalars,
    /// θ.
    param: &'a mut [f32],
    /// g, as long as `param`.
    grad: &'a [f32],
    /// The sum of squared gradients, as long as `param`.
    sum: &'a mut [f32],
}

impl Sweep for AdagradSweep<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (param, param_rest) = self.param.split_at_mut(mid);
        let (grad, grad_rest) = self.grad.split_at(mid);
        let (sum, sum_rest) = self.sum.split_at_mut(mid);
        let first = Self {
            scalars: self.scalars,
            param,
            grad,
            sum,
        };
        let second = Self {
            scalars: self.scalars,
            param: param_rest,
            grad: grad_rest,
            sum: sum_rest,
        };
        (first, second)
    }

    #[inline(always)]
    fn update<L: Lanes>(&mut self, at: usize) {
        let k = &self.scalars;
        let param = L::load(self.param, at);
        let g = k.prep.apply(L::load(self.grad, at), param);
        // torch: state_sum.addcmul_(grad, grad, value=1), one fused multiply-add.
        let sum = g.mul_add(g, L::load(self.sum, at));
        sum.store(self.sum, at);
        (param + L::splat(k.neg_clr) * g / (sum.sqrt() + L::splat(k.eps))).store(self.param, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_torch_refuses_naming_the_field() {
        let base = AdagradConfig::default();
        let error = |config: AdagradConfig| config.build().unwrap_err().to_string();
        assert_eq!(
            error(AdagradConfig {
                lr_decay: -0.1,
                ..base
            }),
            "optimizer.lr_decay: must be a finite number >= 0, got -0.1"
        );
        assert_eq!(
            error(AdagradConfig {
                initial_accumulator_value: -1.0,
                ..base
            }),
            "optimizer.initial_accumulator_value: must be a finite number >= 0, got -1"
        );
        assert_eq!(
            error(AdagradConfig {
                eps: -1e-10,
                ..base
            }),
            "optimizer.eps: must be a finite number >= 0, got -0.0000000001"
        );
        assert_eq!(
            error(AdagradConfig {
                weight_decay: -2.0,
                ..base
            }),
            "optimizer.weight_decay: must be a finite number >= 0, got -2"
        );
        assert_eq!(
            error(AdagradConfig { lr: -1.0, ..base }),
            "optimizer.lr: must be a finite number >= 0, got -1"
        );
    }

    #[test]
    fn learning_rate_decays_with_the_step() {
        let config = AdagradConfig {
            lr_decay: 1.0,
            eps: 0.0,
            ..AdagradConfig::default()
        };
        let adagrad = config.build().unwrap();
        let mut state = adagrad.new_state(1);
        let mut param = [0.0];
        adagrad.step(1.0, &mut param, &[3.0], &mut state);
        // γ_1 = 1, s = 9: θ = −3 / 3.
        assert_eq!(param, [-1.0]);
        adagrad.step(1.0, &mut param, &[4.0], &mut state);
        // γ_2 = 1 / 2, s = 25: θ = −1 − 0.5 · 4 / 5.
        assert_eq!(param, [-1.4]);
        assert_eq!(state.sum, [25.0]);
    }
}
