//! What a peer may make the core hold (names, worker records, counters, evaluations), and
//! a finished job that stays finished: plain calls, no network.

mod support;
use support::push_uniform;

use std::time::Duration;

use downpour_core::data::DatasetKind;
use downpour_core::model_spec::ModelKind;
use downpour_core::status::{Evaluation, WorkerState};
use downpour_core::{BatchSize, DataSpec, Push};
use downpour_server::JobSpec;
use downpour_server::job::ConsistencyMode;
use downpour_server::limits::MAX_NAME_BYTES;
use downpour_server::server_core::{CoreError, PullOutcome, ServerCore};

/// XOR with a 2-4-2 MLP, batches of 4 (the whole shard): one step per epoch.
fn spec(mode: ConsistencyMode, workers: usize, epochs: usize) -> JobSpec {
    let mut spec = JobSpec::default();
    spec.model.kind = ModelKind::Mlp;
    spec.model.hidden = vec![4];
    spec.data = DataSpec::builtin(DatasetKind::Xor);
    spec.data.test_fraction = 0.0;
    spec.training.batch_size = BatchSize::Samples(4);
    spec.training.epochs = epochs;
    spec.training.workers = workers;
    spec.consistency.mode = mode;
    spec
}

fn core(spec: JobSpec) -> ServerCore {
    ServerCore::new(spec.validate().expect("valid job"))
}

fn push(worker: u32, step: u64, samples: u64) -> Push {
    Push {
        worker,
        step,
        base_version: 0,
        loss: 0.5,
        samples,
    }
}

fn evaluation(worker: u32, version: u64, is_final: bool) -> Evaluation {
    Evaluation {
        worker_id: worker,
        version,
        test_loss: 0.3,
        test_accuracy: Some(0.75),
        test_mse: None,
        test_samples: 4,
        is_final,
    }
}

/// A one-worker async job trained to its end and evaluated: finished.
fn finished_core() -> (ServerCore, u32) {
    let mut c = core(spec(ConsistencyMode::Async, 1, 2));
    let w = c.register("w", None).unwrap().assignment.worker_id;
    let total = c.job().total_steps();
    for step in 0..total {
        assert!(matches!(
            c.pull(w, step, false).unwrap(),
            PullOutcome::Ready { .. }
        ));
        push_uniform(&mut c, &push(w, step, 4), 0.1).unwrap();
    }
    assert!(matches!(
        c.pull(w, total, true).unwrap(),
        PullOutcome::Ready { evaluate: true, .. }
    ));
    let version = c.version();
    c.report_evaluation(evaluation(w, version, true)).unwrap();
    assert!(c.finished());
    (c, w)
}

#[test]
fn worker_names_longer_than_the_bound_are_refused_and_change_nothing() {
    let mut c = core(spec(ConsistencyMode::Async, 2, 1));
    let huge = "n".repeat(8 << 20);
    let err = c.register(&huge, None).unwrap_err();
    assert_eq!(err, CoreError::NameTooLong { len: 8 << 20 });
    assert_eq!(
        err.to_string(),
        "worker name of 8388608 bytes; at most 256 are accepted"
    );
    assert!(c.status(0.0).workers.is_empty());
    let longest = "n".repeat(MAX_NAME_BYTES);
    assert_eq!(c.register(&longest, None).unwrap().assignment.worker_id, 0);
}

#[test]
fn registrations_beyond_max_workers_are_refused_until_dead_records_are_folded() {
    let mut s = spec(ConsistencyMode::Async, 1, 5);
    s.limits.max_workers = 3;
    s.limits.fold_dead_after_seconds = 30.0;
    s.fault_tolerance.heartbeat_timeout = 10.0;
    let mut c = core(s);
    for i in 0..3 {
        let id = c
            .register(&format!("w{i}"), None)
            .unwrap()
            .assignment
            .worker_id;
        c.touch(id, Duration::ZERO);
    }
    let full = c.register("w3", None).unwrap_err();
    assert_eq!(full, CoreError::TooManyWorkers { limit: 3 });
    // A known worker coming back is not a new record: still accepted.
    assert_eq!(c.register("w0", Some(0)).unwrap().assignment.worker_id, 0);
    // Dead after 10 s, still listed; folded 30 s later.
    assert_eq!(c.expire(Duration::from_secs(11)).len(), 3);
    assert_eq!(c.status(11.0).workers.len(), 3);
    assert!(c.register("w3", None).is_err());
    c.expire(Duration::from_secs(39));
    assert_eq!(c.status(39.0).workers.len(), 3, "not yet 40 s silent");
    c.expire(Duration::from_secs(41));
    let status = c.status(41.0);
    assert!(status.workers.is_empty());
    assert_eq!(status.dead_workers_folded, 3);
    // Room again; a folded worker that comes back under its old id registers afresh.
    assert_eq!(
        c.register("w0", Some(0)).unwrap_err(),
        CoreError::UnknownWorker(0)
    );
    let fresh = c.register("w3", None).unwrap().assignment.worker_id;
    assert_eq!(fresh, 3, "ids are never reused");
}

#[test]
fn the_status_of_many_workers_that_registered_and_died_stays_small() {
    let mut s = spec(ConsistencyMode::Async, 1, 5);
    s.limits.fold_dead_after_seconds = 1.0;
    s.fault_tolerance.heartbeat_timeout = 1.0;
    let mut c = core(s);
    let name = "x".repeat(MAX_NAME_BYTES);
    for round in 0..20u64 {
        for _ in 0..500 {
            let id = c.register(&name, None).unwrap().assignment.worker_id;
            c.touch(id, Duration::from_secs(round * 10));
        }
        c.expire(Duration::from_secs(round * 10 + 5));
    }
    c.expire(Duration::from_secs(1000));
    let status = c.status(0.0);
    assert_eq!(status.dead_workers_folded, 10_000);
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.len() < 64 * 1024, "{} bytes", json.len());
}

#[test]
fn counters_a_peer_pushes_saturate_instead_of_wrapping() {
    let mut c = core(spec(ConsistencyMode::Async, 1, 3));
    let w = c.register("w", None).unwrap().assignment.worker_id;
    for step in 0..2 {
        push_uniform(&mut c, &push(w, step, u64::MAX - 1), 0.0).unwrap();
    }
    c.record_traffic(u64::MAX - 1, u64::MAX - 1);
    c.record_traffic(5, 5);
    let status = c.status(0.0);
    assert_eq!(status.samples_trained, u64::MAX);
    assert_eq!(status.workers[0].samples, u64::MAX);
    assert_eq!(status.shard.bytes_received, u64::MAX);
    assert_eq!(status.shard.bytes_sent, u64::MAX);
    assert_eq!(status.workers[0].pushes, 2);
}

#[test]
fn evaluation_reports_are_checked_and_a_refused_one_changes_nothing() {
    let mut c = core(spec(ConsistencyMode::Async, 2, 3));
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    let nan = Evaluation {
        test_loss: f64::NAN,
        ..evaluation(a, 0, false)
    };
    assert!(matches!(
        c.report_evaluation(nan).unwrap_err(),
        CoreError::Evaluation { worker: 0, .. }
    ));
    let perfect = Evaluation {
        test_accuracy: Some(1.5),
        ..evaluation(a, 0, false)
    };
    assert_eq!(
        c.report_evaluation(perfect).unwrap_err().to_string(),
        "evaluation from worker 0: test_accuracy must be finite, in [0, 1], got 1.5"
    );
    assert_eq!(
        c.report_evaluation(evaluation(7, 0, false)).unwrap_err(),
        CoreError::UnknownWorker(7)
    );
    assert!(matches!(
        c.report_evaluation(evaluation(a, 99, false)).unwrap_err(),
        CoreError::FutureVersion { base: 99, .. }
    ));
    // A final evaluation before training is over, or from a worker not asked for it.
    assert_eq!(
        c.report_evaluation(evaluation(b, 0, true)).unwrap_err(),
        CoreError::EvaluationRefused {
            worker: b,
            reason: "training is not over"
        }
    );
    c.leave(b).unwrap();
    assert_eq!(
        c.report_evaluation(evaluation(b, 0, false)).unwrap_err(),
        CoreError::DepartedWorker(b)
    );
    let status = c.status(0.0);
    assert!(status.evaluations.is_empty());
    assert!(status.final_evaluation.is_none());
    c.report_evaluation(evaluation(a, 0, false)).unwrap();
    assert_eq!(c.status(0.0).evaluations.len(), 1);
}

#[test]
fn only_the_worker_asked_reports_the_final_evaluation_and_only_once() {
    let mut c = core(spec(ConsistencyMode::Async, 2, 1));
    let a = c.register("a", None).unwrap().assignment.worker_id;
    let b = c.register("b", None).unwrap().assignment.worker_id;
    let total = c.job().total_steps();
    for w in [a, b] {
        for step in 0..total {
            push_uniform(&mut c, &push(w, step, 2), 0.1).unwrap();
        }
    }
    assert!(matches!(
        c.pull(b, total, true).unwrap(),
        PullOutcome::Ready { evaluate: true, .. }
    ));
    let version = c.version();
    assert_eq!(
        c.report_evaluation(evaluation(a, version, true))
            .unwrap_err(),
        CoreError::EvaluationRefused {
            worker: a,
            reason: "another worker was asked for the final evaluation"
        }
    );
    assert!(!c.finished());
    c.report_evaluation(evaluation(b, version, true)).unwrap();
    assert!(c.finished());
    let again = Evaluation {
        test_accuracy: Some(1.0),
        ..evaluation(b, version, true)
    };
    assert_eq!(
        c.report_evaluation(again).unwrap_err(),
        CoreError::JobFinished
    );
    assert_eq!(
        c.status(0.0).final_evaluation.unwrap().test_accuracy,
        Some(0.75)
    );
}

#[test]
fn a_finished_job_refuses_register_push_and_pull_and_stays_finished() {
    let (mut c, w) = finished_core();
    let before = c.status(0.0);
    let params = c.params().clone();
    let err = c.register("late", None).unwrap_err();
    assert_eq!(err, CoreError::JobFinished);
    assert!(err.to_string().starts_with("job finished"), "{err}");
    assert_eq!(
        c.register("w", Some(w)).unwrap_err(),
        CoreError::JobFinished
    );
    assert_eq!(c.pull(w, 0, false).unwrap_err(), CoreError::JobFinished);
    assert_eq!(
        push_uniform(&mut c, &push(w, 0, 4), 1.0).unwrap_err(),
        CoreError::JobFinished
    );
    // The final pull of a member still answers (a worker finishing its own exit).
    assert!(matches!(
        c.pull(w, c.job().total_steps(), true).unwrap(),
        PullOutcome::Ready {
            evaluate: false,
            ..
        }
    ));
    // A worker declared dead long after the end does not re-open the job either.
    c.expire(Duration::from_secs(3600));
    assert!(c.finished());
    assert_eq!(
        c.register("w", Some(w)).unwrap_err(),
        CoreError::JobFinished
    );
    let after = c.status(0.0);
    assert!(after.finished);
    assert_eq!(after.version, before.version);
    assert_eq!(after.samples_trained, before.samples_trained);
    assert_eq!(c.params(), &params);
    assert!(
        after.workers.iter().all(|s| s.state != WorkerState::Active),
        "{:?}",
        after.workers
    );
}
