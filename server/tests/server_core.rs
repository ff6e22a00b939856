//! The server's logic driven by plain calls: no network, no clock.

mod support;
use support::{gradient, push_uniform};

use downpour_core::Push;
use downpour_core::data::DatasetKind;
use downpour_core::model_spec::ModelKind;
use downpour_core::schema::SchemaError;
use downpour_core::status::{Evaluation, WorkerState};
use downpour_core::{BatchSize, DataSpec, NamedTensor, ParamSet, Tensor};
use downpour_server::JobSpec;
use downpour_server::job::ConsistencyMode;
use downpour_server::robustness::GradientError;
use downpour_server::server_core::{CoreError, PullOutcome, ServerCore};

/// XOR with a 2-4-2 MLP, full batch: one step per epoch, `epochs` steps in all.
fn core(mode: ConsistencyMode, workers: usize, epochs: usize) -> ServerCore {
    let mut spec = JobSpec::default();
    spec.model.kind = ModelKind::Mlp;
    spec.model.hidden = vec![4];
    spec.data = DataSpec::builtin(DatasetKind::Xor);
    spec.data.test_fraction = 0.0;
    spec.training.batch_size = BatchSize::Samples(1);
    spec.training.epochs = epochs;
    spec.training.workers = workers;
    spec.consistency.mode = mode;
    ServerCore::new(spec.validate().expect("valid job"))
}

fn ready(outcome: PullOutcome) -> u64 {
    match outcome {
        PullOutcome::Ready { version, .. } => version,
        PullOutcome::Wait => panic!("expected Ready"),
    }
}

#[test]
fn sync_waits_for_every_worker_then_applies_the_average() {
    let mut c = core(ConsistencyMode::Sync, 2, 3);
    let a = c.register("a", None).unwrap().assignment;
    assert_eq!(
        c.pull(a.worker_id, 0, false).unwrap(),
        PullOutcome::Wait,
        "training starts when all registered"
    );
    let b = c.register("b", None).unwrap().assignment;
    assert_eq!(ready(c.pull(a.worker_id, 0, false).unwrap()), 0);
    let before = c.params().clone();

    let g = gradient(&c, 1.0);
    let out = c
        .push(
            &Push {
                worker: a.worker_id,
                step: 0,
                base_version: 0,
                loss: 0.5,
                samples: 1,
            },
            c.schema().conform(g.clone()).unwrap(),
        )
        .unwrap();
    assert_eq!(out.version, 0, "the step waits for worker b");
    assert_eq!(c.params(), &before);
    assert_eq!(c.pull(a.worker_id, 1, false).unwrap(), PullOutcome::Wait);

    let out = push_uniform(
        &mut c,
        &Push {
            worker: b.worker_id,
            step: 0,
            base_version: 0,
            loss: 0.7,
            samples: 1,
        },
        3.0,
    )
    .unwrap();
    assert_eq!(out.version, 1);
    assert_eq!(ready(c.pull(a.worker_id, 1, false).unwrap()), 1);
    assert_ne!(c.params(), &before);
}

#[test]
fn sync_results_do_not_depend_on_arrival_order() {
    let run = |order: [usize; 3]| {
        let mut c = core(ConsistencyMode::Sync, 3, 4);
        let ids: Vec<u32> = (0..3)
            .map(|i| {
                c.register(&format!("w{i}"), None)
                    .unwrap()
                    .assignment
                    .worker_id
            })
            .collect();
        for step in 0..4u64 {
            for &k in &order {
                // Different, awkward values per worker so the f32 sum is order-sensitive.
                let v = [1.0e3_f32, 1.0e-3, -0.333_333][k] * (step as f32 + 1.0);
                let version = c.version();
                push_uniform(
                    &mut c,
                    &Push {
                        worker: ids[k],
                        step,
                        base_version: version,
                        loss: 0.1,
                        samples: 1,
                    },
                    v,
                )
                .unwrap();
            }
        }
        c.params().clone()
    };
    let a = run([0, 1, 2]);
    let b = run([2, 0, 1]);
    let c = run([1, 2, 0]);
    let bits = |p: &ParamSet| -> Vec<u32> {
        p.entries()
            .iter()
            .flat_map(|e| e.tensor.data().iter().map(|v| v.to_bits()))
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(bits(&a), bits(&c));
}

#[test]
fn async_applies_each_gradient_and_records_staleness() {
    let mut c = core(ConsistencyMode::Async, 2, 5);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: a,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap()
        .version,
        1
    );
    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: a,
                step: 1,
                base_version: 1,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap()
        .version,
        2
    );
    // b computed from version 0 while a pushed twice: staleness 2.
    let out = push_uniform(
        &mut c,
        &Push {
            worker: b,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    assert_eq!((out.version, out.staleness), (3, 2));
    let status = c.status(1.0);
    assert_eq!(status.staleness.max, 2);
    assert_eq!(status.workers[1].staleness.histogram[2], 1);
    assert_eq!(status.workers[0].staleness.histogram[0], 2);
}

#[test]
fn bad_pushes_are_refused_and_change_nothing() {
    let mut c = core(ConsistencyMode::Async, 1, 5);
    let w = c.register("w", None).unwrap().assignment.worker_id;
    let before = c.params().clone();

    // Which tensors a gradient holds is the schema's check, before the core.
    let mut unknown = gradient(&c, 1.0).into_entries();
    unknown[0].name = "layers.9.weight".into();
    let err = c.schema().conform(ParamSet::new(unknown)).unwrap_err();
    assert!(
        matches!(err, SchemaError::UnknownTensor { ref name, .. } if name == "layers.9.weight")
    );

    let mut wrong = gradient(&c, 1.0).into_entries();
    wrong[0].tensor = Tensor::zeros(&[3, 3]);
    let err = c.schema().conform(ParamSet::new(wrong)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor layers.0.weight: expected shape [4, 2], got [3, 3]"
    );

    let mut missing = gradient(&c, 1.0).into_entries();
    missing.pop();
    let err = c.schema().conform(ParamSet::new(missing)).unwrap_err();
    assert_eq!(err.to_string(), "gradient for layers.1.bias is missing");

    let err = c
        .push(
            &Push {
                worker: w,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 4,
            },
            c.schema().conform(ParamSet::default()).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("worker {w} sent no gradient for a batch of 4 samples")
    );

    let mut nan = gradient(&c, 1.0);
    nan.get_mut("layers.1.bias").unwrap().data_mut()[1] = f32::NAN;
    let err = c
        .push(
            &Push {
                worker: w,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 1,
            },
            c.schema().conform(nan).unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor layers.1.bias: value NaN at index 1 is not finite"
    );

    let mut inf = gradient(&c, 1.0);
    inf.get_mut("layers.0.bias").unwrap().data_mut()[0] = f32::NEG_INFINITY;
    assert!(matches!(
        c.push(
            &Push {
                worker: w,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 1
            },
            c.schema().conform(inf).unwrap()
        ),
        Err(CoreError::Gradient(GradientError::NonFinite { .. }))
    ));

    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: 99,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap_err(),
        CoreError::UnknownWorker(99)
    );
    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: w,
                step: 3,
                base_version: 0,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap_err(),
        CoreError::OutOfOrder {
            worker: w,
            step: 3,
            expected: 0
        }
    );
    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: w,
                step: 0,
                base_version: 7,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap_err(),
        CoreError::FutureVersion {
            base: 7,
            current: 0
        }
    );

    assert_eq!(c.params(), &before);
    assert_eq!(c.version(), 0);
    assert_eq!(
        c.status(0.0).workers[0].rejected_pushes,
        5,
        "every refusal the core saw but the unknown worker's (the schema's are counted at the edge)"
    );

    c.leave(w).unwrap();
    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: w,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap_err(),
        CoreError::DepartedWorker(w)
    );
    assert_eq!(c.params(), &before);
}

#[test]
fn a_retried_push_is_applied_once() {
    let mut c = core(ConsistencyMode::Async, 1, 5);
    let w = c.register("w", None).unwrap().assignment.worker_id;
    push_uniform(
        &mut c,
        &Push {
            worker: w,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    let after_first = c.params().clone();
    let again = push_uniform(
        &mut c,
        &Push {
            worker: w,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    assert!(again.duplicate);
    assert_eq!(c.version(), 1);
    assert_eq!(c.params(), &after_first);
    // Counted once each, by result (what `downpour_pushes_total{result}` reads).
    let traffic = c.status(0.0).shard;
    assert_eq!(
        (
            traffic.pushes,
            traffic.applied_pushes,
            traffic.duplicate_pushes
        ),
        (2, 1, 1)
    );
    assert_eq!(traffic.dropped_pushes, 0);
}

#[test]
fn an_extra_worker_idles_until_a_data_shard_frees() {
    let mut c = core(ConsistencyMode::Sync, 2, 3);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    let extra = c.register("c", None).unwrap().assignment.worker_id;
    let shards = |c: &mut ServerCore, w: u32| match c.pull(w, 0, false).unwrap() {
        PullOutcome::Ready { data_shards, .. } => data_shards,
        PullOutcome::Wait => panic!("ready"),
    };
    assert_eq!(
        (shards(&mut c, a), shards(&mut c, b), shards(&mut c, extra)),
        (vec![0], vec![1], vec![])
    );
    // The idle worker keeps pace with empty pushes; the step completes with all three.
    push_uniform(
        &mut c,
        &Push {
            worker: a,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    push_uniform(
        &mut c,
        &Push {
            worker: b,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        3.0,
    )
    .unwrap();
    assert_eq!(c.version(), 0, "the idle worker is part of the step");
    c.push(
        &Push {
            worker: extra,
            step: 0,
            base_version: 0,
            loss: 0.0,
            samples: 0,
        },
        c.schema().conform(ParamSet::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(c.version(), 1);
    c.leave(b).unwrap();
    assert_eq!(
        shards(&mut c, extra),
        vec![1],
        "the freed shard goes to the idle worker"
    );
}

#[test]
fn a_silent_worker_is_declared_dead_and_the_step_completes_without_it() {
    use std::time::Duration;
    let mut c = core(ConsistencyMode::Sync, 2, 3);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    c.touch(a, Duration::from_secs(1));
    c.touch(b, Duration::from_secs(1));
    push_uniform(
        &mut c,
        &Push {
            worker: a,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    assert!(
        c.expire(Duration::from_secs(5)).is_empty(),
        "within the 10 s default timeout"
    );
    c.touch(a, Duration::from_secs(11));
    assert_eq!(c.expire(Duration::from_secs(12)), vec![b]);
    assert_eq!(
        c.version(),
        1,
        "the step completed with the worker that pushed"
    );
    let status = c.status(0.0);
    assert_eq!(status.workers[1].state, WorkerState::Dead);
    assert_eq!(
        status.workers[0].data_shards,
        vec![0, 1],
        "the dead worker's data shard moved"
    );
    assert_eq!(
        push_uniform(
            &mut c,
            &Push {
                worker: b,
                step: 0,
                base_version: 0,
                loss: 0.1,
                samples: 1
            },
            1.0
        )
        .unwrap_err(),
        CoreError::DepartedWorker(b)
    );
    // It comes back: it rejoins under its id at the next step.
    let back = c.register("b", Some(b)).unwrap();
    assert_eq!((back.assignment.worker_id, back.start_step), (b, 1));
    assert_eq!(c.status(0.0).workers[1].data_shards, vec![1]);
}

#[test]
fn a_worker_joining_a_running_sync_job_starts_at_the_next_step_and_counts() {
    let mut spec_core = {
        let mut spec = JobSpec::default();
        spec.model.hidden = vec![4];
        spec.data = DataSpec::builtin(DatasetKind::Xor);
        spec.training.batch_size = BatchSize::Samples(1);
        spec.training.epochs = 4;
        spec.training.workers = 2;
        spec.training.min_workers = Some(1);
        ServerCore::new(spec.validate().unwrap())
    };
    let c = &mut spec_core;
    let a = c.register("a", None).unwrap().assignment.worker_id;
    assert!(c.started(), "min_workers = 1");
    push_uniform(
        c,
        &Push {
            worker: a,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 2,
        },
        1.0,
    )
    .unwrap();
    assert_eq!(c.version(), 1, "alone, the first worker drives the steps");
    let joined = c.register("late", None).unwrap();
    assert_eq!(joined.start_step, 1);
    let late = joined.assignment.worker_id;
    push_uniform(
        c,
        &Push {
            worker: a,
            step: 1,
            base_version: 1,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    assert_eq!(c.version(), 1, "the step waits for the newcomer");
    push_uniform(
        c,
        &Push {
            worker: late,
            step: 1,
            base_version: 1,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    assert_eq!(c.version(), 2);
    assert_eq!(c.status(0.0).workers[1].pushes, 1);
}

#[test]
fn a_worker_coming_back_resumes_where_the_server_says() {
    let mut c = core(ConsistencyMode::Async, 1, 5);
    let w = c.register("w", None).unwrap().assignment.worker_id;
    push_uniform(
        &mut c,
        &Push {
            worker: w,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    push_uniform(
        &mut c,
        &Push {
            worker: w,
            step: 1,
            base_version: 1,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    let back = c.register("w", Some(w)).unwrap();
    assert_eq!(back.start_step, 2);
    assert_eq!(
        c.register("x", Some(77)).unwrap_err(),
        CoreError::UnknownWorker(77)
    );
}

#[test]
fn a_departed_worker_no_longer_holds_the_barrier() {
    let mut c = core(ConsistencyMode::Sync, 2, 3);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    push_uniform(
        &mut c,
        &Push {
            worker: a,
            step: 0,
            base_version: 0,
            loss: 0.1,
            samples: 1,
        },
        1.0,
    )
    .unwrap();
    assert_eq!(c.version(), 0);
    c.leave(b).unwrap();
    assert_eq!(
        c.version(),
        1,
        "the step completes with the worker that pushed"
    );
}

#[test]
fn the_end_of_training_is_evaluated_exactly_once() {
    let mut c = core(ConsistencyMode::Sync, 2, 2);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    let total = c.job().total_steps();
    assert_eq!(total, 4, "2 samples per shard, batch 1, 2 epochs");
    for step in 0..total {
        assert_eq!(
            c.pull(a, total, true).unwrap(),
            PullOutcome::Wait,
            "training not over"
        );
        push_uniform(
            &mut c,
            &Push {
                worker: a,
                step,
                base_version: step,
                loss: 0.1,
                samples: 1,
            },
            0.1,
        )
        .unwrap();
        push_uniform(
            &mut c,
            &Push {
                worker: b,
                step,
                base_version: step,
                loss: 0.1,
                samples: 1,
            },
            0.1,
        )
        .unwrap();
    }
    assert_eq!(c.status(0.0).workers[0].state, WorkerState::Finished);
    assert!(c.training_done());
    assert_eq!(
        c.pull(b, total, true).unwrap(),
        PullOutcome::Ready {
            version: 4,
            evaluate: true,
            data_shards: vec![]
        }
    );
    assert_eq!(
        c.pull(a, total, true).unwrap(),
        PullOutcome::Ready {
            version: 4,
            evaluate: false,
            data_shards: vec![]
        }
    );
    assert!(!c.finished());
    let eval = Evaluation {
        worker_id: b,
        version: 4,
        test_loss: 0.3,
        test_accuracy: Some(1.0),
        test_mse: None,
        test_samples: 4,
        is_final: true,
    };
    c.report_evaluation(eval.clone()).unwrap();
    assert!(c.finished());
    let status = c.status(2.0);
    assert_eq!(status.final_evaluation, Some(eval.clone()));
    assert_eq!(status.epochs.len(), 2);
    assert_eq!(status.epochs[1].evaluation, Some(eval));
    assert_eq!(status.samples_trained, 8);
}

#[test]
fn the_lowest_active_worker_evaluates_once_per_epoch() {
    // XOR with batch 1 and 2 workers: 2 samples per shard, 2 steps per epoch.
    let mut c = core(ConsistencyMode::Sync, 2, 3);
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    let mut asked = Vec::new();
    for step in 0..6u64 {
        for w in [b, a] {
            if let PullOutcome::Ready {
                evaluate: true,
                version,
                ..
            } = c.pull(w, step, false).unwrap()
            {
                asked.push((w, version));
            }
        }
        push_uniform(
            &mut c,
            &Push {
                worker: a,
                step,
                base_version: step,
                loss: 0.1,
                samples: 1,
            },
            0.1,
        )
        .unwrap();
        push_uniform(
            &mut c,
            &Push {
                worker: b,
                step,
                base_version: step,
                loss: 0.1,
                samples: 1,
            },
            0.1,
        )
        .unwrap();
    }
    assert_eq!(
        asked,
        vec![(a, 2), (a, 4)],
        "end of epochs 1 and 2; epoch 3 is the final evaluation"
    );
}

#[test]
fn a_named_tensor_set_can_be_conformed_in_any_order() {
    let c = core(ConsistencyMode::Async, 1, 1);
    let mut entries: Vec<NamedTensor> = gradient(&c, 2.0).into_entries();
    entries.reverse();
    let conformed = c.schema().conform(ParamSet::new(entries)).unwrap();
    let names: Vec<&str> = conformed
        .set()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias"
        ]
    );
}
