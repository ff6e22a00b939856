//! Stopping a sync job, writing a checkpoint, and resuming it gives the same bits as
//! never stopping; the core alone, through the checkpoint files.

use downpour_core::ParamSet;
use downpour_core::Push;
use downpour_server::JobSpec;
use downpour_server::checkpoint::{CheckpointStore, fingerprint};
use downpour_server::server_core::{ServerCore, ShardRole};

fn job() -> downpour_server::Job {
    let spec = JobSpec::from_toml(
        r#"
[model]
kind = "mlp"
hidden = [8]
[data]
kind = "synthetic_classification"
samples = 120
features = 5
classes = 3
[training]
workers = 2
batch_size = 10
epochs = 3
[optimizer]
name = "adam"
lr = 0.01
amsgrad = true
"#,
    )
    .unwrap();
    spec.validate().unwrap()
}

/// A gradient that depends on the parameters (as a real one does): sin of each value
/// times a per-worker factor.
fn gradient(params: &ParamSet, worker: u32, step: u64) -> ParamSet {
    let mut g = params.clone();
    for t in g.tensors_mut() {
        for v in t.data_mut() {
            *v = (*v * (1.3 + worker as f32) + step as f32 * 0.01).sin();
        }
    }
    g
}

fn run_steps(core: &mut ServerCore, ids: &[u32], steps: std::ops::Range<u64>) {
    for step in steps {
        for &id in ids {
            let g = gradient(core.params(), id, step);
            let v = core.version();
            core.push(
                &Push {
                    worker: id,
                    step,
                    base_version: v,
                    loss: 0.5,
                    samples: 10,
                },
                core.schema().conform(g).unwrap(),
            )
            .unwrap();
        }
    }
}

fn bits(p: &ParamSet) -> Vec<u32> {
    p.entries()
        .iter()
        .flat_map(|e| e.tensor.data().iter().map(|v| v.to_bits()))
        .collect()
}

#[test]
fn resuming_a_sync_job_from_a_checkpoint_is_bit_identical() {
    let total = job().total_steps();
    let mut straight = ServerCore::new(job());
    let ids: Vec<u32> = (0..2)
        .map(|_| straight.register("w", None).unwrap().assignment.worker_id)
        .collect();
    run_steps(&mut straight, &ids, 0..total);

    let mut first = ServerCore::new(job());
    for _ in 0..2 {
        first.register("w", None).unwrap();
    }
    let stop_at = total / 2;
    run_steps(&mut first, &ids, 0..stop_at);
    // Half a step more: worker 0 pushed step `stop_at`, worker 1 did not. That gradient is
    // not in the checkpoint, and worker 0 computes it again after the restart.
    let g = gradient(first.params(), ids[0], stop_at);
    first
        .push(
            &Push {
                worker: ids[0],
                step: stop_at,
                base_version: stop_at,
                loss: 0.5,
                samples: 10,
            },
            first.schema().conform(g).unwrap(),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 2).unwrap();
    let toml = job().spec.identity_toml();
    let fp = fingerprint(&toml, 0, 1);
    store.save(&first.snapshot(fp.clone(), toml)).unwrap();
    drop(first);

    let (path, snapshot) = store.load_latest(&fp).unwrap().expect("a checkpoint");
    assert!(path.ends_with(format!("checkpoint-{stop_at:012}.dpck")));
    let mut resumed = ServerCore::resume(
        job(),
        ShardRole::single(),
        snapshot,
        std::time::Duration::ZERO,
    )
    .unwrap();
    for &id in &ids {
        let back = resumed.register("w", Some(id)).unwrap();
        assert_eq!(
            back.start_step, stop_at,
            "every worker redoes the half-collected step"
        );
    }
    run_steps(&mut resumed, &ids, stop_at..total);
    assert_eq!(resumed.version(), straight.version());
    assert_eq!(bits(resumed.params()), bits(straight.params()));
    // Optimizer state came back too: one more identical step stays identical.
    let status = resumed.status(0.0);
    assert_eq!(status.workers.len(), 2);
    assert_eq!(status.epochs.len(), straight.status(0.0).epochs.len());
}
