//! XOR: the four corners of the unit square, labelled by the exclusive-or of their coordinates.
//!
//! The smallest problem a linear model cannot solve and a one-hidden-layer MLP can.
//! Four samples leave nothing to hold out: set `test_fraction = 0`, which tests on
//! the training set.

use ndarray::array;

use super::{Dataset, Targets};

/// The four XOR points, in the order (0,0), (0,1), (1,0), (1,1), with labels 0, 1, 1, 0.
#[must_use]
pub fn xor() -> Dataset {
    Dataset {
        features: array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        targets: Targets::Classes {
            labels: vec![0, 1, 1, 0],
            classes: 2,
        },
        image: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataShape, Task};

    #[test]
    fn labels_are_the_exclusive_or_of_the_coordinates() {
        let data = xor();
        let Targets::Classes { labels, classes } = &data.targets else {
            panic!("xor is a classification dataset");
        };
        assert_eq!(*classes, 2);
        for (row, &label) in data.features.rows().into_iter().zip(labels) {
            let (a, b) = (row[0] == 1.0, row[1] == 1.0);
            assert_eq!(label, usize::from(a ^ b), "row {row}");
        }
        assert_eq!(
            data.shape(),
            DataShape::tabular(2, Task::Classification { classes: 2 })
        );
    }
}
