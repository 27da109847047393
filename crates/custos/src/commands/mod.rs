//! One module per command; [`dispatch`] routes to them.

pub mod admin;
pub mod bench;
pub mod bench_evidence;
pub mod bench_timeline;
pub mod config;
pub mod forensic;
pub mod forensic_bundle;
pub mod forensic_evidence;
pub mod incidents;
pub mod keys;
pub mod obs;
pub mod serve;

use crate::cli::{Command, GlobalArgs};

/// A mistake of the caller's (an argument, an unreadable input) rather than a finding:
/// the command exits 2, not 1.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub async fn dispatch(global: GlobalArgs, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(&global, &args).await,
        Command::Demo(args) => crate::demo::run(&global, &args).await,
        Command::Migrate => admin::migrate(&global).await,
        Command::Tenants(command) => admin::tenants(&global, command).await,
        Command::Tokens(command) => admin::tokens(&global, command).await,
        Command::Incidents(args) => incidents::run(&args).await,
        Command::Obs(args) => obs::run(&args).await,
        Command::Keys(command) => keys::run(&global, command).await,
        Command::Forensic(args) => forensic::run(&global, &args).await,
        Command::Bench(command) => bench::run(&global, command).await,
        Command::Config(command) => config::run(command),
    }
}

/// An outbound request in a client span of its own, carrying the span's trace context
/// (`traceparent`): how the CLI and the demo call a server.
pub(crate) fn traced(
    request: reqwest::RequestBuilder,
    method: &str,
    url: &str,
) -> (reqwest::RequestBuilder, tracing::Span) {
    let (request, span, _) = traced_with_id(request, method, url);
    (request, span)
}

/// [`traced`], also returning the request's trace id. Without trace export there is no
/// span context to carry, so a fresh (unsampled) trace context is sent instead: the
/// server's logs and records still carry the id, for copy-paste from the CLI's output.
pub(crate) fn traced_with_id(
    mut request: reqwest::RequestBuilder,
    method: &str,
    url: &str,
) -> (reqwest::RequestBuilder, tracing::Span, String) {
    let span = custos_telemetry::trace_context::client_span(method, url);
    let mut headers = custos_telemetry::trace_context::outbound_headers(&span);
    if headers.is_empty() {
        let context = custos_telemetry::TraceContext {
            trace_id: rand::random(),
            span_id: rand::random(),
            parent_span_id: None,
            sampled: false,
        };
        headers.push(("traceparent", context.traceparent()));
    }
    let trace_id = headers[0].1.split('-').nth(1).unwrap_or_default().to_owned();
    for (name, value) in headers {
        request = request.header(name, value);
    }
    (request, span, trace_id)
}
