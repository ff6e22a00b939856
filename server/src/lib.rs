//! Downpour's parameter server.
//!
//! # Layout
//! - [`optim`]: the optimizers, one file each, with PyTorch's exact update rules.
//! - [`schedule`]: learning-rate schedules, applied once per optimizer step.
//! - [`clip`]: global gradient-norm clipping.

pub mod clip;
pub mod optim;
pub mod schedule;
