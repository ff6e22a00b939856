//! The lab's results as text: a Markdown report (what the binary prints), CSV files
//! (one row per configuration, one per run) and the full JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::bench::config::Target;
use crate::bench::results::{BenchReport, ConfigSummary};
use crate::bench::stats::Summary;
use crate::bench::transport::gb_per_second;

/// The phases of the breakdown, in step order: a step is their sum less [`OVERLAP`].
pub const PHASES: [&str; 7] = [
    "compute", "send", "apply", "wait", "receive", "evaluate", "other",
];

/// The column of communication hidden behind compute (prefetch), which the phases count
/// in full: subtract it from their sum to get the step.
pub const OVERLAP: &str = "overlap";

/// The breakdown's columns: the phases, then the overlap.
fn columns() -> impl Iterator<Item = &'static str> {
    PHASES.into_iter().chain([OVERLAP])
}

/// `median ± half range`, with `decimals` decimals.
#[must_use]
pub fn pm(s: &Summary, decimals: usize) -> String {
    if s.n > 1 {
        format!("{:.decimals$} ± {:.decimals$}", s.median, s.half_range())
    } else {
        format!("{:.decimals$}", s.median)
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

fn mib(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// The Markdown report: machine, job, the speedup table, the phase breakdown, the
/// baseline, the microbenchmarks and the notes.
#[must_use]
pub fn markdown(r: &BenchReport) -> String {
    let mut out = String::new();
    let compute = match r.simulate_compute_ms {
        None => "real compute".to_string(),
        Some(ms) => format!("SIMULATED compute: {ms} ms sleep per step"),
    };
    let _ = writeln!(out, "### Speedup lab: {} ({compute})\n", r.job_source);
    let m = &r.machine;
    let _ = writeln!(
        out,
        "Machine: **{} cores** ({}), {}, accelerator: {}; 1-minute load average {} at the start, {} at the end. \
         Threads: {}. With N workers on {} cores, compute speedup cannot exceed {}.\n",
        m.cores,
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.memory_gib
            .map_or_else(|| "memory unknown".into(), |g| format!("{g:.1} GiB")),
        m.accelerator,
        m.load_at_start
            .map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        m.load_at_end
            .map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        if r.prefetch {
            format!(
                "{} (async+prefetch workers: the compute thread beside the runtime's thread, which pushes and pulls meanwhile)",
                m.threads
            )
        } else {
            m.threads.clone()
        },
        m.cores,
        m.cores
    );
    let _ = writeln!(
        out,
        "Job: {} parameters, batch {} per worker step, {} epochs, {} training samples; target: {}; \
         {} repeats per configuration; figures are medians ± half the range over the repeats; \
         \"others' CPU\" is the share of all cores used by processes other than the lab's, in the second \
         before each run and during it (medians).\n",
        r.parameters, r.batch, r.shape.epochs, r.shape.train_len, r.target, r.repeats
    );
    speedup_table(&mut out, r);
    phase_table(&mut out, r);
    baseline_table(&mut out, r);
    transport_table(&mut out, r);
    apply_table(&mut out, r);
    if !r.notes.is_empty() {
        let _ = writeln!(out, "Notes:\n");
        for n in &r.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    out
}

fn target_column(target: Target) -> &'static str {
    match target {
        Target::Accuracy(_) => "final accuracy",
        Target::Loss(_) => "final loss",
    }
}

fn speedup_table(out: &mut String, r: &BenchReport) {
    let _ = writeln!(
        out,
        "| mode | servers | workers | samples/s | speedup T1/TN | efficiency | predicted speedup (bound) | prediction error | predicted under measured load | time to target (s) | {} | others' CPU before / during |",
        target_column(r.target)
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &r.summaries {
        let final_metric = match r.target {
            Target::Accuracy(_) => s.final_accuracy.map(|a| pct(a.median)).unwrap_or_default(),
            Target::Loss(_) => {
                let losses: Vec<f64> = r
                    .runs
                    .iter()
                    .filter(|run| run.config == s.config)
                    .map(|run| run.final_loss)
                    .collect();
                Summary::of(&losses)
                    .map(|l| format!("{:.4}", l.median))
                    .unwrap_or_default()
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            s.config.label(),
            s.config.servers,
            s.config.workers,
            pm(&s.samples_per_second, 0),
            s.speedup.map(|x| pm(&x, 2)).unwrap_or_else(|| "–".into()),
            s.efficiency.map(pct).unwrap_or_else(|| "–".into()),
            s.prediction
                .map(|p| format!("{:.2} ({})", p.speedup, p.bound.name()))
                .unwrap_or_else(|| "–".into()),
            s.prediction_error
                .map(|e| format!("{:+.0}%", e * 100.0))
                .unwrap_or_else(|| "–".into()),
            s.prediction_under_load
                .map(|p| format!("{:.2}", p.speedup))
                .unwrap_or_else(|| "–".into()),
            if r.simulate_compute_ms.is_some() {
                "n/a (zero gradients)".to_string()
            } else {
                time_to_target(s)
            },
            final_metric,
            s.busy_before.map(|b| pct(b.median)).unwrap_or_default(),
            s.others_during.map(|b| pct(b.median)).unwrap_or_default()
        );
    }
    out.push('\n');
}

fn time_to_target(s: &ConfigSummary) -> String {
    match &s.time_to_target {
        Some(t) if s.reached_target == s.runs => pm(t, 2),
        Some(t) => format!("{} ({}/{} runs)", pm(t, 2), s.reached_target, s.runs),
        None => format!("not reached (0/{})", s.runs),
    }
}

fn phase_table(out: &mut String, r: &BenchReport) {
    let _ = writeln!(
        out,
        "Phase breakdown, milliseconds per worker step (medians; apply = the server's update inside an exchange; \
         overlap = communication that ran behind compute with prefetch, counted in its phases too, so step = phases − overlap; \
         the server columns are the server's own time per push):\n"
    );
    let names: Vec<&str> = columns().collect();
    let _ = writeln!(
        out,
        "| mode | servers | workers | step | {} | server apply | server decode |",
        names.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|{}---:|---:|",
        "---:|".repeat(names.len())
    );
    for s in &r.summaries {
        let phases: Vec<String> = columns()
            .map(|p| format!("{:.3}", s.phase(p) * 1e3))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {} | {:.3} | {:.3} |",
            s.config.label(),
            s.config.servers,
            s.config.workers,
            s.step_seconds.median * 1e3,
            phases.join(" | "),
            s.server_apply_per_push.median * 1e3,
            s.server_decode_per_push.median * 1e3
        );
    }
    out.push('\n');
}

fn baseline_table(out: &mut String, r: &BenchReport) {
    let Some(b) = &r.baseline else { return };
    let _ = writeln!(
        out,
        "Single-process baseline (the worker's model and the server's optimizer step in one process, no network) \
         against one distributed worker:\n"
    );
    let _ = writeln!(
        out,
        "| trainer | samples/s | ratio to single process | time to target (s) | compute ms/step | apply ms/step |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| single process | {} | 1.00 | {} | {:.3} | {:.3} |",
        pm(&b.samples_per_second, 0),
        b.time_to_target
            .map(|t| pm(&t, 2))
            .unwrap_or_else(|| "not reached".into()),
        b.compute_per_step.median * 1e3,
        b.apply_per_step.median * 1e3
    );
    for (mode, ratio) in &b.distributed_ratio {
        if let Some(s) = r.summary(*mode, 1) {
            let _ = writeln!(
                out,
                "| downpour {} N=1 | {} | {:.2} | {} | {:.3} | {:.3} |",
                crate::bench::config::mode_label(*mode, r.prefetch),
                pm(&s.samples_per_second, 0),
                ratio,
                time_to_target(s),
                s.phase("compute") * 1e3,
                s.phase("apply") * 1e3
            );
        }
    }
    out.push('\n');
}

fn transport_table(out: &mut String, r: &BenchReport) {
    let Some(t) = &r.transport else { return };
    let st = &t.settings;
    let _ = writeln!(
        out,
        "Transport, Downpour's gRPC path against raw length-prefixed TCP on loopback, alternated in the same run \
         (GB/s of f32 payload; end to end includes encoding and decoding, transfer only subtracts them). \
         Settings: HTTP/2 stream window {}, connection window {}, server max frame {}, client max frame {}, \
         max message {}, {}, TCP_NODELAY {}.\n",
        mib(u64::from(st.stream_window_bytes)),
        mib(u64::from(st.connection_window_bytes)),
        mib(u64::from(st.server_max_frame_bytes)),
        mib(u64::from(st.client_max_frame_bytes)),
        mib(st.max_message_bytes as u64),
        if st.piece_bytes == 0 {
            "one message per call".to_string()
        } else {
            format!("streamed in pieces of {}", mib(st.piece_bytes as u64))
        },
        if st.tcp_nodelay { "on" } else { "off" }
    );
    let _ = writeln!(
        out,
        "| parameters | MB | direction | gRPC end to end | gRPC transfer only | raw TCP | ratio end to end | ratio transfer only |"
    );
    let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|");
    for x in &t.results {
        let mb = x.bytes as f64 / 1e6;
        let rows = [
            (
                "push",
                x.grpc_push.median,
                x.grpc_push_transfer(),
                x.tcp_push.median,
                x.push_ratio(),
                x.push_transfer_ratio(),
            ),
            (
                "pull",
                x.grpc_pull.median,
                x.grpc_pull_transfer(),
                x.tcp_pull.median,
                x.pull_ratio(),
                x.pull_transfer_ratio(),
            ),
        ];
        for (dir, e2e, transfer, tcp, ratio, ratio_transfer) in rows {
            let _ = writeln!(
                out,
                "| {} | {mb:.1} | {dir} | {:.2} | {:.2} | {:.2} | {ratio:.2} | {ratio_transfer:.2} |",
                x.parameters,
                gb_per_second(x.bytes, e2e),
                gb_per_second(x.bytes, transfer),
                gb_per_second(x.bytes, tcp)
            );
        }
    }
    out.push('\n');
}

fn apply_table(out: &mut String, r: &BenchReport) {
    if r.apply_rates.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Optimizer apply rate (one step through the parameter store, as the server runs it) against memcpy of the same values:\n"
    );
    let _ = writeln!(
        out,
        "| parameters | optimizer | apply ms | apply Mparam/s | memcpy ms | memcpy Mparam/s | apply / memcpy time |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|");
    for a in &r.apply_rates {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {:.0} | {:.1} |",
            a.parameters,
            a.optimizer,
            pm(&a.apply.scaled(1e-3), 3),
            a.apply_per_second() / 1e6,
            pm(&a.memcpy.scaled(1e-3), 3),
            a.memcpy_per_second() / 1e6,
            a.slowdown()
        );
    }
    out.push('\n');
}

/// One CSV row per configuration.
#[must_use]
pub fn summary_csv(r: &BenchReport) -> String {
    let mut out = String::from(
        "mode,servers,workers,runs,samples_per_second_median,samples_per_second_min,samples_per_second_max,\
         speedup_median,speedup_min,speedup_max,efficiency,predicted_speedup,predicted_samples_per_second,\
         prediction_bound,prediction_error,predicted_speedup_under_load,time_to_target_median,time_to_target_min,time_to_target_max,\
         reached_target,final_accuracy_median,step_ms",
    );
    for p in columns() {
        let _ = write!(out, ",{p}_ms");
    }
    out.push_str(",server_apply_ms,server_decode_ms\n");
    for s in &r.summaries {
        let t = s.time_to_target;
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.config.label(),
            s.config.servers,
            s.config.workers,
            s.runs,
            s.samples_per_second.median,
            s.samples_per_second.min,
            s.samples_per_second.max,
            opt(s.speedup.map(|x| x.median)),
            opt(s.speedup.map(|x| x.min)),
            opt(s.speedup.map(|x| x.max)),
            opt(s.efficiency),
            opt(s.prediction.map(|p| p.speedup)),
            opt(s.prediction.map(|p| p.samples_per_second)),
            s.prediction.map(|p| p.bound.name()).unwrap_or_default(),
            opt(s.prediction_error),
            opt(s.prediction_under_load.map(|p| p.speedup)),
            opt(t.map(|x| x.median)),
            opt(t.map(|x| x.min)),
            opt(t.map(|x| x.max)),
            s.reached_target,
            opt(s.final_accuracy.map(|x| x.median)),
            s.step_seconds.median * 1e3
        );
        for p in columns() {
            let _ = write!(out, ",{}", s.phase(p) * 1e3);
        }
        let _ = writeln!(
            out,
            ",{},{}",
            s.server_apply_per_push.median * 1e3,
            s.server_decode_per_push.median * 1e3
        );
    }
    out
}

/// One CSV row per run.
#[must_use]
pub fn runs_csv(r: &BenchReport) -> String {
    let mut out = String::from(
        "mode,servers,workers,repeat,samples,updates,training_seconds,samples_per_second,\
         time_to_target,final_accuracy,final_loss,busy_before,others_during,step_ms",
    );
    for p in columns() {
        let _ = write!(out, ",{p}_ms");
    }
    out.push_str(",server_apply_ms,run_dir\n");
    for run in &r.runs {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            run.config.label(),
            run.config.servers,
            run.config.workers,
            run.repeat,
            run.samples,
            run.updates,
            run.training_seconds,
            run.samples_per_second,
            opt(run.time_to_target),
            opt(run.final_accuracy),
            run.final_loss,
            opt(run.busy_before),
            opt(run.others_during),
            run.phases.total * 1e3
        );
        let named = run.phases.phases();
        for p in columns() {
            let seconds = if p == "other" {
                run.phases.other()
            } else if p == OVERLAP {
                run.phases.overlap
            } else {
                named.iter().find(|(n, _)| *n == p).map_or(0.0, |(_, s)| *s)
            };
            let _ = write!(out, ",{}", seconds * 1e3);
        }
        let _ = writeln!(
            out,
            ",{},{}",
            run.server_apply_per_push * 1e3,
            run.run_dir.display()
        );
    }
    out
}

/// Writes `bench.json`, `summary.csv`, `runs.csv` and `report.md` into `dir`; returns their paths.
///
/// # Errors
/// The OS error when a file cannot be written.
pub fn write_files(r: &BenchReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let files = [
        (
            "bench.json",
            serde_json::to_string_pretty(r).expect("a report always serialises") + "\n",
        ),
        ("summary.csv", summary_csv(r)),
        ("runs.csv", runs_csv(r)),
        ("report.md", markdown(r)),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_table_and_the_csv_carry_the_numbers() {
        let r = crate::bench::results::fixtures::report();
        let md = markdown(&r);
        assert!(
            md.contains("| sync | 1 | 2 | 1900 ± 100 | 1.81 ± 0.10 | 90.5% |"),
            "{md}"
        );
        assert!(md.contains("| sync | 1 | 1 | 1050 ± 50 | 1.00 ± 0.05 | 100.0% | 1.00 (latency) | +0% | 1.00 | 2.50 ± 0.50 | 96.0% | 10.0% / 5.0% |"), "{md}");
        assert!(md.contains("**2 cores** (Test CPU), 8.0 GiB"), "{md}");
        // Phases: compute, send, apply, wait, receive, evaluate, other, overlap.
        assert!(
            md.contains("| sync | 1 | 2 | 3.600 | 1.100 | 1.000 | 0.500 | 0.000 | 1.000 | 0.000 | 0.000 | 0.000 | 0.500 | 0.100 |"),
            "{md}"
        );
        let csv = summary_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2].starts_with("sync,1,2,2,1900,1800,2000,"),
            "{}",
            lines[2]
        );
        let runs = runs_csv(&r);
        assert!(
            runs.lines()
                .nth(2)
                .unwrap()
                .starts_with("sync,1,2,0,1000,100,"),
            "{runs}"
        );
    }

    #[test]
    fn plus_minus_shows_half_the_range() {
        let s = Summary::of(&[90.0, 100.0, 130.0]).unwrap();
        assert_eq!(pm(&s, 1), "100.0 ± 20.0");
        assert_eq!(pm(&Summary::of(&[2.5]).unwrap(), 2), "2.50");
        assert_eq!(mib(16 * 1024), "16 KiB");
        assert_eq!(mib(8 * 1024 * 1024), "8 MiB");
        assert_eq!(pct(0.955), "95.5%");
    }
}
