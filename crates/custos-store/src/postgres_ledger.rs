//! The tamper-evident logs on PostgreSQL: the statements behind the `Store` log
//! operations, each run in a tenant transaction (row-level security admits only that
//! tenant's rows). An append locks its log's head row first, so appends to one log from
//! several replicas take turns and each sees the records the one before committed.

use std::collections::HashMap;

use custos_ledger::merkle::{Frontier, Hash, NodeId, empty_root, frontier_nodes, leaf_hash};
use custos_model::ledger::LogName;
use custos_model::{TenantId, Timestamp};
use sqlx::{PgConnection, Row};

use crate::Page;
use crate::error::{PostgresContext, StoreError, StoreResult};
use crate::ledger::{
    self, ActionRecords, AppendOutcome, KeyOverlap, LeafRow, LegalHold, LogAppend, LogEntry, LogHead, LogPrune,
    LogQuery, PruneOutcome, QueryValue, RETIRED_AT, SigningKeyRecord, StoredCheckpoint, table,
};

const ENTRY_COLUMNS: &str = "leaf_index, event_id, ts_us, record, received_at_us";
/// Rows per INSERT … SELECT FROM UNNEST statement.
const CHUNK: usize = 5_000;

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

pub(crate) async fn append(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    records: Vec<LogAppend>,
    received_at: Timestamp,
) -> StoreResult<AppendOutcome> {
    let t = table(log);
    // Take the log's head row (creating it on first use): appends to this log queue here.
    sqlx::query(
        "INSERT INTO ledger_heads (tenant_id, log, size, root, updated_at_us) VALUES ($1, $2, 0, $3, $4) \
         ON CONFLICT (tenant_id, log) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(log.as_str())
    .bind(&empty_root()[..])
    .bind(received_at.as_micros())
    .execute(&mut *tx)
    .await
    .ctx("creating the log head")?;
    let size: i64 = sqlx::query_scalar("SELECT size FROM ledger_heads WHERE tenant_id = $1 AND log = $2 FOR UPDATE")
        .bind(tenant.as_str())
        .bind(log.as_str())
        .fetch_one(&mut *tx)
        .await
        .ctx("locking the log head")?;
    let size = ledger::index_from(size)?;

    let ids: Vec<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
    let stored: HashMap<String, String> =
        sqlx::query(sql(format!("SELECT event_id, record FROM {t} WHERE tenant_id = $1 AND event_id = ANY($2)")))
            .bind(tenant.as_str())
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .ctx("checking for duplicates")?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    let (fresh, duplicates) = ledger::fresh_records(log, records, &stored)?;

    let hashes: Vec<Hash> = nodes(tx, tenant, log, &frontier_nodes(size)).await?.into_iter().map(|(_, h)| h).collect();
    let mut frontier = Frontier::from_stored(size, &hashes).map_err(|e| StoreError::Corrupt {
        what: "log",
        detail: format!("{} log of {tenant} at size {size}: {e}", log.as_str()),
    })?;
    if fresh.is_empty() {
        return Ok(AppendOutcome { inserted: 0, duplicates, size, root: frontier.root() });
    }
    let mut node_rows: Vec<(NodeId, Hash)> = Vec::with_capacity(fresh.len() * 2 + 8);
    let mut indexes = Vec::with_capacity(fresh.len());
    for record in &fresh {
        indexes.push(frontier.push(leaf_hash(record.record.as_bytes()), &mut node_rows) as i64);
    }
    let insert_records = format!(
        "INSERT INTO {t} (tenant_id, leaf_index, event_id, ts_us, kind, actor, outcome, resource_type, resource_id, \
         project_id, request_id, trace_id, record, received_at_us) \
         SELECT $1, * , $13 FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], \
         $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $14::TEXT[])"
    );
    for (chunk, chunk_indexes) in fresh.chunks(CHUNK).zip(indexes.chunks(CHUNK)) {
        let column = |f: fn(&LogAppend) -> Option<&str>| chunk.iter().map(f).collect::<Vec<Option<&str>>>();
        sqlx::query(sql(insert_records.clone()))
            .bind(tenant.as_str())
            .bind(chunk_indexes)
            .bind(chunk.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.ts.as_micros()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
            .bind(column(|r| r.actor.as_deref()))
            .bind(column(|r| r.outcome.as_deref()))
            .bind(column(|r| r.resource_type.as_deref()))
            .bind(column(|r| r.resource_id.as_deref()))
            .bind(column(|r| r.project_id.as_deref()))
            .bind(column(|r| r.request_id.as_deref()))
            .bind(column(|r| r.trace_id.as_deref()))
            .bind(received_at.as_micros())
            .bind(chunk.iter().map(|r| r.record.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("appending records")?;
    }
    for chunk in node_rows.chunks(CHUNK * 2) {
        sqlx::query(
            "INSERT INTO ledger_nodes (tenant_id, log, level, idx, hash) \
             SELECT $1, $2, * FROM UNNEST($3::BIGINT[], $4::BIGINT[], $5::BYTEA[])",
        )
        .bind(tenant.as_str())
        .bind(log.as_str())
        .bind(chunk.iter().map(|(n, _)| i64::from(n.level)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(n, _)| n.index as i64).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, h)| h.to_vec()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("storing subtree hashes")?;
    }
    sqlx::query("UPDATE ledger_heads SET size = $3, root = $4, updated_at_us = $5 WHERE tenant_id = $1 AND log = $2")
        .bind(tenant.as_str())
        .bind(log.as_str())
        .bind(frontier.size() as i64)
        .bind(&frontier.root()[..])
        .bind(received_at.as_micros())
        .execute(&mut *tx)
        .await
        .ctx("moving the log head")?;
    Ok(AppendOutcome { inserted: fresh.len(), duplicates, size: frontier.size(), root: frontier.root() })
}

pub(crate) async fn head(tx: &mut PgConnection, tenant: &TenantId, log: LogName) -> StoreResult<LogHead> {
    let row = sqlx::query("SELECT size, root FROM ledger_heads WHERE tenant_id = $1 AND log = $2")
        .bind(tenant.as_str())
        .bind(log.as_str())
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading the log head")?;
    match row {
        None => Ok(LogHead { size: 0, root: empty_root() }),
        Some(row) => Ok(LogHead {
            size: ledger::index_from(row.get(0))?,
            root: ledger::hash_from(row.get::<&[u8], _>(1), "log head")?,
        }),
    }
}

/// The stored hashes of `wanted` that exist, in the order asked.
pub(crate) async fn nodes(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    wanted: &[NodeId],
) -> StoreResult<Vec<(NodeId, Hash)>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT w.level, w.idx, n.hash FROM UNNEST($3::BIGINT[], $4::BIGINT[]) WITH ORDINALITY AS w(level, idx, nr) \
         JOIN ledger_nodes AS n ON n.tenant_id = $1 AND n.log = $2 AND n.level = w.level AND n.idx = w.idx \
         ORDER BY w.nr",
    )
    .bind(tenant.as_str())
    .bind(log.as_str())
    .bind(wanted.iter().map(|n| i64::from(n.level)).collect::<Vec<_>>())
    .bind(wanted.iter().map(|n| n.index as i64).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
    .ctx("reading subtree hashes")?;
    rows.iter()
        .map(|row| {
            let level = u8::try_from(row.get::<i64, _>(0))
                .map_err(|_| StoreError::Corrupt { what: "log", detail: "a subtree level out of range".into() })?;
            let node = NodeId::new(level, ledger::index_from(row.get(1))?);
            Ok((node, ledger::hash_from(row.get::<&[u8], _>(2), "subtree hash")?))
        })
        .collect()
}

fn entry(row: &sqlx::postgres::PgRow) -> StoreResult<LogEntry> {
    LogEntry::from_columns(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

pub(crate) async fn page(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    query: &LogQuery,
) -> StoreResult<Page<LogEntry>> {
    let limit = query.limit.clamp(1, ledger::MAX_PAGE);
    let (conditions, values) = query.conditions(2);
    let text = format!(
        "SELECT {ENTRY_COLUMNS} FROM {t} WHERE tenant_id = $1{conditions} ORDER BY ts_us DESC, leaf_index DESC LIMIT {limit}",
        t = table(log)
    );
    let mut statement = sqlx::query(sql(text)).bind(tenant.as_str());
    for value in values {
        statement = match value {
            QueryValue::Text(s) => statement.bind(s),
            QueryValue::Int(i) => statement.bind(i),
        };
    }
    let rows = statement.fetch_all(&mut *tx).await.ctx("querying a log")?;
    let items = rows.iter().map(entry).collect::<StoreResult<Vec<_>>>()?;
    let next_cursor = ledger::next_cursor(&items, limit);
    Ok(Page { items, next_cursor })
}

pub(crate) async fn entry_by_id(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    event_id: &str,
) -> StoreResult<Option<LogEntry>> {
    let row =
        sqlx::query(sql(format!("SELECT {ENTRY_COLUMNS} FROM {} WHERE tenant_id = $1 AND event_id = $2", table(log))))
            .bind(tenant.as_str())
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an event")?;
    row.as_ref().map(entry).transpose()
}

pub(crate) async fn leaves(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    start: u64,
    end: u64,
) -> StoreResult<Vec<LeafRow>> {
    let rows = sqlx::query(sql(format!(
        "SELECT n.idx, n.hash, r.record FROM ledger_nodes AS n \
         LEFT JOIN {t} AS r ON r.tenant_id = n.tenant_id AND r.leaf_index = n.idx \
         WHERE n.tenant_id = $1 AND n.log = $2 AND n.level = 0 AND n.idx >= $3 AND n.idx < $4 ORDER BY n.idx",
        t = table(log)
    )))
    .bind(tenant.as_str())
    .bind(log.as_str())
    .bind(start as i64)
    .bind(end as i64)
    .fetch_all(&mut *tx)
    .await
    .ctx("reading leaves")?;
    rows.iter()
        .map(|row| {
            Ok(LeafRow {
                leaf_index: ledger::index_from(row.get(0))?,
                leaf_hash: ledger::hash_from(row.get::<&[u8], _>(1), "leaf hash")?,
                record: row.get(2),
            })
        })
        .collect()
}

pub(crate) async fn put_checkpoint(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    checkpoint: &StoredCheckpoint,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO ledger_checkpoints (tenant_id, log, size, key_id, root, note, created_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(log.as_str())
    .bind(checkpoint.size as i64)
    .bind(&checkpoint.key_id)
    .bind(&checkpoint.root[..])
    .bind(&checkpoint.note)
    .bind(checkpoint.created_at.as_micros())
    .execute(&mut *tx)
    .await
    .ctx("keeping a checkpoint")?;
    Ok(())
}

pub(crate) async fn checkpoint(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    size: Option<u64>,
) -> StoreResult<Option<StoredCheckpoint>> {
    let row = sqlx::query(
        "SELECT size, key_id, root, note, created_at_us FROM ledger_checkpoints \
         WHERE tenant_id = $1 AND log = $2 AND ($3::BIGINT IS NULL OR size = $3) \
         ORDER BY size DESC, created_at_us DESC LIMIT 1",
    )
    .bind(tenant.as_str())
    .bind(log.as_str())
    .bind(size.map(|s| s as i64))
    .fetch_optional(&mut *tx)
    .await
    .ctx("reading a checkpoint")?;
    row.map(|row| {
        Ok(StoredCheckpoint {
            size: ledger::index_from(row.get(0))?,
            key_id: row.get(1),
            root: ledger::hash_from(row.get::<&[u8], _>(2), "checkpoint root")?,
            note: row.get(3),
            created_at: Timestamp::from_micros(row.get(4)),
        })
    })
    .transpose()
}

pub(crate) async fn pruned_before(tx: &mut PgConnection, tenant: &TenantId, log: LogName) -> StoreResult<u64> {
    let before: Option<i64> =
        sqlx::query_scalar("SELECT MAX(before_index) FROM ledger_prunes WHERE tenant_id = $1 AND log = $2")
            .bind(tenant.as_str())
            .bind(log.as_str())
            .fetch_one(&mut *tx)
            .await
            .ctx("reading the log's prunes")?;
    ledger::index_from(before.unwrap_or(0))
}

pub(crate) const KEY_COLUMNS: &str = "key_id, algorithm, public_key, created_at_us, not_before_us, not_after_us";

pub(crate) fn key_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<SigningKeyRecord> {
    SigningKeyRecord::from_columns(row.get(0), row.get(1), row.get::<&[u8], _>(2), row.get(3), row.get(4), row.get(5))
}

pub(crate) async fn put_signing_key(conn: &mut PgConnection, key: &SigningKeyRecord) -> StoreResult<()> {
    sqlx::query(sql(format!(
        "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
    )))
    .bind(&key.key_id)
    .bind(&key.algorithm)
    .bind(&key.public_key[..])
    .bind(key.created_at.as_micros())
    .bind(key.not_before.as_micros())
    .bind(key.not_after.map(Timestamp::as_micros))
    .execute(&mut *conn)
    .await
    .ctx("publishing a signing key")?;
    Ok(())
}

pub(crate) async fn signing_keys(conn: &mut PgConnection) -> StoreResult<Vec<SigningKeyRecord>> {
    let rows = sqlx::query(sql(format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY not_before_us, key_id")))
        .fetch_all(&mut *conn)
        .await
        .ctx("listing signing keys")?;
    rows.iter().map(key_from_row).collect()
}

pub(crate) async fn retire_signing_keys_except(
    conn: &mut PgConnection,
    key_id: &str,
    at: Timestamp,
    overlap: Option<&KeyOverlap>,
) -> StoreResult<Vec<SigningKeyRecord>> {
    let rows = sqlx::query(sql(format!(
        "UPDATE signing_keys SET not_after_us = {RETIRED_AT} WHERE key_id <> $1 \
         AND (not_after_us IS NULL OR not_after_us > {RETIRED_AT}) RETURNING {KEY_COLUMNS}"
    )))
    .bind(key_id)
    .bind(at.as_micros())
    .bind(overlap.map(|o| o.key_id.as_str()))
    .bind(overlap.map(|o| o.until.as_micros()))
    .fetch_all(&mut *conn)
    .await
    .ctx("retiring signing keys")?;
    rows.iter().map(key_from_row).collect()
}

pub(crate) async fn first_received(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    from: u64,
) -> StoreResult<Option<(u64, Timestamp)>> {
    let row = sqlx::query(sql(format!(
        "SELECT leaf_index, received_at_us FROM {} WHERE tenant_id = $1 AND leaf_index >= $2 \
         ORDER BY leaf_index LIMIT 1",
        table(log)
    )))
    .bind(tenant.as_str())
    .bind(from as i64)
    .fetch_optional(&mut *tx)
    .await
    .ctx("reading a receipt time")?;
    row.map(|row| Ok((ledger::index_from(row.get(0))?, Timestamp::from_micros(row.get(1))))).transpose()
}

/// In the caller's tenant transaction: the tombstone, then `custos_prune_log` (the one
/// way the service's role can delete).
/// Prunes inside the caller's transaction: the retention record first (the next leaf),
/// then the tombstone naming it, then the removal through `custos_prune_log`, whose
/// trigger checks it against the tombstone, the tenant's retention and the database's
/// clock.
pub(crate) async fn prune(
    tx: &mut PgConnection,
    tenant: &TenantId,
    log: LogName,
    prune: &LogPrune,
) -> StoreResult<PruneOutcome> {
    let held: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM legal_holds WHERE tenant_id = $1 AND released_at_us IS NULL)")
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await
            .ctx("checking legal holds")?;
    if held {
        return Ok(PruneOutcome::Held);
    }
    if pruned_before(tx, tenant, log).await? >= prune.before_index {
        return Ok(PruneOutcome::Removed(0));
    }
    let removing: i64 = sqlx::query_scalar(sql(format!(
        "SELECT COUNT(*) FROM {} WHERE tenant_id = $1 AND leaf_index < $2",
        table(log)
    )))
    .bind(tenant.as_str())
    .bind(prune.before_index as i64)
    .fetch_one(&mut *tx)
    .await
    .ctx("counting records under the tombstone")?;
    let record = prune.record(tenant, log, u64::try_from(removing).unwrap_or(0));
    let appended = append(tx, tenant, log, vec![record], prune.pruned_at).await?;
    if appended.inserted != 1 {
        return Err(StoreError::LogConflict { log: log.as_str(), id: prune.event_id(log) });
    }
    sqlx::query(
        "INSERT INTO ledger_prunes (tenant_id, log, before_index, received_before_us, policy, pruned_at_us, \
         retention_days, leaf_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant.as_str())
    .bind(log.as_str())
    .bind(prune.before_index as i64)
    .bind(prune.received_before.as_micros())
    .bind(&prune.policy)
    .bind(prune.pruned_at.as_micros())
    .bind(i64::from(prune.retention_days))
    .bind(appended.size as i64 - 1)
    .execute(&mut *tx)
    .await
    .ctx("writing the tombstone")?;
    let removed: i64 = sqlx::query_scalar("SELECT custos_prune_log($1, $2)")
        .bind(log.as_str())
        .bind(prune.before_index as i64)
        .fetch_one(&mut *tx)
        .await
        .ctx("removing records under the tombstone")?;
    Ok(PruneOutcome::Removed(u64::try_from(removed).unwrap_or(0)))
}

const HOLD_COLUMNS: &str = "id, reason, created_by, created_at_us, released_at_us";

fn hold_from_row(row: &sqlx::postgres::PgRow) -> LegalHold {
    LegalHold {
        id: row.get(0),
        reason: row.get(1),
        created_by: row.get(2),
        created_at: Timestamp::from_micros(row.get(3)),
        released_at: row.get::<Option<i64>, _>(4).map(Timestamp::from_micros),
    }
}

/// Appends an action's records: the audit record first; returns its leaf index.
pub(crate) async fn record_action(
    tx: &mut PgConnection,
    tenant: &TenantId,
    records: &ActionRecords,
    at: Timestamp,
) -> StoreResult<u64> {
    let not_written = StoreError::record_not_written;
    let audit = append(tx, tenant, LogName::Audit, vec![records.audit.clone()], at).await.map_err(not_written)?;
    if audit.inserted != 1 {
        let id = records.audit.event_id.clone();
        return Err(not_written(StoreError::LogConflict { log: LogName::Audit.as_str(), id }));
    }
    let timeline =
        append(tx, tenant, LogName::Timeline, vec![records.timeline.clone()], at).await.map_err(not_written)?;
    if timeline.inserted != 1 {
        let id = records.timeline.event_id.clone();
        return Err(not_written(StoreError::LogConflict { log: LogName::Timeline.as_str(), id }));
    }
    Ok(audit.size - 1)
}

pub(crate) async fn create_hold(
    tx: &mut PgConnection,
    tenant: &TenantId,
    hold: &LegalHold,
    records: &ActionRecords,
) -> StoreResult<()> {
    let inserted = sqlx::query(sql(format!(
        "INSERT INTO legal_holds (tenant_id, {HOLD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
    )))
    .bind(tenant.as_str())
    .bind(&hold.id)
    .bind(&hold.reason)
    .bind(&hold.created_by)
    .bind(hold.created_at.as_micros())
    .bind(hold.released_at.map(Timestamp::as_micros))
    .execute(&mut *tx)
    .await
    .ctx("placing a legal hold")?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists { what: "legal hold", id: hold.id.clone() });
    }
    record_action(tx, tenant, records, hold.created_at).await?;
    Ok(())
}

pub(crate) async fn release_hold(
    tx: &mut PgConnection,
    tenant: &TenantId,
    id: &str,
    at: Timestamp,
    records: &ActionRecords,
) -> StoreResult<LegalHold> {
    let active: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE tenant_id = $1 AND id = $2 AND released_at_us IS NULL)",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .ctx("finding the hold to release")?;
    if !active {
        return Err(StoreError::NotFound { what: "active legal hold", id: id.to_owned() });
    }
    let release_leaf = record_action(tx, tenant, records, at).await?;
    let row = sqlx::query(sql(format!(
        "UPDATE legal_holds SET released_at_us = $3, release_leaf = $4 WHERE tenant_id = $1 AND id = $2 \
         AND released_at_us IS NULL RETURNING {HOLD_COLUMNS}"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .bind(at.as_micros())
    .bind(release_leaf as i64)
    .fetch_optional(&mut *tx)
    .await
    .ctx("releasing a legal hold")?;
    row.as_ref().map(hold_from_row).ok_or_else(|| StoreError::NotFound { what: "active legal hold", id: id.to_owned() })
}

pub(crate) async fn holds(tx: &mut PgConnection, tenant: &TenantId) -> StoreResult<Vec<LegalHold>> {
    let rows = sqlx::query(sql(format!(
        "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE tenant_id = $1 ORDER BY created_at_us DESC, id"
    )))
    .bind(tenant.as_str())
    .fetch_all(&mut *tx)
    .await
    .ctx("listing legal holds")?;
    Ok(rows.iter().map(hold_from_row).collect())
}
