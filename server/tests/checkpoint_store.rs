//! The checkpoint store through its public API: round trips, retention, and what happens
//! to truncated, corrupt, foreign and half-written files.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use downpour_core::{NamedTensor, ParamSet, Tensor};
use downpour_server::checkpoint::{
    CheckpointError, CheckpointStore, Snapshot, TensorState, fingerprint,
};

const JOB: &str = "[model]\nkind = \"mlp\"\nhidden = [4]\n";

/// A small Adam-style snapshot of shard 0 of 2 whose values all depend on `version`.
fn snapshot(version: u64) -> Snapshot {
    let v = version as f32;
    let w: Vec<f32> = (0..6).map(|i| v + i as f32 * 0.25).collect();
    let b = vec![-v, v * 0.5];
    let state = |t: &[f32]| TensorState {
        step: version,
        buffers: vec![
            ("exp_avg".into(), t.iter().map(|x| x * 0.1).collect()),
            ("exp_avg_sq".into(), t.iter().map(|x| x * x).collect()),
        ],
    };
    Snapshot {
        job_fingerprint: fingerprint(JOB, 0, 2),
        job_toml: JOB.into(),
        shard_index: 0,
        shard_count: 2,
        version,
        optimizer_state: vec![state(&w), state(&b)],
        params: ParamSet::new(vec![
            NamedTensor {
                name: "layers.0.weight".into(),
                tensor: Tensor::new(vec![2, 3], w).unwrap(),
            },
            NamedTensor {
                name: "layers.0.bias".into(),
                tensor: Tensor::new(vec![2], b).unwrap(),
            },
        ]),
        core_state: serde_json::json!({
            "workers": [{ "id": 1, "step": version }, { "id": 2, "step": version - 1 }],
            "losses": [2.5, 1.25],
        }),
    }
}

fn store_with(dir: &Path, versions: &[u64]) -> (CheckpointStore, Vec<PathBuf>) {
    let store = CheckpointStore::open(dir, 10).unwrap();
    let paths = versions
        .iter()
        .map(|&v| store.save(&snapshot(v)).unwrap())
        .collect();
    (store, paths)
}

fn fp() -> String {
    fingerprint(JOB, 0, 2)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_snapshot_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 3).unwrap();
    let special = [
        -0.0,
        0.0,
        f32::from_bits(0x7fc0_1234), // quiet NaN with a payload
        f32::from_bits(0xffc0_0001), // negative quiet NaN with a payload
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(1), // smallest subnormal
        f32::MAX,
        f32::MIN_POSITIVE,
        -1.5e-7,
    ];
    let mut original = snapshot(42);
    original.params = ParamSet::new(vec![
        NamedTensor {
            name: "special".into(),
            tensor: Tensor::new(vec![2, 5], special.to_vec()).unwrap(),
        },
        NamedTensor {
            name: "scalar".into(),
            tensor: Tensor::new(vec![], vec![f32::from_bits(0x7fc0_0abc)]).unwrap(),
        },
        NamedTensor {
            name: "empty".into(),
            tensor: Tensor::new(vec![0, 3], vec![]).unwrap(),
        },
    ]);
    original.optimizer_state = vec![
        TensorState {
            step: 7,
            buffers: vec![(
                "momentum_buffer".into(),
                special.iter().rev().copied().collect(),
            )],
        },
        TensorState {
            step: 0,
            buffers: vec![],
        },
        TensorState {
            step: 3,
            buffers: vec![("exp_avg".into(), vec![]), ("exp_avg_sq".into(), vec![])],
        },
    ];

    let path = store.save(&original).unwrap();
    assert_eq!(path.file_name().unwrap(), "checkpoint-000000000042.dpck");
    let loaded = CheckpointStore::load(&path, &fp()).unwrap();

    assert_eq!(loaded.job_fingerprint, original.job_fingerprint);
    assert_eq!(loaded.job_toml, original.job_toml);
    assert_eq!((loaded.shard_index, loaded.shard_count), (0, 2));
    assert_eq!(loaded.version, 42);
    assert_eq!(loaded.core_state, original.core_state);
    assert_eq!(loaded.params.len(), original.params.len());
    for (a, b) in loaded
        .params
        .entries()
        .iter()
        .zip(original.params.entries())
    {
        assert_eq!(a.name, b.name);
        assert_eq!(a.tensor.shape(), b.tensor.shape());
        assert_eq!(bits(a.tensor.data()), bits(b.tensor.data()), "{}", a.name);
    }
    assert_eq!(loaded.optimizer_state.len(), original.optimizer_state.len());
    for (a, b) in loaded.optimizer_state.iter().zip(&original.optimizer_state) {
        assert_eq!(a.step, b.step);
        let names = |s: &TensorState| s.buffers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b));
        for ((_, x), (_, y)) in a.buffers.iter().zip(&b.buffers) {
            assert_eq!(bits(x), bits(y));
        }
    }
}

#[test]
fn retention_keeps_exactly_the_newest_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 3).unwrap();
    let mut paths: Vec<PathBuf> = (1..=7)
        .map(|v| store.save(&snapshot(v * 10)).unwrap())
        .collect();
    paths.reverse();
    assert_eq!(store.list().unwrap(), paths[..3]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    let (latest, snap) = store.load_latest(&fp()).unwrap().unwrap();
    assert_eq!(latest, paths[0]);
    assert_eq!(snap.version, 70);
}

#[test]
fn list_orders_by_version_not_by_name_or_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[5, 1_000_000_000_000, 300]);
    assert_eq!(
        store.list().unwrap(),
        [paths[1].as_path(), &paths[2], &paths[0]]
    );
    assert_eq!(
        paths[1].file_name().unwrap(),
        "checkpoint-1000000000000.dpck"
    );
}

#[test]
fn an_empty_directory_has_no_checkpoint_and_is_created_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("run").join("shard-0");
    let store = CheckpointStore::open(&nested, 2).unwrap();
    assert!(nested.is_dir());
    assert!(store.list().unwrap().is_empty());
    assert!(store.load_latest(&fp()).unwrap().is_none());
}

#[test]
fn keeping_zero_checkpoints_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = CheckpointStore::open(dir.path(), 0).unwrap_err();
    assert!(matches!(err, CheckpointError::KeepZero { .. }));
    assert!(err.to_string().contains("keep must be at least 1"), "{err}");
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
    for cut in [0.5, 0.0, 0.999] {
        let dir = tempfile::tempdir().unwrap();
        let (store, paths) = store_with(dir.path(), &[10, 20]);
        let len = fs::metadata(&paths[1]).unwrap().len();
        let file = OpenOptions::new().write(true).open(&paths[1]).unwrap();
        file.set_len((len as f64 * cut) as u64).unwrap();

        let err = CheckpointStore::load(&paths[1], &fp()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.is_damage());
        assert!(
            err.to_string().contains("checkpoint-000000000020.dpck"),
            "{err}"
        );

        let (path, snap) = store.load_latest(&fp()).unwrap().unwrap();
        assert_eq!(path, paths[0], "cut at {cut}");
        assert_eq!(snap, snapshot(10));
    }
}

#[test]
fn a_flipped_byte_is_a_checksum_error_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10, 20]);
    let mut bytes = fs::read(&paths[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&paths[1], &bytes).unwrap();

    let err = CheckpointStore::load(&paths[1], &fp()).unwrap_err();
    assert!(matches!(err, CheckpointError::Checksum { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("checkpoint-000000000020.dpck"),
        "{message}"
    );
    assert!(message.contains("corrupt"), "{message}");

    let (path, snap) = store.load_latest(&fp()).unwrap().unwrap();
    assert_eq!(path, paths[0]);
    assert_eq!(snap, snapshot(10));
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, paths) = store_with(dir.path(), &[10]);
    let original = fs::read(&paths[0]).unwrap();
    for i in (0..original.len()).step_by(7) {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        fs::write(&paths[0], &bytes).unwrap();
        let err = CheckpointStore::load(&paths[0], &fp()).unwrap_err();
        // A flipped version byte reads as another format; everything else is damage.
        assert!(
            err.is_damage() || matches!(err, CheckpointError::UnsupportedVersion { .. }),
            "byte {i}: {err}"
        );
    }
}

#[test]
fn a_checkpoint_of_another_job_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10]);
    for other in [
        fingerprint("[model]\nkind = \"linear\"\n", 0, 2),
        fingerprint(JOB, 1, 2),
        fingerprint(JOB, 0, 3),
    ] {
        assert_ne!(other, fp());
        let err = CheckpointStore::load(&paths[0], &other).unwrap_err();
        let CheckpointError::WrongJob {
            ref expected,
            ref found,
            ..
        } = err
        else {
            panic!("expected WrongJob, got {err}");
        };
        assert_eq!((expected, found), (&other, &fp()));
        assert!(!err.is_damage());
        let message = err.to_string();
        for needle in [
            &other,
            &fp(),
            "different job",
            "checkpoint-000000000010.dpck",
            "kind = \"mlp\"",
        ] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }

        // Not skipped in favour of an older checkpoint: refused.
        let err = store.load_latest(&other).unwrap_err();
        assert!(matches!(err, CheckpointError::WrongJob { .. }), "{err}");
    }
}

#[test]
fn fingerprints_are_stable_and_tell_jobs_and_shards_apart() {
    // Pinned: a change here makes every existing checkpoint unloadable.
    assert_eq!(fingerprint(JOB, 0, 2), "5c1c9e487d845895");
    assert_eq!(fingerprint("", 0, 1).len(), 16);
    assert_ne!(fingerprint(JOB, 0, 2), fingerprint(JOB, 1, 2));
    assert_ne!(fingerprint(JOB, 0, 2), fingerprint(JOB, 0, 1));
    assert_ne!(
        fingerprint(JOB, 0, 2),
        fingerprint(&format!("{JOB} "), 0, 2)
    );
}

#[test]
fn leftover_temporary_files_are_ignored_and_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10, 20]);
    // What a write killed before its rename leaves: a newer, half-written temporary file.
    let full = fs::read(&paths[1]).unwrap();
    let leftover = dir.path().join(".checkpoint-000000000030.dpck.tmp");
    fs::write(&leftover, &full[..full.len() / 2]).unwrap();

    assert_eq!(store.list().unwrap(), [paths[1].clone(), paths[0].clone()]);
    let (path, snap) = store.load_latest(&fp()).unwrap().unwrap();
    assert_eq!(path, paths[1]);
    assert_eq!(snap, snapshot(20));

    let reopened = CheckpointStore::open(dir.path(), 10).unwrap();
    assert!(!leftover.exists());
    assert_eq!(reopened.list().unwrap().len(), 2);
}

#[test]
fn other_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10]);
    for name in [
        "notes.txt",
        "checkpoint-.dpck",
        "checkpoint-12x.dpck",
        "checkpoint-5.dpck.bak",
    ] {
        fs::write(dir.path().join(name), b"x").unwrap();
    }
    assert_eq!(store.list().unwrap(), paths);
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10]);
    let zeroed = dir.path().join("checkpoint-000000000020.dpck");
    fs::write(&zeroed, vec![0u8; 4096]).unwrap();
    let err = CheckpointStore::load(&zeroed, &fp()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::NotACheckpoint { .. }),
        "{err}"
    );
    assert_eq!(store.load_latest(&fp()).unwrap().unwrap().0, paths[0]);
}

#[test]
fn when_every_checkpoint_is_damaged_loading_fails_instead_of_starting_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10, 20]);
    for path in &paths {
        fs::write(path, b"DPCK").unwrap();
    }
    let err = store.load_latest(&fp()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::AllDamaged { count: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("checkpoint-000000000020.dpck"),
        "{err}"
    );
}

#[test]
fn a_newer_format_version_is_refused_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10, 20]);
    let mut bytes = fs::read(&paths[1]).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&paths[1], &bytes).unwrap();
    let err = store.load_latest(&fp()).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_inconsistent_snapshot_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), 2).unwrap();
    let mut bad = snapshot(10);
    bad.optimizer_state.pop();
    let err = store.save(&bad).unwrap_err();
    assert!(matches!(err, CheckpointError::InvalidSnapshot { .. }));
    assert!(
        err.to_string().contains("1 optimizer states for 2 tensors"),
        "{err}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn saving_the_same_version_again_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, paths) = store_with(dir.path(), &[10]);
    let mut again = snapshot(10);
    again.core_state = serde_json::json!({ "final": true });
    assert_eq!(store.save(&again).unwrap(), paths[0]);
    assert_eq!(store.list().unwrap(), paths);
    assert_eq!(CheckpointStore::load(&paths[0], &fp()).unwrap(), again);
}
