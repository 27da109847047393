//! The database's own refusal to rewrite history, below the application: triggers on
//! both backends refuse UPDATE and DELETE of log records, subtree hashes, checkpoints
//! and tombstones (the owner's too); on PostgreSQL the service's role lacks the
//! privileges as well. A record leaves only under a tombstone that names a retention
//! record in the log, only once it is older than the tenant's retention by the
//! database's own clock, and never while a legal hold is active; a hold is released
//! only with its release in the audit log.

use custos_model::ledger::{LogName, TimelineEvent};
use custos_model::{TenantId, Timestamp};
use custos_store::{LogAppend, PostgresStore, Store, Tenant};
use sqlx::{Connection, Executor};

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn events(n: u64) -> Vec<LogAppend> {
    (0..n)
        .map(|i| {
            LogAppend::timeline(&TimelineEvent {
                event_id: format!("e-{i}"),
                ts: Timestamp::from_micros(i as i64),
                tenant_id: acme(),
                project_id: None,
                kind: "platform.a.b".into(),
                actor: None,
                resource_type: None,
                resource_id: None,
                trace_id: None,
                details: serde_json::json!({}),
            })
        })
        .collect()
}

/// Leaves 0-3 received three days ago, 4-5 now, 6 a retention record; the tenant keeps
/// its timeline for one day.
async fn seeded(store: &dyn Store) {
    store
        .create_tenant(&Tenant { id: acme(), name: None, retention_days: 1, created_at: Timestamp::now() })
        .await
        .unwrap();
    let records = events(6);
    store.append_log(&acme(), LogName::Timeline, records[..4].to_vec(), days_ago(3)).await.unwrap();
    store.append_log(&acme(), LogName::Timeline, records[4..].to_vec(), Timestamp::now()).await.unwrap();
    let mut retention = events(7).remove(6);
    retention.kind = "custos.retention.pruned".into();
    store.append_log(&acme(), LogName::Timeline, vec![retention], Timestamp::now()).await.unwrap();
    let mut release = events(8).remove(7);
    (release.kind, release.resource_id) = ("custos.hold.released".into(), Some("h1".into()));
    store.append_log(&acme(), LogName::Audit, vec![release], Timestamp::now()).await.unwrap();
}

fn days_ago(days: i64) -> Timestamp {
    Timestamp::now().saturating_add_micros(-days * 86_400_000_000)
}

/// A tombstone row: records below `before` received before `cutoff`, under a retention
/// of `days`, accounted for by the retention record at `leaf`.
fn tombstone(before: u64, cutoff: Timestamp, days: u32, leaf: u64) -> String {
    format!(
        "INSERT INTO ledger_prunes (tenant_id, log, before_index, received_before_us, policy, pruned_at_us, \
         retention_days, leaf_index) VALUES ('acme', 'timeline', {before}, {}, 'test', 0, {days}, {leaf})",
        cutoff.as_micros()
    )
}

/// The prunes the database must refuse, as SQL run before an attempt to remove leaf
/// `target`: each is what a compromised application role would try.
fn refused_prunes() -> Vec<(&'static str, String, u64)> {
    let day_and_more = days_ago(1).saturating_add_micros(-1_000_000);
    vec![
        ("a record younger than the cutoff", tombstone(6, day_and_more, 1, 6), 4),
        ("a cutoff closer than the retention", tombstone(6, Timestamp::now(), 1, 6), 4),
        ("a retention under the tenant's", tombstone(6, Timestamp::now(), 0, 6), 4),
        ("a tombstone naming no retention record", tombstone(4, day_and_more, 1, 1), 0),
    ]
}

const REFUSED_ON_BOTH: &[&str] = &[
    "UPDATE timeline_events SET record = '{}' WHERE leaf_index = 1",
    "DELETE FROM timeline_events WHERE leaf_index = 1",
    "UPDATE ledger_nodes SET hash = hash WHERE idx = 0",
    "DELETE FROM ledger_nodes WHERE level = 0",
    "INSERT INTO ledger_checkpoints VALUES ('acme', 'timeline', 1, 'k', x'00', 'n', 0)",
    "DELETE FROM ledger_checkpoints",
];

#[tokio::test]
async fn sqlite_triggers_refuse_rewrites_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = custos_store::open(None, dir.path()).await.unwrap();
    seeded(&*store).await;
    let conn = rusqlite::Connection::open(dir.path().join("custos.db")).unwrap();
    for (i, sql) in REFUSED_ON_BOTH.iter().enumerate() {
        let result = conn.execute(sql, []);
        // The checkpoint insert is allowed (append); its delete is what must fail.
        if i == 4 {
            result.unwrap();
            continue;
        }
        let err = result.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // Each forged prune is refused; each attempt in a transaction of its own.
    for (what, sql, target) in refused_prunes() {
        conn.execute("BEGIN", []).unwrap();
        conn.execute(&sql, []).unwrap();
        let err = conn.execute(&format!("DELETE FROM timeline_events WHERE leaf_index = {target}"), []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{what}: {err}");
        conn.execute("ROLLBACK", []).unwrap();
    }
    // A tombstone lets retention remove the old records it covers, and no others.
    conn.execute(&tombstone(6, days_ago(1).saturating_add_micros(-1_000_000), 1, 6), []).unwrap();
    assert!(conn.execute("DELETE FROM timeline_events WHERE leaf_index = 4", []).is_err(), "received now");
    assert_eq!(conn.execute("DELETE FROM timeline_events WHERE leaf_index < 2", []).unwrap(), 2);
    assert!(conn.execute("DELETE FROM ledger_prunes", []).unwrap_err().to_string().contains("append-only"));
    // A legal hold stops even covered deletes, and is released only on the record.
    conn.execute("INSERT INTO legal_holds VALUES ('acme', 'h1', 'case 7', 'test', 0, NULL, NULL)", []).unwrap();
    assert!(conn.execute("DELETE FROM timeline_events WHERE leaf_index = 2", []).is_err());
    for release in [
        "UPDATE legal_holds SET released_at_us = 1",
        "UPDATE legal_holds SET released_at_us = 1, release_leaf = 5",
        "DELETE FROM legal_holds",
    ] {
        let err = conn.execute(release, []).unwrap_err().to_string();
        assert!(err.contains("legal_holds"), "{release}: {err}");
    }
    conn.execute("UPDATE legal_holds SET released_at_us = 1, release_leaf = 0", []).unwrap();
    assert!(conn.execute("UPDATE legal_holds SET released_at_us = 2", []).is_err(), "released once");
    assert_eq!(conn.execute("DELETE FROM timeline_events WHERE leaf_index = 2", []).unwrap(), 1);
    // The leaf hashes outlive the records.
    let leaves = store.log_leaves(&acme(), LogName::Timeline, 0, 7).await.unwrap();
    assert_eq!(
        leaves.iter().map(|l| l.record.is_some()).collect::<Vec<_>>(),
        [false, false, false, true, true, true, true]
    );
}

#[tokio::test]
async fn postgres_refuses_rewrites_by_privilege_and_by_trigger() {
    let database = custos_store::testing::fresh_postgres().await;
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    seeded(&store).await;

    // The service's role: no such privilege.
    let mut app = store.pool().acquire().await.unwrap();
    for sql in ["UPDATE timeline_events SET record = '{}'", "DELETE FROM timeline_events", "TRUNCATE timeline_events"] {
        let mut tx = app.begin().await.unwrap();
        tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
        let err = tx.execute(sql).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }

    // The owner: the triggers.
    let mut owner = sqlx::PgConnection::connect(database.url()).await.unwrap();
    for (i, sql) in REFUSED_ON_BOTH.iter().enumerate() {
        let result = owner.execute(sqlx::AssertSqlSafe(sql.replace("x'00'", "'\\x00'::bytea"))).await;
        if i == 4 {
            result.unwrap();
            continue;
        }
        let err = result.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let err = owner.execute("TRUNCATE ledger_nodes").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");

    // Retention's one door: custos_prune_log, under a tombstone, for the transaction's tenant.
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    let err = tx.execute("SELECT custos_prune_log('timeline', 2)").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "without a tombstone: {err}");
    tx.rollback().await.unwrap();
    for (what, sql, target) in refused_prunes() {
        let mut tx = app.begin().await.unwrap();
        tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
        tx.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        let prune = format!("SELECT custos_prune_log('timeline', {})", target + 1);
        let err = tx.execute(sqlx::AssertSqlSafe(prune)).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{what}: {err}");
        tx.rollback().await.unwrap();
    }
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    tx.execute(sqlx::AssertSqlSafe(tombstone(2, days_ago(1).saturating_add_micros(-1_000_000), 1, 6))).await.unwrap();
    let deleted: i64 = sqlx::query_scalar("SELECT custos_prune_log('timeline', 2)").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(deleted, 2);
    tx.execute("INSERT INTO legal_holds VALUES ('acme', 'h1', 'case 7', 'test', 0, NULL, NULL)").await.unwrap();
    tx.execute(sqlx::AssertSqlSafe(tombstone(4, days_ago(1).saturating_add_micros(-1_000_000), 1, 6))).await.unwrap();
    let err = tx.execute("SELECT custos_prune_log('timeline', 4)").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "under a legal hold: {err}");
    tx.rollback().await.unwrap();

    // A hold is released only with its release in the audit log, and never deleted.
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    tx.execute("INSERT INTO legal_holds VALUES ('acme', 'h1', 'case 7', 'test', 0, NULL, NULL)").await.unwrap();
    tx.commit().await.unwrap();
    for release in [
        "UPDATE legal_holds SET released_at_us = 1",
        "UPDATE legal_holds SET released_at_us = 1, release_leaf = 5",
        "DELETE FROM legal_holds",
    ] {
        let mut tx = app.begin().await.unwrap();
        tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
        let err = tx.execute(release).await.unwrap_err().to_string();
        assert!(err.contains("legal_holds") || err.contains("permission denied"), "{release}: {err}");
    }
    // A row merely inserted into audit_records, outside the Merkle tree, releases nothing.
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    tx.execute(
        "INSERT INTO audit_records (tenant_id, leaf_index, event_id, ts_us, kind, resource_id, record, received_at_us) \
         VALUES ('acme', 9000000000000, 'forged', 0, 'custos.hold.released', 'h1', '{}', 0)",
    )
    .await
    .unwrap();
    let err = tx.execute("UPDATE legal_holds SET released_at_us = 1, release_leaf = 9000000000000").await.unwrap_err();
    assert!(err.to_string().contains("legal_holds"), "{err}");
    tx.rollback().await.unwrap();

    // A session's temporary tables do not stand in for custos's: with the hold active, a
    // temporary, empty legal_holds changes nothing.
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    tx.execute("CREATE TEMP TABLE legal_holds (LIKE public.legal_holds)").await.unwrap();
    tx.execute("CREATE TEMP TABLE tenants (LIKE public.tenants)").await.unwrap();
    tx.execute(sqlx::AssertSqlSafe(tombstone(2, days_ago(1).saturating_add_micros(-1_000_000), 1, 6))).await.unwrap();
    let err = tx.execute("SELECT custos_prune_log('timeline', 2)").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "the real hold still holds: {err}");
    tx.rollback().await.unwrap();

    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    tx.execute("UPDATE legal_holds SET released_at_us = 1, release_leaf = 0").await.unwrap();
    tx.commit().await.unwrap();
}
