//! Conversions between wire messages and domain types.
//!
//! Server and worker never build wire messages by hand: they call these.
//! Tensors travel as little-endian f32 bytes; the training plan and the status,
//! which are rich, rarely sent and meant for people too, travel as JSON.

use bytes::Bytes;
use downpour_core::status::{Evaluation, ServerStatus};
use downpour_core::timing::PhaseTimes;
use downpour_core::{NamedTensor, ParamSet, Tensor, TrainingPlan};

use crate::v1;

/// A wire message that does not decode into a domain value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// A tensor's byte length is not a multiple of 4.
    #[error("tensor {name}: {len} bytes is not a whole number of f32 values")]
    ByteLength {
        /// The tensor's name.
        name: String,
        /// Its byte length.
        len: usize,
    },
    /// A tensor's value count does not match its shape.
    #[error("tensor {name}: shape {shape:?} needs {expected} values, got {actual}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// Its declared shape.
        shape: Vec<u64>,
        /// The shape's product.
        expected: u64,
        /// Values in the bytes.
        actual: usize,
    },
    /// A dimension does not fit in memory on this machine.
    #[error("tensor {name}: shape {shape:?} is too large")]
    TooLarge {
        /// The tensor's name.
        name: String,
        /// Its declared shape.
        shape: Vec<u64>,
    },
    /// The same tensor name appears twice in one message.
    #[error("tensor {name} appears twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// An embedded JSON document does not parse.
    #[error("malformed {what}: {reason}")]
    Json {
        /// Which document.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
}

/// Encodes f32 values as little-endian bytes.
///
/// Writing into a zeroed buffer through fixed-size chunks lets the compiler vectorise
/// the loop: twice as fast as pushing four bytes at a time (measured on 10M values).
#[must_use]
pub fn f32_to_le_bytes(values: &[f32]) -> Bytes {
    let mut out = vec![0u8; values.len() * 4];
    for (chunk, v) in out.chunks_exact_mut(4).zip(values) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// Decodes little-endian bytes into f32 values; `None` when the length is not a multiple of 4.
#[must_use]
pub fn f32_from_le_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl From<&NamedTensor> for v1::Tensor {
    fn from(t: &NamedTensor) -> Self {
        Self {
            name: t.name.clone(),
            shape: t.tensor.shape().iter().map(|&d| d as u64).collect(),
            data: f32_to_le_bytes(t.tensor.data()),
        }
    }
}

impl TryFrom<v1::Tensor> for NamedTensor {
    type Error = WireError;

    fn try_from(t: v1::Tensor) -> Result<Self, WireError> {
        let values = f32_from_le_bytes(&t.data).ok_or_else(|| WireError::ByteLength {
            name: t.name.clone(),
            len: t.data.len(),
        })?;
        let too_large = || WireError::TooLarge {
            name: t.name.clone(),
            shape: t.shape.clone(),
        };
        let mut shape = Vec::with_capacity(t.shape.len());
        let mut expected: u64 = 1;
        for &d in &t.shape {
            shape.push(usize::try_from(d).map_err(|_| too_large())?);
            expected = expected.checked_mul(d).ok_or_else(too_large)?;
        }
        if expected != values.len() as u64 {
            return Err(WireError::ShapeMismatch {
                name: t.name,
                shape: t.shape,
                expected,
                actual: values.len(),
            });
        }
        let tensor = Tensor::new(shape, values).expect("length checked against the shape");
        Ok(Self {
            name: t.name,
            tensor,
        })
    }
}

/// Encodes a parameter or gradient set.
#[must_use]
pub fn params_to_wire(set: &ParamSet) -> Vec<v1::Tensor> {
    set.entries().iter().map(v1::Tensor::from).collect()
}

/// Decodes a parameter or gradient set, keeping the wire order.
///
/// # Errors
/// [`WireError`] for a malformed tensor or a repeated name.
pub fn params_from_wire(tensors: Vec<v1::Tensor>) -> Result<ParamSet, WireError> {
    let mut entries: Vec<NamedTensor> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let named = NamedTensor::try_from(t)?;
        if entries.iter().any(|e| e.name == named.name) {
            return Err(WireError::DuplicateName { name: named.name });
        }
        entries.push(named);
    }
    Ok(ParamSet::new(entries))
}

/// Encodes the training plan for a [`v1::RegisterResponse`].
#[must_use]
pub fn plan_to_json(plan: &TrainingPlan) -> String {
    serde_json::to_string(plan).expect("a plan always serialises")
}

/// Decodes the training plan of a [`v1::RegisterResponse`].
///
/// # Errors
/// [`WireError::Json`] when it does not parse.
pub fn plan_from_json(json: &str) -> Result<TrainingPlan, WireError> {
    serde_json::from_str(json).map_err(|e| WireError::Json {
        what: "training plan",
        reason: e.to_string(),
    })
}

/// Encodes the server's status for a [`v1::StatusResponse`].
#[must_use]
pub fn status_to_wire(status: &ServerStatus) -> v1::StatusResponse {
    v1::StatusResponse {
        status_json: serde_json::to_string(status).expect("a status always serialises"),
    }
}

/// Decodes a [`v1::StatusResponse`].
///
/// # Errors
/// [`WireError::Json`] when it does not parse.
pub fn status_from_wire(msg: &v1::StatusResponse) -> Result<ServerStatus, WireError> {
    serde_json::from_str(&msg.status_json).map_err(|e| WireError::Json {
        what: "server status",
        reason: e.to_string(),
    })
}

impl From<v1::EvaluationReport> for Evaluation {
    fn from(r: v1::EvaluationReport) -> Self {
        Self {
            worker_id: r.worker_id,
            version: r.version,
            test_loss: r.test_loss,
            test_accuracy: r.test_accuracy,
            test_mse: r.test_mse,
            test_samples: r.test_samples,
            is_final: r.r#final,
        }
    }
}

impl From<&Evaluation> for v1::EvaluationReport {
    fn from(e: &Evaluation) -> Self {
        Self {
            worker_id: e.worker_id,
            version: e.version,
            test_loss: e.test_loss,
            test_accuracy: e.test_accuracy,
            test_mse: e.test_mse,
            r#final: e.is_final,
            test_samples: e.test_samples,
        }
    }
}

impl From<&PhaseTimes> for v1::PhaseTimes {
    fn from(p: &PhaseTimes) -> Self {
        Self {
            steps: p.steps,
            wait: p.wait,
            pull: p.pull,
            decode: p.decode,
            evaluate: p.evaluate,
            compute: p.compute,
            encode: p.encode,
            push: p.push,
            apply: p.apply,
            overlap: p.overlap,
            total: p.total,
        }
    }
}

impl From<v1::PhaseTimes> for PhaseTimes {
    fn from(p: v1::PhaseTimes) -> Self {
        Self {
            steps: p.steps,
            wait: p.wait,
            pull: p.pull,
            decode: p.decode,
            evaluate: p.evaluate,
            compute: p.compute,
            encode: p.encode,
            push: p.push,
            apply: p.apply,
            overlap: p.overlap,
            total: p.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str, shape: Vec<u64>, data: Vec<u8>) -> v1::Tensor {
        v1::Tensor {
            name: name.into(),
            shape,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn tensors_round_trip_bit_exactly() {
        let values = vec![1.5, -0.0, f32::MIN_POSITIVE, 3.0e38, -7.25, 0.1];
        let t = NamedTensor {
            name: "w".into(),
            tensor: Tensor::new(vec![2, 3], values).unwrap(),
        };
        let w = v1::Tensor::from(&t);
        assert_eq!(w.data.len(), 24);
        assert_eq!(&w.data[..4], &1.5f32.to_le_bytes());
        let back = NamedTensor::try_from(w).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_byte_length_that_is_not_a_multiple_of_4_is_refused() {
        let err = NamedTensor::try_from(wire("b", vec![1], vec![0; 5])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor b: 5 bytes is not a whole number of f32 values"
        );
    }

    #[test]
    fn a_shape_that_does_not_match_the_bytes_is_refused() {
        let err = NamedTensor::try_from(wire("w", vec![2, 2], vec![0; 12])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor w: shape [2, 2] needs 4 values, got 3"
        );
        let huge = NamedTensor::try_from(wire("w", vec![u64::MAX, 4], vec![])).unwrap_err();
        assert!(matches!(huge, WireError::TooLarge { .. }));
    }

    #[test]
    fn phase_times_round_trip() {
        let p = PhaseTimes {
            steps: 3,
            wait: 0.5,
            compute: 1.25,
            overlap: 0.25,
            total: 2.0,
            ..PhaseTimes::default()
        };
        assert_eq!(PhaseTimes::from(v1::PhaseTimes::from(&p)), p);
    }

    #[test]
    fn duplicate_names_in_one_message_are_refused() {
        let t = wire("w", vec![1], vec![0; 4]);
        let err = params_from_wire(vec![t.clone(), t]).unwrap_err();
        assert_eq!(err, WireError::DuplicateName { name: "w".into() });
    }
}
