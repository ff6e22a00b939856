//! The parameters a model has (names, shapes, initialisation) and their deterministic initial values.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

use serde::{Deserialize, Serialize};

use crate::tensor::{NamedTensor, ParamSet, Tensor};

/// Weight initialisation (PyTorch's `torch.nn.init` formulas, gain 1 for Xavier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightInit {
    /// `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))` (Glorot and Bengio, 2010).
    XavierUniform,
    /// `N(0, 2 / (fan_in + fan_out))`.
    XavierNormal,
    /// `U(-a, a)`, `a = sqrt(6 / fan_in)` (He et al., 2015).
    HeUniform,
    /// `N(0, 2 / fan_in)`.
    HeNormal,
    /// All weights zero (sensible only for convex models).
    Zeros,
}

/// How one parameter tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Every value equal to this constant (biases).
    Constant(f32),
    /// A random weight matrix drawn by `scheme` for a layer of these fans.
    Weight {
        /// The formula.
        scheme: WeightInit,
        /// Inputs to the layer.
        fan_in: usize,
        /// Outputs of the layer.
        fan_out: usize,
    },
}

/// One parameter tensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterSpec {
    /// Unique name (`layers.0.weight`).
    pub name: String,
    /// Shape (`[out, in]` for weights).
    pub shape: Vec<usize>,
    /// How it starts.
    pub init: Init,
}

/// Every parameter of a model, in the order they are stored, sent and summed.
///
/// Invariant: names are unique.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterLayout {
    /// The parameters in order.
    params: Vec<ParameterSpec>,
}

impl ParameterLayout {
    /// Builds a layout.
    ///
    /// # Panics
    /// When two parameters share a name (layouts come from `ModelSpec::layout`, which names them uniquely).
    #[must_use]
    pub fn new(params: Vec<ParameterSpec>) -> Self {
        for (i, p) in params.iter().enumerate() {
            assert!(
                params[..i].iter().all(|q| q.name != p.name),
                "duplicate parameter {}",
                p.name
            );
        }
        Self { params }
    }

    /// The parameters in order.
    #[must_use]
    pub fn params(&self) -> &[ParameterSpec] {
        &self.params
    }

    /// Total number of f32 values.
    #[must_use]
    pub fn num_values(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum()
    }

    /// The initial parameter values for `seed`.
    ///
    /// Deterministic: the same layout and seed give the same bits on every
    /// machine. Each tensor draws from its own stream, seeded from `seed` and its
    /// index, so adding a layer does not change the others' initial values.
    #[must_use]
    pub fn initialize(&self, seed: u64) -> ParamSet {
        let entries = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let n: usize = p.shape.iter().product();
                let data = match p.init {
                    Init::Constant(c) => vec![c; n],
                    Init::Weight {
                        scheme,
                        fan_in,
                        fan_out,
                    } => {
                        let mut rng = StdRng::seed_from_u64(stream_seed(seed, i as u64));
                        draw_weights(scheme, fan_in, fan_out, n, &mut rng)
                    }
                };
                NamedTensor {
                    name: p.name.clone(),
                    tensor: Tensor::new(p.shape.clone(), data).expect("n is the shape's product"),
                }
            })
            .collect();
        ParamSet::new(entries)
    }
}

/// Draws `n` weights by `scheme` (PyTorch's `torch.nn.init` formulas with gain 1, and `sqrt(2)` for He).
fn draw_weights(
    scheme: WeightInit,
    fan_in: usize,
    fan_out: usize,
    n: usize,
    rng: &mut StdRng,
) -> Vec<f32> {
    let (fi, fo) = (fan_in.max(1) as f32, fan_out.max(1) as f32);
    match scheme {
        WeightInit::Zeros => vec![0.0; n],
        WeightInit::XavierUniform => uniform((6.0 / (fi + fo)).sqrt(), n, rng),
        WeightInit::HeUniform => uniform((6.0 / fi).sqrt(), n, rng),
        WeightInit::XavierNormal => normal((2.0 / (fi + fo)).sqrt(), n, rng),
        WeightInit::HeNormal => normal((2.0 / fi).sqrt(), n, rng),
    }
}

fn uniform(bound: f32, n: usize, rng: &mut StdRng) -> Vec<f32> {
    let dist = Uniform::new_inclusive(-bound, bound).expect("bound is finite and positive");
    (0..n).map(|_| dist.sample(rng)).collect()
}

fn normal(std: f32, n: usize, rng: &mut StdRng) -> Vec<f32> {
    let dist = Normal::new(0.0, std).expect("std is finite and positive");
    (0..n).map(|_| dist.sample(rng)).collect()
}

/// SplitMix64 of the job seed and a stream index: independent, well-mixed per-tensor seeds.
#[must_use]
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of `fan_in` inputs and `fan_out` outputs: `{prefix}.weight` and `{prefix}.bias`.
    fn dense(
        prefix: &str,
        fan_in: usize,
        fan_out: usize,
        scheme: WeightInit,
    ) -> [ParameterSpec; 2] {
        [
            ParameterSpec {
                name: format!("{prefix}.weight"),
                shape: vec![fan_out, fan_in],
                init: Init::Weight {
                    scheme,
                    fan_in,
                    fan_out,
                },
            },
            ParameterSpec {
                name: format!("{prefix}.bias"),
                shape: vec![fan_out],
                init: Init::Constant(0.0),
            },
        ]
    }

    /// The default model's layout on the digits: 64 → 128 → 10.
    fn mlp(scheme: WeightInit) -> ParameterLayout {
        let mut params = dense("layers.0", 64, 128, scheme).to_vec();
        params.extend(dense("layers.1", 128, 10, scheme));
        ParameterLayout::new(params)
    }

    fn layout() -> ParameterLayout {
        mlp(WeightInit::HeNormal)
    }

    #[test]
    fn initialisation_is_deterministic_per_seed() {
        assert_eq!(layout().initialize(7), layout().initialize(7));
        assert_ne!(layout().initialize(7), layout().initialize(8));
    }

    #[test]
    fn he_normal_has_the_right_spread_and_biases_start_at_zero() {
        let params = layout().initialize(1);
        let w = params.get("layers.0.weight").unwrap().data();
        let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let expected = 2.0 / 64.0;
        assert!(
            (var - expected).abs() < 0.15 * expected,
            "variance {var}, expected {expected}"
        );
        assert!(
            params
                .get("layers.0.bias")
                .unwrap()
                .data()
                .iter()
                .all(|&b| b == 0.0)
        );
    }

    #[test]
    fn xavier_uniform_stays_within_its_bound() {
        let params = mlp(WeightInit::XavierUniform).initialize(3);
        let bound = (6.0f32 / (128.0 + 10.0)).sqrt(); // layers.1: 128 in, 10 out
        let w = params.get("layers.1.weight").unwrap().data();
        assert!(w.iter().all(|v| v.abs() <= bound));
        assert!(w.iter().any(|v| v.abs() > 0.8 * bound));
    }
}
