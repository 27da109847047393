//! Every store call the server makes is timed into
//! `custos_store_operation_duration_seconds{operation}` and runs in a `store` span, in
//! one place, so no handler can forget to.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use custos_ledger::merkle::{Hash, NodeId};
use custos_model::ledger::LogName;
use custos_model::records::{ConnectorSync, Delivery, QueueSnapshot, RuleRun};
use custos_model::status::ComponentStatus;
use custos_model::{Component, FreshnessPolicy, TenantId, Timestamp};
use custos_store::{
    ActionRecords, AppendOutcome, ArtifactRecord, AttestationQuery, AttestationRecord, Backend, BucketRow,
    BundleRecord, ConsoleSession, HourTotals, IncidentRecord, IngestSummary, JobEventOutcome, JobEventRequest,
    JobRecord, KeyOverlap, LastError, LeafRow, LegalHold, LogAppend, LogEntry, LogHead, LogPrune, LogQuery,
    MaintenanceRecord, NewIncidentUpdate, Page, PruneOutcome, PutOutcome, RecordQuery, RollupFamily, SchemaDescription,
    SeriesRow, SigningKeyRecord, StatusChange, StatusScope, Store, StoreResult, Stored, StoredCheckpoint, StoredFlip,
    StoredPing, Tenant, TokenRecord,
};
use custos_telemetry::Metrics;
use tracing::Instrument;

#[derive(Debug)]
pub(crate) struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub(crate) fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let (system, kind) = match self.inner.backend() {
            Backend::Postgres => ("postgresql", "client"),
            Backend::Sqlite => ("sqlite", "internal"),
        };
        let span = tracing::debug_span!(
            "store",
            otel.name = operation,
            otel.kind = kind,
            db.system.name = system,
            db.operation.name = operation,
            operation,
            backend = self.inner.backend().as_str()
        );
        let started = Instant::now();
        let result = call.instrument(span).await;
        self.metrics.observe_store_operation(operation, started.elapsed().as_secs_f64());
        result
    }
}

/// Implements [`Store`] by timing each listed operation around the inner store's.
macro_rules! instrument {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        #[async_trait::async_trait]
        impl Store for InstrumentedStore {
            fn backend(&self) -> Backend {
                self.inner.backend()
            }
            fn set_metric_series_cap(&self, cap: usize) {
                self.inner.set_metric_series_cap(cap)
            }
            fn pool_stats(&self) -> custos_store::PoolStats {
                self.inner.pool_stats()
            }
            fn expected_schema_version(&self) -> i64 {
                self.inner.expected_schema_version()
            }
            $(
                async fn $name(&self, $($arg: $ty),*) -> $ret {
                    self.timed(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

instrument! {
    migrate() -> StoreResult<usize>;
    schema_is_current() -> StoreResult<bool>;
    privileged_role() -> StoreResult<Option<String>>;
    ping() -> StoreResult<()>;
    schema_version() -> StoreResult<i64>;
    describe_schema() -> StoreResult<SchemaDescription>;
    create_tenant(tenant: &Tenant) -> StoreResult<()>;
    tenant(id: &TenantId) -> StoreResult<Option<Tenant>>;
    tenants() -> StoreResult<Vec<Tenant>>;
    create_token(token: &TokenRecord) -> StoreResult<()>;
    token_by_secret_hash(secret_hash: &str) -> StoreResult<Option<TokenRecord>>;
    tokens() -> StoreResult<Vec<TokenRecord>>;
    revoke_token(id: &str, at: Timestamp) -> StoreResult<TokenRecord>;
    create_console_session(session: &ConsoleSession) -> StoreResult<()>;
    console_session(secret_hash: &str) -> StoreResult<Option<(ConsoleSession, TokenRecord)>>;
    end_console_session(secret_hash: &str, at: Timestamp) -> StoreResult<()>;
    put_component(tenant: &TenantId, component: &Component) -> StoreResult<(PutOutcome, Component)>;
    component(tenant: &TenantId, id: &str) -> StoreResult<Option<Component>>;
    components(tenant: &TenantId) -> StoreResult<Vec<Component>>;
    put_freshness_policy(tenant: &TenantId, policy: &FreshnessPolicy) -> StoreResult<()>;
    freshness_policies(tenant: &TenantId) -> StoreResult<Vec<FreshnessPolicy>>;
    last_successful_syncs(tenant: &TenantId, integration_ids: &[String]) -> StoreResult<Vec<(String, Timestamp)>>;
    record_rule_runs(tenant: &TenantId, records: Vec<RuleRun>, received_at: Timestamp) -> StoreResult<IngestSummary>;
    rule_runs_page(tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<RuleRun>>>;
    record_connector_syncs(tenant: &TenantId, records: Vec<ConnectorSync>, received_at: Timestamp) -> StoreResult<IngestSummary>;
    connector_syncs_page(tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<ConnectorSync>>>;
    record_queue_snapshots(tenant: &TenantId, records: Vec<QueueSnapshot>, received_at: Timestamp) -> StoreResult<IngestSummary>;
    queue_snapshots_page(tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<QueueSnapshot>>>;
    record_deliveries(tenant: &TenantId, records: Vec<Delivery>, received_at: Timestamp) -> StoreResult<IngestSummary>;
    deliveries_page(tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<Delivery>>>;
    metric_series(tenant: &TenantId) -> StoreResult<Vec<SeriesRow>>;
    metric_window(tenant: &TenantId, family: RollupFamily, since: Timestamp) -> StoreResult<Vec<SeriesRow>>;
    metric_buckets(tenant: &TenantId, family: RollupFamily, since: Timestamp) -> StoreResult<Vec<BucketRow>>;
    metric_hour_totals(tenant: &TenantId, family: RollupFamily, since: Timestamp) -> StoreResult<Vec<HourTotals>>;
    last_errors(tenant: &TenantId, family: RollupFamily) -> StoreResult<Vec<(String, LastError)>>;
    latest_queue_snapshots(tenant: &TenantId) -> StoreResult<Vec<Stored<QueueSnapshot>>>;
    apply_job_events(tenant: &TenantId, events: Vec<JobEventRequest>) -> StoreResult<Vec<JobEventOutcome>>;
    jobs(tenant: &TenantId) -> StoreResult<Vec<JobRecord>>;
    job(tenant: &TenantId, job_id: &str) -> StoreResult<Option<JobRecord>>;
    job_pings_page(tenant: &TenantId, job_id: &str, query: &RecordQuery) -> StoreResult<Page<StoredPing>>;
    job_flips_page(tenant: &TenantId, job_id: Option<&str>, query: &RecordQuery) -> StoreResult<Page<StoredFlip>>;
    reevaluate_jobs(tenant: &TenantId, now: Timestamp) -> StoreResult<Vec<StoredFlip>>;
    record_status(scope: &StatusScope, observed: &[(String, ComponentStatus)], at: Timestamp) -> StoreResult<usize>;
    status_changes(scope: &StatusScope, since: Timestamp) -> StoreResult<Vec<StatusChange>>;
    create_incident(scope: &StatusScope, incident: &IncidentRecord) -> StoreResult<()>;
    update_incident(scope: &StatusScope, id: &str, update: &NewIncidentUpdate) -> StoreResult<IncidentRecord>;
    incident(scope: &StatusScope, id: &str) -> StoreResult<Option<IncidentRecord>>;
    incidents(scope: &StatusScope, resolved_since: Timestamp) -> StoreResult<Vec<IncidentRecord>>;
    create_maintenance(scope: &StatusScope, window: &MaintenanceRecord) -> StoreResult<()>;
    cancel_maintenance(scope: &StatusScope, id: &str, at: Timestamp) -> StoreResult<()>;
    maintenance_windows(scope: &StatusScope) -> StoreResult<Vec<MaintenanceRecord>>;
    append_log(tenant: &TenantId, log: LogName, records: Vec<LogAppend>, received_at: Timestamp) -> StoreResult<AppendOutcome>;
    log_head(tenant: &TenantId, log: LogName) -> StoreResult<LogHead>;
    log_page(tenant: &TenantId, log: LogName, query: &LogQuery) -> StoreResult<Page<LogEntry>>;
    log_entry(tenant: &TenantId, log: LogName, event_id: &str) -> StoreResult<Option<LogEntry>>;
    log_nodes(tenant: &TenantId, log: LogName, nodes: &[NodeId]) -> StoreResult<Vec<(NodeId, Hash)>>;
    log_leaves(tenant: &TenantId, log: LogName, start: u64, end: u64) -> StoreResult<Vec<LeafRow>>;
    put_checkpoint(tenant: &TenantId, log: LogName, checkpoint: &StoredCheckpoint) -> StoreResult<()>;
    latest_checkpoint(tenant: &TenantId, log: LogName) -> StoreResult<Option<StoredCheckpoint>>;
    checkpoint_at(tenant: &TenantId, log: LogName, size: u64) -> StoreResult<Option<StoredCheckpoint>>;
    log_pruned_before(tenant: &TenantId, log: LogName) -> StoreResult<u64>;
    log_first_received(tenant: &TenantId, log: LogName, from: u64) -> StoreResult<Option<(u64, Timestamp)>>;
    prune_log(tenant: &TenantId, log: LogName, prune: &LogPrune) -> StoreResult<PruneOutcome>;
    create_hold(tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()>;
    release_hold(tenant: &TenantId, id: &str, at: Timestamp, records: &ActionRecords) -> StoreResult<LegalHold>;
    holds(tenant: &TenantId) -> StoreResult<Vec<LegalHold>>;
    put_signing_key(key: &SigningKeyRecord) -> StoreResult<()>;
    signing_keys() -> StoreResult<Vec<SigningKeyRecord>>;
    retire_signing_keys_except(key_id: &str, at: Timestamp, overlap: Option<&KeyOverlap>) -> StoreResult<Vec<SigningKeyRecord>>;
    put_artifact(tenant: &TenantId, artifact: &ArtifactRecord) -> StoreResult<()>;
    artifact(tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<Option<ArtifactRecord>>;
    artifacts(tenant: &TenantId, case_id: &str) -> StoreResult<Vec<ArtifactRecord>>;
    put_bundle(tenant: &TenantId, bundle: &BundleRecord, attestation: &AttestationRecord) -> StoreResult<()>;
    bundle(tenant: &TenantId, bundle_id: &str) -> StoreResult<Option<BundleRecord>>;
    case_bundles(tenant: &TenantId, case_id: &str) -> StoreResult<Vec<BundleRecord>>;
    put_attestation(tenant: &TenantId, attestation: &AttestationRecord) -> StoreResult<()>;
    attestations(tenant: &TenantId, query: &AttestationQuery) -> StoreResult<Vec<AttestationRecord>>;
    create_case_hold(tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()>;
    release_case_hold(tenant: &TenantId, case_id: &str, at: Timestamp, records: &ActionRecords) -> StoreResult<LegalHold>;
    case_holds(tenant: &TenantId, case_id: Option<&str>) -> StoreResult<Vec<LegalHold>>;
    case_held(tenant: &TenantId, case_id: &str) -> StoreResult<bool>;
    set_evidence_retention(tenant: &TenantId, days: Option<u32>, by: &str, at: Timestamp, records: &ActionRecords) -> StoreResult<()>;
    evidence_retention(tenant: &TenantId) -> StoreResult<Option<u32>>;
    expired_evidence(tenant: &TenantId, before: Timestamp) -> StoreResult<custos_store::ExpiredEvidence>;
    delete_bundle(tenant: &TenantId, bundle_id: &str) -> StoreResult<()>;
    delete_artifact(tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<()>;
}
