#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
pub mod evidence;
pub mod jobs;
pub mod ledger;
pub mod objects;
mod postgres;
mod postgres_ledger;
pub mod rollup;
mod schema;
mod sqlite;
mod sqlite_ledger;
pub mod status;
mod table;
pub mod testing;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use custos_ledger::merkle::{Hash, NodeId};
use custos_model::ledger::LogName;
use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun};
use custos_model::status::ComponentStatus;
use custos_model::{
    Component, ComponentKind, Cursor, FreshnessPolicy, FreshnessThresholds, Scope, TenantId, Timestamp,
};

pub use error::{StoreError, StoreResult};
pub use evidence::{ArtifactRecord, AttestationQuery, AttestationRecord, BundleRecord, ExpiredEvidence};
pub use jobs::{JobEventOutcome, JobEventRequest, JobRecord, StoredFlip, StoredPing};
pub use ledger::{
    ActionRecords, AppendOutcome, KeyOverlap, LeafRow, LegalHold, LogAppend, LogEntry, LogHead, LogPrune, LogQuery,
    PruneOutcome, SigningKeyRecord, StoredCheckpoint,
};
pub use objects::Objects;
pub use postgres::{APP_ROLE, PostgresStore};
pub use rollup::{BucketRow, HourTotals, LastError, RollupFamily, SeriesRow, SeriesValues};
pub use schema::{SchemaDescription, TableDescription};
pub use sqlite::{SqliteStore, write_on_this_thread};
pub use status::{
    IncidentRecord, IncidentSource, IncidentUpdate, MaintenanceRecord, NewIncidentUpdate, StatusChange, StatusScope,
};
pub use table::BaselineBatch;

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: Option<String>,
    pub retention_days: i64,
    pub created_at: Timestamp,
}

/// A stored API token: everything but the secret, which is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether the token may be used at `now`: not revoked, not expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// A console login: the cookie's secret is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub secret_hash: String,
    /// The token the session was opened with: it acts with that token's scopes, and
    /// ends when the token is revoked or expires.
    pub token_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was logged out.
    pub ended_at: Option<Timestamp>,
}

impl ConsoleSession {
    /// Whether the session may be used at `now` (its token is checked separately).
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// A database connection pool's state, for `custos_db_pool_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open (idle or in use).
    pub open: u32,
    pub idle: u32,
    /// The most the pool will open.
    pub max: u32,
}

/// What a `put_component` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Updated,
    Unchanged,
}

/// What an ingest call stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSummary {
    /// Records stored by this call.
    pub inserted: usize,
    /// Records already stored with the same id and content; not stored again.
    pub duplicates: usize,
}

/// A newest-first list query: exact-match filters on the record type's filter fields,
/// a half-open `[from, to)` window on its listed-at instant, and a keyset cursor.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    pub filters: Vec<(String, String)>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub after: Option<Cursor>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items may follow.
    pub next_cursor: Option<Cursor>,
}

/// A stored record with what the server added on receipt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stored<T> {
    #[serde(flatten)]
    pub record: T,
    pub received_at: Timestamp,
}

/// Every operation custos performs on its database. Record and component operations
/// are scoped to one tenant; the PostgreSQL backend enforces that scope a second time
/// with row-level security.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    fn backend(&self) -> Backend;

    /// Applies pending migrations; returns how many were applied. Safe to run from
    /// several processes at once.
    async fn migrate(&self) -> StoreResult<usize>;
    /// Whether the schema holds every migration this build knows (nothing to apply).
    async fn schema_is_current(&self) -> StoreResult<bool>;
    /// Why the role this store logs in as could get around row-level security (it is a
    /// superuser, has `BYPASSRLS`, owns custos's tables, or can become a role that
    /// does), or `None` when it cannot. SQLite has no roles: always `None`.
    async fn privileged_role(&self) -> StoreResult<Option<String>>;
    /// A cheap round trip to the database.
    async fn ping(&self) -> StoreResult<()>;
    /// The newest migration applied to the database (0 before any), read through the
    /// same connections the service uses.
    async fn schema_version(&self) -> StoreResult<i64>;
    /// The newest migration this build knows: the database is current when
    /// [`Store::schema_version`] equals it.
    fn expected_schema_version(&self) -> i64;
    /// Tables, columns and indexes, for the schema-equivalence test and diagnostics.
    async fn describe_schema(&self) -> StoreResult<SchemaDescription>;

    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    async fn tenants(&self) -> StoreResult<Vec<Tenant>>;

    async fn create_token(&self, token: &TokenRecord) -> StoreResult<()>;
    async fn token_by_secret_hash(&self, secret_hash: &str) -> StoreResult<Option<TokenRecord>>;
    async fn tokens(&self) -> StoreResult<Vec<TokenRecord>>;
    /// Marks a token revoked at `at`; revoking twice keeps the first time.
    async fn revoke_token(&self, id: &str, at: Timestamp) -> StoreResult<TokenRecord>;

    /// Stores a new console session, and forgets sessions expired before its start.
    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()>;
    /// A session by its secret's hash, with its token (`None`: no such session, or its
    /// token is gone).
    async fn console_session(&self, secret_hash: &str) -> StoreResult<Option<(ConsoleSession, TokenRecord)>>;
    /// Logs a session out at `at` (a second logout keeps the first time; an unknown
    /// session is no error).
    async fn end_console_session(&self, secret_hash: &str, at: Timestamp) -> StoreResult<()>;

    async fn put_component(&self, tenant: &TenantId, component: &Component) -> StoreResult<(PutOutcome, Component)>;
    async fn component(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Component>>;
    async fn components(&self, tenant: &TenantId) -> StoreResult<Vec<Component>>;
    async fn put_freshness_policy(&self, tenant: &TenantId, policy: &FreshnessPolicy) -> StoreResult<()>;
    async fn freshness_policies(&self, tenant: &TenantId) -> StoreResult<Vec<FreshnessPolicy>>;
    /// The finish time of the most recent successful sync of each of `integration_ids`
    /// (absent when there is none).
    async fn last_successful_syncs(
        &self,
        tenant: &TenantId,
        integration_ids: &[String],
    ) -> StoreResult<Vec<(String, Timestamp)>>;

    /// Stores a batch atomically: every record, or none (a conflict rolls back all).
    async fn record_rule_runs(
        &self,
        tenant: &TenantId,
        records: Vec<RuleRun>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary>;
    async fn rule_runs_page(&self, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<RuleRun>>>;
    async fn record_connector_syncs(
        &self,
        tenant: &TenantId,
        records: Vec<ConnectorSync>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary>;
    async fn connector_syncs_page(
        &self,
        tenant: &TenantId,
        query: &RecordQuery,
    ) -> StoreResult<Page<Stored<ConnectorSync>>>;
    async fn record_queue_snapshots(
        &self,
        tenant: &TenantId,
        records: Vec<QueueSnapshot>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary>;
    async fn queue_snapshots_page(
        &self,
        tenant: &TenantId,
        query: &RecordQuery,
    ) -> StoreResult<Page<Stored<QueueSnapshot>>>;
    async fn record_deliveries(
        &self,
        tenant: &TenantId,
        records: Vec<Delivery>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary>;
    async fn deliveries_page(&self, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<Delivery>>>;

    /// Bounds the series each rollup family may hold per tenant (see [`rollup`]);
    /// applies to ingests that start after the call. Default [`rollup::DEFAULT_SERIES_CAP`].
    fn set_metric_series_cap(&self, cap: usize);
    /// The connection pool's state now (no IO).
    fn pool_stats(&self) -> PoolStats;
    /// Every rollup series of a tenant, ordered by family, key and status.
    async fn metric_series(&self, tenant: &TenantId) -> StoreResult<Vec<SeriesRow>>;
    /// A family's hourly rollups from the hour holding `since` on, summed per series
    /// (`first_seen` is not kept per hour and reads 0), ordered by key and status.
    async fn metric_window(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<SeriesRow>>;
    /// A family's hourly rollups from the hour holding `since` on, ordered by hour,
    /// key and status.
    async fn metric_buckets(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<BucketRow>>;
    /// [`Store::metric_buckets`] with counts and sums only, no histogram, in the same
    /// order: for charts of the hours, which need no quantiles.
    async fn metric_hour_totals(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<HourTotals>>;
    /// The latest error of each of a family's keys, ordered by key.
    async fn last_errors(&self, tenant: &TenantId, family: RollupFamily) -> StoreResult<Vec<(String, LastError)>>;
    /// The latest snapshot of each of a tenant's queues, ordered by component id.
    async fn latest_queue_snapshots(&self, tenant: &TenantId) -> StoreResult<Vec<Stored<QueueSnapshot>>>;

    /// Applies pings, pauses and resumes to a tenant's jobs, in order, in one
    /// transaction: one outcome per event (an event naming no scheduled job changes
    /// nothing).
    async fn apply_job_events(
        &self,
        tenant: &TenantId,
        events: Vec<JobEventRequest>,
    ) -> StoreResult<Vec<JobEventOutcome>>;
    /// Every scheduled-job component of a tenant with its state, ordered by id.
    async fn jobs(&self, tenant: &TenantId) -> StoreResult<Vec<JobRecord>>;
    /// One scheduled-job component with its state (`None`: no such job).
    async fn job(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<JobRecord>>;
    /// One job's pings, newest first (`filters` are ignored).
    async fn job_pings_page(
        &self,
        tenant: &TenantId,
        job_id: &str,
        query: &RecordQuery,
    ) -> StoreResult<Page<StoredPing>>;
    /// Status changes, newest first: one job's, or every job's of the tenant.
    async fn job_flips_page(
        &self,
        tenant: &TenantId,
        job_id: Option<&str>,
        query: &RecordQuery,
    ) -> StoreResult<Page<StoredFlip>>;
    /// The monitor's pass: records the flips that time made at `now` (late, down), each
    /// at most once even when several processes run the pass at once.
    async fn reevaluate_jobs(&self, tenant: &TenantId, now: Timestamp) -> StoreResult<Vec<StoredFlip>>;

    /// Records each observed (component, state) that differs from the component's
    /// latest change, at `at`; returns how many changed.
    async fn record_status(
        &self,
        scope: &StatusScope,
        observed: &[(String, ComponentStatus)],
        at: Timestamp,
    ) -> StoreResult<usize>;
    /// Changes at or after `since`, and each component's last change before it, ordered
    /// by component and time: enough to know every state from `since` on.
    async fn status_changes(&self, scope: &StatusScope, since: Timestamp) -> StoreResult<Vec<StatusChange>>;
    /// Stores a new incident with its updates. An automatic incident whose signal
    /// (`auto_key`) already has one open is `AlreadyExists`, however many replicas try.
    async fn create_incident(&self, scope: &StatusScope, incident: &IncidentRecord) -> StoreResult<()>;
    /// Appends an update and sets the incident's status and impact from it.
    async fn update_incident(
        &self,
        scope: &StatusScope,
        id: &str,
        update: &NewIncidentUpdate,
    ) -> StoreResult<IncidentRecord>;
    async fn incident(&self, scope: &StatusScope, id: &str) -> StoreResult<Option<IncidentRecord>>;
    /// Open incidents and those resolved at or after `resolved_since`, newest first,
    /// each with its updates.
    async fn incidents(&self, scope: &StatusScope, resolved_since: Timestamp) -> StoreResult<Vec<IncidentRecord>>;
    async fn create_maintenance(&self, scope: &StatusScope, window: &MaintenanceRecord) -> StoreResult<()>;
    /// Cancels a window (kept, never shown again); `NotFound` when none is live.
    async fn cancel_maintenance(&self, scope: &StatusScope, id: &str, at: Timestamp) -> StoreResult<()>;
    /// Every window not cancelled, oldest first.
    async fn maintenance_windows(&self, scope: &StatusScope) -> StoreResult<Vec<MaintenanceRecord>>;

    /// Appends a batch to one of a tenant's logs, atomically: every new record gets the
    /// next leaf index and its Merkle hashes, or nothing is written. A record whose
    /// `event_id` the log holds with the same bytes is a duplicate (not appended again);
    /// with other bytes, the batch fails with `LogConflict`.
    async fn append_log(
        &self,
        tenant: &TenantId,
        log: LogName,
        records: Vec<LogAppend>,
        received_at: Timestamp,
    ) -> StoreResult<AppendOutcome>;
    /// A log's size and root hash (size 0 and the empty root before any append).
    async fn log_head(&self, tenant: &TenantId, log: LogName) -> StoreResult<LogHead>;
    /// A page of a log's records, newest first by `ts`, then leaf index.
    async fn log_page(&self, tenant: &TenantId, log: LogName, query: &LogQuery) -> StoreResult<Page<LogEntry>>;
    /// One record by its event id (`None`: not in the log, or removed by retention).
    async fn log_entry(&self, tenant: &TenantId, log: LogName, event_id: &str) -> StoreResult<Option<LogEntry>>;
    /// Stored subtree hashes; a node the log has not completed is left out.
    async fn log_nodes(&self, tenant: &TenantId, log: LogName, nodes: &[NodeId]) -> StoreResult<Vec<(NodeId, Hash)>>;
    /// Leaves `start..end` in order, with their stored hashes and records (`None` where
    /// retention removed the record).
    async fn log_leaves(&self, tenant: &TenantId, log: LogName, start: u64, end: u64) -> StoreResult<Vec<LeafRow>>;
    /// Keeps a signed checkpoint (keeping the same one twice is no error).
    async fn put_checkpoint(&self, tenant: &TenantId, log: LogName, checkpoint: &StoredCheckpoint) -> StoreResult<()>;
    /// The newest checkpoint kept: the largest size, then the latest signed.
    async fn latest_checkpoint(&self, tenant: &TenantId, log: LogName) -> StoreResult<Option<StoredCheckpoint>>;
    /// A checkpoint of exactly `size` leaves, the latest signed if there are several.
    async fn checkpoint_at(&self, tenant: &TenantId, log: LogName, size: u64) -> StoreResult<Option<StoredCheckpoint>>;
    /// Leaves below this index have had their records removed by retention (0: none).
    async fn log_pruned_before(&self, tenant: &TenantId, log: LogName) -> StoreResult<u64>;
    /// The first record at or after leaf `from` still held, with when it was received.
    async fn log_first_received(
        &self,
        tenant: &TenantId,
        log: LogName,
        from: u64,
    ) -> StoreResult<Option<(u64, Timestamp)>>;
    /// Removes the records of leaves below `prune.before_index` under a tombstone row,
    /// atomically; nothing while a legal hold of the tenant is active.
    async fn prune_log(&self, tenant: &TenantId, log: LogName, prune: &LogPrune) -> StoreResult<PruneOutcome>;
    /// Places a legal hold with `records` of it, in one transaction (`AlreadyExists` for
    /// an id in use, and nothing recorded).
    async fn create_hold(&self, tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()>;
    /// Releases an active hold with `records` of the release, in one transaction;
    /// `NotFound` when none has the id or it was released. The database refuses a
    /// release whose audit record (`custos.hold.released`, resource the hold's id) is not
    /// in the log, so the release that enables a prune is on the record before it.
    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<LegalHold>;
    /// Every hold of the tenant, newest first.
    async fn holds(&self, tenant: &TenantId) -> StoreResult<Vec<LegalHold>>;

    /// Publishes a checkpoint signing key's public half (publishing the same key again
    /// is no error).
    async fn put_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()>;
    /// Every published signing key, oldest first.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Ends every other key's validity at `at`, so `key_id` is the one current key,
    /// except `overlap`'s key, whose validity ends at `overlap.until`. A window is only
    /// ever shortened: a key already ending before its new end keeps its end. Returns
    /// the keys whose windows changed, as changed.
    async fn retire_signing_keys_except(
        &self,
        key_id: &str,
        at: Timestamp,
        overlap: Option<&KeyOverlap>,
    ) -> StoreResult<Vec<SigningKeyRecord>>;

    /// Records a case artifact whose bytes are stored (`AlreadyExists` when the case
    /// has one by this name).
    async fn put_artifact(&self, tenant: &TenantId, artifact: &ArtifactRecord) -> StoreResult<()>;
    /// A case's artifact by name.
    async fn artifact(&self, tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<Option<ArtifactRecord>>;
    /// A case's artifacts in bytewise name order, at most
    /// [`evidence::MAX_CASE_ARTIFACTS`] + 1 (one more tells the caller there are too many).
    async fn artifacts(&self, tenant: &TenantId, case_id: &str) -> StoreResult<Vec<ArtifactRecord>>;
    /// Records a sealed bundle and its attestation, atomically.
    async fn put_bundle(
        &self,
        tenant: &TenantId,
        bundle: &BundleRecord,
        attestation: &AttestationRecord,
    ) -> StoreResult<()>;
    async fn bundle(&self, tenant: &TenantId, bundle_id: &str) -> StoreResult<Option<BundleRecord>>;
    /// A case's bundles, newest first (at most [`evidence::MAX_LIST`]).
    async fn case_bundles(&self, tenant: &TenantId, case_id: &str) -> StoreResult<Vec<BundleRecord>>;
    async fn put_attestation(&self, tenant: &TenantId, attestation: &AttestationRecord) -> StoreResult<()>;
    /// Attestations matching `query`, newest first.
    async fn attestations(&self, tenant: &TenantId, query: &AttestationQuery) -> StoreResult<Vec<AttestationRecord>>;
    /// Places a hold on a case's evidence, its id the case's (`AlreadyExists` while one
    /// is active).
    async fn create_case_hold(&self, tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()>;
    /// Releases the case's active hold; `NotFound` when there is none.
    async fn release_case_hold(
        &self,
        tenant: &TenantId,
        case_id: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<LegalHold>;
    /// Case holds, newest first, of one case or of all.
    async fn case_holds(&self, tenant: &TenantId, case_id: Option<&str>) -> StoreResult<Vec<LegalHold>>;
    /// Whether a case's evidence is held: by a hold on the case or a tenant-wide legal hold.
    async fn case_held(&self, tenant: &TenantId, case_id: &str) -> StoreResult<bool>;
    /// Sets how many days the tenant's evidence is kept (`None`: forever).
    async fn set_evidence_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        by: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<()>;
    /// The tenant's evidence retention in days; `None`: forever.
    async fn evidence_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>>;
    /// Bundles sealed and uploads received before `before` that no hold keeps.
    async fn expired_evidence(&self, tenant: &TenantId, before: Timestamp) -> StoreResult<ExpiredEvidence>;
    /// Deletes a bundle's row (`NotFound` if gone; refused by the database under hold).
    async fn delete_bundle(&self, tenant: &TenantId, bundle_id: &str) -> StoreResult<()>;
    /// Deletes an upload's row (`NotFound` if gone; refused by the database under hold).
    async fn delete_artifact(&self, tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<()>;
}

/// Routes a record type to its `Store` operations, so code generic over the record
/// type (the ingest and list handlers) reaches the right table.
#[async_trait]
pub trait StoredRecord: IngestRecord {
    async fn record(
        store: &dyn Store,
        tenant: &TenantId,
        records: Vec<Self>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary>;
    async fn page(store: &dyn Store, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<Self>>>;
}

macro_rules! stored_record {
    ($record:ty, $insert:ident, $page:ident) => {
        #[async_trait]
        impl StoredRecord for $record {
            async fn record(
                store: &dyn Store,
                tenant: &TenantId,
                records: Vec<Self>,
                received_at: Timestamp,
            ) -> StoreResult<IngestSummary> {
                store.$insert(tenant, records, received_at).await
            }
            async fn page(
                store: &dyn Store,
                tenant: &TenantId,
                query: &RecordQuery,
            ) -> StoreResult<Page<Stored<Self>>> {
                store.$page(tenant, query).await
            }
        }
    };
}

stored_record!(RuleRun, record_rule_runs, rule_runs_page);
stored_record!(ConnectorSync, record_connector_syncs, connector_syncs_page);
stored_record!(QueueSnapshot, record_queue_snapshots, queue_snapshots_page);
stored_record!(Delivery, record_deliveries, deliveries_page);

/// Opens the store the settings name and applies pending migrations. `database_url`
/// wins when set (`postgres://` or `sqlite://path`); otherwise SQLite at
/// `<data_dir>/custos.db`.
pub async fn open(database_url: Option<&str>, data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    let store = connect(database_url, data_dir).await?;
    store.migrate().await?;
    Ok(store)
}

/// Creates `dir` and its missing parents, readable by the owner only (0700 on Unix): the
/// data directory holds the database, the objects and the signing key. An existing
/// directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Like [`open`], without migrating.
pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(PostgresStore::connect(url).await?)
        }
        Some(url) if url.starts_with("sqlite://") => {
            let path = url.trim_start_matches("sqlite://");
            Arc::new(SqliteStore::open(Path::new(path)).await?)
        }
        Some(url) => {
            let scheme = url.split("://").next().unwrap_or(url);
            return Err(StoreError::Config(format!(
                "unsupported database URL scheme {scheme:?}: use postgres://… or sqlite://path"
            )));
        }
        None => {
            create_private_dir(data_dir).map_err(|source| StoreError::Io {
                context: format!("creating data directory {}", data_dir.display()),
                source,
            })?;
            Arc::new(SqliteStore::open(&data_dir.join("custos.db")).await?)
        }
    };
    Ok(store)
}

/// Parses stored scope strings; a scope this version does not know (written by a newer
/// one) grants nothing and is dropped.
pub(crate) fn parse_scopes(stored: &str) -> Vec<Scope> {
    stored.split_whitespace().filter_map(|s| s.parse().ok()).collect()
}

pub(crate) fn format_scopes(scopes: &[Scope]) -> String {
    scopes.iter().map(Scope::to_string).collect::<Vec<_>>().join(" ")
}

/// The columns of a component row, in the order [`component_from_row`] reads them.
pub(crate) const COMPONENT_COLUMNS: &str = "id, kind, name, provider, green_under_seconds, yellow_under_seconds, \
     schedule_cron, schedule_timezone, schedule_period_seconds, schedule_grace_seconds, created_at_us, updated_at_us";

/// How many columns [`COMPONENT_COLUMNS`] names.
pub(crate) const COMPONENT_COLUMN_COUNT: usize = 12;

/// The values of [`COMPONENT_COLUMNS`] for `component`.
pub(crate) fn component_values(component: &Component) -> Vec<table::Value> {
    use table::Value;
    let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::Text(s.to_owned()));
    let int = |v: Option<i64>| v.map_or(Value::NullInt, Value::Int);
    let schedule = component.schedule.as_ref();
    vec![
        Value::Text(component.id.clone()),
        Value::Text(component.kind.as_str().to_owned()),
        text(component.name.as_deref()),
        text(component.provider.as_deref()),
        int(component.freshness.map(|f| f.green_under_seconds)),
        int(component.freshness.map(|f| f.yellow_under_seconds)),
        text(schedule.and_then(|s| s.cron.as_deref())),
        text(schedule.and_then(|s| s.timezone.as_deref())),
        int(schedule.and_then(|s| s.period_seconds)),
        int(schedule.map(custos_model::jobs::JobSchedule::grace_seconds)),
        Value::Int(component.created_at.as_micros()),
        Value::Int(component.updated_at.as_micros()),
    ]
}

/// Reads [`COMPONENT_COLUMNS`] from the start of `row`.
pub(crate) fn component_from_row(row: &impl table::RowReader) -> StoreResult<Component> {
    let kind = row.text(1)?;
    let schedule = match (row.opt_text(6)?, row.opt_int(8)?) {
        (None, None) => None,
        (cron, period_seconds) => Some(custos_model::jobs::JobSchedule {
            cron,
            timezone: row.opt_text(7)?,
            period_seconds,
            grace_seconds: row.opt_int(9)?,
        }),
    };
    Ok(Component {
        id: row.text(0)?,
        kind: ComponentKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt { what: "component", detail: format!("unknown kind {kind:?}") })?,
        name: row.opt_text(2)?,
        provider: row.opt_text(3)?,
        freshness: thresholds_from(row.opt_int(4)?, row.opt_int(5)?),
        schedule,
        created_at: Timestamp::from_micros(row.int(10)?),
        updated_at: Timestamp::from_micros(row.int(11)?),
    })
}

pub(crate) fn thresholds_from(green: Option<i64>, yellow: Option<i64>) -> Option<FreshnessThresholds> {
    match (green, yellow) {
        (Some(green_under_seconds), Some(yellow_under_seconds)) => {
            Some(FreshnessThresholds { green_under_seconds, yellow_under_seconds })
        }
        _ => None,
    }
}
