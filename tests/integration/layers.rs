//! Layer-stack models: a CNN trains through real processes, and exported weights load
//! strictly into the equivalent `torch.nn.Sequential` and give the same outputs.
//!
//! The torch checks run `scripts/torch_strict_load.py` with the interpreter in
//! `DOWNPOUR_TORCH_PYTHON` (default `python3`); where it cannot import torch and
//! safetensors they print "SKIPPED: ..." to stderr and pass.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use downpour_core::data::DatasetKind;
use downpour_core::layer_spec::LayerSpec;
use downpour_core::model_spec::ModelKind;
use downpour_core::{
    DataShape, DataSpec, ImageShape, ModelSpec, NamedTensor, ParamSet, Task, Tensor,
};
use downpour_worker::model::Model;
use ndarray::{Array2, s};

use crate::support::train;

/// The layers of the sequential CNN trained on the digits (8×8 images).
const DIGITS_CNN: &str = "conv2d 8 3 padding=1, relu, max_pool2d 2, conv2d 16 3 stride=2, relu, \
                          flatten, dropout 0.2, dense 32, tanh, dense 10";

/// The interpreter for the torch checks, or `None` (with "SKIPPED" said) when it lacks torch.
fn torch_python() -> Option<String> {
    let python = std::env::var("DOWNPOUR_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let works = Command::new(&python)
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        Some(python)
    } else {
        eprintln!(
            "SKIPPED: {python} cannot import torch and safetensors \
             (set DOWNPOUR_TORCH_PYTHON to an interpreter that can)"
        );
        None
    }
}

/// Writes `inputs` and our class probabilities for them beside `weights`, then has torch
/// load `weights` strictly into the `layers`' `nn.Sequential` and compare.
fn torch_agrees(
    python: &str,
    weights: &Path,
    model: &Model,
    params: &ParamSet,
    layers: &[LayerSpec],
    inputs: Array2<f32>,
) {
    let image = model.data_shape().image.expect("image data");
    let expected = model.predict(params, inputs.view()).unwrap();
    let samples = inputs.nrows();
    let check = ParamSet::new(vec![
        NamedTensor {
            name: "inputs".into(),
            tensor: Tensor::new(
                vec![samples, image.channels, image.height, image.width],
                inputs.iter().copied().collect(),
            )
            .unwrap(),
        },
        NamedTensor {
            name: "expected".into(),
            tensor: Tensor::new(
                vec![samples, expected.ncols()],
                expected.iter().copied().collect(),
            )
            .unwrap(),
        },
    ]);
    let texts: Vec<String> = layers.iter().map(ToString::to_string).collect();
    let check_path = weights.with_file_name("check.safetensors");
    let metadata = HashMap::from([("layers".to_string(), serde_json::to_string(&texts).unwrap())]);
    downpour_launch::weights::write_safetensors(&check_path, &check, metadata).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torch_strict_load.py");
    let out = Command::new(python)
        .arg(script)
        .arg(weights)
        .arg(&check_path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "torch disagrees:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

#[test]
fn a_sequential_cnn_learns_the_digits_with_2_workers_and_loads_strictly_into_torch() {
    let run = train(&[
        "--workers",
        "2",
        "--mode",
        "sync",
        "--layers",
        DIGITS_CNN,
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "8",
        "--batch-size",
        "32",
    ]);
    // Sync runs are deterministic: this one reaches 91.4% (chance is 10%) in 8 short epochs.
    assert!(run.accuracy() >= 0.90, "accuracy {}", run.accuracy());

    let layers: Vec<LayerSpec> = DIGITS_CNN
        .split(',')
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let spec = ModelSpec::sequential(layers.clone());
    let data = DataSpec::builtin(DatasetKind::Digits).load(0).unwrap();
    let model = Model::new(&spec, &data.shape()).unwrap();
    let names: Vec<&str> = model
        .layout()
        .params()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"
        ]
    );
    let weights = run.weights().reordered(names).expect("the model's tensors");
    if let Some(python) = torch_python() {
        let inputs = data.features.slice(s![..16, ..]).to_owned();
        let path = run.dir.join("weights.safetensors");
        torch_agrees(&python, &path, &model, &weights, &layers, inputs);
    }
}

#[test]
fn the_cnn_preset_loads_strictly_into_its_torch_equivalent() {
    let Some(python) = torch_python() else {
        return;
    };
    let shape = DataShape {
        image: Some(ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        }),
        ..DataShape::tabular(784, Task::Classification { classes: 10 })
    };
    let spec = ModelSpec::of_kind(ModelKind::Cnn);
    let model = Model::new(&spec, &shape).unwrap();
    assert_eq!(model.layout().num_values(), 121_930);
    let mut params = model.layout().initialize(3);
    // Biases away from zero, so a bias mixed up with another would show.
    for entry in params.tensors_mut() {
        if entry.shape().len() == 1 {
            let n = entry.len();
            entry
                .data_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i as f32 / n as f32) - 0.5);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.safetensors");
    downpour_launch::weights::write_safetensors(&path, &params, HashMap::new()).unwrap();
    let inputs = Array2::from_shape_fn((4, 784), |(i, j)| ((i * 131 + j * 17) % 97) as f32 / 97.0);
    let layers = downpour_core::model_spec::cnn_layers(10);
    torch_agrees(&python, &path, &model, &params, &layers, inputs);
}
