//! IDX files, the format MNIST and Fashion-MNIST are distributed in: one file of images
//! and one of labels, each optionally gzipped (recognised by its magic bytes).
//!
//! | bytes | images file (`train-images-idx3-ubyte`) | labels file (`train-labels-idx1-ubyte`) |
//! |-------|-----------------------------------------|-----------------------------------------|
//! | 0–3   | magic `00 00 08 03` (unsigned bytes, 3 dimensions) | magic `00 00 08 01` (unsigned bytes, 1 dimension) |
//! | 4–7   | image count N, big-endian u32            | label count N, big-endian u32           |
//! | 8–15  | rows, columns, big-endian u32 each        | (labels start at byte 8)                |
//! | 16–   | N × rows × columns pixels, row-major      | N labels, one byte each                 |
//!
//! Pixels are divided by 255; each image is 1×rows×columns. Labels are class indices;
//! the class count is the largest label + 1. Every departure from the layout above is
//! refused with the file's name and the numbers: a wrong magic number, a header cut
//! short, fewer (or more) bytes than the counts imply, image and label counts that
//! disagree, and empty images.

use ndarray::Array2;

use super::{DataError, Dataset, ImageShape, Targets};

/// Magic number of an IDX file of unsigned-byte images (3 dimensions: count, rows, columns).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (1 dimension: count).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The largest pixel value: features are divided by it.
pub const PIXEL_MAX: f32 = 255.0;

/// One IDX file's bytes (already decompressed) and the path that names it in errors.
#[derive(Debug, Clone, Copy)]
pub struct IdxFile<'a> {
    /// The file as error messages name it.
    pub path: &'a str,
    /// Its bytes, decompressed.
    pub bytes: &'a [u8],
}

impl IdxFile<'_> {
    fn error(&self, reason: String) -> DataError {
        DataError::Format {
            path: self.path.to_string(),
            reason,
        }
    }

    /// The header's big-endian u32s after the magic number, checking the magic first.
    fn header(&self, magic: u32, dims: usize, what: &str) -> Result<Vec<usize>, DataError> {
        let needed = 4 + 4 * dims;
        if self.bytes.len() < 4 {
            return Err(self.error(format!(
                "truncated: an IDX header of {what} needs {needed} bytes, the file has {}",
                self.bytes.len()
            )));
        }
        let found = read_u32(&self.bytes[..4]);
        if found != magic {
            return Err(self.error(format!(
                "bad magic number 0x{found:08x}: expected 0x{magic:08x} (IDX {what}: unsigned bytes, {dims} dimension{})",
                if dims == 1 { "" } else { "s" }
            )));
        }
        if self.bytes.len() < needed {
            return Err(self.error(format!(
                "truncated: an IDX header of {what} needs {needed} bytes, the file has {}",
                self.bytes.len()
            )));
        }
        Ok(self.bytes[4..needed]
            .chunks_exact(4)
            .map(|c| read_u32(c) as usize)
            .collect())
    }

    /// The payload after a `header_len`-byte header, which must be exactly `expected` bytes.
    fn payload(&self, header_len: usize, expected: usize, what: &str) -> Result<&[u8], DataError> {
        let have = self.bytes.len() - header_len;
        if have < expected {
            return Err(self.error(format!(
                "truncated: {what} need {expected} bytes after the {header_len}-byte header, the file has {have}"
            )));
        }
        if have > expected {
            return Err(self.error(format!(
                "{} bytes after the last of {what}: the header's counts do not match the file's size",
                have - expected
            )));
        }
        Ok(&self.bytes[header_len..])
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Reads an images file and a labels file into one dataset.
///
/// # Errors
/// [`DataError::Format`] naming the file at fault and the numbers: see the module docs.
pub fn parse(images: IdxFile<'_>, labels: IdxFile<'_>) -> Result<Dataset, DataError> {
    let dims = images.header(IMAGES_MAGIC, 3, "images")?;
    let (count, height, width) = (dims[0], dims[1], dims[2]);
    if height == 0 || width == 0 {
        return Err(images.error(format!(
            "images of {height}×{width} pixels: rows and columns must be at least 1"
        )));
    }
    let pixels_per_image = height.saturating_mul(width);
    let pixels = images.payload(
        16,
        count.saturating_mul(pixels_per_image),
        &format!("{count} images of {height}×{width}"),
    )?;

    let label_count = labels.header(LABELS_MAGIC, 1, "labels")?[0];
    let label_bytes = labels.payload(8, label_count, &format!("{label_count} labels"))?;
    if label_count != count {
        return Err(labels.error(format!(
            "holds {label_count} labels, but {} holds {count} images",
            images.path
        )));
    }
    if count == 0 {
        return Err(images.error("no images: the count in the header is 0".to_string()));
    }

    let features = Array2::from_shape_vec(
        (count, pixels_per_image),
        pixels.iter().map(|&p| f32::from(p) / PIXEL_MAX).collect(),
    )
    .expect("the payload holds count × rows × columns pixels");
    let labels: Vec<usize> = label_bytes.iter().map(|&l| usize::from(l)).collect();
    let classes = labels.iter().max().map_or(0, |&max| max + 1);
    let mut data = Dataset::new(features, Targets::Classes { labels, classes });
    data.image = Some(ImageShape {
        channels: 1,
        height,
        width,
    });
    Ok(data)
}

/// The bytes of an IDX file (tests and tools): `magic`, the big-endian `dims`, the `payload`.
#[must_use]
pub fn encode(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three 2×3 images with pixels 0, 1, ... and labels 2, 0, 1.
    fn good() -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..18).collect();
        (
            encode(IMAGES_MAGIC, &[3, 2, 3], &pixels),
            encode(LABELS_MAGIC, &[3], &[2, 0, 1]),
        )
    }

    fn read(images: &[u8], labels: &[u8]) -> Result<Dataset, DataError> {
        parse(
            IdxFile {
                path: "img.idx",
                bytes: images,
            },
            IdxFile {
                path: "lab.idx",
                bytes: labels,
            },
        )
    }

    fn error(images: &[u8], labels: &[u8]) -> String {
        read(images, labels).unwrap_err().to_string()
    }

    #[test]
    fn reads_images_with_their_shape_and_labels() {
        let (images, labels) = good();
        let data = read(&images, &labels).unwrap();
        assert_eq!(data.features.dim(), (3, 6));
        assert_eq!(data.features[[1, 0]], 6.0 / 255.0);
        assert_eq!(data.features[[2, 5]], 17.0 / 255.0);
        assert_eq!(
            data.image,
            Some(ImageShape {
                channels: 1,
                height: 2,
                width: 3
            })
        );
        assert_eq!(
            data.targets,
            Targets::Classes {
                labels: vec![2, 0, 1],
                classes: 3
            }
        );
    }

    #[test]
    fn refuses_bad_magic_numbers_naming_the_file() {
        let (images, labels) = good();
        // Swapped files: each has the other's magic.
        assert_eq!(
            error(&labels, &images),
            "img.idx: bad magic number 0x00000801: expected 0x00000803 (IDX images: unsigned bytes, 3 dimensions)"
        );
        assert_eq!(
            error(&images, &images),
            "lab.idx: bad magic number 0x00000803: expected 0x00000801 (IDX labels: unsigned bytes, 1 dimension)"
        );
        // Not IDX at all (a CSV by mistake).
        assert!(
            error(b"label,pixel0\n1,0\n", &labels)
                .starts_with("img.idx: bad magic number 0x6c616265: expected 0x00000803"),
        );
    }

    #[test]
    fn refuses_truncated_headers_and_payloads() {
        let (images, labels) = good();
        assert_eq!(
            error(&images[..2], &labels),
            "img.idx: truncated: an IDX header of images needs 16 bytes, the file has 2"
        );
        assert_eq!(
            error(&images[..10], &labels),
            "img.idx: truncated: an IDX header of images needs 16 bytes, the file has 10"
        );
        assert_eq!(
            error(&images[..images.len() - 1], &labels),
            "img.idx: truncated: 3 images of 2×3 need 18 bytes after the 16-byte header, the file has 17"
        );
        assert_eq!(
            error(&images, &labels[..6]),
            "lab.idx: truncated: an IDX header of labels needs 8 bytes, the file has 6"
        );
        assert_eq!(
            error(&images, &labels[..10]),
            "lab.idx: truncated: 3 labels need 3 bytes after the 8-byte header, the file has 2"
        );
    }

    #[test]
    fn refuses_counts_that_disagree() {
        let (images, _) = good();
        let two_labels = encode(LABELS_MAGIC, &[2], &[0, 1]);
        assert_eq!(
            error(&images, &two_labels),
            "lab.idx: holds 2 labels, but img.idx holds 3 images"
        );
        // The header claims 2 images but 3 are there.
        let pixels: Vec<u8> = (0..18).collect();
        let overlong = encode(IMAGES_MAGIC, &[2, 2, 3], &pixels);
        assert_eq!(
            error(&overlong, &two_labels),
            "img.idx: 6 bytes after the last of 2 images of 2×3: the header's counts do not match the file's size"
        );
        let empty = encode(IMAGES_MAGIC, &[3, 0, 3], &[]);
        assert_eq!(
            error(&empty, &two_labels),
            "img.idx: images of 0×3 pixels: rows and columns must be at least 1"
        );
        let none = encode(IMAGES_MAGIC, &[0, 2, 3], &[]);
        let no_labels = encode(LABELS_MAGIC, &[0], &[]);
        assert_eq!(
            error(&none, &no_labels),
            "img.idx: no images: the count in the header is 0"
        );
    }
}
