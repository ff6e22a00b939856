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

/// As [`replay`] for a target that says whether it accepted its input: every seed must be
/// accepted (so its invariants were checked), every regression input refused.
fn replay_accepting(target: &str, check: fn(&[u8]) -> bool) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for (folder, accepted) in [("corpus", true), ("regressions", false)] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("read a corpus file");
            match std::panic::catch_unwind(|| check(&bytes)) {
                Ok(result) => assert_eq!(
                    result,
                    accepted,
                    "{}: expected it {}",
                    path.display(),
                    if accepted { "accepted" } else { "refused" }
                ),
                Err(_) => panic!("{} breaks an invariant of {target}", path.display()),
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
fn job_file_corpus_is_accepted_and_its_regressions_refused() {
    assert!(replay_accepting("job_file", oracles::job_file) >= 12);
}

#[test]
fn csv_corpus_is_accepted_and_keeps_its_invariants() {
    assert!(replay_accepting("csv", oracles::csv) >= 5);
}

#[test]
fn libsvm_corpus_is_accepted_and_its_regressions_refused() {
    assert!(replay_accepting("libsvm", oracles::libsvm) >= 4);
}

#[test]
fn idx_corpus_is_accepted_and_keeps_its_invariants() {
    assert!(replay_accepting("idx", oracles::idx) >= 2);
}

/// Writes the seed corpus, `fuzz/corpus/<target>/`: a few small valid inputs per target.
/// The files are committed; run this only to change them:
/// `cargo test --test integration fuzz_corpus::write_the_seed_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_the_seed_corpus() {
    seeds::pieces();
    seeds::pieces_proto();
    seeds::job_file();
    seeds::text_parsers();
    seeds::idx();
}

/// The seed inputs of each target.
mod seeds {
    use std::fs;
    use std::path::Path;

    use super::oracles::{grpc_body, model};
    use downpour_core::data::idx::{IMAGES_MAGIC, LABELS_MAGIC, encode};
    use downpour_core::{NamedTensor, ParamSet, Tensor};
    use downpour_proto::pieces::ParamPieces;
    use downpour_proto::v1;

    fn write(target: &str, name: &str, bytes: &[u8]) {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        fs::create_dir_all(&folder).expect("create the corpus folder");
        fs::write(folder.join(name), bytes).expect("write a seed");
    }

    /// `options` then `text`: the data-parser targets' input.
    fn with_options(options: u8, text: &str) -> Vec<u8> {
        let mut bytes = vec![options];
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    /// The model's shapes with values 0, 1, 2, ...
    fn filled_model() -> ParamSet {
        let mut k = 0.0;
        ParamSet::new(
            model()
                .into_entries()
                .into_iter()
                .map(|e| NamedTensor {
                    name: e.name,
                    tensor: Tensor::new(
                        e.tensor.shape().to_vec(),
                        (0..e.tensor.len())
                            .map(|_| {
                                k += 1.0;
                                k
                            })
                            .collect(),
                    )
                    .expect("the model's shape"),
                })
                .collect(),
        )
    }

    pub(super) fn pieces_proto() {
        let set = filled_model();
        for piece_bytes in [16, 1024] {
            let groups: Vec<Vec<v1::Tensor>> = ParamPieces::new(&set, piece_bytes).collect();
            let count = groups.len();
            let requests: Vec<v1::ExchangeRequest> = groups
                .iter()
                .enumerate()
                .map(|(i, g)| v1::ExchangeRequest {
                    header: (i == 0).then_some(v1::PushHeader {
                        worker_id: 1,
                        step: 3,
                        base_version: 2,
                        loss: 0.5,
                        samples: 32,
                        phases: None,
                        next_step: Some(4),
                        session: String::new(),
                    }),
                    gradients: g.clone(),
                    last: i + 1 == count,
                })
                .collect();
            let replies: Vec<v1::ExchangeReply> = groups
                .iter()
                .enumerate()
                .map(|(i, g)| v1::ExchangeReply {
                    header: (i == 0).then(|| v1::ExchangeHeader {
                        version: 4,
                        ..Default::default()
                    }),
                    params: g.clone(),
                    last: i + 1 == count,
                })
                .collect();
            let pulls: Vec<v1::PullResponse> = groups
                .iter()
                .map(|g| v1::PullResponse {
                    params: g.clone(),
                    ..Default::default()
                })
                .collect();
            for (kind, body) in [
                (0u8, grpc_body(&requests)),
                (1, grpc_body(&replies)),
                (2, grpc_body(&pulls)),
            ] {
                let mut bytes = vec![kind];
                bytes.extend_from_slice(&body);
                write(
                    "pieces_proto",
                    &format!("kind{kind}_pieces{piece_bytes}"),
                    &bytes,
                );
            }
        }
    }

    pub(super) fn job_file() {
        for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .expect("the examples folder")
        {
            let path = entry.expect("an example").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let name = path
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .to_string();
                write(
                    "job_file",
                    &name,
                    &fs::read(&path).expect("read an example"),
                );
            }
        }
        write("job_file", "empty.toml", b"");
        write(
        "job_file",
        "xor.toml",
        b"[model]\nkind = \"mlp\"\nhidden = [4]\n\n[data]\nkind = \"xor\"\n\n[training]\nbatch_size = \"full\"\nepochs = 2\nworkers = 1\n",
    );
        write(
        "job_file",
        "synthetic.toml",
        b"[model]\nkind = \"linear_regression\"\n\n[data]\nkind = \"synthetic_linear\"\nsamples = 40\nfeatures = 3\nnoise = 0.1\n\n[training]\nbatch_size = 8\nepochs = 1\nworkers = 2\n\n[optimizer]\nname = \"sgd\"\nlr = 0.1\n\n[consistency]\nmode = \"ssp\"\nstaleness = 2\n",
    );
        write(
        "job_file",
        "libsvm.toml",
        b"[model]\nkind = \"softmax_regression\"\n\n[data]\nkind = \"libsvm\"\npath = \"train.svm\"\nfeatures = 4\n",
    );
    }

    pub(super) fn text_parsers() {
        let iris: String = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/iris.csv"),
        )
        .expect("iris.csv")
        .lines()
        .take(8)
        .chain(["7,3.2,4.7,1.4,versicolor"])
        .collect::<Vec<_>>()
        .join("\n");
        // Option bits: 1 regression, 2 no header, 4..12 label column choice.
        write("csv", "iris_names", &with_options(0, &iris));
        write("csv", "iris_by_name", &with_options(3 << 2, &iris));
        write(
            "csv",
            "no_header",
            &with_options(2, "1,2,0\n3,4,1\n\n5,6,2\r\n"),
        );
        write(
            "csv",
            "regression_first_column",
            &with_options(1 | (1 << 2), "y,a,b\n0.5,1,2\n1.5,\"3\",4\n"),
        );
        write(
            "csv",
            "bom",
            &with_options(0, "\u{feff}a,label\n1e-3,1\n-2,0\n"),
        );
        // Option bits: 1 regression, the rest a feature count (0: none).
        write(
            "libsvm",
            "signed",
            &with_options(0, "+1 1:0.5 3:2\n-1 2:-1 # c\n1 qid:3 3:1e-1\n"),
        );
        write(
            "libsvm",
            "classes",
            &with_options(8 << 1, "0 1:1\n2 4:0.25 8:1\n1 2:3\n"),
        );
        write(
            "libsvm",
            "regression",
            &with_options(1, "0.5 1:1 2:2\n-3.25 2:1\n"),
        );
    }

    pub(super) fn idx() {
        let pixels: Vec<u8> = (0..18).map(|p| p * 14).collect();
        let images = encode(IMAGES_MAGIC, &[3, 2, 3], &pixels);
        let labels = encode(LABELS_MAGIC, &[3], &[2, 0, 1]);
        let mut bytes = (images.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&images);
        bytes.extend_from_slice(&labels);
        write("idx", "three_2x3", &bytes);
        let images = encode(IMAGES_MAGIC, &[1, 1, 1], &[255]);
        let labels = encode(LABELS_MAGIC, &[1], &[9]);
        let mut bytes = (images.len() as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&images);
        bytes.extend_from_slice(&labels);
        write("idx", "one_pixel", &bytes);
    }

    /// `pieces` reads its input through `arbitrary`: any bytes are an input; a few seeds of
    /// varied bytes start it off.
    pub(super) fn pieces() {
        for (i, len) in [16usize, 64, 256].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| (j * 37 + i * 11) as u8).collect();
            write("pieces", &format!("bytes{len}"), &bytes);
        }
    }
}
