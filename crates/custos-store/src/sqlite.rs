//! The SQLite backend: the embedded default.
//!
//! One writer connection behind a mutex (SQLite has one writer at a time anyway) and a
//! pool of reader connections, all in WAL mode so readers never wait for the writer.
//! Every call runs on tokio's blocking pool. Other processes (the CLI while the server
//! runs) share the file safely: writes take the database lock with `BEGIN IMMEDIATE`
//! and wait up to the busy timeout for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use custos_ledger::merkle::{Hash, NodeId};
use custos_model::ledger::LogName;
use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun};
use custos_model::status::ComponentStatus;
use custos_model::{Component, FreshnessPolicy, TenantId, Timestamp};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, ToSql, TransactionBehavior, params};

use crate::error::{SqliteContext, StoreError, StoreResult};
use crate::evidence::{self, ArtifactRecord, AttestationQuery, AttestationRecord, BundleRecord, ExpiredEvidence};
use crate::jobs::{self, JobEventOutcome, JobEventRequest, JobRecord, StoredFlip, StoredPing};
use crate::ledger::{
    ActionRecords, AppendOutcome, KeyOverlap, LeafRow, LegalHold, LogAppend, LogEntry, LogHead, LogPrune, LogQuery,
    PruneOutcome, SigningKeyRecord, StoredCheckpoint,
};
use crate::rollup::{self, BucketRow, HourTotals, LastError, Rollup, RollupFamily, RollupItem, SeriesRow};
use crate::schema::{Migration, SchemaDescription, TableDescription};
use crate::sqlite_ledger;
use crate::status::{
    self, IncidentRecord, IncidentUpdate, MaintenanceRecord, NewIncidentUpdate, StatusChange, StatusScope,
};
use crate::table::{self, BaselineBatch, Dialect, EncodedRecord, TableSpec, Value};
use crate::{
    Backend, COMPONENT_COLUMN_COUNT, COMPONENT_COLUMNS, ConsoleSession, IngestSummary, Page, PutOutcome, RecordQuery,
    Store, Stored, Tenant, TokenRecord, format_scopes, parse_scopes,
};

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/sqlite/0001_initial.sql") },
    Migration { version: 2, name: "metric_rollups", sql: include_str!("../migrations/sqlite/0002_metric_rollups.sql") },
    Migration { version: 3, name: "scheduled_jobs", sql: include_str!("../migrations/sqlite/0003_scheduled_jobs.sql") },
    Migration { version: 4, name: "status_page", sql: include_str!("../migrations/sqlite/0004_status_page.sql") },
    Migration { version: 5, name: "console", sql: include_str!("../migrations/sqlite/0005_console.sql") },
    Migration { version: 6, name: "update_room", sql: include_str!("../migrations/sqlite/0006_update_room.sql") },
    Migration { version: 7, name: "ledger", sql: include_str!("../migrations/sqlite/0007_ledger.sql") },
    Migration { version: 8, name: "trace_keys", sql: include_str!("../migrations/sqlite/0008_trace_keys.sql") },
    Migration { version: 9, name: "evidence", sql: include_str!("../migrations/sqlite/0009_evidence.sql") },
    Migration {
        version: 10,
        name: "provable_retention",
        sql: include_str!("../migrations/sqlite/0010_provable_retention.sql"),
    },
    Migration { version: 11, name: "narrow_grants", sql: include_str!("../migrations/sqlite/0011_narrow_grants.sql") },
    Migration {
        version: 12,
        name: "holds_on_the_log",
        sql: include_str!("../migrations/sqlite/0012_holds_on_the_log.sql"),
    },
];

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const READERS: u32 = 4;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    series_cap: AtomicUsize,
    /// Wakes the checkpointer after a write; dropping it (with the store) stops it.
    wrote: std::sync::mpsc::SyncSender<()>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

thread_local! {
    /// Set by [`write_on_this_thread`].
    static WRITES_ON_THIS_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the SQLite writes this thread starts run on it, instead of on the runtime's
/// blocking pool. For a thread that exists to write and may block, such as the ping
/// writer: a hop to the pool and back costs two wake-ups per commit, and on a busy
/// machine two waits for a core. Never call it on a runtime's worker thread.
pub fn write_on_this_thread() {
    WRITES_ON_THIS_THREAD.set(true);
}

/// Page cache of the writer connection, in KiB: large enough that index pages of a
/// growing table stay in memory during a batch (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
const READER_CACHE_KIB: i64 = 16 * 1024;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a commit is durable once the WAL is synced at checkpoint; a
    // power loss may lose the last transactions but never corrupts the database.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on a thread of their own (see `checkpoint_loop`); this is only the
    // backstop should that thread fall behind.
    conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// WAL pages after which a commit checkpoints in the writer itself, stalling writes:
/// reached only if the checkpointer cannot keep up.
const BACKSTOP_CHECKPOINT_PAGES: i64 = 100_000;
/// How long the checkpointer lets writes gather before copying them into the database.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(50);

/// Copies committed WAL pages into the database file, off the writer's path: a
/// checkpoint (and its fsyncs) in the writer would hold every queued write for tens of
/// milliseconds. PASSIVE never blocks writers or readers; the WAL restarts from its
/// beginning once a checkpoint has caught up. Ends when the store is dropped.
fn checkpoint_loop(path: &Path, wrote: &std::sync::mpsc::Receiver<()>) {
    let conn = match Connection::open(path).and_then(|conn| {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "sqlite checkpointer could not start");
            return;
        }
    };
    while wrote.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_DELAY);
        while wrote.try_recv().is_ok() {}
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "sqlite checkpoint failed; retried after the next write"
            );
        }
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null | Value::NullInt => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. Does not migrate.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            // Created readable by the owner only; SQLite gives its -wal and -shm files the
            // database file's mode.
            let mut create = std::fs::OpenOptions::new();
            create.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
            match create.open(&path) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(StoreError::Io { context: format!("creating {}", path.display()), source });
                }
            }
            let writer = Connection::open(&path).ctx("opening the database file")?;
            configure(&writer).ctx("configuring the writer connection")?;
            let manager = SqliteConnectionManager::file(&path)
                .with_flags(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_init(|conn| {
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                    conn.set_prepared_statement_cache_capacity(64);
                    Ok(())
                });
            let readers = r2d2::Pool::builder().max_size(READERS).min_idle(Some(0)).build(manager)?;
            let (wrote, writes) = std::sync::mpsc::sync_channel(1);
            let checkpointer_path = path.clone();
            std::thread::Builder::new()
                .name("custos-sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(&checkpointer_path, &writes))
                .map_err(|source| StoreError::Io {
                    context: "starting the sqlite checkpointer thread".into(),
                    source,
                })?;
            Ok(Self {
                inner: Arc::new(Inner {
                    path,
                    writer: Mutex::new(writer),
                    readers,
                    series_cap: AtomicUsize::new(rollup::DEFAULT_SERIES_CAP),
                    wrote,
                }),
            })
        })
        .await?
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.prepare_then_write(|| Ok(()), |conn, ()| f(conn)).await
    }

    /// Runs `prepare` on the blocking pool without the writer lock (CPU work such as
    /// encoding a batch, so it overlaps another request's writes), then `f` with it. On
    /// a thread marked by [`write_on_this_thread`], both run right there.
    async fn prepare_then_write<P: Send + 'static, T: Send + 'static>(
        &self,
        prepare: impl FnOnce() -> StoreResult<P> + Send + 'static,
        f: impl FnOnce(&mut Connection, P) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        let run = move || {
            let prepared = prepare()?;
            let mut conn = inner.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let written = f(&mut conn, prepared);
            drop(conn);
            // Full means a wake-up is already pending.
            let _ = inner.wrote.try_send(());
            written
        };
        if WRITES_ON_THIS_THREAD.get() {
            return run();
        }
        tokio::task::spawn_blocking(run).await?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.get()?;
            f(&conn)
        })
        .await?
    }

    async fn insert<R: Rollup>(
        &self,
        tenant: &TenantId,
        records: Vec<R>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary> {
        let spec = table::spec_of::<R>();
        let tenant = tenant.clone();
        let cap = self.inner.series_cap.load(Ordering::Relaxed);
        let prepare = {
            let tenant = tenant.clone();
            move || {
                let (unique, duplicates) =
                    table::dedupe_batch(R::KIND, records.iter().map(|r| table::encode_for_insert(spec, r)).collect())?;
                Ok((unique, duplicates, crate::ledger::failure_events(&tenant, &records)))
            }
        };
        self.prepare_then_write(prepare, move |conn, (unique, duplicates, failures)| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("beginning an ingest transaction")?;
            let mut summary = IngestSummary { inserted: 0, duplicates };
            let mut inserted = vec![false; unique.len()];
            {
                let mut insert = tx.prepare_cached(&insert_sql(spec)).ctx("preparing an insert")?;
                let mut existing = tx
                    .prepare_cached(&format!(
                        "SELECT content_sha256 FROM {} WHERE tenant_id = ?1 AND id = ?2",
                        spec.table
                    ))
                    .ctx("preparing a digest lookup")?;
                for (record, inserted) in unique.iter().zip(&mut inserted) {
                    bind_record(&mut insert, tenant.as_str(), record, received_at).ctx("binding a record")?;
                    if insert.raw_execute().ctx("inserting a record")? == 1 {
                        summary.inserted += 1;
                        *inserted = true;
                        continue;
                    }
                    let stored: Vec<u8> = existing
                        .query_row(params![tenant.as_str(), record.id()], |row| row.get(0))
                        .ctx("reading a digest")?;
                    if stored != record.digest {
                        return Err(StoreError::Conflict { kind: R::KIND, id: record.id().to_owned() });
                    }
                    summary.duplicates += 1;
                }
            }
            let items = unique.into_iter().zip(inserted).filter_map(|(record, new)| new.then_some(record.rollup?));
            apply_rollups(&tx, tenant.as_str(), R::FAMILY, items, cap, received_at)?;
            // A failed run and its timeline event commit together (a re-sent one is a
            // duplicate of both).
            if !failures.is_empty() {
                sqlite_ledger::append_in(&tx, &tenant, LogName::Timeline, failures, received_at)
                    .map_err(StoreError::record_not_written)?;
            }
            tx.commit().ctx("committing an ingest transaction")?;
            Ok(summary)
        })
        .await
    }

    async fn page<R: IngestRecord>(&self, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<R>>> {
        let spec = table::spec_of::<R>();
        let (sql, params) = table::page_sql(spec, query, Dialect::Sqlite)?;
        let tenant = tenant.clone();
        let limit = query.limit;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).ctx("preparing a page query")?;
            stmt.raw_bind_parameter(1, tenant.as_str()).ctx("binding the tenant")?;
            for (i, value) in params.iter().enumerate() {
                stmt.raw_bind_parameter(i + 2, value).ctx("binding a filter")?;
            }
            let mut rows = stmt.raw_query();
            let mut items = Vec::new();
            while let Some(row) = rows.next().ctx("reading a page")? {
                let values = (0..=spec.columns.len())
                    .map(|i| row_value(row, i))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .ctx("reading a row")?;
                items.push(table::decode(spec, values)?);
            }
            Ok(table::into_page(items, limit))
        })
        .await
    }

    /// A rollup read: parameters are the tenant, the family and, when given, the hour
    /// holding `since`; each row decoded by `decode`.
    async fn read_rollup<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Option<Timestamp>,
        sql: String,
        what: &'static str,
        decode: fn(&rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).ctx(what)?;
            let since = since.map(|s| rollup::bucket_of(s.as_micros()));
            let mut rows = match since {
                Some(since) => stmt.query(params![tenant.as_str(), family.as_str(), since]),
                None => stmt.query(params![tenant.as_str(), family.as_str()]),
            }
            .ctx(what)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().ctx(what)? {
                out.push(decode(row)?);
            }
            Ok(out)
        })
        .await
    }

    /// Empties the rollup tables and refills them with migration 0002's backfill from
    /// the stored records: for the test that the backfill agrees with the ingest path.
    #[doc(hidden)]
    pub async fn rerun_rollup_backfill(&self) -> StoreResult<()> {
        self.write(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            tx.execute_batch(
                "DELETE FROM metric_series; DELETE FROM queue_latest; DELETE FROM metric_buckets; \
                 DELETE FROM series_last_error;",
            )
            .ctx("emptying rollups")?;
            tx.execute_batch(rollup::backfill_sql(MIGRATIONS[1].sql)).ctx("backfilling rollups")?;
            tx.execute_batch(rollup::backfill_sql(MIGRATIONS[4].sql)).ctx("backfilling hourly rollups")?;
            tx.commit().ctx("committing")
        })
        .await
    }

    /// Empties the hourly rollups and last errors and refills them with migration
    /// 0005's backfill, keeping `metric_series` (and so its folds) as stored.
    #[doc(hidden)]
    pub async fn rerun_hourly_backfill(&self) -> StoreResult<()> {
        self.write(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            tx.execute_batch("DELETE FROM metric_buckets; DELETE FROM series_last_error;").ctx("emptying rollups")?;
            tx.execute_batch(rollup::backfill_sql(MIGRATIONS[4].sql)).ctx("backfilling hourly rollups")?;
            tx.commit().ctx("committing")
        })
        .await
    }

    /// The benchmark baseline of `bench timeline`: `records` inserted into a log's table
    /// as plain rows (leaf indexes from `first`), without the Merkle hashing, subtree
    /// hashes or duplicate checks an append does.
    pub async fn baseline_insert_log(
        &self,
        tenant: &TenantId,
        log: LogName,
        records: Arc<Vec<LogAppend>>,
        first: u64,
        received_at: Timestamp,
    ) -> StoreResult<usize> {
        let tenant = tenant.clone();
        self.write(move |conn| sqlite_ledger::baseline_insert(conn, &tenant, log, &records, first, received_at)).await
    }

    /// The benchmark baseline: a prepared batch of rule runs inserted with one prepared
    /// statement in one transaction, with no parsing, validation, encoding or
    /// idempotency checks.
    pub async fn baseline_insert_rule_runs(
        &self,
        tenant: &TenantId,
        batch: BaselineBatch,
        received_at: Timestamp,
    ) -> StoreResult<usize> {
        let spec = &table::RULE_RUNS;
        let tenant = tenant.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            {
                let mut insert = tx.prepare_cached(&insert_sql(spec)).ctx("preparing")?;
                for encoded in &batch.0 {
                    bind_record(&mut insert, tenant.as_str(), encoded, received_at).ctx("binding")?;
                    insert.raw_execute().ctx("inserting")?;
                }
            }
            tx.commit().ctx("committing")?;
            Ok(batch.0.len())
        })
        .await
    }
}

/// Appends the value columns of `v`, in `rollup::bucket_value_columns` order.
fn push_values(values: &mut Vec<rusqlite::types::Value>, v: &rollup::SeriesValues) {
    values.extend([v.records.into(), v.observations.into(), v.sum.into()]);
    values.extend(v.buckets.iter().map(|&b| b.into()));
    values.extend(v.totals.iter().map(|&t| t.into()));
    values.push(v.last_us.into());
}

/// Adds the inserted records to the metric rollups, in the ingest transaction.
fn apply_rollups(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    family: Option<RollupFamily>,
    items: impl Iterator<Item = RollupItem>,
    cap: usize,
    received_at: Timestamp,
) -> StoreResult<()> {
    let (contributions, queues) = rollup::split(items);
    if let Some(family) = family
        && !contributions.is_empty()
    {
        let batch = rollup::aggregate(contributions);
        let mut exists = tx
            .prepare_cached(
                "SELECT 1 FROM metric_series WHERE tenant_id = ?1 AND family = ?2 AND series_key = ?3 AND status = ?4",
            )
            .ctx("preparing a series lookup")?;
        let mut new = Vec::new();
        for (key, status) in batch.series.keys() {
            if key != rollup::FOLDED_KEY
                && !exists.exists(params![tenant, family.as_str(), key, status]).ctx("looking up a series")?
            {
                new.push((key.clone(), status.clone()));
            }
        }
        let batch = if new.is_empty() {
            batch
        } else {
            let stored: i64 = tx
                .query_row(
                    "SELECT count(*) FROM metric_series WHERE tenant_id = ?1 AND family = ?2 AND series_key <> ''",
                    params![tenant, family.as_str()],
                    |row| row.get(0),
                )
                .ctx("counting series")?;
            rollup::fold_over_cap(batch, new, cap.saturating_sub(stored as usize))
        };
        let columns = rollup::value_columns();
        let placeholders: Vec<String> = (1..=columns.len() + 4).map(|n| format!("?{n}")).collect();
        let mut upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO metric_series (tenant_id, family, series_key, status, {}) VALUES ({}) {}",
                columns.join(", "),
                placeholders.join(", "),
                rollup::upsert_series_conflict_clause()
            ))
            .ctx("preparing a series upsert")?;
        for ((key, status), v) in &batch.series {
            let mut values: Vec<rusqlite::types::Value> = vec![
                tenant.to_owned().into(),
                family.as_str().to_owned().into(),
                key.clone().into(),
                status.clone().into(),
            ];
            push_values(&mut values, v);
            values.push(received_at.as_micros().into());
            upsert.execute(rusqlite::params_from_iter(values)).ctx("upserting a series")?;
        }
        let columns = rollup::bucket_value_columns();
        let placeholders: Vec<String> = (1..=columns.len() + 5).map(|n| format!("?{n}")).collect();
        let mut upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO metric_buckets (tenant_id, family, bucket_us, series_key, status, {}) VALUES ({}) {}",
                columns.join(", "),
                placeholders.join(", "),
                rollup::upsert_bucket_conflict_clause()
            ))
            .ctx("preparing an hourly bucket upsert")?;
        for ((key, status, hour), v) in &batch.buckets {
            let mut values: Vec<rusqlite::types::Value> = vec![
                tenant.to_owned().into(),
                family.as_str().to_owned().into(),
                (*hour).into(),
                key.clone().into(),
                status.clone().into(),
            ];
            push_values(&mut values, v);
            upsert.execute(rusqlite::params_from_iter(values)).ctx("upserting an hourly bucket")?;
        }
        let mut upsert = tx
            .prepare_cached(&rollup::upsert_error_sql(["?1", "?2", "?3", "?4", "?5", "?6"], ""))
            .ctx("preparing a last-error upsert")?;
        for (key, error) in batch.last_errors() {
            upsert
                .execute(params![tenant, family.as_str(), key, error.at_us, error.record_id, error.message])
                .ctx("upserting a series' last error")?;
        }
    }
    if !queues.is_empty() {
        let mut upsert = tx
            .prepare_cached(&format!(
                "INSERT INTO queue_latest ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) {}",
                rollup::QUEUE_COLUMNS,
                rollup::upsert_queue_conflict_clause("")
            ))
            .ctx("preparing a queue upsert")?;
        for q in rollup::latest_per_queue(queues) {
            upsert
                .execute(params![
                    tenant,
                    q.component_id,
                    q.id,
                    q.observed_at.as_micros(),
                    q.depth.pending,
                    q.depth.in_flight,
                    q.depth.retrying,
                    q.depth.dead_lettered,
                    q.oldest_item_age_ms,
                    q.processed_total,
                    q.failed_total,
                    received_at.as_micros(),
                ])
                .ctx("upserting a queue's latest snapshot")?;
        }
    }
    Ok(())
}

fn insert_sql(spec: &TableSpec) -> String {
    let columns: Vec<&str> = spec.columns.iter().map(|c| c.column).collect();
    let placeholders: Vec<String> = (1..=columns.len() + 3).map(|n| format!("?{n}")).collect();
    format!(
        "INSERT INTO {} (tenant_id, {}, content_sha256, received_at_us) VALUES ({}) ON CONFLICT (tenant_id, id) DO NOTHING",
        spec.table,
        columns.join(", "),
        placeholders.join(", ")
    )
}

fn bind_record(
    stmt: &mut rusqlite::CachedStatement<'_>,
    tenant: &str,
    record: &EncodedRecord,
    received_at: Timestamp,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(1, tenant)?;
    for (i, value) in record.values.iter().enumerate() {
        stmt.raw_bind_parameter(i + 2, value)?;
    }
    let n = record.values.len();
    stmt.raw_bind_parameter(n + 2, &record.digest[..])?;
    stmt.raw_bind_parameter(n + 3, received_at.as_micros())
}

fn row_value(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Value> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        other => {
            return Err(rusqlite::Error::InvalidColumnType(index, format!("{other:?}"), other.data_type()));
        }
    })
}

impl table::RowReader for rusqlite::Row<'_> {
    fn text(&self, index: usize) -> StoreResult<String> {
        self.get(index).ctx("reading a row")
    }
    fn int(&self, index: usize) -> StoreResult<i64> {
        self.get(index).ctx("reading a row")
    }
    fn real(&self, index: usize) -> StoreResult<f64> {
        self.get(index).ctx("reading a row")
    }
    fn opt_int(&self, index: usize) -> StoreResult<Option<i64>> {
        self.get(index).ctx("reading a row")
    }
    fn opt_text(&self, index: usize) -> StoreResult<Option<String>> {
        self.get(index).ctx("reading a row")
    }
}

/// Components of the tenant (parameter 1) matching `rest` (more conditions, an order).
fn select_components(conn: &Connection, rest: &str, params: &[&str]) -> StoreResult<Vec<Component>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = ?1{rest}"))
        .ctx("reading components")?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).ctx("reading components")?;
    let mut components = Vec::new();
    while let Some(row) = rows.next().ctx("reading components")? {
        components.push(crate::component_from_row(row)?);
    }
    Ok(components)
}

/// Components of the tenant (parameter 1) with their job states, as `c` (components)
/// left-joined to `s` (job_states), matching `rest`; a component without a state row
/// gets the default state.
fn select_job_states(conn: &Connection, rest: &str, params: &[&str]) -> StoreResult<Vec<JobRecord>> {
    static SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let component_columns: Vec<String> = COMPONENT_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
        let state_columns: Vec<String> = jobs::STATE_COLUMNS.iter().map(|c| format!("s.{c}")).collect();
        format!(
            "SELECT {}, {} FROM components c LEFT JOIN job_states s ON s.tenant_id = c.tenant_id AND s.job_id = c.id \
             WHERE c.tenant_id = ?1",
            component_columns.join(", "),
            state_columns.join(", ")
        )
    });
    let mut stmt = conn.prepare_cached(&format!("{}{rest}", *SELECT)).ctx("reading jobs")?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).ctx("reading jobs")?;
    let mut jobs = Vec::new();
    while let Some(row) = rows.next().ctx("reading jobs")? {
        let component = crate::component_from_row(row)?;
        jobs.push(JobRecord { state: jobs::state_from_row(row, COMPONENT_COLUMN_COUNT)?, component });
    }
    Ok(jobs)
}

/// Writes a batch's job states (upserted), pings and flips.
fn write_job_rows(tx: &Connection, tenant: &TenantId, writes: &jobs::JobWrites) -> StoreResult<()> {
    let insert = |table: &str, columns: &[&str], conflict: &str| {
        let placeholders: Vec<String> = (1..=columns.len() + 1).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {table} (tenant_id, {}) VALUES ({}){conflict}",
            columns.join(", "),
            placeholders.join(", ")
        )
    };
    let tenant_value = Value::Text(tenant.as_str().to_owned());
    if !writes.states.is_empty() {
        let updates: Vec<String> = jobs::STATE_COLUMNS.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        let mut columns = vec!["job_id"];
        columns.extend(jobs::STATE_COLUMNS);
        let sql = insert(
            "job_states",
            &columns,
            &format!(" ON CONFLICT (tenant_id, job_id) DO UPDATE SET {}", updates.join(", ")),
        );
        let mut stmt = tx.prepare_cached(&sql).ctx("writing job states")?;
        for (job_id, state) in &writes.states {
            let mut values = vec![tenant_value.clone(), Value::Text(job_id.clone())];
            values.extend(jobs::state_values(state));
            stmt.execute(rusqlite::params_from_iter(&values)).ctx("writing job states")?;
        }
    }
    if !writes.pings.is_empty() {
        let mut stmt = tx.prepare_cached(&insert("job_pings", jobs::PING_COLUMNS, "")).ctx("writing pings")?;
        for ping in &writes.pings {
            let mut values = vec![tenant_value.clone()];
            values.extend(jobs::ping_values(ping));
            stmt.execute(rusqlite::params_from_iter(&values)).ctx("writing pings")?;
        }
    }
    if !writes.flips.is_empty() {
        let mut stmt = tx.prepare_cached(&insert("job_flips", jobs::FLIP_COLUMNS, "")).ctx("writing flips")?;
        for flip in &writes.flips {
            let mut values = vec![tenant_value.clone()];
            values.extend(jobs::flip_values(flip));
            stmt.execute(rusqlite::params_from_iter(&values)).ctx("writing flips")?;
        }
    }
    Ok(())
}

/// Runs a history page query (tenant first, then `params`) and decodes its rows.
/// `sql` written with `$n` parameters (shared with PostgreSQL), as SQLite reads them.
fn lite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Every row of `sql` with `values` bound in order, decoded.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    values: &[Value],
    decode: impl Fn(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).ctx("preparing a read")?;
    let mut found = stmt.query(rusqlite::params_from_iter(values)).ctx("reading")?;
    let mut items = Vec::new();
    while let Some(row) = found.next().ctx("reading")? {
        items.push(decode(row)?);
    }
    Ok(items)
}

/// Runs `sql` (with `$n` parameters) with `values` bound in order; the rows it changed.
fn exec(conn: &Connection, sql: &str, values: &[Value], what: &'static str) -> StoreResult<usize> {
    conn.prepare_cached(&lite(sql)).ctx(what)?.execute(rusqlite::params_from_iter(values)).ctx(what)
}

fn read_incident(conn: &Connection, key: &str, id: &str) -> StoreResult<Option<IncidentRecord>> {
    let values = [Value::Text(key.to_owned()), Value::Text(id.to_owned())];
    let Some(mut incident) =
        rows(conn, &lite(&status::incident_sql()), &values, |r| status::incident_from_row(r))?.pop()
    else {
        return Ok(None);
    };
    incident.updates = rows(conn, &lite(status::incident_updates_sql()), &values, |r| status::update_from_row(r))?
        .into_iter()
        .map(|(_, update)| update)
        .collect();
    Ok(Some(incident))
}

fn insert_incident_update(conn: &Connection, key: &str, id: &str, update: &IncidentUpdate) -> StoreResult<()> {
    conn.execute(
        &lite(status::INSERT_UPDATE_SQL),
        params![
            key,
            id,
            update.seq,
            update.at.as_micros(),
            update.status.as_str(),
            update.impact.as_str(),
            update.message
        ],
    )
    .ctx("storing an incident update")?;
    Ok(())
}

fn history_rows<T>(
    conn: &Connection,
    sql: &str,
    tenant: &TenantId,
    params: &[Value],
    decode: impl Fn(&rusqlite::Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut values = vec![Value::Text(tenant.as_str().to_owned())];
    values.extend_from_slice(params);
    rows(conn, sql, &values, decode)
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scopes: String = row.get(3)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        scopes: parse_scopes(&scopes),
        created_at: Timestamp::from_micros(row.get(4)?),
        expires_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_micros),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(Timestamp::from_micros),
    })
}

const TOKEN_COLUMNS: &str = "id, name, secret_hash, scopes, created_at_us, expires_at_us, revoked_at_us";

fn tenant_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    let id: String = row.get(0)?;
    Ok(Tenant {
        id: TenantId::parse(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.to_string().into())
        })?,
        name: row.get(1)?,
        retention_days: row.get(2)?,
        created_at: Timestamp::from_micros(row.get(3)?),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<usize> {
        self.write(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER NOT NULL PRIMARY KEY,
                    name TEXT NOT NULL,
                    checksum TEXT NOT NULL,
                    applied_at_us INTEGER NOT NULL
                )",
            )
            .ctx("creating schema_migrations")?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("locking for migration")?;
            let mut applied = 0;
            for migration in MIGRATIONS {
                let stored: Option<String> = tx
                    .query_row("SELECT checksum FROM schema_migrations WHERE version = ?1", [migration.version], |r| {
                        r.get(0)
                    })
                    .optional()
                    .ctx("reading schema_migrations")?;
                match stored {
                    Some(checksum) if checksum == migration.checksum() => continue,
                    Some(_) => {
                        return Err(StoreError::MigrationChanged {
                            version: migration.version,
                            name: migration.name.into(),
                        });
                    }
                    None => {}
                }
                tx.execute_batch(migration.sql).map_err(|source| StoreError::Migration {
                    version: migration.version,
                    name: migration.name.into(),
                    source: source.into(),
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at_us) VALUES (?1, ?2, ?3, ?4)",
                    params![migration.version, migration.name, migration.checksum(), Timestamp::now().as_micros()],
                )
                .ctx("recording a migration")?;
                applied += 1;
            }
            tx.commit().ctx("committing migrations")?;
            Ok(applied)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).ctx("ping")).await
    }

    async fn schema_is_current(&self) -> StoreResult<bool> {
        let latest = MIGRATIONS.last().map_or(0, |m| m.version);
        Ok(self.schema_version().await.unwrap_or(0) >= latest)
    }

    async fn privileged_role(&self) -> StoreResult<Option<String>> {
        Ok(None)
    }

    async fn schema_version(&self) -> StoreResult<i64> {
        self.read(|conn| {
            conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |row| row.get(0))
                .ctx("reading the schema version")
        })
        .await
    }

    fn expected_schema_version(&self) -> i64 {
        MIGRATIONS.last().map_or(0, |m| m.version)
    }

    async fn describe_schema(&self) -> StoreResult<SchemaDescription> {
        self.read(|conn| {
            let mut schema = SchemaDescription::default();
            let mut tables = conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .ctx("listing tables")?;
            let names: Vec<String> = tables
                .query_map([], |r| r.get(0))
                .ctx("listing tables")?
                .collect::<Result<_, _>>()
                .ctx("listing tables")?;
            for name in names {
                let mut table = TableDescription::default();
                let mut columns = conn
                    .prepare("SELECT name, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")
                    .ctx("columns")?;
                let mut pk: Vec<(i64, String)> = Vec::new();
                for row in columns
                    .query_map([&name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, i64>(2)?)))
                    .ctx("columns")?
                {
                    let (column, not_null, pk_position) = row.ctx("columns")?;
                    if pk_position > 0 {
                        pk.push((pk_position, column.clone()));
                    }
                    // SQLite lets a non-integer primary key column hold NULL unless declared
                    // NOT NULL; every custos key column is declared NOT NULL.
                    table.columns.push((column, !not_null));
                }
                pk.sort();
                table.primary_key = pk.into_iter().map(|(_, c)| c).collect();
                let mut indexes = conn
                    .prepare("SELECT name, \"unique\" FROM pragma_index_list(?1) WHERE origin = 'c'")
                    .ctx("indexes")?;
                let list: Vec<(String, bool)> = indexes
                    .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .ctx("indexes")?
                    .collect::<Result<_, _>>()
                    .ctx("indexes")?;
                for (index, unique) in list {
                    let mut info = conn
                        .prepare("SELECT coalesce(name, '(expression)') FROM pragma_index_info(?1) ORDER BY seqno")
                        .ctx("index columns")?;
                    let cols: Vec<String> = info
                        .query_map([&index], |r| r.get(0))
                        .ctx("index columns")?
                        .collect::<Result<_, _>>()
                        .ctx("index columns")?;
                    table.indexes.insert(index, (cols, unique));
                }
                schema.tables.insert(name, table);
            }
            Ok(schema)
        })
        .await
    }

    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let tenant = tenant.clone();
        self.write(move |conn| {
            match conn.execute(
                "INSERT INTO tenants (id, name, retention_days, created_at_us) VALUES (?1, ?2, ?3, ?4)",
                params![tenant.id.as_str(), tenant.name, tenant.retention_days, tenant.created_at.as_micros()],
            ) {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::AlreadyExists { what: "tenant", id: tenant.id.to_string() })
                }
                Err(e) => Err(e).ctx("creating a tenant"),
            }
        })
        .await
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT id, name, retention_days, created_at_us FROM tenants WHERE id = ?1")
                .and_then(|mut s| s.query_row([id.as_str()], tenant_from_row).optional())
                .ctx("reading a tenant")
        })
        .await
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, name, retention_days, created_at_us FROM tenants ORDER BY id")
                .ctx("listing tenants")?;
            stmt.query_map([], tenant_from_row).ctx("listing tenants")?.collect::<Result<_, _>>().ctx("listing tenants")
        })
        .await
    }

    async fn create_token(&self, token: &TokenRecord) -> StoreResult<()> {
        let token = token.clone();
        self.write(move |conn| {
            match conn.execute(
                &format!("INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    token.id,
                    token.name,
                    token.secret_hash,
                    format_scopes(&token.scopes),
                    token.created_at.as_micros(),
                    token.expires_at.map(Timestamp::as_micros),
                    token.revoked_at.map(Timestamp::as_micros)
                ],
            ) {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists { what: "token", id: token.id }),
                Err(e) => Err(e).ctx("creating a token"),
            }
        })
        .await
    }

    async fn token_by_secret_hash(&self, secret_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let secret_hash = secret_hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = ?1"))
                .and_then(|mut s| s.query_row([secret_hash], token_from_row).optional())
                .ctx("looking up a token")
        })
        .await
    }

    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            tx.execute("DELETE FROM console_sessions WHERE expires_at_us < ?1", [session.created_at.as_micros()])
                .ctx("forgetting expired sessions")?;
            tx.execute(
                "INSERT INTO console_sessions (secret_hash, token_id, created_at_us, expires_at_us, ended_at_us) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.secret_hash,
                    session.token_id,
                    session.created_at.as_micros(),
                    session.expires_at.as_micros(),
                    session.ended_at.map(Timestamp::as_micros)
                ],
            )
            .ctx("storing a session")?;
            tx.commit().ctx("committing a session")
        })
        .await
    }

    async fn console_session(&self, secret_hash: &str) -> StoreResult<Option<(ConsoleSession, TokenRecord)>> {
        let secret_hash = secret_hash.to_owned();
        self.read(move |conn| {
            let session = conn
                .prepare_cached(
                    "SELECT token_id, created_at_us, expires_at_us, ended_at_us FROM console_sessions \
                     WHERE secret_hash = ?1",
                )
                .and_then(|mut s| {
                    s.query_row([&secret_hash], |row| {
                        Ok(ConsoleSession {
                            secret_hash: secret_hash.clone(),
                            token_id: row.get(0)?,
                            created_at: Timestamp::from_micros(row.get(1)?),
                            expires_at: Timestamp::from_micros(row.get(2)?),
                            ended_at: row.get::<_, Option<i64>>(3)?.map(Timestamp::from_micros),
                        })
                    })
                    .optional()
                })
                .ctx("looking up a session")?;
            let Some(session) = session else { return Ok(None) };
            let token = conn
                .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"))
                .and_then(|mut s| s.query_row([&session.token_id], token_from_row).optional())
                .ctx("looking up a session's token")?;
            Ok(token.map(|token| (session, token)))
        })
        .await
    }

    async fn end_console_session(&self, secret_hash: &str, at: Timestamp) -> StoreResult<()> {
        let secret_hash = secret_hash.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE console_sessions SET ended_at_us = COALESCE(ended_at_us, ?2) WHERE secret_hash = ?1",
                params![secret_hash, at.as_micros()],
            )
            .ctx("ending a session")?;
            Ok(())
        })
        .await
    }

    async fn tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_us, id"))
                .ctx("listing tokens")?;
            stmt.query_map([], token_from_row).ctx("listing tokens")?.collect::<Result<_, _>>().ctx("listing tokens")
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at: Timestamp) -> StoreResult<TokenRecord> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE api_tokens SET revoked_at_us = COALESCE(revoked_at_us, ?2) WHERE id = ?1",
                params![id, at.as_micros()],
            )
            .ctx("revoking a token")?;
            conn.query_row(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"), [&id], token_from_row)
                .optional()
                .ctx("reading a token")?
                .ok_or(StoreError::NotFound { what: "token", id })
        })
        .await
    }

    async fn put_component(&self, tenant: &TenantId, component: &Component) -> StoreResult<(PutOutcome, Component)> {
        let (tenant, component) = (tenant.clone(), component.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            let existing = select_components(&tx, " AND id = ?2", &[tenant.as_str(), &component.id])?.pop();
            let mut values = vec![Value::Text(tenant.as_str().to_owned())];
            values.extend(crate::component_values(&component));
            let outcome = match existing {
                None => {
                    let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
                    tx.execute(
                        &format!(
                            "INSERT INTO components (tenant_id, {COMPONENT_COLUMNS}) VALUES ({})",
                            placeholders.join(", ")
                        ),
                        rusqlite::params_from_iter(&values),
                    )
                    .ctx("inserting a component")?;
                    (PutOutcome::Created, component)
                }
                Some(old) if old.same_definition(&component) => (PutOutcome::Unchanged, old),
                Some(old) => {
                    // Every column but tenant_id, id and created_at_us.
                    let assignments: Vec<String> = COMPONENT_COLUMNS
                        .split(", ")
                        .enumerate()
                        .filter(|(_, c)| !matches!(*c, "id" | "created_at_us"))
                        .map(|(i, c)| format!("{c} = ?{}", i + 2))
                        .collect();
                    tx.execute(
                        &format!("UPDATE components SET {} WHERE tenant_id = ?1 AND id = ?2", assignments.join(", ")),
                        rusqlite::params_from_iter(&values),
                    )
                    .ctx("updating a component")?;
                    (PutOutcome::Updated, Component { created_at: old.created_at, ..component })
                }
            };
            tx.commit().ctx("committing")?;
            Ok(outcome)
        })
        .await
    }

    async fn component(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Component>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |conn| Ok(select_components(conn, " AND id = ?2", &[tenant.as_str(), &id])?.pop())).await
    }

    async fn components(&self, tenant: &TenantId) -> StoreResult<Vec<Component>> {
        let tenant = tenant.clone();
        self.read(move |conn| select_components(conn, " ORDER BY kind, id", &[tenant.as_str()])).await
    }

    async fn put_freshness_policy(&self, tenant: &TenantId, policy: &FreshnessPolicy) -> StoreResult<()> {
        let (tenant, policy) = (tenant.clone(), policy.clone());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO freshness_policies (tenant_id, provider, green_under_seconds, yellow_under_seconds, updated_at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id, provider) DO UPDATE SET green_under_seconds = excluded.green_under_seconds,
                    yellow_under_seconds = excluded.yellow_under_seconds, updated_at_us = excluded.updated_at_us",
                params![
                    tenant.as_str(),
                    policy.provider,
                    policy.thresholds.green_under_seconds,
                    policy.thresholds.yellow_under_seconds,
                    policy.updated_at.as_micros()
                ],
            )
            .ctx("storing a freshness policy")?;
            Ok(())
        })
        .await
    }

    async fn freshness_policies(&self, tenant: &TenantId) -> StoreResult<Vec<FreshnessPolicy>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT provider, green_under_seconds, yellow_under_seconds, updated_at_us FROM freshness_policies WHERE tenant_id = ?1 ORDER BY provider",
                )
                .ctx("listing freshness policies")?;
            stmt.query_map([tenant.as_str()], |r| {
                Ok(FreshnessPolicy {
                    provider: r.get(0)?,
                    thresholds: custos_model::FreshnessThresholds { green_under_seconds: r.get(1)?, yellow_under_seconds: r.get(2)? },
                    updated_at: Timestamp::from_micros(r.get(3)?),
                })
            })
            .ctx("listing freshness policies")?
            .collect::<Result<_, _>>()
            .ctx("listing freshness policies")
        })
        .await
    }

    async fn last_successful_syncs(
        &self,
        tenant: &TenantId,
        integration_ids: &[String],
    ) -> StoreResult<Vec<(String, Timestamp)>> {
        let (tenant, ids) = (tenant.clone(), integration_ids.to_vec());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT finished_at_us FROM connector_syncs INDEXED BY connector_syncs_by_integration
                     WHERE tenant_id = ?1 AND integration_id = ?2 AND status = 'succeeded'
                     ORDER BY started_at_us DESC LIMIT 1",
                )
                .ctx("preparing a last-sync lookup")?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(us) = stmt
                    .query_row([tenant.as_str(), &id], |r| r.get::<_, i64>(0))
                    .optional()
                    .ctx("reading a last sync")?
                {
                    found.push((id, Timestamp::from_micros(us)));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn record_rule_runs(
        &self,
        tenant: &TenantId,
        records: Vec<RuleRun>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary> {
        self.insert(tenant, records, received_at).await
    }
    async fn rule_runs_page(&self, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<RuleRun>>> {
        self.page(tenant, query).await
    }
    async fn record_connector_syncs(
        &self,
        tenant: &TenantId,
        records: Vec<ConnectorSync>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary> {
        self.insert(tenant, records, received_at).await
    }
    async fn connector_syncs_page(
        &self,
        tenant: &TenantId,
        query: &RecordQuery,
    ) -> StoreResult<Page<Stored<ConnectorSync>>> {
        self.page(tenant, query).await
    }
    async fn record_queue_snapshots(
        &self,
        tenant: &TenantId,
        records: Vec<QueueSnapshot>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary> {
        self.insert(tenant, records, received_at).await
    }
    async fn queue_snapshots_page(
        &self,
        tenant: &TenantId,
        query: &RecordQuery,
    ) -> StoreResult<Page<Stored<QueueSnapshot>>> {
        self.page(tenant, query).await
    }
    async fn record_deliveries(
        &self,
        tenant: &TenantId,
        records: Vec<Delivery>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary> {
        self.insert(tenant, records, received_at).await
    }
    async fn deliveries_page(&self, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<Delivery>>> {
        self.page(tenant, query).await
    }

    fn set_metric_series_cap(&self, cap: usize) {
        self.inner.series_cap.store(cap, Ordering::Relaxed);
    }

    /// The reader pool plus the one writer connection (always open; idle unless its
    /// lock is held).
    fn pool_stats(&self) -> crate::PoolStats {
        let readers = self.inner.readers.state();
        let writer_idle = u32::from(self.inner.writer.try_lock().is_ok());
        crate::PoolStats {
            open: readers.connections + 1,
            idle: readers.idle_connections + writer_idle,
            max: READERS + 1,
        }
    }

    async fn metric_series(&self, tenant: &TenantId) -> StoreResult<Vec<SeriesRow>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&rollup::select_series_sql("?1", "")).ctx("preparing a series query")?;
            let mut rows = stmt.query(params![tenant.as_str()]).ctx("reading series")?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().ctx("reading a series")? {
                out.push(rollup::series_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn metric_window(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<SeriesRow>> {
        let sql = rollup::select_window_sql(["?1", "?2", "?3"], "");
        self.read_rollup(tenant, family, Some(since), sql, "reading a window of hourly rollups", |row| {
            rollup::series_from_row(row)
        })
        .await
    }

    async fn metric_buckets(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<BucketRow>> {
        let sql = rollup::select_buckets_sql(["?1", "?2", "?3"], "");
        self.read_rollup(tenant, family, Some(since), sql, "reading hourly rollups", |row| rollup::bucket_from_row(row))
            .await
    }

    async fn metric_hour_totals(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<HourTotals>> {
        let sql = rollup::select_hour_totals_sql(["?1", "?2", "?3"], "");
        self.read_rollup(tenant, family, Some(since), sql, "reading hourly totals", |row| {
            rollup::hour_totals_from_row(row)
        })
        .await
    }

    async fn last_errors(&self, tenant: &TenantId, family: RollupFamily) -> StoreResult<Vec<(String, LastError)>> {
        let sql = rollup::select_errors_sql(["?1", "?2"], "");
        self.read_rollup(tenant, family, None, sql, "reading last errors", |row| rollup::error_from_row(row)).await
    }

    async fn latest_queue_snapshots(&self, tenant: &TenantId) -> StoreResult<Vec<Stored<QueueSnapshot>>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let spec = &table::QUEUE_SNAPSHOTS;
            let sql = format!(
                "SELECT {} FROM queue_latest WHERE tenant_id = ?1 ORDER BY component_id",
                table::select_columns(spec)
            );
            let mut stmt = conn.prepare_cached(&sql).ctx("preparing a queue query")?;
            let mut rows = stmt.query(params![tenant.as_str()]).ctx("reading queues")?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().ctx("reading a queue")? {
                let values = (0..=spec.columns.len())
                    .map(|i| row_value(row, i))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .ctx("reading a queue row")?;
                out.push(table::decode(spec, values)?);
            }
            Ok(out)
        })
        .await
    }

    async fn apply_job_events(
        &self,
        tenant: &TenantId,
        events: Vec<JobEventRequest>,
    ) -> StoreResult<Vec<JobEventOutcome>> {
        let tenant = tenant.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            let mut targets = jobs::Targets::new();
            let mut states = HashMap::new();
            for event in &events {
                if targets.contains_key(&event.job_id) {
                    continue;
                }
                // One read per job: its component (any kind) and its state.
                let Some(job) = select_job_states(&tx, " AND c.id = ?2", &[tenant.as_str(), &event.job_id])?.pop()
                else {
                    continue;
                };
                states.insert(event.job_id.clone(), job.state);
                targets.insert(event.job_id.clone(), (job.component.kind, job.component.schedule));
            }
            let (outcomes, writes) = jobs::apply_events(&targets, states, events);
            write_job_rows(&tx, &tenant, &writes)?;
            tx.commit().ctx("committing")?;
            Ok(outcomes)
        })
        .await
    }

    async fn jobs(&self, tenant: &TenantId) -> StoreResult<Vec<JobRecord>> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            select_job_states(conn, " AND c.kind = 'scheduled_job' ORDER BY c.id", &[tenant.as_str()])
        })
        .await
    }

    async fn job(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<JobRecord>> {
        let (tenant, job_id) = (tenant.clone(), job_id.to_owned());
        self.read(move |conn| {
            let rest = " AND c.kind = 'scheduled_job' AND c.id = ?2";
            Ok(select_job_states(conn, rest, &[tenant.as_str(), &job_id])?.pop())
        })
        .await
    }

    async fn job_pings_page(
        &self,
        tenant: &TenantId,
        job_id: &str,
        query: &RecordQuery,
    ) -> StoreResult<Page<StoredPing>> {
        let (sql, params) = jobs::history_page_sql(jobs::History::Pings, Some(job_id), query, Dialect::Sqlite);
        let (tenant, limit) = (tenant.clone(), query.limit);
        let items =
            self.read(move |conn| history_rows(conn, &sql, &tenant, &params, |r| jobs::ping_from_row(r))).await?;
        Ok(jobs::into_history_page(items, limit, jobs::ping_cursor))
    }

    async fn job_flips_page(
        &self,
        tenant: &TenantId,
        job_id: Option<&str>,
        query: &RecordQuery,
    ) -> StoreResult<Page<StoredFlip>> {
        let (sql, params) = jobs::history_page_sql(jobs::History::Flips, job_id, query, Dialect::Sqlite);
        let (tenant, limit) = (tenant.clone(), query.limit);
        let items =
            self.read(move |conn| history_rows(conn, &sql, &tenant, &params, |r| jobs::flip_from_row(r))).await?;
        Ok(jobs::into_history_page(items, limit, jobs::flip_cursor))
    }

    async fn reevaluate_jobs(&self, tenant: &TenantId, now: Timestamp) -> StoreResult<Vec<StoredFlip>> {
        let tenant = tenant.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            let records = select_job_states(
                &tx,
                " AND c.kind = 'scheduled_job' AND s.job_id IS NOT NULL ORDER BY c.id",
                &[tenant.as_str()],
            )?;
            let mut writes = jobs::JobWrites::default();
            // The writer holds the database: nothing changed the rows since they were read.
            for (_, job_id, state, flip) in jobs::reevaluate(records, now) {
                writes.states.push((job_id, state));
                writes.flips.push(StoredFlip { id: jobs::new_row_id(), flip });
            }
            write_job_rows(&tx, &tenant, &writes)?;
            tx.commit().ctx("committing")?;
            Ok(writes.flips)
        })
        .await
    }

    async fn record_status(
        &self,
        scope: &StatusScope,
        observed: &[(String, ComponentStatus)],
        at: Timestamp,
    ) -> StoreResult<usize> {
        let (key, observed) = (scope.key().to_owned(), observed.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            let latest = rows(&tx, &lite(status::LATEST_STATUS_SQL), &[Value::Text(key.clone())], |r| {
                status::change_from_row(r)
            })?;
            let changed = status::changed(&latest, &observed);
            for (component, state) in &changed {
                tx.execute(&lite(status::INSERT_STATUS_SQL), params![key, component, at.as_micros(), state.as_str()])
                    .ctx("recording a status change")?;
            }
            tx.commit().ctx("committing status changes")?;
            Ok(changed.len())
        })
        .await
    }

    async fn status_changes(&self, scope: &StatusScope, since: Timestamp) -> StoreResult<Vec<StatusChange>> {
        let values = [Value::Text(scope.key().to_owned()), Value::Int(since.as_micros())];
        self.read(move |conn| rows(conn, &lite(status::STATUS_CHANGES_SQL), &values, |r| status::change_from_row(r)))
            .await
    }

    async fn create_incident(&self, scope: &StatusScope, incident: &IncidentRecord) -> StoreResult<()> {
        let (key, incident) = (scope.key().to_owned(), incident.clone());
        self.write(move |conn| {
            let tx = conn.transaction().ctx("beginning")?;
            let inserted = tx.execute(
                &lite(status::INSERT_INCIDENT_SQL),
                params![
                    key,
                    incident.id,
                    incident.title,
                    incident.status.as_str(),
                    incident.impact.as_str(),
                    status::components_json(&incident.components),
                    incident.source.as_str(),
                    incident.auto_key,
                    incident.created_at.as_micros(),
                    incident.updated_at.as_micros(),
                    incident.resolved_at.map(Timestamp::as_micros),
                ],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    let id = incident.auto_key.clone().unwrap_or_else(|| incident.id.clone());
                    return Err(StoreError::AlreadyExists { what: "open incident", id });
                }
                other => other.ctx("storing an incident")?,
            };
            for update in &incident.updates {
                insert_incident_update(&tx, &key, &incident.id, update)?;
            }
            tx.commit().ctx("committing an incident")
        })
        .await
    }

    async fn update_incident(
        &self,
        scope: &StatusScope,
        id: &str,
        update: &NewIncidentUpdate,
    ) -> StoreResult<IncidentRecord> {
        let (key, id, update) = (scope.key().to_owned(), id.to_owned(), update.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            let mut incident = read_incident(&tx, &key, &id)?
                .ok_or_else(|| StoreError::NotFound { what: "incident", id: id.clone() })?;
            let stored = status::apply_update(&mut incident, &update);
            insert_incident_update(&tx, &key, &id, &stored)?;
            tx.execute(
                &lite(status::SET_INCIDENT_SQL),
                params![
                    key,
                    id,
                    incident.status.as_str(),
                    incident.impact.as_str(),
                    incident.updated_at.as_micros(),
                    incident.resolved_at.map(Timestamp::as_micros)
                ],
            )
            .ctx("updating an incident")?;
            tx.commit().ctx("committing an incident update")?;
            Ok(incident)
        })
        .await
    }

    async fn incident(&self, scope: &StatusScope, id: &str) -> StoreResult<Option<IncidentRecord>> {
        let (key, id) = (scope.key().to_owned(), id.to_owned());
        self.read(move |conn| read_incident(conn, &key, &id)).await
    }

    async fn incidents(&self, scope: &StatusScope, resolved_since: Timestamp) -> StoreResult<Vec<IncidentRecord>> {
        let values = [Value::Text(scope.key().to_owned()), Value::Int(resolved_since.as_micros())];
        self.read(move |conn| {
            let mut incidents = rows(conn, &lite(&status::incidents_sql()), &values, |r| status::incident_from_row(r))?;
            let updates = rows(conn, &lite(status::UPDATES_SQL), &values, |r| status::update_from_row(r))?;
            status::attach_updates(&mut incidents, updates);
            Ok(incidents)
        })
        .await
    }

    async fn create_maintenance(&self, scope: &StatusScope, window: &MaintenanceRecord) -> StoreResult<()> {
        let (key, record) = (scope.key().to_owned(), window.clone());
        self.write(move |conn| {
            let input = &record.window.input;
            let inserted = conn.execute(
                &lite(status::INSERT_MAINTENANCE_SQL),
                params![
                    key,
                    record.id,
                    input.title,
                    status::components_json(&input.components),
                    input.starts_at.map(Timestamp::as_micros),
                    input.ends_at.map(Timestamp::as_micros),
                    input.cron,
                    input.timezone,
                    input.duration_minutes,
                    record.created_at.as_micros(),
                ],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::AlreadyExists { what: "maintenance window", id: record.id.clone() })
                }
                other => other.ctx("storing a maintenance window").map(|_| ()),
            }
        })
        .await
    }

    async fn cancel_maintenance(&self, scope: &StatusScope, id: &str, at: Timestamp) -> StoreResult<()> {
        let (key, id) = (scope.key().to_owned(), id.to_owned());
        self.write(move |conn| {
            let changed = conn
                .execute(&lite(status::CANCEL_MAINTENANCE_SQL), params![key, id, at.as_micros()])
                .ctx("cancelling a maintenance window")?;
            if changed == 0 {
                return Err(StoreError::NotFound { what: "maintenance window", id });
            }
            Ok(())
        })
        .await
    }

    async fn maintenance_windows(&self, scope: &StatusScope) -> StoreResult<Vec<MaintenanceRecord>> {
        let values = [Value::Text(scope.key().to_owned())];
        self.read(move |conn| rows(conn, &lite(status::MAINTENANCE_SQL), &values, |r| status::maintenance_from_row(r)))
            .await
    }

    async fn append_log(
        &self,
        tenant: &TenantId,
        log: LogName,
        records: Vec<LogAppend>,
        received_at: Timestamp,
    ) -> StoreResult<AppendOutcome> {
        let tenant = tenant.clone();
        self.write(move |conn| sqlite_ledger::append(conn, &tenant, log, records, received_at)).await
    }

    async fn log_head(&self, tenant: &TenantId, log: LogName) -> StoreResult<LogHead> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::head(conn, &tenant, log)).await
    }

    async fn log_page(&self, tenant: &TenantId, log: LogName, query: &LogQuery) -> StoreResult<Page<LogEntry>> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.read(move |conn| sqlite_ledger::page(conn, &tenant, log, &query)).await
    }

    async fn log_entry(&self, tenant: &TenantId, log: LogName, event_id: &str) -> StoreResult<Option<LogEntry>> {
        let (tenant, event_id) = (tenant.clone(), event_id.to_owned());
        self.read(move |conn| sqlite_ledger::entry_by_id(conn, &tenant, log, &event_id)).await
    }

    async fn log_nodes(&self, tenant: &TenantId, log: LogName, nodes: &[NodeId]) -> StoreResult<Vec<(NodeId, Hash)>> {
        let (tenant, nodes) = (tenant.clone(), nodes.to_vec());
        self.read(move |conn| sqlite_ledger::nodes(conn, &tenant, log, &nodes)).await
    }

    async fn log_leaves(&self, tenant: &TenantId, log: LogName, start: u64, end: u64) -> StoreResult<Vec<LeafRow>> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::leaves(conn, &tenant, log, start, end)).await
    }

    async fn put_checkpoint(&self, tenant: &TenantId, log: LogName, checkpoint: &StoredCheckpoint) -> StoreResult<()> {
        let (tenant, checkpoint) = (tenant.clone(), checkpoint.clone());
        self.write(move |conn| sqlite_ledger::put_checkpoint(conn, &tenant, log, &checkpoint)).await
    }

    async fn latest_checkpoint(&self, tenant: &TenantId, log: LogName) -> StoreResult<Option<StoredCheckpoint>> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::checkpoint(conn, &tenant, log, None)).await
    }

    async fn checkpoint_at(&self, tenant: &TenantId, log: LogName, size: u64) -> StoreResult<Option<StoredCheckpoint>> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::checkpoint(conn, &tenant, log, Some(size))).await
    }

    async fn log_pruned_before(&self, tenant: &TenantId, log: LogName) -> StoreResult<u64> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::pruned_before(conn, &tenant, log)).await
    }

    async fn log_first_received(
        &self,
        tenant: &TenantId,
        log: LogName,
        from: u64,
    ) -> StoreResult<Option<(u64, Timestamp)>> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::first_received(conn, &tenant, log, from)).await
    }

    async fn prune_log(&self, tenant: &TenantId, log: LogName, prune: &LogPrune) -> StoreResult<PruneOutcome> {
        let (tenant, prune) = (tenant.clone(), prune.clone());
        self.write(move |conn| sqlite_ledger::prune(conn, &tenant, log, &prune)).await
    }

    async fn create_hold(&self, tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()> {
        let (tenant, hold, records) = (tenant.clone(), hold.clone(), records.clone());
        self.write(move |conn| sqlite_ledger::create_hold(conn, &tenant, &hold, records)).await
    }

    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<LegalHold> {
        let (tenant, id, records) = (tenant.clone(), id.to_owned(), records.clone());
        self.write(move |conn| sqlite_ledger::release_hold(conn, &tenant, &id, at, records)).await
    }

    async fn holds(&self, tenant: &TenantId) -> StoreResult<Vec<LegalHold>> {
        let tenant = tenant.clone();
        self.read(move |conn| sqlite_ledger::holds(conn, &tenant)).await
    }

    async fn put_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| sqlite_ledger::put_signing_key(conn, &key)).await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.read(sqlite_ledger::signing_keys).await
    }

    async fn retire_signing_keys_except(
        &self,
        key_id: &str,
        at: Timestamp,
        overlap: Option<&KeyOverlap>,
    ) -> StoreResult<Vec<SigningKeyRecord>> {
        let key_id = key_id.to_owned();
        let overlap = overlap.cloned();
        self.write(move |conn| sqlite_ledger::retire_signing_keys_except(conn, &key_id, at, overlap.as_ref())).await
    }

    async fn put_artifact(&self, tenant: &TenantId, artifact: &ArtifactRecord) -> StoreResult<()> {
        let values = evidence::artifact_values(tenant.as_str(), artifact);
        let name = artifact.name.clone();
        self.write(move |conn| {
            if exec(conn, evidence::INSERT_ARTIFACT_SQL, &values, "recording a case artifact")? == 0 {
                return Err(StoreError::AlreadyExists { what: "case artifact", id: name });
            }
            Ok(())
        })
        .await
    }

    async fn artifact(&self, tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<Option<ArtifactRecord>> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(case_id.into()), Value::Text(name.into())];
        self.read(move |conn| {
            Ok(rows(conn, &lite(&evidence::artifacts_sql(true)), &values, |r| evidence::artifact_from_row(r))?.pop())
        })
        .await
    }

    async fn artifacts(&self, tenant: &TenantId, case_id: &str) -> StoreResult<Vec<ArtifactRecord>> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(case_id.into())];
        self.read(move |conn| {
            rows(conn, &lite(&evidence::artifacts_sql(false)), &values, |r| evidence::artifact_from_row(r))
        })
        .await
    }

    async fn put_bundle(
        &self,
        tenant: &TenantId,
        bundle: &BundleRecord,
        attestation: &AttestationRecord,
    ) -> StoreResult<()> {
        let bundle_values = evidence::bundle_values(tenant.as_str(), bundle);
        let attestation_values = evidence::attestation_values(tenant.as_str(), attestation);
        let id = bundle.bundle_id.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
            if exec(&tx, evidence::INSERT_BUNDLE_SQL, &bundle_values, "recording a bundle")? == 0 {
                return Err(StoreError::AlreadyExists { what: "evidence bundle", id });
            }
            exec(&tx, evidence::INSERT_ATTESTATION_SQL, &attestation_values, "recording an attestation")?;
            tx.commit().ctx("committing a bundle")
        })
        .await
    }

    async fn bundle(&self, tenant: &TenantId, bundle_id: &str) -> StoreResult<Option<BundleRecord>> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(bundle_id.into())];
        self.read(move |conn| {
            Ok(rows(conn, &lite(&evidence::bundles_sql(true)), &values, |r| evidence::bundle_from_row(r))?.pop())
        })
        .await
    }

    async fn case_bundles(&self, tenant: &TenantId, case_id: &str) -> StoreResult<Vec<BundleRecord>> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(case_id.into())];
        self.read(move |conn| {
            rows(conn, &lite(&evidence::bundles_sql(false)), &values, |r| evidence::bundle_from_row(r))
        })
        .await
    }

    async fn put_attestation(&self, tenant: &TenantId, attestation: &AttestationRecord) -> StoreResult<()> {
        let values = evidence::attestation_values(tenant.as_str(), attestation);
        self.write(move |conn| {
            exec(conn, evidence::INSERT_ATTESTATION_SQL, &values, "recording an attestation").map(drop)
        })
        .await
    }

    async fn attestations(&self, tenant: &TenantId, query: &AttestationQuery) -> StoreResult<Vec<AttestationRecord>> {
        let (sql, values) = evidence::attestations_sql(tenant.as_str(), query);
        self.read(move |conn| rows(conn, &lite(&sql), &values, |r| evidence::attestation_from_row(r))).await
    }

    async fn create_case_hold(&self, tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()> {
        let values = evidence::hold_values(tenant.as_str(), hold);
        let (id, at, tenant, records) = (hold.id.clone(), hold.created_at, tenant.clone(), records.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a case hold")?;
            if exec(&tx, evidence::INSERT_HOLD_SQL, &values, "placing a case hold")? == 0 {
                return Err(StoreError::AlreadyExists { what: "active hold on case", id });
            }
            sqlite_ledger::record_action(&tx, &tenant, records, at)?;
            tx.commit().ctx("committing a case hold")
        })
        .await
    }

    async fn release_case_hold(
        &self,
        tenant: &TenantId,
        case_id: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<LegalHold> {
        let mut values = vec![Value::Text(tenant.to_string()), Value::Text(case_id.into()), Value::Int(at.as_micros())];
        let (id, tenant, records) = (case_id.to_owned(), tenant.clone(), records.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a hold release")?;
            // The release names its audit record, which the trigger checks: record first.
            let leaf = sqlite_ledger::record_action(&tx, &tenant, records, at)?;
            values.push(Value::Int(leaf as i64));
            let hold = rows(&tx, &lite(&evidence::release_hold_sql()), &values, |r| evidence::hold_from_row(r))?
                .pop()
                .ok_or(StoreError::NotFound { what: "active hold on case", id })?;
            tx.commit().ctx("committing a hold release")?;
            Ok(hold)
        })
        .await
    }

    async fn case_holds(&self, tenant: &TenantId, case_id: Option<&str>) -> StoreResult<Vec<LegalHold>> {
        let mut values = vec![Value::Text(tenant.to_string())];
        values.extend(case_id.map(|c| Value::Text(c.to_owned())));
        let sql = lite(&evidence::holds_sql(case_id.is_some()));
        self.read(move |conn| rows(conn, &sql, &values, |r| evidence::hold_from_row(r))).await
    }

    async fn case_held(&self, tenant: &TenantId, case_id: &str) -> StoreResult<bool> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(case_id.into())];
        self.read(move |conn| {
            let held = rows(conn, &lite(evidence::HELD_SQL), &values, |r| r.get::<_, i64>(0).ctx("reading a hold"))?;
            Ok(held.first() == Some(&1))
        })
        .await
    }

    async fn set_evidence_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        by: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<()> {
        let values = vec![
            Value::Text(tenant.to_string()),
            days.map_or(Value::NullInt, |d| Value::Int(i64::from(d))),
            Value::Text(by.to_owned()),
            Value::Int(at.as_micros()),
        ];
        let (tenant, records) = (tenant.clone(), records.clone());
        self.write(move |conn| {
            let tx =
                conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a retention change")?;
            exec(&tx, evidence::SET_RETENTION_SQL, &values, "setting evidence retention")?;
            sqlite_ledger::record_action(&tx, &tenant, records, at)?;
            tx.commit().ctx("committing a retention change")
        })
        .await
    }

    async fn evidence_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>> {
        let values = vec![Value::Text(tenant.to_string())];
        self.read(move |conn| {
            let days = rows(conn, &lite(evidence::RETENTION_SQL), &values, |r| {
                r.get::<_, Option<i64>>(0).ctx("reading evidence retention")
            })?;
            Ok(days.into_iter().flatten().next().and_then(|d| u32::try_from(d).ok()))
        })
        .await
    }

    async fn expired_evidence(&self, tenant: &TenantId, before: Timestamp) -> StoreResult<ExpiredEvidence> {
        let values = vec![Value::Text(tenant.to_string()), Value::Int(before.as_micros())];
        self.read(move |conn| {
            Ok(ExpiredEvidence {
                bundles: rows(conn, &lite(&evidence::expired_bundles_sql()), &values, |r| {
                    evidence::bundle_from_row(r)
                })?,
                artifacts: rows(conn, &lite(&evidence::expired_artifacts_sql()), &values, |r| {
                    evidence::artifact_from_row(r)
                })?,
            })
        })
        .await
    }

    async fn delete_bundle(&self, tenant: &TenantId, bundle_id: &str) -> StoreResult<()> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(bundle_id.to_owned())];
        let id = bundle_id.to_owned();
        self.write(move |conn| match exec(conn, evidence::DELETE_BUNDLE_SQL, &values, "deleting a bundle")? {
            0 => Err(StoreError::NotFound { what: "evidence bundle", id }),
            _ => Ok(()),
        })
        .await
    }

    async fn delete_artifact(&self, tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<()> {
        let values = vec![Value::Text(tenant.to_string()), Value::Text(case_id.into()), Value::Text(name.into())];
        let id = format!("{case_id}/{name}");
        self.write(move |conn| match exec(conn, evidence::DELETE_ARTIFACT_SQL, &values, "deleting an artifact")? {
            0 => Err(StoreError::NotFound { what: "case artifact", id }),
            _ => Ok(()),
        })
        .await
    }
}
