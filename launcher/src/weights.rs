//! Trained weights as `safetensors`, the format PyTorch (`safetensors.torch.load_file`)
//! and numpy users load, with the layer names PyTorch would use.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use downpour_core::data::Standardization;
use downpour_core::{NamedTensor, ParamSet, Tensor};

/// Metadata key of the standardisation statistics: JSON `{"mean": [...], "std": [...]}`,
/// one f32 per feature, written so that they read back bit-exactly. They live in the
/// header's metadata, not as tensors, so the file loads into the torch model with
/// `load_state_dict(..., strict=True)`.
pub const STANDARDIZATION_KEY: &str = "downpour_standardization";
/// Metadata key of the class names (JSON array, class `k` at index `k`), when labels were names.
pub const CLASS_NAMES_KEY: &str = "downpour_class_names";

/// A weights file that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid safetensors, or holds something other than f32 tensors.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Writes `params` to `path` as f32 safetensors, with `metadata` in the header.
///
/// # Errors
/// [`WeightsError`] when the file cannot be written.
pub fn write_safetensors(
    path: &Path,
    params: &ParamSet,
    metadata: HashMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .entries()
        .iter()
        .map(|e| {
            let data = e
                .tensor
                .data()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (e.name.clone(), data, e.tensor.shape().to_vec())
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, data, shape)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), data).expect("length matches the shape");
            (name.clone(), view)
        })
        .collect();
    let format = |reason: String| WeightsError::Format {
        path: path.display().to_string(),
        reason,
    };
    let encoded =
        safetensors::serialize(views, Some(metadata)).map_err(|e| format(e.to_string()))?;
    std::fs::write(path, encoded).map_err(|source| WeightsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The metadata entries that record what was done to the data: the standardisation
/// statistics and the class names, each only when present.
#[must_use]
pub fn data_metadata(
    standardization: Option<&Standardization>,
    class_names: Option<&[String]>,
) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    if let Some(s) = standardization {
        let json = serde_json::to_string(s).expect("statistics always serialise");
        entries.push((STANDARDIZATION_KEY.to_string(), json));
    }
    if let Some(names) = class_names {
        let json = serde_json::to_string(names).expect("names always serialise");
        entries.push((CLASS_NAMES_KEY.to_string(), json));
    }
    entries
}

/// The metadata in a safetensors file's header (empty when it has none).
///
/// # Errors
/// [`WeightsError`] when the file is unreadable or malformed.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>, WeightsError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: display.clone(),
        source,
    })?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| WeightsError::Format {
            path: display.clone(),
            reason: e.to_string(),
        })?;
    Ok(header.metadata().clone().unwrap_or_default())
}

/// The standardisation statistics saved in a weights file's metadata, if any.
///
/// # Errors
/// [`WeightsError::Format`] when the entry is present but not valid statistics.
pub fn read_standardization(path: &Path) -> Result<Option<Standardization>, WeightsError> {
    let metadata = read_metadata(path)?;
    metadata
        .get(STANDARDIZATION_KEY)
        .map(|json| {
            serde_json::from_str(json).map_err(|e| WeightsError::Format {
                path: path.display().to_string(),
                reason: format!("metadata {STANDARDIZATION_KEY}: {e}"),
            })
        })
        .transpose()
}

/// Why the parameters of a running server could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A shard could not be reached or refused.
    #[error(transparent)]
    Client(#[from] downpour_worker::ClientError),
    /// The job a shard reports does not validate here (e.g. its data file is elsewhere).
    #[error("the server's job: {0}")]
    Job(String),
    /// The shards given do not match the job's shard count.
    #[error("shard 0 reports {expected} server shard(s), {given} address(es) were given")]
    ShardCount {
        /// Shards in the job.
        expected: usize,
        /// Addresses given.
        given: usize,
    },
    /// The file could not be written.
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

/// Pulls the current parameters from every shard (`addresses`, shard 0 first, reached with
/// `config`'s token and TLS settings), assembles
/// them in layout order and writes them to `out` as safetensors. Returns the version.
///
/// # Errors
/// [`ExportError`] when a shard cannot be reached, the shards do not match the job, or the
/// file cannot be written.
pub async fn export_from_servers(
    config: &downpour_worker::ClientConfig,
    addresses: &[String],
    out: &Path,
) -> Result<u64, ExportError> {
    let mut shard0 =
        downpour_worker::ServerClient::connect_with(&config.with_address(&addresses[0])).await?;
    let status = shard0.status().await?;
    if status.shard.count != addresses.len() {
        return Err(ExportError::ShardCount {
            expected: status.shard.count,
            given: addresses.len(),
        });
    }
    let spec: downpour_server::JobSpec =
        serde_json::from_value(status.job.clone()).map_err(|e| ExportError::Job(e.to_string()))?;
    let job = spec
        .validate()
        .map_err(|e| ExportError::Job(e.to_string()))?;
    let plan = downpour_core::partition::ShardPlan::new(&job.layout, addresses.len());
    let mut params = plan.zeros();
    let mut version = 0;
    for (k, address) in addresses.iter().enumerate() {
        let mut client =
            downpour_worker::ServerClient::connect_with(&config.with_address(address)).await?;
        let (v, part) = client.parameters().await?;
        if k == 0 {
            version = v;
        }
        plan.write_part(&mut params, k, &part);
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("downpour_version".to_string(), version.to_string()),
        ("job".to_string(), status.job.to_string()),
    ]);
    write_safetensors(out, &params, metadata)?;
    Ok(version)
}

/// Reads f32 tensors from a safetensors file, in the file's order of names (sorted).
///
/// # Errors
/// [`WeightsError`] when unreadable, malformed, or not f32.
pub fn read_safetensors(path: &Path) -> Result<ParamSet, WeightsError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: display.clone(),
        source,
    })?;
    let format = |reason: String| WeightsError::Format {
        path: display.clone(),
        reason,
    };
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let view = file.tensor(&name).map_err(|e| format(e.to_string()))?;
        if view.dtype() != Dtype::F32 {
            return Err(format(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let tensor = Tensor::new(view.shape().to_vec(), data).map_err(|e| format(e.to_string()))?;
        entries.push(NamedTensor { name, tensor });
    }
    Ok(ParamSet::new(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_bit_exactly() {
        let params = ParamSet::new(vec![
            NamedTensor {
                name: "layers.0.bias".into(),
                tensor: Tensor::new(vec![2], vec![0.5, -1.25]).unwrap(),
            },
            NamedTensor {
                name: "layers.0.weight".into(),
                tensor: Tensor::new(vec![2, 1], vec![3.0, f32::MIN_POSITIVE]).unwrap(),
            },
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        write_safetensors(
            &path,
            &params,
            HashMap::from([("version".into(), "7".into())]),
        )
        .unwrap();
        assert_eq!(read_safetensors(&path).unwrap(), params);
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = read_safetensors(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
