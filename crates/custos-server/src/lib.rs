#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod auth;
mod body;
pub mod capsules;
mod console;
pub mod error;
pub mod evidence;
pub mod health;
mod instrumented_store;
pub mod jobs;
pub mod keys;
pub mod ledger;
mod observe;
mod openapi;
mod pages;
mod platform_metrics;
mod routes;
pub mod status;
#[doc(hidden)]
pub mod testing;
mod workers;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use custos_model::TenantId;
use custos_store::Store;
use custos_telemetry::Metrics;
use tokio::net::TcpListener;

pub use error::{ApiError, ErrorCode};
pub use openapi::{openapi_document, status_page_schema};
pub use workers::Workers;

/// Limits and identity of a running server. Every bound here is documented in
/// `docs/api.md` and tested.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most records in one NDJSON body (413 beyond).
    pub max_batch_records: usize,
    /// Largest serialized rule-run `context` kept whole; larger ones are truncated.
    pub max_context_bytes: usize,
    /// Deployment name in logs (`env` field).
    pub env: String,
    /// This process's id in logs (`instance_id` field).
    pub instance_id: String,
    pub version: String,
    /// The git commit of this build (`custos_build_info`).
    pub commit: String,
    /// Prefix of every custos metric family (`custos_http_requests_total`).
    pub metrics_namespace: String,
    /// When set, `/metrics` requires `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    /// Most series per tenant in each platform rollup family; new label sets beyond it
    /// fold into an `other` series.
    pub metrics_series_cap: usize,
    /// The status page's title.
    pub status_title: String,
    /// When set, `/status`, `/status.json` and the badge require a token that reads at
    /// least one tenant; otherwise the platform view is public.
    pub status_require_token: bool,
    /// What this deployment has turned on, shown on the status page (`otlp_export`).
    pub features: std::collections::BTreeMap<String, bool>,
    /// Names this deployment in every log's origin (`<deployment>/tenants/<t>/<log>`);
    /// it must never change once checkpoints exist.
    pub deployment: String,
    /// The checkpoint signing key's file; without one, checkpoints and proofs answer 503.
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Days audit records are kept (at least [`ledger::MIN_AUDIT_RETENTION_DAYS`]); the
    /// timeline keeps each tenant's `retention_days`.
    pub audit_retention_days: u32,
    /// A template of links to the trace backend: `{trace_id}` is replaced
    /// (`http://jaeger:16686/trace/{trace_id}`).
    pub trace_url_template: Option<String>,
    /// Largest case artifact accepted, in bytes (413 beyond).
    pub evidence_max_artifact_bytes: u64,
    /// An RFC 3161 time-stamping authority that stamps every bundle's Merkle root.
    pub tsa: Option<evidence::TsaConfig>,
    /// Requests made with these tokens (ids) log their end at debug, not info: the demo's
    /// simulator, whose traffic would otherwise bury the terminal.
    pub quiet_token_ids: Vec<String>,
    /// Most requests served at once; beyond it a request is answered 503 at once
    /// (`Retry-After: 1`), not queued.
    pub max_concurrent_requests: usize,
    /// Longest a request may take to answer (its head; streamed bodies go on), except
    /// evidence uploads and sealing: then 503, and its work is stopped.
    pub request_timeout: std::time::Duration,
    /// Set when the server was allowed to start on a database role that can bypass
    /// row-level security (`--allow-privileged-database-role`): why it can. `/health`
    /// warns while it is set.
    pub privileged_database_role: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_batch_records: 50_000,
            max_context_bytes: custos_model::records::DEFAULT_MAX_CONTEXT_BYTES,
            env: "dev".into(),
            instance_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: BUILD_COMMIT.into(),
            metrics_namespace: "custos".into(),
            metrics_token: None,
            metrics_series_cap: custos_store::rollup::DEFAULT_SERIES_CAP,
            status_title: "custos status".into(),
            status_require_token: false,
            features: std::collections::BTreeMap::new(),
            deployment: DEFAULT_DEPLOYMENT.into(),
            signing_key_file: None,
            audit_retention_days: ledger::MIN_AUDIT_RETENTION_DAYS,
            trace_url_template: None,
            evidence_max_artifact_bytes: evidence::DEFAULT_MAX_ARTIFACT_BYTES,
            tsa: None,
            quiet_token_ids: Vec::new(),
            privileged_database_role: None,
            max_concurrent_requests: 1024,
            request_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The deployment name when none is configured.
pub const DEFAULT_DEPLOYMENT: &str = "custos.local";

/// The git commit this binary was built from (`unknown` outside a checkout).
pub const BUILD_COMMIT: &str = env!("CUSTOS_BUILD_COMMIT");

/// What every handler can reach: one pointer, since axum clones it several times for
/// every request (each clone of a struct of `Arc`s would touch every counter).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    /// Tenants known to exist. Tenants are never deleted, so a positive answer can be
    /// kept; a miss always asks the store (a tenant created by the CLI appears at once).
    known_tenants: RwLock<HashSet<TenantId>>,
    /// The platform families of the latest scrape and when they were derived. One scrape
    /// at a time derives them, and a scrape within a second of the last reuses them, so
    /// a scrape flood reads the store at most once a second.
    pub(crate) platform_scrape: tokio::sync::Mutex<Option<(std::time::Instant, custos_telemetry::ConstFamilies)>>,
    /// This process's background workers and their heartbeats (read by `/health`).
    pub workers: Workers,
    /// Set when shutdown begins: readiness answers 503 so load balancers stop sending.
    draining: std::sync::atomic::AtomicBool,
    /// Where ping handlers hand their pings to be stored in batches.
    pub(crate) pings: jobs::PingWriters,
    /// Tokens recently read from the store (see `auth::TOKEN_CACHE_TTL`).
    pub(crate) tokens: auth::TokenCache,
    /// The object store, when this process has one (`serve` and `demo` always do).
    pub objects: Option<custos_store::Objects>,
    /// The object store prober's latest result (read by `/health`).
    pub(crate) object_probe: health::ProbeSlot,
    /// What this process answered, per surface, for the status evaluator.
    pub(crate) requests: status::RequestTally,
    /// The tenant logs' origins and signing key.
    pub ledger: ledger::Ledger,
    /// Refused requests audited this minute, per tenant.
    pub(crate) refusals: ledger::RefusalBudget,
    /// One permit per request being served (`--max-concurrent-requests`).
    pub(crate) request_slots: Arc<tokio::sync::Semaphore>,
    /// The public status page's platform part and when it was built (see
    /// `routes::status_page::PLATFORM_PAGE_TTL`).
    pub(crate) status_page: tokio::sync::Mutex<Option<(std::time::Instant, routes::status_page::StatusPage)>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        let metrics = Arc::new(Metrics::new(&config.metrics_namespace, &config.version, &config.commit));
        store.set_metric_series_cap(config.metrics_series_cap);
        let ledger = ledger::Ledger::new(config.deployment.clone(), config.signing_key_file.clone());
        let store = instrumented_store::InstrumentedStore::wrap(store, metrics.clone());
        let request_slots = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests.max(1)));
        Self(Arc::new(Shared {
            store,
            config: Arc::new(config),
            metrics: metrics.clone(),
            known_tenants: RwLock::default(),
            platform_scrape: tokio::sync::Mutex::default(),
            workers: Workers::new(metrics),
            draining: std::sync::atomic::AtomicBool::default(),
            pings: jobs::PingWriters::default(),
            tokens: auth::TokenCache::default(),
            objects: None,
            object_probe: health::ProbeSlot::default(),
            requests: status::RequestTally::default(),
            ledger,
            refusals: ledger::RefusalBudget::default(),
            request_slots,
            status_page: tokio::sync::Mutex::default(),
        }))
    }

    /// Adds the object store; `/health` reports it once [`health::spawn_object_probe`] runs.
    /// A step of building the state, before anything holds a clone of it.
    ///
    /// # Panics
    ///
    /// When the state has already been cloned.
    pub fn with_objects(mut self, objects: custos_store::Objects) -> Self {
        let observer = Arc::new(ObjectMetrics(self.metrics.clone()));
        Arc::get_mut(&mut self.0).expect("the object store is added before the state is shared").objects =
            Some(objects.observed(observer));
        self
    }

    /// Marks the process as shutting down: `/health/readiness` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) async fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, ApiError> {
        if self.known_tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(tenant) {
            return Ok(true);
        }
        let exists = self.store.tenant(tenant).await?.is_some();
        if exists {
            self.known_tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(tenant.clone());
        }
        Ok(exists)
    }
}

/// The complete router: API, platform endpoints and the OpenAPI document, wrapped in
/// the instrumentation every request goes through.
pub fn router(state: AppState) -> Router {
    let (api, _) = openapi::api_router().split_for_parts();
    api.merge(console::router())
        .fallback(routes::platform::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// Only `/metrics`, for `--metrics-listen`: a port that can be exposed to a scraper
/// without exposing the API.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(routes::platform::metrics_on_own_port))
        .fallback(routes::platform::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then drains in-flight
/// requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves any of this crate's routers (see [`router`], [`metrics_router`]).
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Times every object store request into
/// `custos_object_store_operation_duration_seconds{backend,operation,outcome}`.
#[derive(Debug)]
struct ObjectMetrics(Arc<custos_telemetry::Metrics>);

impl custos_store::objects::ObjectsObserver for ObjectMetrics {
    fn observe(&self, backend: &'static str, operation: &'static str, outcome: &'static str, seconds: f64) {
        self.0.observe_object_operation(backend, operation, outcome, seconds);
    }
}
