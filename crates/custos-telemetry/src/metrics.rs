//! custos's own metrics: its golden signals in one prometheus-client registry, exposed
//! as OpenMetrics (with exemplars linking histogram buckets to traces) or as the classic
//! Prometheus text format that every scraper and `promtool` understand.
//!
//! Label values are bounded by construction: routes are templates, never raw paths;
//! kinds, outcomes and reasons are fixed vocabularies.

use std::fmt::Write as _;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::families::ConstFamilies;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/v1/tenants/{tenant}/rule-runs`), `unmatched` otherwise.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// `rule_run`, `connector_sync`, `queue_snapshot`, `delivery`.
    pub kind: String,
    /// `inserted`, `duplicate` or `rejected`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectOperationLabels {
    /// `local` or `s3`.
    pub backend: String,
    pub operation: String,
    /// `ok`, `not_found`, `exists` or `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// The tenant named in the path; empty when the call was refused before the
    /// tenant was established (so refused calls cannot mint series).
    pub tenant: String,
    /// The scope the route requires (`ingest:write`, `obs:read`, `admin`).
    pub scope: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// The wire format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// `text/plain; version=0.0.4`: what Prometheus asks for by default; no exemplars.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: with exemplars.
    OpenMetrics,
}

impl ExpositionFormat {
    /// The format a scraper asks for in `Accept`.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => ExpositionFormat::OpenMetrics,
            _ => ExpositionFormat::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            ExpositionFormat::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Request durations from 1 ms to about 33 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_duration: Family<HttpLabels, HistogramWithExemplars<TraceExemplar>>,
    pub http_in_flight: Gauge,
    pub ingest_records: Family<IngestLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub http_requests_shed: Family<ReasonLabels, Counter>,
    pub store_operation_duration: Family<OperationLabels, Histogram>,
    pub object_store_operation_duration: Family<ObjectOperationLabels, Histogram>,
    pub api_token_invocations: Family<InvocationLabels, Counter>,
    pub worker_loop_duration: Family<WorkerLabels, Histogram>,
    pub worker_last_run: Family<WorkerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Time the latest scrape spent deriving the platform families from the store.
    pub platform_collection_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub platform_collection_errors: Counter,
    /// Families labelled by tenant, served only to scrapers allowed to see every tenant.
    tenant_registry: Registry,
    /// What a scrape that may not see them gets instead: a gauge saying so.
    withheld_registry: Registry,
    namespace: String,
}

/// What one scrape may see.
#[derive(Debug)]
pub enum Exposure {
    /// custos's own golden signals only, and these families derived at scrape time that
    /// name no tenant (the connection pool's): nothing names a tenant. A gauge
    /// `<namespace>_metrics_tenant_families_withheld` says what is missing and why.
    OwnOnly(ConstFamilies),
    /// Everything: custos's own families, the tenant-labelled ones, and these families
    /// derived at scrape time.
    Everything(ConstFamilies),
}

impl Metrics {
    /// A registry whose families are named `<namespace>_…`; process metrics keep their
    /// standard `process_…` names.
    pub fn new(namespace: &str, version: &str, commit: &str) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector { started: SystemTime::now() }));
        let own = registry.sub_registry_with_prefix(namespace);
        own.register_collector(Box::new(SpanExportCollector));

        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: version.into(), commit: commit.into() }).set(1);
        own.register("build_info", "The running build: always 1, with its version and commit as labels", build_info);

        let http_requests = Family::<HttpLabels, Counter>::default();
        own.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<HttpLabels, HistogramWithExemplars<TraceExemplar>>::new_with_constructor(|| {
                HistogramWithExemplars::new(duration_buckets())
            });
        own.register(
            "http_request_duration_seconds",
            "Time from receiving a request to answering it; exemplars carry the trace id of sampled requests",
            http_request_duration.clone(),
        );
        let http_in_flight = Gauge::default();
        own.register("http_requests_in_flight", "HTTP requests being served now", http_in_flight.clone());
        let ingest_records = Family::<IngestLabels, Counter>::default();
        own.register(
            "ingest_records",
            "Reported records by kind and outcome (inserted, duplicate re-send, rejected with their body)",
            ingest_records.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        own.register(
            "auth_failures",
            "Requests refused by authentication or authorization, by reason",
            auth_failures.clone(),
        );
        let http_requests_shed = Family::<ReasonLabels, Counter>::default();
        own.register(
            "http_requests_shed",
            "Requests answered 503 unserved, by reason: overloaded (--max-concurrent-requests) or timeout \
             (--request-timeout)",
            http_requests_shed.clone(),
        );
        let store_operation_duration =
            Family::<OperationLabels, Histogram>::new_with_constructor(|| Histogram::new(duration_buckets()));
        own.register(
            "store_operation_duration_seconds",
            "Time spent in store operations, by operation",
            store_operation_duration.clone(),
        );
        let object_store_operation_duration =
            Family::<ObjectOperationLabels, Histogram>::new_with_constructor(|| Histogram::new(duration_buckets()));
        own.register(
            "object_store_operation_duration_seconds",
            "Time spent in object store requests, by backend, operation and outcome",
            object_store_operation_duration.clone(),
        );

        let mut withheld_registry = Registry::with_prefix(namespace);
        let withheld = Gauge::<i64>::default();
        withheld.set(1);
        withheld_registry.register(
            "metrics_tenant_families_withheld",
            "1: this scrape carries custos's own signals only; the families labelled by tenant need the metrics \
             token (--metrics-token), a token reading every tenant, or the --metrics-listen port",
            withheld,
        );
        let mut tenant_registry = Registry::with_prefix(namespace);
        let api_token_invocations = Family::<InvocationLabels, Counter>::default();
        tenant_registry.register(
            "api_token_invocations",
            "Tenant API calls made with a token, by tenant, required scope and response status",
            api_token_invocations.clone(),
        );
        let worker_loop_duration =
            Family::<WorkerLabels, Histogram>::new_with_constructor(|| Histogram::new(duration_buckets()));
        own.register(
            "worker_loop_duration_seconds",
            "Time one iteration of a background worker took, by worker",
            worker_loop_duration.clone(),
        );
        let worker_last_run = Family::<WorkerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        own.register(
            "worker_last_run_timestamp_seconds",
            "When a background worker last finished an iteration (Unix time), by worker",
            worker_last_run.clone(),
        );
        let platform_collection_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        own.register(
            "metrics_collection_duration_seconds",
            "Time the latest scrape spent deriving the platform families from the store",
            platform_collection_seconds.clone(),
        );
        let platform_collection_errors = Counter::default();
        own.register(
            "metrics_collection_errors",
            "Scrapes whose platform families could not be read from the store (custos's own families were still served)",
            platform_collection_errors.clone(),
        );

        Self {
            registry,
            tenant_registry,
            withheld_registry,
            api_token_invocations,
            worker_loop_duration,
            worker_last_run,
            platform_collection_seconds,
            platform_collection_errors,
            namespace: namespace.to_owned(),
            http_requests,
            http_request_duration,
            http_in_flight,
            ingest_records,
            auth_failures,
            http_requests_shed,
            store_operation_duration,
            object_store_operation_duration,
        }
    }

    /// Records one answered request.
    pub fn observe_request(&self, labels: &HttpLabels, seconds: f64, trace_id: Option<String>) {
        self.http_requests.get_or_create_owned(labels).inc();
        let histogram = self.http_request_duration.get_or_create_owned(labels);
        histogram.observe(seconds, trace_id.map(|trace_id| TraceExemplar { trace_id }), None);
    }

    pub fn count_records(&self, kind: &str, outcome: &str, count: u64) {
        if count > 0 {
            self.ingest_records
                .get_or_create_owned(&IngestLabels { kind: kind.into(), outcome: outcome.into() })
                .inc_by(count);
        }
    }

    /// Counts a request answered 503 without being served (`overloaded`, `timeout`).
    pub fn count_shed(&self, reason: &str) {
        self.http_requests_shed.get_or_create_owned(&ReasonLabels { reason: reason.into() }).inc();
    }

    pub fn count_auth_failure(&self, reason: &str) {
        self.auth_failures.get_or_create_owned(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// Records one finished object store request.
    pub fn observe_object_operation(&self, backend: &str, operation: &str, outcome: &str, seconds: f64) {
        let labels = ObjectOperationLabels {
            backend: backend.to_owned(),
            operation: operation.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.object_store_operation_duration.get_or_create_owned(&labels).observe(seconds);
    }

    pub fn observe_store_operation(&self, operation: &str, seconds: f64) {
        self.store_operation_duration
            .get_or_create_owned(&OperationLabels { operation: operation.into() })
            .observe(seconds);
    }

    /// Records one finished iteration of a background worker.
    pub fn observe_worker_iteration(&self, worker: &str, seconds: f64) {
        let labels = WorkerLabels { worker: worker.to_owned() };
        self.worker_loop_duration.get_or_create_owned(&labels).observe(seconds);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
        self.worker_last_run.get_or_create_owned(&labels).set(now);
    }

    pub fn count_invocation(&self, labels: &InvocationLabels) {
        self.api_token_invocations.get_or_create_owned(labels).inc();
    }

    /// Every current value, tenant-labelled families included, in `format`.
    pub fn render(&self, format: ExpositionFormat) -> String {
        self.render_with(format, Exposure::Everything(ConstFamilies::default()))
    }

    /// The registry's current values as `exposure` allows, in `format`.
    pub fn render_with(&self, format: ExpositionFormat, exposure: Exposure) -> String {
        let mut openmetrics = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut openmetrics, &self.registry)
            .expect("writing to a String cannot fail");
        let mut append = |registry: &Registry| {
            let mut more = String::new();
            prometheus_client::encoding::text::encode(&mut more, registry).expect("writing to a String cannot fail");
            // Both end with the single `# EOF` OpenMetrics allows.
            openmetrics.truncate(openmetrics.len() - EOF.len());
            openmetrics.push_str(&more);
        };
        match exposure {
            Exposure::OwnOnly(extra) => {
                append(&self.withheld_registry);
                if !extra.0.is_empty() {
                    let mut registry = Registry::with_prefix(&self.namespace);
                    registry.register_collector(Box::new(extra));
                    append(&registry);
                }
            }
            Exposure::Everything(extra) => {
                append(&self.tenant_registry);
                if !extra.0.is_empty() {
                    let mut registry = Registry::with_prefix(&self.namespace);
                    registry.register_collector(Box::new(extra));
                    append(&registry);
                }
            }
        }
        match format {
            ExpositionFormat::OpenMetrics => openmetrics,
            ExpositionFormat::Prometheus => openmetrics_to_prometheus(&openmetrics),
        }
    }
}

const EOF: &str = "# EOF\n";

/// Rewrites OpenMetrics text as the classic Prometheus text format (0.0.4): counters'
/// `HELP`/`TYPE` lines name the `_total` series, `unknown` becomes `untyped`, and
/// exemplars, `# UNIT` and `# EOF` are dropped.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_owned(), "untyped"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_owned(), other),
            };
            if let Some((_, help)) = pending_help.take() {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            continue;
        }
        // A sample: cut its exemplar (` # {labels} value [timestamp]`).
        let sample = match line.find(" # {") {
            Some(index) => &line[..index],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// Trace export counts ([`crate::otel::SPAN_STATS`]); all zero while export is off.
#[derive(Debug)]
struct SpanExportCollector;

impl Collector for SpanExportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &crate::otel::SPAN_STATS;
        for (name, help, value) in [
            ("trace_spans_exported", "Finished spans the OTLP exporter delivered", &stats.exported),
            (
                "trace_spans_dropped",
                "Finished spans dropped because the export queue was full (collector down or slow)",
                &stats.dropped,
            ),
            ("trace_spans_export_failed", "Finished spans whose OTLP export failed", &stats.export_failed),
        ] {
            let metric = ConstCounter::new(value.load(Relaxed));
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let pending = ConstGauge::new(stats.pending.load(Relaxed) as i64);
        pending.encode(encoder.encode_descriptor(
            "trace_spans_pending",
            "Finished spans waiting for export (bounded by OTEL_BSP_MAX_QUEUE_SIZE)",
            None,
            pending.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Standard process metrics, read from /proc at each scrape (Linux; elsewhere they are
/// left out).
#[derive(Debug)]
struct ProcessCollector {
    started: SystemTime,
}

/// Clock ticks per second in /proc/self/stat: USER_HZ, 100 on every mainstream Linux.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu_seconds) = process_cpu_seconds() {
            let metric = ConstCounter::new(cpu_seconds);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                metric.metric_type(),
            )?)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| -> Option<f64> {
            status
                .lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
                .map(|k| k * 1024.0)
        };
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory size in bytes", kib("VmRSS:")),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", kib("VmSize:")),
            ("process_open_fds", "Number of open file descriptors", open_fds()),
            ("process_max_fds", "Maximum number of open file descriptors", max_fds()),
        ] {
            if let Some(value) = value {
                let metric = ConstGauge::new(value);
                metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
            }
        }
        let start = self.started.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
        let metric = ConstGauge::new(start);
        metric.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            metric.metric_type(),
        )?)?;
        Ok(())
    }
}

/// CPU time this process has used so far (user and system, every thread), from
/// /proc/self/stat; `None` where there is no /proc (not Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS_PER_SECOND)
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metrics {
        let metrics = Metrics::new("custos", "1.2.3", "abc123");
        let labels = HttpLabels { method: "POST".into(), route: "/v1/tenants/{tenant}/rule-runs".into(), status: 201 };
        metrics.observe_request(&labels, 0.0042, Some("4bf92f3577b34da6a3ce929d0e0e4736".into()));
        metrics.count_records("rule_run", "inserted", 10);
        metrics.count_auth_failure("invalid_token");
        metrics
    }

    #[test]
    fn openmetrics_carries_exemplars_and_eof() {
        let text = sample().render(ExpositionFormat::OpenMetrics);
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE custos_http_requests counter"));
        assert!(
            text.contains(
                r#"custos_http_requests_total{method="POST",route="/v1/tenants/{tenant}/rule-runs",status="201"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.0042"#), "{text}");
        assert!(text.contains(r#"custos_build_info{version="1.2.3",commit="abc123"} 1"#));
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }

    #[test]
    fn the_classic_format_has_no_openmetrics_syntax() {
        let text = sample().render(ExpositionFormat::Prometheus);
        assert!(!text.contains("# EOF") && !text.contains(" # {") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# TYPE custos_http_requests_total counter"), "{text}");
        assert!(text.contains("# HELP custos_ingest_records_total Reported records"), "{text}");
        assert!(text.contains(r#"custos_ingest_records_total{kind="rule_run",outcome="inserted"} 10"#), "{text}");
        assert!(text.contains("# TYPE custos_http_request_duration_seconds histogram"));
    }

    #[test]
    fn converter_handles_each_type() {
        let om = "# HELP a_events Events.\n# TYPE a_events counter\na_events_total 3 # {trace_id=\"x\"} 1.0\n# HELP b Thing.\n# TYPE b unknown\nb 1\n# UNIT c_seconds seconds\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP a_events_total Events.\n# TYPE a_events_total counter\na_events_total 3\n# HELP b Thing.\n# TYPE b untyped\nb 1\n"
        );
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(ExpositionFormat::negotiate(None), ExpositionFormat::Prometheus);
        assert_eq!(
            ExpositionFormat::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            ExpositionFormat::OpenMetrics
        );
        assert_eq!(ExpositionFormat::negotiate(Some("text/plain")), ExpositionFormat::Prometheus);
    }
}
