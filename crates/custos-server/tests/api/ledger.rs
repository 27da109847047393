//! Retention of the tenant logs and legal holds, over the API and the retention pass:
//! records past retention lose their content but never their leaf hashes, so the log
//! still verifies (offline, against checkpoints signed before and after); a tombstone
//! says what went; an active hold keeps everything.

use custos_ledger::export::Verifier;
use custos_ledger::note::NoteVerifier;
use custos_model::Timestamp;
use custos_server::ServerConfig;
use serde_json::{Value, json};

use crate::support::{Backend, JSON, TestApp, error, json, ndjson};

macro_rules! with_a_signing_key {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::app(crate::support::Backend::Sqlite).await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::app(crate::support::Backend::Postgres).await).await })*
        }
    };
}

with_a_signing_key!(
    retention_keeps_the_proof_and_holds_block_it,
    holds_are_admin_operations_with_clear_errors,
    an_action_fails_whole_when_its_record_cannot_be_written,
    refusals_cannot_flood_or_name_strangers_in_a_tenants_audit_log
);

pub(crate) async fn app(backend: Backend) -> TestApp {
    app_and_key(backend).await.0
}

/// A test app with a signing key, and the key.
pub(crate) async fn app_and_key(backend: Backend) -> (TestApp, custos_server::keys::SigningKey) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("signing.key");
    let key = custos_server::keys::SigningKey::generate();
    key.create(&path).unwrap();
    let config = ServerConfig { signing_key_file: Some(path.clone()), ..ServerConfig::default() };
    let app = TestApp::with_config(backend, config).await;
    custos_server::keys::load_or_create(&*app.store, &path).await.unwrap();
    (app, custos_server::keys::SigningKey::load(&path).unwrap())
}

const DAY_US: i64 = 86_400_000_000;

fn events(range: std::ops::Range<u32>) -> String {
    let records: Vec<Value> = range
        .map(|n| json!({"event_id": format!("e-{n}"), "ts": "2026-11-23T10:00:00Z", "kind": "platform.a.b", "details": {"n": n}}))
        .collect();
    ndjson(&records)
}

async fn verifier(app: &TestApp, log: &str) -> Verifier {
    let origin = format!("custos.local/tenants/acme/{log}");
    let (_, keys) = json(app.client.get(app.url("/v1/keys")).query(&[("origin", &origin)]).send().await.unwrap()).await;
    let vkey = keys["keys"][0]["verifier_key"].as_str().unwrap();
    Verifier::new(vec![NoteVerifier::parse(vkey).unwrap()])
}

async fn text(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Records as if reported `days` ago, parsed as the API parses them: retention is
/// checked by the database's own clock, so a test cannot age records by moving custos's.
async fn received_days_ago(app: &TestApp, log: custos_model::ledger::LogName, body: &str, days: i64) {
    use custos_model::ledger::{AuditRecord, LogName, TimelineEvent};
    use custos_model::parse::{BodyFormat, parse_records};
    let tenant = custos_model::TenantId::parse("acme").unwrap();
    let ctx = custos_model::records::ValidationContext {
        path_tenant: Some(tenant.clone()),
        ..custos_model::records::ValidationContext::new(Timestamp::now())
    };
    let records: Vec<custos_store::LogAppend> = match log {
        LogName::Timeline => parse_records::<TimelineEvent>(body.as_bytes(), BodyFormat::Ndjson, &ctx, 100)
            .unwrap()
            .iter()
            .map(custos_store::LogAppend::timeline)
            .collect(),
        LogName::Audit => parse_records::<AuditRecord>(body.as_bytes(), BodyFormat::Ndjson, &ctx, 100)
            .unwrap()
            .iter()
            .map(custos_store::LogAppend::audit)
            .collect(),
    };
    let at = Timestamp::now().saturating_add_micros(-days * DAY_US);
    app.store.append_log(&tenant, log, records, at).await.unwrap();
}

async fn retention_keeps_the_proof_and_holds_block_it(app: TestApp) {
    use custos_model::ledger::LogName;
    let reader = app.token(&["timeline:read#tenant/acme", "audit:read#tenant/acme"]).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    // Six events reported 40 days ago (the tenant keeps 30), an audit record 400 days ago.
    received_days_ago(&app, LogName::Timeline, &events(0..6), 40).await;
    let audit = json!({"event_id": "a-1", "ts": "2026-11-23T10:00:00Z", "action": "platform.user.login",
        "outcome": "success"});
    received_days_ago(&app, LogName::Audit, &format!("{audit}\n"), 400).await;
    let before = text(app.get(&reader, "/v1/tenants/acme/timeline/checkpoint").await).await;

    // Under a hold, nothing goes, however old.
    let (status, hold) = json(
        app.post(&admin, "/v1/tenants/acme/holds", JSON, json!({"id": "case-7", "reason": "litigation"}).to_string())
            .await,
    )
    .await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(custos_server::ledger::retention_pass(&app.state, Timestamp::now()).await, 0);
    assert_eq!(json(app.get(&reader, "/v1/tenants/acme/timeline/e-1").await).await.0, 200);

    // Released (and the release on the record first), the records older than the
    // tenant's retention go: the six events and the audit record; the hold's placing and
    // release, recorded now, stay.
    let response =
        app.client.delete(app.url("/v1/tenants/acme/holds/case-7")).bearer_auth(&admin).send().await.unwrap();
    let (status, released) = json(response).await;
    assert_eq!(status, 200);
    assert!(released["released_at"].is_string(), "{released}");
    assert_eq!(custos_server::ledger::retention_pass(&app.state, Timestamp::now()).await, 7);
    assert_eq!(custos_server::ledger::retention_pass(&app.state, Timestamp::now()).await, 0, "nothing twice");
    // custos's own clock running ahead does not age records the database has not.
    let later = Timestamp::now().saturating_add_micros(40 * DAY_US);
    assert_eq!(custos_server::ledger::retention_pass(&app.state, later).await, 0, "refused by the database");
    error(app.get(&reader, "/v1/tenants/acme/timeline/e-1").await, 404, "not_found").await;
    let (_, page) = json(app.get(&reader, "/v1/tenants/acme/timeline").await).await;
    let kinds: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["record"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 3, "{page}");
    assert!(kinds.contains(&"custos.hold.placed") && kinds.contains(&"custos.hold.released"), "{kinds:?}");
    let tombstone = &page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["record"]["kind"] == "custos.retention.pruned")
        .unwrap()["record"];
    assert_eq!(tombstone["details"]["records_removed"], 6);
    assert_eq!(tombstone["details"]["before_index"], 6);
    assert_eq!(tombstone["details"]["retention_days"], 30);
    assert_eq!(tombstone["details"]["policy"], "timeline: 30 days (the tenant's retention_days)");

    // The log still verifies: hashes of removed records stay, the retention record
    // accounts for them, and it extends the checkpoint signed before retention.
    let export = text(app.get(&reader, "/v1/tenants/acme/timeline/export").await).await;
    let report = verifier(&app, "timeline").await.with_earlier(before.into_bytes()).verify(export.as_bytes()).unwrap();
    assert_eq!((report.size, report.pruned, report.records), (9, 6, 3));
    let retention = report.retention.unwrap();
    assert_eq!((retention.newest_leaf, retention.newest_before_index, retention.min_retention_days), (8, 6, Some(30)));

    // The attack: blank a recent record in the saved export and raise the unsigned
    // pruned_before over it. The retention record does not reach it: verify names it.
    let mut lines: Vec<String> = export.lines().map(str::to_owned).collect();
    let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
    header["pruned_before"] = json!(8);
    lines[0] = header.to_string();
    let recent = lines[8].rsplit_once('\t').unwrap().0.to_owned();
    lines[8] = format!("{recent}\t");
    let forged = lines.join("\n") + "\n";
    let refused = verifier(&app, "timeline").await.verify(forged.as_bytes()).unwrap_err();
    assert_eq!(refused, custos_ledger::export::VerifyError::RecordMissing { index: 7 });

    // The audit log: the year-old record went under its own retention record.
    error(app.get(&reader, "/v1/tenants/acme/audit/a-1").await, 404, "not_found").await;
    let (_, page) = json(app.get(&reader, "/v1/tenants/acme/audit?action=custos.retention.pruned").await).await;
    assert_eq!(page["items"][0]["record"]["details"]["policy"], "audit: 365 days (--audit-retention-days)");
    let export = text(app.get(&reader, "/v1/tenants/acme/audit/export").await).await;
    let report = verifier(&app, "audit").await.verify(export.as_bytes()).unwrap();
    assert_eq!((report.pruned, report.retention.as_ref().unwrap().min_retention_days), (1, Some(365)), "{report:?}");
}

/// A trigger that makes every append to `table` fail, as a broken disk or a full
/// database would.
pub(crate) async fn refuse_appends(app: &TestApp, table: &str) {
    let sqlite = format!(
        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{table} is down'); END;"
    );
    let postgres = format!(
        "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{table} is \
         down'; END $$; CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION \
         refuse_{table}();"
    );
    app.sql(&sqlite, &postgres).await;
}

/// An action and custos's record of it commit together: when the audit log cannot be
/// written, a hold is neither placed nor released (503, nothing changed); when the
/// timeline cannot be written, a failed run is not stored without its event.
async fn an_action_fails_whole_when_its_record_cannot_be_written(app: TestApp) {
    let admin = app.token(&["admin#tenant/acme"]).await;
    let writer = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let place =
        |id: &str| app.post(&admin, "/v1/tenants/acme/holds", JSON, json!({"id": id, "reason": "x"}).to_string());
    assert_eq!(place("kept").await.status(), 201);
    let holds = || async { json(app.get(&admin, "/v1/tenants/acme/holds").await).await.1 };
    let before = holds().await;

    refuse_appends(&app, "audit_records").await;
    let refused = error(place("new").await, 503, "unavailable").await;
    assert!(refused["message"].as_str().unwrap().contains("nothing was changed"), "{refused}");
    let release = app.client.delete(app.url("/v1/tenants/acme/holds/kept")).bearer_auth(&admin).send().await.unwrap();
    error(release, 503, "unavailable").await;
    assert_eq!(holds().await, before, "no hold placed, none released");

    refuse_appends(&app, "timeline_events").await;
    let failed = json!({"id": "run-1", "rule_key": "k", "status": "failed", "error_message": "boom",
        "started_at": "2026-11-23T10:00:00Z"});
    error(app.post(&writer, "/v1/tenants/acme/rule-runs", JSON, failed.to_string()).await, 503, "unavailable").await;
    let (_, runs) = json(app.get(&writer, "/v1/tenants/acme/rule-runs").await).await;
    assert_eq!(runs["items"], json!([]), "the run is not stored without its event");
    // A run that succeeded has no event to write, and is stored.
    let succeeded =
        json!({"id": "run-2", "rule_key": "k", "status": "succeeded", "started_at": "2026-11-23T10:00:00Z"});
    assert_eq!(app.post(&writer, "/v1/tenants/acme/rule-runs", JSON, succeeded.to_string()).await.status(), 201);
}

/// The audit log's `custos.auth.denied` records, waiting for the background writer
/// until `expected` are there (or 10 s have passed).
async fn denials(app: &TestApp, reader: &str, expected: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, page) =
            json(app.get(reader, "/v1/tenants/acme/audit?action=custos.auth.denied&limit=1000").await).await;
        let items: Vec<Value> = page["items"].as_array().unwrap().iter().map(|i| i["record"].clone()).collect();
        if items.len() >= expected || std::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Issue 21: unauthenticated refusals no longer land in the named tenant's append-only
/// log (anyone could fill it); a token of another tenant is recorded there only as such
/// (its id and name go to the server's log); the tenant's own denials keep their budget.
async fn refusals_cannot_flood_or_name_strangers_in_a_tenants_audit_log(app: TestApp) {
    let reader = app.token(&["audit:read#tenant/acme"]).await;
    let stranger = app.token_named("globex-importer", &["ingest:write#tenant/globex"]).await;
    for _ in 0..100 {
        let response = app.client.get(app.url("/v1/tenants/acme/timeline")).bearer_auth("cst_nope").send().await;
        assert_eq!(response.unwrap().status(), 401);
    }
    assert_eq!(app.get(&stranger, "/v1/tenants/acme/rule-runs").await.status(), 403);
    assert_eq!(app.get(&reader, "/v1/tenants/acme/rule-runs").await.status(), 403);
    let records = denials(&app, &reader, 2).await;
    assert_eq!(records.len(), 2, "the 401s are not in acme's log: {records:?}");
    let stranger_record = records.iter().find(|r| r["actor"]["id"].is_null()).expect("the stranger's denial");
    assert_eq!(stranger_record["actor"]["name"], "a token of another tenant");
    assert!(!stranger_record.to_string().contains("globex-importer"), "{stranger_record}");
    let own = records.iter().find(|r| r["actor"]["id"].is_string()).expect("acme's own token's denial");
    assert!(own["actor"]["id"].as_str().unwrap().starts_with("tok_"));
    let (_, log) = json(app.get(&reader, "/v1/tenants/acme/audit?action=custos.auth.failed").await).await;
    assert_eq!(log["items"], json!([]));
}

async fn holds_are_admin_operations_with_clear_errors(app: TestApp) {
    let admin = app.token(&["admin#tenant/acme"]).await;
    let reader = app.token(&["audit:read#tenant/acme"]).await;
    let place = |token: String, body: Value| {
        let app = &app;
        async move { app.post(&token, "/v1/tenants/acme/holds", JSON, body.to_string()).await }
    };
    error(place(reader.clone(), json!({"reason": "x"})).await, 403, "forbidden").await;
    let body = error(place(admin.clone(), json!({"reason": "  "})).await, 422, "invalid_field").await;
    assert_eq!(body["field"], "reason");
    let body = error(place(admin.clone(), json!({"id": "a b", "reason": "x"})).await, 422, "invalid_field").await;
    assert_eq!(body["field"], "id");
    let (status, hold) = json(place(admin.clone(), json!({"reason": "matter 12"})).await).await;
    assert_eq!(status, 201);
    let id = hold["id"].as_str().unwrap();
    assert!(id.starts_with("hold_"), "{hold}");
    error(place(admin.clone(), json!({"id": id, "reason": "again"})).await, 409, "conflict").await;
    let (status, holds) = json(app.get(&reader, "/v1/tenants/acme/holds").await).await;
    assert_eq!((status, holds.as_array().unwrap().len()), (200, 1));
    let response = app.client.delete(app.url("/v1/tenants/acme/holds/nope")).bearer_auth(&admin).send().await.unwrap();
    error(response, 404, "not_found").await;
    // Placing one is recorded in the audit log, by the token that placed it.
    let (_, page) = json(app.get(&reader, "/v1/tenants/acme/audit?action=custos.hold.placed").await).await;
    assert_eq!(page["items"][0]["record"]["resource_id"], id);
}
