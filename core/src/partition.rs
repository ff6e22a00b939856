//! How a model's parameters are split over S parameter-server shards.
//!
//! The tensors, in layout order, are laid end to end as one sequence of rows (a
//! rank-2 `[r, c]` tensor is `r` rows of `c` values; a rank-1 `[n]` tensor is `n` rows of
//! one value). Shard `k` gets the rows that start in `[k·T/S, (k+1)·T/S)` of the
//! flattened value sequence (`T` values in all), so every cut falls on a row boundary
//! within one row of the ideal place: the largest shard holds at most `ceil(T/S)` values
//! plus one row of the widest tensor. Large tensors are therefore split by rows, and a
//! model with one big layer still spreads evenly.
//!
//! The plan depends only on the layout and S, so every process computes the same one.

use crate::layout::ParameterLayout;
use crate::tensor::{NamedTensor, ParamSet, Tensor};

/// A run of whole rows of one tensor, owned by one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Index of the tensor in the layout.
    pub param: usize,
    /// The tensor's name.
    pub tensor_name: String,
    /// The piece's own name: the tensor's name when the piece is the whole tensor,
    /// `NAME@rows{start}-{end}` otherwise.
    pub name: String,
    /// First row (inclusive) and last row (exclusive).
    pub rows: std::ops::Range<usize>,
    /// Values per row.
    pub row_len: usize,
    /// The piece's shape: the tensor's shape with the first dimension cut to the rows.
    pub shape: Vec<usize>,
}

impl Piece {
    /// The piece's values as a range of the tensor's flat buffer.
    #[must_use]
    pub fn values(&self) -> std::ops::Range<usize> {
        self.rows.start * self.row_len..self.rows.end * self.row_len
    }

    /// Number of values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len() * self.row_len
    }

    /// True when the piece has no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The split of a layout over S shards.
///
/// Invariant: every row of every tensor belongs to exactly one piece of exactly one
/// shard; each shard's pieces are in layout order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// The pieces of each shard, `shards[k]` for shard k.
    shards: Vec<Vec<Piece>>,
    /// The full shape of each tensor, in layout order.
    shapes: Vec<Vec<usize>>,
    /// The name of each tensor, in layout order.
    names: Vec<String>,
}

impl ShardPlan {
    /// Splits `layout` over `shards` servers (at least 1).
    ///
    /// # Panics
    /// When `shards` is 0.
    #[must_use]
    pub fn new(layout: &ParameterLayout, shards: usize) -> Self {
        assert!(shards >= 1, "at least one shard");
        let total = layout.num_values();
        let mut plan: Vec<Vec<Piece>> = vec![Vec::new(); shards];
        let mut offset = 0usize; // flat position of the current row's first value
        for (param, spec) in layout.params().iter().enumerate() {
            let (rows, row_len) = match spec.shape[..] {
                [] => (1, 1),
                [n] => (n, 1),
                [r, ..] => (r, spec.shape[1..].iter().product()),
            };
            let mut row = 0;
            while row < rows {
                let shard = shard_of(offset + row * row_len, total, shards);
                // Extend while the following rows start in the same shard.
                let mut end = row + 1;
                while end < rows && shard_of(offset + end * row_len, total, shards) == shard {
                    end += 1;
                }
                let whole = row == 0 && end == rows;
                let mut shape = spec.shape.clone();
                if let Some(first) = shape.first_mut() {
                    *first = end - row;
                }
                plan[shard].push(Piece {
                    param,
                    tensor_name: spec.name.clone(),
                    name: if whole {
                        spec.name.clone()
                    } else {
                        format!("{}@rows{row}-{end}", spec.name)
                    },
                    rows: row..end,
                    row_len,
                    shape,
                });
                row = end;
            }
            offset += rows * row_len;
        }
        Self {
            shards: plan,
            shapes: layout.params().iter().map(|p| p.shape.clone()).collect(),
            names: layout.params().iter().map(|p| p.name.clone()).collect(),
        }
    }

    /// Number of shards.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The pieces shard `k` owns, in layout order.
    #[must_use]
    pub fn pieces(&self, k: usize) -> &[Piece] {
        &self.shards[k]
    }

    /// Values shard `k` owns.
    #[must_use]
    pub fn shard_len(&self, k: usize) -> usize {
        self.shards[k].iter().map(Piece::len).sum()
    }

    /// Shard `k`'s part of a full parameter (or gradient) set, one tensor per piece.
    ///
    /// # Panics
    /// When `full` does not follow the layout the plan was made from.
    #[must_use]
    pub fn slice(&self, full: &ParamSet, k: usize) -> ParamSet {
        let entries = self.shards[k]
            .iter()
            .map(|p| {
                let t = &full.entries()[p.param];
                assert_eq!(t.name, p.tensor_name, "full set must follow the layout");
                NamedTensor {
                    name: p.name.clone(),
                    tensor: Tensor::new(p.shape.clone(), t.tensor.data()[p.values()].to_vec())
                        .expect("piece shape matches its values"),
                }
            })
            .collect();
        ParamSet::new(entries)
    }

    /// Writes shard `k`'s part (as made by [`ShardPlan::slice`]) into a full set.
    ///
    /// # Panics
    /// When `part` does not have shard k's pieces in order, or `full` does not follow the layout.
    pub fn write_part(&self, full: &mut ParamSet, k: usize, part: &ParamSet) {
        assert_eq!(part.len(), self.shards[k].len(), "one tensor per piece");
        let mut tensors: Vec<&mut Tensor> = full.tensors_mut().collect();
        for (p, t) in self.shards[k].iter().zip(part.entries()) {
            assert_eq!(t.name, p.name, "pieces in plan order");
            tensors[p.param].data_mut()[p.values()].copy_from_slice(t.tensor.data());
        }
    }

    /// A full set of zeros in layout order (to assemble parts into).
    #[must_use]
    pub fn zeros(&self) -> ParamSet {
        ParamSet::new(
            self.names
                .iter()
                .zip(&self.shapes)
                .map(|(name, shape)| NamedTensor {
                    name: name.clone(),
                    tensor: Tensor::zeros(shape),
                })
                .collect(),
        )
    }
}

/// The shard whose range `[k·T/S, (k+1)·T/S)` contains flat position `pos`.
fn shard_of(pos: usize, total: usize, shards: usize) -> usize {
    // Largest k with k·T/S <= pos, i.e. floor(pos·S / T), computed without overflow.
    let k = (pos as u128 * shards as u128 / total.max(1) as u128) as usize;
    k.min(shards - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataShape, Task};
    use crate::layout::{Init, ParameterSpec};
    use crate::model_spec::ModelSpec;

    fn layout(shapes: &[&[usize]]) -> ParameterLayout {
        ParameterLayout::new(
            shapes
                .iter()
                .enumerate()
                .map(|(i, s)| ParameterSpec {
                    name: format!("t{i}"),
                    shape: s.to_vec(),
                    init: Init::Constant(0.0),
                })
                .collect(),
        )
    }

    fn widest_row(l: &ParameterLayout) -> usize {
        l.params()
            .iter()
            .map(|p| {
                if p.shape.len() >= 2 {
                    p.shape[1..].iter().product()
                } else {
                    1
                }
            })
            .max()
            .unwrap()
    }

    #[test]
    fn every_row_is_in_exactly_one_piece_and_shards_are_balanced() {
        let cases: Vec<Vec<&[usize]>> = vec![
            vec![&[128, 64], &[128], &[10, 128], &[10]],
            vec![&[1000, 3]],
            vec![&[7], &[3, 5], &[2, 2, 2], &[1]],
            vec![&[3334, 3000], &[3334], &[10, 3334], &[10]],
        ];
        for shapes in cases {
            let l = layout(&shapes);
            let total = l.num_values();
            for s in 1..=5 {
                let plan = ShardPlan::new(&l, s);
                let mut seen: Vec<Vec<bool>> = l
                    .params()
                    .iter()
                    .map(|p| vec![false; p.shape.first().copied().unwrap_or(1)])
                    .collect();
                for k in 0..s {
                    for piece in plan.pieces(k) {
                        for r in piece.rows.clone() {
                            assert!(!seen[piece.param][r], "row {r} of t{} twice", piece.param);
                            seen[piece.param][r] = true;
                        }
                    }
                    let bound = total.div_ceil(s) + widest_row(&l);
                    assert!(
                        plan.shard_len(k) <= bound,
                        "{shapes:?} S={s}: shard {k} has {} > {bound}",
                        plan.shard_len(k)
                    );
                }
                assert!(
                    seen.iter().flatten().all(|&b| b),
                    "{shapes:?} S={s}: a row is unowned"
                );
                assert_eq!((0..s).map(|k| plan.shard_len(k)).sum::<usize>(), total);
            }
        }
    }

    #[test]
    fn one_big_layer_is_split_by_rows() {
        let l = layout(&[&[1000, 3]]);
        let plan = ShardPlan::new(&l, 3);
        let rows: Vec<_> = (0..3).map(|k| plan.pieces(k)[0].rows.clone()).collect();
        assert_eq!(rows, vec![0..334, 334..667, 667..1000]);
        assert_eq!(plan.pieces(1)[0].name, "t0@rows334-667");
        assert_eq!(plan.pieces(1)[0].shape, vec![333, 3]);
    }

    #[test]
    fn one_shard_keeps_whole_tensors_and_their_names() {
        let spec = ModelSpec::default();
        let l = spec
            .layout(&DataShape::tabular(
                64,
                Task::Classification { classes: 10 },
            ))
            .unwrap();
        let plan = ShardPlan::new(&l, 1);
        let names: Vec<&str> = plan.pieces(0).iter().map(|p| p.name.as_str()).collect();
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

    #[test]
    fn slicing_and_writing_back_round_trips() {
        let spec = ModelSpec::default();
        let l = spec
            .layout(&DataShape::tabular(
                64,
                Task::Classification { classes: 10 },
            ))
            .unwrap();
        let full = l.initialize(3);
        for s in 1..=4 {
            let plan = ShardPlan::new(&l, s);
            let mut rebuilt = plan.zeros();
            for k in 0..s {
                let part = plan.slice(&full, k);
                assert_eq!(part.num_values(), plan.shard_len(k));
                plan.write_part(&mut rebuilt, k, &part);
            }
            assert_eq!(rebuilt, full, "S={s}");
        }
    }

    #[test]
    fn the_plan_is_the_same_on_every_call() {
        let l = layout(&[&[50, 7], &[50], &[3, 50]]);
        assert_eq!(ShardPlan::new(&l, 3), ShardPlan::new(&l, 3));
    }
}
