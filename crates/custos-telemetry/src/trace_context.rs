//! W3C Trace Context (`traceparent`): accept a caller's trace, or start one.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// This hop's span id.
    pub span_id: [u8; 8],
    /// The caller's span id, when the trace came from outside.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the trace in a valid `traceparent` header (version 00, or a later
    /// version read as 00 as the spec requires), or starts a new sampled trace.
    pub fn from_traceparent(header: Option<&str>) -> Self {
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => {
                Self { trace_id, span_id: random_nonzero(), parent_span_id: Some(parent), sampled: flags & 1 == 1 }
            }
            None => Self { trace_id: random_nonzero(), span_id: random_nonzero(), parent_span_id: None, sampled: true },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }

    /// The `traceparent` naming this hop, for responses and outbound calls.
    pub fn traceparent(&self) -> String {
        self.to_string()
    }
}

/// Continues the caller's trace on `span`: when trace export is on, the span becomes
/// the child of the caller's (`traceparent`, with its `tracestate`) and the returned
/// ids are the exported span's own; otherwise they are generated here. Either way the
/// result is what the request's log lines and its response `traceparent` carry.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let ours = TraceContext::from_traceparent(traceparent);
    if let Some(parent) = ours.parent_span_id {
        let state = tracestate.and_then(|s| s.parse::<TraceState>().ok()).unwrap_or_default();
        let flags = if ours.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let remote =
            SpanContext::new(TraceId::from_bytes(ours.trace_id), SpanId::from_bytes(parent), flags, true, state);
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to parent.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let exported = cx.span().span_context().clone();
    if exported.is_valid() {
        TraceContext {
            trace_id: exported.trace_id().to_bytes(),
            span_id: exported.span_id().to_bytes(),
            parent_span_id: ours.parent_span_id,
            sampled: exported.is_sampled(),
        }
    } else {
        ours
    }
}

/// Starts a trace at `span` (a command, a worker iteration: work no caller asked for)
/// and records its ids in the span's `trace_id` and `span_id` fields, which the span
/// must declare, so its log lines carry them.
pub fn start_trace(span: &tracing::Span) -> TraceContext {
    let trace = continue_trace(span, None, None);
    span.record("trace_id", trace.trace_id_hex());
    span.record("span_id", trace.span_id_hex());
    trace
}

/// The root span of one piece of a background worker's work (`phase`: `iteration`,
/// `seed`, …), named `<worker> <phase>`, with its own trace started. Record `records`
/// on it when known.
pub fn worker_span(worker: &str, phase: &str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "worker",
        otel.name = %format!("{worker} {phase}"),
        worker,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        records = tracing::field::Empty,
    );
    start_trace(&span);
    span
}

/// Links `span` to the span `trace` names: for work done on behalf of requests that
/// did not wait in its trace (a batch of pings, say). No-op without trace export.
pub fn link_to(span: &tracing::Span, trace: &TraceContext) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.add_link(remote_span_context(trace));
}

/// The OpenTelemetry span context of the span `trace` names, as seen from elsewhere.
fn remote_span_context(trace: &TraceContext) -> opentelemetry::trace::SpanContext {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let flags = if trace.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.span_id),
        flags,
        true,
        TraceState::default(),
    )
}

/// The span of work a request handed to a background task (a ping given to the ping
/// writer), named `<worker> process`, of kind `consumer`: a child of the request's span
/// `from`, so the request's trace shows when the task took the work up and finished it.
/// `None` unless spans are being exported and `from` is sampled: with no one to see
/// the span, it is not made.
pub fn handed_work_span(worker: &str, from: &TraceContext) -> Option<tracing::Span> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if !from.sampled || !crate::otel::exporting() {
        return None;
    }
    let span = tracing::info_span!(
        parent: None,
        "handed work",
        otel.name = %format!("{worker} process"),
        otel.kind = "consumer",
        worker,
    );
    let parent = opentelemetry::Context::new().with_remote_span_context(remote_span_context(from));
    let _ = span.set_parent(parent);
    Some(span)
}

/// Links `span` to `target` (both exported spans; a no-op otherwise): a handed-off
/// piece of work to the batch that stored it, say.
pub fn link_spans(span: &tracing::Span, target: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let cx = target.context();
    let target = cx.span().span_context().clone();
    if target.is_valid() {
        span.add_link(target);
    }
}

/// A span for an outbound HTTP call (kind `client`, named after the method), child of
/// the current span. Record `http.response.status_code` on it when the answer comes.
pub fn client_span(method: &str, url: &str) -> tracing::Span {
    let (address, port) = server_address(url);
    tracing::info_span!(
        "http client",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        url.full = url,
        server.address = address,
        server.port = port,
        http.response.status_code = tracing::field::Empty,
    )
}

fn server_address(url: &str) -> (&str, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.ends_with(']') {
        return (host_port, None);
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (host_port, None),
    }
}

/// The `traceparent` (and `tracestate`, when there is one) that continue `span`'s
/// trace in an outbound request. Empty while trace export is off.
pub fn outbound_headers(span: &tracing::Span) -> Vec<(&'static str, String)> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    if !span_context.is_valid() {
        return Vec::new();
    }
    let this_hop = TraceContext {
        trace_id: span_context.trace_id().to_bytes(),
        span_id: span_context.span_id().to_bytes(),
        parent_span_id: None,
        sampled: span_context.is_sampled(),
    };
    let mut headers = vec![("traceparent", this_hop.traceparent())];
    let state = span_context.trace_state().header();
    if !state.is_empty() {
        headers.push(("tracestate", state));
    }
    headers
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", self.trace_id_hex(), self.span_id_hex(), u8::from(self.sampled))
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let header = header.trim();
    let mut parts = header.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let lower_hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower_hex(version, 2)
        || version == "ff"
        || !lower_hex(trace_id, 32)
        || !lower_hex(parent_id, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four parts; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let mut trace = [0u8; 16];
    let mut parent = [0u8; 8];
    hex::decode_to_slice(trace_id, &mut trace).ok()?;
    hex::decode_to_slice(parent_id, &mut parent).ok()?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, u8::from_str_radix(flags, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_of_a_url() {
        assert_eq!(server_address("http://127.0.0.1:8080/v1/x?y=1"), ("127.0.0.1", Some(8080)));
        assert_eq!(server_address("https://user:pw@siem.example/api"), ("siem.example", None));
        assert_eq!(server_address("http://[::1]:9/x"), ("[::1]", Some(9)));
        assert_eq!(server_address("http://[::1]/x"), ("[::1]", None));
    }

    #[test]
    fn no_outbound_headers_without_trace_export() {
        assert!(outbound_headers(&tracing::Span::none()).is_empty());
    }

    #[test]
    fn continues_a_valid_trace() {
        let ctx = TraceContext::from_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert_ne!(ctx.span_id_hex(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
        assert!(ctx.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn starts_a_new_trace_on_invalid_input() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let ctx = TraceContext::from_traceparent(Some(bad));
            assert_eq!(ctx.parent_span_id, None, "{bad}");
        }
        // A future version with extra fields is read as version 00.
        let ctx = TraceContext::from_traceparent(Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what"));
        assert!(ctx.parent_span_id.is_some());
        assert!(!ctx.sampled);
    }
}
