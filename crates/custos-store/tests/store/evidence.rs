//! The evidence locker's rows, run unchanged against SQLite and PostgreSQL: artifacts
//! and bundles are recorded once, a bundle and its attestation land together, tenants
//! see only their own, case holds come and go, and the database refuses to rewrite an
//! evidence row or delete one under hold.

use std::sync::Arc;

use custos_model::{TenantId, Timestamp};
use custos_store::{
    ArtifactRecord, AttestationQuery, AttestationRecord, BundleRecord, LegalHold, PostgresStore, Store, StoreError,
    Tenant,
};
use sqlx::{Connection, Executor};

use crate::support::{postgres, sqlite};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let f = super::sqlite().await; super::$name(f.store.clone()).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let f = super::postgres().await; super::$name(f.store.clone()).await })*
        }
    };
}

both_backends!(
    artifacts_are_recorded_once_in_name_order,
    a_bundle_and_its_attestation_land_together,
    attestations_are_found_by_subject_and_digest,
    case_holds_come_and_go,
    tenants_see_only_their_own_evidence,
    retention_finds_only_expired_unheld_evidence,
);

fn t(seconds: i64) -> Timestamp {
    Timestamp::parse("t", "2026-11-23T12:00:00Z").unwrap().saturating_add_micros(seconds * 1_000_000)
}

async fn setup(store: &dyn Store, id: &str) -> TenantId {
    let tenant = TenantId::parse(id).unwrap();
    store
        .create_tenant(&Tenant { id: tenant.clone(), name: None, retention_days: 30, created_at: t(0) })
        .await
        .unwrap();
    tenant
}

fn artifact(case: &str, name: &str, byte: u8) -> ArtifactRecord {
    ArtifactRecord {
        case_id: case.into(),
        name: name.into(),
        object_key: format!("tenants/acme/evidence/{case}/uploads/{name}"),
        size: 3,
        sha256: hex(byte),
        media_type: "application/octet-stream".into(),
        uploaded_by: "tok_1".into(),
        uploaded_at: t(i64::from(byte)),
        event_id: format!("ev-{name}"),
    }
}

fn hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

fn bundle(id: &str, case: &str, at: i64) -> BundleRecord {
    BundleRecord {
        bundle_id: id.into(),
        case_id: case.into(),
        kind: "case".into(),
        resource_id: case.into(),
        object_prefix: format!("tenants/acme/evidence/{case}/{id}"),
        merkle_root: hex(1),
        manifest_sha256: hex(2),
        key_ids: vec!["ed25519:0011223344556677".into(), "ed25519:8899aabbccddeeff".into()],
        files: 2,
        bytes: 6,
        created_by: "tok_1".into(),
        created_at: t(at),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        event_id: format!("ev-{id}"),
    }
}

fn attestation(id: &str, subject: &str, digest: u8, at: i64) -> AttestationRecord {
    AttestationRecord {
        attestation_id: id.into(),
        subject_type: "evidence_bundle".into(),
        subject_id: subject.into(),
        subject_name: format!("{subject}/manifest.json"),
        subject_sha256: hex(digest),
        predicate_type: "https://slsa.dev/provenance/v1".into(),
        envelope: format!("{{\"payload\":\"{id}\"}}"),
        created_at: t(at),
    }
}

fn hold(case: &str, at: i64) -> LegalHold {
    LegalHold {
        id: case.into(),
        reason: "matter 7".into(),
        created_by: "tok_1".into(),
        created_at: t(at),
        released_at: None,
    }
}

async fn artifacts_are_recorded_once_in_name_order(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    for (name, byte) in [("b.log", 2), ("B.log", 3), ("a.pcap", 1), ("dir/é.txt", 4)] {
        store.put_artifact(&tenant, &artifact("case-1", name, byte)).await.unwrap();
    }
    store.put_artifact(&tenant, &artifact("case-2", "a.pcap", 9)).await.unwrap();
    let again = store.put_artifact(&tenant, &artifact("case-1", "b.log", 7)).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { what: "case artifact", .. })), "{again:?}");

    let listed = store.artifacts(&tenant, "case-1").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["B.log", "a.pcap", "b.log", "dir/é.txt"], "bytewise order, whatever the collation");
    assert_eq!(listed[2], artifact("case-1", "b.log", 2), "the first upload stands");
    assert_eq!(store.artifact(&tenant, "case-2", "a.pcap").await.unwrap(), Some(artifact("case-2", "a.pcap", 9)));
    assert_eq!(store.artifact(&tenant, "case-2", "b.log").await.unwrap(), None);
    assert!(store.artifacts(&tenant, "case-3").await.unwrap().is_empty());
}

async fn a_bundle_and_its_attestation_land_together(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    store.put_bundle(&tenant, &bundle("b-1", "case-1", 1), &attestation("att-1", "b-1", 5, 1)).await.unwrap();
    store.put_bundle(&tenant, &bundle("b-2", "case-1", 2), &attestation("att-2", "b-2", 6, 2)).await.unwrap();
    store.put_bundle(&tenant, &bundle("b-3", "case-2", 3), &attestation("att-3", "b-3", 7, 3)).await.unwrap();

    // The same bundle id again: refused, and its attestation is not recorded either.
    let again = store.put_bundle(&tenant, &bundle("b-1", "case-1", 4), &attestation("att-4", "b-1", 8, 4)).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { what: "evidence bundle", .. })), "{again:?}");
    let all = store.attestations(&tenant, &AttestationQuery { limit: 100, ..Default::default() }).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|a| a.attestation_id.as_str()).collect();
    assert_eq!(ids, ["att-3", "att-2", "att-1"], "newest first, none of the refused bundle");

    assert_eq!(store.bundle(&tenant, "b-1").await.unwrap(), Some(bundle("b-1", "case-1", 1)));
    assert_eq!(store.bundle(&tenant, "b-9").await.unwrap(), None);
    let case: Vec<String> =
        store.case_bundles(&tenant, "case-1").await.unwrap().into_iter().map(|b| b.bundle_id).collect();
    assert_eq!(case, ["b-2", "b-1"], "newest first");
}

async fn attestations_are_found_by_subject_and_digest(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    for (id, subject, digest, at) in [("a1", "s1", 1, 1), ("a2", "s1", 2, 2), ("a3", "s2", 2, 3)] {
        store.put_attestation(&tenant, &attestation(id, subject, digest, at)).await.unwrap();
    }
    let ids = |found: Vec<AttestationRecord>| found.into_iter().map(|a| a.attestation_id).collect::<Vec<_>>();
    let query = |subject: Option<&str>, digest: Option<u8>, limit| AttestationQuery {
        subject_id: subject.map(str::to_owned),
        subject_sha256: digest.map(hex),
        limit,
    };
    assert_eq!(ids(store.attestations(&tenant, &query(Some("s1"), None, 10)).await.unwrap()), ["a2", "a1"]);
    assert_eq!(ids(store.attestations(&tenant, &query(None, Some(2), 10)).await.unwrap()), ["a3", "a2"]);
    assert_eq!(ids(store.attestations(&tenant, &query(Some("s1"), Some(2), 10)).await.unwrap()), ["a2"]);
    assert_eq!(ids(store.attestations(&tenant, &query(None, None, 1)).await.unwrap()), ["a3"]);
    assert_eq!(
        store.attestations(&tenant, &query(Some("s1"), None, 10)).await.unwrap()[1],
        attestation("a1", "s1", 1, 1)
    );
}

async fn case_holds_come_and_go(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    assert!(!store.case_held(&tenant, "case-1").await.unwrap());
    store
        .create_case_hold(
            &tenant,
            &hold("case-1", 1),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.placed", "case-1"),
        )
        .await
        .unwrap();
    let twice = store
        .create_case_hold(
            &tenant,
            &hold("case-1", 2),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.placed", "case-1"),
        )
        .await;
    assert!(matches!(twice, Err(StoreError::AlreadyExists { .. })), "one active hold per case: {twice:?}");
    assert!(store.case_held(&tenant, "case-1").await.unwrap());
    assert!(!store.case_held(&tenant, "case-2").await.unwrap(), "a hold covers its own case only");

    let released = store
        .release_case_hold(
            &tenant,
            "case-1",
            t(5),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.released", "case-1"),
        )
        .await
        .unwrap();
    assert_eq!(released, LegalHold { released_at: Some(t(5)), ..hold("case-1", 1) });
    assert!(!store.case_held(&tenant, "case-1").await.unwrap());
    let again = store
        .release_case_hold(
            &tenant,
            "case-1",
            t(6),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.released", "case-1"),
        )
        .await;
    assert!(matches!(again, Err(StoreError::NotFound { .. })), "{again:?}");

    // Placed again after release: a new hold, the old one kept.
    store
        .create_case_hold(
            &tenant,
            &hold("case-1", 7),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.placed", "case-1"),
        )
        .await
        .unwrap();
    store
        .create_case_hold(
            &tenant,
            &hold("case-2", 8),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.placed", "case-2"),
        )
        .await
        .unwrap();
    let history = store.case_holds(&tenant, Some("case-1")).await.unwrap();
    assert_eq!(history, [hold("case-1", 7), LegalHold { released_at: Some(t(5)), ..hold("case-1", 1) }]);
    assert_eq!(store.case_holds(&tenant, None).await.unwrap().len(), 3);

    // A tenant-wide legal hold holds every case.
    let records = custos_store::testing::action_records(&tenant, "custos.hold.placed", "all");
    store.create_hold(&tenant, &LegalHold { id: "all".into(), ..hold("x", 9) }, &records).await.unwrap();
    assert!(store.case_held(&tenant, "case-9").await.unwrap());
}

async fn tenants_see_only_their_own_evidence(store: Arc<dyn Store>) {
    let acme = setup(&*store, "acme").await;
    let globex = setup(&*store, "globex").await;
    store.put_artifact(&acme, &artifact("case-1", "a.log", 1)).await.unwrap();
    store.put_bundle(&acme, &bundle("b-1", "case-1", 1), &attestation("att-1", "b-1", 5, 1)).await.unwrap();
    store
        .create_case_hold(
            &acme,
            &hold("case-1", 1),
            &custos_store::testing::action_records(&acme, "custos.evidence.hold.placed", "case-1"),
        )
        .await
        .unwrap();

    assert!(store.artifacts(&globex, "case-1").await.unwrap().is_empty());
    assert_eq!(store.bundle(&globex, "b-1").await.unwrap(), None);
    assert!(store.case_bundles(&globex, "case-1").await.unwrap().is_empty());
    assert!(
        store.attestations(&globex, &AttestationQuery { limit: 10, ..Default::default() }).await.unwrap().is_empty()
    );
    assert!(!store.case_held(&globex, "case-1").await.unwrap());
    assert!(store.case_holds(&globex, None).await.unwrap().is_empty());
    // The same names are free in another tenant.
    store.put_artifact(&globex, &artifact("case-1", "a.log", 2)).await.unwrap();
    store.put_bundle(&globex, &bundle("b-1", "case-1", 1), &attestation("att-1", "b-1", 5, 1)).await.unwrap();
}

async fn retention_finds_only_expired_unheld_evidence(store: Arc<dyn Store>) {
    let tenant = setup(&*store, "acme").await;
    assert_eq!(store.evidence_retention(&tenant).await.unwrap(), None, "forever by default");
    store
        .set_evidence_retention(
            &tenant,
            Some(30),
            "tok_1",
            t(0),
            &custos_store::testing::action_records(&tenant, "custos.evidence.retention.set", "evidence"),
        )
        .await
        .unwrap();
    assert_eq!(store.evidence_retention(&tenant).await.unwrap(), Some(30));
    store
        .set_evidence_retention(
            &tenant,
            None,
            "tok_1",
            t(1),
            &custos_store::testing::action_records(&tenant, "custos.evidence.retention.set", "evidence"),
        )
        .await
        .unwrap();
    assert_eq!(store.evidence_retention(&tenant).await.unwrap(), None);

    for (case, name, byte) in [("old", "a.log", 1), ("old", "b.log", 2), ("held", "c.log", 3), ("new", "d.log", 50)] {
        store.put_artifact(&tenant, &artifact(case, name, byte)).await.unwrap();
    }
    store.put_bundle(&tenant, &bundle("b-old", "old", 5), &attestation("a1", "b-old", 1, 5)).await.unwrap();
    store.put_bundle(&tenant, &bundle("b-held", "held", 5), &attestation("a2", "b-held", 2, 5)).await.unwrap();
    store.put_bundle(&tenant, &bundle("b-new", "new", 60), &attestation("a3", "b-new", 3, 60)).await.unwrap();
    store
        .create_case_hold(
            &tenant,
            &hold("held", 1),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.placed", "held"),
        )
        .await
        .unwrap();

    let expired = store.expired_evidence(&tenant, t(10)).await.unwrap();
    let bundles: Vec<&str> = expired.bundles.iter().map(|b| b.bundle_id.as_str()).collect();
    let artifacts: Vec<&str> = expired.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(bundles, ["b-old"], "not the held case's, not the new one");
    assert_eq!(artifacts, ["a.log", "b.log"]);
    store.delete_bundle(&tenant, "b-old").await.unwrap();
    store.delete_artifact(&tenant, "old", "a.log").await.unwrap();
    assert!(matches!(store.delete_bundle(&tenant, "b-old").await, Err(StoreError::NotFound { .. })));
    // The database refuses what a hold keeps, whatever the caller asks.
    assert!(store.delete_bundle(&tenant, "b-held").await.is_err());
    assert!(store.bundle(&tenant, "b-held").await.unwrap().is_some());
    // A tenant-wide legal hold keeps everything.
    let records = custos_store::testing::action_records(&tenant, "custos.hold.placed", "all");
    store.create_hold(&tenant, &LegalHold { id: "all".into(), ..hold("x", 9) }, &records).await.unwrap();
    assert_eq!(store.expired_evidence(&tenant, t(100)).await.unwrap(), Default::default());
}

/// Statements each backend must refuse on seeded evidence rows, and the word its error
/// carries.
const REFUSED: &[(&str, &str)] = &[
    ("UPDATE evidence_artifacts SET sha256 = 'x'", "append-only"),
    ("UPDATE evidence_bundles SET merkle_root = 'x'", "append-only"),
    ("UPDATE attestations SET envelope = 'x'", "append-only"),
    ("DELETE FROM attestations", "append-only"),
    ("DELETE FROM evidence_artifacts", "under hold"),
    ("DELETE FROM evidence_bundles", "under hold"),
];

async fn seed_evidence(store: &dyn Store) -> TenantId {
    let tenant = setup(store, "acme").await;
    store.put_artifact(&tenant, &artifact("case-1", "a.log", 1)).await.unwrap();
    store.put_bundle(&tenant, &bundle("b-1", "case-1", 1), &attestation("att-1", "b-1", 5, 1)).await.unwrap();
    store
        .create_case_hold(
            &tenant,
            &hold("case-1", 1),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.placed", "case-1"),
        )
        .await
        .unwrap();
    tenant
}

#[tokio::test]
async fn sqlite_triggers_guard_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let store = custos_store::open(None, dir.path()).await.unwrap();
    let tenant = seed_evidence(&*store).await;
    let conn = rusqlite::Connection::open(dir.path().join("custos.db")).unwrap();
    for (sql, word) in REFUSED {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains(word), "{sql}: {err}");
    }
    // Released, the case's rows may go (retention's business); attestations never.
    store
        .release_case_hold(
            &tenant,
            "case-1",
            t(2),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.released", "case-1"),
        )
        .await
        .unwrap();
    assert_eq!(conn.execute("DELETE FROM evidence_bundles", []).unwrap(), 1);
    // A tenant-wide legal hold guards them as well.
    conn.execute("INSERT INTO legal_holds VALUES ('acme', 'h1', 'all', 'test', 0, NULL, NULL)", []).unwrap();
    assert!(conn.execute("DELETE FROM evidence_artifacts", []).unwrap_err().to_string().contains("under hold"));
}

#[tokio::test]
async fn postgres_guards_evidence_by_privilege_and_by_trigger() {
    let database = custos_store::testing::fresh_postgres().await;
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = seed_evidence(&store).await;

    // The service's role: no UPDATE or TRUNCATE at all, and no DELETE of attestations.
    let mut app = store.pool().acquire().await.unwrap();
    for sql in [
        "UPDATE evidence_bundles SET merkle_root = 'x'",
        "UPDATE evidence_artifacts SET sha256 = 'x'",
        "DELETE FROM attestations",
        "TRUNCATE evidence_bundles",
    ] {
        let mut tx = app.begin().await.unwrap();
        tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
        let err = tx.execute(sql).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    // It may delete (retention), but not under hold.
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    let err = tx.execute("DELETE FROM evidence_bundles").await.unwrap_err().to_string();
    assert!(err.contains("under hold"), "{err}");
    drop(tx);

    // The owner: the triggers.
    let mut owner = sqlx::PgConnection::connect(database.url()).await.unwrap();
    for (sql, word) in REFUSED {
        let err = owner.execute(*sql).await.unwrap_err().to_string();
        assert!(err.contains(word), "{sql}: {err}");
    }
    let err = owner.execute("TRUNCATE attestations").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");

    store
        .release_case_hold(
            &tenant,
            "case-1",
            t(2),
            &custos_store::testing::action_records(&tenant, "custos.evidence.hold.released", "case-1"),
        )
        .await
        .unwrap();
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    assert_eq!(tx.execute("DELETE FROM evidence_bundles").await.unwrap().rows_affected(), 1);
}
