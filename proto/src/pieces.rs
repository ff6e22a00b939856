//! Parameter sets cut into pieces for streaming, and put back together.
//!
//! A pull's parameters and a push's gradient travel as a stream of messages, each
//! holding at most a budget of bytes of values ([`crate::limits::PIECE_BYTES`]) as
//! [`v1::Tensor`] pieces: a large tensor is cut into consecutive pieces that may span
//! several messages, small tensors share a message. Because the groups are produced
//! lazily and consumed as they arrive, the sender encodes message k+1 while message k is
//! on the wire and the receiver decodes message k-1, and no message must hold the model.
//!
//! - [`ParamPieces`]: a [`ParamSet`]'s message groups, each encoded when asked for (the
//!   worker's push).
//! - [`EncodedPieces`]: the same groups cut out of whole tensors already encoded, by
//!   zero-copy [`bytes::Bytes::slice`] (the server's pull, from its per-version cache).
//! - [`ParamAssembler`]: takes pieces in order and builds the [`ParamSet`], refusing any
//!   piece that does not continue its tensor exactly.
//! - [`receive_set`]: reads one set of such messages (a gradient on the server, the
//!   parameters on the worker) into an assembler as they arrive.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use downpour_core::quote::quote;
use downpour_core::schema::{SchemaError, TensorSchema};
use downpour_core::{NamedTensor, ParamSet, Tensor};

use crate::convert::{WireError, extend_f32_from_le_bytes, f32_to_le_bytes, wire_shape};
use crate::limits::MAX_RANK;
use crate::v1;

/// Most values the assembler reserves for a tensor before its data arrives (256 MiB of
/// f32s): a shape alone, which a peer may choose freely, never sizes a larger allocation;
/// a bigger tensor grows as its pieces arrive.
const RESERVE_LIMIT_VALUES: usize = 64 * 1024 * 1024;

/// One piece to cut: values `range` of tensor `tensor`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    /// Index of the tensor in its set.
    tensor: usize,
    /// The values of the piece, as indices into the flattened tensor.
    range: Range<usize>,
}

/// Where the next message group starts; the cutting logic both producers share.
#[derive(Debug, Clone)]
struct Cursor {
    /// Values per message group (at least 1).
    budget: usize,
    /// The tensor the next piece belongs to; the set's length when every piece was cut.
    tensor: usize,
    /// Where in that tensor the next piece starts (in values).
    offset: usize,
    /// Whether a group was produced: an empty set still yields one (empty) group, so
    /// that a stream always has a first message to carry the call's other fields.
    yielded: bool,
}

impl Cursor {
    fn new(piece_bytes: usize) -> Self {
        Self {
            budget: (piece_bytes / 4).max(1),
            tensor: 0,
            offset: 0,
            yielded: false,
        }
    }

    /// The spans of the next group, for tensors of `lens` values; `None` after the last.
    fn next_group(&mut self, lens: impl Fn(usize) -> usize, count: usize) -> Option<Vec<Span>> {
        if self.tensor >= count {
            if self.yielded {
                return None;
            }
            self.yielded = true;
            return Some(Vec::new());
        }
        self.yielded = true;
        let mut room = self.budget;
        let mut spans = Vec::new();
        while self.tensor < count && room > 0 {
            let len = lens(self.tensor);
            let take = (len - self.offset).min(room);
            spans.push(Span {
                tensor: self.tensor,
                range: self.offset..self.offset + take,
            });
            room -= take;
            self.offset += take;
            if self.offset == len {
                self.tensor += 1;
                self.offset = 0;
            }
        }
        Some(spans)
    }
}

/// A [`ParamSet`]'s message groups, each encoded to little-endian bytes when the iterator
/// is advanced: at most `piece_bytes` of values per group (at least one value), tensors
/// in order, every tensor present (one empty piece for a tensor with no values), and at
/// least one group (empty for an empty set).
#[derive(Debug, Clone)]
pub struct ParamPieces<'a> {
    /// The set being cut.
    set: &'a ParamSet,
    /// Where the next group starts.
    cursor: Cursor,
}

impl<'a> ParamPieces<'a> {
    /// The groups of `set`, `piece_bytes` of values at most each.
    #[must_use]
    pub fn new(set: &'a ParamSet, piece_bytes: usize) -> Self {
        Self {
            set,
            cursor: Cursor::new(piece_bytes),
        }
    }
}

impl Iterator for ParamPieces<'_> {
    type Item = Vec<v1::Tensor>;

    fn next(&mut self) -> Option<Self::Item> {
        let entries = self.set.entries();
        let spans = self
            .cursor
            .next_group(|i| entries[i].tensor.len(), entries.len())?;
        Some(
            spans
                .into_iter()
                .map(|span| {
                    let t = &entries[span.tensor];
                    v1::Tensor {
                        name: t.name.clone(),
                        shape: t.tensor.shape().iter().map(|&d| d as u64).collect(),
                        offset: span.range.start as u64,
                        data: f32_to_le_bytes(&t.tensor.data()[span.range]),
                    }
                })
                .collect(),
        )
    }
}

/// The message groups of whole tensors already encoded (as [`crate::convert::params_to_wire`]
/// makes them), cut as [`ParamPieces`] cuts a [`ParamSet`] but by slicing the encoded
/// bytes: no value is copied.
#[derive(Debug, Clone)]
pub struct EncodedPieces {
    /// Whole tensors: offset 0, every value; shared, so cutting never copies them.
    tensors: Arc<[v1::Tensor]>,
    /// Where the next group starts.
    cursor: Cursor,
}

impl EncodedPieces {
    /// The groups of `tensors`, `piece_bytes` of values at most each.
    ///
    /// # Panics
    /// When a tensor is not whole: an offset other than 0, or a byte length not a
    /// multiple of 4 (callers pass their own encoding).
    #[must_use]
    pub fn new(tensors: Arc<[v1::Tensor]>, piece_bytes: usize) -> Self {
        for t in tensors.iter() {
            assert!(
                t.offset == 0 && t.data.len().is_multiple_of(4),
                "tensor {} is not whole: offset {}, {} bytes",
                t.name,
                t.offset,
                t.data.len()
            );
        }
        Self {
            tensors,
            cursor: Cursor::new(piece_bytes),
        }
    }
}

impl Iterator for EncodedPieces {
    type Item = Vec<v1::Tensor>;

    fn next(&mut self) -> Option<Self::Item> {
        let tensors = &self.tensors;
        let spans = self
            .cursor
            .next_group(|i| tensors[i].data.len() / 4, tensors.len())?;
        Some(
            spans
                .into_iter()
                .map(|span| {
                    let t = &tensors[span.tensor];
                    v1::Tensor {
                        name: t.name.clone(),
                        shape: t.shape.clone(),
                        offset: span.range.start as u64,
                        data: t.data.slice(4 * span.range.start..4 * span.range.end),
                    }
                })
                .collect(),
        )
    }
}

/// The tensor whose pieces are arriving.
#[derive(Debug)]
struct PartialTensor {
    /// Its name.
    name: String,
    /// Its shape as declared by its first piece; every later piece must repeat it.
    wire_shape: Vec<u64>,
    /// The same shape as dimensions.
    dims: Vec<usize>,
    /// Values the shape holds: the product of `dims`.
    expected: usize,
    /// The values received so far, in order; never more than `expected`. Its length is
    /// where the next piece must start.
    values: Vec<f32>,
}

impl PartialTensor {
    /// A tensor of shape `wire_shape` (`dims`, `expected` values) with no value yet, room
    /// reserved for all of them, or for `reserve_limit` if fewer.
    fn new(
        name: String,
        wire_shape: Vec<u64>,
        dims: Vec<usize>,
        expected: usize,
        reserve_limit: usize,
    ) -> Self {
        Self {
            name,
            wire_shape,
            dims,
            values: Vec::with_capacity(expected.min(reserve_limit)),
            expected,
        }
    }

    fn is_complete(&self) -> bool {
        self.values.len() == self.expected
    }

    /// Appends a piece's bytes (a multiple of 4, checked by the caller).
    fn append(
        &mut self,
        name: &str,
        shape: &[u64],
        offset: u64,
        data: &[u8],
    ) -> Result<(), WireError> {
        let have = self.values.len();
        if shape != self.wire_shape.as_slice() {
            return Err(WireError::ShapeChanged {
                name: quote(name),
                first: self.wire_shape.clone(),
                then: shape.iter().take(MAX_RANK + 1).copied().collect(),
            });
        }
        if offset != have as u64 {
            return Err(WireError::PieceOffset {
                name: quote(name),
                expected: have as u64,
                offset,
            });
        }
        let n = data.len() / 4;
        if n > self.expected - have {
            return Err(WireError::Overflow {
                name: quote(name),
                shape: self.wire_shape.clone(),
                expected: self.expected as u64,
                actual: (have + n) as u64,
            });
        }
        extend_f32_from_le_bytes(&mut self.values, data);
        Ok(())
    }

    fn incomplete(self) -> WireError {
        WireError::Incomplete {
            name: self.name.into(),
            shape: self.wire_shape,
            expected: self.expected as u64,
            actual: self.values.len() as u64,
        }
    }

    fn into_named(self) -> NamedTensor {
        NamedTensor {
            tensor: Tensor::new(self.dims, self.values).expect("complete: length equals shape"),
            name: self.name,
        }
    }
}

/// Builds a [`ParamSet`] from pieces fed in order, one message's worth at a time as
/// they arrive, checking that they fit together exactly.
///
/// The pieces of one tensor must be consecutive: the first at offset 0, each next one
/// where the previous ended, all with the same shape, no more values than the shape
/// holds; another tensor begins only once the current one is complete, and no tensor
/// comes twice. After an error the assembler must be dropped.
#[derive(Debug)]
pub struct ParamAssembler {
    /// Most values allocated for a tensor before its data arrives
    /// ([`RESERVE_LIMIT_VALUES`]; smaller in tests).
    reserve_limit: usize,
    /// The receiver's model, when it has one: each tensor is checked against it at its
    /// first piece (its name by lookup, its shape), before its data is held.
    schema: Option<Arc<TensorSchema>>,
    /// Tensors whose pieces all arrived (except the current one), in arrival order.
    done: Vec<NamedTensor>,
    /// The names of `done` and of `current`: a tensor may not come twice.
    names: HashSet<String>,
    /// The tensor the latest piece belonged to, complete or not; not in `done`.
    current: Option<PartialTensor>,
}

impl Default for ParamAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl ParamAssembler {
    /// An assembler that has seen no piece.
    #[must_use]
    pub fn new() -> Self {
        Self::with_reserve_limit(RESERVE_LIMIT_VALUES)
    }

    /// An assembler that allocates at most `reserve_limit` values for a tensor up front.
    fn with_reserve_limit(reserve_limit: usize) -> Self {
        Self {
            reserve_limit,
            schema: None,
            done: Vec::new(),
            names: HashSet::new(),
            current: None,
        }
    }

    /// The same assembler, refusing at its first piece any tensor that `schema` does not
    /// have or that has another shape there: a receiver that knows its model never holds
    /// the data of a tensor that does not fit it. (The set as a whole, every tensor
    /// present, is checked by [`TensorSchema::conform`].)
    #[must_use]
    pub fn with_schema(mut self, schema: Arc<TensorSchema>) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Takes the next piece.
    ///
    /// # Errors
    /// [`WireError::ByteLength`], [`WireError::PieceOffset`], [`WireError::ShapeChanged`],
    /// [`WireError::Overflow`], [`WireError::TooLarge`], [`WireError::DuplicateName`],
    /// [`WireError::Schema`] (with a schema), or
    /// [`WireError::Incomplete`] for the previous tensor when a new one begins early.
    pub fn push(&mut self, piece: v1::Tensor) -> Result<(), WireError> {
        let v1::Tensor {
            name,
            shape,
            data,
            offset,
        } = piece;
        if !data.len().is_multiple_of(4) {
            return Err(WireError::ByteLength {
                name: name.into(),
                len: data.len(),
            });
        }
        if let Some(current) = &mut self.current
            && current.name == name
        {
            if current.is_complete() && offset == 0 {
                return Err(WireError::DuplicateName { name: name.into() });
            }
            return current.append(&name, &shape, offset, &data);
        }
        if let Some(previous) = self.current.take() {
            if !previous.is_complete() {
                return Err(previous.incomplete());
            }
            self.done.push(previous.into_named());
        }
        // Every check below is a lookup or bounded by the schema: a stream of many tensors
        // costs O(1) per tensor, and the first one that does not belong ends it.
        if self.names.contains(&name) {
            return Err(WireError::DuplicateName { name: name.into() });
        }
        if offset != 0 {
            return Err(WireError::PieceOffset {
                name: name.into(),
                expected: 0,
                offset,
            });
        }
        let (dims, expected) = wire_shape(&name, &shape)?;
        if let Some(schema) = &self.schema {
            // Empty tensors too: a tensor beyond the model's count is refused even when it
            // holds no value (its name is held, so it costs memory).
            if self.names.len() >= schema.len() {
                return Err(SchemaError::TooManyTensors {
                    limit: schema.len(),
                }
                .into());
            }
            let i = schema.lookup(&name)?;
            schema.check_shape(i, &dims)?;
        }
        let mut tensor = PartialTensor::new(
            name.clone(),
            shape.clone(),
            dims,
            expected,
            self.reserve_limit,
        );
        tensor.append(&name, &shape, offset, &data)?;
        self.names.insert(name);
        self.current = Some(tensor);
        Ok(())
    }

    /// Takes the pieces of one message, in order.
    ///
    /// # Errors
    /// As [`Self::push`], for the first piece that does not fit.
    pub fn extend(
        &mut self,
        pieces: impl IntoIterator<Item = v1::Tensor>,
    ) -> Result<(), WireError> {
        pieces.into_iter().try_for_each(|p| self.push(p))
    }

    /// The assembled set, in arrival order.
    ///
    /// # Errors
    /// [`WireError::Incomplete`] when the last tensor lacks values.
    pub fn finish(mut self) -> Result<ParamSet, WireError> {
        if let Some(last) = self.current.take() {
            if !last.is_complete() {
                return Err(last.incomplete());
            }
            self.done.push(last.into_named());
        }
        Ok(ParamSet::new(self.done))
    }
}

/// Decodes a parameter or gradient set from its pieces, keeping the wire order.
///
/// # Errors
/// [`WireError`] for a malformed piece, an incomplete tensor or a repeated name
/// (see [`ParamAssembler`]).
pub fn params_from_wire(tensors: Vec<v1::Tensor>) -> Result<ParamSet, WireError> {
    let mut assembler = ParamAssembler::new();
    assembler.extend(tensors)?;
    assembler.finish()
}

/// A message of a stream that carries parameter pieces.
pub trait CarriesPieces {
    /// Takes the message's pieces, leaving it with none.
    fn take_pieces(&mut self) -> Vec<v1::Tensor>;

    /// Whether this message is the last of its set. A set that ends with its stream (a
    /// pull's reply) never says so; a set on a long-lived stream (the exchange) does.
    fn ends_set(&self) -> bool {
        false
    }

    /// Whether the set must end with a message that says so ([`Self::ends_set`]): the
    /// stream's end before it means the set was cut short.
    const MARKS_ITS_END: bool = false;
}

impl CarriesPieces for v1::ExchangeRequest {
    fn take_pieces(&mut self) -> Vec<v1::Tensor> {
        std::mem::take(&mut self.gradients)
    }

    fn ends_set(&self) -> bool {
        self.last
    }

    const MARKS_ITS_END: bool = true;
}

impl CarriesPieces for v1::ExchangeReply {
    fn take_pieces(&mut self) -> Vec<v1::Tensor> {
        std::mem::take(&mut self.params)
    }

    fn ends_set(&self) -> bool {
        self.last
    }

    const MARKS_ITS_END: bool = true;
}

impl CarriesPieces for v1::PullResponse {
    fn take_pieces(&mut self) -> Vec<v1::Tensor> {
        std::mem::take(&mut self.params)
    }
}

/// A set of parameter pieces, read to its end or to its first piece that does not fit.
#[derive(Debug)]
pub struct ReceivedSet<M> {
    /// The set's first message, its pieces taken: the one whose other fields count.
    pub first: M,
    /// The assembled set, or the first wire error (reading stopped there).
    pub params: Result<ParamSet, WireError>,
    /// Bytes of tensor data received.
    pub bytes: u64,
    /// Time spent assembling the pieces (decoding them overlaps their arrival).
    pub decode: Duration,
}

/// Reads one set from `stream`, feeding each message's pieces to `assembler` as the
/// message arrives: up to the message that ends the set, or the stream's end. `None`
/// when the stream ended before a set began (a long-lived stream closed between sets).
///
/// After a wire error the rest of the set is not read: the stream must be dropped.
///
/// # Errors
/// The transport's status when the stream breaks.
pub async fn receive_set<M: CarriesPieces>(
    stream: &mut tonic::Streaming<M>,
    mut assembler: ParamAssembler,
) -> Result<Option<ReceivedSet<M>>, tonic::Status> {
    let Some(mut first) = stream.message().await? else {
        return Ok(None);
    };
    let mut ended = first.ends_set();
    let mut pieces = Some(first.take_pieces());
    let mut bytes = 0;
    let mut decode = Duration::ZERO;
    let params = loop {
        let Some(group) = pieces.take() else {
            if M::MARKS_ITS_END && !ended {
                break Err(WireError::Truncated);
            }
            let started = Instant::now();
            let finished = assembler.finish();
            decode += started.elapsed();
            break finished;
        };
        bytes += group.iter().map(|t| t.data.len() as u64).sum::<u64>();
        let started = Instant::now();
        let fed = assembler.extend(group);
        decode += started.elapsed();
        if let Err(e) = fed {
            break Err(e);
        }
        if !ended {
            pieces = stream.message().await?.map(|mut m| {
                ended = m.ends_set();
                m.take_pieces()
            });
        }
    };
    Ok(Some(ReceivedSet {
        first,
        params,
        bytes,
        decode,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::params_to_wire;

    /// A set of tensors of the given value counts (rank 1, or rank 2 when even), with
    /// values that are distinct, include -0.0 and NaNs with payloads.
    fn set(lens: &[usize]) -> ParamSet {
        let mut k = 0u32;
        let entries = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let values: Vec<f32> = (0..n)
                    .map(|j| {
                        k += 1;
                        match j % 7 {
                            3 => -0.0,
                            5 => f32::from_bits(0x7fc0_0000 | k),
                            _ => k as f32 * 0.25 - 100.0,
                        }
                    })
                    .collect();
                let shape = if n % 2 == 0 && n > 0 {
                    vec![2, n / 2]
                } else {
                    vec![n]
                };
                NamedTensor {
                    name: format!("t{i}"),
                    tensor: Tensor::new(shape, values).unwrap(),
                }
            })
            .collect();
        ParamSet::new(entries)
    }

    fn bits(set: &ParamSet) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        set.entries()
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.tensor.shape().to_vec(),
                    e.tensor.data().iter().map(|v| v.to_bits()).collect(),
                )
            })
            .collect()
    }

    fn assemble(groups: impl IntoIterator<Item = Vec<v1::Tensor>>) -> Result<ParamSet, WireError> {
        let mut a = ParamAssembler::new();
        for g in groups {
            a.extend(g)?;
        }
        a.finish()
    }

    fn piece(name: &str, shape: &[u64], offset: u64, values: &[f32]) -> v1::Tensor {
        v1::Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            offset,
            data: f32_to_le_bytes(values),
        }
    }

    #[test]
    fn sets_round_trip_bit_exactly_for_any_piece_size() {
        let sizes: [&[usize]; 5] = [&[], &[1], &[0, 3, 0], &[1000, 1, 4097, 10], &[6; 50]];
        for lens in sizes {
            let original = set(lens);
            for piece_bytes in [1, 4, 12, 64, 4096, 1 << 20] {
                let groups: Vec<_> = ParamPieces::new(&original, piece_bytes).collect();
                assert!(!groups.is_empty(), "{lens:?}: at least one group");
                for g in &groups {
                    let bytes: usize = g.iter().map(|t| t.data.len()).sum();
                    assert!(
                        bytes <= piece_bytes.max(4),
                        "{lens:?} / {piece_bytes}: {bytes} bytes"
                    );
                }
                let back = assemble(groups).unwrap();
                assert_eq!(bits(&back), bits(&original), "{lens:?} / {piece_bytes}");
            }
        }
    }

    #[test]
    fn tensors_larger_than_the_reserve_limit_grow_as_their_pieces_arrive() {
        let original = set(&[1000, 7, 4097]);
        for piece_bytes in [4, 400, 1 << 20] {
            let mut a = ParamAssembler::with_reserve_limit(10);
            for g in ParamPieces::new(&original, piece_bytes) {
                a.extend(g).unwrap();
            }
            assert_eq!(bits(&a.finish().unwrap()), bits(&original), "{piece_bytes}");
        }
        let mut short = ParamAssembler::with_reserve_limit(10);
        short.push(piece("w", &[100], 0, &[1.0; 30])).unwrap();
        assert_eq!(
            short.finish().unwrap_err().to_string(),
            "tensor w: shape [100] needs 100 values, its pieces ended after 30"
        );
    }

    #[test]
    fn large_tensors_are_cut_and_small_ones_share_a_message() {
        // 10 values per message: [25] → 10 | 10 | 5 + 2 + 3 | 1 + 0-value + 9 | 1.
        let original = set(&[25, 2, 4, 0, 10]);
        let groups: Vec<_> = ParamPieces::new(&original, 40).collect();
        let layout: Vec<Vec<(&str, u64, usize)>> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|t| (t.name.as_str(), t.offset, t.data.len() / 4))
                    .collect()
            })
            .collect();
        assert_eq!(
            layout,
            vec![
                vec![("t0", 0, 10)],
                vec![("t0", 10, 10)],
                vec![("t0", 20, 5), ("t1", 0, 2), ("t2", 0, 3)],
                vec![("t2", 3, 1), ("t3", 0, 0), ("t4", 0, 9)],
                vec![("t4", 9, 1)],
            ]
        );
        assert!(
            groups
                .iter()
                .flatten()
                .filter(|t| t.name == "t0")
                .all(|t| t.shape == [25])
        );
        assert_eq!(
            groups[2][2].shape,
            vec![2, 2],
            "every piece carries the whole shape"
        );
    }

    #[test]
    fn an_empty_set_is_one_empty_group() {
        let empty = ParamSet::default();
        let groups: Vec<_> = ParamPieces::new(&empty, 1024).collect();
        assert_eq!(groups, vec![Vec::new()]);
        assert!(assemble(groups).unwrap().is_empty());
        let cached: Arc<[v1::Tensor]> = Arc::from(Vec::new());
        assert_eq!(EncodedPieces::new(cached, 1024).count(), 1);
    }

    #[test]
    fn slicing_the_cached_encoding_gives_the_same_messages_without_copying() {
        let original = set(&[1000, 1, 4097, 0, 10, 6, 6]);
        let cached: Arc<[v1::Tensor]> = params_to_wire(&original).into();
        for piece_bytes in [1, 12, 64, 4096, 1 << 20] {
            let encoded: Vec<_> = ParamPieces::new(&original, piece_bytes).collect();
            let sliced: Vec<_> = EncodedPieces::new(Arc::clone(&cached), piece_bytes).collect();
            assert_eq!(sliced, encoded, "{piece_bytes}");
        }
        // The slices point into the cached buffers.
        let first = EncodedPieces::new(Arc::clone(&cached), 64).nth(1).unwrap();
        let whole = cached[0].data.as_ptr() as usize;
        assert_eq!(first[0].data.as_ptr() as usize, whole + 64);
    }

    #[test]
    fn whole_tensors_assemble_as_before() {
        let original = set(&[12, 3]);
        let back = assemble([params_to_wire(&original)]).unwrap();
        assert_eq!(bits(&back), bits(&original));
    }

    #[test]
    fn with_a_schema_a_tensor_that_does_not_fit_is_refused_at_its_first_piece() {
        let model = set(&[6, 4]);
        let schema = Arc::new(TensorSchema::of(&model));
        let assembler = || ParamAssembler::new().with_schema(Arc::clone(&schema));
        // A 1e12-value tensor is refused before any allocation.
        let mut a = assembler();
        let err = a
            .push(piece("t0", &[1_000_000, 1_000_000], 0, &[1.0]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor t0: expected shape [2, 3], got [1000000, 1000000]"
        );
        let err = assembler()
            .push(piece("t9", &[2, 3], 0, &[0.0; 6]))
            .unwrap_err();
        assert_eq!(err.to_string(), "unknown tensor t9; the model has t0, t1");
        let mut exact = assembler();
        exact.push(piece("t0", &[2, 3], 0, &[0.0; 6])).unwrap();
        exact.push(piece("t1", &[2, 2], 0, &[0.0; 4])).unwrap();
        assert_eq!(exact.finish().unwrap().num_values(), 10);
    }

    #[test]
    fn a_ragged_byte_length_is_refused() {
        let mut p = piece("w", &[4], 0, &[1.0, 2.0]);
        p.data = p.data.slice(..7);
        let err = assemble([vec![p]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor w: 7 bytes is not a whole number of f32 values"
        );
    }

    #[test]
    fn a_gap_or_overlap_between_pieces_is_refused() {
        let gap = assemble([
            vec![piece("w", &[6], 0, &[1.0, 2.0])],
            vec![piece("w", &[6], 3, &[4.0, 5.0, 6.0])],
        ])
        .unwrap_err();
        assert_eq!(
            gap.to_string(),
            "tensor w: piece starts at value 3, expected 2"
        );
        let overlap = assemble([vec![
            piece("w", &[6], 0, &[1.0, 2.0, 3.0]),
            piece("w", &[6], 2, &[3.0, 4.0, 5.0, 6.0]),
        ]])
        .unwrap_err();
        assert_eq!(
            overlap.to_string(),
            "tensor w: piece starts at value 2, expected 3"
        );
        let late_start = assemble([vec![piece("b", &[2], 1, &[1.0])]]).unwrap_err();
        assert_eq!(
            late_start,
            WireError::PieceOffset {
                name: "b".into(),
                expected: 0,
                offset: 1
            }
        );
    }

    #[test]
    fn a_shape_that_changes_between_pieces_is_refused() {
        let err = assemble([vec![
            piece("w", &[2, 3], 0, &[1.0, 2.0]),
            piece("w", &[3, 2], 2, &[3.0]),
        ]])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor w: shape changed from [2, 3] to [3, 2] between pieces"
        );
    }

    #[test]
    fn more_values_than_the_shape_holds_are_refused() {
        let at_once = assemble([vec![piece("w", &[2], 0, &[1.0, 2.0, 3.0])]]).unwrap_err();
        assert_eq!(
            at_once.to_string(),
            "tensor w: shape [2] holds 2 values, its pieces bring 3"
        );
        let later = assemble([vec![
            piece("w", &[2, 2], 0, &[1.0, 2.0, 3.0]),
            piece("w", &[2, 2], 3, &[4.0, 5.0]),
        ]])
        .unwrap_err();
        assert_eq!(
            later,
            WireError::Overflow {
                name: "w".into(),
                shape: vec![2, 2],
                expected: 4,
                actual: 5
            }
        );
    }

    #[test]
    fn a_tensor_that_comes_again_after_completing_is_refused() {
        let whole = piece("w", &[2], 0, &[1.0, 2.0]);
        let again = assemble([vec![whole.clone(), whole.clone()]]).unwrap_err();
        assert_eq!(again.to_string(), "tensor w appears twice");
        let after_another = assemble([
            vec![whole.clone(), piece("b", &[1], 0, &[0.5])],
            vec![whole],
        ])
        .unwrap_err();
        assert_eq!(after_another, WireError::DuplicateName { name: "w".into() });
    }

    #[test]
    fn an_incomplete_tensor_is_refused() {
        let at_the_end = assemble([
            vec![
                piece("b", &[1], 0, &[0.5]),
                piece("w", &[2, 3], 0, &[1.0, 2.0]),
            ],
            vec![piece("w", &[2, 3], 2, &[3.0])],
        ])
        .unwrap_err();
        assert_eq!(
            at_the_end.to_string(),
            "tensor w: shape [2, 3] needs 6 values, its pieces ended after 3"
        );
        let cut_short_by_another = assemble([vec![
            piece("w", &[4], 0, &[1.0]),
            piece("b", &[1], 0, &[0.5]),
        ]])
        .unwrap_err();
        assert_eq!(
            cut_short_by_another,
            WireError::Incomplete {
                name: "w".into(),
                shape: vec![4],
                expected: 4,
                actual: 1
            }
        );
    }

    #[test]
    fn a_huge_shape_does_not_allocate_before_its_data_arrives() {
        // 2^40 values would be 4 TiB: only what arrives is stored.
        let err = assemble([vec![piece("w", &[1 << 20, 1 << 20], 0, &[1.0, 2.0])]]).unwrap_err();
        assert!(
            matches!(err, WireError::Incomplete { actual: 2, .. }),
            "{err}"
        );
        let overflow = assemble([vec![piece("w", &[u64::MAX, 2], 0, &[])]]).unwrap_err();
        assert!(matches!(overflow, WireError::TooLarge { .. }), "{overflow}");
    }

    #[test]
    fn a_stream_of_many_empty_tensors_with_distinct_names_is_refused_at_the_first() {
        let model = set(&[6, 0, 4]);
        let schema = Arc::new(TensorSchema::of(&model));
        let mut a = ParamAssembler::new().with_schema(Arc::clone(&schema));
        let started = Instant::now();
        let mut accepted = 0;
        let mut first_error = None;
        for i in 0..150_000 {
            match a.push(piece(&format!("x{i}"), &[0], 0, &[])) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    first_error = Some((i, e));
                    break;
                }
            }
        }
        let (at, err) = first_error.expect("refused");
        assert_eq!((accepted, at), (0, 0));
        assert_eq!(
            err.to_string(),
            "unknown tensor x0; the model has t0, t1, t2"
        );
        // The model's own empty tensor is accepted once, then refused as a repeat.
        let mut b = ParamAssembler::new().with_schema(Arc::clone(&schema));
        b.push(piece("t0", &[2, 3], 0, &[0.0; 6])).unwrap();
        b.push(piece("t1", &[0], 0, &[])).unwrap();
        assert_eq!(
            b.push(piece("t1", &[0], 0, &[])).unwrap_err(),
            WireError::DuplicateName { name: "t1".into() }
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn errors_quote_a_short_prefix_of_a_huge_name_and_shape() {
        let schema = Arc::new(TensorSchema::of(&set(&[6])));
        let name = "n".repeat(8 << 20);
        let unknown = ParamAssembler::new()
            .with_schema(Arc::clone(&schema))
            .push(piece(&name, &[6], 0, &[0.0; 6]))
            .unwrap_err()
            .to_string();
        assert!(unknown.len() < 200, "{} bytes", unknown.len());
        assert!(unknown.contains("(8388608 bytes)"), "{unknown}");
        let ragged = v1::Tensor {
            name: name.clone(),
            shape: vec![1],
            offset: 0,
            data: bytes::Bytes::from_static(&[0, 0, 0]),
        };
        let err = assemble([vec![ragged]]).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        let deep = piece("w", &vec![1; 100_000], 0, &[1.0]);
        assert_eq!(
            assemble([vec![deep]]).unwrap_err().to_string(),
            "tensor w: 100000 dimensions; at most 8 are accepted"
        );
        let changed = assemble([vec![
            piece("w", &[2], 0, &[1.0]),
            piece("w", &vec![1; 100_000], 1, &[1.0]),
        ]])
        .unwrap_err()
        .to_string();
        assert!(changed.len() < 200, "{changed}");
    }

    #[test]
    fn duplicate_names_in_one_message_are_refused() {
        let t = piece("w", &[1], 0, &[0.0]);
        let err = params_from_wire(vec![t.clone(), t]).unwrap_err();
        assert_eq!(err, WireError::DuplicateName { name: "w".into() });
    }
}
