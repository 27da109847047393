//! The tamper-evident logs on SQLite: the statements behind the `Store` log operations,
//! run on the writer connection (appends) or a reader (everything else). The rules are
//! [`crate::ledger`]'s; the Merkle math is custos-ledger's.

use std::collections::HashMap;

use custos_ledger::merkle::{Frontier, Hash, NodeId, empty_root, frontier_nodes, leaf_hash};
use custos_model::ledger::LogName;
use custos_model::{TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::Page;
use crate::error::{SqliteContext, StoreResult};
use crate::ledger::{
    self, ActionRecords, AppendOutcome, KeyOverlap, LeafRow, LegalHold, LogAppend, LogEntry, LogHead, LogPrune,
    LogQuery, PruneOutcome, QueryValue, RETIRED_AT, SigningKeyRecord, StoredCheckpoint, table,
};

const ENTRY_COLUMNS: &str = "leaf_index, event_id, ts_us, record, received_at_us";

/// The statement inserting one record row (the parameters of [`insert_row`]); with
/// `ON CONFLICT (tenant_id, event_id) DO NOTHING` for appends.
fn insert_sql(log: LogName, skip_known_ids: bool) -> String {
    format!(
        "INSERT INTO {} (tenant_id, leaf_index, event_id, ts_us, kind, actor, outcome, resource_type, \
         resource_id, project_id, request_id, trace_id, record, received_at_us) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14){}",
        table(log),
        if skip_known_ids { " ON CONFLICT (tenant_id, event_id) DO NOTHING" } else { "" }
    )
}

/// Inserts `record` at leaf `index` with [`insert_sql`]'s statement; returns the rows
/// written (0 when its id is known and the statement skips known ids).
fn insert_row(
    statement: &mut rusqlite::CachedStatement<'_>,
    tenant: &TenantId,
    index: u64,
    record: &LogAppend,
    received_at: Timestamp,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        tenant.as_str(),
        index as i64,
        record.event_id,
        record.ts.as_micros(),
        record.kind,
        record.actor,
        record.outcome,
        record.resource_type,
        record.resource_id,
        record.project_id,
        record.request_id,
        record.trace_id,
        record.record,
        received_at.as_micros(),
    ])
}

/// Appends in one immediate transaction. Each record is inserted at the next leaf index
/// unless its `event_id` is already stored (`ON CONFLICT … DO NOTHING`); only then are
/// the stored bytes read, to tell a duplicate from a conflict. A conflict returns
/// before the commit, so the transaction rolls back and nothing of the batch is written.
pub(crate) fn append(
    conn: &mut Connection,
    tenant: &TenantId,
    log: LogName,
    records: Vec<LogAppend>,
    received_at: Timestamp,
) -> StoreResult<AppendOutcome> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning an append")?;
    let outcome = append_in(&tx, tenant, log, records, received_at)?;
    tx.commit().ctx("committing an append")?;
    Ok(outcome)
}

/// [`append`]'s work inside a transaction the caller commits (or drops, writing nothing).
pub(crate) fn append_in(
    tx: &Connection,
    tenant: &TenantId,
    log: LogName,
    records: Vec<LogAppend>,
    received_at: Timestamp,
) -> StoreResult<AppendOutcome> {
    let t = table(log);
    // Repeats within the batch first (the same id twice: a duplicate or a conflict).
    let (fresh, mut duplicates) = ledger::fresh_records(log, records, &HashMap::new())?;
    let mut frontier = read_frontier(tx, tenant, log)?;
    let mut inserted = 0;
    if !fresh.is_empty() {
        let mut insert_record = tx.prepare_cached(&insert_sql(log, true)).ctx("preparing the record insert")?;
        let mut existing = tx
            .prepare_cached(&format!("SELECT record FROM {t} WHERE tenant_id = ?1 AND event_id = ?2"))
            .ctx("preparing the duplicate check")?;
        let mut completed = Vec::with_capacity(4);
        let mut nodes = NodeWriter::new(tenant, log);
        for record in &fresh {
            let changed = insert_row(&mut insert_record, tenant, frontier.size(), record, received_at)
                .ctx("appending a record")?;
            if changed == 0 {
                let stored: String = existing
                    .query_row(params![tenant.as_str(), record.event_id], |row| row.get(0))
                    .ctx("reading a stored record")?;
                if stored != record.record {
                    return Err(crate::StoreError::LogConflict { log: log.as_str(), id: record.event_id.clone() });
                }
                duplicates += 1;
                continue;
            }
            completed.clear();
            frontier.push(leaf_hash(record.record.as_bytes()), &mut completed);
            inserted += 1;
            nodes.extend(tx, &completed)?;
        }
        nodes.flush(tx)?;
    }
    if inserted > 0 {
        tx.execute(
            "INSERT INTO ledger_heads (tenant_id, log, size, root, updated_at_us) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (tenant_id, log) DO UPDATE SET size = excluded.size, root = excluded.root, \
             updated_at_us = excluded.updated_at_us",
            params![
                tenant.as_str(),
                log.as_str(),
                frontier.size() as i64,
                &frontier.root()[..],
                received_at.as_micros()
            ],
        )
        .ctx("moving the log head")?;
    }
    Ok(AppendOutcome { inserted, duplicates, size: frontier.size(), root: frontier.root() })
}

/// Subtree hashes stored [`NodeWriter::ROWS`] rows to a statement: an append stores
/// about two a record, and one statement for many rows costs SQLite far less than one
/// each.
struct NodeWriter<'a> {
    tenant: &'a TenantId,
    log: LogName,
    pending: Vec<(NodeId, Hash)>,
}

/// The insert of `rows` subtree hashes: `?1` and `?2` are the tenant and log, and each
/// row adds its level, index and hash.
fn node_insert_sql(rows: usize) -> String {
    let values: Vec<String> =
        (0..rows).map(|i| format!("(?1, ?2, ?{}, ?{}, ?{})", 3 + 3 * i, 4 + 3 * i, 5 + 3 * i)).collect();
    format!("INSERT INTO ledger_nodes (tenant_id, log, level, idx, hash) VALUES {}", values.join(", "))
}

/// The statement of a full batch, built once: `prepare_cached` looks statements up by
/// their text, and a full batch is flushed every [`NodeWriter::ROWS`] hashes.
static FULL_NODE_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| node_insert_sql(NodeWriter::ROWS));

impl<'a> NodeWriter<'a> {
    const ROWS: usize = 64;

    fn new(tenant: &'a TenantId, log: LogName) -> Self {
        Self { tenant, log, pending: Vec::with_capacity(Self::ROWS) }
    }

    fn extend(&mut self, conn: &Connection, completed: &[(NodeId, Hash)]) -> StoreResult<()> {
        for node in completed {
            self.pending.push(*node);
            if self.pending.len() == Self::ROWS {
                self.flush(conn)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, conn: &Connection) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let partial;
        let sql = if self.pending.len() == Self::ROWS {
            FULL_NODE_INSERT.as_str()
        } else {
            partial = node_insert_sql(self.pending.len());
            partial.as_str()
        };
        let mut statement = conn.prepare_cached(sql).ctx("preparing the subtree hash insert")?;
        statement.raw_bind_parameter(1, self.tenant.as_str()).ctx("binding the tenant")?;
        statement.raw_bind_parameter(2, self.log.as_str()).ctx("binding the log")?;
        for (i, (node, hash)) in self.pending.iter().enumerate() {
            statement.raw_bind_parameter(3 + 3 * i, node.level).ctx("binding a level")?;
            statement.raw_bind_parameter(4 + 3 * i, node.index as i64).ctx("binding an index")?;
            statement.raw_bind_parameter(5 + 3 * i, &hash[..]).ctx("binding a hash")?;
        }
        statement.raw_execute().ctx("storing subtree hashes")?;
        self.pending.clear();
        Ok(())
    }
}

/// The log's frontier, from its head's size and the stored hashes that size needs.
fn read_frontier(conn: &Connection, tenant: &TenantId, log: LogName) -> StoreResult<Frontier> {
    let size = head(conn, tenant, log)?.size;
    let needed = frontier_nodes(size);
    let found = nodes(conn, tenant, log, &needed)?;
    let hashes: Vec<Hash> = found.into_iter().map(|(_, hash)| hash).collect();
    Frontier::from_stored(size, &hashes).map_err(|e| crate::StoreError::Corrupt {
        what: "log",
        detail: format!("{} log of {tenant} at size {size}: {e}", log.as_str()),
    })
}

pub(crate) fn head(conn: &Connection, tenant: &TenantId, log: LogName) -> StoreResult<LogHead> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT size, root FROM ledger_heads WHERE tenant_id = ?1 AND log = ?2")
        .ctx("preparing the head read")?
        .query_row(params![tenant.as_str(), log.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .ctx("reading the log head")?;
    match row {
        None => Ok(LogHead { size: 0, root: empty_root() }),
        Some((size, root)) => {
            Ok(LogHead { size: ledger::index_from(size)?, root: ledger::hash_from(&root, "log head")? })
        }
    }
}

/// The stored hashes of `wanted` that exist, in the order asked.
pub(crate) fn nodes(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    wanted: &[NodeId],
) -> StoreResult<Vec<(NodeId, Hash)>> {
    let mut statement = conn
        .prepare_cached("SELECT hash FROM ledger_nodes WHERE tenant_id = ?1 AND log = ?2 AND level = ?3 AND idx = ?4")
        .ctx("preparing the node read")?;
    let mut found = Vec::with_capacity(wanted.len());
    for node in wanted {
        let hash: Option<Vec<u8>> = statement
            .query_row(params![tenant.as_str(), log.as_str(), node.level, node.index as i64], |row| row.get(0))
            .optional()
            .ctx("reading a subtree hash")?;
        if let Some(hash) = hash {
            found.push((*node, ledger::hash_from(&hash, "subtree hash")?));
        }
    }
    Ok(found)
}

fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, i64, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn entry(raw: (i64, String, i64, String, i64)) -> StoreResult<LogEntry> {
    let (leaf_index, event_id, ts, record, received_at) = raw;
    LogEntry::from_columns(leaf_index, event_id, ts, record, received_at)
}

/// A page query and its parameters. A lookup by trace id names the trace index: ordered
/// by time and limited, the query would otherwise walk the time index through every
/// record of the tenant.
fn page_sql(tenant: &TenantId, log: LogName, query: &LogQuery, limit: usize) -> (String, Vec<rusqlite::types::Value>) {
    let (conditions, values) = query.conditions(2);
    let t = table(log);
    let indexed = if query.by_trace() { format!(" INDEXED BY {t}_by_trace") } else { String::new() };
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM {t}{indexed} WHERE tenant_id = $1{conditions} \
         ORDER BY ts_us DESC, leaf_index DESC LIMIT {limit}"
    );
    let mut bound: Vec<rusqlite::types::Value> = vec![tenant.as_str().to_owned().into()];
    bound.extend(values.into_iter().map(|v| match v {
        QueryValue::Text(s) => rusqlite::types::Value::Text(s),
        QueryValue::Int(i) => rusqlite::types::Value::Integer(i),
    }));
    (sql, bound)
}

pub(crate) fn page(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    query: &LogQuery,
) -> StoreResult<Page<LogEntry>> {
    let limit = query.limit.clamp(1, ledger::MAX_PAGE);
    let (sql, bound) = page_sql(tenant, log, query, limit);
    let mut statement = conn.prepare_cached(&sql).ctx("preparing a log query")?;
    let raw = statement
        .query_map(params_from_iter(bound), entry_from_row)
        .ctx("querying a log")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading a log page")?;
    let items = raw.into_iter().map(entry).collect::<StoreResult<Vec<_>>>()?;
    let next_cursor = ledger::next_cursor(&items, limit);
    Ok(Page { items, next_cursor })
}

pub(crate) fn entry_by_id(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    event_id: &str,
) -> StoreResult<Option<LogEntry>> {
    let raw = conn
        .prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM {} WHERE tenant_id = ?1 AND event_id = ?2", table(log)))
        .ctx("preparing an event read")?
        .query_row(params![tenant.as_str(), event_id], entry_from_row)
        .optional()
        .ctx("reading an event")?;
    raw.map(entry).transpose()
}

pub(crate) fn leaves(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    start: u64,
    end: u64,
) -> StoreResult<Vec<LeafRow>> {
    let sql = format!(
        "SELECT n.idx, n.hash, r.record FROM ledger_nodes AS n \
         LEFT JOIN {t} AS r ON r.tenant_id = n.tenant_id AND r.leaf_index = n.idx \
         WHERE n.tenant_id = ?1 AND n.log = ?2 AND n.level = 0 AND n.idx >= ?3 AND n.idx < ?4 ORDER BY n.idx",
        t = table(log)
    );
    let mut statement = conn.prepare_cached(&sql).ctx("preparing a leaf read")?;
    let raw = statement
        .query_map(params![tenant.as_str(), log.as_str(), start as i64, end as i64], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Option<String>>(2)?))
        })
        .ctx("reading leaves")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading leaves")?;
    raw.into_iter()
        .map(|(index, hash, record)| {
            Ok(LeafRow {
                leaf_index: ledger::index_from(index)?,
                leaf_hash: ledger::hash_from(&hash, "leaf hash")?,
                record,
            })
        })
        .collect()
}

pub(crate) fn put_checkpoint(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    checkpoint: &StoredCheckpoint,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO ledger_checkpoints (tenant_id, log, size, key_id, root, note, created_at_us) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        params![
            tenant.as_str(),
            log.as_str(),
            checkpoint.size as i64,
            checkpoint.key_id,
            &checkpoint.root[..],
            checkpoint.note,
            checkpoint.created_at.as_micros()
        ],
    )
    .ctx("keeping a checkpoint")?;
    Ok(())
}

pub(crate) fn checkpoint(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    size: Option<u64>,
) -> StoreResult<Option<StoredCheckpoint>> {
    let size_condition = if size.is_some() { "AND size = ?3" } else { "AND ?3 IS NULL" };
    let sql = format!(
        "SELECT size, key_id, root, note, created_at_us FROM ledger_checkpoints \
         WHERE tenant_id = ?1 AND log = ?2 {size_condition} ORDER BY size DESC, created_at_us DESC LIMIT 1"
    );
    let raw: Option<(i64, String, Vec<u8>, String, i64)> = conn
        .prepare_cached(&sql)
        .ctx("preparing a checkpoint read")?
        .query_row(params![tenant.as_str(), log.as_str(), size.map(|s| s as i64)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
        })
        .optional()
        .ctx("reading a checkpoint")?;
    raw.map(|(size, key_id, root, note, created_at)| {
        Ok(StoredCheckpoint {
            size: ledger::index_from(size)?,
            key_id,
            root: ledger::hash_from(&root, "checkpoint root")?,
            note,
            created_at: Timestamp::from_micros(created_at),
        })
    })
    .transpose()
}

pub(crate) fn pruned_before(conn: &Connection, tenant: &TenantId, log: LogName) -> StoreResult<u64> {
    let before: Option<i64> = conn
        .prepare_cached("SELECT MAX(before_index) FROM ledger_prunes WHERE tenant_id = ?1 AND log = ?2")
        .ctx("preparing the prune read")?
        .query_row(params![tenant.as_str(), log.as_str()], |row| row.get(0))
        .ctx("reading the log's prunes")?;
    ledger::index_from(before.unwrap_or(0))
}

const KEY_COLUMNS: &str = "key_id, algorithm, public_key, created_at_us, not_before_us, not_after_us";

type KeyRow = (String, String, Vec<u8>, i64, i64, Option<i64>);

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn key(raw: KeyRow) -> StoreResult<SigningKeyRecord> {
    let (key_id, algorithm, public_key, created_at, not_before, not_after) = raw;
    SigningKeyRecord::from_columns(key_id, algorithm, &public_key, created_at, not_before, not_after)
}

pub(crate) fn put_signing_key(conn: &Connection, key: &SigningKeyRecord) -> StoreResult<()> {
    conn.execute(
        &format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"),
        params![
            key.key_id,
            key.algorithm,
            &key.public_key[..],
            key.created_at.as_micros(),
            key.not_before.as_micros(),
            key.not_after.map(Timestamp::as_micros)
        ],
    )
    .ctx("publishing a signing key")?;
    Ok(())
}

pub(crate) fn signing_keys(conn: &Connection) -> StoreResult<Vec<SigningKeyRecord>> {
    let raw = conn
        .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY not_before_us, key_id"))
        .ctx("preparing the key list")?
        .query_map([], key_from_row)
        .ctx("listing signing keys")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("listing signing keys")?;
    raw.into_iter().map(key).collect()
}

pub(crate) fn retire_signing_keys_except(
    conn: &mut Connection,
    key_id: &str,
    at: Timestamp,
    overlap: Option<&KeyOverlap>,
) -> StoreResult<Vec<SigningKeyRecord>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a key rotation")?;
    let retired_at = RETIRED_AT.replace('$', "?");
    let raw = tx
        .prepare_cached(&format!(
            "UPDATE signing_keys SET not_after_us = {retired_at} WHERE key_id <> ?1 \
             AND (not_after_us IS NULL OR not_after_us > {retired_at}) RETURNING {KEY_COLUMNS}"
        ))
        .ctx("preparing the key retirement")?
        .query_map(
            params![key_id, at.as_micros(), overlap.map(|o| o.key_id.as_str()), overlap.map(|o| o.until.as_micros())],
            key_from_row,
        )
        .ctx("retiring signing keys")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("retiring signing keys")?;
    tx.commit().ctx("committing a key rotation")?;
    raw.into_iter().map(key).collect()
}

pub(crate) fn first_received(
    conn: &Connection,
    tenant: &TenantId,
    log: LogName,
    from: u64,
) -> StoreResult<Option<(u64, Timestamp)>> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached(&format!(
            "SELECT leaf_index, received_at_us FROM {} WHERE tenant_id = ?1 AND leaf_index >= ?2 \
             ORDER BY leaf_index LIMIT 1",
            table(log)
        ))
        .ctx("preparing a receipt read")?
        .query_row(params![tenant.as_str(), from as i64], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .ctx("reading a receipt time")?;
    row.map(|(index, at)| Ok((ledger::index_from(index)?, Timestamp::from_micros(at)))).transpose()
}

fn active_hold(conn: &Connection, tenant: &TenantId) -> StoreResult<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM legal_holds WHERE tenant_id = ?1 AND released_at_us IS NULL)")
        .ctx("preparing the hold check")?
        .query_row(params![tenant.as_str()], |row| row.get(0))
        .ctx("checking legal holds")
}

/// Prunes in one immediate transaction: the retention record first (the next leaf),
/// then the tombstone naming it, then the removal, which the database's trigger checks
/// against the tombstone, the tenant's retention and its own clock.
pub(crate) fn prune(
    conn: &mut Connection,
    tenant: &TenantId,
    log: LogName,
    prune: &LogPrune,
) -> StoreResult<PruneOutcome> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a prune")?;
    if active_hold(&tx, tenant)? {
        return Ok(PruneOutcome::Held);
    }
    if pruned_before(&tx, tenant, log)? >= prune.before_index {
        return Ok(PruneOutcome::Removed(0));
    }
    let removing: i64 = tx
        .query_row(
            &format!("SELECT COUNT(*) FROM {} WHERE tenant_id = ?1 AND leaf_index < ?2", table(log)),
            params![tenant.as_str(), prune.before_index as i64],
            |row| row.get(0),
        )
        .ctx("counting records under the tombstone")?;
    let record = prune.record(tenant, log, u64::try_from(removing).unwrap_or(0));
    let appended = append_in(&tx, tenant, log, vec![record], prune.pruned_at)?;
    if appended.inserted != 1 {
        return Err(crate::StoreError::LogConflict { log: log.as_str(), id: prune.event_id(log) });
    }
    tx.execute(
        "INSERT INTO ledger_prunes (tenant_id, log, before_index, received_before_us, policy, pruned_at_us, \
         retention_days, leaf_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            tenant.as_str(),
            log.as_str(),
            prune.before_index as i64,
            prune.received_before.as_micros(),
            prune.policy,
            prune.pruned_at.as_micros(),
            i64::from(prune.retention_days),
            appended.size as i64 - 1
        ],
    )
    .ctx("writing the tombstone")?;
    let removed = tx
        .execute(
            &format!("DELETE FROM {} WHERE tenant_id = ?1 AND leaf_index < ?2", table(log)),
            params![tenant.as_str(), prune.before_index as i64],
        )
        .ctx("removing records under the tombstone")?;
    tx.commit().ctx("committing a prune")?;
    Ok(PruneOutcome::Removed(removed as u64))
}

const HOLD_COLUMNS: &str = "id, reason, created_by, created_at_us, released_at_us";

fn hold_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LegalHold> {
    Ok(LegalHold {
        id: row.get(0)?,
        reason: row.get(1)?,
        created_by: row.get(2)?,
        created_at: Timestamp::from_micros(row.get(3)?),
        released_at: row.get::<_, Option<i64>>(4)?.map(Timestamp::from_micros),
    })
}

/// Appends an action's records: the audit record first; returns its leaf index.
pub(crate) fn record_action(
    tx: &Connection,
    tenant: &TenantId,
    records: ActionRecords,
    at: Timestamp,
) -> StoreResult<u64> {
    let (audit_id, timeline_id) = (records.audit.event_id.clone(), records.timeline.event_id.clone());
    let not_written = crate::StoreError::record_not_written;
    let audit = append_in(tx, tenant, LogName::Audit, vec![records.audit], at).map_err(not_written)?;
    if audit.inserted != 1 {
        return Err(not_written(crate::StoreError::LogConflict { log: LogName::Audit.as_str(), id: audit_id }));
    }
    let timeline = append_in(tx, tenant, LogName::Timeline, vec![records.timeline], at).map_err(not_written)?;
    if timeline.inserted != 1 {
        return Err(not_written(crate::StoreError::LogConflict { log: LogName::Timeline.as_str(), id: timeline_id }));
    }
    Ok(audit.size - 1)
}

pub(crate) fn create_hold(
    conn: &mut Connection,
    tenant: &TenantId,
    hold: &LegalHold,
    records: ActionRecords,
) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a legal hold")?;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO legal_holds (tenant_id, {HOLD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
            ),
            params![
                tenant.as_str(),
                hold.id,
                hold.reason,
                hold.created_by,
                hold.created_at.as_micros(),
                hold.released_at.map(Timestamp::as_micros)
            ],
        )
        .ctx("placing a legal hold")?;
    if inserted == 0 {
        return Err(crate::StoreError::AlreadyExists { what: "legal hold", id: hold.id.clone() });
    }
    record_action(&tx, tenant, records, hold.created_at)?;
    tx.commit().ctx("committing a legal hold")
}

pub(crate) fn release_hold(
    conn: &mut Connection,
    tenant: &TenantId,
    id: &str,
    at: Timestamp,
    records: ActionRecords,
) -> StoreResult<LegalHold> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning a hold release")?;
    let active: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE tenant_id = ?1 AND id = ?2 AND released_at_us IS NULL)",
            params![tenant.as_str(), id],
            |row| row.get(0),
        )
        .ctx("finding the hold to release")?;
    if !active {
        return Err(crate::StoreError::NotFound { what: "active legal hold", id: id.to_owned() });
    }
    let release_leaf = record_action(&tx, tenant, records, at)?;
    let hold = tx
        .prepare_cached(&format!(
            "UPDATE legal_holds SET released_at_us = ?3, release_leaf = ?4 WHERE tenant_id = ?1 AND id = ?2 \
             AND released_at_us IS NULL RETURNING {HOLD_COLUMNS}"
        ))
        .ctx("preparing a hold release")?
        .query_row(params![tenant.as_str(), id, at.as_micros(), release_leaf as i64], hold_from_row)
        .ctx("releasing a legal hold")?;
    tx.commit().ctx("committing a hold release")?;
    Ok(hold)
}

pub(crate) fn holds(conn: &Connection, tenant: &TenantId) -> StoreResult<Vec<LegalHold>> {
    conn.prepare_cached(&format!(
        "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE tenant_id = ?1 ORDER BY created_at_us DESC, id"
    ))
    .ctx("preparing the hold list")?
    .query_map(params![tenant.as_str()], hold_from_row)
    .ctx("listing legal holds")?
    .collect::<rusqlite::Result<Vec<_>>>()
    .ctx("listing legal holds")
}

/// The benchmark baseline: the same rows inserted into a log's table with one prepared
/// statement in one transaction, leaf indexes from `first`, with no hashing, no subtree
/// hashes, no head and no duplicate checks.
pub(crate) fn baseline_insert(
    conn: &mut Connection,
    tenant: &TenantId,
    log: LogName,
    records: &[LogAppend],
    first: u64,
    received_at: Timestamp,
) -> StoreResult<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("beginning")?;
    {
        let mut insert = tx.prepare_cached(&insert_sql(log, false)).ctx("preparing")?;
        for (offset, record) in records.iter().enumerate() {
            insert_row(&mut insert, tenant, first + offset as u64, record, received_at).ctx("inserting")?;
        }
    }
    tx.commit().ctx("committing")?;
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrated() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for migration in crate::sqlite::MIGRATIONS {
            conn.execute_batch(migration.sql).unwrap();
        }
        conn
    }

    fn plan(conn: &Connection, sql: &str, bound: Vec<rusqlite::types::Value>) -> Vec<String> {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        statement.query_map(params_from_iter(bound), |row| row.get(3)).unwrap().map(Result::unwrap).collect()
    }

    /// A lookup by trace id searches both columns of the trace index, with or without a
    /// time window or a cursor, in both logs: not the time index through every record.
    #[test]
    fn trace_lookups_use_the_trace_index() {
        let conn = migrated();
        let tenant = TenantId::parse("acme").unwrap();
        let at = Timestamp::from_micros(1_800_000_000_000_000);
        for log in [LogName::Timeline, LogName::Audit] {
            let traced = LogQuery::default().filter("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            let windowed =
                LogQuery { from: Some(at), to: Some(at.saturating_add_micros(60_000_000)), ..traced.clone() };
            let paged = LogQuery { after: Some((at, 17)), ..traced.clone() };
            for query in [traced, windowed, paged] {
                let (sql, bound) = page_sql(&tenant, log, &query, 100);
                let steps = plan(&conn, &sql, bound);
                let expected =
                    format!("SEARCH {} USING INDEX {}_by_trace (tenant_id=? AND <expr>=?)", table(log), table(log));
                assert!(steps.contains(&expected), "{sql}: {steps:?}");
            }
        }
    }

    /// Without a trace id, a page walks the time index, already in the order it returns.
    #[test]
    fn other_pages_walk_the_time_index() {
        let conn = migrated();
        let tenant = TenantId::parse("acme").unwrap();
        let (sql, bound) =
            page_sql(&tenant, LogName::Timeline, &LogQuery::default().filter("kind", "platform.a.b"), 100);
        let steps = plan(&conn, &sql, bound);
        assert_eq!(steps, ["SEARCH timeline_events USING INDEX timeline_events_by_ts (tenant_id=?)"], "{sql}");
    }

    /// The key the queries match is the expression both backends' migration indexes.
    #[test]
    fn the_trace_key_is_the_indexed_expression() {
        for sql in [
            include_str!("../migrations/sqlite/0008_trace_keys.sql"),
            include_str!("../migrations/postgres/0008_trace_keys.sql"),
        ] {
            for t in ["timeline_events", "audit_records"] {
                let index = format!("CREATE INDEX {t}_by_trace ON {t} (tenant_id, {});", ledger::TRACE_KEY);
                assert!(sql.contains(&index), "{index}");
            }
        }
    }
}
