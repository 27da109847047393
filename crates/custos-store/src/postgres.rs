//! The PostgreSQL backend: for several `custos serve` replicas sharing one database.
//!
//! Pooled sessions run as the role `custos_app` (`SET ROLE` on connect), which owns no
//! table and is subject to row-level security on every tenant table: each tenant-scoped
//! operation runs in a transaction that first sets `custos.tenant_id`, so a query that
//! forgot its `WHERE tenant_id = …` still sees one tenant. Migrations and schema
//! introspection use a separate connection as the URL's own user, serialised across
//! replicas by an advisory lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use custos_ledger::merkle::{Hash, NodeId};
use custos_model::ledger::LogName;
use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun};
use custos_model::status::ComponentStatus;
use custos_model::{Component, ComponentKind, FreshnessPolicy, FreshnessThresholds, TenantId, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, PgConnection, Postgres, Row, Transaction};

use crate::error::{PostgresContext, StoreError, StoreResult};
use crate::evidence::{self, ArtifactRecord, AttestationQuery, AttestationRecord, BundleRecord, ExpiredEvidence};
use crate::jobs::{self, JobEventOutcome, JobEventRequest, JobRecord, StoredFlip, StoredPing};
use crate::ledger::{
    ActionRecords, AppendOutcome, KeyOverlap, LeafRow, LegalHold, LogAppend, LogEntry, LogHead, LogPrune, LogQuery,
    PruneOutcome, SigningKeyRecord, StoredCheckpoint,
};
use crate::postgres_ledger;
use crate::rollup::{
    self, BucketRow, HourTotals, LastError, Rollup, RollupFamily, RollupItem, SeriesRow, SeriesValues,
};
use crate::schema::{Migration, SchemaDescription, TableDescription};
use crate::status::{
    self, IncidentRecord, IncidentUpdate, MaintenanceRecord, NewIncidentUpdate, StatusChange, StatusScope,
};
use crate::table::{self, BaselineBatch, ColType, Dialect, EncodedRecord, TableSpec, Value};
use crate::{
    Backend, COMPONENT_COLUMN_COUNT, COMPONENT_COLUMNS, ConsoleSession, IngestSummary, Page, PutOutcome, RecordQuery,
    Store, Stored, Tenant, TokenRecord, format_scopes, parse_scopes,
};

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/postgres/0001_initial.sql") },
    Migration {
        version: 2,
        name: "metric_rollups",
        sql: include_str!("../migrations/postgres/0002_metric_rollups.sql"),
    },
    Migration {
        version: 3,
        name: "scheduled_jobs",
        sql: include_str!("../migrations/postgres/0003_scheduled_jobs.sql"),
    },
    Migration { version: 4, name: "status_page", sql: include_str!("../migrations/postgres/0004_status_page.sql") },
    Migration { version: 5, name: "console", sql: include_str!("../migrations/postgres/0005_console.sql") },
    Migration { version: 6, name: "update_room", sql: include_str!("../migrations/postgres/0006_update_room.sql") },
    Migration { version: 7, name: "ledger", sql: include_str!("../migrations/postgres/0007_ledger.sql") },
    Migration { version: 8, name: "trace_keys", sql: include_str!("../migrations/postgres/0008_trace_keys.sql") },
    Migration { version: 9, name: "evidence", sql: include_str!("../migrations/postgres/0009_evidence.sql") },
    Migration {
        version: 10,
        name: "provable_retention",
        sql: include_str!("../migrations/postgres/0010_provable_retention.sql"),
    },
    Migration {
        version: 11,
        name: "narrow_grants",
        sql: include_str!("../migrations/postgres/0011_narrow_grants.sql"),
    },
    Migration {
        version: 12,
        name: "holds_on_the_log",
        sql: include_str!("../migrations/postgres/0012_holds_on_the_log.sql"),
    },
];

/// Arbitrary constant naming custos's migration lock among the database's advisory locks.
const MIGRATION_LOCK_KEY: i64 = 0x6375_7374_6f73; // "custos"
/// The role pooled sessions run as (created by the first migration).
pub const APP_ROLE: &str = "custos_app";
/// Rows per INSERT … SELECT FROM UNNEST statement.
const INSERT_CHUNK: usize = 10_000;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    series_cap: std::sync::Arc<AtomicUsize>,
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

impl PostgresStore {
    /// Prepares a pool for `url`. Connections are opened on first use, after migration
    /// has created the role they switch to.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse().ctx("parsing the database URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A database that stops answering fails a request in 5 s (a 503), not 30.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET ROLE custos_app").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone());
        Ok(Self { pool, options, series_cap: std::sync::Arc::new(AtomicUsize::new(rollup::DEFAULT_SERIES_CAP)) })
    }

    /// The pool of `custos_app` sessions, for tests that probe row-level security.
    #[doc(hidden)]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn owner_connection(&self) -> StoreResult<PgConnection> {
        PgConnection::connect_with(&self.options).await.ctx("connecting as the database owner")
    }

    /// A transaction in which row-level security admits only `tenant`'s rows.
    async fn tenant_tx(&self, tenant: &TenantId) -> StoreResult<Transaction<'static, Postgres>> {
        self.scope_tx(tenant.as_str()).await
    }

    /// A transaction in which row-level security admits only the rows whose `tenant_id`
    /// is `key` (a tenant's id, or `''` for the platform's status page).
    async fn scope_tx(&self, key: &str) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        sqlx::query("SELECT set_config('custos.tenant_id', $1, true)")
            .bind(key)
            .execute(&mut *tx)
            .await
            .ctx("setting the tenant")?;
        Ok(tx)
    }

    async fn insert<R: Rollup>(
        &self,
        tenant: &TenantId,
        records: Vec<R>,
        received_at: Timestamp,
    ) -> StoreResult<IngestSummary> {
        let spec = table::spec_of::<R>();
        let encoded = records.iter().map(|r| table::encode_for_insert(spec, r)).collect();
        let (mut unique, duplicates) = table::dedupe_batch(R::KIND, encoded)?;
        let mut summary = IngestSummary { inserted: 0, duplicates };
        let mut rollups = Vec::new();
        let mut tx = self.tenant_tx(tenant).await?;
        let sql = insert_sql(spec);
        for chunk in unique.chunks_mut(INSERT_CHUNK) {
            let inserted: Vec<String> =
                bind_chunk(sqlx::query_scalar(sql_text(sql.clone())), spec, tenant, received_at, chunk)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx("inserting records")?;
            summary.inserted += inserted.len();
            if inserted.len() == chunk.len() {
                rollups.extend(chunk.iter_mut().filter_map(|r| r.rollup.take()));
                continue;
            }
            let inserted: HashSet<String> = inserted.into_iter().collect();
            rollups.extend(chunk.iter_mut().filter(|r| inserted.contains(r.id())).filter_map(|r| r.rollup.take()));
            let others: Vec<&EncodedRecord> = chunk.iter().filter(|r| !inserted.contains(r.id())).collect();
            let ids: Vec<&str> = others.iter().map(|r| r.id()).collect();
            let stored: Vec<(String, Vec<u8>)> = sqlx::query_as(sql_text(format!(
                "SELECT id, content_sha256 FROM {} WHERE tenant_id = $1 AND id = ANY($2)",
                spec.table
            )))
            .bind(tenant.as_str())
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading digests")?;
            let stored: std::collections::HashMap<String, Vec<u8>> = stored.into_iter().collect();
            for record in others {
                match stored.get(record.id()) {
                    Some(digest) if digest[..] == record.digest[..] => summary.duplicates += 1,
                    _ => {
                        return Err(StoreError::Conflict { kind: R::KIND, id: record.id().to_owned() });
                    }
                }
            }
        }
        let cap = self.series_cap.load(Ordering::Relaxed);
        apply_rollups(&mut tx, tenant, R::FAMILY, rollups, cap, received_at).await?;
        // A failed run and its timeline event commit together (a re-sent one is a
        // duplicate of both).
        let failures = crate::ledger::failure_events(tenant, &records);
        if !failures.is_empty() {
            postgres_ledger::append(&mut tx, tenant, LogName::Timeline, failures, received_at)
                .await
                .map_err(StoreError::record_not_written)?;
        }
        tx.commit().await.ctx("committing an ingest transaction")?;
        Ok(summary)
    }

    async fn page<R: IngestRecord>(&self, tenant: &TenantId, query: &RecordQuery) -> StoreResult<Page<Stored<R>>> {
        let spec = table::spec_of::<R>();
        let (sql, params) = table::page_sql(spec, query, Dialect::Postgres)?;
        let mut statement = sqlx::query(sql_text(sql)).bind(tenant.as_str());
        for value in params {
            statement = match value {
                Value::Int(i) => statement.bind(i),
                Value::Text(s) => statement.bind(s),
                Value::Null => statement.bind(None::<String>),
                Value::NullInt => statement.bind(None::<i64>),
            };
        }
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = statement.fetch_all(&mut *tx).await.ctx("reading a page")?;
        tx.commit().await.ctx("ending a read transaction")?;
        let items =
            rows.iter().map(|row| table::decode(spec, row_values(spec, row)?)).collect::<StoreResult<Vec<_>>>()?;
        Ok(table::into_page(items, query.limit))
    }

    /// A rollup read in the tenant's read transaction: parameters are the tenant, the
    /// family and, when given, the hour holding `since`; each row decoded by `decode`.
    async fn read_rollup<T>(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Option<Timestamp>,
        sql: String,
        what: &'static str,
        decode: fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let mut query = sqlx::query(sql_text(sql)).bind(tenant.as_str()).bind(family.as_str());
        if let Some(since) = since {
            query = query.bind(rollup::bucket_of(since.as_micros()));
        }
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = query.fetch_all(&mut *tx).await.ctx(what)?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(decode).collect()
    }

    /// Empties the rollup tables and refills them with migration 0002's backfill from
    /// the stored records (as the owner): for the test that the backfill agrees with
    /// the ingest path.
    #[doc(hidden)]
    pub async fn rerun_rollup_backfill(&self) -> StoreResult<()> {
        let mut conn = self.owner_connection().await?;
        let mut tx = conn.begin().await.ctx("beginning")?;
        tx.execute(
            "DELETE FROM metric_series; DELETE FROM queue_latest; DELETE FROM metric_buckets; \
             DELETE FROM series_last_error;",
        )
        .await
        .ctx("emptying rollups")?;
        tx.execute(rollup::backfill_sql(MIGRATIONS[1].sql)).await.ctx("backfilling rollups")?;
        tx.execute(rollup::backfill_sql(MIGRATIONS[4].sql)).await.ctx("backfilling hourly rollups")?;
        tx.commit().await.ctx("committing")
    }

    /// Empties the hourly rollups and last errors and refills them with migration
    /// 0005's backfill, keeping `metric_series` (and so its folds) as stored.
    #[doc(hidden)]
    pub async fn rerun_hourly_backfill(&self) -> StoreResult<()> {
        let mut conn = self.owner_connection().await?;
        let mut tx = conn.begin().await.ctx("beginning")?;
        tx.execute("DELETE FROM metric_buckets; DELETE FROM series_last_error;").await.ctx("emptying rollups")?;
        tx.execute(rollup::backfill_sql(MIGRATIONS[4].sql)).await.ctx("backfilling hourly rollups")?;
        tx.commit().await.ctx("committing")
    }

    /// The benchmark baseline: a prepared batch inserted with the same prepared
    /// `INSERT … SELECT FROM UNNEST` statement in one transaction, with no parsing,
    /// validation, encoding, idempotency checks or HTTP.
    pub async fn baseline_insert_rule_runs(
        &self,
        tenant: &TenantId,
        batch: BaselineBatch,
        received_at: Timestamp,
    ) -> StoreResult<usize> {
        let spec = &table::RULE_RUNS;
        let mut tx = self.tenant_tx(tenant).await?;
        let sql = insert_sql(spec);
        for chunk in batch.0.chunks(INSERT_CHUNK) {
            bind_chunk(sqlx::query_scalar::<_, String>(sql_text(sql.clone())), spec, tenant, received_at, chunk)
                .fetch_all(&mut *tx)
                .await
                .ctx("inserting")?;
        }
        tx.commit().await.ctx("committing")?;
        Ok(batch.0.len())
    }
}

fn insert_sql(spec: &TableSpec) -> String {
    let columns: Vec<&str> = spec.columns.iter().map(|c| c.column).collect();
    let arrays: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = match c.ty {
                ColType::Text | ColType::Json => "text",
                ColType::Int | ColType::Time => "bigint",
            };
            format!("${}::{ty}[]", i + 3)
        })
        .collect();
    format!(
        "INSERT INTO {table} (tenant_id, received_at_us, {columns}, content_sha256)
         SELECT $1, $2, * FROM UNNEST({arrays}, ${digest}::bytea[])
         ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id",
        table = spec.table,
        columns = columns.join(", "),
        arrays = arrays.join(", "),
        digest = spec.columns.len() + 3,
    )
}

/// Marks SQL text assembled from this module's constants and the static table specs as
/// safe to send: no value is ever formatted into it, every value is a bound parameter.
/// Adds the inserted records to the metric rollups, in the ingest transaction.
async fn apply_rollups(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    family: Option<RollupFamily>,
    items: Vec<RollupItem>,
    cap: usize,
    received_at: Timestamp,
) -> StoreResult<()> {
    let (contributions, queues) = rollup::split(items);
    if let Some(family) = family
        && !contributions.is_empty()
    {
        let batch = rollup::aggregate(contributions);
        let mut new = new_series(tx, tenant, family, &batch.series).await?;
        let batch = if new.is_empty() {
            batch
        } else {
            // Replicas adding series to the same family take turns, so the cap holds
            // across them; the decision is made on what is committed once it is our turn.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("custos.metric_series/{}/{}", tenant.as_str(), family.as_str()))
                .execute(&mut **tx)
                .await
                .ctx("locking the series count")?;
            new = new_series(tx, tenant, family, &batch.series).await?;
            let stored: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM metric_series WHERE tenant_id = $1 AND family = $2 AND series_key <> ''",
            )
            .bind(tenant.as_str())
            .bind(family.as_str())
            .fetch_one(&mut **tx)
            .await
            .ctx("counting series")?;
            rollup::fold_over_cap(batch, new, cap.saturating_sub(stored as usize))
        };
        upsert_series(tx, tenant, family, &batch.series, received_at).await?;
        upsert_buckets(tx, tenant, family, &batch.buckets).await?;
        let upsert_error = rollup::upsert_error_sql(["$1", "$2", "$3", "$4", "$5", "$6"], " COLLATE \"C\"");
        let mut errors: Vec<_> = batch.last_errors().into_iter().collect();
        errors.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, error) in errors {
            sqlx::query(sql_text(upsert_error.clone()))
                .bind(tenant.as_str())
                .bind(family.as_str())
                .bind(key)
                .bind(error.at_us)
                .bind(error.record_id)
                .bind(error.message)
                .execute(&mut **tx)
                .await
                .ctx("upserting a series' last error")?;
        }
    }
    let upsert_queue = format!(
        "INSERT INTO queue_latest ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) {}",
        rollup::QUEUE_COLUMNS,
        rollup::upsert_queue_conflict_clause(" COLLATE \"C\"")
    );
    for q in rollup::latest_per_queue(queues) {
        sqlx::query(sql_text(upsert_queue.clone()))
            .bind(tenant.as_str())
            .bind(&q.component_id)
            .bind(&q.id)
            .bind(q.observed_at.as_micros())
            .bind(q.depth.pending)
            .bind(q.depth.in_flight)
            .bind(q.depth.retrying)
            .bind(q.depth.dead_lettered)
            .bind(q.oldest_item_age_ms)
            .bind(q.processed_total)
            .bind(q.failed_total)
            .bind(received_at.as_micros())
            .execute(&mut **tx)
            .await
            .ctx("upserting a queue's latest snapshot")?;
    }
    Ok(())
}

/// The batch's series not stored yet (the overflow series aside).
async fn new_series(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    family: RollupFamily,
    batch: &std::collections::HashMap<(String, String), SeriesValues>,
) -> StoreResult<Vec<(String, String)>> {
    let (keys, statuses): (Vec<&str>, Vec<&str>) =
        batch.keys().map(|(key, status)| (key.as_str(), status.as_str())).unzip();
    // Not a prepared statement (`persistent(false)`), so it is planned with this
    // batch's arrays every time. The generic plan PostgreSQL switches a prepared
    // statement to after five runs scans the family once per pair (measured: 5 s per
    // lookup of 10,000 pairs among 10,000 series; the whole 10,000-record ingest takes
    // 0.3 s with a plan for the actual arrays).
    let stored: HashSet<(String, String)> = sqlx::query_as(
        "SELECT m.series_key, m.status FROM UNNEST($3::text[], $4::text[]) AS b(series_key, status)
         JOIN metric_series AS m
           ON m.tenant_id = $1 AND m.family = $2 AND m.series_key = b.series_key AND m.status = b.status",
    )
    .persistent(false)
    .bind(tenant.as_str())
    .bind(family.as_str())
    .bind(&keys)
    .bind(&statuses)
    .fetch_all(&mut **tx)
    .await
    .ctx("looking up series")?
    .into_iter()
    .collect();
    Ok(batch.keys().filter(|k| k.0 != rollup::FOLDED_KEY && !stored.contains(*k)).cloned().collect())
}

/// The `UNNEST` array types of the value columns (`rollup::bucket_value_columns`).
fn value_array_types() -> Vec<&'static str> {
    let mut types = vec!["bigint[]", "bigint[]", "float8[]"];
    types.extend(["bigint[]"; rollup::BUCKETS]);
    types.extend(["float8[]"; 4]);
    types.push("bigint[]");
    types
}

/// Binds the value columns of `values`, in `rollup::bucket_value_columns` order.
fn bind_series_values<'q>(mut query: PgQuery<'q>, values: &[&SeriesValues]) -> PgQuery<'q> {
    query = query
        .bind(values.iter().map(|v| v.records).collect::<Vec<_>>())
        .bind(values.iter().map(|v| v.observations).collect::<Vec<_>>())
        .bind(values.iter().map(|v| v.sum).collect::<Vec<_>>());
    for bucket in 0..rollup::BUCKETS {
        query = query.bind(values.iter().map(|v| v.buckets[bucket]).collect::<Vec<_>>());
    }
    for total in 0..4 {
        query = query.bind(values.iter().map(|v| v.totals[total]).collect::<Vec<_>>());
    }
    query.bind(values.iter().map(|v| v.last_us).collect::<Vec<_>>())
}

/// `$first::type, …` for `types`.
fn array_params(types: &[&str], first: usize) -> String {
    types.iter().enumerate().map(|(i, ty)| format!("${}::{ty}", i + first)).collect::<Vec<_>>().join(", ")
}

/// One `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE` for the whole batch.
async fn upsert_series(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    family: RollupFamily,
    batch: &std::collections::HashMap<(String, String), SeriesValues>,
    received_at: Timestamp,
) -> StoreResult<()> {
    let mut types = vec!["text[]", "text[]"];
    types.extend(value_array_types());
    types.push("bigint[]");
    let sql = format!(
        "INSERT INTO metric_series (tenant_id, family, series_key, status, {}) SELECT $1, $2, u.* FROM UNNEST({}) AS u {}",
        rollup::value_columns().join(", "),
        array_params(&types, 3),
        rollup::upsert_series_conflict_clause()
    );
    // In key order, so concurrent ingests lock the rows they share in the same order.
    let mut series: Vec<(&(String, String), &SeriesValues)> = batch.iter().collect();
    series.sort_by(|a, b| a.0.cmp(b.0));
    let query = sqlx::query(sql_text(sql))
        .bind(tenant.as_str())
        .bind(family.as_str())
        .bind(series.iter().map(|((key, _), _)| key.as_str()).collect::<Vec<_>>())
        .bind(series.iter().map(|((_, status), _)| status.as_str()).collect::<Vec<_>>());
    let values: Vec<&SeriesValues> = series.iter().map(|(_, v)| *v).collect();
    bind_series_values(query, &values)
        .bind(vec![received_at.as_micros(); series.len()])
        .execute(&mut **tx)
        .await
        .ctx("upserting series")?;
    Ok(())
}

/// The batch's hours, in one statement like [`upsert_series`].
async fn upsert_buckets(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    family: RollupFamily,
    batch: &std::collections::HashMap<(String, String, i64), SeriesValues>,
) -> StoreResult<()> {
    let mut types = vec!["bigint[]", "text[]", "text[]"];
    types.extend(value_array_types());
    let sql = format!(
        "INSERT INTO metric_buckets (tenant_id, family, bucket_us, series_key, status, {}) \
         SELECT $1, $2, u.* FROM UNNEST({}) AS u {}",
        rollup::bucket_value_columns().join(", "),
        array_params(&types, 3),
        rollup::upsert_bucket_conflict_clause()
    );
    let mut hours: Vec<(&(String, String, i64), &SeriesValues)> = batch.iter().collect();
    hours.sort_by(|a, b| (a.0.2, &a.0.0, &a.0.1).cmp(&(b.0.2, &b.0.0, &b.0.1)));
    let query = sqlx::query(sql_text(sql))
        .bind(tenant.as_str())
        .bind(family.as_str())
        .bind(hours.iter().map(|((_, _, hour), _)| *hour).collect::<Vec<_>>())
        .bind(hours.iter().map(|((key, _, _), _)| key.as_str()).collect::<Vec<_>>())
        .bind(hours.iter().map(|((_, status, _), _)| status.as_str()).collect::<Vec<_>>());
    let values: Vec<&SeriesValues> = hours.iter().map(|(_, v)| *v).collect();
    bind_series_values(query, &values).execute(&mut **tx).await.ctx("upserting hourly buckets")?;
    Ok(())
}

async fn read_incident_updates(
    tx: &mut Transaction<'static, Postgres>,
    key: &str,
    id: &str,
) -> StoreResult<Vec<IncidentUpdate>> {
    let rows = sqlx::query(status::incident_updates_sql())
        .bind(key)
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .ctx("reading incident updates")?;
    rows.iter().map(|r| status::update_from_row(r).map(|(_, update)| update)).collect()
}

async fn insert_incident_update(
    tx: &mut Transaction<'static, Postgres>,
    key: &str,
    id: &str,
    update: &IncidentUpdate,
) -> StoreResult<()> {
    sqlx::query(status::INSERT_UPDATE_SQL)
        .bind(key)
        .bind(id)
        .bind(update.seq)
        .bind(update.at.as_micros())
        .bind(update.status.as_str())
        .bind(update.impact.as_str())
        .bind(&update.message)
        .execute(&mut **tx)
        .await
        .ctx("storing an incident update")?;
    Ok(())
}

fn sql_text(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Runs `sql` with `values` bound in order; the rows it changed.
async fn exec(conn: &mut PgConnection, sql: &str, values: &[Value], what: &'static str) -> StoreResult<u64> {
    let statement = bind_values(sqlx::query(sql_text(sql.to_owned())), values);
    Ok(statement.execute(conn).await.ctx(what)?.rows_affected())
}

/// Every row of `sql` with `values` bound in order, decoded.
async fn fetch<T>(
    conn: &mut PgConnection,
    sql: &str,
    values: &[Value],
    decode: impl Fn(&PgRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let statement = bind_values(sqlx::query(sql_text(sql.to_owned())), values);
    statement.fetch_all(conn).await.ctx("reading")?.iter().map(decode).collect()
}

/// Binds `values` in order after the parameters already bound.
fn bind_values<'q>(mut statement: PgQuery<'q>, values: &[Value]) -> PgQuery<'q> {
    for value in values {
        statement = match value {
            Value::Int(i) => statement.bind(*i),
            Value::Text(s) => statement.bind(s.clone()),
            Value::Null => statement.bind(None::<String>),
            Value::NullInt => statement.bind(None::<i64>),
        };
    }
    statement
}

/// Binds rows of `values` column by column as arrays (`$2::text[]`, `$3::bigint[]`,
/// …) for `INSERT … SELECT FROM unnest(…)`; `int` says which columns are integers.
fn bind_columns<'q>(mut statement: PgQuery<'q>, rows: &[Vec<Value>], int: &[bool]) -> PgQuery<'q> {
    for (column, is_int) in int.iter().enumerate() {
        if *is_int {
            let values: Vec<Option<i64>> =
                rows.iter().map(|row| if let Value::Int(i) = row[column] { Some(i) } else { None }).collect();
            statement = statement.bind(values);
        } else {
            let values: Vec<Option<String>> =
                rows.iter().map(|row| if let Value::Text(s) = &row[column] { Some(s.clone()) } else { None }).collect();
            statement = statement.bind(values);
        }
    }
    statement
}

/// `unnest($2::text[], $3::bigint[], …)` for columns typed by `int`.
fn unnest_params(int: &[bool]) -> String {
    let params: Vec<String> = int
        .iter()
        .enumerate()
        .map(|(i, is_int)| format!("${}::{}[]", i + 2, if *is_int { "bigint" } else { "text" }))
        .collect();
    format!("unnest({})", params.join(", "))
}

const STATE_INT: [bool; 12] = [false, false, false, true, true, true, true, false, true, true, true, true];
const PING_INT: [bool; 9] = [false, false, false, false, true, true, false, false, true];
const FLIP_INT: [bool; 6] = [false, false, true, false, false, false];

/// Writes a batch's job states (updated: the rows exist and are locked), pings and
/// flips, each as one statement.
async fn write_job_rows(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    writes: &jobs::JobWrites,
) -> StoreResult<()> {
    if !writes.states.is_empty() {
        let rows: Vec<Vec<Value>> = writes
            .states
            .iter()
            .map(|(job_id, state)| {
                let mut row = vec![Value::Text(job_id.clone())];
                row.extend(jobs::state_values(state));
                row
            })
            .collect();
        let assignments: Vec<String> = jobs::STATE_COLUMNS.iter().map(|c| format!("{c} = u.{c}")).collect();
        let sql = format!(
            "UPDATE job_states s SET {} FROM {} AS u(job_id, {}) WHERE s.tenant_id = $1 AND s.job_id = u.job_id",
            assignments.join(", "),
            unnest_params(&STATE_INT),
            jobs::STATE_COLUMNS.join(", ")
        );
        bind_columns(sqlx::query(sql_text(sql)).bind(tenant.as_str()), &rows, &STATE_INT)
            .execute(&mut **tx)
            .await
            .ctx("writing job states")?;
    }
    let insert = |table: &str, columns: &[&str], int: &[bool]| {
        format!("INSERT INTO {table} (tenant_id, {}) SELECT $1, * FROM {}", columns.join(", "), unnest_params(int))
    };
    if !writes.pings.is_empty() {
        let rows: Vec<Vec<Value>> = writes.pings.iter().map(jobs::ping_values).collect();
        bind_columns(
            sqlx::query(sql_text(insert("job_pings", jobs::PING_COLUMNS, &PING_INT))).bind(tenant.as_str()),
            &rows,
            &PING_INT,
        )
        .execute(&mut **tx)
        .await
        .ctx("writing pings")?;
    }
    if !writes.flips.is_empty() {
        let rows: Vec<Vec<Value>> = writes.flips.iter().map(jobs::flip_values).collect();
        bind_columns(
            sqlx::query(sql_text(insert("job_flips", jobs::FLIP_COLUMNS, &FLIP_INT))).bind(tenant.as_str()),
            &rows,
            &FLIP_INT,
        )
        .execute(&mut **tx)
        .await
        .ctx("writing flips")?;
    }
    Ok(())
}

/// `SELECT` of scheduled-job components (`c`) left-joined to their states (`s`) for
/// the tenant in `$1`, then `rest`.
fn select_jobs_sql(rest: &str) -> String {
    let component_columns: Vec<String> = COMPONENT_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let state_columns: Vec<String> = jobs::STATE_COLUMNS.iter().map(|c| format!("s.{c}")).collect();
    format!(
        "SELECT {}, {} FROM components c LEFT JOIN job_states s ON s.tenant_id = c.tenant_id AND s.job_id = c.id \
         WHERE c.tenant_id = $1 AND c.kind = 'scheduled_job'{rest}",
        component_columns.join(", "),
        state_columns.join(", ")
    )
}

fn job_from_row(row: &PgRow) -> StoreResult<JobRecord> {
    let component = crate::component_from_row(row)?;
    Ok(JobRecord { state: jobs::state_from_row(row, COMPONENT_COLUMN_COUNT)?, component })
}

type ScalarQuery<'q> = sqlx::query::QueryScalar<'q, Postgres, String, sqlx::postgres::PgArguments>;

/// Binds a chunk column by column, as the arrays `insert_sql` unnests.
fn bind_chunk<'q>(
    mut query: ScalarQuery<'q>,
    spec: &TableSpec,
    tenant: &TenantId,
    received_at: Timestamp,
    chunk: &[EncodedRecord],
) -> ScalarQuery<'q> {
    query = query.bind(tenant.as_str().to_owned()).bind(received_at.as_micros());
    for (i, column) in spec.columns.iter().enumerate() {
        query = match column.ty {
            ColType::Text | ColType::Json => query.bind(
                chunk
                    .iter()
                    .map(|r| match &r.values[i] {
                        Value::Text(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Vec<Option<String>>>(),
            ),
            ColType::Int | ColType::Time => query.bind(
                chunk
                    .iter()
                    .map(|r| match r.values[i] {
                        Value::Int(v) => Some(v),
                        _ => None,
                    })
                    .collect::<Vec<Option<i64>>>(),
            ),
        };
    }
    query.bind(chunk.iter().map(|r| r.digest.to_vec()).collect::<Vec<Vec<u8>>>())
}

fn row_values(spec: &TableSpec, row: &PgRow) -> StoreResult<Vec<Value>> {
    let mut values = Vec::with_capacity(spec.columns.len() + 1);
    for (i, column) in spec.columns.iter().enumerate() {
        let value = match column.ty {
            ColType::Text | ColType::Json => {
                row.try_get::<Option<String>, _>(i).ctx("reading a column")?.map(Value::Text)
            }
            ColType::Int | ColType::Time => row.try_get::<Option<i64>, _>(i).ctx("reading a column")?.map(Value::Int),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    values.push(Value::Int(row.try_get::<i64, _>(spec.columns.len()).ctx("reading received_at_us")?));
    Ok(values)
}

impl table::RowReader for PgRow {
    fn text(&self, index: usize) -> StoreResult<String> {
        self.try_get(index).ctx("reading a row")
    }
    fn int(&self, index: usize) -> StoreResult<i64> {
        self.try_get(index).ctx("reading a row")
    }
    fn real(&self, index: usize) -> StoreResult<f64> {
        self.try_get(index).ctx("reading a row")
    }
    fn opt_int(&self, index: usize) -> StoreResult<Option<i64>> {
        self.try_get(index).ctx("reading a row")
    }
    fn opt_text(&self, index: usize) -> StoreResult<Option<String>> {
        self.try_get(index).ctx("reading a row")
    }
}

const TOKEN_COLUMNS: &str = "id, name, secret_hash, scopes, created_at_us, expires_at_us, revoked_at_us";

fn token_from_row(row: &PgRow) -> StoreResult<TokenRecord> {
    let scopes: String = row.try_get("scopes").ctx("reading a token")?;
    Ok(TokenRecord {
        id: row.try_get("id").ctx("reading a token")?,
        name: row.try_get("name").ctx("reading a token")?,
        secret_hash: row.try_get("secret_hash").ctx("reading a token")?,
        scopes: parse_scopes(&scopes),
        created_at: Timestamp::from_micros(row.try_get("created_at_us").ctx("reading a token")?),
        expires_at: row.try_get::<Option<i64>, _>("expires_at_us").ctx("reading a token")?.map(Timestamp::from_micros),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at_us").ctx("reading a token")?.map(Timestamp::from_micros),
    })
}

fn tenant_from_row(row: &PgRow) -> StoreResult<Tenant> {
    let id: String = row.try_get("id").ctx("reading a tenant")?;
    Ok(Tenant {
        id: TenantId::parse(&id).map_err(|e| StoreError::Corrupt { what: "tenant", detail: e.to_string() })?,
        name: row.try_get("name").ctx("reading a tenant")?,
        retention_days: row.try_get("retention_days").ctx("reading a tenant")?,
        created_at: Timestamp::from_micros(row.try_get("created_at_us").ctx("reading a tenant")?),
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<usize> {
        let mut conn = self.owner_connection().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut conn)
            .await
            .ctx("taking the migration lock")?;
        let result = apply_migrations(&mut conn).await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut conn).await;
        let applied = result?;
        unlock.ctx("releasing the migration lock")?;
        Ok(applied)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.ctx("ping")?;
        Ok(())
    }

    async fn schema_is_current(&self) -> StoreResult<bool> {
        let latest = MIGRATIONS.last().map_or(0, |m| m.version);
        // Before the first migration the table is missing: not current.
        Ok(self.schema_version().await.unwrap_or(0) >= latest)
    }

    async fn privileged_role(&self) -> StoreResult<Option<String>> {
        // Every role the session's login role is, or can become (SET ROLE), that could
        // get around row-level security: superusers, BYPASSRLS, the owners of custos's
        // tables (who can disable their policies and triggers).
        // Also CREATEROLE (before PostgreSQL 16 it can grant itself any role) and the
        // owners of the schema and the database (who can drop custos's tables).
        let found: Option<(String, bool, bool, bool)> = sqlx::query_as(
            "SELECT r.rolname, r.rolsuper, r.rolbypassrls OR r.rolcreaterole, \
                    EXISTS (SELECT 1 FROM pg_class AS c WHERE c.relowner = r.oid \
                            AND c.relnamespace = current_schema()::regnamespace) \
                    OR EXISTS (SELECT 1 FROM pg_namespace AS n WHERE n.oid = current_schema()::regnamespace \
                               AND n.nspowner = r.oid) \
                    OR EXISTS (SELECT 1 FROM pg_database AS d WHERE d.datname = current_database() \
                               AND d.datdba = r.oid) AS owns \
             FROM pg_roles AS r \
             WHERE pg_has_role(session_user, r.oid, 'MEMBER') \
               AND (r.rolsuper OR r.rolbypassrls OR r.rolcreaterole \
                    OR EXISTS (SELECT 1 FROM pg_class AS c WHERE c.relowner = r.oid \
                               AND c.relnamespace = current_schema()::regnamespace) \
                    OR EXISTS (SELECT 1 FROM pg_namespace AS n WHERE n.oid = current_schema()::regnamespace \
                               AND n.nspowner = r.oid) \
                    OR EXISTS (SELECT 1 FROM pg_database AS d WHERE d.datname = current_database() \
                               AND d.datdba = r.oid)) \
             ORDER BY r.rolname = session_user DESC, r.rolname LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .ctx("reading the session's role")?;
        let session: String = sqlx::query_scalar("SELECT session_user::text")
            .fetch_one(&self.pool)
            .await
            .ctx("reading the session's role")?;
        Ok(found.map(|(role, superuser, bypass, owns)| {
            let what = if superuser {
                "is a superuser"
            } else if bypass {
                "has BYPASSRLS or CREATEROLE"
            } else if owns {
                "owns custos's tables, their schema or the database"
            } else {
                "can bypass row-level security"
            };
            if role == session {
                format!("the database role {session:?} {what}")
            } else {
                format!("the database role {session:?} can become {role:?}, which {what}")
            }
        }))
    }

    async fn schema_version(&self) -> StoreResult<i64> {
        let version: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .ctx("reading the schema version")?;
        Ok(version.unwrap_or(0))
    }

    fn expected_schema_version(&self) -> i64 {
        MIGRATIONS.last().map_or(0, |m| m.version)
    }

    async fn describe_schema(&self) -> StoreResult<SchemaDescription> {
        let mut conn = self.owner_connection().await?;
        let mut schema = SchemaDescription::default();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .ctx("listing tables")?;
        for name in tables {
            let mut table = TableDescription::default();
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, is_nullable::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(&name)
            .fetch_all(&mut conn)
            .await
            .ctx("listing columns")?;
            table.columns = columns.into_iter().map(|(c, nullable)| (c, nullable == "YES")).collect();
            let indexes: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
                "SELECT i.relname::text, ix.indisunique, ix.indisprimary,
                        array_agg(coalesce(a.attname::text, '(expression)') ORDER BY k.ord)
                 FROM pg_index ix
                 JOIN pg_class t ON t.oid = ix.indrelid
                 JOIN pg_class i ON i.oid = ix.indexrelid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                 WHERE n.nspname = current_schema() AND t.relname = $1
                 GROUP BY i.relname, ix.indisunique, ix.indisprimary",
            )
            .bind(&name)
            .fetch_all(&mut conn)
            .await
            .ctx("listing indexes")?;
            for (index, unique, primary, columns) in indexes {
                if primary {
                    table.primary_key = columns;
                } else {
                    table.indexes.insert(index, (columns, unique));
                }
            }
            schema.tables.insert(name, table);
        }
        Ok(schema)
    }

    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let result =
            sqlx::query("INSERT INTO tenants (id, name, retention_days, created_at_us) VALUES ($1, $2, $3, $4)")
                .bind(tenant.id.as_str())
                .bind(&tenant.name)
                .bind(tenant.retention_days)
                .bind(tenant.created_at.as_micros())
                .execute(&self.pool)
                .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::AlreadyExists { what: "tenant", id: tenant.id.to_string() })
            }
            Err(e) => Err(e).ctx("creating a tenant"),
        }
    }

    async fn tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, retention_days, created_at_us FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a tenant")?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, retention_days, created_at_us FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .ctx("listing tenants")?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn create_token(&self, token: &TokenRecord) -> StoreResult<()> {
        let result = sqlx::query(sql_text(format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.secret_hash)
        .bind(format_scopes(&token.scopes))
        .bind(token.created_at.as_micros())
        .bind(token.expires_at.map(Timestamp::as_micros))
        .bind(token.revoked_at.map(Timestamp::as_micros))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists { what: "token", id: token.id.clone() }),
            Err(e) => Err(e).ctx("creating a token"),
        }
    }

    async fn token_by_secret_hash(&self, secret_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(sql_text(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = $1")))
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a token")?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query(sql_text(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_us, id")))
            .fetch_all(&self.pool)
            .await
            .ctx("listing tokens")?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: Timestamp) -> StoreResult<TokenRecord> {
        let row = sqlx::query(sql_text(format!(
            "UPDATE api_tokens SET revoked_at_us = COALESCE(revoked_at_us, $2) WHERE id = $1 RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(id)
        .bind(at.as_micros())
        .fetch_optional(&self.pool)
        .await
        .ctx("revoking a token")?;
        match row {
            Some(row) => token_from_row(&row),
            None => Err(StoreError::NotFound { what: "token", id: id.to_owned() }),
        }
    }

    async fn create_console_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.ctx("beginning")?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at_us < $1")
            .bind(session.created_at.as_micros())
            .execute(&mut *tx)
            .await
            .ctx("forgetting expired sessions")?;
        sqlx::query(
            "INSERT INTO console_sessions (secret_hash, token_id, created_at_us, expires_at_us, ended_at_us) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.secret_hash)
        .bind(&session.token_id)
        .bind(session.created_at.as_micros())
        .bind(session.expires_at.as_micros())
        .bind(session.ended_at.map(Timestamp::as_micros))
        .execute(&mut *tx)
        .await
        .ctx("storing a session")?;
        tx.commit().await.ctx("committing a session")
    }

    async fn console_session(&self, secret_hash: &str) -> StoreResult<Option<(ConsoleSession, TokenRecord)>> {
        let row = sqlx::query(
            "SELECT token_id, created_at_us, expires_at_us, ended_at_us FROM console_sessions WHERE secret_hash = $1",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up a session")?;
        let Some(row) = row else { return Ok(None) };
        let session = ConsoleSession {
            secret_hash: secret_hash.to_owned(),
            token_id: row.try_get("token_id").ctx("reading a session")?,
            created_at: Timestamp::from_micros(row.try_get("created_at_us").ctx("reading a session")?),
            expires_at: Timestamp::from_micros(row.try_get("expires_at_us").ctx("reading a session")?),
            ended_at: row
                .try_get::<Option<i64>, _>("ended_at_us")
                .ctx("reading a session")?
                .map(Timestamp::from_micros),
        };
        let token = sqlx::query(sql_text(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1")))
            .bind(&session.token_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a session's token")?;
        token.as_ref().map(token_from_row).transpose().map(|token| token.map(|token| (session, token)))
    }

    async fn end_console_session(&self, secret_hash: &str, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE console_sessions SET ended_at_us = COALESCE(ended_at_us, $2) WHERE secret_hash = $1")
            .bind(secret_hash)
            .bind(at.as_micros())
            .execute(&self.pool)
            .await
            .ctx("ending a session")?;
        Ok(())
    }

    async fn put_component(&self, tenant: &TenantId, component: &Component) -> StoreResult<(PutOutcome, Component)> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = crate::component_values(component);
        let placeholders: Vec<String> = (1..=values.len() + 1).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO components (tenant_id, {COMPONENT_COLUMNS}) VALUES ({}) ON CONFLICT (tenant_id, id) DO NOTHING",
            placeholders.join(", ")
        );
        // Every column but tenant_id, id and created_at_us.
        let assignments: Vec<String> = COMPONENT_COLUMNS
            .split(", ")
            .enumerate()
            .filter(|(_, c)| !matches!(*c, "id" | "created_at_us"))
            .map(|(i, c)| format!("{c} = ${}", i + 2))
            .collect();
        let update = format!("UPDATE components SET {} WHERE tenant_id = $1 AND id = $2", assignments.join(", "));
        // Two replicas may create the same component at once: the loser of the insert
        // race finds the winner's row on its second pass and updates it.
        for _ in 0..2 {
            let existing = sqlx::query(sql_text(format!(
                "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
            )))
            .bind(tenant.as_str())
            .bind(&component.id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a component")?;
            let outcome = match existing.as_ref().map(crate::component_from_row).transpose()? {
                None => {
                    let inserted = bind_values(sqlx::query(sql_text(insert.clone())).bind(tenant.as_str()), &values)
                        .execute(&mut *tx)
                        .await
                        .ctx("inserting a component")?;
                    if inserted.rows_affected() == 0 {
                        continue;
                    }
                    (PutOutcome::Created, component.clone())
                }
                Some(old) if old.same_definition(component) => (PutOutcome::Unchanged, old),
                Some(old) => {
                    bind_values(sqlx::query(sql_text(update.clone())).bind(tenant.as_str()), &values)
                        .execute(&mut *tx)
                        .await
                        .ctx("updating a component")?;
                    (PutOutcome::Updated, Component { created_at: old.created_at, ..component.clone() })
                }
            };
            tx.commit().await.ctx("committing")?;
            return Ok(outcome);
        }
        // Unreachable in practice: a lost insert race waits for the winner's commit, so
        // the second pass finds its row. Components are never deleted.
        Err(StoreError::AlreadyExists { what: "component", id: component.id.clone() })
    }

    async fn component(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<Component>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(sql_text(format!(
            "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading a component")?;
        tx.commit().await.ctx("ending a read transaction")?;
        row.as_ref().map(crate::component_from_row).transpose()
    }

    async fn components(&self, tenant: &TenantId) -> StoreResult<Vec<Component>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql_text(format!(
            "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 ORDER BY kind, id"
        )))
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await
        .ctx("listing components")?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(crate::component_from_row).collect()
    }

    async fn put_freshness_policy(&self, tenant: &TenantId, policy: &FreshnessPolicy) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO freshness_policies (tenant_id, provider, green_under_seconds, yellow_under_seconds, updated_at_us)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, provider) DO UPDATE SET green_under_seconds = excluded.green_under_seconds,
                yellow_under_seconds = excluded.yellow_under_seconds, updated_at_us = excluded.updated_at_us",
        )
        .bind(tenant.as_str())
        .bind(&policy.provider)
        .bind(policy.thresholds.green_under_seconds)
        .bind(policy.thresholds.yellow_under_seconds)
        .bind(policy.updated_at.as_micros())
        .execute(&mut *tx)
        .await
        .ctx("storing a freshness policy")?;
        tx.commit().await.ctx("committing")?;
        Ok(())
    }

    async fn freshness_policies(&self, tenant: &TenantId) -> StoreResult<Vec<FreshnessPolicy>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT provider, green_under_seconds, yellow_under_seconds, updated_at_us FROM freshness_policies
             WHERE tenant_id = $1 ORDER BY provider",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await
        .ctx("listing freshness policies")?;
        tx.commit().await.ctx("ending a read transaction")?;
        Ok(rows
            .into_iter()
            .map(|(provider, green, yellow, updated)| FreshnessPolicy {
                provider,
                thresholds: FreshnessThresholds { green_under_seconds: green, yellow_under_seconds: yellow },
                updated_at: Timestamp::from_micros(updated),
            })
            .collect())
    }

    async fn last_successful_syncs(
        &self,
        tenant: &TenantId,
        integration_ids: &[String],
    ) -> StoreResult<Vec<(String, Timestamp)>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT ids.id, last.finished_at_us FROM UNNEST($2::text[]) AS ids(id)
             CROSS JOIN LATERAL (
                SELECT finished_at_us FROM connector_syncs
                WHERE tenant_id = $1 AND integration_id = ids.id AND status = 'succeeded'
                ORDER BY started_at_us DESC LIMIT 1
             ) AS last",
        )
        .bind(tenant.as_str())
        .bind(integration_ids)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading last syncs")?;
        tx.commit().await.ctx("ending a read transaction")?;
        Ok(rows.into_iter().map(|(id, us)| (id, Timestamp::from_micros(us))).collect())
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
        self.series_cap.store(cap, Ordering::Relaxed);
    }

    fn pool_stats(&self) -> crate::PoolStats {
        crate::PoolStats {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn metric_series(&self, tenant: &TenantId) -> StoreResult<Vec<SeriesRow>> {
        let sql = rollup::select_series_sql("$1", " COLLATE \"C\"");
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql_text(sql)).bind(tenant.as_str()).fetch_all(&mut *tx).await.ctx("reading series")?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(rollup::series_from_row).collect()
    }

    async fn metric_window(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<SeriesRow>> {
        let sql = rollup::select_window_sql(["$1", "$2", "$3"], " COLLATE \"C\"");
        self.read_rollup(
            tenant,
            family,
            Some(since),
            sql,
            "reading a window of hourly rollups",
            rollup::series_from_row,
        )
        .await
    }

    async fn metric_buckets(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<BucketRow>> {
        let sql = rollup::select_buckets_sql(["$1", "$2", "$3"], " COLLATE \"C\"");
        self.read_rollup(tenant, family, Some(since), sql, "reading hourly rollups", rollup::bucket_from_row).await
    }

    async fn metric_hour_totals(
        &self,
        tenant: &TenantId,
        family: RollupFamily,
        since: Timestamp,
    ) -> StoreResult<Vec<HourTotals>> {
        let sql = rollup::select_hour_totals_sql(["$1", "$2", "$3"], " COLLATE \"C\"");
        self.read_rollup(tenant, family, Some(since), sql, "reading hourly totals", rollup::hour_totals_from_row).await
    }

    async fn last_errors(&self, tenant: &TenantId, family: RollupFamily) -> StoreResult<Vec<(String, LastError)>> {
        let sql = rollup::select_errors_sql(["$1", "$2"], " COLLATE \"C\"");
        self.read_rollup(tenant, family, None, sql, "reading last errors", rollup::error_from_row).await
    }

    async fn latest_queue_snapshots(&self, tenant: &TenantId) -> StoreResult<Vec<Stored<QueueSnapshot>>> {
        let spec = &table::QUEUE_SNAPSHOTS;
        let sql = format!(
            "SELECT {} FROM queue_latest WHERE tenant_id = $1 ORDER BY component_id COLLATE \"C\"",
            table::select_columns(spec)
        );
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql_text(sql)).bind(tenant.as_str()).fetch_all(&mut *tx).await.ctx("reading queues")?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(|row| table::decode(spec, row_values(spec, row)?)).collect()
    }

    async fn apply_job_events(
        &self,
        tenant: &TenantId,
        events: Vec<JobEventRequest>,
    ) -> StoreResult<Vec<JobEventOutcome>> {
        let mut ids: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql_text(format!(
            "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 AND id = ANY($2)"
        )))
        .bind(tenant.as_str())
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading jobs")?;
        let mut targets = jobs::Targets::new();
        for row in &rows {
            let component = crate::component_from_row(row)?;
            targets.insert(component.id, (component.kind, component.schedule));
        }
        let mut job_ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| targets.get(*id).is_some_and(|(kind, _)| *kind == ComponentKind::ScheduledJob))
            .collect();
        job_ids.sort_unstable();
        let mut states = std::collections::HashMap::new();
        if !job_ids.is_empty() {
            // Rows exist first, so that locking them serialises every writer of a job,
            // its very first pings included. Sorted ids: concurrent batches lock in the
            // same order and cannot deadlock.
            sqlx::query(
                "INSERT INTO job_states (tenant_id, job_id, base_status, reported_status, pings_total, revision)
                 SELECT $1, id, 'new', 'new', 0, 0 FROM unnest($2::text[]) AS id ORDER BY id
                 ON CONFLICT (tenant_id, job_id) DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(&job_ids)
            .execute(&mut *tx)
            .await
            .ctx("creating job states")?;
            let rows = sqlx::query(sql_text(format!(
                "SELECT job_id, {} FROM job_states WHERE tenant_id = $1 AND job_id = ANY($2) ORDER BY job_id FOR UPDATE",
                jobs::STATE_COLUMNS.join(", ")
            )))
            .bind(tenant.as_str())
            .bind(&job_ids)
            .fetch_all(&mut *tx)
            .await
            .ctx("locking job states")?;
            for row in &rows {
                let job_id: String = row.try_get(0).ctx("reading a job state")?;
                states.insert(job_id, jobs::state_from_row(row, 1)?);
            }
        }
        let (outcomes, writes) = jobs::apply_events(&targets, states, events);
        write_job_rows(&mut tx, tenant, &writes).await?;
        tx.commit().await.ctx("committing")?;
        Ok(outcomes)
    }

    async fn jobs(&self, tenant: &TenantId) -> StoreResult<Vec<JobRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql_text(select_jobs_sql(" ORDER BY c.id")))
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading jobs")?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(job_from_row).collect()
    }

    async fn job(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<JobRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(sql_text(select_jobs_sql(" AND c.id = $2")))
            .bind(tenant.as_str())
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a job")?;
        tx.commit().await.ctx("ending a read transaction")?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn job_pings_page(
        &self,
        tenant: &TenantId,
        job_id: &str,
        query: &RecordQuery,
    ) -> StoreResult<Page<StoredPing>> {
        let (sql, params) = jobs::history_page_sql(jobs::History::Pings, Some(job_id), query, Dialect::Postgres);
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = bind_values(sqlx::query(sql_text(sql)).bind(tenant.as_str()), &params)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading pings")?;
        tx.commit().await.ctx("ending a read transaction")?;
        let items = rows.iter().map(jobs::ping_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(jobs::into_history_page(items, query.limit, jobs::ping_cursor))
    }

    async fn job_flips_page(
        &self,
        tenant: &TenantId,
        job_id: Option<&str>,
        query: &RecordQuery,
    ) -> StoreResult<Page<StoredFlip>> {
        let (sql, params) = jobs::history_page_sql(jobs::History::Flips, job_id, query, Dialect::Postgres);
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = bind_values(sqlx::query(sql_text(sql)).bind(tenant.as_str()), &params)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading flips")?;
        tx.commit().await.ctx("ending a read transaction")?;
        let items = rows.iter().map(jobs::flip_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(jobs::into_history_page(items, query.limit, jobs::flip_cursor))
    }

    async fn reevaluate_jobs(&self, tenant: &TenantId, now: Timestamp) -> StoreResult<Vec<StoredFlip>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(sql_text(select_jobs_sql(" AND s.job_id IS NOT NULL ORDER BY c.id")))
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading jobs")?;
        let records = rows.iter().map(job_from_row).collect::<StoreResult<Vec<_>>>()?;
        let mut writes = jobs::JobWrites::default();
        let assignments: Vec<String> =
            jobs::STATE_COLUMNS.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 4)).collect();
        let update = format!(
            "UPDATE job_states SET {} WHERE tenant_id = $1 AND job_id = $2 AND revision = $3",
            assignments.join(", ")
        );
        for (read_revision, job_id, state, flip) in jobs::reevaluate(records, now) {
            // Only if no ping (or other monitor) changed the job since it was read: a
            // ping waits for this row lock, and a concurrent pass finds the revision moved.
            let updated = bind_values(
                sqlx::query(sql_text(update.clone())).bind(tenant.as_str()).bind(&job_id).bind(read_revision),
                &jobs::state_values(&state),
            )
            .execute(&mut *tx)
            .await
            .ctx("writing a job state")?;
            if updated.rows_affected() == 1 {
                writes.flips.push(StoredFlip { id: jobs::new_row_id(), flip });
            }
        }
        write_job_rows(&mut tx, tenant, &writes).await?;
        tx.commit().await.ctx("committing")?;
        Ok(writes.flips)
    }

    async fn record_status(
        &self,
        scope: &StatusScope,
        observed: &[(String, ComponentStatus)],
        at: Timestamp,
    ) -> StoreResult<usize> {
        let mut tx = self.scope_tx(scope.key()).await?;
        // One writer per scope at a time, so two replicas do not both record a change.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('custos.status'), hashtext($1))")
            .bind(scope.key())
            .execute(&mut *tx)
            .await
            .ctx("locking the status scope")?;
        let rows = sqlx::query(status::LATEST_STATUS_SQL)
            .bind(scope.key())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading the latest states")?;
        let latest = rows.iter().map(status::change_from_row).collect::<StoreResult<Vec<_>>>()?;
        let changed = status::changed(&latest, observed);
        for (component, state) in &changed {
            sqlx::query(status::INSERT_STATUS_SQL)
                .bind(scope.key())
                .bind(component)
                .bind(at.as_micros())
                .bind(state.as_str())
                .execute(&mut *tx)
                .await
                .ctx("recording a status change")?;
        }
        tx.commit().await.ctx("committing status changes")?;
        Ok(changed.len())
    }

    async fn status_changes(&self, scope: &StatusScope, since: Timestamp) -> StoreResult<Vec<StatusChange>> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let rows = sqlx::query(status::STATUS_CHANGES_SQL)
            .bind(scope.key())
            .bind(since.as_micros())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading status changes")?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(status::change_from_row).collect()
    }

    async fn create_incident(&self, scope: &StatusScope, incident: &IncidentRecord) -> StoreResult<()> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let inserted = sqlx::query(status::INSERT_INCIDENT_SQL)
            .bind(scope.key())
            .bind(&incident.id)
            .bind(&incident.title)
            .bind(incident.status.as_str())
            .bind(incident.impact.as_str())
            .bind(status::components_json(&incident.components))
            .bind(incident.source.as_str())
            .bind(&incident.auto_key)
            .bind(incident.created_at.as_micros())
            .bind(incident.updated_at.as_micros())
            .bind(incident.resolved_at.map(Timestamp::as_micros))
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                let id = incident.auto_key.clone().unwrap_or_else(|| incident.id.clone());
                return Err(StoreError::AlreadyExists { what: "open incident", id });
            }
            other => other.ctx("storing an incident")?,
        };
        for update in &incident.updates {
            insert_incident_update(&mut tx, scope.key(), &incident.id, update).await?;
        }
        tx.commit().await.ctx("committing an incident")
    }

    async fn update_incident(
        &self,
        scope: &StatusScope,
        id: &str,
        update: &NewIncidentUpdate,
    ) -> StoreResult<IncidentRecord> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let row = sqlx::query(sql_text(status::incident_sql() + " FOR UPDATE"))
            .bind(scope.key())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an incident")?
            .ok_or_else(|| StoreError::NotFound { what: "incident", id: id.to_owned() })?;
        let mut incident = status::incident_from_row(&row)?;
        incident.updates = read_incident_updates(&mut tx, scope.key(), id).await?;
        let stored = status::apply_update(&mut incident, update);
        insert_incident_update(&mut tx, scope.key(), id, &stored).await?;
        sqlx::query(status::SET_INCIDENT_SQL)
            .bind(scope.key())
            .bind(id)
            .bind(incident.status.as_str())
            .bind(incident.impact.as_str())
            .bind(incident.updated_at.as_micros())
            .bind(incident.resolved_at.map(Timestamp::as_micros))
            .execute(&mut *tx)
            .await
            .ctx("updating an incident")?;
        tx.commit().await.ctx("committing an incident update")?;
        Ok(incident)
    }

    async fn incident(&self, scope: &StatusScope, id: &str) -> StoreResult<Option<IncidentRecord>> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let row = sqlx::query(sql_text(status::incident_sql()))
            .bind(scope.key())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an incident")?;
        let incident = match row {
            None => None,
            Some(row) => {
                let mut incident = status::incident_from_row(&row)?;
                incident.updates = read_incident_updates(&mut tx, scope.key(), id).await?;
                Some(incident)
            }
        };
        tx.commit().await.ctx("ending a read transaction")?;
        Ok(incident)
    }

    async fn incidents(&self, scope: &StatusScope, resolved_since: Timestamp) -> StoreResult<Vec<IncidentRecord>> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let rows = sqlx::query(sql_text(status::incidents_sql()))
            .bind(scope.key())
            .bind(resolved_since.as_micros())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading incidents")?;
        let update_rows = sqlx::query(status::UPDATES_SQL)
            .bind(scope.key())
            .bind(resolved_since.as_micros())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading incident updates")?;
        tx.commit().await.ctx("ending a read transaction")?;
        let mut incidents = rows.iter().map(status::incident_from_row).collect::<StoreResult<Vec<_>>>()?;
        let updates = update_rows.iter().map(status::update_from_row).collect::<StoreResult<Vec<_>>>()?;
        status::attach_updates(&mut incidents, updates);
        Ok(incidents)
    }

    async fn create_maintenance(&self, scope: &StatusScope, window: &MaintenanceRecord) -> StoreResult<()> {
        let input = &window.window.input;
        let mut tx = self.scope_tx(scope.key()).await?;
        let inserted = sqlx::query(status::INSERT_MAINTENANCE_SQL)
            .bind(scope.key())
            .bind(&window.id)
            .bind(&input.title)
            .bind(status::components_json(&input.components))
            .bind(input.starts_at.map(Timestamp::as_micros))
            .bind(input.ends_at.map(Timestamp::as_micros))
            .bind(&input.cron)
            .bind(&input.timezone)
            .bind(input.duration_minutes)
            .bind(window.created_at.as_micros())
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists { what: "maintenance window", id: window.id.clone() });
            }
            other => other.ctx("storing a maintenance window")?,
        };
        tx.commit().await.ctx("committing a maintenance window")
    }

    async fn cancel_maintenance(&self, scope: &StatusScope, id: &str, at: Timestamp) -> StoreResult<()> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let done = sqlx::query(status::CANCEL_MAINTENANCE_SQL)
            .bind(scope.key())
            .bind(id)
            .bind(at.as_micros())
            .execute(&mut *tx)
            .await
            .ctx("cancelling a maintenance window")?;
        tx.commit().await.ctx("committing a cancellation")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "maintenance window", id: id.to_owned() });
        }
        Ok(())
    }

    async fn maintenance_windows(&self, scope: &StatusScope) -> StoreResult<Vec<MaintenanceRecord>> {
        let mut tx = self.scope_tx(scope.key()).await?;
        let rows = sqlx::query(status::MAINTENANCE_SQL)
            .bind(scope.key())
            .fetch_all(&mut *tx)
            .await
            .ctx("reading maintenance windows")?;
        tx.commit().await.ctx("ending a read transaction")?;
        rows.iter().map(status::maintenance_from_row).collect()
    }

    async fn append_log(
        &self,
        tenant: &TenantId,
        log: LogName,
        records: Vec<LogAppend>,
        received_at: Timestamp,
    ) -> StoreResult<AppendOutcome> {
        let mut tx = self.tenant_tx(tenant).await?;
        let outcome = postgres_ledger::append(&mut tx, tenant, log, records, received_at).await?;
        tx.commit().await.ctx("committing an append")?;
        Ok(outcome)
    }

    async fn log_head(&self, tenant: &TenantId, log: LogName) -> StoreResult<LogHead> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::head(&mut tx, tenant, log).await
    }

    async fn log_page(&self, tenant: &TenantId, log: LogName, query: &LogQuery) -> StoreResult<Page<LogEntry>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::page(&mut tx, tenant, log, query).await
    }

    async fn log_entry(&self, tenant: &TenantId, log: LogName, event_id: &str) -> StoreResult<Option<LogEntry>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::entry_by_id(&mut tx, tenant, log, event_id).await
    }

    async fn log_nodes(&self, tenant: &TenantId, log: LogName, nodes: &[NodeId]) -> StoreResult<Vec<(NodeId, Hash)>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::nodes(&mut tx, tenant, log, nodes).await
    }

    async fn log_leaves(&self, tenant: &TenantId, log: LogName, start: u64, end: u64) -> StoreResult<Vec<LeafRow>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::leaves(&mut tx, tenant, log, start, end).await
    }

    async fn put_checkpoint(&self, tenant: &TenantId, log: LogName, checkpoint: &StoredCheckpoint) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::put_checkpoint(&mut tx, tenant, log, checkpoint).await?;
        tx.commit().await.ctx("committing a checkpoint")?;
        Ok(())
    }

    async fn latest_checkpoint(&self, tenant: &TenantId, log: LogName) -> StoreResult<Option<StoredCheckpoint>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::checkpoint(&mut tx, tenant, log, None).await
    }

    async fn checkpoint_at(&self, tenant: &TenantId, log: LogName, size: u64) -> StoreResult<Option<StoredCheckpoint>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::checkpoint(&mut tx, tenant, log, Some(size)).await
    }

    async fn log_pruned_before(&self, tenant: &TenantId, log: LogName) -> StoreResult<u64> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::pruned_before(&mut tx, tenant, log).await
    }

    async fn log_first_received(
        &self,
        tenant: &TenantId,
        log: LogName,
        from: u64,
    ) -> StoreResult<Option<(u64, Timestamp)>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::first_received(&mut tx, tenant, log, from).await
    }

    async fn prune_log(&self, tenant: &TenantId, log: LogName, prune: &LogPrune) -> StoreResult<PruneOutcome> {
        let mut tx = self.tenant_tx(tenant).await?;
        let outcome = postgres_ledger::prune(&mut tx, tenant, log, prune).await?;
        tx.commit().await.ctx("committing a prune")?;
        Ok(outcome)
    }

    async fn create_hold(&self, tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::create_hold(&mut tx, tenant, hold, records).await?;
        tx.commit().await.ctx("committing a legal hold")
    }

    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<LegalHold> {
        let mut tx = self.tenant_tx(tenant).await?;
        let hold = postgres_ledger::release_hold(&mut tx, tenant, id, at, records).await?;
        tx.commit().await.ctx("committing a hold release")?;
        Ok(hold)
    }

    async fn holds(&self, tenant: &TenantId) -> StoreResult<Vec<LegalHold>> {
        let mut tx = self.tenant_tx(tenant).await?;
        postgres_ledger::holds(&mut tx, tenant).await
    }

    async fn put_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.ctx("connecting")?;
        postgres_ledger::put_signing_key(&mut conn, key).await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let mut conn = self.pool.acquire().await.ctx("connecting")?;
        postgres_ledger::signing_keys(&mut conn).await
    }

    async fn retire_signing_keys_except(
        &self,
        key_id: &str,
        at: Timestamp,
        overlap: Option<&KeyOverlap>,
    ) -> StoreResult<Vec<SigningKeyRecord>> {
        let mut conn = self.pool.acquire().await.ctx("connecting")?;
        postgres_ledger::retire_signing_keys_except(&mut conn, key_id, at, overlap).await
    }

    async fn put_artifact(&self, tenant: &TenantId, artifact: &ArtifactRecord) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = evidence::artifact_values(tenant.as_str(), artifact);
        if exec(&mut tx, evidence::INSERT_ARTIFACT_SQL, &values, "recording a case artifact").await? == 0 {
            return Err(StoreError::AlreadyExists { what: "case artifact", id: artifact.name.clone() });
        }
        tx.commit().await.ctx("committing a case artifact")
    }

    async fn artifact(&self, tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<Option<ArtifactRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(case_id.into()), Value::Text(name.into())];
        Ok(fetch(&mut tx, &evidence::artifacts_sql(true), &values, evidence::artifact_from_row).await?.pop())
    }

    async fn artifacts(&self, tenant: &TenantId, case_id: &str) -> StoreResult<Vec<ArtifactRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(case_id.into())];
        let mut artifacts =
            fetch(&mut tx, &evidence::artifacts_sql(false), &values, evidence::artifact_from_row).await?;
        // Bytewise, whatever the database's collation.
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(artifacts)
    }

    async fn put_bundle(
        &self,
        tenant: &TenantId,
        bundle: &BundleRecord,
        attestation: &AttestationRecord,
    ) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = evidence::bundle_values(tenant.as_str(), bundle);
        if exec(&mut tx, evidence::INSERT_BUNDLE_SQL, &values, "recording a bundle").await? == 0 {
            return Err(StoreError::AlreadyExists { what: "evidence bundle", id: bundle.bundle_id.clone() });
        }
        let values = evidence::attestation_values(tenant.as_str(), attestation);
        exec(&mut tx, evidence::INSERT_ATTESTATION_SQL, &values, "recording an attestation").await?;
        tx.commit().await.ctx("committing a bundle")
    }

    async fn bundle(&self, tenant: &TenantId, bundle_id: &str) -> StoreResult<Option<BundleRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(bundle_id.into())];
        Ok(fetch(&mut tx, &evidence::bundles_sql(true), &values, evidence::bundle_from_row).await?.pop())
    }

    async fn case_bundles(&self, tenant: &TenantId, case_id: &str) -> StoreResult<Vec<BundleRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(case_id.into())];
        fetch(&mut tx, &evidence::bundles_sql(false), &values, evidence::bundle_from_row).await
    }

    async fn put_attestation(&self, tenant: &TenantId, attestation: &AttestationRecord) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = evidence::attestation_values(tenant.as_str(), attestation);
        exec(&mut tx, evidence::INSERT_ATTESTATION_SQL, &values, "recording an attestation").await?;
        tx.commit().await.ctx("committing an attestation")
    }

    async fn attestations(&self, tenant: &TenantId, query: &AttestationQuery) -> StoreResult<Vec<AttestationRecord>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let (sql, values) = evidence::attestations_sql(tenant.as_str(), query);
        fetch(&mut tx, &sql, &values, evidence::attestation_from_row).await
    }

    async fn create_case_hold(&self, tenant: &TenantId, hold: &LegalHold, records: &ActionRecords) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = evidence::hold_values(tenant.as_str(), hold);
        if exec(&mut tx, evidence::INSERT_HOLD_SQL, &values, "placing a case hold").await? == 0 {
            return Err(StoreError::AlreadyExists { what: "active hold on case", id: hold.id.clone() });
        }
        postgres_ledger::record_action(&mut tx, tenant, records, hold.created_at).await?;
        tx.commit().await.ctx("committing a case hold")
    }

    async fn release_case_hold(
        &self,
        tenant: &TenantId,
        case_id: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<LegalHold> {
        let mut tx = self.tenant_tx(tenant).await?;
        // The release names its audit record, which the trigger checks: record first.
        let leaf = postgres_ledger::record_action(&mut tx, tenant, records, at).await?;
        let values = [
            Value::Text(tenant.to_string()),
            Value::Text(case_id.into()),
            Value::Int(at.as_micros()),
            Value::Int(leaf as i64),
        ];
        let hold = fetch(&mut tx, &evidence::release_hold_sql(), &values, evidence::hold_from_row)
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound { what: "active hold on case", id: case_id.to_owned() })?;
        tx.commit().await.ctx("committing a hold release")?;
        Ok(hold)
    }

    async fn case_holds(&self, tenant: &TenantId, case_id: Option<&str>) -> StoreResult<Vec<LegalHold>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let mut values = vec![Value::Text(tenant.to_string())];
        values.extend(case_id.map(|c| Value::Text(c.to_owned())));
        fetch(&mut tx, &evidence::holds_sql(case_id.is_some()), &values, evidence::hold_from_row).await
    }

    async fn case_held(&self, tenant: &TenantId, case_id: &str) -> StoreResult<bool> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(case_id.into())];
        let held =
            fetch(&mut tx, evidence::HELD_SQL, &values, |r| r.try_get::<i64, _>(0).ctx("reading a hold")).await?;
        Ok(held.first() == Some(&1))
    }

    async fn set_evidence_retention(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
        by: &str,
        at: Timestamp,
        records: &ActionRecords,
    ) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [
            Value::Text(tenant.to_string()),
            days.map_or(Value::NullInt, |d| Value::Int(i64::from(d))),
            Value::Text(by.to_owned()),
            Value::Int(at.as_micros()),
        ];
        exec(&mut tx, evidence::SET_RETENTION_SQL, &values, "setting evidence retention").await?;
        postgres_ledger::record_action(&mut tx, tenant, records, at).await?;
        tx.commit().await.ctx("committing evidence retention")
    }

    async fn evidence_retention(&self, tenant: &TenantId) -> StoreResult<Option<u32>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string())];
        let days = fetch(&mut tx, evidence::RETENTION_SQL, &values, |r| {
            r.try_get::<Option<i64>, _>(0).ctx("reading evidence retention")
        })
        .await?;
        Ok(days.into_iter().flatten().next().and_then(|d| u32::try_from(d).ok()))
    }

    async fn expired_evidence(&self, tenant: &TenantId, before: Timestamp) -> StoreResult<ExpiredEvidence> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Int(before.as_micros())];
        Ok(ExpiredEvidence {
            bundles: fetch(&mut tx, &evidence::expired_bundles_sql(), &values, evidence::bundle_from_row).await?,
            artifacts: fetch(&mut tx, &evidence::expired_artifacts_sql(), &values, evidence::artifact_from_row).await?,
        })
    }

    async fn delete_bundle(&self, tenant: &TenantId, bundle_id: &str) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(bundle_id.to_owned())];
        if exec(&mut tx, evidence::DELETE_BUNDLE_SQL, &values, "deleting a bundle").await? == 0 {
            return Err(StoreError::NotFound { what: "evidence bundle", id: bundle_id.to_owned() });
        }
        tx.commit().await.ctx("committing a bundle's deletion")
    }

    async fn delete_artifact(&self, tenant: &TenantId, case_id: &str, name: &str) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let values = [Value::Text(tenant.to_string()), Value::Text(case_id.into()), Value::Text(name.into())];
        if exec(&mut tx, evidence::DELETE_ARTIFACT_SQL, &values, "deleting an artifact").await? == 0 {
            return Err(StoreError::NotFound { what: "case artifact", id: format!("{case_id}/{name}") });
        }
        tx.commit().await.ctx("committing an artifact's deletion")
    }
}

async fn apply_migrations(conn: &mut PgConnection) -> StoreResult<usize> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT NOT NULL PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at_us BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await
    .ctx("creating schema_migrations")?;
    let mut applied = 0;
    for migration in MIGRATIONS {
        let stored: Option<String> = sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = $1")
            .bind(migration.version)
            .fetch_optional(&mut *conn)
            .await
            .ctx("reading schema_migrations")?;
        match stored {
            Some(checksum) if checksum == migration.checksum() => continue,
            Some(_) => {
                return Err(StoreError::MigrationChanged { version: migration.version, name: migration.name.into() });
            }
            None => {}
        }
        let failed = |source: sqlx::Error| StoreError::Migration {
            version: migration.version,
            name: migration.name.into(),
            source: source.into(),
        };
        let mut tx = conn.begin().await.map_err(failed)?;
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at_us) VALUES ($1, $2, $3, $4)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .bind(Timestamp::now().as_micros())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        applied += 1;
    }
    // The service reads the schema version for its health check.
    sqlx::raw_sql("GRANT SELECT ON schema_migrations TO custos_app")
        .execute(&mut *conn)
        .await
        .ctx("granting read access to schema_migrations")?;
    Ok(applied)
}
