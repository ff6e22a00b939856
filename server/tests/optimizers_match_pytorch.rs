//! Every optimizer setting, schedule and clipping case against values recorded from
//! PyTorch by `tests/reference/make_optimizer_reference.py` (run it to regenerate
//! `tests/reference/optimizer_reference.json`).
//!
//! Tolerance: an element matches when `|ours − torch| <= 1e-5 · max(|torch|, 0.1)`: a
//! relative error of at most 1e-5, and for values within 0.1 of zero an absolute error of
//! at most 1e-6. The floor is there because these parameters are O(1) (they start as
//! N(0, 1) draws): an element crossing zero keeps the absolute rounding error of the O(1)
//! terms that cancelled (one f32 ulp at 1.0 is 1.2e-7), which no relative bound can
//! describe. When written, the worst element was 1.3e-6 relative (rmsprop_momentum);
//! since the rules round their multiply-adds once where torch's CPU kernels do (see
//! `server/src/optim/elementwise.rs`), 23 of the 34 cases are bit-exact (3 before) and the worst
//! element is 2.9e-7 relative (adagrad_weight_decay), on an AVX-512 machine.

use std::collections::BTreeMap;

use downpour_server::clip::clip_grad_norm;
use downpour_server::optim::{Optimizer, OptimizerConfig, ParamState};
use downpour_server::schedule::ScheduleConfig;
use serde::Deserialize;

/// The largest relative error allowed per element.
const REL_TOL: f64 = 1e-5;
/// Below this magnitude the error is measured against the floor instead of the value.
const ABS_FLOOR: f64 = 0.1;

#[derive(Debug, Deserialize)]
struct Reference {
    generator: String,
    initial_param: Vec<f32>,
    gradients: Vec<Vec<f32>>,
    optimizer_cases: Vec<OptimizerCase>,
    schedule_cases: Vec<ScheduleCase>,
    clip_cases: Vec<ClipCase>,
}

#[derive(Debug, Deserialize)]
struct OptimizerCase {
    id: String,
    /// The job file's `[optimizer]` section, exactly as torch.optim received it.
    config: OptimizerConfig,
    /// The parameter after each step.
    params: Vec<Vec<f32>>,
    mid_step: usize,
    mid_state: TorchState,
    final_state: TorchState,
}

/// torch's `optimizer.state[param]`: `step` (absent for SGD) and named tensors.
#[derive(Debug, Deserialize)]
struct TorchState {
    step: Option<u64>,
    buffers: BTreeMap<String, Vec<f32>>,
}

#[derive(Debug, Deserialize)]
struct ScheduleCase {
    id: String,
    base_lr: f32,
    schedule: ScheduleConfig,
    /// The learning rate of each optimizer step.
    lrs: Vec<f64>,
}

#[derive(Debug, Deserialize)]
struct ClipCase {
    max_norm: f32,
    grads: Vec<Vec<f32>>,
    total_norm: f32,
    clipped: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/optimizer_reference.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The error of `ours` against `torch`, in units of the allowed error (> 1 fails).
fn scaled_error(ours: f64, torch: f64) -> f64 {
    (ours - torch).abs() / (REL_TOL * torch.abs().max(ABS_FLOOR))
}

/// Collects every element out of tolerance, described, into `failures`.
fn compare(failures: &mut Vec<String>, what: &str, ours: &[f32], torch: &[f32]) {
    if ours.len() != torch.len() {
        failures.push(format!(
            "{what}: {} elements, torch has {}",
            ours.len(),
            torch.len()
        ));
        return;
    }
    for (i, (&o, &t)) in ours.iter().zip(torch).enumerate() {
        let error = scaled_error(f64::from(o), f64::from(t));
        // NaN fails too.
        if error > 1.0 || error.is_nan() {
            failures.push(format!(
                "{what}[{i}]: ours {o:e}, torch {t:e} ({error:.2} x tolerance)"
            ));
        }
    }
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} mismatches with PyTorch:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn build(case: &OptimizerCase) -> Optimizer {
    case.config
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", case.id))
}

/// Runs `case` over `steps` of the reference gradients from `param` and `state`,
/// comparing the parameter with torch's after every step.
fn run_and_compare(
    failures: &mut Vec<String>,
    reference: &Reference,
    case: &OptimizerCase,
    steps: std::ops::Range<usize>,
    param: &mut [f32],
    state: &mut ParamState,
) {
    let optimizer = build(case);
    for step in steps {
        optimizer.step(case.config.lr(), param, &reference.gradients[step], state);
        compare(
            failures,
            &format!("{} step {}", case.id, step + 1),
            param,
            &case.params[step],
        );
    }
}

/// Compares our named buffers and step count with torch's state.
fn compare_state(
    failures: &mut Vec<String>,
    what: &str,
    ours: &ParamState,
    torch: &TorchState,
    steps: usize,
) {
    // torch's SGD keeps no step count; ours counts the steps taken.
    let torch_step = torch.step.unwrap_or(steps as u64);
    if ours.step() != torch_step {
        failures.push(format!("{what}: step {}, torch {torch_step}", ours.step()));
    }
    let buffers = ours.buffers();
    let names: Vec<&str> = buffers.iter().map(|(name, _)| *name).collect();
    let torch_names: Vec<&str> = torch.buffers.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    if sorted != torch_names {
        failures.push(format!(
            "{what}: buffers {names:?}, torch has {torch_names:?}"
        ));
        return;
    }
    for (name, values) in buffers {
        compare(
            failures,
            &format!("{what} {name}"),
            values,
            &torch.buffers[name],
        );
    }
}

#[test]
fn the_reference_covers_every_setting_with_scaled_gradients() {
    let reference = reference();
    assert!(
        reference.generator.contains("torch"),
        "{}",
        reference.generator
    );
    assert!(reference.gradients.len() >= 20);
    let largest = |g: &Vec<f32>| g.iter().fold(0.0_f32, |m, x| m.max(x.abs()));
    assert!(
        reference.gradients.iter().any(|g| largest(g) > 50.0),
        "no step scaled x100"
    );
    assert!(
        reference.gradients.iter().any(|g| largest(g) < 0.05),
        "no step scaled x0.01"
    );
    let ids: Vec<&str> = reference
        .optimizer_cases
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    for id in [
        "sgd_defaults",
        "sgd_plain",
        "sgd_momentum",
        "sgd_dampening",
        "sgd_nesterov",
        "sgd_weight_decay",
        "sgd_maximize",
        "adagrad_defaults",
        "adagrad_lr_decay",
        "adagrad_weight_decay",
        "adagrad_initial_accumulator_value",
        "adadelta_defaults",
        "adadelta_weight_decay",
        "rmsprop_defaults",
        "rmsprop_momentum",
        "rmsprop_centered",
        "rmsprop_weight_decay",
        "adam_defaults",
        "adam_weight_decay",
        "adam_amsgrad",
        "adamw_defaults",
        "adamw_amsgrad",
    ] {
        assert!(ids.contains(&id), "the reference lacks case {id}");
    }
    for case in &reference.optimizer_cases {
        assert_eq!(case.params.len(), reference.gradients.len(), "{}", case.id);
    }
}

#[test]
fn every_optimizer_setting_matches_torch_step_by_step() {
    let reference = reference();
    let mut failures = Vec::new();
    for case in &reference.optimizer_cases {
        let mut param = reference.initial_param.clone();
        let mut state = build(case).new_state(param.len());
        let steps = 0..reference.gradients.len();
        run_and_compare(
            &mut failures,
            &reference,
            case,
            steps,
            &mut param,
            &mut state,
        );
        let what = format!("{} final state", case.id);
        compare_state(
            &mut failures,
            &what,
            &state,
            &case.final_state,
            reference.gradients.len(),
        );
    }
    assert_no_failures(&failures);
}

#[test]
fn resuming_from_torch_state_continues_as_torch_does() {
    let reference = reference();
    let mut failures = Vec::new();
    for case in &reference.optimizer_cases {
        let optimizer = build(case);
        let mid = case.mid_step;
        let buffers: Vec<(String, Vec<f32>)> = case.mid_state.buffers.clone().into_iter().collect();
        let step = case.mid_state.step.unwrap_or(mid as u64);
        let mut param = case.params[mid - 1].clone();
        let mut state = ParamState::from_buffers(&optimizer, param.len(), step, &buffers)
            .unwrap_or_else(|e| panic!("{}: {e}", case.id));
        let steps = mid..reference.gradients.len();
        run_and_compare(
            &mut failures,
            &reference,
            case,
            steps,
            &mut param,
            &mut state,
        );
    }
    assert_no_failures(&failures);
}

#[test]
fn schedules_match_torch_lr_schedulers() {
    let reference = reference();
    let mut failures = Vec::new();
    for case in &reference.schedule_cases {
        let ours: Vec<f32> = (0..case.lrs.len() as u64)
            .map(|step| case.schedule.lr_at(case.base_lr, step))
            .collect();
        let torch: Vec<f32> = case.lrs.iter().map(|&lr| lr as f32).collect();
        compare(
            &mut failures,
            &format!("schedule {}", case.id),
            &ours,
            &torch,
        );
    }
    assert_no_failures(&failures);
    assert!(reference.schedule_cases.len() >= 8);
}

#[test]
fn clipping_matches_clip_grad_norm() {
    let reference = reference();
    let mut failures = Vec::new();
    let mut clipped_any = false;
    for (i, case) in reference.clip_cases.iter().enumerate() {
        let mut grads = case.grads.clone();
        let mut views: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let total = clip_grad_norm(&mut views, case.max_norm);
        compare(
            &mut failures,
            &format!("clip case {i} total"),
            &[total],
            &[case.total_norm],
        );
        for (j, (ours, torch)) in grads.iter().zip(&case.clipped).enumerate() {
            compare(
                &mut failures,
                &format!("clip case {i} grad {j}"),
                ours,
                torch,
            );
        }
        clipped_any |= case.total_norm > case.max_norm;
    }
    assert_no_failures(&failures);
    assert!(clipped_any, "no case exceeds its max_norm");
}
