//! TEMPORARY stand-in (replaced by the optim branch at merge).
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {}
#[derive(Debug, thiserror::Error)]
#[error("schedule")]
pub struct ScheduleError;
impl ScheduleConfig {
    pub fn validate(&self) -> Result<(), ScheduleError> {
        Ok(())
    }
    pub fn lr_at(&self, base_lr: f32, _step: u64) -> f32 {
        base_lr
    }
}
