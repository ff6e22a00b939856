//! Gzip-compressed data, recognised by its magic bytes rather than by a file name.

use std::io::Read;

use super::DataError;

/// The first two bytes of every gzip member (RFC 1952).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when `bytes` start with the gzip magic.
#[must_use]
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// `bytes` decompressed when they are gzip, else unchanged; `path` only labels errors.
///
/// # Errors
/// [`DataError::Parse`] (line 0) naming `path` when the gzip stream is corrupt or cut short.
pub fn decompress_if_gzip(bytes: Vec<u8>, path: &str) -> Result<Vec<u8>, DataError> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::parse(path, 0, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn decompresses_gzip_and_passes_anything_else_through() {
        let packed = gzip(b"hello, idx");
        assert!(is_gzip(&packed));
        assert_eq!(decompress_if_gzip(packed, "a.gz").unwrap(), b"hello, idx");
        assert_eq!(
            decompress_if_gzip(b"plain".to_vec(), "a").unwrap(),
            b"plain"
        );
    }

    #[test]
    fn a_truncated_gzip_stream_names_the_file() {
        let mut packed = gzip(&[7u8; 4096]);
        packed.truncate(packed.len() / 2);
        let err = decompress_if_gzip(packed, "train.gz")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("train.gz:0: corrupt or truncated gzip data: "),
            "{err}"
        );
    }
}
