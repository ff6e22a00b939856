//! The launcher's live view of a run, drawn from the server's status.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use downpour_core::status::{Evaluation, ServerStatus};

/// A progress bar over the job's steps, plus one line per evaluated epoch.
#[derive(Debug)]
pub struct Progress {
    /// The bar (hidden when stderr is not a terminal, or with `--quiet`).
    bar: ProgressBar,
    /// Epoch lines already printed.
    epochs_printed: usize,
    /// Whether to print epoch lines.
    verbose: bool,
}

impl Progress {
    /// A progress display; `quiet` hides it.
    #[must_use]
    pub fn new(quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            None,
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:28} {pos}/{len} steps  {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            epochs_printed: 0,
            verbose: !quiet,
        }
    }

    /// Shows a phase before training (starting processes, waiting for workers).
    pub fn phase(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }

    /// Updates from a fresh status.
    pub fn update(&mut self, status: &ServerStatus) {
        self.bar.set_length(status.total_steps);
        let steps = (status.epoch_progress * status.steps_per_epoch as f64) as u64;
        self.bar.set_position(steps.min(status.total_steps));
        let epochs = status.total_steps / status.steps_per_epoch.max(1);
        let rate = if status.elapsed_seconds > 0.0 {
            status.samples_trained as f64 / status.elapsed_seconds
        } else {
            0.0
        };
        let loss = status
            .workers
            .iter()
            .filter_map(|w| w.last_loss)
            .sum::<f64>()
            / status
                .workers
                .iter()
                .filter(|w| w.last_loss.is_some())
                .count()
                .max(1) as f64;
        let metric = status.evaluations.last().map(describe).unwrap_or_default();
        self.bar.set_message(format!(
            "epoch {:.1}/{epochs}  loss {loss:.4}  {metric}  {rate:.0} samples/s",
            status.epoch_progress
        ));
        if self.verbose {
            for epoch in status.epochs.iter().skip(self.epochs_printed) {
                let Some(ev) = &epoch.evaluation else { break };
                self.bar.println(format!(
                    "epoch {:>3}  train loss {:.4}  {}",
                    epoch.epoch + 1,
                    epoch.train_loss,
                    describe(ev)
                ));
                self.epochs_printed += 1;
            }
        }
    }

    /// Prints a line above the bar (always, even when quiet: warnings matter).
    pub fn println(&self, line: &str) {
        if self.verbose {
            self.bar.println(line);
        } else {
            #[allow(clippy::print_stderr, reason = "the launcher owns the terminal")]
            {
                eprintln!("{line}");
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
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
