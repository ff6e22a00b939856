//! The parameter store: the model's weights, the optimizer's state for each of them,
//! and the version (updates applied so far).

use downpour_core::ParamSet;

use crate::clip::clip_grad_norm;
use crate::optim::{Optimizer, ParamState};
use crate::schedule::ScheduleConfig;

/// How updates are computed from gradients: the optimizer and what surrounds it.
#[derive(Debug, Clone)]
pub struct UpdateRule {
    /// The optimizer, with validated hyperparameters.
    pub optimizer: Optimizer,
    /// The learning rate the schedule scales.
    pub base_lr: f32,
    /// The learning-rate schedule, evaluated at the optimizer step.
    pub schedule: ScheduleConfig,
    /// Global gradient-norm clipping threshold, if any.
    pub clip_grad_norm: Option<f32>,
}

/// Weights, optimizer state and version.
///
/// Invariants: `params` has exactly the layout's names and shapes, in layout order;
/// `states[i]` is the optimizer state of `params.entries()[i]`; `version` counts the
/// updates applied since initialisation.
#[derive(Debug)]
pub struct ParameterStore {
    /// The current weights.
    params: ParamSet,
    /// One optimizer state per tensor, in the same order.
    states: Vec<ParamState>,
    /// How a gradient becomes an update.
    rule: UpdateRule,
    /// Updates applied.
    version: u64,
}

impl ParameterStore {
    /// A store holding `params` (the initial values of the tensors or pieces it owns), at version 0.
    #[must_use]
    pub fn new(params: ParamSet, rule: UpdateRule) -> Self {
        let states = params
            .entries()
            .iter()
            .map(|e| rule.optimizer.new_state(e.tensor.len()))
            .collect();
        Self {
            params,
            states,
            rule,
            version: 0,
        }
    }

    /// A store resumed from a checkpoint: its weights, one optimizer state per tensor, and
    /// the version they had.
    ///
    /// # Panics
    /// When `states` does not have one entry per tensor (the checkpoint loader checks it).
    #[must_use]
    pub fn resumed(
        params: ParamSet,
        states: Vec<ParamState>,
        rule: UpdateRule,
        version: u64,
    ) -> Self {
        assert_eq!(params.len(), states.len(), "one optimizer state per tensor");
        Self {
            params,
            states,
            rule,
            version,
        }
    }

    /// The update rule (for rebuilding optimizer state from a checkpoint).
    #[must_use]
    pub fn rule(&self) -> &UpdateRule {
        &self.rule
    }

    /// Updates applied so far.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current weights.
    #[must_use]
    pub fn params(&self) -> &ParamSet {
        &self.params
    }

    /// The optimizer state of each tensor, in layout order.
    #[must_use]
    pub fn states(&self) -> &[ParamState] {
        &self.states
    }

    /// The learning rate the next update will use (before any staleness scaling).
    #[must_use]
    pub fn current_lr(&self) -> f32 {
        self.rule.schedule.lr_at(self.rule.base_lr, self.version)
    }

    /// Applies one optimizer step with a conformed gradient, the learning rate scaled by `lr_scale`.
    ///
    /// Clips the gradient's global norm first when the job asks for it. Returns the new version.
    pub fn apply(&mut self, mut gradient: ParamSet, lr_scale: f32) -> u64 {
        debug_assert_eq!(
            gradient.len(),
            self.params.len(),
            "gradient must be conformed"
        );
        if let Some(max_norm) = self.rule.clip_grad_norm {
            let mut slices: Vec<&mut [f32]> =
                gradient.tensors_mut().map(|t| t.data_mut()).collect();
            clip_grad_norm(&mut slices, max_norm);
        }
        let lr = self.current_lr() * lr_scale;
        for ((param, grad), state) in self
            .params
            .tensors_mut()
            .zip(gradient.entries())
            .zip(self.states.iter_mut())
        {
            self.rule
                .optimizer
                .step(lr, param.data_mut(), grad.tensor.data(), state);
        }
        self.version += 1;
        self.version
    }

    /// Counts a step in which no gradient was applied (every worker of a sync step had no data).
    pub fn skip(&mut self) -> u64 {
        self.version += 1;
        self.version
    }
}
