//! The `downpour` binary: parse the command line, set up logging, run, report errors once.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use downpour::bench::{BenchConfig, BenchError, BenchEvent};
use downpour::cli::{Cli, Command};
use downpour::launch::LaunchError;
use downpour::progress::describe;

fn main() -> ExitCode {
    downpour::allocator::keep_large_buffers_on_the_heap();
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Train(_) | Command::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let interrupted = e
                .downcast_ref::<LaunchError>()
                .is_some_and(|l| matches!(l, LaunchError::Interrupted))
                || e.downcast_ref::<BenchError>()
                    .is_some_and(BenchError::interrupted);
            ExitCode::from(if interrupted { 130 } else { 1 })
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Server(args) => downpour::commands::server(args)?,
        Command::Worker(args) => downpour::commands::worker(args)?,
        Command::Health(args) => downpour::commands::health(args)?,
        Command::Export(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let version = runtime.block_on(downpour::weights::export_from_servers(
                &args.server,
                &args.out,
            ))?;
            print_text(&format!(
                "wrote {} (version {version})\n",
                args.out.display()
            ));
        }
        Command::Evaluate(args) => {
            let outcome = downpour::evaluate::evaluate(args)?;
            print_text(&downpour::evaluate::describe(&outcome));
            if let Some(out) = &args.split_out {
                print_text(&format!("wrote {}\n", out.display()));
            }
        }
        Command::Train(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(async {
                let interrupt = CancellationToken::new();
                downpour::commands::cancel_on_signal(interrupt.clone());
                downpour::launch::train(args, interrupt).await
            })?;
            print_summary(&outcome);
        }
        Command::Bench(args) => {
            let config = BenchConfig::from_args(args)?;
            if args.compose {
                print_text(&downpour::bench::compose::commands(
                    &config,
                    downpour::bench::machine::cores(),
                ));
                return Ok(());
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(async {
                let interrupt = CancellationToken::new();
                downpour::commands::cancel_on_signal(interrupt.clone());
                downpour::bench::run(&config, interrupt, &mut show_progress).await
            })?;
            print_text(&downpour::bench::output::markdown(&outcome.report));
            for f in &outcome.files {
                print_text(&format!("wrote {}\n", f.display()));
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the binary owns the output")]
fn print_text(text: &str) {
    print!("{text}");
}

/// One line per finished run, on stderr (stdout is the table).
fn show_progress(event: BenchEvent<'_>) {
    match event {
        BenchEvent::Stage(what) => eprintln!("bench: {what}"),
        BenchEvent::Baseline(b) => eprintln!(
            "bench: single process, repeat {}: {:.0} samples/s",
            b.repeat + 1,
            b.samples_per_second
        ),
        BenchEvent::Run {
            index,
            total,
            measurement: m,
        } => eprintln!(
            "bench: run {index}/{total} {} repeat {}: {:.0} samples/s, {:.2} ms/step, time to target {}",
            m.config,
            m.repeat + 1,
            m.samples_per_second,
            m.phases.total * 1e3,
            m.time_to_target
                .map_or_else(|| "not reached".to_string(), |t| format!("{t:.2} s"))
        ),
    }
}

#[allow(clippy::print_stdout, reason = "the binary owns the output")]
fn print_summary(outcome: &downpour::launch::TrainOutcome) {
    let r = &outcome.report;
    let f = &r.final_metrics;
    let result = r
        .evaluations
        .iter()
        .rev()
        .find(|e| e.is_final)
        .map(describe)
        .unwrap_or_default();
    println!("Done: {result}");
    println!(
        "  {} workers, {} mode, {} updates in {:.2} s wall ({:.2} s training), {:.0} samples/s",
        r.hardware.worker_processes,
        r.consistency,
        f.version,
        f.wall_seconds,
        f.training_seconds,
        f.samples_per_second
    );
    println!("  report:  {}", outcome.report_path.display());
    println!("  weights: {}", r.files.weights.display());
}
