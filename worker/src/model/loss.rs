//! The three losses, with PyTorch's default reductions, and the output link each implies.
//!
//! | loss | PyTorch | mean over | link |
//! |---|---|---|---|
//! | [`Loss::MeanSquaredError`] | `MSELoss()` | samples × outputs | identity |
//! | [`Loss::BinaryCrossEntropy`] | `BCEWithLogitsLoss()` | samples | sigmoid of one logit |
//! | [`Loss::CrossEntropy`] | `CrossEntropyLoss()` | samples | softmax |
//!
//! Every loss takes the model's raw outputs (logits), so the sigmoid and softmax are
//! folded into it and computed stably (`log(1 + e^-|z|)`, log-sum-exp with the row
//! maximum subtracted); its gradient w.r.t. the logits is then simply
//! `prediction - target` over the divisor.

use std::ops::Range;

use downpour_core::model_spec::{Head, ModelKind, ModelSpec};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Zip, s};

use super::activation::sigmoid;
use super::scalar::Scalar;

/// What a batch's outputs are compared with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a, F> {
    /// Real targets, the same shape as the outputs.
    Values(ArrayView2<'a, F>),
    /// One class per sample (one per output row); each below the number of
    /// classes (below 2 for binary cross-entropy).
    Labels(&'a [usize]),
}

impl<F> Target<'_, F> {
    /// The targets of the rows in `rows` (which lie within the batch).
    pub(crate) fn rows(self, rows: Range<usize>) -> Self {
        match self {
            Self::Values(y) => Self::Values(y.slice_move(s![rows, ..])),
            Self::Labels(labels) => Self::Labels(&labels[rows]),
        }
    }
}

/// A model's loss, computed from its raw outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// `mean((z - y)²)` over every element; on class labels `y` is one-hot.
    MeanSquaredError,
    /// `mean(-y log σ(z) - (1 - y) log(1 - σ(z)))` over samples; one output, labels 0/1.
    BinaryCrossEntropy,
    /// `mean(-log softmax(z)[label])` over samples (with probability targets:
    /// `mean(-Σ_j y_j log softmax(z)_j)`).
    CrossEntropy,
}

impl Loss {
    /// The loss a spec trains with.
    pub(crate) fn of_spec(spec: &ModelSpec) -> Self {
        match (spec.kind, spec.head) {
            (ModelKind::LinearRegression, _)
            | (ModelKind::Mlp | ModelKind::Cnn | ModelKind::Sequential, Head::Mse) => {
                Self::MeanSquaredError
            }
            (ModelKind::LogisticRegression, _) => Self::BinaryCrossEntropy,
            (ModelKind::SoftmaxRegression, _)
            | (
                ModelKind::Mlp | ModelKind::Cnn | ModelKind::Sequential,
                Head::SoftmaxCrossEntropy,
            ) => Self::CrossEntropy,
        }
    }

    /// What [`Loss::sum_and_gradient`] is divided by for PyTorch's mean: the
    /// number of samples, times the number of outputs for mean squared error.
    pub(crate) fn divisor(self, samples: usize, outputs: usize) -> usize {
        match self {
            Self::MeanSquaredError => samples * outputs,
            Self::BinaryCrossEntropy | Self::CrossEntropy => samples,
        }
    }

    /// The mean loss (PyTorch's default reduction); `outputs` is overwritten
    /// with the gradient of that mean w.r.t. each output.
    ///
    /// An empty batch gives NaN (as in PyTorch); callers refuse one beforehand.
    pub(crate) fn mean_and_gradient<F: Scalar>(
        self,
        outputs: &mut ArrayViewMut2<'_, F>,
        target: Target<'_, F>,
    ) -> f64 {
        let n = self.divisor(outputs.nrows(), outputs.ncols()) as f64;
        self.sum_and_gradient(outputs, target, F::of(1.0 / n)) / n
    }

    /// The sum of the per-sample losses (of the squared errors, for mean squared
    /// error); `outputs` is overwritten with `scale` times the gradient of that
    /// sum w.r.t. each output.
    ///
    /// The target matches the outputs (the caller's invariant): values of the
    /// same shape, or one label per row below the number of classes.
    pub(crate) fn sum_and_gradient<F: Scalar>(
        self,
        outputs: &mut ArrayViewMut2<'_, F>,
        target: Target<'_, F>,
        scale: F,
    ) -> f64 {
        let two = F::of(2.0);
        let mut sum = 0.0;
        match (self, target) {
            (Self::MeanSquaredError, Target::Values(y)) => {
                Zip::from(&mut *outputs).and(y).for_each(|z, &t| {
                    let d = *z - t;
                    sum += (d * d).widen();
                    *z = two * d * scale;
                });
            }
            (Self::MeanSquaredError, Target::Labels(labels)) => {
                for (mut row, &label) in outputs.rows_mut().into_iter().zip(labels) {
                    for (j, z) in row.iter_mut().enumerate() {
                        let d = if j == label { *z - F::one() } else { *z };
                        sum += (d * d).widen();
                        *z = two * d * scale;
                    }
                }
            }
            (Self::BinaryCrossEntropy, target) => {
                Zip::from(outputs.column_mut(0))
                    .and(&binary_labels(target))
                    .for_each(|z, &y| {
                        let x = *z;
                        // max(x, 0) - x y + log(1 + e^-|x|): never exponentiates a positive number.
                        sum += (x.max(F::zero()) - x * y + (-x.abs()).exp().ln_1p()).widen();
                        *z = (sigmoid(x) - y) * scale;
                    });
            }
            (Self::CrossEntropy, Target::Values(y)) => {
                // Class probabilities as targets (PyTorch's soft labels):
                // Σ_j y_j (logsumexp(z) - z_j), gradient softmax(z) Σ_j y_j - y.
                for (mut row, y) in outputs.rows_mut().into_iter().zip(y.rows()) {
                    let max = row.fold(F::neg_infinity(), |m, &v| m.max(v));
                    let mass = y.sum();
                    let dot = row.dot(&y);
                    row.mapv_inplace(|v| (v - max).exp());
                    let total = row.sum();
                    sum += ((total.ln() + max) * mass - dot).widen();
                    let norm = scale * mass / total;
                    Zip::from(&mut row)
                        .and(y)
                        .for_each(|e, &t| *e = *e * norm - t * scale);
                }
            }
            (Self::CrossEntropy, Target::Labels(labels)) => {
                for (mut row, &label) in outputs.rows_mut().into_iter().zip(labels) {
                    let max = row.fold(F::neg_infinity(), |m, &v| m.max(v));
                    let picked = row[label];
                    row.mapv_inplace(|v| (v - max).exp());
                    let total = row.sum();
                    // -log softmax(z)[label] = log Σ e^(z - max) + max - z[label]
                    sum += (total.ln() + max - picked).widen();
                    let norm = scale / total;
                    row.mapv_inplace(|e| e * norm);
                    row[label] -= scale;
                }
            }
        }
        sum
    }

    /// Turns raw outputs into what [`crate::model::Model::predict`] returns:
    /// softmax probabilities, `[1 - p, p]` for binary cross-entropy, or the values themselves.
    pub(crate) fn link<F: Scalar>(self, outputs: Array2<F>) -> Array2<F> {
        match self {
            Self::MeanSquaredError => outputs,
            Self::BinaryCrossEntropy => {
                let mut probabilities = Array2::zeros((outputs.nrows(), 2));
                for (mut row, &z) in probabilities.rows_mut().into_iter().zip(outputs.column(0)) {
                    // σ(-z) rather than 1 - σ(z), so tiny probabilities keep their precision.
                    row[0] = sigmoid(-z);
                    row[1] = sigmoid(z);
                }
                probabilities
            }
            Self::CrossEntropy => {
                let mut outputs = outputs;
                for mut row in outputs.rows_mut() {
                    let max = row.fold(F::neg_infinity(), |m, &v| m.max(v));
                    row.mapv_inplace(|v| (v - max).exp());
                    let total = row.sum();
                    row.mapv_inplace(|e| e / total);
                }
                outputs
            }
        }
    }

    /// The predicted class of each row of raw outputs: `z > 0` (`p > 0.5`) for
    /// binary cross-entropy, the first largest output otherwise.
    pub(crate) fn predicted_classes<F: Scalar>(self, outputs: ArrayView2<'_, F>) -> Vec<usize> {
        match self {
            Self::BinaryCrossEntropy => outputs
                .column(0)
                .iter()
                .map(|&z| usize::from(z > F::zero()))
                .collect(),
            Self::MeanSquaredError | Self::CrossEntropy => outputs
                .rows()
                .into_iter()
                .map(|row| {
                    let mut best = 0;
                    for (j, &v) in row.iter().enumerate() {
                        if v > row[best] {
                            best = j;
                        }
                    }
                    best
                })
                .collect(),
        }
    }
}

/// Binary labels as floats (0 or 1), from class labels or a one-column target.
fn binary_labels<F: Scalar>(target: Target<'_, F>) -> Array1<F> {
    match target {
        Target::Labels(labels) => labels.iter().map(|&l| F::of(l as f64)).collect(),
        Target::Values(y) => y.column(0).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    fn mean(loss: Loss, outputs: Array2<f64>, target: Target<'_, f64>) -> (f64, Array2<f64>) {
        let mut grad = outputs;
        let value = loss.mean_and_gradient(&mut grad.view_mut(), target);
        (value, grad)
    }

    #[test]
    fn mse_is_the_mean_over_every_element() {
        // torch.nn.MSELoss()(torch.tensor([[1., 2.], [3., 5.]]), torch.tensor([[0., 2.], [3., 3.]])) == 1.25
        let y = array![[0.0, 2.0], [3.0, 3.0]];
        let (value, grad) = mean(
            Loss::MeanSquaredError,
            array![[1.0, 2.0], [3.0, 5.0]],
            Target::Values(y.view()),
        );
        assert_eq!(value, 1.25);
        assert_eq!(grad, array![[0.5, 0.0], [0.0, 1.0]]);
    }

    #[test]
    fn mse_on_labels_compares_with_one_hot_targets() {
        let (value, grad) = mean(
            Loss::MeanSquaredError,
            array![[1.0, 0.5, 0.0]],
            Target::Labels(&[1]),
        );
        // errors against [0, 1, 0]: [1, -0.5, 0]
        assert_eq!(value, 1.25 / 3.0);
        assert_eq!(grad, array![[2.0 / 3.0, -1.0 / 3.0, 0.0]]);
    }

    #[test]
    fn binary_cross_entropy_matches_pytorch_and_survives_huge_logits() {
        // torch.nn.BCEWithLogitsLoss()(torch.tensor([0., 2.]), torch.tensor([1., 0.]))
        //   == (log 2 + 2 + log(1 + e^-2)) / 2 == 1.41369...
        let (value, grad) = mean(
            Loss::BinaryCrossEntropy,
            array![[0.0], [2.0]],
            Target::Labels(&[1, 0]),
        );
        let expected = (2f64.ln() + 2.0 + (-2f64).exp().ln_1p()) / 2.0;
        assert!((value - expected).abs() < 1e-15, "{value} vs {expected}");
        assert!((grad[[0, 0]] + 0.25).abs() < 1e-15);
        assert!((grad[[1, 0]] - sigmoid(2.0) / 2.0).abs() < 1e-15);

        let (value, grad) = mean(
            Loss::BinaryCrossEntropy,
            array![[1000.0f32], [-1000.0]].mapv(f64::from),
            Target::Labels(&[0, 1]),
        );
        assert_eq!(value, 1000.0);
        assert_eq!(grad, array![[0.5], [-0.5]]);

        let mut huge = array![[1000.0f32], [-1000.0]];
        let value = Loss::BinaryCrossEntropy
            .mean_and_gradient(&mut huge.view_mut(), Target::Labels(&[1, 0]));
        assert_eq!(value, 0.0);
    }

    #[test]
    fn cross_entropy_matches_pytorch_and_survives_huge_logits() {
        // torch.nn.CrossEntropyLoss()(torch.tensor([[1., 2., 3.]]), torch.tensor([2])) == 0.40760596
        let (value, grad) = mean(
            Loss::CrossEntropy,
            array![[1.0, 2.0, 3.0]],
            Target::Labels(&[2]),
        );
        assert!((value - 0.407_605_964_445_257_2).abs() < 1e-12, "{value}");
        let softmax = Loss::CrossEntropy.link(array![[1.0, 2.0, 3.0]]);
        assert!((grad[[0, 0]] - softmax[[0, 0]]).abs() < 1e-15);
        assert!((grad[[0, 2]] - (softmax[[0, 2]] - 1.0)).abs() < 1e-15);

        let mut huge = array![[1000.0f32, 0.0], [0.0, 1000.0]];
        let value =
            Loss::CrossEntropy.mean_and_gradient(&mut huge.view_mut(), Target::Labels(&[1, 1]));
        assert_eq!(value, 500.0);
        assert!(huge.iter().all(|g| g.is_finite()));
        assert_eq!(huge, array![[0.5, -0.5], [0.0, 0.0]]);
    }

    #[test]
    fn cross_entropy_on_one_hot_probabilities_equals_cross_entropy_on_labels() {
        let z = array![[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]];
        let one_hot = array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]];
        let (by_label, grad_label) = mean(Loss::CrossEntropy, z.clone(), Target::Labels(&[2, 0]));
        let (by_value, grad_value) = mean(Loss::CrossEntropy, z, Target::Values(one_hot.view()));
        assert!((by_label - by_value).abs() < 1e-15);
        for (a, b) in grad_label.iter().zip(&grad_value) {
            assert!((a - b).abs() < 1e-15);
        }
    }

    #[test]
    fn links_give_probabilities_and_classes() {
        let p = Loss::CrossEntropy.link(array![[0.0f64, 0.0], [800.0, 0.0]]);
        assert_eq!(p, array![[0.5, 0.5], [1.0, 0.0]]);
        let p = Loss::BinaryCrossEntropy.link(array![[0.0f64], [-800.0]]);
        assert_eq!(p, array![[0.5, 0.5], [1.0, 0.0]]);
        let z = array![[0.3f32, -0.1], [-0.2, 0.9]];
        assert_eq!(Loss::CrossEntropy.predicted_classes(z.view()), vec![0, 1]);
        let z = array![[0.3f32], [-0.1], [0.0]];
        assert_eq!(
            Loss::BinaryCrossEntropy.predicted_classes(z.view()),
            vec![1, 0, 0]
        );
    }
}
