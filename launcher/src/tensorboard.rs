//! TensorBoard event files: scalars, written as TensorBoard reads them.
//!
//! A file `events.out.tfevents.<secs>.<host>` is a sequence of TFRecords, each
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of the length bytes
//! data (length bytes)        | u32 masked CRC-32C of the data
//! ```
//!
//! where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (wrapping). Each record's data is a
//! `tensorflow.Event` protobuf: field 1 `wall_time` (double), 2 `step` (int64), then either
//! 3 `file_version` (string, the first record: `brain.Event:2`) or 5 `summary`, a `Summary`
//! whose repeated field 1 `value` holds `tag` (field 1, string) and `simple_value` (field 2,
//! float). Only these fields are written, encoded by hand: they are all a scalar needs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes scalar summaries to one event file.
#[derive(Debug)]
pub struct EventWriter {
    /// The open file; every record is flushed as written, so a reader sees it at once.
    out: BufWriter<File>,
    /// Where it is.
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` and a fresh event file in it, starting with the file-version record.
    ///
    /// # Errors
    /// The I/O error creating or writing it.
    pub fn create(dir: &Path, wall_time: f64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let host = hostname();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            wall_time as u64,
            std::process::id()
        ));
        let mut writer = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        let mut event = event_header(wall_time, 0);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        Ok(writer)
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event with the scalars `(tag, value)` at `step`.
    ///
    /// # Errors
    /// The I/O error writing it.
    pub fn scalars(
        &mut self,
        wall_time: f64,
        step: u64,
        values: &[(&str, f64)],
    ) -> std::io::Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            // simple_value: field 2, wire type 5 (32-bit).
            v.push(2 << 3 | 5);
            v.extend_from_slice(&(*value as f32).to_le_bytes());
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = event_header(wall_time, step);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())?;
        self.out.flush()
    }
}

/// `wall_time` (field 1, 64-bit) and `step` (field 2, varint).
fn event_header(wall_time: f64, step: u64) -> Vec<u8> {
    let mut event = vec![1 << 3 | 1];
    event.extend_from_slice(&wall_time.to_le_bytes());
    event.push(2 << 3);
    put_varint(&mut event, step);
    event
}

/// A length-delimited field (wire type 2).
fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), bit by bit: event files are small.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C check value (RFC 3720, B.4).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn records_are_framed_with_masked_checksums_and_events_encode_their_scalars() {
        let dir = std::env::temp_dir().join(format!("downpour-tb-{}", std::process::id()));
        let mut w = EventWriter::create(&dir, 1_700_000_000.5).unwrap();
        w.scalars(1_700_000_001.0, 300, &[("test/accuracy", 0.75)])
            .unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let mut at = 0;
        let mut records = Vec::new();
        while at < bytes.len() {
            let len_bytes = &bytes[at..at + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(len_bytes));
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(data));
            records.push(data.to_vec());
            at += 16 + len;
        }
        assert_eq!(records.len(), 2);
        assert!(records[0].ends_with(b"brain.Event:2"));
        let scalar = &records[1];
        assert_eq!(scalar[0], 0x09);
        assert_eq!(
            f64::from_le_bytes(scalar[1..9].try_into().unwrap()),
            1_700_000_001.0
        );
        // step 300 = varint ac 02
        assert_eq!(&scalar[9..12], &[0x10, 0xac, 0x02]);
        assert!(scalar.windows(13).any(|w| w == b"test/accuracy"));
        assert!(
            scalar.ends_with(&[0x15, 0, 0, 0x40, 0x3f]),
            "0.75f32 = 3f400000"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
