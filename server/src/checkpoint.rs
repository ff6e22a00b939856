//! The checkpoint file store: a shard's [`Snapshot`]s written atomically to a directory,
//! verified when loaded, the newest `keep` retained.
//!
//! # Files
//! A [`CheckpointStore`] owns one directory for one shard, and is its only writer: give each
//! shard its own (the fingerprint names the shard, so a mix-up is refused, not loaded), and
//! do not save the same version from two threads at once. Checkpoints are
//! named `checkpoint-{version:012}.dpck`. One is first written to `.checkpoint-{version:012}.dpck.tmp`
//! in the same directory, flushed and fsynced, then renamed over its final name, and the
//! directory is fsynced: a crash at any point leaves the previous checkpoints intact, plus at
//! worst a temporary file, which [`CheckpointStore::list`] and [`CheckpointStore::load_latest`]
//! ignore and [`CheckpointStore::open`] removes.
//!
//! # Format, version 1
//! Integers are little-endian.
//!
//! | offset        | bytes | content                                                        |
//! |---------------|-------|----------------------------------------------------------------|
//! | 0             | 8     | magic `DPCKPT\0\0`                                             |
//! | 8             | 4     | format version, `u32`, 1                                       |
//! | 12            | 8     | `H`, the header's length in bytes, `u64`                       |
//! | 20            | 8     | `D`, the data's length in bytes, `u64`, a multiple of 4        |
//! | 28            | `H`   | the header: UTF-8 JSON, below                                  |
//! | 28 + `H`      | `D`   | the data: raw little-endian IEEE-754 `f32` values              |
//! | 28 + `H` + `D`| 4     | CRC-32 (IEEE, as zlib computes it) of every byte before it, `u32` |
//!
//! The header holds everything but the values (readers ignore fields they do not know):
//! ```json
//! { "job_fingerprint": "5c1c9e487d845895", "job_toml": "[model]\n…", "shard_index": 0, "shard_count": 2,
//!   "version": 1200,
//!   "tensors": [ { "name": "layers.0.weight", "shape": [128, 64], "step": 1200,
//!                  "buffers": [ { "name": "exp_avg", "len": 8192 }, { "name": "exp_avg_sq", "len": 8192 } ] } ],
//!   "core_state": { … } }
//! ```
//! The data holds every tensor's values in header order, then every optimizer buffer's values,
//! tensor by tensor and within a tensor in header order, so `D` is 4 × (the sum of the
//! shapes' products + the sum of the buffers' lengths). Values are stored bit for bit
//! (`-0.0` and NaN payloads included).
//!
//! Loading checks, in order: the magic, the format version, the file's length against
//! `28 + H + D + 4` (shorter is truncated), the checksum; only then does it parse the header,
//! check it against `D` and against the expected job fingerprint, and read the values.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use downpour_core::{NamedTensor, ParamSet, Tensor};
use serde::{Deserialize, Serialize};

/// The first eight bytes of every checkpoint.
const MAGIC: [u8; 8] = *b"DPCKPT\0\0";
/// The format version this build writes and reads.
const FORMAT_VERSION: u32 = 1;
/// Bytes before the header: magic, format version, header length, data length.
const PREFIX_LEN: u64 = 8 + 4 + 8 + 8;
/// Bytes of the trailing checksum.
const CHECKSUM_LEN: u64 = 4;
/// Bytes moved per read or write of the data region.
const CHUNK_BYTES: usize = 1 << 18;

/// Everything a server shard needs to resume.
///
/// Invariant (checked by [`CheckpointStore::save`]): `optimizer_state[i]` belongs to
/// `params.entries()[i]`, so both have the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Identifies the job and the shard (see [`fingerprint`]); loading refuses a mismatch.
    pub job_fingerprint: String,
    /// The job's TOML, for humans and for the message that refuses a mismatch.
    pub job_toml: String,
    /// This shard's index, below `shard_count`.
    pub shard_index: usize,
    /// How many shards the job has, at least 1.
    pub shard_count: usize,
    /// Updates applied, which is also the schedule's position; names the file.
    pub version: u64,
    /// This shard's tensors, in layout order.
    pub params: ParamSet,
    /// One optimizer state per tensor of `params`, in the same order.
    pub optimizer_state: Vec<TensorState>,
    /// Membership, per-worker progress, metrics: JSON owned by the server core, stored as is.
    pub core_state: serde_json::Value,
}

/// The optimizer's state for one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorState {
    /// Optimizer steps taken on this tensor (Adam's bias correction needs it).
    pub step: u64,
    /// Named buffers in a fixed order (`exp_avg`, `exp_avg_sq`, `momentum_buffer`, …), usually
    /// one value per value of the tensor; empty for a stateless optimizer.
    pub buffers: Vec<(String, Vec<f32>)>,
}

/// Why a checkpoint could not be written, listed or loaded. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A store must keep at least one checkpoint.
    #[error("checkpoint directory {dir}: keep must be at least 1, got 0")]
    KeepZero {
        /// The store's directory.
        dir: PathBuf,
    },
    /// The directory could not be created or listed.
    #[error("checkpoint directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The snapshot breaks its invariant; nothing was written.
    #[error("cannot write checkpoint {path}: {reason}")]
    InvalidSnapshot {
        /// The checkpoint that would have been written.
        path: PathBuf,
        /// What is inconsistent, with the numbers involved.
        reason: String,
    },
    /// Writing, syncing or renaming failed; the previous checkpoints are untouched.
    #[error("cannot write checkpoint {path}: {source}")]
    Write {
        /// The file (or directory, for its fsync) being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file could not be opened or read.
    #[error("cannot read checkpoint {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with the magic bytes.
    #[error("{path} is not a Downpour checkpoint: it does not start with the magic bytes DPCKPT")]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
    },
    /// The file is in a format version this build cannot read.
    #[error("checkpoint {path} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file is shorter than its lengths announce.
    #[error("checkpoint {path} is truncated: {actual} bytes where {expected} are needed")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        actual: u64,
        /// The length its prefix announces (or the smallest possible, for a file too short to have one).
        expected: u64,
    },
    /// The file is longer than its lengths announce.
    #[error("checkpoint {path} is {actual} bytes but its lengths announce {expected}")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Its length.
        actual: u64,
        /// The length its prefix announces.
        expected: u64,
    },
    /// The stored checksum does not match the contents.
    #[error(
        "checkpoint {path} is corrupt: its stored checksum is {stored:08x} but its contents hash to {computed:08x}"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the contents.
        computed: u32,
    },
    /// The checksum matches but the header is not valid JSON or contradicts the data.
    #[error("checkpoint {path} has a malformed header: {reason}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the numbers involved.
        reason: String,
    },
    /// A sound checkpoint written by another job or for another shard.
    #[error(
        "checkpoint {path} belongs to a different job: its fingerprint is {found} (shard {found_shard_index} of {found_shard_count}), \
         this job's is {expected}; resume with the job that wrote it or use another checkpoint directory. \
         It was written for this job:\n{found_job_toml}"
    )]
    WrongJob {
        /// The file.
        path: PathBuf,
        /// The fingerprint of the job being started.
        expected: String,
        /// The fingerprint in the file.
        found: String,
        /// The shard index in the file.
        found_shard_index: usize,
        /// The shard count in the file.
        found_shard_count: usize,
        /// The job TOML in the file.
        found_job_toml: String,
    },
    /// Every checkpoint in the directory is damaged; none was loaded.
    #[error("none of the {count} checkpoints in {dir} is usable; the newest: {newest}")]
    AllDamaged {
        /// The directory.
        dir: PathBuf,
        /// How many checkpoints were tried.
        count: usize,
        /// Why the newest failed.
        newest: Box<CheckpointError>,
    },
}

impl CheckpointError {
    /// True when the file itself is damaged (cut short, corrupt, malformed):
    /// [`CheckpointStore::load_latest`] skips such a file and tries an older one. An I/O error,
    /// an unsupported format version or a different job is not damage, and stops it.
    #[must_use]
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::NotACheckpoint { .. }
                | Self::Truncated { .. }
                | Self::TrailingBytes { .. }
                | Self::Checksum { .. }
                | Self::Header { .. }
        )
    }
}

/// A directory of one shard's checkpoints.
///
/// Invariant: `dir` exists and `keep >= 1`.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    /// Where the checkpoints live.
    dir: PathBuf,
    /// How many of the newest checkpoints [`CheckpointStore::save`] keeps.
    keep: usize,
}

impl CheckpointStore {
    /// A store over `dir`, created if missing, keeping the newest `keep` checkpoints. Removes
    /// temporary files left by interrupted writes.
    ///
    /// # Errors
    /// [`CheckpointError::KeepZero`] when `keep` is 0; [`CheckpointError::Dir`] when the
    /// directory cannot be created or listed.
    pub fn open(dir: &Path, keep: usize) -> Result<Self, CheckpointError> {
        let dir = dir.to_path_buf();
        if keep == 0 {
            return Err(CheckpointError::KeepZero { dir });
        }
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Dir {
            dir: dir.clone(),
            source,
        })?;
        let store = Self { dir, keep };
        for leftover in store
            .entries()?
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Temporary(path) => Some(path),
                Entry::Checkpoint(..) => None,
            })
        {
            match fs::remove_file(&leftover) {
                Ok(()) => tracing::warn!(
                    path = %leftover.display(),
                    "removed a temporary checkpoint file left by an interrupted write"
                ),
                Err(error) => tracing::warn!(
                    path = %leftover.display(), %error,
                    "cannot remove a temporary checkpoint file left by an interrupted write"
                ),
            }
        }
        Ok(store)
    }

    /// The store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `checkpoint-{version:012}.dpck` atomically (a temporary file in the same
    /// directory, written, fsynced, renamed, then the directory fsynced), replacing a
    /// checkpoint of the same version, then removes all but the newest `keep` (never the one
    /// just written). Returns the checkpoint's path.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidSnapshot`] when the snapshot breaks its invariant;
    /// [`CheckpointError::Write`] when the file cannot be written. Either way the previous
    /// checkpoints are untouched.
    pub fn save(&self, snapshot: &Snapshot) -> Result<PathBuf, CheckpointError> {
        self.save_through(snapshot, |file| Box::new(file))
    }

    /// [`CheckpointStore::save`], writing the file through `wrap` (tests inject failures).
    fn save_through(
        &self,
        snapshot: &Snapshot,
        wrap: impl FnOnce(&mut File) -> Box<dyn Write + '_>,
    ) -> Result<PathBuf, CheckpointError> {
        let name = file_name(snapshot.version);
        let path = self.dir.join(&name);
        let header = Header::of(snapshot).map_err(|reason| CheckpointError::InvalidSnapshot {
            path: path.clone(),
            reason,
        })?;
        let tmp = self.dir.join(format!(".{name}{TEMPORARY_SUFFIX}"));
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Write { path, source }
        };
        let mut file = File::create(&tmp).map_err(write_error(&tmp))?;
        let result = encode(&header, snapshot, wrap(&mut file))
            .and_then(|bytes| file.sync_all().map(|()| bytes))
            .map_err(write_error(&tmp));
        drop(file);
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(source) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(CheckpointError::Write { path, source });
        }
        sync_dir(&self.dir).map_err(write_error(&self.dir))?;
        tracing::info!(path = %path.display(), version = snapshot.version, bytes, "checkpoint written");
        self.retain(&path);
        Ok(path)
    }

    /// Removes all checkpoints but the newest `keep` and `just_written`; failures are logged,
    /// not returned, since the new checkpoint is already safe.
    fn retain(&self, just_written: &Path) {
        let paths = match self.list() {
            Ok(paths) => paths,
            Err(error) => {
                tracing::warn!(%error, "cannot list checkpoints to remove old ones");
                return;
            }
        };
        if paths.first().is_some_and(|newest| newest != just_written) {
            tracing::warn!(
                newest = %paths[0].display(),
                written = %just_written.display(),
                "the checkpoint directory holds a newer checkpoint than the one just written; \
                 load_latest will pick the newer one"
            );
        }
        for old in paths.iter().skip(self.keep).filter(|p| *p != just_written) {
            if let Err(error) = fs::remove_file(old) {
                tracing::warn!(path = %old.display(), %error, "cannot remove an old checkpoint");
            }
        }
    }

    /// The newest checkpoint that loads and verifies, with its path. A damaged one (see
    /// [`CheckpointError::is_damage`]) is skipped with a warning naming it and why, and the
    /// next older one tried. `Ok(None)` when the directory holds no checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::WrongJob`] when the newest sound checkpoint belongs to another job
    /// or shard; [`CheckpointError::AllDamaged`] when every checkpoint is damaged;
    /// [`CheckpointError::Read`], [`CheckpointError::UnsupportedVersion`] or
    /// [`CheckpointError::Dir`] otherwise.
    pub fn load_latest(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(PathBuf, Snapshot)>, CheckpointError> {
        let paths = self.list()?;
        let mut newest_damage = None;
        for path in &paths {
            match Self::load(path, fingerprint) {
                Ok(snapshot) => {
                    tracing::info!(path = %path.display(), version = snapshot.version, "checkpoint loaded");
                    return Ok(Some((path.clone(), snapshot)));
                }
                Err(error) if error.is_damage() => {
                    tracing::warn!(
                        path = %path.display(), %error,
                        "skipping a damaged checkpoint; trying the previous one"
                    );
                    newest_damage.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        match newest_damage {
            None => Ok(None),
            Some(newest) => Err(CheckpointError::AllDamaged {
                dir: self.dir.clone(),
                count: paths.len(),
                newest: Box::new(newest),
            }),
        }
    }

    /// Loads one checkpoint file, verifying its length, checksum and job fingerprint.
    ///
    /// # Errors
    /// [`CheckpointError::WrongJob`] for another job's checkpoint; a damage error (see
    /// [`CheckpointError::is_damage`]); [`CheckpointError::Read`] or
    /// [`CheckpointError::UnsupportedVersion`].
    pub fn load(path: &Path, fingerprint: &str) -> Result<Snapshot, CheckpointError> {
        let read_error = |source| CheckpointError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        let mut input = BufReader::with_capacity(CHUNK_BYTES, file);
        let (header, header_len) = verify(path, &mut input)?;
        if header.job_fingerprint != fingerprint {
            return Err(CheckpointError::WrongJob {
                path: path.to_path_buf(),
                expected: fingerprint.to_owned(),
                found: header.job_fingerprint,
                found_shard_index: header.shard_index,
                found_shard_count: header.shard_count,
                found_job_toml: header.job_toml,
            });
        }
        let data_start = PREFIX_LEN + header_len;
        input
            .seek(SeekFrom::Start(data_start))
            .map_err(read_error)?;
        header.read_snapshot(path, &mut input)
    }

    /// The checkpoints in the directory, newest (highest version) first. Temporary files and
    /// other names are ignored.
    ///
    /// # Errors
    /// [`CheckpointError::Dir`] when the directory cannot be listed.
    pub fn list(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let mut checkpoints: Vec<(u64, PathBuf)> = self
            .entries()?
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Checkpoint(version, path) => Some((version, path)),
                Entry::Temporary(_) => None,
            })
            .collect();
        checkpoints.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        Ok(checkpoints.into_iter().map(|(_, path)| path).collect())
    }

    /// The directory's checkpoints and temporary files, in no order.
    fn entries(&self) -> Result<Vec<Entry>, CheckpointError> {
        let dir_error = |source| CheckpointError::Dir {
            dir: self.dir.clone(),
            source,
        };
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(dir_error)? {
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(version) = version_of(name) {
                entries.push(Entry::Checkpoint(version, entry.path()));
            } else if name.starts_with(".checkpoint-") && name.ends_with(TEMPORARY_SUFFIX) {
                entries.push(Entry::Temporary(entry.path()));
            }
        }
        Ok(entries)
    }
}

/// A stable identifier of a job and a shard: FNV-1a 64 of the job's TOML bytes followed by
/// `shard_index` and `shard_count` as little-endian `u64`s, as 16 lowercase hex digits.
///
/// It depends only on its arguments, so it is the same across runs, machines and builds; pass
/// the job's canonical TOML (the same job must give the same bytes). FNV-1a detects a
/// different job, it is no defence against one crafted to collide.
#[must_use]
pub fn fingerprint(job_toml: &str, shard_index: usize, shard_count: usize) -> String {
    let shard = [shard_index as u64, shard_count as u64].map(u64::to_le_bytes);
    let hash = fnv1a_64(job_toml.as_bytes().iter().chain(shard.as_flattened()));
    format!("{hash:016x}")
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv1a_64<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The suffix of a temporary file being written.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// A file of interest in a checkpoint directory.
enum Entry {
    /// A checkpoint, with the version its name carries.
    Checkpoint(u64, PathBuf),
    /// A temporary file left by a write.
    Temporary(PathBuf),
}

/// The file name of the checkpoint at `version`.
fn file_name(version: u64) -> String {
    format!("checkpoint-{version:012}.dpck")
}

/// The version in a checkpoint's file name, `None` for any other name.
fn version_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".dpck")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Fsyncs a directory so that a rename in it is durable (a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

/// The JSON header: everything in a checkpoint but the values.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// [`Snapshot::job_fingerprint`].
    job_fingerprint: String,
    /// [`Snapshot::job_toml`].
    job_toml: String,
    /// [`Snapshot::shard_index`].
    shard_index: usize,
    /// [`Snapshot::shard_count`].
    shard_count: usize,
    /// [`Snapshot::version`].
    version: u64,
    /// One entry per tensor, in order: the layout of the data region.
    tensors: Vec<TensorHeader>,
    /// [`Snapshot::core_state`].
    core_state: serde_json::Value,
}

/// One tensor of the header.
#[derive(Debug, Serialize, Deserialize)]
struct TensorHeader {
    /// The tensor's name, unique in the header.
    name: String,
    /// Its shape; its product is the number of its values in the data region.
    shape: Vec<usize>,
    /// [`TensorState::step`].
    step: u64,
    /// Its optimizer buffers, in order.
    buffers: Vec<BufferHeader>,
}

/// One optimizer buffer of the header.
#[derive(Debug, Serialize, Deserialize)]
struct BufferHeader {
    /// The buffer's name.
    name: String,
    /// Its number of values in the data region.
    len: usize,
}

impl Header {
    /// The header describing `snapshot`, or why the snapshot is inconsistent.
    fn of(snapshot: &Snapshot) -> Result<Self, String> {
        let params = snapshot.params.entries();
        if snapshot.optimizer_state.len() != params.len() {
            return Err(format!(
                "{} optimizer states for {} tensors",
                snapshot.optimizer_state.len(),
                params.len()
            ));
        }
        let tensors = params
            .iter()
            .zip(&snapshot.optimizer_state)
            .map(|(param, state)| TensorHeader {
                name: param.name.clone(),
                shape: param.tensor.shape().to_vec(),
                step: state.step,
                buffers: state
                    .buffers
                    .iter()
                    .map(|(name, values)| BufferHeader {
                        name: name.clone(),
                        len: values.len(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Self {
            job_fingerprint: snapshot.job_fingerprint.clone(),
            job_toml: snapshot.job_toml.clone(),
            shard_index: snapshot.shard_index,
            shard_count: snapshot.shard_count,
            version: snapshot.version,
            tensors,
            core_state: snapshot.core_state.clone(),
        })
    }

    /// The number of values the header describes, or why it cannot describe a data region
    /// (a duplicate name, or a count that overflows).
    fn value_count(&self) -> Result<u64, String> {
        let mut names = HashSet::new();
        let mut total: u64 = 0;
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(format!("tensor {} appears twice", t.name));
            }
            let overflow = || format!("tensor {}: value count overflows", t.name);
            let values = t
                .shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .ok_or_else(overflow)?;
            let with_values = total.checked_add(values).ok_or_else(overflow)?;
            total = t
                .buffers
                .iter()
                .try_fold(with_values, |sum, b| sum.checked_add(b.len as u64))
                .ok_or_else(overflow)?;
        }
        Ok(total)
    }

    /// Reads the data region from `input` (positioned at its start, already verified) into
    /// the snapshot this header describes.
    fn read_snapshot(
        self,
        path: &Path,
        input: &mut impl Read,
    ) -> Result<Snapshot, CheckpointError> {
        let read_error = |source| CheckpointError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut entries = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let len = t.shape.iter().product();
            let data = read_f32s(input, len).map_err(read_error)?;
            let tensor = Tensor::new(t.shape.clone(), data)
                .expect("invariant: read exactly the shape's product");
            entries.push(NamedTensor {
                name: t.name.clone(),
                tensor,
            });
        }
        let mut optimizer_state = Vec::with_capacity(self.tensors.len());
        for t in self.tensors {
            let mut buffers = Vec::with_capacity(t.buffers.len());
            for b in t.buffers {
                buffers.push((b.name, read_f32s(input, b.len).map_err(read_error)?));
            }
            optimizer_state.push(TensorState {
                step: t.step,
                buffers,
            });
        }
        Ok(Snapshot {
            job_fingerprint: self.job_fingerprint,
            job_toml: self.job_toml,
            shard_index: self.shard_index,
            shard_count: self.shard_count,
            version: self.version,
            params: ParamSet::new(entries),
            optimizer_state,
            core_state: self.core_state,
        })
    }
}

/// Writes the whole file (prefix, header, data, checksum) to `out`; returns its length.
fn encode(header: &Header, snapshot: &Snapshot, out: impl Write) -> io::Result<u64> {
    let header_bytes = serde_json::to_vec(header).map_err(io::Error::other)?;
    let params = snapshot.params.entries();
    let buffers = snapshot
        .optimizer_state
        .iter()
        .flat_map(|s| s.buffers.iter().map(|(_, values)| values.as_slice()));
    let value_count: usize = params.iter().map(|p| p.tensor.len()).sum::<usize>()
        + buffers.clone().map(<[f32]>::len).sum::<usize>();
    let data_len = 4 * value_count as u64;

    let mut out = Crc32Writer {
        inner: BufWriter::with_capacity(CHUNK_BYTES, out),
        hasher: crc32fast::Hasher::new(),
    };
    out.write_all(&MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    out.write_all(&(header_bytes.len() as u64).to_le_bytes())?;
    out.write_all(&data_len.to_le_bytes())?;
    out.write_all(&header_bytes)?;
    for p in params {
        write_f32s(&mut out, p.tensor.data())?;
    }
    for values in buffers {
        write_f32s(&mut out, values)?;
    }
    let checksum = out.hasher.finalize();
    let mut inner = out.inner;
    inner.write_all(&checksum.to_le_bytes())?;
    inner.flush()?;
    Ok(PREFIX_LEN + header_bytes.len() as u64 + data_len + CHECKSUM_LEN)
}

/// Checks the magic, format version, length and checksum of the file behind `input`
/// (positioned at its start), then parses its header and checks it against the data length.
/// Returns the header and its length in bytes.
fn verify(path: &Path, input: &mut BufReader<File>) -> Result<(Header, u64), CheckpointError> {
    let read_error = |source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    };
    let actual = input.get_ref().metadata().map_err(read_error)?.len();
    if actual < PREFIX_LEN + CHECKSUM_LEN {
        return Err(CheckpointError::Truncated {
            path: path.to_path_buf(),
            actual,
            expected: PREFIX_LEN + CHECKSUM_LEN,
        });
    }
    let mut prefix = [0u8; PREFIX_LEN as usize];
    input.read_exact(&mut prefix).map_err(read_error)?;
    if prefix[..8] != MAGIC {
        return Err(CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }
    let le_u64 = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let (header_len, data_len) = (le_u64(&prefix[12..20]), le_u64(&prefix[20..28]));
    let expected = [header_len, data_len, CHECKSUM_LEN]
        .into_iter()
        .try_fold(PREFIX_LEN, u64::checked_add)
        .unwrap_or(u64::MAX);
    if actual < expected {
        return Err(CheckpointError::Truncated {
            path: path.to_path_buf(),
            actual,
            expected,
        });
    }
    if actual > expected {
        return Err(CheckpointError::TrailingBytes {
            path: path.to_path_buf(),
            actual,
            expected,
        });
    }

    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&prefix);
    let header_bytes = usize::try_from(header_len).map_err(|_| CheckpointError::Header {
        path: path.to_path_buf(),
        reason: format!("{header_len} bytes do not fit in memory"),
    })?;
    let mut header = vec![0u8; header_bytes];
    input.read_exact(&mut header).map_err(read_error)?;
    hasher.update(&header);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut left = data_len;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
        input.read_exact(&mut chunk[..n]).map_err(read_error)?;
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; CHECKSUM_LEN as usize];
    input.read_exact(&mut stored).map_err(read_error)?;
    let (stored, computed) = (u32::from_le_bytes(stored), hasher.finalize());
    if stored != computed {
        return Err(CheckpointError::Checksum {
            path: path.to_path_buf(),
            stored,
            computed,
        });
    }
    let header_error = |reason| CheckpointError::Header {
        path: path.to_path_buf(),
        reason,
    };
    let parsed: Header =
        serde_json::from_slice(&header).map_err(|e| header_error(e.to_string()))?;
    let values = parsed.value_count().map_err(header_error)?;
    if values.checked_mul(4) != Some(data_len) {
        return Err(header_error(format!(
            "it describes {values} values but the data region holds {data_len} bytes"
        )));
    }
    Ok((parsed, header_len))
}

/// Writes `values` as little-endian bytes, a chunk at a time.
fn write_f32s(out: &mut impl Write, values: &[f32]) -> io::Result<()> {
    let mut bytes = vec![0u8; CHUNK_BYTES];
    for chunk in values.chunks(CHUNK_BYTES / 4) {
        let bytes = &mut bytes[..4 * chunk.len()];
        for (dst, v) in bytes.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        out.write_all(bytes)?;
    }
    Ok(())
}

/// Reads `len` little-endian `f32`s, a chunk at a time.
fn read_f32s(input: &mut impl Read, len: usize) -> io::Result<Vec<f32>> {
    let mut values = Vec::with_capacity(len);
    let mut bytes = vec![0u8; CHUNK_BYTES.min(4 * len)];
    while values.len() < len {
        let n = (len - values.len()).min(CHUNK_BYTES / 4);
        let bytes = &mut bytes[..4 * n];
        input.read_exact(bytes)?;
        values.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
        );
    }
    Ok(values)
}

/// A writer that computes the CRC-32 of everything written through it.
struct Crc32Writer<W> {
    /// Where the bytes go.
    inner: W,
    /// The CRC-32 of every byte accepted by `inner` so far.
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for Crc32Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_matches_the_reference_vectors() {
        // From the FNV reference test suite (isthe.com/chongo/tech/comp/fnv).
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Accepts `budget` bytes, then fails every write: a disk that fills up half-way.
    struct FailAfter<W> {
        /// Where accepted bytes go.
        inner: W,
        /// Bytes still accepted.
        budget: usize,
    }

    impl<W: Write> Write for FailAfter<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("disk full (injected)"));
            }
            let n = self.inner.write(&buf[..buf.len().min(self.budget)])?;
            self.budget -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    fn snapshot(version: u64, fill: f32) -> Snapshot {
        let values = 100_000;
        Snapshot {
            job_fingerprint: fingerprint("job", 0, 1),
            job_toml: "job".into(),
            shard_index: 0,
            shard_count: 1,
            version,
            params: ParamSet::new(vec![NamedTensor {
                name: "w".into(),
                tensor: Tensor::new(vec![values], vec![fill; values]).unwrap(),
            }]),
            optimizer_state: vec![TensorState {
                step: version,
                buffers: vec![("momentum_buffer".into(), vec![fill; values])],
            }],
            core_state: serde_json::json!({ "workers": [] }),
        }
    }

    #[test]
    fn a_write_failing_half_way_leaves_the_previous_checkpoints_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 5).unwrap();
        let first = store.save(&snapshot(1, 1.0)).unwrap();
        let second = store.save(&snapshot(2, 2.0)).unwrap();
        let fp = fingerprint("job", 0, 1);

        // Half-way through a new version, and half-way through rewriting an existing one.
        for (version, fill) in [(3, 3.0), (2, 20.0)] {
            let err = store
                .save_through(&snapshot(version, fill), |file| {
                    Box::new(FailAfter {
                        inner: file,
                        budget: 400_000,
                    })
                })
                .unwrap_err();
            assert!(
                matches!(&err, CheckpointError::Write { source, .. } if source.to_string().contains("injected")),
                "{err}"
            );
            assert!(err.to_string().contains(".checkpoint-"), "{err}");
        }

        assert_eq!(store.list().unwrap(), [second.clone(), first.clone()]);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
        let (path, latest) = store.load_latest(&fp).unwrap().unwrap();
        assert_eq!(path, second);
        assert_eq!(latest, snapshot(2, 2.0));
        assert_eq!(
            CheckpointStore::load(&first, &fp).unwrap(),
            snapshot(1, 1.0)
        );
    }
}
