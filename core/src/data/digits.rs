//! The UCI optical digits: 1,797 images of 8×8 pixels, 10 classes, embedded in the binary.
//!
//! Source: E. Alpaydin and C. Kaynak, Optical Recognition of Handwritten Digits, UCI
//! Machine Learning Repository, CC BY 4.0 (see `core/data/README.md`). Pixels are ink
//! counts 0–16, scaled here to `[0, 1]`.

use super::csv::{self, CsvOptions};
use super::{Dataset, ImageShape, Targets};

/// The CSV as shipped: columns `label,pixel0..pixel63`, pixels 0–16.
const DIGITS_CSV: &str = include_str!("../../data/digits.csv");

/// Number of images.
pub const SAMPLES: usize = 1797;
/// Pixels per image (8×8), the feature count.
pub const FEATURES: usize = 64;
/// The ten digits.
pub const CLASSES: usize = 10;
/// Each image: one channel of 8×8 pixels, row by row.
pub const IMAGE: ImageShape = ImageShape {
    channels: 1,
    height: 8,
    width: 8,
};
/// The largest pixel value in the file: features are divided by it.
pub const PIXEL_MAX: f32 = 16.0;

/// The digits dataset: `[1797, 64]` features in `[0, 1]`, labels 0–9, in file order.
///
/// # Panics
/// Never for the embedded file (a test parses it); only if that file were corrupted.
#[must_use]
pub fn digits() -> Dataset {
    let mut data = csv::parse(DIGITS_CSV, "core/data/digits.csv", &CsvOptions::default())
        .expect("the embedded digits.csv parses");
    data.features /= PIXEL_MAX;
    // The file holds every digit, so this is 10 already; stated so the shape never depends on the data.
    if let Targets::Classes { classes, .. } = &mut data.targets {
        *classes = CLASSES;
    }
    data.image = Some(IMAGE);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_1797_scaled_images_of_ten_balanced_classes() {
        let data = digits();
        assert_eq!(data.features.dim(), (SAMPLES, FEATURES));
        assert_eq!(data.shape().image, Some(IMAGE));
        assert_eq!(IMAGE.values(), FEATURES);
        assert!(data.features.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(data.features.iter().copied().fold(0.0, f32::max), 1.0);
        let Targets::Classes { labels, classes } = &data.targets else {
            panic!("digits is a classification dataset");
        };
        assert_eq!(*classes, 10);
        for digit in 0..10 {
            let count = labels.iter().filter(|&&l| l == digit).count();
            assert!(
                (170..=190).contains(&count),
                "digit {digit}: {count} images"
            );
        }
        // The first image is a 0: its first row is 0,0,5,13,9,1,0,0.
        assert_eq!(labels[0], 0);
        assert_eq!(data.features[[0, 3]], 13.0 / 16.0);
    }
}
