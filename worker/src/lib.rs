//! Downpour's gradient worker.
//!
//! # Layout
//! - [`model`]: models with forward and backward passes on ndarray.

pub mod model;
