//! The launcher's live view of a run, drawn from the server's status.
//!
//! On a terminal: one status line (a bar, the percentage, the ETA, epoch, loss, the last
//! test metric and the rate), at most [`LINE_WIDTH`] columns so it never wraps at 80, with one
//! line per evaluated epoch printed above it. When stderr is not a terminal (a pipe, a CI log,
//! `nohup`), there is no bar: the phases and the per-epoch lines are printed as plain lines.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use downpour_core::status::{Evaluation, ServerStatus};

/// The status line's widest: one column short of 80, so a terminal never wraps it.
pub const LINE_WIDTH: usize = 79;
/// Cells of the bar itself.
const BAR_CELLS: usize = 16;

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A live bar on a terminal.
    Bar,
    /// Plain lines (stderr is not a terminal).
    Lines,
    /// Warnings only (`--quiet`).
    Quiet,
}

/// A progress line over the job's steps, plus one line per evaluated epoch.
#[derive(Debug)]
pub struct Progress {
    /// The bar: drawn only in [`Mode::Bar`].
    bar: ProgressBar,
    /// Epoch lines already printed: `status.epochs[..epochs_printed]`.
    epochs_printed: usize,
    /// Where and how lines go.
    mode: Mode,
}

impl Progress {
    /// A progress display on stderr; `quiet` keeps only warnings.
    #[must_use]
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        let bar = ProgressBar::with_draw_target(
            None,
            if mode == Mode::Bar {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
        if mode == Mode::Bar {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Self {
            bar,
            epochs_printed: 0,
            mode,
        }
    }

    /// Shows a phase before training (starting processes, waiting for workers).
    pub fn phase(&self, message: &str) {
        match self.mode {
            Mode::Bar => self.bar.set_message(message.to_string()),
            Mode::Lines => eprint_line(message),
            Mode::Quiet => {}
        }
    }

    /// Updates from a fresh status: the line, and any newly evaluated epochs.
    pub fn update(&mut self, status: &ServerStatus) {
        if self.mode == Mode::Bar {
            self.bar.set_message(status_line(status));
        }
        for epoch in status.epochs.iter().skip(self.epochs_printed) {
            let Some(ev) = &epoch.evaluation else { break };
            let line = format!(
                "epoch {:>3}/{}  train loss {:.4}  {}",
                epoch.epoch + 1,
                total_epochs(status),
                epoch.train_loss,
                describe(ev)
            );
            match self.mode {
                Mode::Bar => self.bar.println(line),
                Mode::Lines => eprint_line(&line),
                Mode::Quiet => {}
            }
            self.epochs_printed += 1;
        }
    }

    /// Prints a line above the bar (always, even when quiet: warnings matter).
    pub fn println(&self, line: &str) {
        if self.mode == Mode::Bar {
            self.bar.println(line);
        } else {
            eprint_line(line);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn eprint_line(line: &str) {
    #[allow(clippy::print_stderr, reason = "the launcher owns the terminal")]
    {
        eprintln!("{line}");
    }
}

fn total_epochs(status: &ServerStatus) -> u64 {
    status.total_steps / status.steps_per_epoch.max(1)
}

/// The live status line, at most [`LINE_WIDTH`] characters:
/// `[=======>        ]  45% eta 1m05s  ep 27.3/60  loss 0.1234  acc 96.43%  1234/s`.
///
/// The ETA extrapolates the steps done so far over the elapsed time; it is `--` until a step
/// has been done.
#[must_use]
pub fn status_line(status: &ServerStatus) -> String {
    let total = status.total_steps.max(1);
    let done = ((status.epoch_progress * status.steps_per_epoch as f64) as u64).min(total);
    let fraction = done as f64 / total as f64;
    let filled = ((fraction * BAR_CELLS as f64) as usize).min(BAR_CELLS);
    let mut bar = "=".repeat(filled);
    if filled < BAR_CELLS {
        bar.push(if filled > 0 { '>' } else { ' ' });
        bar.push_str(&" ".repeat(BAR_CELLS - filled - 1));
    }
    let eta = if done > 0 && status.elapsed_seconds > 0.0 {
        let per_step = status.elapsed_seconds / done as f64;
        duration_short(per_step * (total - done) as f64)
    } else {
        "--".to_string()
    };
    let rate = if status.elapsed_seconds > 0.0 {
        status.samples_trained as f64 / status.elapsed_seconds
    } else {
        0.0
    };
    let losses: Vec<f64> = status.workers.iter().filter_map(|w| w.last_loss).collect();
    let loss = if losses.is_empty() {
        "--".to_string()
    } else {
        format!("{:.4}", losses.iter().sum::<f64>() / losses.len() as f64)
    };
    let metric = status
        .evaluations
        .last()
        .map(short_metric)
        .unwrap_or_default();
    let mut line = format!(
        "[{bar}] {:>3.0}% eta {eta}  ep {:.1}/{}  loss {loss}  {metric}  {}/s",
        fraction * 100.0,
        status.epoch_progress,
        total_epochs(status),
        rate_short(rate),
    );
    if line.chars().count() > LINE_WIDTH {
        line = line.chars().take(LINE_WIDTH).collect();
    }
    line
}

/// `acc 96.43%`, `mse 0.001234` or `tl 0.1234` (the test loss).
fn short_metric(ev: &Evaluation) -> String {
    match (ev.test_accuracy, ev.test_mse) {
        (Some(acc), _) => format!("acc {:.2}%", acc * 100.0),
        (None, Some(mse)) => format!("mse {mse:.3e}"),
        (None, None) => format!("tl {:.4}", ev.test_loss),
    }
}

/// `42s`, `3m07s`, `2h05m`: at most 6 characters up to 99 hours.
fn duration_short(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `950`, `12.3k`, `4.5M` samples.
fn rate_short(rate: f64) -> String {
    if rate < 10_000.0 {
        format!("{rate:.0}")
    } else if rate < 10_000_000.0 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{:.1}M", rate / 1e6)
    }
}

/// `test acc 96.4%` or `test mse 0.0012`, with the test loss.
#[must_use]
pub fn describe(ev: &Evaluation) -> String {
    match (ev.test_accuracy, ev.test_mse) {
        (Some(acc), _) => format!(
            "test acc {:.2}%  test loss {:.4}",
            acc * 100.0,
            ev.test_loss
        ),
        (None, Some(mse)) => format!("test mse {mse:.6}"),
        (None, None) => format!("test loss {:.4}", ev.test_loss),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation(acc: Option<f64>, mse: Option<f64>) -> Evaluation {
        Evaluation {
            worker_id: 0,
            version: 10,
            test_loss: 12_345.678_9,
            test_accuracy: acc,
            test_mse: mse,
            test_samples: 360,
            is_final: false,
        }
    }

    fn status(progress: f64, elapsed: f64, evaluation: Option<Evaluation>) -> ServerStatus {
        ServerStatus {
            job: serde_json::Value::Null,
            consistency: downpour_core::consistency::ConsistencyMode::Sync,
            shard: downpour_core::status::ShardStatus::default(),
            checkpoint: downpour_core::status::CheckpointStatus::default(),
            version: 0,
            steps_per_epoch: 45,
            total_steps: 45 * 60,
            epoch_progress: progress,
            expected_workers: 4,
            finished: false,
            elapsed_seconds: elapsed,
            samples_trained: (progress * 45.0 * 32.0 * 4.0) as u64,
            workers: Vec::new(),
            dead_workers_folded: 0,
            epochs: Vec::new(),
            evaluations: evaluation.into_iter().collect(),
            final_evaluation: None,
            staleness: downpour_core::status::StalenessStats::default(),
            step_staleness: downpour_core::status::StalenessStats::default(),
            timing: downpour_core::timing::TimingReport::default(),
        }
    }

    #[test]
    fn the_line_fits_in_80_columns_and_shows_the_eta_whatever_the_numbers() {
        let cases = [
            status(0.0, 0.0, None),
            status(30.0, 10.0, Some(evaluation(Some(0.964_31), None))),
            status(59.99, 100_000.0, Some(evaluation(None, Some(1.234e-7)))),
            status(1.0, 1e-9, Some(evaluation(None, None))),
        ];
        for s in &cases {
            let line = status_line(s);
            assert!(line.chars().count() <= 79, "{} columns: {line}", line.len());
            assert!(line.contains(" eta "), "{line}");
        }
        // Half-way after 10 s: 10 s left.
        let half = status_line(&cases[1]);
        assert!(half.contains("50% eta 10s"), "{half}");
        assert!(half.contains("ep 30.0/60"), "{half}");
        assert!(half.contains("acc 96.43%"), "{half}");
        assert!(half.starts_with("[========>       ]"), "{half}");
        assert!(status_line(&cases[0]).contains("eta --"));
    }

    #[test]
    fn durations_and_rates_are_short() {
        assert_eq!(duration_short(42.4), "42s");
        assert_eq!(duration_short(187.0), "3m07s");
        assert_eq!(duration_short(7_500.0), "2h05m");
        assert_eq!(rate_short(950.2), "950");
        assert_eq!(rate_short(12_345.0), "12.3k");
        assert_eq!(rate_short(4.5e7), "45.0M");
    }
}
