//! Turning arguments into the pieces the library crates take: logging, the store, the
//! server configuration.

use std::sync::Arc;

use anyhow::Context;
use custos_server::ServerConfig;
use custos_store::Store;
use custos_telemetry::{LogFormat, LogSettings};
use secrecy::ExposeSecret;

use crate::cli::{GlobalArgs, LogFormatArg, ServeArgs};

pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned())
}

/// Logging, and trace export when the `OTEL_*` variables ask for it. Keep it until
/// the end of the command and call [`Telemetry::shutdown`], which flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    log: custos_telemetry::LogGuard,
}

impl Telemetry {
    /// Exports what is pending (waiting at most 5 s for the collector), then writes out
    /// the queued log lines, and stops.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!(error = %error, "flushing traces at exit failed");
        }
        drop(self.log);
    }
}

/// Installs logging and, when configured, trace export. Runs within `runtime` (the
/// gRPC exporter keeps its connection on it). `bench_endpoint` replaces the `OTEL_*`
/// configuration with the benchmark's own receiver.
pub fn init_telemetry(
    global: &GlobalArgs,
    runtime: &tokio::runtime::Runtime,
    bench_endpoint: Option<&str>,
) -> Result<Telemetry, String> {
    use custos_telemetry::otel::{OtelSettings, OtlpProtocol, ServiceIdentity};
    let log = LogSettings {
        service: "custos".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        env: global.env.clone(),
        instance_id: instance_id().into(),
        format: match global.log_format {
            LogFormatArg::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => LogFormat::Text,
            LogFormatArg::Auto | LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Text => LogFormat::Text,
        },
        filter: global.log_level.clone(),
    };
    let otel = match bench_endpoint {
        Some(endpoint) => Some(OtelSettings::for_benchmark(endpoint)),
        None => OtelSettings::from_env(|name| std::env::var(name).ok())?,
    };
    let provider = match &otel {
        None => None,
        Some(settings) => {
            let identity = ServiceIdentity {
                name: log.service.clone(),
                version: log.version.clone(),
                instance_id: log.instance_id.clone(),
                env: log.env.clone(),
            };
            // The HTTP exporter's blocking client must be built outside the runtime.
            let _entered = (settings.protocol == OtlpProtocol::Grpc).then(|| runtime.enter());
            Some(custos_telemetry::otel::build_provider(settings, &identity)?)
        }
    };
    let log_guard = custos_telemetry::init_subscriber(&log, provider.as_ref())?;
    if let Some(settings) = &otel {
        tracing::info!(
            protocol = settings.protocol.as_str(),
            endpoint = settings.endpoint.as_str(),
            sampler = settings.sampler_name.as_str(),
            max_queue = settings.max_queue,
            "trace export on"
        );
    }
    Ok(Telemetry { provider, log: log_guard })
}

/// Opens the configured store and applies pending migrations: as the schema's owner
/// (`--migrate-database-url`) when one is named, else through the store's own URL, which
/// must then be able to (a login role that owns nothing cannot: nothing is tried when
/// the schema is current already).
pub async fn open_store(global: &GlobalArgs) -> anyhow::Result<Arc<dyn Store>> {
    let store = connect_store(global).await?;
    let applied = if global.migrate_database_url.is_some() {
        migrate_as_owner(global).await?.0
    } else if store.schema_is_current().await.unwrap_or(false) {
        0
    } else {
        store.migrate().await.context(
            "applying database migrations (a login role that owns nothing cannot: name the schema's owner with \
             --migrate-database-url / CUSTOS_MIGRATE_DATABASE_URL, or run `custos migrate` with it)",
        )?
    };
    tracing::info!(backend = store.backend().as_str(), migrations_applied = applied, "store opened");
    Ok(store)
}

/// Applies pending migrations as the schema's owner: `--migrate-database-url` when set,
/// else the store's URL. Returns how many were applied, and to which backend.
pub async fn migrate_as_owner(global: &GlobalArgs) -> anyhow::Result<(usize, custos_store::Backend)> {
    let owner = global.migrate_database_url.as_ref().or(global.database_url.as_ref());
    let url = owner.map(|u| u.expose_secret().to_owned());
    let store = custos_store::connect(url.as_deref(), &global.data_dir).await.with_context(|| {
        if global.migrate_database_url.is_some() {
            "opening the database named by CUSTOS_MIGRATE_DATABASE_URL".to_owned()
        } else {
            "opening the database to migrate it".to_owned()
        }
    })?;
    let applied = store.migrate().await.context("applying database migrations")?;
    Ok((applied, store.backend()))
}

/// Refuses to serve as a database role that can bypass row-level security, unless
/// allowed (development): then warns loudly, and returns why, for `/health`.
pub async fn check_database_role(store: &dyn Store, allow: bool) -> anyhow::Result<Option<String>> {
    let Some(privileged) = store.privileged_role().await.context("checking the database role")? else {
        return Ok(None);
    };
    if !allow {
        anyhow::bail!(
            "{privileged}, so it can bypass row-level security, custos's second wall between tenants. Serve as a \
             login role that owns nothing: CREATE ROLE custos_login LOGIN PASSWORD '…' IN ROLE custos_app; then \
             CUSTOS_DATABASE_URL names it and CUSTOS_MIGRATE_DATABASE_URL the owner (docs/security/tenancy.md). \
             For development only: --allow-privileged-database-role"
        );
    }
    tracing::warn!(
        role = privileged.as_str(),
        "SERVING AS A DATABASE ROLE THAT CAN BYPASS ROW-LEVEL SECURITY (--allow-privileged-database-role): tenants \
         are walled by the application's checks alone; /health reports database:role at warn"
    );
    Ok(Some(privileged))
}

/// Opens the configured object store. Makes no request (`/health` probes it) unless
/// Object Lock is configured: then the bucket must have it enabled.
pub async fn open_objects(global: &GlobalArgs, serve: &ServeArgs) -> anyhow::Result<custos_store::Objects> {
    let mut objects = custos_store::objects::open(global.object_store_url.as_deref(), &global.data_dir)
        .context("opening the object store named by CUSTOS_OBJECT_STORE_URL (or <data-dir>/objects)")?;
    if let Some(lock) = serve.evidence_object_lock {
        objects = objects.with_object_lock(lock).context("--evidence-object-lock (CUSTOS_EVIDENCE_OBJECT_LOCK)")?;
        objects
            .check_object_lock()
            .await
            .with_context(|| format!("--evidence-object-lock needs Object Lock on {}", objects.location()))?;
    }
    tracing::info!(
        kind = objects.kind().as_str(),
        location = objects.location(),
        object_lock = objects.object_lock().map(|lock| lock.to_string()),
        "object store configured"
    );
    Ok(objects)
}

/// Opens the configured store without migrating it.
pub async fn connect_store(global: &GlobalArgs) -> anyhow::Result<Arc<dyn Store>> {
    let url = global.database_url.as_ref().map(|u| u.expose_secret().to_owned());
    custos_store::connect(url.as_deref(), &global.data_dir).await.with_context(|| match &url {
        Some(_) => "opening the database named by CUSTOS_DATABASE_URL".to_owned(),
        None => format!("opening the SQLite database under {}", global.data_dir.display()),
    })
}

/// Reads pinned TSA certificates (PEM), refusing any that cannot sign time stamps.
pub fn tsa_certificates(path: &std::path::Path) -> anyhow::Result<Vec<custos_ledger::tsa::Certificate>> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading the TSA certificate {}", path.display()))?;
    let certificates = custos_ledger::tsa::parse_certificates(&pem)
        .map_err(|e| anyhow::anyhow!("the TSA certificate {}: {e}", path.display()))?;
    if let Some(problem) = certificates.first().and_then(custos_ledger::tsa::tsa_certificate_problem) {
        anyhow::bail!("the TSA certificate {} cannot sign time stamps: {problem}", path.display());
    }
    Ok(certificates)
}

pub fn server_config(global: &GlobalArgs, serve: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let tsa = match (&serve.tsa_url, &serve.tsa_cert) {
        (Some(url), Some(cert)) => {
            let scheme = url.split_once("://").map(|(scheme, rest)| (scheme, rest.is_empty()));
            anyhow::ensure!(
                matches!(scheme, Some(("http" | "https", false))),
                "--tsa-url must be an http:// or https:// URL, got {url:?}"
            );
            Some(custos_server::evidence::TsaConfig { url: url.clone(), certificates: tsa_certificates(cert)? })
        }
        _ => None,
    };
    Ok(ServerConfig {
        tsa,
        max_body_bytes: serve.max_body_bytes,
        max_concurrent_requests: serve.max_concurrent_requests as usize,
        request_timeout: serve.request_timeout,
        max_batch_records: serve.max_batch_records,
        max_context_bytes: serve.max_context_bytes,
        env: global.env.clone(),
        instance_id: instance_id().into(),
        version: env!("CARGO_PKG_VERSION").into(),
        commit: custos_server::BUILD_COMMIT.into(),
        metrics_namespace: serve.metrics_namespace.clone(),
        metrics_token: serve.metrics_token.as_ref().map(|t| t.expose_secret().to_owned()),
        metrics_series_cap: serve.metrics_series_cap as usize,
        status_title: serve.status_title.clone(),
        status_require_token: serve.status_require_token,
        deployment: global.deployment.clone(),
        signing_key_file: Some(global.signing_key_path()),
        trace_url_template: serve.trace_url_template.clone(),
        audit_retention_days: serve.audit_retention_days,
        evidence_max_artifact_bytes: serve.evidence_max_artifact_bytes,
        features: [
            (
                "otlp_export",
                matches!(custos_telemetry::otel::OtelSettings::from_env(|name| std::env::var(name).ok()), Ok(Some(_))),
            ),
            ("metrics_listener", serve.metrics_listen.is_some()),
            ("metrics_token", serve.metrics_token.is_some()),
            ("status_requires_token", serve.status_require_token),
            ("demo", false),
            ("evidence_timestamps", serve.tsa_url.is_some()),
        ]
        .into_iter()
        .map(|(name, on)| (name.to_owned(), on))
        .collect(),
        quiet_token_ids: Vec::new(),
        privileged_database_role: None,
    })
}
