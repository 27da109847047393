//! The database's own refusal to rewrite history, below the application: triggers on
//! both backends refuse UPDATE and DELETE of log records, subtree hashes, checkpoints
//! and tombstones (the owner's too); on PostgreSQL the service's role lacks the
//! privileges as well. A record leaves only under a tombstone, and never while a legal
//! hold is active.

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

async fn seeded(store: &dyn Store) {
    store
        .create_tenant(&Tenant { id: acme(), name: None, retention_days: 1, created_at: Timestamp::now() })
        .await
        .unwrap();
    store.append_log(&acme(), LogName::Timeline, events(4), Timestamp::now()).await.unwrap();
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
    // A tombstone lets retention remove the records it covers, and no others.
    conn.execute("INSERT INTO ledger_prunes VALUES ('acme', 'timeline', 2, 0, 'test', 0)", []).unwrap();
    assert!(conn.execute("DELETE FROM timeline_events WHERE leaf_index = 2", []).is_err());
    assert_eq!(conn.execute("DELETE FROM timeline_events WHERE leaf_index < 2", []).unwrap(), 2);
    assert!(conn.execute("DELETE FROM ledger_prunes", []).unwrap_err().to_string().contains("append-only"));
    // A legal hold stops even covered deletes.
    conn.execute("INSERT INTO ledger_prunes VALUES ('acme', 'timeline', 4, 0, 'test', 1)", []).unwrap();
    conn.execute("INSERT INTO legal_holds VALUES ('acme', 'h1', 'case 7', 'test', 0, NULL)", []).unwrap();
    assert!(conn.execute("DELETE FROM timeline_events WHERE leaf_index = 2", []).is_err());
    // The leaf hashes outlive the records.
    let leaves = store.log_leaves(&acme(), LogName::Timeline, 0, 4).await.unwrap();
    assert_eq!(leaves.iter().map(|l| l.record.is_some()).collect::<Vec<_>>(), [false, false, true, true]);
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
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    tx.execute("INSERT INTO ledger_prunes VALUES ('acme', 'timeline', 2, 0, 'test', 0)").await.unwrap();
    let deleted: i64 = sqlx::query_scalar("SELECT custos_prune_log('timeline', 2)").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(deleted, 2);
    tx.execute("INSERT INTO legal_holds VALUES ('acme', 'h1', 'case 7', 'test', 0, NULL)").await.unwrap();
    tx.execute("INSERT INTO ledger_prunes VALUES ('acme', 'timeline', 4, 0, 'test', 1)").await.unwrap();
    let err = tx.execute("SELECT custos_prune_log('timeline', 4)").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "under a legal hold: {err}");
}
