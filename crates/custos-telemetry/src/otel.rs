//! OpenTelemetry trace export over OTLP, configured by the standard `OTEL_*` variables
//! and off unless an OTLP endpoint is set.
//!
//! `tracing` spans become OpenTelemetry spans through `tracing-opentelemetry`. Between
//! the SDK and the exporter sit two pieces of ours:
//!
//! - [`GuardedProcessor`] scrubs every string attribute and event before a span leaves
//!   the process (the same rules as the log layer), and bounds the spans waiting for
//!   export: beyond the bound a finished span is dropped and counted, so a collector
//!   that is down or black-holing costs a fixed amount of memory and no request waits.
//! - [`CountingExporter`] counts what was exported and what failed.
//!
//! The counts are process-wide ([`SPAN_STATS`]) and exposed as
//! `custos_trace_spans_{exported,dropped,export_failed}_total`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};

use crate::scrub;

/// Spans waiting for export at most, by default (`OTEL_BSP_MAX_QUEUE_SIZE` sets it).
pub const DEFAULT_MAX_QUEUE: usize = 2048;

/// The span queue of `custos bench ingest --tracing`.
pub const BENCH_MAX_QUEUE: usize = 65_536;

/// Process-wide span export counts.
#[derive(Debug, Default)]
pub struct SpanStats {
    pub pending: AtomicU64,
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub export_failed: AtomicU64,
}

pub static SPAN_STATS: SpanStats = SpanStats {
    pending: AtomicU64::new(0),
    exported: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    export_failed: AtomicU64::new(0),
};

static EXPORT_ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns span creation for export on or off while the process runs (it starts on).
/// For `custos bench ingest --tracing`, which measures both in one process; off, the
/// OpenTelemetry layer sees no span at all.
pub fn set_export_enabled(on: bool) {
    EXPORT_ENABLED.store(on, Ordering::Relaxed);
}

pub fn export_enabled() -> bool {
    EXPORT_ENABLED.load(Ordering::Relaxed)
}

static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Exports every finished span still waiting and returns once the receiver answered
/// (or the export failed; the counts say which). Blocks: call it off the async
/// runtime. A no-op without trace export. `custos bench ingest --tracing` calls it so
/// that the traced half of a measurement includes getting its spans out.
pub fn flush_pending_spans() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

static LAYER_BUILT: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported: an OTLP layer is installed and export is on. Work
/// that would make spans only for export (one per ping in a batch, say) asks this first.
pub fn exporting() -> bool {
    LAYER_BUILT.load(Ordering::Relaxed) && export_enabled()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Trace export settings read from the environment.
#[derive(Debug, Clone)]
pub struct OtelSettings {
    pub protocol: OtlpProtocol,
    /// The endpoint variable that was set, for the startup log line.
    pub endpoint: String,
    pub sampler: Sampler,
    /// `OTEL_TRACES_SAMPLER[:ARG]` as understood, for the startup log line.
    pub sampler_name: String,
    /// Whether `service.name` comes from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_name_from_env: bool,
    pub max_queue: usize,
    /// How long to wait between exports (`OTEL_BSP_SCHEDULE_DELAY`, ms; default 5000).
    pub schedule_delay: Duration,
    /// A full trace endpoint URL given in code (the benchmark's receiver); otherwise the
    /// exporter reads the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables itself.
    pub explicit_endpoint: Option<String>,
}

impl OtelSettings {
    /// Reads the standard variables through `var`. `Ok(None)` when export is off: no
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` nor `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`. A value that cannot
    /// be understood is an error naming the variable, never a silent fallback.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match set("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => return Err(format!("OTEL_TRACES_EXPORTER={other:?} is not supported: use otlp or none")),
        }
        let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let protocol_var = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol_var.as_deref() {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use grpc or http/protobuf"
                ));
            }
        };
        let (sampler, sampler_name) =
            parse_sampler(set("OTEL_TRACES_SAMPLER"), set("OTEL_TRACES_SAMPLER_ARG").as_deref())?;
        let number = |name: &str, default: u64| -> Result<u64, String> {
            set(name).map_or(Ok(default), |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}={v:?} must be a positive integer"))
            })
        };
        let service_name_from_env = set("OTEL_SERVICE_NAME").is_some()
            || set("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
        Ok(Some(Self {
            protocol,
            endpoint,
            sampler,
            sampler_name,
            service_name_from_env,
            max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE as u64)? as usize,
            schedule_delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            explicit_endpoint: None,
        }))
    }

    /// Export over HTTP/protobuf to `base_url` (`http://host:port`), every span sampled:
    /// what `custos bench ingest --tracing` measures. The queue holds a whole traced
    /// window of the bench (a few thousand requests of two or three spans each), so no
    /// span is dropped and the measurement pays for exporting every one.
    pub fn for_benchmark(base_url: &str) -> Self {
        Self {
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: base_url.to_owned(),
            sampler: Sampler::AlwaysOn,
            sampler_name: "always_on".to_owned(),
            service_name_from_env: false,
            max_queue: BENCH_MAX_QUEUE,
            schedule_delay: Duration::from_secs(1),
            explicit_endpoint: Some(format!("{}/v1/traces", base_url.trim_end_matches('/'))),
        }
    }
}

/// `OTEL_TRACES_SAMPLER` and `_ARG` as the specification defines them; the default is
/// `parentbased_always_on` (sample everything unless the caller said not to).
fn parse_sampler(name: Option<String>, arg: Option<&str>) -> Result<(Sampler, String), String> {
    let ratio = || -> Result<f64, String> {
        match arg {
            None => Ok(1.0),
            Some(a) => a
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={a:?} must be a number from 0 to 1")),
        }
    };
    let name = name.unwrap_or_else(|| "parentbased_always_on".to_owned());
    let sampler = match name.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?))),
        other => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other:?} is not supported: use always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    };
    let described = if name.ends_with("traceidratio") { format!("{name}:{}", ratio()?) } else { name };
    Ok((sampler, described))
}

/// Identity of this process on its spans (`service.*`, `deployment.environment.name`).
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    pub name: String,
    pub version: String,
    pub instance_id: String,
    pub env: String,
}

/// Builds the tracer provider. Call inside a tokio runtime context (the gRPC exporter
/// keeps its connection on it); the HTTP exporter runs its own blocking client.
pub fn build_provider(settings: &OtelSettings, identity: &ServiceIdentity) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let mut resource = Resource::builder().with_attributes([
        KeyValue::new("service.version", identity.version.clone()),
        KeyValue::new("service.instance.id", identity.instance_id.clone()),
        KeyValue::new("deployment.environment.name", identity.env.clone()),
    ]);
    if !settings.service_name_from_env {
        resource = resource.with_service_name(identity.name.clone());
    }
    let batch = BatchConfigBuilder::default()
        // The guard below keeps at most `max_queue` spans pending; the SDK's queue has
        // room for them, so it never drops silently on its own.
        .with_max_queue_size(settings.max_queue + 64)
        .with_max_export_batch_size(1024.min(settings.max_queue))
        .with_scheduled_delay(settings.schedule_delay)
        .build();
    let inner = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &settings.explicit_endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            let exporter = builder.build().map_err(|e| format!("configuring the OTLP gRPC exporter: {e}"))?;
            BatchSpanProcessor::builder(CountingExporter(exporter)).with_batch_config(batch).build()
        }
        OtlpProtocol::HttpProtobuf => {
            let mut builder =
                opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
            if let Some(endpoint) = &settings.explicit_endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            let exporter = builder.build().map_err(|e| format!("configuring the OTLP HTTP exporter: {e}"))?;
            BatchSpanProcessor::builder(CountingExporter(exporter)).with_batch_config(batch).build()
        }
    };
    let processor = GuardedProcessor { inner, max_pending: settings.max_queue as u64 };
    let provider = SdkTracerProvider::builder()
        .with_sampler(settings.sampler.clone())
        .with_resource(resource.build())
        .with_span_processor(processor)
        .build();
    // The first provider of the process is the one flushes go to (there is one).
    let _ = PROVIDER.set(provider.clone());
    Ok(provider)
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    LAYER_BUILT.store(true, Ordering::Relaxed);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("custos"))
        // Log events stay in the log stream; spans carry only errors as events.
        .with_error_events_to_status(true)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Nothing reads `opentelemetry::Context::current()`: trace context is taken
        // from the span explicitly, so entering a span need not swap contexts.
        .with_context_activation(false)
}

/// Scrubs spans and bounds how many wait for export; see the module docs.
#[derive(Debug)]
pub struct GuardedProcessor<P> {
    inner: P,
    max_pending: u64,
}

impl<P: SpanProcessor> SpanProcessor for GuardedProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        let pending = SPAN_STATS.pending.fetch_add(1, Ordering::AcqRel);
        if pending >= self.max_pending {
            SPAN_STATS.pending.fetch_sub(1, Ordering::AcqRel);
            SPAN_STATS.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        scrub_span(&mut span);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn scrub_value(key: &str, value: &mut Value) {
    if let Value::String(s) = value {
        if scrub::is_sensitive_key(key) {
            *value = Value::from(scrub::REDACTED);
        } else if let std::borrow::Cow::Owned(clean) = scrub::scrub(s.as_str()) {
            *value = Value::from(clean);
        }
    }
}

/// Span fields that exist for the log lines and repeat what the span itself says
/// (its ids, `http.request.method`, `http.route`, `http.response.status_code`, its
/// duration); not exported.
const LOG_ONLY_FIELDS: [&str; 6] = ["trace_id", "span_id", "method", "route", "status", "duration_ms"];

/// Attributes whose values custos builds from fixed vocabularies or validated ids, never
/// from free text: not worth a scan. Everything else is scrubbed.
const CONSTRAINED_FIELDS: [&str; 12] = [
    "http.request.method",
    "http.route",
    "actor",
    "tenant_id",
    "custos.auth.outcome",
    "db.system.name",
    "db.operation.name",
    "operation",
    "backend",
    "client.address",
    "worker",
    "error_code",
];

fn scrub_span(span: &mut SpanData) {
    span.attributes.retain(|kv| !LOG_ONLY_FIELDS.contains(&kv.key.as_str()));
    for kv in &mut span.attributes {
        if !CONSTRAINED_FIELDS.contains(&kv.key.as_str()) {
            scrub_value(kv.key.as_str(), &mut kv.value);
        }
    }
    for event in &mut span.events.events {
        if let std::borrow::Cow::Owned(clean) = scrub::scrub(&event.name) {
            event.name = clean.into();
        }
        for kv in &mut event.attributes {
            scrub_value(kv.key.as_str(), &mut kv.value);
        }
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status
        && let std::borrow::Cow::Owned(clean) = scrub::scrub(description)
    {
        *description = clean.into();
    }
}

/// Counts exported and failed spans; releases them from the pending bound.
#[derive(Debug)]
pub struct CountingExporter<E>(E);

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len() as u64;
        // Saturating: spans queued before the counts existed never push it below zero.
        let _ = SPAN_STATS.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| Some(p.saturating_sub(n)));
        let export = self.0.export(batch);
        async move {
            let result = export.await;
            let counter = if result.is_ok() { &SPAN_STATS.exported } else { &SPAN_STATS.export_failed };
            counter.fetch_add(n, Ordering::Relaxed);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert!(OtelSettings::from_env(env(&[])).unwrap().is_none());
        assert!(OtelSettings::from_env(env(&[("OTEL_SERVICE_NAME", "x")])).unwrap().is_none());
        let on = OtelSettings::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).unwrap().unwrap();
        assert_eq!(on.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(on.sampler_name, "parentbased_always_on");
        let disabled = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]);
        assert!(OtelSettings::from_env(disabled).unwrap().is_none());
        let none = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_TRACES_EXPORTER", "none")]);
        assert!(OtelSettings::from_env(none).unwrap().is_none());
    }

    #[test]
    fn protocol_sampler_and_bad_values() {
        let base = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317")];
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            OtelSettings::from_env(env(&pairs))
        };
        let grpc = with(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
        assert_eq!(grpc.sampler_name, "parentbased_traceidratio:0.25");
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ] {
            let err = with(&[(var, value)]).unwrap_err();
            assert!(err.contains(var), "{err}");
        }
        let err = with(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
        let named = with(&[("OTEL_RESOURCE_ATTRIBUTES", "team=sec,service.name=custos-eu")]).unwrap().unwrap();
        assert!(named.service_name_from_env);
    }

    #[test]
    fn spans_are_scrubbed_before_export() {
        let mut value = Value::from("user alice@example.com sent Bearer abc.def.ghi");
        scrub_value("error_message", &mut value);
        let text = value.as_str();
        assert!(!text.contains("alice@example.com") && !text.contains("abc.def.ghi"), "{text}");
        let mut secret = Value::from("hunter2");
        scrub_value("password", &mut secret);
        assert_eq!(secret.as_str(), scrub::REDACTED);
    }
}
