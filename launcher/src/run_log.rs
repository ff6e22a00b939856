//! The run's log as training goes: `metrics.csv` in the run directory, and TensorBoard
//! scalars with `--tensorboard DIR`.
//!
//! One row (and one TensorBoard event) per evaluated epoch, written as soon as the launcher's
//! status poll sees it, so `tail -f RUN_DIR/metrics.csv` and a running TensorBoard follow the
//! run. Columns:
//!
//! | column | meaning |
//! |---|---|
//! | `step` | optimizer steps at the end of the epoch (epoch × steps per epoch) |
//! | `epoch` | 1-based |
//! | `elapsed_seconds` | since training started, when the launcher saw the epoch |
//! | `train_loss` | the epoch's mean training loss over every worker's steps |
//! | `test_loss`, `test_accuracy`, `test_mse` | the epoch's evaluation (empty when not a classification / regression metric) |
//! | `samples_per_second` | samples trained in the whole job over elapsed time, at that moment |
//!
//! TensorBoard tags: `train/loss`, `test/loss`, `test/accuracy`, `test/mse`,
//! `throughput/samples_per_second`, each at `step`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use downpour_core::status::ServerStatus;

use crate::tensorboard::EventWriter;

/// The header of `metrics.csv`.
pub const CSV_HEADER: &str =
    "step,epoch,elapsed_seconds,train_loss,test_loss,test_accuracy,test_mse,samples_per_second";

/// Writes `metrics.csv` and, optionally, TensorBoard events, one row per evaluated epoch.
#[derive(Debug)]
pub struct RunLog {
    /// `metrics.csv`, flushed after every row.
    csv: BufWriter<File>,
    /// Where `metrics.csv` is.
    csv_path: PathBuf,
    /// TensorBoard's event file, with `--tensorboard`.
    events: Option<EventWriter>,
    /// Epochs already written: `status.epochs[..written]`.
    written: usize,
}

impl RunLog {
    /// Creates `RUN_DIR/metrics.csv` (with its header) and, when `tensorboard` is given, an
    /// event file in that folder.
    ///
    /// # Errors
    /// The path and the I/O error.
    pub fn create(
        run_dir: &Path,
        tensorboard: Option<&Path>,
    ) -> Result<Self, (PathBuf, std::io::Error)> {
        let csv_path = run_dir.join("metrics.csv");
        let mut csv = File::create(&csv_path)
            .map(BufWriter::new)
            .map_err(|e| (csv_path.clone(), e))?;
        writeln!(csv, "{CSV_HEADER}")
            .and_then(|()| csv.flush())
            .map_err(|e| (csv_path.clone(), e))?;
        let events = tensorboard
            .map(|dir| EventWriter::create(dir, now()).map_err(|e| (dir.to_path_buf(), e)))
            .transpose()?;
        Ok(Self {
            csv,
            csv_path,
            events,
            written: 0,
        })
    }

    /// `metrics.csv`'s path.
    #[must_use]
    pub fn csv_path(&self) -> &Path {
        &self.csv_path
    }

    /// The TensorBoard event file, if any.
    #[must_use]
    pub fn events_path(&self) -> Option<&Path> {
        self.events.as_ref().map(EventWriter::path)
    }

    /// Writes a row for each epoch evaluated since the last call.
    ///
    /// # Errors
    /// The path and the I/O error.
    pub fn observe(&mut self, status: &ServerStatus) -> Result<(), (PathBuf, std::io::Error)> {
        let rate = if status.elapsed_seconds > 0.0 {
            status.samples_trained as f64 / status.elapsed_seconds
        } else {
            0.0
        };
        for epoch in status.epochs.iter().skip(self.written) {
            let Some(ev) = &epoch.evaluation else { break };
            let step = (epoch.epoch + 1) * status.steps_per_epoch;
            let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            writeln!(
                self.csv,
                "{step},{},{:.3},{},{},{},{},{rate:.1}",
                epoch.epoch + 1,
                status.elapsed_seconds,
                epoch.train_loss,
                ev.test_loss,
                opt(ev.test_accuracy),
                opt(ev.test_mse),
            )
            .and_then(|()| self.csv.flush())
            .map_err(|e| (self.csv_path.clone(), e))?;
            if let Some(events) = self.events.as_mut() {
                let mut scalars = vec![
                    ("train/loss", epoch.train_loss),
                    ("test/loss", ev.test_loss),
                    ("throughput/samples_per_second", rate),
                ];
                if let Some(acc) = ev.test_accuracy {
                    scalars.push(("test/accuracy", acc));
                }
                if let Some(mse) = ev.test_mse {
                    scalars.push(("test/mse", mse));
                }
                events
                    .scalars(now(), step, &scalars)
                    .map_err(|e| (events.path().to_path_buf(), e))?;
            }
            self.written += 1;
        }
        Ok(())
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
