//! The tenant logs end to end, on both backends: a real `custos serve`, the HTTP API,
//! proofs checked here with the ledger's verifiers and keys taken from `/v1/keys`, and
//! `custos forensic verify-log` catching tampering done in SQL below the application.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custos_ledger::export::Verifier;
use custos_ledger::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use custos_ledger::note::{Checkpoint, NoteVerifier};
use serde_json::{Value, json};

use crate::common::{Server, Store, create_token};

fn event(tenant: &str, n: u64) -> String {
    json!({
        "event_id": format!("e-{n}"),
        "ts": format!("2026-11-23T10:{:02}:{:02}Z", n / 60 % 60, n % 60),
        "tenant_id": tenant,
        "kind": if n.is_multiple_of(2) { "platform.policy.changed" } else { "platform.job.failed" },
        "actor": "alice",
        "resource_type": "policy",
        "resource_id": format!("p-{}", n % 3),
        "trace_id": format!("{:032x}", n + 1),
        "details": {"n": n},
    })
    .to_string()
}

fn events(tenant: &str, range: std::ops::Range<u64>) -> String {
    range.map(|n| event(tenant, n) + "\n").collect()
}

fn hash(value: &Value) -> Hash {
    STANDARD.decode(value.as_str().unwrap()).unwrap().try_into().unwrap()
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<(&str, String)>,
    ) -> (u16, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn post(&self, path: &str, token: &str, content_type: &str, body: String) -> (u16, Value) {
        let (status, text) = self.send(reqwest::Method::POST, path, token, Some((content_type, body))).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, String) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    async fn json(&self, path: &str, token: &str) -> Value {
        let (status, text) = self.get(path, token).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The verifier key `/v1/keys` publishes for a log, with no token.
    async fn published_key(&self, origin: &str) -> NoteVerifier {
        let keys: Value = self
            .client
            .get(format!("{}/v1/keys", self.base))
            .query(&[("origin", origin)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let active: Vec<&Value> =
            keys["keys"].as_array().unwrap().iter().filter(|k| k["not_after"].is_null()).collect();
        assert_eq!(active.len(), 1, "{keys}");
        NoteVerifier::parse(active[0]["verifier_key"].as_str().unwrap()).unwrap()
    }
}

/// Runs the Python verifier printed in docs/forensics/verification.md on an export.
fn python_verifies(store: &Store, export: &str, vkey: &str, expect_ok: bool) {
    python_says(store, export, vkey, if expect_ok { Ok(()) } else { Err("altered") });
}

/// Runs the documented Python verifier; `Err(text)`: it must fail saying `text`.
fn python_says(store: &Store, export: &str, vkey: &str, expected: Result<(), &str>) {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/forensics/verification.md")).unwrap();
    let script =
        docs.split("```python\n").nth(1).and_then(|rest| rest.split("```").next()).expect("the page has the script");
    let dir = store.dir.path();
    std::fs::write(dir.join("verify.py"), script).unwrap();
    std::fs::write(dir.join("log.export"), export).unwrap();
    std::fs::write(dir.join("log.vkey"), vkey).unwrap();
    let output = std::process::Command::new("python3")
        .arg("verify.py")
        .arg("log.export")
        .arg("log.vkey")
        .current_dir(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.success(), expected.is_ok(), "{stdout}{stderr}");
    match expected {
        Ok(()) => assert!(stdout.starts_with("verified custos.local/tenants/acme/timeline"), "{stdout}"),
        Err(text) => assert!(stderr.contains(text), "{stderr}"),
    }
}

/// The documented Python verifier and custos's agree on removed records: accepted under
/// a retention record after them, refused when a saved export is edited to blank a
/// recent record (its unsigned `pruned_before` raised), or when a retention record's
/// cutoff is closer than its retention.
#[test]
fn the_documented_verifier_accepts_removed_records_only_under_a_retention_record() {
    use custos_ledger::export::{EXPORT_FORMAT, ExportHeader, leaf_line};
    use custos_ledger::merkle::MemoryLog;
    use custos_ledger::note::NoteSigner;
    let origin = "custos.local/tenants/acme/timeline";
    let signer = NoteSigner::new(origin, &[5; 32]).unwrap();
    let retention = |cutoff: &str| {
        format!(
            r#"{{"details":{{"before_index":4,"log":"timeline","policy":"test","received_before":"{cutoff}","records_removed":4,"retention_days":30}},"event_id":"custos-retention-timeline-4","kind":"custos.retention.pruned","tenant_id":"acme","ts":"2026-12-07T10:00:00.000000Z"}}"#
        )
    };
    let export = |prune: String, blank: &[usize], pruned_before: u64| {
        let mut records: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"event_id":"e-{i}","kind":"platform.a.b","tenant_id":"acme","ts":"2026-11-01T00:00:00.000000Z"}}"#))
            .collect();
        records[6] = prune;
        let mut log = MemoryLog::new();
        let hashes: Vec<Hash> = records.iter().map(|r| leaf_hash(r.as_bytes())).collect();
        for hash in &hashes {
            log.push(*hash);
        }
        let checkpoint =
            Checkpoint { origin: origin.into(), size: 10, root: log.root(10).unwrap(), extensions: vec![] };
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            origin: origin.into(),
            size: 10,
            pruned_before,
            checkpoint: checkpoint.sign(&signer).unwrap(),
        };
        let mut out = header.to_line().into_bytes();
        for (i, (record, hash)) in records.iter().zip(&hashes).enumerate() {
            leaf_line(i as u64, hash, (!blank.contains(&i)).then_some(record.as_str()), &mut out);
        }
        String::from_utf8(out).unwrap()
    };
    let store = Store::sqlite();
    let vkey = signer.verifier().to_string();
    let rust = |text: &str| Verifier::new(vec![signer.verifier()]).verify(text.as_bytes());
    let honest = export(retention("2026-11-07T10:00:00.000000Z"), &[0, 1, 2, 3], 4);
    assert_eq!(rust(&honest).unwrap().pruned, 4);
    python_says(&store, &honest, &vkey, Ok(()));
    let forged = export(retention("2026-11-07T10:00:00.000000Z"), &[0, 1, 2, 3, 8], 9);
    assert!(rust(&forged).unwrap_err().to_string().starts_with("leaf 8: the record is missing"));
    python_says(&store, &forged, &vkey, Err("leaves 8..8 deleted"));
    // The CLI reports the retention, and holds it to what was promised.
    std::fs::write(store.dir.path().join("pruned.export"), &honest).unwrap();
    let verify_log = |extra: &[&str]| {
        let output = store
            .command()
            .args(["forensic", "verify-log", "--export"])
            .arg(store.dir.path().join("pruned.export"))
            .args(["--key", &vkey])
            .args(extra)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code(), text)
    };
    let (code, out) = verify_log(&["--min-retention-days", "30"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("pruned       4 (removed by retention"), "{out}");
    assert!(out.contains("the least retention stated: 30 days"), "{out}");
    let (code, out) = verify_log(&["--min-retention-days", "365"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("state 30 days where at least 365 days were promised"), "{out}");
    let too_close = export(retention("2026-11-08T10:00:00.000000Z"), &[0, 1, 2, 3], 4);
    assert!(rust(&too_close).unwrap_err().to_string().contains("less than its retention"));
    python_says(&store, &too_close, &vkey, Err("cutoff closer than its retention"));
}

async fn logs_over_http(store: Store) {
    store.ok(&["tenants", "create", "acme"]);
    let writer = create_token(&store, &["--tenant", "acme", "--scope", "timeline:write", "--scope", "audit:write"]);
    let reader = create_token(&store, &["--tenant", "acme", "--scope", "timeline:read", "--scope", "audit:read"]);
    let observer = create_token(&store, &["--tenant", "acme", "--scope", "obs:read"]);
    let server = Server::start(&store);
    let api = Api { client: reqwest::Client::new(), base: server.base.clone() };
    let timeline = "/v1/tenants/acme/timeline";

    // Appends: atomic, idempotent by event_id, scoped.
    let (status, body) =
        api.post(&format!("{timeline}/events"), &writer, "application/x-ndjson", events("acme", 0..5)).await;
    assert_eq!((status, body["inserted"].as_u64()), (200, Some(5)), "{body}");
    let (status, body) =
        api.post(&format!("{timeline}/events"), &writer, "application/x-ndjson", events("acme", 0..5)).await;
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(5)), "{body}");
    let changed = event("acme", 1).replace("alice", "mallory");
    let (status, body) = api.post(&format!("{timeline}/events"), &writer, "application/json", changed).await;
    assert_eq!((status, body["error"]["field"].as_str()), (409, Some("event_id")), "{body}");
    let bad = format!(
        "{}\n{}",
        event("acme", 5),
        event("acme", 6).replace("platform.policy.changed", "custos.policy.changed")
    );
    let (status, body) = api.post(&format!("{timeline}/events"), &writer, "application/x-ndjson", bad).await;
    assert_eq!((status, body["error"]["field"].as_str(), body["error"]["line"].as_u64()), (422, Some("kind"), Some(2)));
    let (status, body) = api.post(&format!("{timeline}/events"), &observer, "application/json", event("acme", 9)).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["message"], "missing scope timeline:write#tenant/acme");
    let (status, _) = api.get(timeline, &writer).await;
    assert_eq!(status, 403, "writing does not grant reading");
    // Nothing of the refused batch was written.
    let page = api.json(&format!("{timeline}?actor=alice&limit=1000"), &reader).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    // custos's own events come first: the creation of the three tokens.
    let own =
        api.json(&format!("{timeline}?kind=custos.token.created"), &reader).await["items"].as_array().unwrap().len()
            as u64;
    assert_eq!(own, 3);

    // Queries: filters and keyset pages, newest first.
    let page = api.json(&format!("{timeline}?kind=platform.policy.changed&limit=2"), &reader).await;
    let ids: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["record"]["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e-4", "e-2"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = api.json(&format!("{timeline}?kind=platform.policy.changed&limit=2&cursor={cursor}"), &reader).await;
    assert_eq!(page["items"][0]["record"]["event_id"], "e-0");
    assert!(page["next_cursor"].is_null());
    let page = api.json(&format!("{timeline}?trace_id={:032x}", 4), &reader).await;
    assert_eq!(page["items"][0]["record"]["event_id"], "e-3");
    let (status, text) = api.get(&format!("{timeline}?colour=red"), &reader).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("\"field\":\"colour\""), "{text}");
    let (status, ndjson) = api.get(&format!("{timeline}?format=ndjson&resource_id=p-1"), &reader).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["record"]["event_id"].as_str().unwrap()).collect::<Vec<_>>(), ["e-4", "e-1"]);

    // One record: its inclusion proof leads to a checkpoint signed by the published key.
    let origin = "custos.local/tenants/acme/timeline";
    let key = api.published_key(origin).await;
    let record = api.json(&format!("{timeline}/e-3"), &reader).await;
    let leaf = hash(&record["leaf_hash"]);
    let record_text = serde_json::to_string(&record["record"]).unwrap();
    assert_eq!(leaf, leaf_hash(record_text.as_bytes()), "the served record is the hashed leaf");
    let (checkpoint, _) =
        Checkpoint::open(record["checkpoint"]["note"].as_str().unwrap().as_bytes(), origin, std::slice::from_ref(&key))
            .unwrap();
    assert_eq!(checkpoint.size, own + 5);
    assert_eq!(record["leaf_index"], own + 3);
    let proof: Vec<Hash> = record["inclusion_proof"].as_array().unwrap().iter().map(hash).collect();
    verify_inclusion(own + 3, own + 5, &leaf, &proof, &checkpoint.root).unwrap();
    assert_eq!(record["links"]["trace_records"], format!("/v1/tenants/acme/traces/{:032x}", 4));
    let (status, _) = api.get(&format!("{timeline}/e-404"), &reader).await;
    assert_eq!(status, 404);

    // More events, a newer checkpoint, and a consistency proof between the two.
    api.post(&format!("{timeline}/events"), &writer, "application/x-ndjson", events("acme", 5..13)).await;
    let (status, note) = api.get(&format!("{timeline}/checkpoint"), &reader).await;
    assert_eq!(status, 200);
    assert_eq!(
        Checkpoint::open(note.as_bytes(), origin, std::slice::from_ref(&key)).unwrap().0.size,
        own + 5,
        "not re-signed yet"
    );
    let (status, note) = api.send(reqwest::Method::POST, &format!("{timeline}/checkpoint"), &reader, None).await;
    assert_eq!(status, 403, "signing on demand is an admin operation: {note}");
    let admin = create_token(&store, &["--tenant", "acme", "--scope", "admin"]);
    let (status, note) = api.send(reqwest::Method::POST, &format!("{timeline}/checkpoint"), &admin, None).await;
    assert_eq!(status, 200);
    let (newer, _) = Checkpoint::open(note.as_bytes(), origin, std::slice::from_ref(&key)).unwrap();
    // The 8 new events, and the admin token's creation.
    assert_eq!(newer.size, own + 14);
    let proof = api.json(&format!("{timeline}/proof/consistency?from={}&to={}", own + 5, newer.size), &reader).await;
    let proof: Vec<Hash> = proof["proof"].as_array().unwrap().iter().map(hash).collect();
    verify_consistency(own + 5, newer.size, &checkpoint.root, &newer.root, &proof).unwrap();
    let (status, text) = api.get(&format!("{timeline}/proof/consistency?from=9&to=99"), &reader).await;
    assert_eq!(status, 422, "{text}");
    let inclusion = api.json(&format!("{timeline}/proof/inclusion?index=7&size={}", newer.size), &reader).await;
    let path: Vec<Hash> = inclusion["proof"].as_array().unwrap().iter().map(hash).collect();
    verify_inclusion(7, newer.size, &hash(&inclusion["leaf_hash"]), &path, &newer.root).unwrap();

    // The export verifies offline with the published key.
    let (status, export) = api.get(&format!("{timeline}/export"), &reader).await;
    assert_eq!(status, 200);
    let report =
        Verifier::new(vec![key.clone()]).with_earlier(note.clone().into_bytes()).verify(export.as_bytes()).unwrap();
    assert_eq!((report.size, report.records), (newer.size, newer.size));

    // The independent Python verifier of docs/forensics/verification.md agrees.
    python_verifies(&store, &export, &key.to_string(), true);
    python_verifies(&store, &export.replacen("\"n\":3", "\"n\":4", 1), &key.to_string(), false);

    // The audit log: its own scopes, its own tree, CSV export.
    let audit = json!({"event_id": "a-1", "ts": "2026-11-23T10:00:00Z", "actor": {"id": "u-1", "name": "alice"},
                       "actor_ip": "192.0.2.7", "action": "platform.user.login", "outcome": "denied"});
    let (status, body) =
        api.post("/v1/tenants/acme/audit/events", &writer, "application/json", audit.to_string()).await;
    assert_eq!((status, body["id"].as_str()), (201, Some("a-1")), "{body}");
    let (status, csv) =
        api.get("/v1/tenants/acme/audit?format=csv&outcome=denied&action=platform.user.login", &reader).await;
    assert_eq!(status, 200);
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("leaf_index,received_at,event_id,ts,tenant_id,actor.id,actor.name,actor_ip,action,outcome")
    );
    let row = rows.next().unwrap();
    assert!(row.contains(",a-1,") && row.contains(",u-1,alice,192.0.2.7,platform.user.login,denied,"), "{row}");
    let audit_record = api.json("/v1/tenants/acme/audit/a-1", &reader).await;
    // After the tokens' creation and the refusals above, all audited.
    assert!(audit_record["leaf_index"].as_u64().unwrap() >= 4, "{audit_record}");
    assert!(audit_record["checkpoint"]["size"].as_u64() > audit_record["leaf_index"].as_u64());

    // Keys are listed with no token; an origin of another deployment is refused.
    let (status, _) = api.get("/v1/keys?origin=elsewhere/tenants/acme/timeline", "").await;
    assert_eq!(status, 422);
    let (ok, _) = server.stop();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_over_http_on_sqlite() {
    logs_over_http(Store::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_over_http_on_postgres() {
    logs_over_http(Store::postgres().await).await;
}

/// Statements that let the owner rewrite history, as an attacker with database access
/// would: the append-only triggers off.
fn unlock(store: &Store) -> &'static str {
    if store.database_url.is_some() {
        "ALTER TABLE timeline_events DISABLE TRIGGER USER; ALTER TABLE ledger_nodes DISABLE TRIGGER USER;"
    } else {
        "DROP TRIGGER timeline_events_append_only; DROP TRIGGER timeline_events_pruned_only; \
         DROP TRIGGER ledger_nodes_append_only_delete;"
    }
}

async fn tampering_is_pinpointed(store: Store) {
    let cases: [(&str, String, &str); 4] = [
        (
            "t-byte",
            r#"UPDATE timeline_events SET record = replace(record, '"n":7', '"n":8') WHERE tenant_id = 't-byte' AND leaf_index = 7;"#.into(),
            "leaf 7: the record does not match its leaf hash",
        ),
        (
            "t-delete",
            "DELETE FROM timeline_events WHERE tenant_id = 't-delete' AND leaf_index = 5;".into(),
            "leaf 5: the record is missing, and no retention record (custos.retention.pruned) after it covers it",
        ),
        (
            "t-reorder",
            "UPDATE timeline_events SET leaf_index = 1000 WHERE tenant_id = 't-reorder' AND leaf_index = 3; \
             UPDATE timeline_events SET leaf_index = 3 WHERE tenant_id = 't-reorder' AND leaf_index = 9; \
             UPDATE timeline_events SET leaf_index = 9 WHERE tenant_id = 't-reorder' AND leaf_index = 1000;"
                .into(),
            "leaf 3: the record does not match its leaf hash, which the signed checkpoint authenticates; the record was altered or replaced (event e-9)",
        ),
        (
            "t-truncate",
            "DELETE FROM timeline_events WHERE tenant_id = 't-truncate' AND leaf_index >= 12; \
             DELETE FROM ledger_nodes WHERE tenant_id = 't-truncate' AND level = 0 AND idx >= 12;"
                .into(),
            "leaf 12 is missing from the log: it holds 12 of the checkpoint's 20 leaves",
        ),
    ];
    // The token first: created before the tenants, it is on none of their timelines,
    // so each holds exactly the 20 events below.
    let writer = create_token(&store, &["--tenant", "*", "--scope", "timeline:write", "--scope", "timeline:read"]);
    for (tenant, _, _) in &cases {
        store.ok(&["tenants", "create", tenant]);
    }
    let server = Server::start(&store);
    let api = Api { client: reqwest::Client::new(), base: server.base.clone() };
    let verify = |tenant: &str, extra: &[&str]| {
        let key = store.ok(&["keys", "export-public", "--tenant", tenant]);
        let mut args = vec!["forensic", "verify-log", "--server", &server.base, "--token", &writer, "--tenant", tenant];
        let key = key.trim().to_owned();
        args.extend(["--key", &key]);
        args.extend_from_slice(extra);
        store.run(&args)
    };
    for (tenant, _, _) in &cases {
        let path = format!("/v1/tenants/{tenant}/timeline/events");
        let (status, body) = api.post(&path, &writer, "application/x-ndjson", events(tenant, 0..20)).await;
        assert_eq!(status, 200, "{body}");
        let (ok, stdout, stderr) = verify(tenant, &["--json"]);
        assert!(ok, "{tenant} verifies before tampering: {stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!((report["verified"].as_bool(), report["size"].as_u64()), (Some(true), Some(20)), "{report}");
        assert!(stderr.contains("trace_id: "), "the CLI prints its trace id: {stderr}");
    }
    // A checkpoint an auditor kept, for the truncation case.
    let (_, kept) = api.get("/v1/tenants/t-truncate/timeline/checkpoint", &writer).await;
    let kept_path = store.dir.path().join("kept-checkpoint");
    std::fs::write(&kept_path, &kept).unwrap();

    custos_store::testing::run_sql(store.database_url.as_deref(), store.dir.path(), unlock(&store)).await;
    for (tenant, sql, expected) in &cases {
        custos_store::testing::run_sql(store.database_url.as_deref(), store.dir.path(), sql).await;
        let (ok, _, stderr) = verify(tenant, &[]);
        assert!(!ok, "{tenant}: tampering went unnoticed");
        assert!(stderr.contains(expected), "{tenant}: expected {expected:?} in:\n{stderr}");
    }

    // The saved export of a tampered log fails offline just the same.
    let saved = store.dir.path().join("t-byte.export");
    let (ok, _, _) = verify("t-byte", &["--save", saved.to_str().unwrap()]);
    assert!(!ok);
    let key = store.ok(&["keys", "export-public", "--tenant", "t-byte"]);
    let (ok, _, stderr) =
        store.run(&["forensic", "verify-log", "--export", saved.to_str().unwrap(), "--key", key.trim()]);
    assert!(!ok && stderr.contains("leaf 7: the record does not match"), "{stderr}");

    // Cutting the head back too makes the server refuse to sign a shorter log.
    custos_store::testing::run_sql(
        store.database_url.as_deref(),
        store.dir.path(),
        "UPDATE ledger_heads SET size = 12 WHERE tenant_id = 't-truncate';",
    )
    .await;
    let (ok, _, stderr) = verify("t-truncate", &["--from-checkpoint", kept_path.to_str().unwrap()]);
    assert!(!ok && stderr.contains("it was truncated below the application"), "{stderr}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_is_pinpointed_on_sqlite() {
    tampering_is_pinpointed(Store::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_is_pinpointed_on_postgres() {
    tampering_is_pinpointed(Store::postgres().await).await;
}

async fn keys_rotate_and_both_verify(store: Store) {
    store.ok(&["tenants", "create", "acme"]);
    let first = store.ok(&["keys", "generate"]).trim().to_owned();
    assert!(store.fails(&["keys", "generate"]).contains("already exists"));
    let token = create_token(&store, &["--tenant", "acme", "--scope", "admin"]);
    let server = Server::start(&store);
    let api = Api { client: reqwest::Client::new(), base: server.base.clone() };
    api.post("/v1/tenants/acme/timeline/events", &token, "application/x-ndjson", events("acme", 0..4)).await;
    let old_key = store.ok(&["keys", "export-public", "--tenant", "acme"]).trim().to_owned();
    // A checkpoint of the head now (GET serves the latest signed, which may be older).
    let (_, before) = api.send(reqwest::Method::POST, "/v1/tenants/acme/timeline/checkpoint", &token, None).await;

    let second = store.ok(&["keys", "rotate", "--reason", "annual"]).trim().to_owned();
    assert_ne!(first, second);
    let listed: Value = serde_json::from_str(&store.ok(&["keys", "list", "--format", "json"])).unwrap();
    let states: Vec<(String, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key_id"].as_str().unwrap().to_owned(), k["active"].as_bool().unwrap()))
        .collect();
    assert_eq!(states, [(first.clone(), false), (second.clone(), true)]);
    let both = store.ok(&["keys", "export-public", "--tenant", "acme", "--all"]);
    assert_eq!(both.lines().count(), 2);

    // The rotation is in the tenant's timeline and audit log.
    for log in ["timeline", "audit"] {
        let page = api
            .json(
                &format!(
                    "/v1/tenants/acme/{log}?format=json&{}=custos.key.rotated",
                    if log == "timeline" { "kind" } else { "action" }
                ),
                &token,
            )
            .await;
        let record = &page["items"][0]["record"];
        assert_eq!(record["details"]["previous_key_id"], first.as_str(), "{page}");
        assert_eq!(record["details"]["key_id"], second.as_str());
        assert_eq!(record["details"]["reason"], "annual");
    }
    // The running server signs with the new key from now on; the log verifies with
    // both keys pinned and is consistent with the checkpoint the old key signed.
    let new_key = store.ok(&["keys", "export-public", "--tenant", "acme"]).trim().to_owned();
    let (_, after) = api.send(reqwest::Method::POST, "/v1/tenants/acme/timeline/checkpoint", &token, None).await;
    let origin = "custos.local/tenants/acme/timeline";
    assert!(Checkpoint::open(after.as_bytes(), origin, &[NoteVerifier::parse(&new_key).unwrap()]).is_ok(), "{after}");
    assert!(Checkpoint::open(after.as_bytes(), origin, &[NoteVerifier::parse(&old_key).unwrap()]).is_err());
    let kept = store.dir.path().join("before");
    std::fs::write(&kept, &before).unwrap();
    let (ok, stdout, stderr) = store.run(&[
        "forensic",
        "verify-log",
        "--server",
        &server.base,
        "--token",
        &token,
        "--tenant",
        "acme",
        "--key",
        &old_key,
        "--key",
        &new_key,
        "--from-checkpoint",
        kept.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    // The key's generation, the admin token's creation and 4 events.
    assert!(stdout.contains("consistent   with the earlier checkpoint of 6 leaves"), "{stdout}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_and_both_verify_on_sqlite() {
    keys_rotate_and_both_verify(Store::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_and_both_verify_on_postgres() {
    keys_rotate_and_both_verify(Store::postgres().await).await;
}

/// `keys rotate --overlap`: during the window the old key signs beside the new one,
/// so a verifier that pinned only the old key (its checkpoint key, its saved keyring)
/// keeps verifying checkpoints and evidence bundles; `keys drop-previous` ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_overlap_signs_with_both_keys() {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    let first = store.ok(&["keys", "generate"]).trim().to_owned();
    let token = create_token(&store, &["--tenant", "acme", "--scope", "admin"]);
    let server = Server::start(&store);
    let api = Api { client: reqwest::Client::new(), base: server.base.clone() };
    api.post("/v1/tenants/acme/timeline/events", &token, "application/x-ndjson", events("acme", 0..3)).await;
    let old_key = NoteVerifier::parse(store.ok(&["keys", "export-public", "--tenant", "acme"]).trim()).unwrap();
    let old_keyring = store.dir.path().join("keys-before.json");
    let published = reqwest::get(format!("{}/v1/keys", server.base)).await.unwrap().text().await.unwrap();
    std::fs::write(&old_keyring, published).unwrap();

    assert!(store.fails(&["keys", "rotate", "--overlap", "91d"]).contains("at most 90 days"));
    assert!(store.fails(&["keys", "rotate", "--overlap", "0s"]).contains("more than 0s"));
    let (ok, stdout, stderr) = store.run(&["keys", "rotate", "--overlap", "7d", "--reason", "quarterly"]);
    assert!(ok, "{stderr}");
    let second = stdout.trim().to_owned();
    assert!(stderr.contains(&format!("{first} signs beside it until")), "{stderr}");

    // The file keeps the old key until the window ends; the store says so too.
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(store.dir.path().join("keys/checkpoint-signing.key")).unwrap())
            .unwrap();
    assert_eq!((file["key_id"].as_str(), file["previous"]["key_id"].as_str()), (Some(&*second), Some(&*first)));
    let listed: Value = serde_json::from_str(&store.ok(&["keys", "list", "--format", "json"])).unwrap();
    let states: Vec<(&str, &str, bool, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap(),
                k["state"].as_str().unwrap(),
                k["signs_now"].as_bool().unwrap(),
                k["in_key_file"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [(&*first, "overlap", true, true), (&*second, "active", true, true)]);
    assert_eq!(listed[0]["not_after"], file["previous"]["until"]);
    assert_eq!(store.ok(&["keys", "export-public", "--tenant", "acme"]).lines().count(), 2);
    let rotated = api.json("/v1/tenants/acme/audit?format=json&action=custos.key.rotated", &token).await;
    assert_eq!(rotated["items"][0]["record"]["details"]["previous_signs_until"], file["previous"]["until"]);

    // A checkpoint signed now carries both signatures: either key alone opens it.
    api.post("/v1/tenants/acme/timeline/events", &token, "application/x-ndjson", events("acme", 3..5)).await;
    let (_, note) = api.send(reqwest::Method::POST, "/v1/tenants/acme/timeline/checkpoint", &token, None).await;
    let origin = "custos.local/tenants/acme/timeline";
    let new_key = NoteVerifier::parse(
        store
            .ok(&["keys", "export-public", "--tenant", "acme"])
            .lines()
            .find(|l| !l.contains(&old_key.to_string()))
            .unwrap(),
    )
    .unwrap();
    for key in [&old_key, &new_key] {
        let (_, verified) = Checkpoint::open(note.as_bytes(), origin, std::slice::from_ref(key)).unwrap();
        assert_eq!(verified.signed_by.len(), 1);
        assert_eq!(verified.unverified.len(), 1, "{note}");
    }

    // So does an evidence bundle: it verifies offline with the keyring saved before the
    // rotation, which knows only the old key.
    let archive = crate::common::upload_and_seal(&store, &server, &token, "IR-9");
    let verify = |keyring: &std::path::Path| {
        let (ok, stdout, stderr) = store.run(&[
            "forensic",
            "verify",
            archive.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["signed_by"].clone()
    };
    assert_eq!(verify(&old_keyring), json!([first]));
    let new_keyring = store.dir.path().join("keys-after.json");
    let published = reqwest::get(format!("{}/v1/keys", server.base)).await.unwrap().text().await.unwrap();
    std::fs::write(&new_keyring, published).unwrap();
    assert_eq!(verify(&new_keyring), json!([second, first]));
    let sealed =
        first_item(&api, "/v1/tenants/acme/audit?format=json&action=custos.evidence.bundle.sealed", &token).await;
    assert_eq!(sealed["record"]["details"]["signed_by"], json!([second, first]), "{sealed}");

    // Ending the overlap early: the old key's private half leaves the file, its window
    // closes now, and the next checkpoint is the new key's alone.
    let dropped = store.ok(&["keys", "drop-previous", "--reason", "all relying parties updated"]);
    assert_eq!(dropped.trim(), first);
    let file = std::fs::read_to_string(store.dir.path().join("keys/checkpoint-signing.key")).unwrap();
    assert!(!file.contains("previous"), "{file}");
    let listed: Value = serde_json::from_str(&store.ok(&["keys", "list", "--format", "json"])).unwrap();
    assert_eq!((listed[0]["state"].as_str(), listed[0]["in_key_file"].as_bool()), (Some("retired"), Some(false)));
    assert!(store.ok(&["keys", "drop-previous"]).is_empty());
    api.post("/v1/tenants/acme/timeline/events", &token, "application/x-ndjson", events("acme", 5..6)).await;
    let (_, note) = api.send(reqwest::Method::POST, "/v1/tenants/acme/timeline/checkpoint", &token, None).await;
    assert!(Checkpoint::open(note.as_bytes(), origin, std::slice::from_ref(&new_key)).is_ok(), "{note}");
    assert!(Checkpoint::open(note.as_bytes(), origin, std::slice::from_ref(&old_key)).is_err(), "{note}");
    let audit = first_item(&api, "/v1/tenants/acme/audit?format=json&action=custos.key.previous_dropped", &token).await;
    assert_eq!(audit["record"]["details"]["closed_early"], true, "{audit}");
    drop(server);
}

/// The server says how long its allocator keeps freed memory: custos's 50 ms, or what
/// `MIMALLOC_PURGE_DELAY` set (which also proves custos reads the option it sets).
#[test]
fn the_server_logs_its_allocator_purge_delay() {
    let store = Store::sqlite();
    for (env, expected, source) in [(None, 50, "custos"), (Some("1234"), 1234, "MIMALLOC_PURGE_DELAY")] {
        let env: Vec<(&str, &str)> = env.map(|v| ("MIMALLOC_PURGE_DELAY", v)).into_iter().collect();
        let server = Server::start_with_env(&store, &[], &env);
        let line = loop {
            let line = server.stderr.recv_timeout(std::time::Duration::from_secs(30)).expect("the allocator line");
            if line.contains("\"allocator configured\"") {
                break line;
            }
        };
        server.stop();
        let json: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (json["purge_delay_ms"].as_i64(), json["source"].as_str()),
            (Some(expected), Some(source)),
            "{line}"
        );
    }
}

/// Polls a log query until it returns at least one item (custos audits refusals in
/// the background, after answering).
async fn first_item(api: &Api, path: &str, token: &str) -> Value {
    for _ in 0..400 {
        let page = api.json(path, token).await;
        if let Some(item) = page["items"].as_array().and_then(|items| items.first()) {
            return item.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing at {path}");
}

async fn custos_records_its_own_actions(store: Store) {
    store.ok(&["tenants", "create", "acme"]);
    let reader = create_token(
        &store,
        &["--tenant", "acme", "--scope", "timeline:read", "--scope", "audit:read", "--name", "auditor"],
    );
    let ingest = create_token(&store, &["--tenant", "acme", "--scope", "ingest:write", "--name", "platform"]);
    let server = Server::start_with(&store, &["--trace-url-template", "https://traces.example/trace/{trace_id}"]);
    let api = Api { client: reqwest::Client::new(), base: server.base.clone() };

    // Token creation is on the tenant's timeline and in its audit log.
    let created = first_item(&api, "/v1/tenants/acme/audit?action=custos.token.created", &reader).await;
    assert_eq!(created["record"]["resource_type"], "token");
    assert!(created["record"]["actor"]["name"].as_str().unwrap().starts_with("cli"), "{created}");
    first_item(&api, "/v1/tenants/acme/timeline?kind=custos.token.created", &reader).await;

    // A denial names the token (never its secret) and the missing scope; a bad token is
    // audited as a failed authentication.
    let (status, _) = api.get("/v1/tenants/acme/rule-runs", &reader).await;
    assert_eq!(status, 403);
    let denied = first_item(&api, "/v1/tenants/acme/audit?action=custos.auth.denied", &reader).await;
    let record = &denied["record"];
    assert_eq!((record["outcome"].as_str(), record["actor"]["name"].as_str()), (Some("denied"), Some("auditor")));
    assert!(record["actor"]["id"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(record["details"]["reason"], "missing scope obs:read#tenant/acme");
    assert_eq!(record["actor_ip"], "127.0.0.1");
    assert!(!denied.to_string().contains(&reader), "the secret is never recorded");
    // A request without a valid token is the server's business, not the tenant's log's.
    let (status, _) = api.get("/v1/tenants/acme/timeline", "cst_not-a-token").await;
    assert_eq!(status, 401);

    // A failed rule run goes on the timeline once, however often it is re-sent.
    let run = json!({"id": "run-9", "rule_key": "brute-force", "status": "failed", "error_message": "timeout",
                     "started_at": "2026-11-23T10:00:00Z", "finished_at": "2026-11-23T10:00:05Z",
                     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"});
    for _ in 0..2 {
        let (status, body) = api.post("/v1/tenants/acme/rule-runs", &ingest, "application/json", run.to_string()).await;
        assert!(status == 200 || status == 201, "{body}");
    }
    let page = api.json("/v1/tenants/acme/timeline?kind=custos.rule_run.failed", &reader).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let event = &items[0]["record"];
    assert_eq!((event["resource_type"].as_str(), event["resource_id"].as_str()), (Some("rule"), Some("brute-force")));
    assert_eq!(event["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(event["ts"], "2026-11-23T10:00:05.000000Z");
    assert_eq!(event["details"]["error_message"], "timeout");

    // The trace: the run, and the failure custos recorded from it, in time order; a
    // token without obs:read sees the logs only, and is told what it misses.
    let everything = create_token(
        &store,
        &["--tenant", "acme", "--scope", "obs:read", "--scope", "timeline:read", "--scope", "audit:read"],
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (ok, stdout, stderr) =
        store.run(&["obs", "trace", trace, "--tenant", "acme", "--server", &server.base, "--token", &everything]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("trace {trace}  https://traces.example/trace/{trace}"), "{stdout}");
    assert!(
        lines[1].starts_with("├─ 2026-11-23T10:00:00.000")
            && lines[1].contains("rule_run")
            && lines[1].contains("rule brute-force failed"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("└─ 2026-11-23T10:00:05.000")
            && lines[2].contains("custos.rule_run.failed rule/brute-force"),
        "{stdout}"
    );
    assert!(stderr.contains("trace_id: "), "{stderr}");
    let (ok, stdout, _) =
        store.run(&["obs", "trace", trace, "--tenant", "acme", "--json", "--server", &server.base, "--token", &reader]);
    assert!(ok);
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["omitted"], json!(["rule_run", "connector_sync"]));
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    let (status, _) = api.get(&format!("/v1/tenants/acme/traces/{trace}"), &ingest).await;
    assert_eq!(status, 403);
    let (status, _) = api.get("/v1/tenants/acme/traces/not-a-trace", &reader).await;
    assert_eq!(status, 422);

    // Revoking a token is recorded too.
    let tokens: Value = serde_json::from_str(&store.ok(&["tokens", "list", "--format", "json"])).unwrap();
    let platform =
        tokens.as_array().unwrap().iter().find(|t| t["name"] == "platform").unwrap()["id"].as_str().unwrap().to_owned();
    store.ok(&["tokens", "revoke", &platform]);
    let revoked = first_item(&api, "/v1/tenants/acme/audit?action=custos.token.revoked", &reader).await;
    assert_eq!(revoked["record"]["resource_id"], platform.as_str());
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn custos_records_its_own_actions_on_sqlite() {
    custos_records_its_own_actions(Store::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn custos_records_its_own_actions_on_postgres() {
    custos_records_its_own_actions(Store::postgres().await).await;
}

/// The demo's simulated platform writes to both logs, and every batch is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_platform_posts_timeline_events_and_audit_records() {
    let store = Store::sqlite();
    let demo = Server::spawn(&store, &["demo", "--listen", "127.0.0.1:0", "--rate", "400"], &[]);
    let reader = create_token(&store, &["--tenant", "*", "--scope", "timeline:read", "--scope", "audit:read"]);
    let api = Api { client: reqwest::Client::new(), base: demo.base.clone() };
    let event = first_item(&api, "/v1/tenants/acme/timeline?kind=platform.*", &reader).await;
    assert!(event["record"]["actor"].is_string(), "{event}");
    let login = first_item(&api, "/v1/tenants/acme/audit?action=platform.user.login", &reader).await;
    assert!(login["record"]["actor_ip"].as_str().unwrap().starts_with("203.0.113."), "{login}");
    // The demo's own tokens are recorded like any other (the reader's too: it is
    // created by `custos admin token create`).
    let created = first_item(&api, "/v1/tenants/acme/audit?action=custos.token.created&limit=100", &reader).await;
    assert_eq!(created["record"]["outcome"], "success", "{created}");
    let page = api.json("/v1/tenants/acme/timeline?kind=custos.token.created&limit=100", &reader).await;
    let names: Vec<&str> =
        page["items"].as_array().unwrap().iter().filter_map(|e| e["record"]["details"]["name"].as_str()).collect();
    assert!(names.contains(&"demo-admin") && names.contains(&"demo-simulator"), "{names:?}");
    let (_, lines) = demo.stop();
    let refused: Vec<&String> = lines.iter().filter(|l| l.contains("demo batch refused")).collect();
    assert!(refused.is_empty(), "{refused:?}");
}

/// A failed run and its timeline event commit together: `custos serve` killed with
/// SIGKILL while failed runs stream in, then started again, holds an event for every
/// failed run it stored (there is no moment between the two to be killed in).
async fn a_killed_server_never_keeps_a_failed_run_without_its_event(store: Store) {
    store.ok(&["tenants", "create", "acme"]);
    let token = create_token(
        &store,
        &["--tenant", "acme", "--scope", "ingest:write", "--scope", "obs:read", "--scope", "timeline:read"],
    );
    let mut server = Server::start(&store);
    let base = server.base.clone();
    let sender = {
        let token = token.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = 0usize;
            for batch in 0..1000 {
                let body: String = (0..20)
                    .map(|i| {
                        let status = if i % 2 == 0 { "failed" } else { "succeeded" };
                        format!(
                            "{{\"id\":\"r-{batch}-{i}\",\"rule_key\":\"k-{i}\",\"status\":\"{status}\",\"error_message\":\"e\",\"started_at\":\"2026-11-23T10:00:00Z\"}}\n"
                        )
                    })
                    .collect();
                let sent = client
                    .post(format!("{base}/v1/tenants/acme/rule-runs"))
                    .bearer_auth(&token)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => accepted += 1,
                    _ => break,
                }
            }
            accepted
        })
    };
    // Let some batches land, then kill mid-stream.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let accepted = sender.await.unwrap();
    assert!(accepted > 0, "no batch landed before the kill");

    let server = Server::start(&store);
    let client = reqwest::Client::new();
    let all = |path: String| {
        let (client, token, base) = (&client, &token, &server.base);
        async move {
            let mut ids = std::collections::BTreeSet::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{base}{path}&limit=1000");
                if let Some(cursor) = &cursor {
                    url.push_str(&format!("&cursor={cursor}"));
                }
                let page: Value = client.get(&url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
                for item in page["items"].as_array().unwrap() {
                    ids.insert(
                        item["id"].as_str().or(item["record"]["details"]["record_id"].as_str()).unwrap().to_owned(),
                    );
                }
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break ids,
                }
            }
        }
    };
    let failed = all("/v1/tenants/acme/rule-runs?status=failed".into()).await;
    let events = all("/v1/tenants/acme/timeline?kind=custos.rule_run.failed".into()).await;
    assert!(failed.len() >= accepted * 10, "every accepted batch's failures are stored");
    assert_eq!(failed, events, "every stored failed run has its event, and no event lacks its run");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_never_keeps_a_failed_run_without_its_event_on_sqlite() {
    a_killed_server_never_keeps_a_failed_run_without_its_event(Store::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_never_keeps_a_failed_run_without_its_event_on_postgres() {
    a_killed_server_never_keeps_a_failed_run_without_its_event(Store::postgres().await).await;
}
