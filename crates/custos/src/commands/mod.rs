//! One module per command; [`dispatch`] routes to them.

pub mod admin;
pub mod bench;
pub mod config;
pub mod incidents;
pub mod serve;

use crate::cli::{Command, GlobalArgs};

pub async fn dispatch(global: GlobalArgs, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(&global, &args).await,
        Command::Demo(args) => crate::demo::run(&global, &args).await,
        Command::Migrate => admin::migrate(&global).await,
        Command::Tenants(command) => admin::tenants(&global, command).await,
        Command::Tokens(command) => admin::tokens(&global, command).await,
        Command::Incidents(args) => incidents::run(&args).await,
        Command::Bench(command) => bench::run(&global, command).await,
        Command::Config(command) => config::run(command),
    }
}

/// An outbound request in a client span of its own, carrying the span's trace context
/// (`traceparent`): how the CLI and the demo call a server.
pub(crate) fn traced(
    mut request: reqwest::RequestBuilder,
    method: &str,
    url: &str,
) -> (reqwest::RequestBuilder, tracing::Span) {
    let span = custos_telemetry::trace_context::client_span(method, url);
    for (name, value) in custos_telemetry::trace_context::outbound_headers(&span) {
        request = request.header(name, value);
    }
    (request, span)
}
