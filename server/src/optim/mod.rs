//! The optimizers: PyTorch's `torch.optim` update rules, in f32, one file each.
//!
//! Each file holds the three parts of one optimizer: its job-file `Config` (serde,
//! defaults equal to PyTorch's, hyperparameters named as in `torch.optim`), the
//! optimizer itself (validated hyperparameters only; the learning rate is an argument
//! of `step`, so schedules live outside) and its named per-parameter `State`.
//!
//! - [`sgd`]: SGD with momentum, dampening, Nesterov (batch, mini-batch and stochastic GD).
//! - [`adagrad`], [`adadelta`], [`rmsprop`]: the adaptive-rate family.
//! - [`adam`]: Adam, and the shared core that [`adamw`] builds with decoupled weight decay.
//! - `elementwise` (private): the per-element pieces the rules share (maximize and L2 weight
//!   decay, `lerp`, `1 - beta`), each mirroring the torch op it stands for.
//! - `simd` (private): the run-time choice of vector width ([`SimdLevel`]), the `Lanes`
//!   type each rule's per-element update is generic over, and the fused pass that sweeps a
//!   tensor, optionally split over two threads ([`Execution`]).
//!
//! The rest of the server sees this module through [`OptimizerConfig`] (the job file's
//! `[optimizer]` section), [`Optimizer`] (built only from a validated config) and
//! [`ParamState`] (one per parameter tensor, or per contiguous slice of one, exposed as
//! named buffers for checkpoints). Every rule is element-wise, so a tensor may be split
//! into slices that are stepped independently with their own states.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamw;
mod elementwise;
pub mod rmsprop;
pub mod sgd;
mod simd;

use serde::{Deserialize, Serialize};

pub use adadelta::{Adadelta, AdadeltaConfig, AdadeltaState};
pub use adagrad::{Adagrad, AdagradConfig, AdagradState};
pub use adam::{Adam, AdamConfig, AdamState, AdamWeightDecay};
pub use adamw::AdamWConfig;
pub use rmsprop::{RmsProp, RmsPropConfig, RmsPropState};
pub use sgd::{Sgd, SgdConfig, SgdState};
pub use simd::{Execution, PARALLEL_MIN_LEN, SimdLevel};

/// The names `[optimizer] name = ...` accepts, in the order the docs list them.
pub const OPTIMIZER_NAMES: [&str; 6] = ["sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw"];

/// An optimizer setting, override or checkpointed state that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimizerError {
    /// A hyperparameter is outside its domain (the checks `torch.optim` makes, plus finiteness).
    #[error("optimizer.{field}: {reason}")]
    Invalid {
        /// The hyperparameter, as named in the job file.
        field: &'static str,
        /// Why the value is refused, with the value.
        reason: String,
    },
    /// `name` is not one of [`OPTIMIZER_NAMES`].
    #[error(
        "optimizer.name: unknown optimizer \"{name}\", expected one of {}",
        OPTIMIZER_NAMES.join(", ")
    )]
    UnknownName {
        /// The name that was asked for.
        name: String,
    },
    /// A command-line override names a hyperparameter this optimizer does not have.
    #[error("optimizer.{field}: {optimizer} has no such hyperparameter")]
    NotApplicable {
        /// The overridden hyperparameter.
        field: &'static str,
        /// The configured optimizer's name.
        optimizer: &'static str,
    },
    /// Named buffers (from a checkpoint) do not form a state of this optimizer.
    #[error("optimizer state for {optimizer}: {reason}")]
    State {
        /// The optimizer the state was meant for.
        optimizer: &'static str,
        /// What is missing, unknown or of the wrong length.
        reason: String,
    },
}

impl OptimizerError {
    /// An [`OptimizerError::Invalid`] for `field`.
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Refuses a value that is negative, NaN or infinite (torch: `not 0.0 <= value`).
/// Generic so that the message shows an f32 `lr` as written, not widened.
pub(crate) fn check_non_negative<T>(field: &'static str, value: T) -> Result<(), OptimizerError>
where
    T: Into<f64> + Copy + std::fmt::Display,
{
    let wide: f64 = value.into();
    if wide.is_finite() && wide >= 0.0 {
        Ok(())
    } else {
        Err(OptimizerError::invalid(
            field,
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

/// The job file's `[optimizer]` section, e.g. `name = "adam"`, `lr = 1e-3`, `betas = [0.9, 0.999]`.
///
/// Every field but `name` keeps its `torch.optim` name and default; fields left out take
/// PyTorch's defaults, unknown fields are refused. `lr` is f32, like the rate a schedule
/// hands to `step`; the other hyperparameters are f64, as Python floats are in PyTorch, so
/// that `1 − 0.999` rounds to the same f32 as there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd(SgdConfig),
    /// `torch.optim.Adam`.
    Adam(AdamConfig),
    /// `torch.optim.AdamW`.
    AdamW(AdamWConfig),
    /// `torch.optim.Adagrad`.
    Adagrad(AdagradConfig),
    /// `torch.optim.Adadelta`.
    Adadelta(AdadeltaConfig),
    /// `torch.optim.RMSprop`.
    RmsProp(RmsPropConfig),
}

impl Default for OptimizerConfig {
    /// Adam with PyTorch's defaults.
    fn default() -> Self {
        Self::Adam(AdamConfig::default())
    }
}

/// Hyperparameters the command line may override on top of the job file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OptimizerOverrides {
    /// `--lr`: the base learning rate (before the schedule).
    pub lr: Option<f32>,
    /// `--momentum`: SGD's or RMSprop's momentum; an error for the others.
    pub momentum: Option<f64>,
    /// `--weight-decay`: every optimizer's `weight_decay`.
    pub weight_decay: Option<f64>,
}

impl OptimizerConfig {
    /// The config of optimizer `name` with all of PyTorch's defaults (`--optimizer NAME`).
    ///
    /// # Errors
    /// [`OptimizerError::UnknownName`] when `name` is not one of [`OPTIMIZER_NAMES`].
    pub fn with_defaults(name: &str) -> Result<Self, OptimizerError> {
        Ok(match name {
            "sgd" => Self::Sgd(SgdConfig::default()),
            "adam" => Self::Adam(AdamConfig::default()),
            "adamw" => Self::AdamW(AdamWConfig::default()),
            "adagrad" => Self::Adagrad(AdagradConfig::default()),
            "adadelta" => Self::Adadelta(AdadeltaConfig::default()),
            "rmsprop" => Self::RmsProp(RmsPropConfig::default()),
            _ => {
                return Err(OptimizerError::UnknownName {
                    name: name.to_owned(),
                });
            }
        })
    }

    /// The job-file name: one of [`OPTIMIZER_NAMES`].
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(_) => "adam",
            Self::AdamW(_) => "adamw",
            Self::Adagrad(_) => "adagrad",
            Self::Adadelta(_) => "adadelta",
            Self::RmsProp(_) => "rmsprop",
        }
    }

    /// The base learning rate, before any schedule.
    #[must_use]
    pub fn lr(&self) -> f32 {
        match self {
            Self::Sgd(c) => c.lr,
            Self::Adam(c) => c.lr,
            Self::AdamW(c) => c.lr,
            Self::Adagrad(c) => c.lr,
            Self::Adadelta(c) => c.lr,
            Self::RmsProp(c) => c.lr,
        }
    }

    /// Applies command-line overrides. Nothing is changed when one does not apply.
    ///
    /// # Errors
    /// [`OptimizerError::NotApplicable`] naming an override this optimizer has no
    /// hyperparameter for (`momentum` for anything but SGD and RMSprop).
    pub fn apply_overrides(&mut self, o: &OptimizerOverrides) -> Result<(), OptimizerError> {
        let name = self.name();
        let (lr, weight_decay, momentum) = match self {
            Self::Sgd(c) => (&mut c.lr, &mut c.weight_decay, Some(&mut c.momentum)),
            Self::Adam(c) => (&mut c.lr, &mut c.weight_decay, None),
            Self::AdamW(c) => (&mut c.lr, &mut c.weight_decay, None),
            Self::Adagrad(c) => (&mut c.lr, &mut c.weight_decay, None),
            Self::Adadelta(c) => (&mut c.lr, &mut c.weight_decay, None),
            Self::RmsProp(c) => (&mut c.lr, &mut c.weight_decay, Some(&mut c.momentum)),
        };
        if let Some(value) = o.momentum {
            let Some(momentum) = momentum else {
                return Err(OptimizerError::NotApplicable {
                    field: "momentum",
                    optimizer: name,
                });
            };
            *momentum = value;
        }
        if let Some(value) = o.lr {
            *lr = value;
        }
        if let Some(value) = o.weight_decay {
            *weight_decay = value;
        }
        Ok(())
    }

    /// Checks every hyperparameter as the `torch.optim` constructor does, and refuses
    /// NaN and infinities too.
    ///
    /// # Errors
    /// [`OptimizerError::Invalid`] naming the first bad field, e.g.
    /// `optimizer.betas: beta1 must be in [0, 1), got 1.5`.
    pub fn validate(&self) -> Result<(), OptimizerError> {
        self.build().map(drop)
    }

    /// Validates the config and builds the optimizer: the only way to get an [`Optimizer`].
    ///
    /// # Errors
    /// As [`OptimizerConfig::validate`].
    pub fn build(&self) -> Result<Optimizer, OptimizerError> {
        Ok(match self {
            Self::Sgd(c) => Optimizer::Sgd(c.build()?),
            Self::Adam(c) => Optimizer::Adam(c.build()?),
            Self::AdamW(c) => Optimizer::AdamW(c.build()?),
            Self::Adagrad(c) => Optimizer::Adagrad(c.build()?),
            Self::Adadelta(c) => Optimizer::Adadelta(c.build()?),
            Self::RmsProp(c) => Optimizer::RmsProp(c.build()?),
        })
    }
}

/// A built optimizer: validated hyperparameters, no learning rate and no state.
#[derive(Debug, Clone, PartialEq)]
pub enum Optimizer {
    /// See [`Sgd`].
    Sgd(Sgd),
    /// See [`Adam`] (coupled L2 weight decay).
    Adam(Adam),
    /// See [`Adam`] (decoupled weight decay, built by [`AdamWConfig`]).
    AdamW(Adam),
    /// See [`Adagrad`].
    Adagrad(Adagrad),
    /// See [`Adadelta`].
    Adadelta(Adadelta),
    /// See [`RmsProp`].
    RmsProp(RmsProp),
}

impl Optimizer {
    /// The job-file name of the optimizer this was built from.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(_) => "adam",
            Self::AdamW(_) => "adamw",
            Self::Adagrad(_) => "adagrad",
            Self::Adadelta(_) => "adadelta",
            Self::RmsProp(_) => "rmsprop",
        }
    }

    /// The state of a parameter tensor (or slice) of `len` elements before its first step.
    #[must_use]
    pub fn new_state(&self, len: usize) -> ParamState {
        match self {
            Self::Sgd(o) => ParamState::Sgd(o.new_state(len)),
            Self::Adam(o) | Self::AdamW(o) => ParamState::Adam(o.new_state(len)),
            Self::Adagrad(o) => ParamState::Adagrad(o.new_state(len)),
            Self::Adadelta(o) => ParamState::Adadelta(o.new_state(len)),
            Self::RmsProp(o) => ParamState::RmsProp(o.new_state(len)),
        }
    }

    /// One update of one parameter tensor, or of a contiguous slice of one, with learning
    /// rate `lr`: one fused pass over the elements on the widest SIMD level the CPU has,
    /// one thread, no allocation.
    ///
    /// # Panics
    /// As [`Optimizer::step_with`].
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut ParamState) {
        self.step_with(Execution::default(), lr, param, grad, state);
    }

    /// [`Optimizer::step`] run as `execution` says (SIMD level, one or two threads).
    ///
    /// # Panics
    /// When `state` was made by another kind of optimizer, or when `param`, `grad` and the
    /// state's buffers differ in length: both are bugs in the caller. Also when the CPU
    /// cannot run `execution.simd`.
    pub fn step_with(
        &self,
        execution: Execution,
        lr: f32,
        param: &mut [f32],
        grad: &[f32],
        state: &mut ParamState,
    ) {
        let e = execution;
        match (self, state) {
            (Self::Sgd(o), ParamState::Sgd(s)) => o.step_with(e, lr, param, grad, s),
            (Self::Adam(o) | Self::AdamW(o), ParamState::Adam(s)) => {
                o.step_with(e, lr, param, grad, s);
            }
            (Self::Adagrad(o), ParamState::Adagrad(s)) => o.step_with(e, lr, param, grad, s),
            (Self::Adadelta(o), ParamState::Adadelta(s)) => o.step_with(e, lr, param, grad, s),
            (Self::RmsProp(o), ParamState::RmsProp(s)) => o.step_with(e, lr, param, grad, s),
            (o, s) => panic!(
                "{} cannot step a parameter whose state is {}'s",
                o.name(),
                s.kind()
            ),
        }
    }
}

/// The per-parameter state of any optimizer.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamState {
    /// [`Sgd`]'s state.
    Sgd(SgdState),
    /// [`Adam`]'s state (Adam and AdamW).
    Adam(AdamState),
    /// [`Adagrad`]'s state.
    Adagrad(AdagradState),
    /// [`Adadelta`]'s state.
    Adadelta(AdadeltaState),
    /// [`RmsProp`]'s state.
    RmsProp(RmsPropState),
}

impl ParamState {
    /// Which optimizer family made this state (Adam's state serves Adam and AdamW).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(_) => "adam",
            Self::Adagrad(_) => "adagrad",
            Self::Adadelta(_) => "adadelta",
            Self::RmsProp(_) => "rmsprop",
        }
    }

    /// How many optimizer steps this parameter has taken (torch's `step`; SGD keeps none
    /// in torch, here it counts too).
    #[must_use]
    pub fn step(&self) -> u64 {
        match self {
            Self::Sgd(s) => s.step,
            Self::Adam(s) => s.step,
            Self::Adagrad(s) => s.step,
            Self::Adadelta(s) => s.step,
            Self::RmsProp(s) => s.step,
        }
    }

    /// The state's tensors under torch's state names (`exp_avg`, `exp_avg_sq`,
    /// `max_exp_avg_sq`, `momentum_buffer`, `sum`, `square_avg`, `acc_delta`,
    /// `grad_avg`), each as long as the parameter; the step count is [`ParamState::step`].
    #[must_use]
    pub fn buffers(&self) -> Vec<(&'static str, &[f32])> {
        match self {
            Self::Sgd(s) => s.buffers(),
            Self::Adam(s) => s.buffers(),
            Self::Adagrad(s) => s.buffers(),
            Self::Adadelta(s) => s.buffers(),
            Self::RmsProp(s) => s.buffers(),
        }
    }

    /// Rebuilds a state from [`ParamState::buffers`] and [`ParamState::step`], as read from
    /// a checkpoint, for a parameter of `len` elements stepped by `optimizer`.
    ///
    /// # Errors
    /// [`OptimizerError::State`] when a buffer `optimizer` needs is missing, one it does not
    /// use is present, a name repeats, or a buffer's length is not `len`.
    pub fn from_buffers(
        optimizer: &Optimizer,
        len: usize,
        step: u64,
        buffers: &[(String, Vec<f32>)],
    ) -> Result<Self, OptimizerError> {
        let mut named = NamedBuffers::new(optimizer.name(), len, buffers)?;
        let state = match optimizer {
            Optimizer::Sgd(o) => Self::Sgd(SgdState::from_named(o, step, &mut named)?),
            Optimizer::Adam(o) | Optimizer::AdamW(o) => {
                Self::Adam(AdamState::from_named(o, step, &mut named)?)
            }
            Optimizer::Adagrad(_) => Self::Adagrad(AdagradState::from_named(step, &mut named)?),
            Optimizer::Adadelta(_) => Self::Adadelta(AdadeltaState::from_named(step, &mut named)?),
            Optimizer::RmsProp(o) => Self::RmsProp(RmsPropState::from_named(o, step, &mut named)?),
        };
        named.finish()?;
        Ok(state)
    }
}

/// Buffers read from a checkpoint, handed out by name to the state being rebuilt.
#[derive(Debug)]
pub(crate) struct NamedBuffers<'a> {
    /// The optimizer the state is for, for error messages.
    optimizer: &'static str,
    /// The buffers not yet taken; names are unique and every buffer is `len` long.
    remaining: Vec<&'a (String, Vec<f32>)>,
}

impl<'a> NamedBuffers<'a> {
    /// Checks names for repeats and every length against `len`.
    fn new(
        optimizer: &'static str,
        len: usize,
        buffers: &'a [(String, Vec<f32>)],
    ) -> Result<Self, OptimizerError> {
        for (i, (name, values)) in buffers.iter().enumerate() {
            if buffers[..i].iter().any(|(other, _)| other == name) {
                return Err(state_error(
                    optimizer,
                    format!("buffer \"{name}\" appears twice"),
                ));
            }
            if values.len() != len {
                return Err(state_error(
                    optimizer,
                    format!(
                        "buffer \"{name}\" has {} elements, the parameter has {len}",
                        values.len()
                    ),
                ));
            }
        }
        Ok(Self {
            optimizer,
            remaining: buffers.iter().collect(),
        })
    }

    /// Takes buffer `name`, which this state needs.
    pub(crate) fn take(&mut self, name: &str) -> Result<Vec<f32>, OptimizerError> {
        let at = self.remaining.iter().position(|(n, _)| n == name);
        let Some(at) = at else {
            return Err(state_error(
                self.optimizer,
                format!("buffer \"{name}\" is missing"),
            ));
        };
        Ok(self.remaining.swap_remove(at).1.clone())
    }

    /// Takes buffer `name` when the hyperparameters use it (`needed`); `None` otherwise, in
    /// which case a buffer of that name is left over and refused by [`NamedBuffers::finish`].
    pub(crate) fn take_if(
        &mut self,
        needed: bool,
        name: &str,
    ) -> Result<Option<Vec<f32>>, OptimizerError> {
        needed.then(|| self.take(name)).transpose()
    }

    /// Refuses any buffer no one took.
    fn finish(self) -> Result<(), OptimizerError> {
        match self.remaining.first() {
            None => Ok(()),
            Some((name, _)) => Err(state_error(
                self.optimizer,
                format!("buffer \"{name}\" is not used by these hyperparameters"),
            )),
        }
    }
}

/// An [`OptimizerError::State`].
fn state_error(optimizer: &'static str, reason: String) -> OptimizerError {
    OptimizerError::State { optimizer, reason }
}

/// Panics unless the gradient and every state buffer (`(name, length)` pairs) are as long as
/// the parameter, of `len` elements.
///
/// The caller pairs a parameter with its own gradient and state, so a mismatch is a bug.
/// Takes lengths, not slices, so that checking costs no allocation.
pub(crate) fn assert_lengths(optimizer: &str, len: usize, others: &[(&str, usize)]) {
    for &(name, other) in others {
        assert!(
            other == len,
            "{optimizer}: {name} has {other} elements, the parameter has {len}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<OptimizerConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn job_file_sections_parse_with_torch_names_and_defaults() {
        let adam =
            parse("name = \"adam\"\nlr = 0.01\nbetas = [0.8, 0.99]\namsgrad = true").unwrap();
        assert_eq!(
            adam,
            OptimizerConfig::Adam(AdamConfig {
                lr: 0.01,
                betas: (0.8, 0.99),
                amsgrad: true,
                ..AdamConfig::default()
            })
        );
        let sgd = parse("name = \"sgd\"\nmomentum = 0.9\nnesterov = true").unwrap();
        assert_eq!(
            sgd,
            OptimizerConfig::Sgd(SgdConfig {
                momentum: 0.9,
                nesterov: true,
                ..SgdConfig::default()
            })
        );
        for name in OPTIMIZER_NAMES {
            let parsed = parse(&format!("name = \"{name}\"")).unwrap();
            assert_eq!(parsed, OptimizerConfig::with_defaults(name).unwrap());
            assert_eq!(parsed.name(), name);
            assert_eq!(parsed.build().unwrap().name(), name);
            let text = toml::to_string(&parsed).unwrap();
            assert_eq!(parse(&text).unwrap(), parsed, "{text}");
        }
    }

    #[test]
    fn defaults_are_pytorchs() {
        assert_eq!(
            OptimizerConfig::default(),
            OptimizerConfig::Adam(AdamConfig::default())
        );
        let lrs: Vec<f32> = OPTIMIZER_NAMES
            .iter()
            .map(|n| OptimizerConfig::with_defaults(n).unwrap().lr())
            .collect();
        // sgd, adagrad, adadelta, rmsprop, adam, adamw
        assert_eq!(lrs, [1e-3, 1e-2, 1.0, 1e-2, 1e-3, 1e-3]);
        assert_eq!(AdamWConfig::default().weight_decay, 1e-2);
        assert_eq!(AdamConfig::default().weight_decay, 0.0);
        assert_eq!(AdamConfig::default().betas, (0.9, 0.999));
        assert_eq!(AdagradConfig::default().eps, 1e-10);
        assert_eq!(AdadeltaConfig::default().rho, 0.9);
        assert_eq!(AdadeltaConfig::default().eps, 1e-6);
        assert_eq!(RmsPropConfig::default().alpha, 0.99);
        assert_eq!(RmsPropConfig::default().eps, 1e-8);
    }

    #[test]
    fn unknown_names_and_fields_are_refused() {
        assert_eq!(
            OptimizerConfig::with_defaults("lion")
                .unwrap_err()
                .to_string(),
            "optimizer.name: unknown optimizer \"lion\", expected one of sgd, adagrad, adadelta, rmsprop, adam, adamw"
        );
        assert!(
            parse("name = \"lion\"")
                .unwrap_err()
                .contains("unknown variant `lion`")
        );
        assert!(
            parse("name = \"adam\"\nmomentum = 0.9")
                .unwrap_err()
                .contains("unknown field `momentum`")
        );
        assert!(
            parse("lr = 0.1")
                .unwrap_err()
                .contains("missing field `name`")
        );
    }

    #[test]
    fn validate_names_the_field_through_the_enum() {
        let bad = parse("name = \"adam\"\nbetas = [1.5, 0.999]").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "optimizer.betas: beta1 must be in [0, 1), got 1.5"
        );
        assert_eq!(bad.build().unwrap_err(), bad.validate().unwrap_err());
        let bad =
            parse("name = \"sgd\"\nnesterov = true\nmomentum = 0.9\ndampening = 0.5").unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("optimizer.nesterov: ")
        );
        let bad = parse("name = \"rmsprop\"\neps = -1e-8").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "optimizer.eps: must be a finite number >= 0, got -0.00000001"
        );
        assert!(OptimizerConfig::default().validate().is_ok());
    }

    #[test]
    fn overrides_apply_or_name_what_does_not_apply() {
        let mut sgd = OptimizerConfig::with_defaults("sgd").unwrap();
        let all = OptimizerOverrides {
            lr: Some(0.5),
            momentum: Some(0.9),
            weight_decay: Some(1e-4),
        };
        sgd.apply_overrides(&all).unwrap();
        assert_eq!(
            sgd,
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.5,
                momentum: 0.9,
                weight_decay: 1e-4,
                ..SgdConfig::default()
            })
        );
        let mut rmsprop = OptimizerConfig::with_defaults("rmsprop").unwrap();
        rmsprop.apply_overrides(&all).unwrap();
        assert_eq!(rmsprop.lr(), 0.5);

        let mut adam = OptimizerConfig::default();
        let error = adam.apply_overrides(&all).unwrap_err();
        assert_eq!(
            error.to_string(),
            "optimizer.momentum: adam has no such hyperparameter"
        );
        assert_eq!(
            adam,
            OptimizerConfig::default(),
            "a refused override changes nothing"
        );
        let lr_only = OptimizerOverrides {
            lr: Some(0.1),
            ..OptimizerOverrides::default()
        };
        adam.apply_overrides(&lr_only).unwrap();
        assert_eq!(adam.lr(), 0.1);
        // Overrides are validated like the job file.
        let negative = OptimizerOverrides {
            weight_decay: Some(-1.0),
            ..OptimizerOverrides::default()
        };
        adam.apply_overrides(&negative).unwrap();
        assert_eq!(
            adam.validate().unwrap_err().to_string(),
            "optimizer.weight_decay: must be a finite number >= 0, got -1"
        );
    }

    fn owned(buffers: &[(&str, &[f32])]) -> Vec<(String, Vec<f32>)> {
        buffers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn buffers_use_torch_names_and_round_trip() {
        let cases = [
            ("name = \"sgd\"", vec![]),
            ("name = \"sgd\"\nmomentum = 0.9", vec!["momentum_buffer"]),
            ("name = \"adam\"", vec!["exp_avg", "exp_avg_sq"]),
            (
                "name = \"adamw\"\namsgrad = true",
                vec!["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
            ),
            ("name = \"adagrad\"", vec!["sum"]),
            ("name = \"adadelta\"", vec!["square_avg", "acc_delta"]),
            ("name = \"rmsprop\"", vec!["square_avg"]),
            (
                "name = \"rmsprop\"\nmomentum = 0.5\ncentered = true",
                vec!["square_avg", "momentum_buffer", "grad_avg"],
            ),
        ];
        for (text, names) in cases {
            let optimizer = parse(text).unwrap().build().unwrap();
            let mut state = optimizer.new_state(3);
            let mut param = [1.0, -2.0, 3.0];
            for _ in 0..3 {
                optimizer.step(0.1, &mut param, &[0.5, -1.0, 2.0], &mut state);
            }
            assert_eq!(state.step(), 3, "{text}");
            let buffers = state.buffers();
            let got: Vec<&str> = buffers.iter().map(|(n, _)| *n).collect();
            assert_eq!(got, names, "{text}");
            let rebuilt = ParamState::from_buffers(&optimizer, 3, 3, &owned(&buffers)).unwrap();
            assert_eq!(rebuilt, state, "{text}");
        }
    }

    #[test]
    fn from_buffers_refuses_missing_unknown_repeated_and_short_buffers() {
        let adam = OptimizerConfig::default().build().unwrap();
        let state = adam.new_state(2);
        let good = owned(&state.buffers());
        let error = |buffers: &[(String, Vec<f32>)]| {
            ParamState::from_buffers(&adam, 2, 1, buffers)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(&good[..1]),
            "optimizer state for adam: buffer \"exp_avg_sq\" is missing"
        );
        let mut extra = good.clone();
        extra.push(("max_exp_avg_sq".to_owned(), vec![0.0; 2]));
        assert_eq!(
            error(&extra),
            "optimizer state for adam: buffer \"max_exp_avg_sq\" is not used by these hyperparameters"
        );
        let mut repeated = good.clone();
        repeated.push(good[0].clone());
        assert_eq!(
            error(&repeated),
            "optimizer state for adam: buffer \"exp_avg\" appears twice"
        );
        let mut short = good.clone();
        short[1].1.pop();
        assert_eq!(
            error(&short),
            "optimizer state for adam: buffer \"exp_avg_sq\" has 1 elements, the parameter has 2"
        );
        let sgd = OptimizerConfig::with_defaults("sgd")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            ParamState::from_buffers(&sgd, 2, 0, &good)
                .unwrap_err()
                .to_string(),
            "optimizer state for sgd: buffer \"exp_avg\" is not used by these hyperparameters"
        );
    }

    #[test]
    #[should_panic(expected = "adagrad cannot step a parameter whose state is adam's")]
    fn a_state_from_another_optimizer_is_a_bug() {
        let adam = OptimizerConfig::default().build().unwrap();
        let adagrad = OptimizerConfig::with_defaults("adagrad")
            .unwrap()
            .build()
            .unwrap();
        let mut state = adam.new_state(1);
        adagrad.step(0.1, &mut [0.0], &[1.0], &mut state);
    }

    #[test]
    fn slices_step_exactly_like_the_whole_tensor() {
        // A later issue splits tensors by rows across shards: every rule is element-wise.
        let config = parse("name = \"adamw\"\namsgrad = true\nlr = 0.1").unwrap();
        let optimizer = config.build().unwrap();
        let grad: Vec<f32> = (0..10).map(|i| (i as f32 - 4.5) * 0.3).collect();
        let mut whole: Vec<f32> = (0..10).map(|i| i as f32 * 0.1).collect();
        let mut split = whole.clone();
        let mut whole_state = optimizer.new_state(10);
        let (mut left_state, mut right_state) = (optimizer.new_state(4), optimizer.new_state(6));
        for _ in 0..5 {
            optimizer.step(0.1, &mut whole, &grad, &mut whole_state);
            let (left, right) = split.split_at_mut(4);
            optimizer.step(0.1, left, &grad[..4], &mut left_state);
            optimizer.step(0.1, right, &grad[4..], &mut right_state);
        }
        assert_eq!(whole, split);
    }
}
