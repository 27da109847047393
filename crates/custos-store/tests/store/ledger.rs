//! The tamper-evident logs in the store, run unchanged against SQLite and PostgreSQL:
//! appends hash into the Merkle log the ledger math defines, proofs read from stored
//! hashes verify, appends are atomic and idempotent, queries filter and paginate, and
//! the database itself refuses to rewrite or delete a record.

use std::sync::Arc;

use custos_ledger::merkle::{self, MemoryLog, leaf_hash};
use custos_model::ledger::{LogName, TimelineEvent};
use custos_model::{TenantId, Timestamp};
use custos_store::testing::action_records;
use custos_store::{
    KeyOverlap, LegalHold, LogAppend, LogPrune, LogQuery, PruneOutcome, SigningKeyRecord, Store, StoreError,
    StoredCheckpoint, Tenant,
};

use crate::support::{postgres, sqlite};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { let f = super::sqlite().await; super::$name(f.store.clone()).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { let f = super::postgres().await; super::$name(f.store.clone()).await })*
        }
    };
}

both_backends!(
    a_failed_run_is_stored_with_its_event_whatever_its_id,
    appends_hash_into_the_merkle_log_and_prove,
    appends_are_idempotent_and_atomic,
    pages_filter_and_paginate,
    checkpoints_are_kept,
    tenants_have_separate_logs,
    concurrent_appends_keep_one_sequence,
    signing_keys_are_published_and_retired,
    retention_prunes_under_a_tombstone_unless_held,
);

fn t0() -> Timestamp {
    Timestamp::parse("t", "2026-11-23T12:00:00Z").unwrap()
}

async fn setup(store: &dyn Store, id: &str) -> TenantId {
    let tenant = TenantId::parse(id).unwrap();
    store
        .create_tenant(&Tenant { id: tenant.clone(), name: None, retention_days: 30, created_at: t0() })
        .await
        .unwrap();
    tenant
}

fn event(tenant: &TenantId, n: u64, kind: &str) -> LogAppend {
    LogAppend::timeline(&TimelineEvent {
        event_id: format!("e-{n}"),
        ts: t0().saturating_add_micros(n as i64 * 1_000_000),
        tenant_id: tenant.clone(),
        project_id: None,
        kind: kind.into(),
        actor: Some(format!("user-{}", n % 3)),
        resource_type: Some("connector".into()),
        resource_id: Some(format!("c-{}", n % 2)),
        trace_id: n.is_multiple_of(5).then(|| format!("{:032x}", n + 1)),
        details: serde_json::json!({"n": n}),
    })
}

/// The log the ledger math defines over the same records, for comparison.
fn memory_log(records: &[LogAppend]) -> MemoryLog {
    let mut log = MemoryLog::new();
    for record in records {
        log.push(leaf_hash(record.record.as_bytes()));
    }
    log
}

async fn appends_hash_into_the_merkle_log_and_prove(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    let records: Vec<LogAppend> = (0..37).map(|n| event(&tenant, n, "platform.policy.changed")).collect();
    for batch in [&records[..1], &records[1..10], &records[10..]] {
        store.append_log(&tenant, LogName::Timeline, batch.to_vec(), t0()).await.unwrap();
    }
    let expected = memory_log(&records);
    let head = store.log_head(&tenant, LogName::Timeline).await.unwrap();
    assert_eq!((head.size, head.root), (37, expected.root(37).unwrap()));
    assert_eq!(store.log_head(&tenant, LogName::Audit).await.unwrap().size, 0, "the audit log is separate");

    // Inclusion proofs from stored hashes, for every leaf, verify against the root.
    for index in 0..37 {
        let plan = merkle::inclusion_plan(index, 37).unwrap();
        let stored = store.log_nodes(&tenant, LogName::Timeline, &plan.nodes()).await.unwrap();
        assert_eq!(stored.len(), plan.nodes().len(), "every node a proof needs is stored");
        let proof = plan.assemble(|n| stored.iter().find(|(id, _)| *id == n).map(|(_, h)| *h)).unwrap();
        assert_eq!(proof, expected.inclusion_proof(index, 37).unwrap());
        let leaf = leaf_hash(records[index as usize].record.as_bytes());
        merkle::verify_inclusion(index, 37, &leaf, &proof, &head.root).unwrap();
    }
    let plan = merkle::consistency_plan(10, 37).unwrap();
    let stored = store.log_nodes(&tenant, LogName::Timeline, &plan.nodes()).await.unwrap();
    let proof = plan.assemble(|n| stored.iter().find(|(id, _)| *id == n).map(|(_, h)| *h)).unwrap();
    merkle::verify_consistency(10, 37, &expected.root(10).unwrap(), &head.root, &proof).unwrap();

    // Leaves come back in order with their bytes, and an event by its id.
    let leaves = store.log_leaves(&tenant, LogName::Timeline, 5, 40).await.unwrap();
    assert_eq!(leaves.iter().map(|l| l.leaf_index).collect::<Vec<_>>(), (5..37).collect::<Vec<_>>());
    assert!(leaves.iter().all(|l| l.record.as_deref() == Some(records[l.leaf_index as usize].record.as_str())));
    assert!(leaves.iter().all(|l| l.leaf_hash == leaf_hash(records[l.leaf_index as usize].record.as_bytes())));
    let entry = store.log_entry(&tenant, LogName::Timeline, "e-12").await.unwrap().unwrap();
    assert_eq!((entry.leaf_index, entry.record.as_str()), (12, records[12].record.as_str()));
    assert!(store.log_entry(&tenant, LogName::Timeline, "nope").await.unwrap().is_none());
}

async fn appends_are_idempotent_and_atomic(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    let batch: Vec<LogAppend> = (0..5).map(|n| event(&tenant, n, "platform.a.b")).collect();
    let first = store.append_log(&tenant, LogName::Timeline, batch.clone(), t0()).await.unwrap();
    assert_eq!((first.inserted, first.duplicates, first.size), (5, 0, 5));

    // The same batch again, and a repeat within a batch: duplicates, no new leaves.
    let mut again = batch.clone();
    again.push(event(&tenant, 5, "platform.a.b"));
    again.push(event(&tenant, 5, "platform.a.b"));
    let second = store.append_log(&tenant, LogName::Timeline, again, t0()).await.unwrap();
    assert_eq!((second.inserted, second.duplicates, second.size), (1, 6, 6));

    // A known id with other bytes fails the whole batch; nothing of it is written.
    let conflicting = vec![event(&tenant, 6, "platform.a.b"), event(&tenant, 2, "platform.other.kind")];
    let err = store.append_log(&tenant, LogName::Timeline, conflicting, t0()).await.unwrap_err();
    assert!(matches!(&err, StoreError::LogConflict { log: "timeline", id } if id == "e-2"), "{err}");
    let in_batch = vec![event(&tenant, 7, "platform.a.b"), event(&tenant, 7, "platform.c.d")];
    assert!(matches!(
        store.append_log(&tenant, LogName::Timeline, in_batch, t0()).await,
        Err(StoreError::LogConflict { .. })
    ));
    let head = store.log_head(&tenant, LogName::Timeline).await.unwrap();
    assert_eq!(head.size, 6);
    assert!(store.log_entry(&tenant, LogName::Timeline, "e-6").await.unwrap().is_none());
    let mut all: Vec<LogAppend> = batch;
    all.push(event(&tenant, 5, "platform.a.b"));
    assert_eq!(head.root, memory_log(&all).root(6).unwrap());
}

async fn pages_filter_and_paginate(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    let records: Vec<LogAppend> = (0..50)
        .map(|n| event(&tenant, n, if n.is_multiple_of(2) { "platform.job.failed" } else { "platform.job.ok" }))
        .collect();
    store.append_log(&tenant, LogName::Timeline, records, t0()).await.unwrap();

    // Every page of 7, newest first, with no gap or repeat.
    let mut seen = Vec::new();
    let mut query = LogQuery { limit: 7, ..LogQuery::default() };
    loop {
        let page = store.log_page(&tenant, LogName::Timeline, &query).await.unwrap();
        seen.extend(page.items.iter().map(|e| e.leaf_index));
        let Some(cursor) = page.next_cursor else { break };
        query.after = Some(custos_store::ledger::cursor_position(&cursor).unwrap());
    }
    assert_eq!(seen, (0..50).rev().collect::<Vec<_>>());

    let failed_on_c0 = LogQuery { limit: 100, ..LogQuery::default() }
        .filter("kind", "platform.job.failed")
        .filter("resource_id", "c-0");
    let page = store.log_page(&tenant, LogName::Timeline, &failed_on_c0).await.unwrap();
    assert_eq!(page.items.len(), 25);
    assert!(page.next_cursor.is_none());
    // Every trace id here shares its first 8 characters, the indexed key: the full id
    // picks the one record.
    let traced = LogQuery { limit: 100, ..LogQuery::default() }.filter("trace_id", format!("{:032x}", 11));
    let page = store.log_page(&tenant, LogName::Timeline, &traced).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["e-10"]);
    let window = LogQuery {
        from: Some(t0().saturating_add_micros(10_000_000)),
        to: Some(t0().saturating_add_micros(20_000_000)),
        limit: 100,
        ..LogQuery::default()
    };
    let page = store.log_page(&tenant, LogName::Timeline, &window).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.leaf_index).collect::<Vec<_>>(), (10..20).rev().collect::<Vec<_>>());
}

async fn checkpoints_are_kept(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    assert!(store.latest_checkpoint(&tenant, LogName::Audit).await.unwrap().is_none());
    let checkpoint = |size: u64, key: &str, at: i64| StoredCheckpoint {
        size,
        key_id: key.into(),
        root: [size as u8; 32],
        note: format!("o\n{size}\n...\n\n— o sig\n"),
        created_at: t0().saturating_add_micros(at),
    };
    for c in [checkpoint(3, "k1", 0), checkpoint(9, "k1", 10), checkpoint(9, "k2", 20), checkpoint(5, "k1", 30)] {
        store.put_checkpoint(&tenant, LogName::Audit, &c).await.unwrap();
    }
    // Keeping the same checkpoint twice is no error, and changes nothing.
    store.put_checkpoint(&tenant, LogName::Audit, &checkpoint(3, "k1", 99)).await.unwrap();
    assert_eq!(store.latest_checkpoint(&tenant, LogName::Audit).await.unwrap(), Some(checkpoint(9, "k2", 20)));
    assert_eq!(store.checkpoint_at(&tenant, LogName::Audit, 3).await.unwrap(), Some(checkpoint(3, "k1", 0)));
    assert!(store.checkpoint_at(&tenant, LogName::Audit, 4).await.unwrap().is_none());
    assert!(store.latest_checkpoint(&tenant, LogName::Timeline).await.unwrap().is_none());
}

async fn tenants_have_separate_logs(store: Arc<dyn Store>) {
    let acme = setup(&*store, "acme").await;
    let globex = setup(&*store, "globex").await;
    store.append_log(&acme, LogName::Timeline, vec![event(&acme, 1, "a.b")], t0()).await.unwrap();
    // The same event id in another tenant is another event, at leaf 0 of its own log.
    let outcome = store.append_log(&globex, LogName::Timeline, vec![event(&globex, 1, "a.b")], t0()).await.unwrap();
    assert_eq!((outcome.inserted, outcome.size), (1, 1));
    assert!(store.log_entry(&globex, LogName::Timeline, "e-1").await.unwrap().unwrap().record.contains("globex"));
    let page = store.log_page(&acme, LogName::Timeline, &LogQuery { limit: 10, ..LogQuery::default() }).await.unwrap();
    assert!(page.items.iter().all(|e| e.record.contains("\"tenant_id\":\"acme\"")));
}

async fn concurrent_appends_keep_one_sequence(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let (store, tenant) = (store.clone(), tenant.clone());
            tokio::spawn(async move {
                for b in 0..5u64 {
                    let batch = (0..4).map(|i| event(&tenant, w * 1000 + b * 10 + i, "a.b")).collect();
                    store.append_log(&tenant, LogName::Timeline, batch, t0()).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let head = store.log_head(&tenant, LogName::Timeline).await.unwrap();
    assert_eq!(head.size, 160);
    let leaves = store.log_leaves(&tenant, LogName::Timeline, 0, 160).await.unwrap();
    assert_eq!(leaves.iter().map(|l| l.leaf_index).collect::<Vec<_>>(), (0..160).collect::<Vec<_>>());
    let mut log = MemoryLog::new();
    for leaf in &leaves {
        assert_eq!(leaf.leaf_hash, leaf_hash(leaf.record.as_deref().unwrap().as_bytes()));
        log.push(leaf.leaf_hash);
    }
    assert_eq!(log.root(160).unwrap(), head.root, "the stored tree is the tree of the stored records");
}

async fn signing_keys_are_published_and_retired(store: Arc<dyn Store>) {
    let key = |id: &str, byte: u8, at: Timestamp| SigningKeyRecord {
        key_id: id.into(),
        algorithm: "ed25519".into(),
        public_key: [byte; 32],
        created_at: at,
        not_before: at,
        not_after: None,
    };
    assert!(store.signing_keys().await.unwrap().is_empty());
    let first = key("ed25519:aaaa", 1, t0());
    store.put_signing_key(&first).await.unwrap();
    store.put_signing_key(&first).await.unwrap();
    assert_eq!(store.signing_keys().await.unwrap(), vec![first.clone()]);

    let later = t0().saturating_add_micros(60_000_000);
    let second = key("ed25519:bbbb", 2, later);
    store.put_signing_key(&second).await.unwrap();
    let retired = store.retire_signing_keys_except("ed25519:bbbb", later, None).await.unwrap();
    assert_eq!(retired, vec![SigningKeyRecord { not_after: Some(later), ..first.clone() }]);
    // Retiring again changes nothing: the window, once closed, stays as it was.
    let again = store.retire_signing_keys_except("ed25519:bbbb", later.saturating_add_micros(1), None).await.unwrap();
    assert!(again.is_empty());
    // Nor does an overlap reopen it.
    let reopen = KeyOverlap { key_id: "ed25519:aaaa".into(), until: later.saturating_add_micros(3_600_000_000) };
    assert!(store.retire_signing_keys_except("ed25519:bbbb", later, Some(&reopen)).await.unwrap().is_empty());
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys, vec![SigningKeyRecord { not_after: Some(later), ..first.clone() }, second.clone()]);

    // A rotation with an overlap: the replaced key signs on until the window's end.
    let third_at = later.saturating_add_micros(60_000_000);
    let until = third_at.saturating_add_micros(3_600_000_000);
    let third = key("ed25519:cccc", 3, third_at);
    store.put_signing_key(&third).await.unwrap();
    let overlap = KeyOverlap { key_id: "ed25519:bbbb".into(), until };
    let retired = store.retire_signing_keys_except("ed25519:cccc", third_at, Some(&overlap)).await.unwrap();
    assert_eq!(retired, vec![SigningKeyRecord { not_after: Some(until), ..second.clone() }]);

    // Rotating again inside the window ends it early: only the file's previous key
    // may keep signing, and the key before it is no longer in the file.
    let fourth_at = third_at.saturating_add_micros(60_000_000);
    let fourth = key("ed25519:dddd", 4, fourth_at);
    store.put_signing_key(&fourth).await.unwrap();
    let overlap = KeyOverlap { key_id: "ed25519:cccc".into(), until: fourth_at.saturating_add_micros(7_200_000_000) };
    let retired = store.retire_signing_keys_except("ed25519:dddd", fourth_at, Some(&overlap)).await.unwrap();
    let mut retired: Vec<(String, Option<Timestamp>)> = retired.into_iter().map(|k| (k.key_id, k.not_after)).collect();
    retired.sort();
    assert_eq!(retired, vec![("ed25519:bbbb".into(), Some(fourth_at)), ("ed25519:cccc".into(), Some(overlap.until))]);
    let windows: Vec<Option<Timestamp>> =
        store.signing_keys().await.unwrap().into_iter().map(|k| k.not_after).collect();
    assert_eq!(windows, vec![Some(later), Some(fourth_at), Some(overlap.until), None]);

    let tenant = setup(&*store, "keys").await;
    assert_eq!(store.log_pruned_before(&tenant, LogName::Timeline).await.unwrap(), 0);
}

async fn retention_prunes_under_a_tombstone_unless_held(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    let records: Vec<LogAppend> = (0..10).map(|n| event(&tenant, n, "platform.a.b")).collect();
    // Received long enough ago for the tenant's 30 days, by the database's clock too.
    let first = Timestamp::now().saturating_add_micros(-40 * 86_400_000_000);
    let second = first.saturating_add_micros(1_000_000);
    store.append_log(&tenant, LogName::Timeline, records[..4].to_vec(), first).await.unwrap();
    store.append_log(&tenant, LogName::Timeline, records[4..].to_vec(), second).await.unwrap();
    assert_eq!(store.log_first_received(&tenant, LogName::Timeline, 0).await.unwrap(), Some((0, first)));
    assert_eq!(store.log_first_received(&tenant, LogName::Timeline, 5).await.unwrap(), Some((5, second)));
    assert_eq!(store.log_first_received(&tenant, LogName::Timeline, 10).await.unwrap(), None);

    let now = Timestamp::now();
    let prune = |before| LogPrune {
        before_index: before,
        received_before: second,
        retention_days: 30,
        policy: "test: 30 days".into(),
        pruned_at: now,
    };
    let hold = LegalHold {
        id: "case-7".into(),
        reason: "litigation".into(),
        created_by: "cli:alice".into(),
        created_at: t0(),
        released_at: None,
    };
    let placed = action_records(&tenant, "custos.hold.placed", "case-7");
    store.create_hold(&tenant, &hold, &placed).await.unwrap();
    // A second placing fails whole: its records are not appended either.
    let again = action_records(&tenant, "custos.hold.placed", "case-7");
    assert!(matches!(store.create_hold(&tenant, &hold, &again).await, Err(StoreError::AlreadyExists { .. })));
    assert!(store.log_entry(&tenant, LogName::Audit, &again.audit.event_id).await.unwrap().is_none());
    assert!(store.log_entry(&tenant, LogName::Audit, &placed.audit.event_id).await.unwrap().is_some());
    assert_eq!(store.prune_log(&tenant, LogName::Timeline, &prune(4)).await.unwrap(), PruneOutcome::Held);
    assert_eq!(store.log_pruned_before(&tenant, LogName::Timeline).await.unwrap(), 0);
    // The release is on the record in its own transaction: the audit record the database
    // requires comes first.
    let release = action_records(&tenant, "custos.hold.released", "case-7");
    let released = store.release_hold(&tenant, "case-7", second, &release).await.unwrap();
    assert_eq!(released.released_at, Some(second));
    let recorded = store.log_entry(&tenant, LogName::Audit, &release.audit.event_id).await.unwrap().unwrap();
    assert_eq!(recorded.record, release.audit.record);
    let twice = action_records(&tenant, "custos.hold.released", "case-7");
    assert!(matches!(store.release_hold(&tenant, "case-7", second, &twice).await, Err(StoreError::NotFound { .. })));
    assert!(store.log_entry(&tenant, LogName::Audit, &twice.audit.event_id).await.unwrap().is_none());
    // A release whose audit record is not the hold's is refused by the database.
    let other = LegalHold { id: "case-8".into(), ..hold.clone() };
    store.create_hold(&tenant, &other, &action_records(&tenant, "custos.hold.placed", "case-8")).await.unwrap();
    let wrong = action_records(&tenant, "custos.hold.released", "case-7");
    assert!(store.release_hold(&tenant, "case-8", second, &wrong).await.is_err());
    assert!(store.log_entry(&tenant, LogName::Audit, &wrong.audit.event_id).await.unwrap().is_none());
    let right = action_records(&tenant, "custos.hold.released", "case-8");
    let other = store.release_hold(&tenant, "case-8", second, &right).await.unwrap();
    assert_eq!(store.holds(&tenant).await.unwrap(), vec![released, other]);

    let size = store.log_head(&tenant, LogName::Timeline).await.unwrap().size;
    assert_eq!(store.prune_log(&tenant, LogName::Timeline, &prune(4)).await.unwrap(), PruneOutcome::Removed(4));
    assert_eq!(store.prune_log(&tenant, LogName::Timeline, &prune(2)).await.unwrap(), PruneOutcome::Removed(0));
    assert_eq!(store.log_pruned_before(&tenant, LogName::Timeline).await.unwrap(), 4);
    assert_eq!(store.log_first_received(&tenant, LogName::Timeline, 0).await.unwrap(), Some((4, second)));
    assert!(store.log_entry(&tenant, LogName::Timeline, "e-1").await.unwrap().is_none());
    // The prune is a leaf of the log itself, appended before the removal.
    let retention = store.log_entry(&tenant, LogName::Timeline, "custos-retention-timeline-4").await.unwrap().unwrap();
    assert_eq!(retention.leaf_index, size);
    let details: serde_json::Value = serde_json::from_str(&retention.record).unwrap();
    assert_eq!(details["kind"], "custos.retention.pruned");
    assert_eq!(details["details"]["records_removed"], 4);
    assert_eq!(details["details"]["retention_days"], 30);
    assert_eq!(details["details"]["before_index"], 4);
    // The hashes stay: every leaf hash and every proof are as before.
    let leaves = store.log_leaves(&tenant, LogName::Timeline, 0, 10).await.unwrap();
    assert_eq!(leaves.len(), 10);
    for leaf in &leaves {
        assert_eq!(leaf.leaf_hash, leaf_hash(records[leaf.leaf_index as usize].record.as_bytes()));
        assert_eq!(leaf.record.is_none(), leaf.leaf_index < 4);
    }
    assert_eq!(store.log_pruned_before(&tenant, LogName::Audit).await.unwrap(), 0, "the audit log is apart");
}

/// A failed run and its timeline event are stored together, even when the run's id is
/// as long as ids may be (its event id then carries the id's digest).
async fn a_failed_run_is_stored_with_its_event_whatever_its_id(store: Arc<dyn Store>) {
    use custos_model::records::{RuleRun, Validate, ValidationContext};
    let tenant = setup(&*store, "acme").await;
    let long = "r".repeat(custos_model::ids::MAX_ID_LEN);
    let runs: Vec<RuleRun> = ["short", long.as_str()]
        .iter()
        .map(|id| {
            let input = serde_json::from_value(serde_json::json!({"id": id, "rule_key": "k", "status": "failed",
                "error_message": "boom", "started_at": "2026-11-23T10:00:00Z"}))
            .unwrap();
            RuleRun::validate(input, &ValidationContext::new(Timestamp::now())).unwrap()
        })
        .collect();
    store.record_rule_runs(&tenant, runs, Timestamp::now()).await.unwrap();
    for id in ["short", long.as_str()] {
        let event_id = custos_store::ledger::failure_event_id("rule_run", id);
        assert!(event_id.len() <= custos_model::ids::MAX_ID_LEN, "{event_id}");
        let event = store.log_entry(&tenant, LogName::Timeline, &event_id).await.unwrap().expect("the event is there");
        let record: serde_json::Value = serde_json::from_str(&event.record).unwrap();
        assert_eq!(record["details"]["record_id"], id);
    }
}
