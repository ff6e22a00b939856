//! TEMPORARY stand-in for the optimizer module (replaced by the optim branch at merge).
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("optimizer.{field}: {reason}")]
pub struct OptimizerError {
    pub field: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Sgd(SgdConfig),
    Adam(AdamConfig),
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub lr: f32,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
}
impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::Adam(AdamConfig { lr: 1e-3 })
    }
}
#[derive(Debug, Clone, Default)]
pub struct OptimizerOverrides {
    pub lr: Option<f32>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
}
impl OptimizerConfig {
    pub fn with_defaults(name: &str) -> Result<Self, OptimizerError> {
        match name {
            "sgd" => Ok(Self::Sgd(SgdConfig { lr: 0.01 })),
            "adam" => Ok(Self::default()),
            _ => Err(OptimizerError {
                field: "name",
                reason: format!("unknown {name}"),
            }),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(_) => "adam",
        }
    }
    pub fn lr(&self) -> f32 {
        match self {
            Self::Sgd(c) => c.lr,
            Self::Adam(c) => c.lr,
        }
    }
    pub fn apply_overrides(&mut self, o: &OptimizerOverrides) -> Result<(), OptimizerError> {
        if let Some(lr) = o.lr {
            match self {
                Self::Sgd(c) => c.lr = lr,
                Self::Adam(c) => c.lr = lr,
            }
        }
        Ok(())
    }
    pub fn validate(&self) -> Result<(), OptimizerError> {
        Ok(())
    }
    pub fn build(&self) -> Result<Optimizer, OptimizerError> {
        Ok(match self {
            Self::Sgd(_) => Optimizer::Sgd,
            Self::Adam(_) => Optimizer::Adam,
        })
    }
}
#[derive(Debug, Clone)]
pub enum Optimizer {
    Sgd,
    Adam,
}
#[derive(Debug, Clone, PartialEq)]
pub enum ParamState {
    Sgd,
    Adam { step: u64, m: Vec<f32>, v: Vec<f32> },
}
impl Optimizer {
    pub fn new_state(&self, len: usize) -> ParamState {
        match self {
            Self::Sgd => ParamState::Sgd,
            Self::Adam => ParamState::Adam {
                step: 0,
                m: vec![0.0; len],
                v: vec![0.0; len],
            },
        }
    }
    pub fn step(&self, lr: f32, param: &mut [f32], grad: &[f32], state: &mut ParamState) {
        match state {
            ParamState::Sgd => param.iter_mut().zip(grad).for_each(|(p, g)| *p -= lr * g),
            ParamState::Adam { step, m, v } => {
                *step += 1;
                let bc1 = 1.0 - 0.9f64.powi(*step as i32);
                let bc2 = 1.0 - 0.999f64.powi(*step as i32);
                for i in 0..param.len() {
                    m[i] = 0.9 * m[i] + 0.1 * grad[i];
                    v[i] = 0.999 * v[i] + 0.001 * grad[i] * grad[i];
                    let denom = v[i].sqrt() / bc2.sqrt() as f32 + 1e-8;
                    param[i] -= (lr as f64 / bc1) as f32 * m[i] / denom;
                }
            }
        }
    }
}
