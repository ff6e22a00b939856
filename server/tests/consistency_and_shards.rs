//! SSP's bound, the staleness policies, and sharded servers, driven by plain calls.

mod support;
use support::{gradient, push_uniform};

use downpour_core::ParamSet;
use downpour_core::Push;
use downpour_core::partition::ShardPlan;
use downpour_server::JobSpec;
use downpour_server::job::{ConsistencyMode, StalenessPolicy};
use downpour_server::optim::OptimizerConfig;
use downpour_server::server_core::{PullOutcome, ServerCore, ShardRole};

/// Synthetic classification, softmax regression, batch 4: many steps per epoch.
fn spec(mode: ConsistencyMode, workers: usize) -> JobSpec {
    let mut spec = JobSpec::from_toml(
        r#"
[model]
kind = "softmax_regression"
[data]
kind = "synthetic_classification"
samples = 240
features = 6
classes = 3
[training]
batch_size = 4
epochs = 2
"#,
    )
    .unwrap();
    spec.training.workers = workers;
    spec.consistency.mode = mode;
    spec
}

/// Drives the job's workers round by round. A fast worker pulls and pushes its next
/// step in one round. Worker 0 is slow: it acts only every `slow_every` rounds, and an
/// action is either a pull or the push of what it pulled, so other workers' updates land
/// between its pull and its push. Returns how many pulls of the fast workers had to wait.
fn drive(c: &mut ServerCore, slow_every: u64) -> u64 {
    let n = c.job().workers();
    let ids: Vec<u32> = (0..n)
        .map(|i| {
            c.register(&format!("w{i}"), None)
                .unwrap()
                .assignment
                .worker_id
        })
        .collect();
    let total = c.job().total_steps();
    let mut next = vec![0u64; n];
    let mut slow_holds: Option<u64> = None; // the version worker 0 pulled and has not pushed yet
    let mut fast_waits = 0;
    for round in 0u64.. {
        if next.iter().all(|&s| s == total) {
            break;
        }
        assert!(round < 100 * total, "no progress");
        for k in 0..n {
            if next[k] == total || (k == 0 && round % slow_every != 0) {
                continue;
            }
            if k == 0
                && let Some(version) = slow_holds.take()
            {
                let g = gradient(c, 0.01);
                c.push(
                    &Push {
                        worker: ids[0],
                        step: next[0],
                        base_version: version,
                        loss: 0.1,
                        samples: 4,
                    },
                    c.schema().conform(g).unwrap(),
                )
                .unwrap();
                next[0] += 1;
                continue;
            }
            match c.pull(ids[k], next[k], false).unwrap() {
                PullOutcome::Ready { version, .. } if k == 0 => slow_holds = Some(version),
                PullOutcome::Ready { version, .. } => {
                    let g = gradient(c, 0.01);
                    c.push(
                        &Push {
                            worker: ids[k],
                            step: next[k],
                            base_version: version,
                            loss: 0.1,
                            samples: 4,
                        },
                        c.schema().conform(g).unwrap(),
                    )
                    .unwrap();
                    next[k] += 1;
                }
                PullOutcome::Wait => fast_waits += u64::from(k != 0),
            }
        }
    }
    fast_waits
}

#[test]
fn ssp_never_applies_a_gradient_staler_than_its_bound_and_fast_workers_wait() {
    for tau in [0, 2, 5] {
        let mut s = spec(ConsistencyMode::Ssp, 3);
        s.consistency.staleness = Some(tau);
        let mut c = ServerCore::new(s.validate().unwrap());
        let waits = drive(&mut c, 3);
        let status = c.status(0.0);
        assert!(
            status.step_staleness.max <= tau,
            "tau {tau}: max step staleness {}",
            status.step_staleness.max
        );
        assert!(waits > 0, "tau {tau}: the fast workers never waited");
        assert!(status.step_staleness.count == 3 * c.job().total_steps());
        if tau > 0 {
            assert_eq!(
                status.step_staleness.max, tau,
                "the slow worker's gradients reach the bound"
            );
        }
    }
}

#[test]
fn async_lets_fast_workers_run_ahead_and_the_slow_worker_is_staler() {
    let mut c = ServerCore::new(spec(ConsistencyMode::Async, 3).validate().unwrap());
    let waits = drive(&mut c, 3);
    assert_eq!(waits, 0, "async never holds a pull");
    let status = c.status(0.0);
    let slow = &status.workers[0];
    let fast = &status.workers[1];
    assert!(
        slow.staleness.mean() > 2.0 * fast.staleness.mean(),
        "slow {} fast {}",
        slow.staleness.mean(),
        fast.staleness.mean()
    );
    assert!(
        status.step_staleness.max > 5,
        "async is unbounded: {}",
        status.step_staleness.max
    );
}

fn sgd_job(policy: StalenessPolicy, max_staleness: Option<u64>) -> ServerCore {
    let mut s = spec(ConsistencyMode::Async, 2);
    s.optimizer = OptimizerConfig::with_defaults("sgd").unwrap();
    s.optimizer
        .apply_overrides(&downpour_server::optim::OptimizerOverrides {
            lr: Some(0.1),
            ..Default::default()
        })
        .unwrap();
    s.consistency.policy = policy;
    s.consistency.max_staleness = max_staleness;
    ServerCore::new(s.validate().unwrap())
}

fn bias0(c: &ServerCore) -> f32 {
    c.params().get("linear.bias").unwrap().data()[0]
}

#[test]
fn the_drop_policy_discards_gradients_staler_than_its_limit() {
    let mut c = sgd_job(StalenessPolicy::Drop, Some(1));
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    for step in 0..3 {
        let v = c.version();
        push_uniform(
            &mut c,
            &Push {
                worker: a,
                step,
                base_version: v,
                loss: 0.1,
                samples: 4,
            },
            1.0,
        )
        .unwrap();
    }
    let before = bias0(&c);
    // b's gradient was computed from version 0; 3 updates have been applied since.
    let out = push_uniform(
        &mut c,
        &Push {
            worker: b,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 4,
        },
        1.0,
    )
    .unwrap();
    assert!(out.dropped);
    assert_eq!(out.staleness, 3);
    assert_eq!(bias0(&c), before, "a dropped gradient changes nothing");
    // One within the limit is applied.
    let v = c.version() - 1;
    let out = push_uniform(
        &mut c,
        &Push {
            worker: b,
            step: 1,
            base_version: v,
            loss: 0.1,
            samples: 4,
        },
        1.0,
    )
    .unwrap();
    assert!(!out.dropped);
    assert!((bias0(&c) - (before - 0.1)).abs() < 1e-6);
    assert_eq!(c.status(0.0).workers[1].dropped, 1);
}

#[test]
fn the_damp_policy_scales_the_learning_rate_by_one_over_one_plus_staleness() {
    let mut c = sgd_job(StalenessPolicy::Damp, None);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    let start = bias0(&c);
    push_uniform(
        &mut c,
        &Push {
            worker: a,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 4,
        },
        1.0,
    )
    .unwrap();
    let fresh_step = start - bias0(&c);
    assert!(
        (fresh_step - 0.1).abs() < 1e-6,
        "staleness 0: full lr, got {fresh_step}"
    );
    for step in 1..3 {
        let v = c.version();
        push_uniform(
            &mut c,
            &Push {
                worker: a,
                step,
                base_version: v,
                loss: 0.1,
                samples: 4,
            },
            1.0,
        )
        .unwrap();
    }
    let before = bias0(&c);
    let out = push_uniform(
        &mut c,
        &Push {
            worker: b,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 4,
        },
        1.0,
    )
    .unwrap();
    assert_eq!(out.staleness, 3);
    let damped = before - bias0(&c);
    assert!(
        (damped - 0.1 / 4.0).abs() < 1e-6,
        "staleness 3: lr / 4, got {damped}"
    );
}

/// Runs the same sync job on `shards` server shards and returns the assembled final weights.
fn sharded_sync_run(shards: usize) -> ParamSet {
    let job = spec(ConsistencyMode::Sync, 2).validate().unwrap();
    let plan = ShardPlan::new(&job.layout, shards);
    let mut cores: Vec<ServerCore> = (0..shards)
        .map(|index| {
            ServerCore::with_role(
                job.clone(),
                ShardRole {
                    index,
                    count: shards,
                },
            )
        })
        .collect();
    let ids: Vec<u32> = (0..2)
        .map(|i| {
            cores[0]
                .register(&format!("w{i}"), None)
                .unwrap()
                .assignment
                .worker_id
        })
        .collect();
    for core in &mut cores[1..] {
        for &id in &ids {
            core.register("w", Some(id)).unwrap();
        }
    }
    let total = job.total_steps();
    for step in 0..total {
        for (k, &id) in ids.iter().enumerate() {
            // A full gradient with awkward, position-dependent values.
            let mut full = plan.zeros();
            for (t, tensor) in full.tensors_mut().enumerate() {
                for (i, v) in tensor.data_mut().iter_mut().enumerate() {
                    *v = ((step as f32 + 1.0) * (i as f32 + 0.37) * (t as f32 + k as f32 + 1.3))
                        .sin()
                        / 3.0;
                }
            }
            for (s, core) in cores.iter_mut().enumerate() {
                let v = core.version();
                core.push(
                    &Push {
                        worker: id,
                        step,
                        base_version: v,
                        loss: 0.1,
                        samples: 4,
                    },
                    core.schema().conform(plan.slice(&full, s)).unwrap(),
                )
                .unwrap();
            }
        }
    }
    let mut assembled = plan.zeros();
    for (s, core) in cores.iter().enumerate() {
        assert_eq!(core.version(), total);
        plan.write_part(&mut assembled, s, core.params());
    }
    assembled
}

#[test]
fn sync_results_are_bit_identical_with_one_or_three_shards() {
    let bits = |p: &ParamSet| -> Vec<u32> {
        p.entries()
            .iter()
            .flat_map(|e| e.tensor.data().iter().map(|v| v.to_bits()))
            .collect()
    };
    let one = sharded_sync_run(1);
    assert_eq!(bits(&one), bits(&sharded_sync_run(2)));
    assert_eq!(bits(&one), bits(&sharded_sync_run(3)));
}

#[test]
fn only_shard_zero_assigns_ids_and_evaluates() {
    let job = spec(ConsistencyMode::Sync, 1).validate().unwrap();
    let mut other = ServerCore::with_role(job.clone(), ShardRole { index: 1, count: 2 });
    assert!(
        other
            .register("w", None)
            .unwrap_err()
            .to_string()
            .contains("send the worker id")
    );
    let mut zero = ServerCore::with_role(job, ShardRole { index: 0, count: 2 });
    assert_eq!(
        zero.register("w", Some(3)).unwrap_err().to_string(),
        "unknown worker id 3",
        "shard 0 only takes back ids it assigned"
    );
    let id = zero.register("w", None).unwrap().assignment.worker_id;
    other.register("w", Some(id)).unwrap();
    other.register("w", Some(id)).unwrap(); // a retry is harmless
    assert_eq!(other.status(0.0).workers.len(), 1);
}
