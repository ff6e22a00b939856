//! RMSprop (`torch.optim.RMSprop`): the gradient divided by a running RMS of gradients
//! (Hinton's lecture 6e), optionally centred (Graves, 2013) and with momentum.

use serde::{Deserialize, Serialize};

use super::elementwise::{GradientPrep, average_of_squares, lerp, one_minus};
use super::simd::{self, Execution, Lanes, Sweep, split_optional};
use super::{NamedBuffers, OptimizerError, assert_lengths, check_non_negative};

/// The job file's `[optimizer]` section for `name = "rmsprop"`; names and defaults are
/// `torch.optim.RMSprop`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Learning rate γ before any schedule. Default `1e-2`; must be >= 0.
    pub lr: f32,
    /// α: decay rate of the running averages. Default `0.99`; must be >= 0.
    pub alpha: f64,
    /// ε added to the denominator, after the square root. Default `1e-8`; must be >= 0.
    pub eps: f64,
    /// Coupled L2 penalty λ added to the gradient as `λ θ`. Default `0`; must be >= 0.
    pub weight_decay: f64,
    /// Momentum factor μ applied to the scaled gradient; 0 turns it off. Default `0`;
    /// must be >= 0.
    pub momentum: f64,
    /// Divide by the running standard deviation (subtract the squared mean gradient).
    /// Default `false`.
    pub centered: bool,
    /// Ascend instead of descend (negate the gradient). Default `false`.
    pub maximize: bool,
}

impl Default for RmsPropConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

impl RmsPropConfig {
    /// Checks the hyperparameters as `torch.optim.RMSprop` does (and refuses NaN and
    /// infinities) and builds the optimizer.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the field when `lr`, `eps`, `momentum`,
    /// `weight_decay` or `alpha` is negative.
    pub fn build(&self) -> Result<RmsProp, OptimizerError> {
        check_non_negative("lr", self.lr)?;
        check_non_negative("eps", self.eps)?;
        check_non_negative("momentum", self.momentum)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("alpha", self.alpha)?;
        Ok(RmsProp {
            alpha: self.alpha,
            eps: self.eps,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            centered: self.centered,
            maximize: self.maximize,
        })
    }
}

/// RMSprop's validated hyperparameters.
///
/// Update of parameter θ with gradient g, learning rate γ; v, ḡ and b start at zero:
///
/// ```text
/// g ← −g                             if maximize
/// g ← g + λ θ                        if λ ≠ 0      (weight_decay)
/// v ← α v + (1 − α) g²                             (square_avg)
/// if centered:
///     ḡ ← α ḡ + (1 − α) g                          (grad_avg; torch: ḡ.lerp_(g, 1 − α))
///     d ← sqrt(v − ḡ²) + ε
/// else:
///     d ← sqrt(v) + ε
/// if μ > 0:                                         (momentum)
///     b ← μ b + g / d                               (momentum_buffer)
///     θ ← θ − γ b
/// else:
///     θ ← θ − γ g / d
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    /// α >= 0.
    alpha: f64,
    /// ε >= 0.
    eps: f64,
    /// λ >= 0, coupled into the gradient.
    weight_decay: f64,
    /// μ >= 0; 0 means no momentum buffer.
    momentum: f64,
    /// Keep the mean gradient and divide by the standard deviation.
    centered: bool,
    /// Negate the gradient.
    maximize: bool,
}

/// RMSprop's state of one parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct RmsPropState {
    /// Steps taken so far (the rule does not use it; torch keeps it too).
    pub step: u64,
    /// torch's `square_avg` v: running mean of the squared gradient, as long as the parameter.
    pub square_avg: Vec<f32>,
    /// torch's `momentum_buffer` b: `Some` exactly when `momentum > 0`, as long as the
    /// parameter.
    pub momentum_buffer: Option<Vec<f32>>,
    /// torch's `grad_avg` ḡ: running mean of the gradient, `Some` exactly when centred, as
    /// long as the parameter.
    pub grad_avg: Option<Vec<f32>>,
}

impl RmsPropState {
    /// The state's tensors under torch's names.
    pub(crate) fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        let mut buffers = vec![("square_avg", &self.square_avg[..])];
        if let Some(b) = &self.momentum_buffer {
            buffers.push(("momentum_buffer", b));
        }
        if let Some(g) = &self.grad_avg {
            buffers.push(("grad_avg", g));
        }
        buffers
    }

    /// The state of `step` steps from checkpointed buffers.
    pub(crate) fn from_named(
        rmsprop: &RmsProp,
        step: u64,
        named: &mut NamedBuffers<'_>,
    ) -> Result<Self, OptimizerError> {
        Ok(Self {
            step,
            square_avg: named.take("square_avg")?,
            momentum_buffer: named.take_if(rmsprop.momentum > 0.0, "momentum_buffer")?,
            grad_avg: named.take_if(rmsprop.centered, "grad_avg")?,
        })
    }
}

/// The scalars of one RMSprop step.
#[derive(Debug, Clone, Copy)]
struct RmsPropStepScalars {
    /// Maximize and coupled weight decay.
    prep: GradientPrep,
    /// α.
    alpha: f32,
    /// `1 − α`.
    one_minus_alpha: f32,
    /// ε.
    eps: f32,
    /// μ.
    momentum: f32,
    /// −γ.
    neg_lr: f32,
}

/// One RMSprop step over one tensor (or a slice of one), swept by [`simd::run`].
#[derive(Debug)]
struct RmsPropSweep<'a> {
    /// The step's scalars.
    scalars: RmsPropStepScalars,
    /// θ.
    param: &'a mut [f32],
    /// g, as long as `param`.
    grad: &'a [f32],
    /// v, as long as `param`.
    square_avg: &'a mut [f32],
    /// ḡ, as long as `param`: `Some` exactly when centred.
    grad_avg: Option<&'a mut [f32]>,
    /// b, as long as `param`: `Some` exactly when μ > 0.
    momentum_buffer: Option<&'a mut [f32]>,
}

impl Sweep for RmsPropSweep<'_> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (param, param_rest) = self.param.split_at_mut(mid);
        let (grad, grad_rest) = self.grad.split_at(mid);
        let (square_avg, square_avg_rest) = self.square_avg.split_at_mut(mid);
        let (grad_avg, grad_avg_rest) = split_optional(self.grad_avg, mid);
        let (buffer, buffer_rest) = split_optional(self.momentum_buffer, mid);
        let first = Self {
            scalars: self.scalars,
            param,
            grad,
            square_avg,
            grad_avg,
            momentum_buffer: buffer,
        };
        let second = Self {
            scalars: self.scalars,
            param: param_rest,
            grad: grad_rest,
            square_avg: square_avg_rest,
            grad_avg: grad_avg_rest,
            momentum_buffer: buffer_rest,
        };
        (first, second)
    }

    #[inline(always)]
    fn update<L: Lanes>(&mut self, at: usize) {
        let k = &self.scalars;
        let param = L::load(self.param, at);
        let g = k.prep.apply(L::load(self.grad, at), param);
        let v = average_of_squares(L::load(self.square_avg, at), g, k.alpha, k.one_minus_alpha);
        v.store(self.square_avg, at);
        let rms = match self.grad_avg.as_deref_mut() {
            Some(grad_avg) => {
                let mean = lerp(L::load(grad_avg, at), g, k.one_minus_alpha);
                mean.store(grad_avg, at);
                (v - mean * mean).sqrt()
            }
            None => v.sqrt(),
        };
        let denom = rms + L::splat(k.eps);
        let neg_lr = L::splat(k.neg_lr);
        let param = match self.momentum_buffer.as_deref_mut() {
            Some(buffer) => {
                let b = L::load(buffer, at) * L::splat(k.momentum) + g / denom;
                b.store(buffer, at);
                // torch: param.add_(buf, alpha=-lr), one fused multiply-add in ATen.
                b.mul_add(neg_lr, param)
            }
            None => param + neg_lr * g / denom,
        };
        param.store(self.param, at);
    }
}

impl RmsProp {
    /// The state of a parameter of `len` elements before its first step.
    #[must_use]
    pub fn new_state(&self, len: usize) -> RmsPropState {
        RmsPropState {
            step: 0,
            square_avg: vec![0.0; len],
            momentum_buffer: (self.momentum > 0.0).then(|| vec![0.0; len]),
            grad_avg: self.centered.then(|| vec![0.0; len]),
        }
    }

    /// One step of `param` (or a slice of one) with learning rate `lr`, in one pass, on
    /// the widest SIMD level and one thread.
    ///
    /// # Panics
    /// As [`RmsProp::step_with`].
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut RmsPropState) {
        self.step_with(Execution::default(), lr, param, grad, state);
    }

    /// [`RmsProp::step`] run as `execution` says.
    ///
    /// # Panics
    /// When `grad` or a state buffer is not as long as `param`, the optional buffers do
    /// not match `momentum` and `centered` (a state from another optimizer), or the CPU
    /// cannot run `execution.simd`.
    pub fn step_with(
        &self,
        execution: Execution,
        lr: f32,
        param: &mut [f32],
        grad: &[f32],
        state: &mut RmsPropState,
    ) {
        let len = param.len();
        assert!(
            state.momentum_buffer.is_some() == (self.momentum > 0.0)
                && state.grad_avg.is_some() == self.centered,
            "rmsprop: the state's buffers do not match momentum = {} and centered = {}",
            self.momentum,
            self.centered
        );
        assert_lengths(
            "rmsprop",
            len,
            &[
                ("grad", grad.len()),
                ("square_avg", state.square_avg.len()),
                (
                    "momentum_buffer",
                    state.momentum_buffer.as_ref().map_or(len, Vec::len),
                ),
                ("grad_avg", state.grad_avg.as_ref().map_or(len, Vec::len)),
            ],
        );
        state.step += 1;
        let k = RmsPropStepScalars {
            prep: GradientPrep::new(self.maximize, self.weight_decay),
            alpha: self.alpha as f32,
            one_minus_alpha: one_minus(self.alpha),
            eps: self.eps as f32,
            momentum: self.momentum as f32,
            neg_lr: -lr,
        };
        let sweep = RmsPropSweep {
            scalars: k,
            param,
            grad,
            square_avg: &mut state.square_avg,
            grad_avg: state.grad_avg.as_deref_mut(),
            momentum_buffer: state.momentum_buffer.as_deref_mut(),
        };
        simd::run(execution, sweep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_torch_refuses_naming_the_field() {
        let base = RmsPropConfig::default();
        let error = |config: RmsPropConfig| config.build().unwrap_err().to_string();
        assert_eq!(
            error(RmsPropConfig {
                alpha: -0.99,
                ..base
            }),
            "optimizer.alpha: must be a finite number >= 0, got -0.99"
        );
        assert_eq!(
            error(RmsPropConfig {
                momentum: -0.9,
                ..base
            }),
            "optimizer.momentum: must be a finite number >= 0, got -0.9"
        );
        assert_eq!(
            error(RmsPropConfig { eps: -1e-8, ..base }),
            "optimizer.eps: must be a finite number >= 0, got -0.00000001"
        );
        assert_eq!(
            error(RmsPropConfig { lr: -0.01, ..base }),
            "optimizer.lr: must be a finite number >= 0, got -0.01"
        );
        assert_eq!(
            error(RmsPropConfig {
                weight_decay: -0.5,
                ..base
            }),
            "optimizer.weight_decay: must be a finite number >= 0, got -0.5"
        );
    }

    #[test]
    fn centred_divides_by_the_standard_deviation() {
        let config = RmsPropConfig {
            alpha: 0.5,
            eps: 0.0,
            centered: true,
            ..RmsPropConfig::default()
        };
        let rmsprop = config.build().unwrap();
        let mut state = rmsprop.new_state(1);
        let mut param = [0.0];
        rmsprop.step(1.0, &mut param, &[4.0], &mut state);
        // v = 8, ḡ = 2, d = sqrt(8 − 4) = 2: θ = −4 / 2.
        assert_eq!(param, [-2.0]);
        assert_eq!(state.square_avg, [8.0]);
        assert_eq!(state.grad_avg, Some(vec![2.0]));
        assert_eq!(state.momentum_buffer, None);
    }
}
