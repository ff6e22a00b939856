//! What each fuzz target checks: the entry point a peer or a user file reaches, and the
//! invariants its result must keep. The targets in `fuzz_targets/` are one line each
//! over these functions, and the workspace's replay test (`tests/integration/fuzz_corpus.rs`)
//! feeds the committed corpus and regression files to the very same functions, so the
//! rules live here once and CI checks them on stable Rust, without libFuzzer.
//!
//! Every function takes the fuzzer's bytes and panics only when an invariant breaks:
//! bad input must come back as an error, never a panic, and never an allocation sized by
//! a number the input chose. The parsers' and the job file's functions return whether the
//! input was accepted (its result's invariants then checked), so the replay test can
//! tell that the seeds reach them and the regression inputs are refused.
//!
//! # Layout
//! - [`pieces`]: arbitrary sequences of pieces against a fixed model schema, and valid
//!   cuts of sets of that schema, through [`ParamAssembler`].
//! - [`pieces_proto`]: raw gRPC bodies of the Exchange and Pull streams, read by
//!   [`receive_set`] as the server and the worker read them.
//! - [`job_file`]: text parsed and validated as a job file.
//! - [`csv`], [`libsvm`], [`idx`]: the data file parsers.

use std::collections::HashMap;
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use downpour_core::data::csv::{CsvOptions, LabelColumn};
use downpour_core::data::idx::IdxFile;
use downpour_core::data::libsvm::LibsvmOptions;
use downpour_core::data::{Dataset, DatasetKind, Targets, TaskKind};
use downpour_core::schema::TensorSchema;
use downpour_core::{NamedTensor, ParamSet, Tensor};
use downpour_proto::convert::f32_to_le_bytes;
use downpour_proto::limits::MAX_MESSAGE_BYTES;
use downpour_proto::pieces::{
    CarriesPieces, EncodedPieces, ParamAssembler, ParamPieces, receive_set,
};
use downpour_proto::{convert::params_to_wire, v1};
use downpour_server::JobSpec;

/// The model every piece target assembles against: two dense layers, a scalar, and an
/// empty tensor (a model may have one; its single piece carries no value).
#[must_use]
pub fn model() -> ParamSet {
    let tensor = |name: &str, shape: &[usize]| {
        let len = shape.iter().product();
        NamedTensor {
            name: name.to_string(),
            tensor: Tensor::new(shape.to_vec(), vec![0.0; len])
                .expect("len is the shape's product"),
        }
    };
    ParamSet::new(vec![
        tensor("layer0.weight", &[4, 3]),
        tensor("layer0.bias", &[4]),
        tensor("layer1.weight", &[2, 4]),
        tensor("layer1.bias", &[2]),
        tensor("scale", &[]),
        tensor("empty", &[0, 3]),
    ])
}

/// A piece's name: one of the model's, or any string.
#[derive(Debug, Arbitrary)]
pub enum NameChoice {
    /// The model's tensor `index % count`.
    Model(u8),
    /// Any other name.
    Other(String),
}

/// A piece's shape: its tensor's shape in the model, or any list of dimensions.
#[derive(Debug, Arbitrary)]
pub enum ShapeChoice {
    /// The model's shape for the piece's name (or `[1]` for a name it lacks).
    Model,
    /// Any dimensions.
    Other(Vec<u64>),
}

/// Where a piece starts.
#[derive(Debug, Arbitrary)]
pub enum OffsetChoice {
    /// Right after the values sent so far for its name: the piece continues its tensor.
    Continue,
    /// Any offset.
    At(u64),
}

/// One piece as the fuzzer describes it.
#[derive(Debug, Arbitrary)]
pub struct PieceChoice {
    /// Its tensor's name.
    pub name: NameChoice,
    /// The shape it declares.
    pub shape: ShapeChoice,
    /// Where it starts.
    pub offset: OffsetChoice,
    /// How many values it brings.
    pub values: u8,
    /// Bytes beyond the whole values (`% 4`): a ragged length when not 0.
    pub ragged: u8,
}

/// The input of the [`pieces`] target.
#[derive(Debug, Arbitrary)]
pub struct PiecesInput {
    /// Whether the assembler knows the model (the server's) or not (the worker's).
    pub with_schema: bool,
    /// Messages of pieces, in order.
    pub messages: Vec<Vec<PieceChoice>>,
    /// A set of the model's shapes cut into pieces of this many bytes, which must come
    /// back bit for bit.
    pub valid_cut: Option<(u32, u16)>,
}

/// The piece assembler fed the pieces `data` describes, against [`model`].
///
/// Invariants: no panic; an assembled set holds, for each tensor, exactly the values
/// its pieces brought, in order, under a shape whose product is their count; with the
/// schema, every tensor is the model's, with the model's shape. A valid cut of a set of
/// the model's shapes, at any piece size, assembles bit-exactly and conforms, and
/// [`EncodedPieces`] cuts it exactly as [`ParamPieces`] does.
pub fn pieces(data: &[u8]) {
    let Ok(input) = PiecesInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let model = model();
    let schema = Arc::new(TensorSchema::of(&model));
    if let Some((seed, piece_bytes)) = input.valid_cut {
        valid_cut_round_trips(&model, &schema, seed, usize::from(piece_bytes));
    }

    let mut assembler = if input.with_schema {
        ParamAssembler::new().with_schema(Arc::clone(&schema))
    } else {
        ParamAssembler::new()
    };
    let specs = schema.specs();
    // The values sent per name, in order: what an assembled tensor must hold.
    let mut sent: HashMap<String, Vec<f32>> = HashMap::new();
    let mut counter = 0u32;
    for message in input.messages {
        let mut group = Vec::with_capacity(message.len());
        for choice in message {
            let name = match choice.name {
                NameChoice::Model(i) => specs[usize::from(i) % specs.len()].name.clone(),
                NameChoice::Other(name) => name,
            };
            let shape = match choice.shape {
                ShapeChoice::Model => specs
                    .iter()
                    .find(|s| s.name == name)
                    .map_or(vec![1], |s| s.shape.iter().map(|&d| d as u64).collect()),
                ShapeChoice::Other(dims) => dims,
            };
            let so_far = sent.entry(name.clone()).or_default();
            let offset = match choice.offset {
                OffsetChoice::Continue => so_far.len() as u64,
                OffsetChoice::At(offset) => offset,
            };
            let values: Vec<f32> = (0..choice.values)
                .map(|_| {
                    counter += 1;
                    value(counter)
                })
                .collect();
            let mut bytes = f32_to_le_bytes(&values).to_vec();
            bytes.extend(std::iter::repeat_n(0xA5, usize::from(choice.ragged % 4)));
            if offset == so_far.len() as u64 {
                so_far.extend_from_slice(&values);
            } else {
                // Not a continuation: whatever the assembler does with it, an Ok set cannot
                // hold it; poison the record so a silent acceptance is caught below.
                so_far.push(f32::from_bits(0xFFFF_FFFF));
            }
            group.push(v1::Tensor {
                name,
                shape,
                offset,
                data: Bytes::from(bytes),
            });
        }
        if assembler.extend(group).is_err() {
            return;
        }
    }
    let Ok(set) = assembler.finish() else {
        return;
    };
    for entry in set.entries() {
        let expected = &sent[&entry.name];
        assert_eq!(
            bits(entry.tensor.data()),
            bits(expected),
            "tensor {} holds other values than its pieces brought",
            entry.name
        );
        assert_eq!(
            entry.tensor.shape().iter().product::<usize>(),
            entry.tensor.len()
        );
        if input.with_schema {
            let i = schema
                .lookup(&entry.name)
                .expect("the schema refuses unknown names");
            assert_eq!(entry.tensor.shape(), specs[i].shape.as_slice());
        }
    }
    if input.with_schema
        && let Ok(conformed) = schema.conform(set)
        && !conformed.is_empty()
    {
        assert_eq!(conformed.set().len(), specs.len());
    }
}

/// A set of the model's shapes with values drawn from `seed`, cut into `piece_bytes`
/// pieces both ways, must assemble back bit-exactly and conform to the schema.
fn valid_cut_round_trips(
    model: &ParamSet,
    schema: &Arc<TensorSchema>,
    seed: u32,
    piece_bytes: usize,
) {
    let mut k = seed;
    let entries = model
        .entries()
        .iter()
        .map(|e| NamedTensor {
            name: e.name.clone(),
            tensor: Tensor::new(
                e.tensor.shape().to_vec(),
                (0..e.tensor.len())
                    .map(|_| {
                        k = k.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
                        value(k)
                    })
                    .collect(),
            )
            .expect("the model's shape"),
        })
        .collect();
    let set = ParamSet::new(entries);
    let cut: Vec<Vec<v1::Tensor>> = ParamPieces::new(&set, piece_bytes).collect();
    let sliced: Vec<Vec<v1::Tensor>> =
        EncodedPieces::new(params_to_wire(&set).into(), piece_bytes).collect();
    assert_eq!(cut, sliced, "EncodedPieces cuts as ParamPieces does");
    let mut assembler = ParamAssembler::new().with_schema(Arc::clone(schema));
    for group in cut {
        assembler.extend(group).expect("a valid cut's pieces fit");
    }
    let back = assembler.finish().expect("a valid cut is complete");
    assert_eq!(
        set_bits(&back),
        set_bits(&set),
        "a valid cut comes back bit for bit"
    );
    let conformed = schema
        .conform(back)
        .expect("a set of the model's shapes conforms");
    assert_eq!(set_bits(conformed.set()), set_bits(&set));
}

/// A value for piece value number `k`: mostly ordinary numbers, sometimes -0.0, a NaN with
/// a payload or an infinity (the assembler must carry every bit pattern unchanged).
fn value(k: u32) -> f32 {
    match k % 11 {
        3 => -0.0,
        5 => f32::from_bits(0x7fc0_0000 | (k & 0x3f_ffff)),
        7 => f32::INFINITY,
        _ => (k % 1000) as f32 * 0.125 - 60.0,
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn set_bits(set: &ParamSet) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    set.entries()
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.tensor.shape().to_vec(),
                bits(e.tensor.data()),
            )
        })
        .collect()
}

/// Which stream a [`pieces_proto`] input is the body of: its first byte, `% 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// An Exchange request stream, as the server reads it (with the model's schema).
    ExchangeRequest,
    /// An Exchange reply stream, as the worker reads it.
    ExchangeReply,
    /// A Pull reply, as the worker reads it.
    PullResponse,
}

impl StreamKind {
    /// The kind byte `byte` selects.
    #[must_use]
    pub fn of(byte: u8) -> Self {
        match byte % 3 {
            0 => Self::ExchangeRequest,
            1 => Self::ExchangeReply,
            _ => Self::PullResponse,
        }
    }
}

/// The bytes of a gRPC stream body: each message behind its 5-byte frame header
/// (uncompressed flag, big-endian length), as tonic reads them (seeds and tests).
#[must_use]
pub fn grpc_body(messages: &[impl prost::Message]) -> Vec<u8> {
    let mut body = Vec::new();
    for m in messages {
        let encoded = m.encode_to_vec();
        body.push(0);
        body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        body.extend_from_slice(&encoded);
    }
    body
}

/// A gRPC stream body (after one byte choosing the [`StreamKind`]), decoded by tonic into
/// messages and read set by set by [`receive_set`], the function the server and the
/// worker read every gradient and every parameter set with.
///
/// Invariants: no panic; a set read without error has only tensors whose values fill
/// their shapes; on the server's side it conforms to the schema or is refused.
pub fn pieces_proto(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let schema = Arc::new(TensorSchema::of(&model()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        match StreamKind::of(kind) {
            StreamKind::ExchangeRequest => {
                read_sets::<v1::ExchangeRequest>(body, Some(&schema)).await;
            }
            StreamKind::ExchangeReply => read_sets::<v1::ExchangeReply>(body, None).await,
            StreamKind::PullResponse => read_sets::<v1::PullResponse>(body, None).await,
        }
    });
}

/// Reads sets from `body` as a stream of `M` until it ends or a set is refused.
async fn read_sets<M>(body: Bytes, schema: Option<&Arc<TensorSchema>>)
where
    M: CarriesPieces + prost::Message + Default + Send + 'static,
{
    let decoder = tonic_prost::ProstCodec::<M, M>::default();
    let mut stream = tonic::Streaming::new_request(
        tonic::codec::Codec::decoder(&mut { decoder }),
        http_body_util::Full::new(body),
        None,
        Some(MAX_MESSAGE_BYTES),
    );
    // A long-lived stream carries set after set; a bounded body ends the loop.
    loop {
        let assembler = match schema {
            Some(schema) => ParamAssembler::new().with_schema(Arc::clone(schema)),
            None => ParamAssembler::new(),
        };
        let Ok(Some(received)) = receive_set(&mut stream, assembler).await else {
            return;
        };
        let Ok(set) = received.params else {
            return;
        };
        check_filled(&set);
        if let Some(schema) = schema {
            match schema.conform(set) {
                Ok(conformed) => {
                    for (entry, spec) in conformed.set().entries().iter().zip(schema.specs()) {
                        assert_eq!(entry.name, spec.name);
                        assert_eq!(entry.tensor.shape(), spec.shape.as_slice());
                    }
                }
                Err(_) => return,
            }
        }
        if !M::MARKS_ITS_END {
            return;
        }
    }
}

/// Every tensor of `set` holds exactly the values its shape does.
fn check_filled(set: &ParamSet) {
    for e in set.entries() {
        assert_eq!(
            e.tensor.shape().iter().product::<usize>(),
            e.tensor.len(),
            "{}",
            e.name
        );
    }
}

/// Text parsed as a job file; then validated, unless its data is a file (the file
/// parsers have targets of their own, and a fuzzer must not read the host's files).
///
/// Invariants: no panic; what parses serialises to TOML that parses to the same job
/// (the launcher hands the server the job that way); a validated job has at least one
/// step, one training sample per worker, and a non-empty global batch.
pub fn job_file(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(spec) = JobSpec::from_toml(text) else {
        return false;
    };
    let written = spec.to_toml();
    let again = JobSpec::from_toml(&written)
        .unwrap_or_else(|e| panic!("a job's own TOML must parse: {e}\n{written}"));
    assert_eq!(
        again.to_toml(),
        written,
        "the TOML round trip changes the job"
    );
    if matches!(
        spec.data.kind,
        DatasetKind::Csv | DatasetKind::Libsvm | DatasetKind::Idx
    ) {
        return spec.data.validate().is_ok();
    }
    let Ok(job) = spec.validate() else {
        return false;
    };
    assert!(job.total_steps() >= 1, "a valid job has a step");
    assert!(
        job.train_len >= job.workers(),
        "one training sample per worker"
    );
    assert!(job.global_batch >= 1, "a step has samples");
    true
}

/// The options a data-parser input chooses with its first byte.
fn task_of(byte: u8) -> TaskKind {
    if byte & 1 == 0 {
        TaskKind::Classification
    } else {
        TaskKind::Regression
    }
}

/// CSV text (after one byte of options: header, task, label column) parsed as a data file.
///
/// Invariants: no panic; a parsed dataset has one feature row per target, every row as
/// wide as the file's columns less the label, and only finite features.
pub fn csv(data: &[u8]) -> bool {
    let Some((&options, text)) = data.split_first() else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let label_column = match (options >> 2) & 3 {
        0 => LabelColumn::Default,
        1 => LabelColumn::Index(usize::from(options >> 4)),
        2 => LabelColumn::Name("label".into()),
        _ => LabelColumn::Name("species".into()),
    };
    let options = CsvOptions {
        header: options & 2 == 0,
        label_column,
        task: task_of(options),
    };
    let Ok(data) = downpour_core::data::csv::parse(text, "fuzz.csv", &options) else {
        return false;
    };
    let columns = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| l.split(',').count());
    assert_eq!(
        data.features.ncols(),
        columns - 1,
        "every row has the declared width"
    );
    check_dataset(&data);
    true
}

/// LibSVM text (after one byte of options: task, and a feature count or none) parsed as a
/// data file.
///
/// Invariants: no panic, no allocation sized by an index the file chose beyond a bound;
/// a parsed dataset has one row per target, the declared width when one is given, and
/// only finite features.
pub fn libsvm(data: &[u8]) -> bool {
    let Some((&options, text)) = data.split_first() else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let features = match options >> 1 {
        0 => None,
        n => Some(usize::from(n)),
    };
    let options = LibsvmOptions {
        task: task_of(options),
        features,
    };
    let Ok(data) = downpour_core::data::libsvm::parse(text, "fuzz.svm", &options) else {
        return false;
    };
    if let Some(width) = features {
        assert_eq!(data.features.ncols(), width, "the declared width");
    }
    check_dataset(&data);
    true
}

/// An images file and a labels file (the first two bytes: where to split the rest, as a
/// big-endian u16 capped at its length) parsed as IDX.
///
/// Invariants: no panic; a parsed dataset has one image of rows × columns pixels, each
/// in [0, 1], per label, and the class count is the largest label + 1.
pub fn idx(data: &[u8]) -> bool {
    let [a, b, rest @ ..] = data else {
        return false;
    };
    let split = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
    let (images, labels) = rest.split_at(split);
    let Ok(data) = downpour_core::data::idx::parse(
        IdxFile {
            path: "images.idx",
            bytes: images,
        },
        IdxFile {
            path: "labels.idx",
            bytes: labels,
        },
    ) else {
        return false;
    };
    let image = data.image.expect("IDX data are images");
    assert_eq!(data.features.ncols(), image.features());
    assert_eq!(data.features.nrows() * image.features() + 16, images.len());
    assert!(data.features.iter().all(|p| (0.0..=1.0).contains(p)));
    check_dataset(&data);
    true
}

/// The invariants every parsed dataset keeps: one target per row, finite features,
/// classification labels below the class count.
fn check_dataset(data: &Dataset) {
    assert!(
        data.features.iter().all(|v| v.is_finite()),
        "finite features"
    );
    match &data.targets {
        Targets::Regression(y) => {
            assert_eq!(y.nrows(), data.features.nrows(), "one target per row");
            assert!(y.iter().all(|v| v.is_finite()), "finite targets");
        }
        Targets::Classes { labels, classes } => {
            assert_eq!(labels.len(), data.features.nrows(), "one label per row");
            assert!(labels.iter().all(|l| l < classes), "labels below {classes}");
            if let Some(names) = &data.class_names {
                assert_eq!(names.len(), *classes, "one name per class");
            }
        }
    }
}
