//! AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay.
//!
//! The update rule is [`Adam`]'s with [`AdamWeightDecay::Decoupled`]: before the Adam
//! update, `θ ← θ (1 − γ λ)`, and the gradient itself is left alone, so the decay is not
//! divided by the adaptive denominator (Loshchilov and Hutter, 2019). The optimizer and
//! its per-parameter state are Adam's ([`Adam`], [`super::AdamState`]); this file owns the
//! job-file section, whose `weight_decay` defaults to `0.01` as in PyTorch.

use serde::{Deserialize, Serialize};

use super::OptimizerError;
use super::adam::{Adam, AdamWeightDecay};

/// The job file's `[optimizer]` section for `name = "adamw"`; names and defaults are
/// `torch.optim.AdamW`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate γ before any schedule; also scales the decay. Default `1e-3`; must be >= 0.
    pub lr: f32,
    /// (β1, β2): decay rates of the gradient's running mean and uncentred variance.
    /// Default `[0.9, 0.999]`; each must be in [0, 1).
    pub betas: (f64, f64),
    /// ε added to the denominator, after the square root. Default `1e-8`; must be >= 0.
    pub eps: f64,
    /// Decoupled weight decay λ: `θ ← θ (1 − γ λ)` each step. Default `0.01`; must be >= 0.
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment. Default `false`.
    pub amsgrad: bool,
    /// Ascend instead of descend (negate the gradient). Default `false`.
    pub maximize: bool,
}

impl Default for AdamWConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamWConfig {
    /// Checks the hyperparameters as `torch.optim.AdamW` does (and refuses NaN and
    /// infinities) and builds the Adam core with decoupled weight decay.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the field: a negative `lr`, `eps` or
    /// `weight_decay`, or a beta outside [0, 1).
    pub fn build(&self) -> Result<Adam, OptimizerError> {
        Adam::new(
            self.lr,
            self.betas,
            self.eps,
            AdamWeightDecay::Decoupled(self.weight_decay),
            self.amsgrad,
            self.maximize,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_torch_refuses_naming_the_field() {
        let base = AdamWConfig::default();
        let error = |config: AdamWConfig| config.build().unwrap_err().to_string();
        assert_eq!(
            error(AdamWConfig {
                weight_decay: -0.01,
                ..base
            }),
            "optimizer.weight_decay: must be a finite number >= 0, got -0.01"
        );
        assert_eq!(
            error(AdamWConfig {
                betas: (0.9, 1.5),
                ..base
            }),
            "optimizer.betas: beta2 must be in [0, 1), got 1.5"
        );
        assert_eq!(
            error(AdamWConfig {
                lr: f32::NAN,
                ..base
            }),
            "optimizer.lr: must be a finite number >= 0, got NaN"
        );
    }

    #[test]
    fn decay_shrinks_the_parameter_outside_the_adaptive_rate() {
        // With a zero gradient, m = v = 0, so only the decay moves θ: θ (1 − γ λ).
        let adamw = AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        }
        .build()
        .unwrap();
        let mut state = adamw.new_state(2);
        let mut param = [2.0, -4.0];
        adamw.step(0.5, &mut param, &[0.0, 0.0], &mut state);
        assert_eq!(param, [1.5, -3.0]);
    }
}
