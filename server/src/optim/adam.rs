//! Adam (`torch.optim.Adam`), and the core AdamW shares (see [`super::adamw`]).

use serde::{Deserialize, Serialize};

use super::elementwise::{GradientPrep, average_of_squares, lerp, one_minus};
use super::simd::{self, Execution, Lanes, Sweep, split_optional};
use super::{NamedBuffers, OptimizerError, assert_lengths, check_non_negative};

/// The job file's `[optimizer]` section for `name = "adam"`; names and defaults are
/// `torch.optim.Adam`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate γ before any schedule. Default `1e-3`; must be >= 0.
    pub lr: f32,
    /// (β1, β2): decay rates of the gradient's running mean and uncentred variance.
    /// Default `[0.9, 0.999]`; each must be in [0, 1).
    pub betas: (f64, f64),
    /// ε added to the denominator, after the square root. Default `1e-8`; must be >= 0.
    pub eps: f64,
    /// Coupled L2 penalty λ added to the gradient as `λ θ` (not AdamW's decay).
    /// Default `0`; must be >= 0.
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment. Default `false`.
    pub amsgrad: bool,
    /// Ascend instead of descend (negate the gradient). Default `false`.
    pub maximize: bool,
}

impl Default for AdamConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamConfig {
    /// Checks the hyperparameters as `torch.optim.Adam` does (and refuses NaN and
    /// infinities) and builds the optimizer.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the field: a negative `lr`, `eps` or
    /// `weight_decay`, or a beta outside [0, 1).
    pub fn build(&self) -> Result<Adam, OptimizerError> {
        Adam::new(
            self.lr,
            self.betas,
            self.eps,
            AdamWeightDecay::L2(self.weight_decay),
            self.amsgrad,
            self.maximize,
        )
    }
}

/// How Adam applies weight decay λ: the one difference between Adam and AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdamWeightDecay {
    /// Adam's: `g ← g + λ θ` before the moments (an L2 penalty, scaled by the adaptive rate).
    L2(f64),
    /// AdamW's: `θ ← θ (1 − γ λ)` before the update, outside the adaptive rate.
    Decoupled(f64),
}

/// Adam's validated hyperparameters (AdamW's too, with [`AdamWeightDecay::Decoupled`]).
///
/// Update of parameter θ with gradient g at step t (t = 1, 2, ...), learning rate γ; the
/// moments m, v (and v_max) start at zero:
///
/// ```text
/// g ← −g                                    if maximize
/// g ← g + λ θ                               Adam, if λ ≠ 0   (weight_decay, L2)
/// θ ← θ (1 − γ λ)                           AdamW, if λ ≠ 0  (decoupled weight decay)
/// m ← β1 m + (1 − β1) g                     (torch: m.lerp_(g, 1 − β1))
/// v ← β2 v + (1 − β2) g²
/// v_max ← max(v_max, v)                     if amsgrad, and v_max replaces v below
/// denom ← sqrt(v) / sqrt(1 − β2^t) + ε      (ε after the bias-corrected square root)
/// θ ← θ − γ / (1 − β1^t) · m / denom
/// ```
///
/// The bias corrections and `γ / (1 − β1^t)` are computed in f64, as Python does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// β1 in [0, 1).
    beta1: f64,
    /// β2 in [0, 1).
    beta2: f64,
    /// ε >= 0.
    eps: f64,
    /// Coupled (Adam) or decoupled (AdamW) weight decay λ >= 0.
    weight_decay: AdamWeightDecay,
    /// Use the running maximum of v (AMSGrad).
    amsgrad: bool,
    /// Negate the gradient.
    maximize: bool,
}

/// Adam's (and AdamW's) state of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    /// Steps taken so far (t after the step); drives the bias corrections.
    pub step: u64,
    /// torch's `exp_avg` m: running mean of the gradient, as long as the parameter.
    pub exp_avg: Vec<f32>,
    /// torch's `exp_avg_sq` v: running mean of the squared gradient, as long as the parameter.
    pub exp_avg_sq: Vec<f32>,
    /// torch's `max_exp_avg_sq` v_max: `Some` exactly when AMSGrad is on, as long as the
    /// parameter.
    pub max_exp_avg_sq: Option<Vec<f32>>,
}

impl AdamState {
    /// The state's tensors under torch's names.
    pub(crate) fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        let mut buffers = vec![
            ("exp_avg", &self.exp_avg[..]),
            ("exp_avg_sq", &self.exp_avg_sq[..]),
        ];
        if let Some(max) = &self.max_exp_avg_sq {
            buffers.push(("max_exp_avg_sq", max));
        }
        buffers
    }

    /// The state of `step` steps from checkpointed buffers.
    pub(crate) fn from_named(
        adam: &Adam,
        step: u64,
        named: &mut NamedBuffers<'_>,
    ) -> Result<Self, OptimizerError> {
        Ok(Self {
            step,
            exp_avg: named.take("exp_avg")?,
            exp_avg_sq: named.take("exp_avg_sq")?,
            max_exp_avg_sq: named.take_if(adam.amsgrad, "max_exp_avg_sq")?,
        })
    }
}

/// The scalars of one Adam step, computed once per tensor.
#[derive(Debug, Clone, Copy)]
struct AdamStepScalars {
    /// Maximize and coupled weight decay.
    prep: GradientPrep,
    /// `1 − γ λ` for decoupled weight decay, exactly 1 otherwise.
    param_decay: f32,
    /// `1 − β1`, the `lerp` weight.
    one_minus_beta1: f32,
    /// β2.
    beta2: f32,
    /// `1 − β2`.
    one_minus_beta2: f32,
    /// `sqrt(1 − β2^t)`.
    bias_correction2_sqrt: f32,
    /// ε.
    eps: f32,
    /// `−γ / (1 − β1^t)`.
    neg_step_size: f32,
}

/// One Adam step over one tensor (or a slice of one), swept by [`simd::run`].
#[derive(Debug)]
struct AdamSweep<'a> {
    /// The step's scalars.
    scalars: AdamStepScalars,
    /// θ.
    param: &'a mut [f32],
    /// g, as long as `param`.
    grad: &'a [f32],
    /// m, as long as `param`.
    exp_avg: &'a mut [f32],
    /// v, as long as `param`.
    exp_avg_sq: &'a mut [f32],
    /// v_max, as long as `param`: `Some` exactly under AMSGrad.
    max_exp_avg_sq: Option<&'a mut [f32]>,
}

impl Sweep for AdamSweep<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (param, param_rest) = self.param.split_at_mut(mid);
        let (grad, grad_rest) = self.grad.split_at(mid);
        let (exp_avg, exp_avg_rest) = self.exp_avg.split_at_mut(mid);
        let (exp_avg_sq, exp_avg_sq_rest) = self.exp_avg_sq.split_at_mut(mid);
        let (max, max_rest) = split_optional(self.max_exp_avg_sq, mid);
        let first = Self {
            scalars: self.scalars,
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq: max,
        };
        let second = Self {
            scalars: self.scalars,
            param: param_rest,
            grad: grad_rest,
            exp_avg: exp_avg_rest,
            exp_avg_sq: exp_avg_sq_rest,
            max_exp_avg_sq: max_rest,
        };
        (first, second)
    }

    #[inline(always)]
    fn update<L: Lanes>(&mut self, at: usize) {
        let k = &self.scalars;
        let param = L::load(self.param, at);
        let g = k.prep.apply(L::load(self.grad, at), param);
        let theta = param * L::splat(k.param_decay);
        let m = lerp(L::load(self.exp_avg, at), g, k.one_minus_beta1);
        let v = average_of_squares(L::load(self.exp_avg_sq, at), g, k.beta2, k.one_minus_beta2);
        m.store(self.exp_avg, at);
        v.store(self.exp_avg_sq, at);
        let second_moment = match self.max_exp_avg_sq.as_deref_mut() {
            Some(max) => {
                // torch.maximum lets a NaN v win, where f32::max would drop it; so does
                // `max_or_other`. (A NaN max with a number v cannot happen: once v is NaN
                // it stays NaN.)
                let max_v = L::load(max, at).max_or_other(v);
                max_v.store(max, at);
                max_v
            }
            None => v,
        };
        let denom = second_moment.sqrt() / L::splat(k.bias_correction2_sqrt) + L::splat(k.eps);
        (theta + L::splat(k.neg_step_size) * m / denom).store(self.param, at);
    }
}

impl Adam {
    /// Checks the hyperparameters shared by Adam and AdamW as torch does, and builds.
    pub(crate) fn new(
        lr: f32,
        betas: (f64, f64),
        eps: f64,
        weight_decay: AdamWeightDecay,
        amsgrad: bool,
        maximize: bool,
    ) -> Result<Self, OptimizerError> {
        check_non_negative("lr", lr)?;
        check_non_negative("eps", eps)?;
        for (which, beta) in [("beta1", betas.0), ("beta2", betas.1)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(OptimizerError::invalid(
                    "betas",
                    format!("{which} must be in [0, 1), got {beta}"),
                ));
            }
        }
        let (AdamWeightDecay::L2(decay) | AdamWeightDecay::Decoupled(decay)) = weight_decay;
        check_non_negative("weight_decay", decay)?;
        Ok(Self {
            beta1: betas.0,
            beta2: betas.1,
            eps,
            weight_decay,
            amsgrad,
            maximize,
        })
    }

    /// The state of a parameter of `len` elements before its first step.
    #[must_use]
    pub fn new_state(&self, len: usize) -> AdamState {
        AdamState {
            step: 0,
            exp_avg: vec![0.0; len],
            exp_avg_sq: vec![0.0; len],
            max_exp_avg_sq: self.amsgrad.then(|| vec![0.0; len]),
        }
    }

    /// One step of `param` (or a slice of one) with learning rate `lr`, in one pass, on
    /// the widest SIMD level and one thread.
    ///
    /// # Panics
    /// As [`Adam::step_with`].
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut AdamState) {
        self.step_with(Execution::default(), lr, param, grad, state);
    }

    /// [`Adam::step`] run as `execution` says.
    ///
    /// # Panics
    /// When `grad` or a state buffer is not as long as `param`, the AMSGrad buffer's
    /// presence does not match `amsgrad` (a state from another optimizer), or the CPU
    /// cannot run `execution.simd`.
    pub fn step_with(
        &self,
        execution: Execution,
        lr: f32,
        param: &mut [f32],
        grad: &[f32],
        state: &mut AdamState,
    ) {
        let len = param.len();
        assert_eq!(
            state.max_exp_avg_sq.is_some(),
            self.amsgrad,
            "adam: the state's max_exp_avg_sq does not match amsgrad = {}",
            self.amsgrad
        );
        let max_len = state.max_exp_avg_sq.as_ref().map_or(len, Vec::len);
        assert_lengths(
            "adam",
            len,
            &[
                ("grad", grad.len()),
                ("exp_avg", state.exp_avg.len()),
                ("exp_avg_sq", state.exp_avg_sq.len()),
                ("max_exp_avg_sq", max_len),
            ],
        );
        state.step += 1;
        let sweep = AdamSweep {
            scalars: self.step_scalars(lr, state.step),
            param,
            grad,
            exp_avg: &mut state.exp_avg,
            exp_avg_sq: &mut state.exp_avg_sq,
            max_exp_avg_sq: state.max_exp_avg_sq.as_deref_mut(),
        };
        simd::run(execution, sweep);
    }

    /// The scalars of step `t` (already counted) with learning rate `lr`.
    fn step_scalars(&self, lr: f32, t: u64) -> AdamStepScalars {
        // torch keeps `step` in a float tensor and computes `beta ** step` in Python floats.
        let t = t as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(t);
        let bias_correction2 = 1.0 - self.beta2.powf(t);
        let (coupled, param_decay) = match self.weight_decay {
            AdamWeightDecay::L2(decay) => (decay, 1.0),
            AdamWeightDecay::Decoupled(decay) => (0.0, one_minus(f64::from(lr) * decay)),
        };
        AdamStepScalars {
            prep: GradientPrep::new(self.maximize, coupled),
            param_decay,
            one_minus_beta1: one_minus(self.beta1),
            beta2: self.beta2 as f32,
            one_minus_beta2: one_minus(self.beta2),
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            eps: self.eps as f32,
            neg_step_size: (-(f64::from(lr) / bias_correction1)) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(config: AdamConfig) -> String {
        config.build().unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_torch_refuses_naming_the_field() {
        let base = AdamConfig::default();
        assert_eq!(
            error(AdamConfig { lr: -1e-3, ..base }),
            "optimizer.lr: must be a finite number >= 0, got -0.001"
        );
        assert_eq!(
            error(AdamConfig { eps: -1e-8, ..base }),
            "optimizer.eps: must be a finite number >= 0, got -0.00000001"
        );
        assert_eq!(
            error(AdamConfig {
                betas: (1.5, 0.999),
                ..base
            }),
            "optimizer.betas: beta1 must be in [0, 1), got 1.5"
        );
        assert_eq!(
            error(AdamConfig {
                betas: (0.9, 1.0),
                ..base
            }),
            "optimizer.betas: beta2 must be in [0, 1), got 1"
        );
        assert_eq!(
            error(AdamConfig {
                betas: (-0.1, 0.999),
                ..base
            }),
            "optimizer.betas: beta1 must be in [0, 1), got -0.1"
        );
        assert_eq!(
            error(AdamConfig {
                betas: (0.9, f64::NAN),
                ..base
            }),
            "optimizer.betas: beta2 must be in [0, 1), got NaN"
        );
        assert_eq!(
            error(AdamConfig {
                weight_decay: -0.1,
                ..base
            }),
            "optimizer.weight_decay: must be a finite number >= 0, got -0.1"
        );
    }

    #[test]
    fn first_step_moves_each_element_by_lr_against_the_gradient_sign() {
        // At t = 1, m / sqrt(v) (bias-corrected) is g / |g|: the step is lr in size.
        let adam = AdamConfig {
            eps: 0.0,
            ..AdamConfig::default()
        }
        .build()
        .unwrap();
        let mut state = adam.new_state(3);
        let mut param = [1.0_f32, 1.0, 1.0];
        adam.step(0.5, &mut param, &[2.0, -0.001, 300.0], &mut state);
        for (got, want) in param.iter().zip([0.5, 1.5, 0.5]) {
            assert!((got - want).abs() <= 1e-6, "{param:?}");
        }
        assert_eq!(state.step, 1);
        assert_eq!(state.max_exp_avg_sq, None);
    }

    #[test]
    fn amsgrad_keeps_the_running_maximum() {
        let config = AdamConfig {
            amsgrad: true,
            betas: (0.5, 0.5),
            ..AdamConfig::default()
        };
        let adam = config.build().unwrap();
        let mut state = adam.new_state(1);
        let mut param = [0.0];
        adam.step(0.1, &mut param, &[4.0], &mut state);
        adam.step(0.1, &mut param, &[0.0], &mut state);
        // v: 0.5 * 16 = 8, then 0.5 * 8 = 4; the maximum stays 8.
        assert_eq!(state.exp_avg_sq, [4.0]);
        assert_eq!(state.max_exp_avg_sq, Some(vec![8.0]));
        // A NaN gradient poisons the maximum, as torch.maximum does.
        adam.step(0.1, &mut param, &[f32::NAN], &mut state);
        assert!(state.max_exp_avg_sq.unwrap()[0].is_nan());
    }
}
