//! The `downpour` binary: parse the command line, set up logging, run, report errors once.
//! The launcher's subcommands come from `downpour-launch`, `bench` from `downpour-bench`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use downpour_bench::{BenchArgs, BenchConfig, BenchError, BenchEvent};
use downpour_launch::cli::Command as LaunchCommand;
use downpour_launch::launch::LaunchError;
use downpour_launch::progress::describe;

/// Downpour: a distributed parameter-server trainer.
#[derive(Debug, Parser)]
#[command(name = "downpour", version, about, long_about = None)]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands: the launcher's, then the lab.
#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Launch(LaunchCommand),
    /// The speedup lab: run a job for several worker counts and modes, with repeats, and
    /// report throughput, speedup, time to a target, the phase breakdown and a prediction.
    Bench(BenchArgs),
}

fn main() -> ExitCode {
    downpour_launch::allocator::keep_large_buffers_on_the_heap();
    unset_empty_downpour_variables();
    let cli = Cli::parse();
    let default_level = if matches!(
        cli.command,
        Command::Launch(LaunchCommand::Train(_)) | Command::Bench(_)
    ) {
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

/// An empty `DOWNPOUR_*` variable counts as unset, so that Compose files and manifests can
/// pass `${VAR:-}` through and leave the job file's value in force when VAR is not given.
fn unset_empty_downpour_variables() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| k.to_string_lossy().starts_with("DOWNPOUR_") && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for key in empty {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::remove_var(key) };
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Launch(command) => run_launcher(command),
        Command::Bench(args) => run_bench(args),
    }
}

fn run_launcher(command: &LaunchCommand) -> anyhow::Result<()> {
    match command {
        LaunchCommand::Server(args) => downpour_launch::commands::server(args)?,
        LaunchCommand::Worker(args) => downpour_launch::commands::worker(args)?,
        LaunchCommand::Health(args) => downpour_launch::commands::health(args)?,
        LaunchCommand::Export(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let config = args.security.config(&args.server[0])?;
            let version = runtime.block_on(downpour_launch::weights::export_from_servers(
                &config,
                &args.server,
                &args.out,
            ))?;
            print_text(&format!(
                "wrote {} (version {version})\n",
                args.out.display()
            ));
        }
        LaunchCommand::Certs(args) => {
            let files = downpour_launch::certs::make_certs(&args.out, &args.hosts)?;
            print_text(&format!(
                "wrote {} (CA), {} and {} (servers: --tls-cert, --tls-key), {} and {} (clients, mutual TLS)\n",
                files.ca_cert.display(),
                files.server_cert.display(),
                files.server_key.display(),
                files.client_cert.display(),
                files.client_key.display()
            ));
        }
        LaunchCommand::Evaluate(args) => {
            let outcome = downpour_launch::evaluate::evaluate(args)?;
            print_text(&downpour_launch::evaluate::describe(&outcome));
            if let Some(out) = &args.split_out {
                print_text(&format!("wrote {}\n", out.display()));
            }
        }
        LaunchCommand::Train(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(async {
                let interrupt = CancellationToken::new();
                downpour_launch::commands::cancel_on_signal(interrupt.clone());
                downpour_launch::launch::train(args, interrupt).await
            })?;
            print_summary(&outcome);
        }
    }
    Ok(())
}

fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let config = BenchConfig::from_args(args)?;
    if args.compose {
        print_text(&downpour_bench::compose::commands(
            &config,
            downpour_bench::machine::cores(),
        ));
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let interrupt = CancellationToken::new();
        downpour_launch::commands::cancel_on_signal(interrupt.clone());
        downpour_bench::run(&config, interrupt, &mut show_progress).await
    })?;
    print_text(&downpour_bench::output::markdown(&outcome.report));
    for f in &outcome.files {
        print_text(&format!("wrote {}\n", f.display()));
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
fn print_summary(outcome: &downpour_launch::launch::TrainOutcome) {
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
    // Two lines, each under 80 columns.
    println!(
        "  {} workers, {} mode, {} updates, {:.0} samples/s",
        r.hardware.worker_processes, r.consistency, f.version, f.samples_per_second
    );
    println!(
        "  {:.2} s wall, {:.2} s training",
        f.wall_seconds, f.training_seconds
    );
    if !r.refused_pushes.is_empty() {
        let reasons: Vec<String> = r
            .refused_pushes
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        println!(
            "  refused pushes (parameters unchanged): {}",
            reasons.join(", ")
        );
    }
    println!("  report:  {}", outcome.report_path.display());
    println!("  weights: {}", r.files.weights.display());
}
