//! The model's tensors as a receiver checks them: names, shapes and total values, built
//! once from the parameters (or a shard's part of them).
//!
//! Every rule about which tensors a gradient holds lives here: the piece assembler
//! (`downpour_proto::pieces`) asks [`TensorSchema::lookup`] and [`TensorSchema::check_shape`]
//! from a tensor's first piece, and a finished set becomes a [`Conformed`] gradient only
//! through [`TensorSchema::conform`]. The parameter store trusts a [`Conformed`] set and
//! scans only for non-finite values.

use std::collections::HashMap;

use crate::quote::{Quoted, quote};
use crate::{NamedTensor, ParamSet};

/// A set of tensors that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A tensor name the model does not have.
    #[error("unknown tensor {name}; the model has {known}")]
    UnknownTensor {
        /// The name sent (a prefix of it).
        name: Quoted,
        /// The model's names, comma-separated.
        known: String,
    },
    /// More tensors than the model has (empty ones included).
    #[error("more than {limit} tensors: the model has {limit}")]
    TooManyTensors {
        /// Tensors in the model.
        limit: usize,
    },
    /// A tensor of the model is missing.
    #[error("gradient for {name} is missing")]
    MissingTensor {
        /// The missing name.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {name}: expected shape {expected:?}, got {actual:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The shape sent.
        actual: Vec<usize>,
    },
}

/// Names of the model an unknown-tensor error lists.
const NAMES_SHOWN: usize = 16;

/// One tensor of the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Values it holds: the product of `shape`.
    pub len: usize,
}

/// The tensors a gradient must hold, in the model's (layout) order.
///
/// Invariants: `index[specs[i].name] == i` for every `i`; `values` is the sum of the lens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSchema {
    /// The tensors, in order.
    specs: Vec<TensorSpec>,
    /// Position of each name in `specs`: a name is found by lookup, not by a scan.
    index: HashMap<String, usize>,
    /// Values in all.
    values: u64,
}

impl TensorSchema {
    /// The schema of `params`' names and shapes, in their order.
    #[must_use]
    pub fn of(params: &ParamSet) -> Self {
        let specs: Vec<TensorSpec> = params
            .entries()
            .iter()
            .map(|e| TensorSpec {
                name: e.name.clone(),
                shape: e.tensor.shape().to_vec(),
                len: e.tensor.len(),
            })
            .collect();
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let values = specs.iter().map(|s| s.len as u64).sum();
        Self {
            specs,
            index,
            values,
        }
    }

    /// The tensors, in order.
    #[must_use]
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Values in all.
    #[must_use]
    pub fn values(&self) -> u64 {
        self.values
    }

    /// The position of tensor `name`.
    ///
    /// # Errors
    /// [`SchemaError::UnknownTensor`] for a name the model does not have.
    pub fn lookup(&self, name: &str) -> Result<usize, SchemaError> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| SchemaError::UnknownTensor {
                name: quote(name),
                known: self.names(),
            })
    }

    /// Checks that tensor `i` is sent with shape `actual`.
    ///
    /// # Errors
    /// [`SchemaError::Shape`] when it differs from the model's.
    pub fn check_shape(&self, i: usize, actual: &[usize]) -> Result<(), SchemaError> {
        let spec = &self.specs[i];
        if spec.shape == actual {
            return Ok(());
        }
        Err(SchemaError::Shape {
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            actual: actual.to_vec(),
        })
    }

    /// Checks a whole set against the schema and puts it in the schema's order. An empty
    /// set conforms (a step without data); otherwise every tensor must be there, once,
    /// with its shape.
    ///
    /// # Errors
    /// [`SchemaError`] for the first tensor that does not fit, or the first missing one.
    pub fn conform(&self, set: ParamSet) -> Result<Conformed, SchemaError> {
        if set.is_empty() {
            return Ok(Conformed(set));
        }
        if set.len() > self.specs.len() {
            return Err(SchemaError::TooManyTensors {
                limit: self.specs.len(),
            });
        }
        let mut slots: Vec<Option<NamedTensor>> = vec![None; self.specs.len()];
        for t in set.into_entries() {
            let i = self.lookup(&t.name)?;
            self.check_shape(i, t.tensor.shape())?;
            slots[i] = Some(t);
        }
        let entries = slots
            .into_iter()
            .zip(&self.specs)
            .map(|(slot, spec)| {
                slot.ok_or_else(|| SchemaError::MissingTensor {
                    name: spec.name.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Conformed(ParamSet::new(entries)))
    }

    /// Tensors in the model.
    #[must_use]
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the model has no tensor.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The model's names for an error message: the first [`NAMES_SHOWN`], then a count.
    fn names(&self) -> String {
        let mut shown: Vec<&str> = self
            .specs
            .iter()
            .take(NAMES_SHOWN)
            .map(|s| s.name.as_str())
            .collect();
        let more = self.specs.len().saturating_sub(NAMES_SHOWN);
        let more = (more > 0).then(|| format!("and {more} more"));
        shown.extend(more.as_deref());
        shown.join(", ")
    }
}

/// A set that fits its schema: every tensor once, in the schema's order, with its shape;
/// or empty. Only [`TensorSchema::conform`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Conformed(ParamSet);

impl Conformed {
    /// The tensors.
    #[must_use]
    pub fn set(&self) -> &ParamSet {
        &self.0
    }

    /// The tensors, to be consumed.
    #[must_use]
    pub fn into_set(self) -> ParamSet {
        self.0
    }

    /// Whether the set holds no tensor (the worker had no data).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn set(names: &[(&str, &[usize])]) -> ParamSet {
        ParamSet::new(
            names
                .iter()
                .map(|(n, s)| NamedTensor {
                    name: (*n).into(),
                    tensor: Tensor::zeros(s),
                })
                .collect(),
        )
    }

    #[test]
    fn a_set_in_any_order_is_put_in_the_schema_order() {
        let schema = TensorSchema::of(&set(&[("w", &[2, 3]), ("b", &[3])]));
        assert_eq!(schema.values(), 9);
        let back = schema.conform(set(&[("b", &[3]), ("w", &[2, 3])])).unwrap();
        let names: Vec<&str> = back
            .set()
            .entries()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["w", "b"]);
        assert!(schema.conform(ParamSet::default()).unwrap().is_empty());
    }

    #[test]
    fn unknown_missing_and_misshapen_tensors_are_named() {
        let schema = TensorSchema::of(&set(&[("w", &[2, 3]), ("b", &[3])]));
        let unknown = schema.conform(set(&[("v", &[2, 3])])).unwrap_err();
        assert_eq!(unknown.to_string(), "unknown tensor v; the model has w, b");
        let shape = schema
            .conform(set(&[("w", &[3, 2]), ("b", &[3])]))
            .unwrap_err();
        assert_eq!(
            shape.to_string(),
            "tensor w: expected shape [2, 3], got [3, 2]"
        );
        let missing = schema.conform(set(&[("w", &[2, 3])])).unwrap_err();
        assert_eq!(missing.to_string(), "gradient for b is missing");
        let extra = schema
            .conform(set(&[("w", &[2, 3]), ("b", &[3]), ("c", &[0])]))
            .unwrap_err();
        assert_eq!(extra, SchemaError::TooManyTensors { limit: 2 });
        let long = "v".repeat(1 << 20);
        let err = schema.conform(set(&[(long.as_str(), &[3])])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unknown tensor {}…(1048576 bytes); the model has w, b",
                "v".repeat(64)
            )
        );
    }
}
