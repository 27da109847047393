#![doc = include_str!("../README.md")]
// `unsafe` is denied workspace-wide and allowed only in `allocator`.
// Commands print their results on standard output; that is their job here, and only here.
#![allow(clippy::print_stdout)]

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parses the command line, sets up logging, runs the command inside its span, and
/// turns the outcome into an exit code (0 success, 1 failure, 2 usage).
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `bench ingest --tracing` exports to a receiver of its own, on a port bound now.
    let bench_receiver = match &cli.command {
        Command::Bench(cli::BenchCommand::Ingest(args)) if args.tracing => {
            match std::net::TcpListener::bind("127.0.0.1:0") {
                Ok(listener) => Some(listener),
                Err(error) => {
                    eprintln!("error: binding the benchmark's trace receiver: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let bench_endpoint = bench_receiver.as_ref().and_then(|l| l.local_addr().ok()).map(|a| format!("http://{a}"));
    if let Some(listener) = bench_receiver {
        commands::bench::set_trace_receiver(listener);
    }
    let telemetry = match settings::init_telemetry(&cli.global, &runtime, bench_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let code = run_command(cli, &runtime);
    telemetry.shutdown();
    code
}

fn run_command(cli: Cli, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let name = cli.command.name();
    let span = tracing::info_span!(
        "command",
        command = name,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        error_message = tracing::field::Empty
    );
    custos_telemetry::trace_context::start_trace(&span);
    let started = std::time::Instant::now();
    let result =
        runtime.block_on(tracing::Instrument::instrument(commands::dispatch(cli.global, cli.command), span.clone()));
    span.record("duration_ms", (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0);
    let _entered = span.enter();
    match result {
        Ok(()) => {
            tracing::info!(outcome = "success", "command finished");
            ExitCode::SUCCESS
        }
        Err(error) => {
            // Printed outside the log layer, so scrubbed here too (a URL with a password).
            let message = custos_telemetry::scrub::scrub(&format!("{error:#}")).into_owned();
            span.record("error_message", message.as_str());
            tracing::error!(outcome = "failure", "command finished");
            eprintln!("error: {message}");
            if error.chain().any(|e| e.is::<commands::UsageError>()) { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Demo(_) => "demo",
            Command::Migrate => "migrate",
            Command::Tenants(_) => "tenants",
            Command::Tokens(_) => "tokens",
            Command::Incidents(_) => "incidents",
            Command::Obs(_) => "obs",
            Command::Keys(_) => "keys",
            Command::Forensic(_) => "forensic",
            Command::Bench(_) => "bench",
            Command::Config(_) => "config",
        }
    }
}
