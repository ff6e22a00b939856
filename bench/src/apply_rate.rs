//! The server's optimizer apply rate against an in-run memcpy: one optimizer step over P
//! parameters (the job's optimizer, through the parameter store, as the server runs it)
//! and a plain copy of the same P values, alternated.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use downpour_core::layout::{Init, ParameterSpec};
use downpour_core::{NamedTensor, ParamSet, ParameterLayout, Tensor};
use downpour_server::Job;
use downpour_server::store::{ParameterStore, UpdateRule};

use crate::stats::Summary;

/// Seconds per optimizer step and per copy, for one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyRate {
    /// Parameters updated.
    pub parameters: usize,
    /// The optimizer (the job's).
    pub optimizer: String,
    /// One optimizer step through the store.
    pub apply: Summary,
    /// Copying the same number of f32 values.
    pub memcpy: Summary,
}

impl ApplyRate {
    /// Parameters per second updated by the optimizer (median).
    #[must_use]
    pub fn apply_per_second(&self) -> f64 {
        self.parameters as f64 / self.apply.median
    }

    /// Parameters per second copied (median).
    #[must_use]
    pub fn memcpy_per_second(&self) -> f64 {
        self.parameters as f64 / self.memcpy.median
    }

    /// How many times longer an optimizer step takes than a copy.
    #[must_use]
    pub fn slowdown(&self) -> f64 {
        self.apply.median / self.memcpy.median
    }
}

/// Measures `job`'s optimizer on a single tensor of each size in `sizes`, `repeats` times.
#[must_use]
pub fn measure(job: &Job, sizes: &[usize], repeats: usize) -> Vec<ApplyRate> {
    sizes
        .iter()
        .map(|&parameters| one_size(job, parameters, repeats))
        .collect()
}

fn one_size(job: &Job, parameters: usize, repeats: usize) -> ApplyRate {
    let layout = ParameterLayout::new(vec![ParameterSpec {
        name: "w".into(),
        shape: vec![parameters],
        init: Init::Constant(0.5),
    }]);
    let rule = UpdateRule {
        optimizer: job.optimizer.clone(),
        base_lr: job.spec.optimizer.lr(),
        schedule: job.spec.schedule,
        clip_grad_norm: job.spec.training.clip_grad_norm,
    };
    let mut store = ParameterStore::new(layout.initialize(0), rule);
    let gradient = ParamSet::new(vec![NamedTensor {
        name: "w".into(),
        tensor: Tensor::new(vec![parameters], vec![1e-3; parameters])
            .expect("shape matches the values"),
    }]);
    let source = vec![1.5_f32; parameters];
    let mut target = vec![0.0_f32; parameters];
    let (mut apply, mut memcpy) = (Vec::new(), Vec::new());
    // One warm-up round, then `repeats` measured ones.
    for round in 0..=repeats {
        let g = gradient.clone();
        let started = Instant::now();
        store.apply(g, 1.0);
        let applied = started.elapsed();
        let started = Instant::now();
        target.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut target);
        let copied = started.elapsed();
        if round > 0 {
            apply.push(applied.as_secs_f64());
            memcpy.push(copied.as_secs_f64());
        }
    }
    ApplyRate {
        parameters,
        optimizer: job.spec.optimizer.name().to_string(),
        apply: Summary::of(&apply).expect("at least one round"),
        memcpy: Summary::of(&memcpy).expect("at least one round"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_size_and_reports_rates() {
        let job = downpour_server::JobSpec::default().validate().unwrap();
        let rates = measure(&job, &[1000, 5000], 2);
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[1].parameters, 5000);
        assert_eq!(rates[0].apply.n, 2);
        assert_eq!(rates[0].optimizer, "adam");
        assert!(rates[0].apply_per_second() > 0.0);
        assert!(rates[0].slowdown() > 0.0);
    }
}
