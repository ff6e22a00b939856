//! Dense f32 tensors and ordered sets of named tensors.
//!
//! A [`Tensor`] is a shape plus a flat row-major buffer: the form the optimizers
//! walk in one pass, the wire carries as little-endian bytes, and the models view
//! as ndarray matrices without copying.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use serde::{Deserialize, Serialize};

/// Why a tensor or tensor set could not be built or combined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// The buffer length does not equal the product of the shape.
    #[error("tensor of shape {shape:?} needs {expected} values, got {actual}")]
    LengthMismatch {
        /// The requested shape.
        shape: Vec<usize>,
        /// The product of the shape.
        expected: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// A view of a given rank was asked of a tensor of another rank.
    #[error("expected a rank-{expected} tensor, got shape {shape:?}")]
    Rank {
        /// The rank the caller needs.
        expected: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
}

/// A dense f32 tensor stored row-major.
///
/// Invariant: `data.len() == shape.iter().product()` (an empty shape is a scalar of one value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Extent of each dimension, outermost first.
    shape: Vec<usize>,
    /// The values, row-major; its length is the product of `shape`.
    data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor from a shape and a row-major buffer.
    ///
    /// # Errors
    /// [`TensorError::LengthMismatch`] when the buffer does not fit the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, TensorError> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(TensorError::LengthMismatch {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// A tensor of the given shape filled with zeros.
    #[must_use]
    pub fn zeros(shape: &[usize]) -> Self {
        Self {
            data: vec![0.0; shape.iter().product()],
            shape: shape.to_vec(),
        }
    }

    /// The tensor's shape.
    #[must_use]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    #[must_use]
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major, for in-place updates (the shape cannot change).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its buffer.
    #[must_use]
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Sets every value to zero.
    pub fn fill_zero(&mut self) {
        self.data.fill(0.0);
    }

    /// A rank-1 view.
    ///
    /// # Errors
    /// [`TensorError::Rank`] when the tensor is not rank 1.
    pub fn view1(&self) -> Result<ArrayView1<'_, f32>, TensorError> {
        match self.shape[..] {
            [n] => Ok(ArrayView1::from_shape(n, &self.data).expect("invariant: len == n")),
            _ => Err(self.rank_error(1)),
        }
    }

    /// A mutable rank-1 view.
    ///
    /// # Errors
    /// [`TensorError::Rank`] when the tensor is not rank 1.
    pub fn view1_mut(&mut self) -> Result<ArrayViewMut1<'_, f32>, TensorError> {
        match self.shape[..] {
            [n] => Ok(ArrayViewMut1::from_shape(n, &mut self.data).expect("invariant: len == n")),
            _ => Err(self.rank_error(1)),
        }
    }

    /// A rank-2 view (rows, columns).
    ///
    /// # Errors
    /// [`TensorError::Rank`] when the tensor is not rank 2.
    pub fn view2(&self) -> Result<ArrayView2<'_, f32>, TensorError> {
        match self.shape[..] {
            [r, c] => {
                Ok(ArrayView2::from_shape((r, c), &self.data).expect("invariant: len == r*c"))
            }
            _ => Err(self.rank_error(2)),
        }
    }

    /// A mutable rank-2 view (rows, columns).
    ///
    /// # Errors
    /// [`TensorError::Rank`] when the tensor is not rank 2.
    pub fn view2_mut(&mut self) -> Result<ArrayViewMut2<'_, f32>, TensorError> {
        match self.shape[..] {
            [r, c] => {
                Ok(ArrayViewMut2::from_shape((r, c), &mut self.data)
                    .expect("invariant: len == r*c"))
            }
            _ => Err(self.rank_error(2)),
        }
    }

    fn rank_error(&self, expected: usize) -> TensorError {
        TensorError::Rank {
            expected,
            shape: self.shape.clone(),
        }
    }
}

/// One tensor with its parameter name (PyTorch style: `layers.0.weight`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    /// The parameter's name, unique within its set.
    pub name: String,
    /// Its value.
    pub tensor: Tensor,
}

/// An ordered set of named tensors: a model's parameters, or a gradient for them.
///
/// Invariant: names are unique; the order is the layout's order and is the order
/// in which tensors are stored, sent and summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamSet {
    /// The tensors, in layout order, with unique names.
    entries: Vec<NamedTensor>,
}

impl ParamSet {
    /// Builds a set from tensors in order.
    ///
    /// # Panics
    /// When two entries share a name: callers build sets from a layout, whose names are unique.
    #[must_use]
    pub fn new(entries: Vec<NamedTensor>) -> Self {
        for (i, a) in entries.iter().enumerate() {
            assert!(
                entries[..i].iter().all(|b| b.name != a.name),
                "duplicate tensor name {}",
                a.name
            );
        }
        Self { entries }
    }

    /// The tensors in order.
    #[must_use]
    pub fn entries(&self) -> &[NamedTensor] {
        &self.entries
    }

    /// The tensors in order, mutable (names and shapes stay fixed).
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut Tensor> {
        self.entries.iter_mut().map(|e| &mut e.tensor)
    }

    /// Consumes the set, returning its entries.
    #[must_use]
    pub fn into_entries(self) -> Vec<NamedTensor> {
        self.entries
    }

    /// The tensor called `name`, if any.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.tensor)
    }

    /// The tensor called `name`, mutable, if any.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.entries
            .iter_mut()
            .find(|e| e.name == name)
            .map(|e| &mut e.tensor)
    }

    /// Number of tensors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the set holds no tensors.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of f32 values over all tensors.
    #[must_use]
    pub fn num_values(&self) -> usize {
        self.entries.iter().map(|e| e.tensor.len()).sum()
    }

    /// A set of the same names and shapes, filled with zeros.
    #[must_use]
    pub fn zeros_like(&self) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .map(|e| NamedTensor {
                    name: e.name.clone(),
                    tensor: Tensor::zeros(e.tensor.shape()),
                })
                .collect(),
        }
    }

    /// Sets every value of every tensor to zero.
    pub fn fill_zero(&mut self) {
        self.tensors_mut().for_each(Tensor::fill_zero);
    }

    /// The same tensors reordered to follow `names` (a layout's order); `None` when the
    /// names are not exactly this set's.
    #[must_use]
    pub fn reordered<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for name in names {
            let i = self.entries.iter().position(|e| e.name == name)?;
            entries.push(self.entries.swap_remove(i));
        }
        self.entries.is_empty().then_some(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_a_buffer_that_does_not_fit_the_shape() {
        let err = Tensor::new(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor of shape [2, 3] needs 6 values, got 5"
        );
    }

    #[test]
    fn views_follow_row_major_order_and_check_rank() {
        let t = Tensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let m = t.view2().unwrap();
        assert_eq!(m[[1, 0]], 3.0);
        assert_eq!(m[[0, 2]], 2.0);
        assert!(matches!(
            t.view1(),
            Err(TensorError::Rank { expected: 1, .. })
        ));
    }

    #[test]
    fn param_set_looks_up_by_name_and_counts_values() {
        let set = ParamSet::new(vec![
            NamedTensor {
                name: "w".into(),
                tensor: Tensor::zeros(&[2, 2]),
            },
            NamedTensor {
                name: "b".into(),
                tensor: Tensor::zeros(&[2]),
            },
        ]);
        assert_eq!(set.num_values(), 6);
        assert_eq!(set.get("b").unwrap().shape(), &[2]);
        assert!(set.get("c").is_none());
    }

    #[test]
    fn reordered_follows_the_given_names_and_requires_the_same_set() {
        let set = ParamSet::new(vec![
            NamedTensor {
                name: "b".into(),
                tensor: Tensor::zeros(&[1]),
            },
            NamedTensor {
                name: "a".into(),
                tensor: Tensor::zeros(&[2]),
            },
        ]);
        let names: Vec<String> = set
            .clone()
            .reordered(["a", "b"])
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(set.clone().reordered(["a"]).is_none());
        assert!(set.reordered(["a", "c"]).is_none());
    }

    #[test]
    #[should_panic(expected = "duplicate tensor name w")]
    fn param_set_refuses_duplicate_names() {
        let _ = ParamSet::new(vec![
            NamedTensor {
                name: "w".into(),
                tensor: Tensor::zeros(&[1]),
            },
            NamedTensor {
                name: "w".into(),
                tensor: Tensor::zeros(&[1]),
            },
        ]);
    }
}
