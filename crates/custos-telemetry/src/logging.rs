//! JSON log lines with fixed fields, and the scrubbing every line goes through.
//!
//! Each line is one JSON object. The fixed fields come first and are always present
//! (`null` when unknown), so log pipelines can rely on the shape; fields recorded on
//! enclosing spans (a request's `request_id`, `tenant_id`, …) are inherited by every
//! event inside them. Every name and value passes through [`crate::scrub`] on its way
//! out: this layer is the one place that decides what may be written.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value as Json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::scrub::{REDACTED, is_sensitive_key, scrub};

/// The fields every line carries, in this order.
pub const FIXED_FIELDS: [&str; 17] = [
    "ts",
    "level",
    "service",
    "version",
    "env",
    "instance_id",
    "tenant_id",
    "actor",
    "route",
    "method",
    "status",
    "duration_ms",
    "request_id",
    "trace_id",
    "span_id",
    "error_code",
    "error_message",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default; for machines).
    Json,
    /// One human-readable line per event (for a terminal): time, level, message, then
    /// the non-empty fields as `key=value`. Scrubbed exactly like JSON.
    Text,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub service: String,
    pub version: String,
    pub env: String,
    pub instance_id: String,
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `custos=debug,sqlx=warn`.
    pub filter: String,
}

/// Lines that may wait for the log writer thread before logging callers wait in turn:
/// a slow stderr slows custos down rather than losing lines (logs are never sampled).
pub const LOG_QUEUE_LINES: usize = 65_536;

/// Keeps the log writer thread alive; dropping it writes out every queued line.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

/// Installs the log layer on stderr and, when `traces` is given, the OpenTelemetry
/// layer exporting spans through it.
///
/// Lines go to stderr from a writer thread of their own, in buffered writes: a request
/// formats its line and queues it, and never waits on the pipe behind stderr. The queue
/// is lossless ([`LOG_QUEUE_LINES`]); lines still queued when the process is killed
/// outright are lost, which is why the guard is held until `main` returns. Each has its own filter: the log filter
/// (`CUSTOS_LOG`) does not decide which spans are traced. Traces get custos's spans at
/// every level (requests, store calls, commands) and only warnings and errors as span
/// events; other crates' spans (the exporter's own HTTP client among them) never.
pub fn init_subscriber(
    settings: &LogSettings,
    traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Result<LogGuard, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::prelude::*;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&settings.filter).map_err(|e| format!("invalid log filter: {e}"))?;
    let otel = traces.map(|provider| {
        crate::otel::layer(provider).with_filter(tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
            crate::otel::export_enabled()
                && if meta.is_span() {
                    meta.target().starts_with("custos")
                } else {
                    *meta.level() <= tracing::Level::WARN
                }
        }))
    });
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("custos-log-writer")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    tracing_subscriber::registry()
        .with(json_layer(settings, stderr).with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LogGuard { _writer: guard })
}

/// The log layer writing to `writer` in `settings.format`; tests pass a buffer.
pub fn json_layer<W>(settings: &LogSettings, writer: W) -> JsonLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    JsonLayer {
        service: settings.service.clone(),
        version: settings.version.clone(),
        env: settings.env.clone(),
        instance_id: settings.instance_id.clone(),
        format: settings.format,
        writer,
    }
}

#[derive(Debug)]
pub struct JsonLayer<W> {
    service: String,
    version: String,
    env: String,
    instance_id: String,
    format: LogFormat,
    writer: W,
}

/// Fields recorded on a span, already scrubbed. Names are the call sites' own
/// (`tracing` field names are static).
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, Json)>);

impl SpanFields {
    fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    fn set(&mut self, key: &'static str, value: Json) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
}

struct Visitor<'a>(&'a mut SpanFields);

impl Visitor<'_> {
    fn put(&mut self, field: &Field, value: Json) {
        let name = field.name();
        let value = if is_sensitive_key(name) { Json::String(REDACTED.into()) } else { value };
        self.0.set(name, value);
    }

    fn put_text(&mut self, field: &Field, text: &str) {
        self.put(field, Json::String(scrub(text).into_owned()));
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_text(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put_text(field, &format!("{value:?}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.put_text(field, &text);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Json::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Json::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Json::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Json::from(value));
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Visitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let now = time::OffsetDateTime::now_utc();
        let mut line = SpanFields::with_capacity(FIXED_FIELDS.len() + 8);
        line.set("ts", Json::String(now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()));
        line.set("level", Json::String(event.metadata().level().as_str().to_ascii_lowercase()));
        line.set("service", Json::String(self.service.clone()));
        line.set("version", Json::String(self.version.clone()));
        line.set("env", Json::String(self.env.clone()));
        line.set("instance_id", Json::String(self.instance_id.clone()));
        for name in &FIXED_FIELDS[6..] {
            line.set(name, Json::Null);
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    // Dotted names (`otel.name`, `http.route`) are trace attributes;
                    // log lines have their own fields for the same facts.
                    for (key, value) in fields.0.iter().filter(|(key, _)| !key.contains('.')) {
                        line.set(key, value.clone());
                    }
                }
            }
        }
        event.record(&mut Visitor(&mut line));
        line.set("target", Json::String(event.metadata().target().to_owned()));

        let out = match self.format {
            LogFormat::Json => render_json(&line),
            LogFormat::Text => render_text(&line).into_bytes(),
        };
        let _ = self.writer.make_writer().write_all(&out);
    }
}

/// An in-memory log destination, for tests that read what was logged.
#[derive(Debug, Clone, Default)]
pub struct CaptureWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CaptureWriter {
    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CaptureWriter {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn render_json(line: &SpanFields) -> Vec<u8> {
    let mut out = Vec::with_capacity(640);
    out.push(b'{');
    for (i, (key, value)) in line.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serializing strings and JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, value);
    }
    out.extend_from_slice(b"}\n");
    out
}

/// `ts LEVEL message key=value …`, leaving out empty fields and the per-process ones.
fn render_text(line: &SpanFields) -> String {
    let get = |key: &str| line.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let text = |value: Option<&Json>| match value {
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut out = format!("{} {:>5} {}", text(get("ts")), text(get("level")).to_uppercase(), text(get("message")));
    for (key, value) in &line.0 {
        let skip =
            matches!(*key, "ts" | "level" | "message" | "service" | "version" | "env" | "instance_id" | "target");
        if skip || value.is_null() {
            continue;
        }
        let _ = write!(
            out,
            " {key}={}",
            match value {
                Json::String(s) if !s.contains(' ') => s.clone(),
                other => other.to_string(),
            }
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::prelude::*;

    use super::*;

    fn capture(f: impl FnOnce()) -> Vec<serde_json::Map<String, Json>> {
        capture_raw(f)
            .iter()
            .map(|line| serde_json::from_str::<Json>(line).unwrap().as_object().unwrap().clone())
            .collect()
    }

    fn capture_raw(f: impl FnOnce()) -> Vec<String> {
        capture_format(LogFormat::Json, f)
    }

    fn capture_format(format: LogFormat, f: impl FnOnce()) -> Vec<String> {
        let buffer = CaptureWriter::default();
        let settings = LogSettings {
            service: "custos".into(),
            version: "1.2.3".into(),
            env: "test".into(),
            instance_id: "i-1".into(),
            format,
            filter: "trace".into(),
        };
        let subscriber = tracing_subscriber::registry().with(json_layer(&settings, buffer.clone()));
        tracing::subscriber::with_default(subscriber, f);
        buffer.contents().lines().map(str::to_owned).collect()
    }

    #[test]
    fn every_line_has_the_fixed_fields_in_order_and_inherits_span_fields() {
        let raw = capture_raw(|| {
            let span = tracing::info_span!("request", request_id = "r-1", tenant_id = tracing::field::Empty);
            let _guard = span.enter();
            span.record("tenant_id", "acme");
            tracing::info!(status = 201, "request finished");
        });
        let positions: Vec<usize> =
            FIXED_FIELDS.iter().map(|f| raw[0].find(&format!("\"{f}\":")).expect("fixed field present")).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "fixed fields out of order: {}", raw[0]);
        let line: serde_json::Map<String, Json> = serde_json::from_str(&raw[0]).unwrap();
        assert_eq!(line["service"], "custos");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["tenant_id"], "acme");
        assert_eq!(line["status"], 201);
        assert_eq!(line["message"], "request finished");
        assert_eq!(line["error_code"], Json::Null);
    }

    #[test]
    fn secrets_and_personal_data_never_reach_the_output() {
        let secret = "cst_q9Xz4Jt2LmN8vB3kR7wY1pD6sF0hG5aE9cU2iO4tZ8x";
        let lines = capture(|| {
            let span = tracing::info_span!("request", authorization = %format!("Bearer {secret}"));
            let _guard = span.enter();
            tracing::warn!(token = secret, user = "alice@example.com", "login by bob@example.org with {secret}");
            tracing::error!(error = %format!("connect postgres://custos:hunter2@db/custos failed"), "store down");
        });
        let text = serde_json::to_string(&lines).unwrap();
        for leaked in [secret, "alice@example.com", "bob@example.org", "hunter2"] {
            assert!(!text.contains(leaked), "{leaked} leaked into {text}");
        }
        assert_eq!(lines[0]["authorization"], REDACTED);
        assert_eq!(lines[0]["token"], REDACTED);
        assert_eq!(lines[0]["user"], "[redacted-email]");
        assert!(lines[0]["message"].as_str().unwrap().contains("cst_[redacted]"));
    }

    #[test]
    fn text_lines_are_readable_and_scrubbed_the_same_way() {
        let secret = "cst_q9Xz4Jt2LmN8vB3kR7wY1pD6sF0hG5aE9cU2iO4tZ8x";
        let lines = capture_format(LogFormat::Text, || {
            let span = tracing::info_span!("request", route = "/v1/x", status = tracing::field::Empty);
            let _guard = span.enter();
            tracing::warn!(token = secret, user = "alice@example.com", "denied {secret}");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert!(line.contains(" WARN denied cst_[redacted]"), "{line}");
        assert!(
            line.contains("route=/v1/x") && line.contains("token=[redacted]") && line.contains("user=[redacted-email]"),
            "{line}"
        );
        assert!(!line.contains(secret) && !line.contains("alice@") && !line.contains("status="), "{line}");
    }
}
