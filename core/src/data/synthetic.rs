//! Synthetic problems with known answers: a noisy linear regression whose true weights
//! tests can check a trained model against, and Gaussian clusters, one per class, that
//! softmax regression separates almost perfectly.
//!
//! Everything is drawn from the job seed through [`stream_seed`], each quantity from its
//! own stream: the true weights depend only on (features, seed), and changing the
//! noise level does not move the inputs.

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use super::{Dataset, Targets};
use crate::layout::stream_seed;

/// Default number of samples of both synthetic datasets.
pub const DEFAULT_SAMPLES: usize = 1000;
/// Default number of features of both synthetic datasets.
pub const DEFAULT_FEATURES: usize = 8;
/// Default standard deviation of the regression noise added to the targets.
pub const DEFAULT_LINEAR_NOISE: f32 = 0.01;
/// Default number of classes of the cluster dataset.
pub const DEFAULT_CLASSES: usize = 3;
/// Default standard deviation of each cluster: a tenth of the spacing between neighbouring centres.
pub const DEFAULT_CLUSTER_NOISE: f32 = 0.1;
/// Distance between neighbouring cluster centres on their lattice.
pub const CLUSTER_SPACING: f32 = 1.0;

/// Random stream of the true weights and bias (distinct from the weight-init streams `0..tensors`).
const LINEAR_TRUTH_STREAM: u64 = 0x7472_7574_6800; // "truth"
/// Random stream of the regression inputs.
const LINEAR_INPUT_STREAM: u64 = 0x696E_7075_7400; // "input"
/// Random stream of the regression noise.
const LINEAR_NOISE_STREAM: u64 = 0x6E6F_6973_6500; // "noise"
/// Random stream of the cluster samples.
const CLUSTER_STREAM: u64 = 0x636C_7573_7400; // "clust"

/// The weights and bias a synthetic linear problem is generated from.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTruth {
    /// One weight per feature, each drawn uniformly from `[-1, 1)`.
    pub weights: Vec<f32>,
    /// The bias, drawn uniformly from `[-1, 1)`.
    pub bias: f32,
}

/// The true weights and bias of [`LinearProblem`] with `features` features drawn from `seed`.
///
/// Depends on nothing else: not the number of samples, nor the noise.
#[must_use]
pub fn linear_truth(features: usize, seed: u64) -> LinearTruth {
    let mut rng = StdRng::seed_from_u64(stream_seed(seed, LINEAR_TRUTH_STREAM));
    let dist = Uniform::new(-1.0f32, 1.0).expect("the bounds are finite and ordered");
    let weights = (0..features).map(|_| dist.sample(&mut rng)).collect();
    let bias = dist.sample(&mut rng);
    LinearTruth { weights, bias }
}

/// `y = w · x + b + noise · e`, with `x` and `e` standard normal and `(w, b)` from [`linear_truth`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProblem {
    /// Number of samples; any value, 0 included, is drawable (the spec refuses 0).
    pub samples: usize,
    /// Number of input features.
    pub features: usize,
    /// Standard deviation of the target noise; finite and non-negative.
    pub noise: f32,
}

impl Default for LinearProblem {
    fn default() -> Self {
        Self {
            samples: DEFAULT_SAMPLES,
            features: DEFAULT_FEATURES,
            noise: DEFAULT_LINEAR_NOISE,
        }
    }
}

impl LinearProblem {
    /// Draws the dataset: `[samples, features]` inputs and one regression target column.
    #[must_use]
    pub fn generate(&self, seed: u64) -> Dataset {
        let truth = linear_truth(self.features, seed);
        let features = standard_normal((self.samples, self.features), LINEAR_INPUT_STREAM, seed);
        let noise = standard_normal((self.samples, 1), LINEAR_NOISE_STREAM, seed);
        let w = Array1::from(truth.weights);
        let clean = features.dot(&w) + truth.bias;
        let targets = clean.insert_axis(ndarray::Axis(1)) + noise * self.noise;
        Dataset {
            features,
            targets: Targets::Regression(targets),
            image: None,
        }
    }
}

/// Isotropic Gaussian clusters, one per class, centred on a lattice with spacing [`CLUSTER_SPACING`].
///
/// Class `k`'s centre is `k` written in base `m` (the smallest `m >= 2` with `m^features >= classes`),
/// one digit per feature, times the spacing, shifted so the centres average zero. Every
/// pair of centres is at least the spacing apart, and since the clusters share one
/// isotropic spread the best classifier (nearest centre) is linear: softmax regression
/// can learn it exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterProblem {
    /// Number of samples; labels go round-robin, so classes differ in size by at most one.
    pub samples: usize,
    /// Number of input features.
    pub features: usize,
    /// Number of classes, at least 2.
    pub classes: usize,
    /// Standard deviation of each cluster along every feature; finite and non-negative.
    pub noise: f32,
}

impl Default for ClusterProblem {
    fn default() -> Self {
        Self {
            samples: DEFAULT_SAMPLES,
            features: DEFAULT_FEATURES,
            classes: DEFAULT_CLASSES,
            noise: DEFAULT_CLUSTER_NOISE,
        }
    }
}

impl ClusterProblem {
    /// The `[classes, features]` cluster centres (independent of the seed).
    #[must_use]
    pub fn centres(&self) -> Array2<f32> {
        let base = lattice_base(self.classes, self.features);
        let mut centres = Array2::<f32>::from_shape_fn((self.classes, self.features), |(k, j)| {
            // Digit j of k in base `base`; digits beyond k's length are 0.
            let digit = u32::try_from(j)
                .ok()
                .and_then(|j| base.checked_pow(j))
                .map_or(0, |place| (k / place) % base);
            digit as f32 * CLUSTER_SPACING
        });
        if let Some(mean) = centres.mean_axis(ndarray::Axis(0)) {
            centres -= &mean;
        }
        centres
    }

    /// Draws the dataset: sample `i` has label `i % classes` and lies at its class centre plus noise.
    #[must_use]
    pub fn generate(&self, seed: u64) -> Dataset {
        let centres = self.centres();
        let mut features = standard_normal((self.samples, self.features), CLUSTER_STREAM, seed);
        features *= self.noise;
        let labels: Vec<usize> = (0..self.samples).map(|i| i % self.classes).collect();
        for (mut row, &label) in features.rows_mut().into_iter().zip(&labels) {
            row += &centres.row(label);
        }
        Dataset {
            features,
            targets: Targets::Classes {
                labels,
                classes: self.classes,
            },
            image: None,
        }
    }
}

/// The smallest base `m >= 2` whose `features`-digit numbers count at least `classes` values.
fn lattice_base(classes: usize, features: usize) -> usize {
    let digits = u32::try_from(features).unwrap_or(u32::MAX);
    (2..)
        .find(|&m: &usize| m.checked_pow(digits).is_none_or(|count| count >= classes))
        .expect("some base reaches any class count")
}

/// A `shape` matrix of standard normal values from the given stream of `seed`, row-major.
fn standard_normal(shape: (usize, usize), stream: u64, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(stream_seed(seed, stream));
    Array2::from_shape_simple_fn(shape, || StandardNormal.sample(&mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ordinary least squares with an intercept, by the normal equations in f64.
    fn least_squares(x: &Array2<f32>, y: &Array2<f32>) -> Vec<f64> {
        let (n, f) = x.dim();
        let d = f + 1;
        let row = |i: usize| (0..d).map(move |j| if j < f { f64::from(x[[i, j]]) } else { 1.0 });
        let mut a = vec![vec![0.0f64; d + 1]; d];
        for i in 0..n {
            let r: Vec<f64> = row(i).collect();
            for p in 0..d {
                for q in 0..d {
                    a[p][q] += r[p] * r[q];
                }
                a[p][d] += r[p] * f64::from(y[[i, 0]]);
            }
        }
        // Gauss-Jordan elimination: the matrix is symmetric positive definite.
        for c in 0..d {
            let pivot = a[c][c];
            for v in a[c].iter_mut() {
                *v /= pivot;
            }
            for r in 0..d {
                if r != c {
                    let factor = a[r][c];
                    let pivot_row = a[c].clone();
                    for (v, p) in a[r].iter_mut().zip(pivot_row) {
                        *v -= factor * p;
                    }
                }
            }
        }
        a.iter().map(|r| r[d]).collect()
    }

    #[test]
    fn linear_data_recovers_the_true_weights_and_bias() {
        let problem = LinearProblem::default();
        let data = problem.generate(42);
        assert_eq!(data.features.dim(), (1000, 8));
        let Targets::Regression(y) = &data.targets else {
            panic!("regression targets expected");
        };
        assert_eq!(y.dim(), (1000, 1));
        let truth = linear_truth(8, 42);
        let fit = least_squares(&data.features, y);
        for (j, w) in truth.weights.iter().enumerate() {
            assert!(
                (fit[j] - f64::from(*w)).abs() < 1e-2,
                "weight {j}: fit {} true {w}",
                fit[j]
            );
        }
        assert!((fit[8] - f64::from(truth.bias)).abs() < 1e-2);
    }

    #[test]
    fn truth_depends_only_on_features_and_seed() {
        let truth = linear_truth(5, 9);
        assert_eq!(truth, linear_truth(5, 9));
        assert_ne!(truth, linear_truth(5, 10));
        assert!(truth.weights.iter().all(|w| (-1.0..1.0).contains(w)));
        let quiet = LinearProblem {
            samples: 10,
            features: 5,
            noise: 0.0,
        }
        .generate(9);
        let noisy = LinearProblem {
            samples: 10,
            features: 5,
            noise: 0.5,
        }
        .generate(9);
        assert_eq!(
            quiet.features, noisy.features,
            "noise must not move the inputs"
        );
        let Targets::Regression(y) = &quiet.targets else {
            unreachable!()
        };
        let row = quiet.features.row(3);
        let expected: f32 = row
            .iter()
            .zip(&truth.weights)
            .map(|(x, w)| x * w)
            .sum::<f32>()
            + truth.bias;
        assert!((y[[3, 0]] - expected).abs() < 1e-5);
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        let problem = ClusterProblem::default();
        assert_eq!(problem.generate(1), problem.generate(1));
        assert_ne!(problem.generate(1), problem.generate(2));
        let linear = LinearProblem::default();
        assert_eq!(linear.generate(1), linear.generate(1));
        assert_ne!(linear.generate(1), linear.generate(2));
    }

    #[test]
    fn cluster_centres_are_at_least_the_spacing_apart() {
        for (features, classes) in [(1, 2), (1, 5), (2, 10), (8, 3), (3, 27), (64, 10)] {
            let centres = ClusterProblem {
                samples: 1,
                features,
                classes,
                noise: 0.1,
            }
            .centres();
            assert_eq!(centres.dim(), (classes, features));
            for a in 0..classes {
                for b in 0..a {
                    let d = (&centres.row(a) - &centres.row(b))
                        .mapv(|v| v * v)
                        .sum()
                        .sqrt();
                    assert!(
                        d >= CLUSTER_SPACING - 1e-5,
                        "{features}x{classes}: {a}-{b} at {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn clusters_are_balanced_and_linearly_separable() {
        let problem = ClusterProblem {
            samples: 1000,
            features: 4,
            classes: 5,
            noise: DEFAULT_CLUSTER_NOISE,
        };
        let data = problem.generate(7);
        let Targets::Classes { labels, classes } = &data.targets else {
            panic!("classification targets expected");
        };
        assert_eq!(*classes, 5);
        for k in 0..5 {
            assert_eq!(labels.iter().filter(|&&l| l == k).count(), 200);
        }
        // The linear classifier softmax regression can represent: logit_k = c_k · x - |c_k|² / 2.
        let centres = problem.centres();
        let logits = data.features.dot(&centres.t())
            - &(centres.mapv(|v| v * v).sum_axis(ndarray::Axis(1)) / 2.0);
        let correct = logits
            .rows()
            .into_iter()
            .zip(labels)
            .filter(|(row, label)| {
                let best = (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap();
                best == **label
            })
            .count();
        assert!(correct >= 995, "{correct} of 1000 correct");
    }
}
