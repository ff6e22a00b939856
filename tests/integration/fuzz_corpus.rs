//! The fuzz targets' corpus and regression files, replayed on stable Rust: every file in
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! function its fuzz target calls (`fuzz/src/lib.rs`, included here, so each invariant
//! is written once), which panics when an invariant breaks. CI checks the corpus without
//! nightly or cargo-fuzz; docs/fuzzing.md says how the files were found.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod oracles;

use std::path::Path;

/// Feeds every corpus and regression file of `target` to `check`; returns how many there
/// were, naming the file that broke an invariant.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.expect("a corpus entry").path()).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).expect("read a corpus file");
            if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                panic!("{} breaks an invariant of {target}", path.display());
            }
            count += 1;
        }
    }
    count
}

#[test]
fn pieces_corpus_keeps_its_invariants() {
    assert!(replay("pieces", oracles::pieces) >= 3);
}

#[test]
fn pieces_proto_corpus_keeps_its_invariants() {
    assert!(replay("pieces_proto", oracles::pieces_proto) >= 6);
}

#[test]
fn job_file_corpus_keeps_its_invariants() {
    assert!(replay("job_file", oracles::job_file) >= 6);
}

#[test]
fn csv_corpus_keeps_its_invariants() {
    assert!(replay("csv", oracles::csv) >= 5);
}

#[test]
fn libsvm_corpus_keeps_its_invariants() {
    assert!(replay("libsvm", oracles::libsvm) >= 3);
}

#[test]
fn idx_corpus_keeps_its_invariants() {
    assert!(replay("idx", oracles::idx) >= 2);
}
