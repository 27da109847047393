//! The evidence locker over HTTP: artifacts stream in write-once, a case seals into a
//! signed bundle that re-verifies on every read and downloads to the same bytes every
//! time, which verify offline; tampering in the object store is caught; holds, scopes
//! and bad input. SQLite runs with the local object directory, PostgreSQL with the
//! S3-compatible server `scripts/test.sh` starts, so both object backends are covered.

use custos_ledger::bundle::{TrustedKey, Verifier};
use custos_server::ServerConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Backend, TestApp, error, json};

/// An app with a signing key and an object store; the key, and the local object
/// directory when there is one.
async fn evidence_app(
    backend: Backend,
    config: ServerConfig,
) -> (TestApp, custos_server::keys::SigningKey, Option<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("signing.key");
    custos_server::keys::SigningKey::generate().create(&path).unwrap();
    let (objects, root) = match backend {
        Backend::Sqlite => (custos_store::objects::open(None, &dir).unwrap(), Some(dir.join("objects"))),
        Backend::Postgres => {
            let endpoint = std::env::var("CUSTOS_TEST_S3_ENDPOINT").expect("scripts/test.sh starts an S3 server");
            let bucket = std::env::var("CUSTOS_TEST_S3_BUCKET").unwrap_or_else(|_| "custos-test".into());
            let url = format!("s3://{bucket}/evidence-{}", uuid::Uuid::new_v4().simple());
            (custos_store::objects::open_s3(&url, Some(&endpoint)).unwrap(), None)
        }
    };
    let config = ServerConfig { signing_key_file: Some(path.clone()), ..config };
    let app = TestApp::with_objects(backend, config, Some((objects, std::time::Duration::from_secs(3600)))).await;
    custos_server::keys::load_or_create(&*app.store, &path).await.unwrap();
    (app, custos_server::keys::SigningKey::load(&path).unwrap(), root)
}

async fn put_artifact(app: &TestApp, token: &str, case: &str, name: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/tenants/acme/evidence/cases/{case}/artifacts/{name}")))
        .bearer_auth(token)
        .header("content-type", "application/vnd.tcpdump.pcap")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn seal(app: &TestApp, token: &str, case: &str) -> reqwest::Response {
    let body = json!({"kind": "case", "case_id": case});
    app.client.post(app.url("/v1/tenants/acme/evidence/snapshots")).bearer_auth(token).json(&body).send().await.unwrap()
}

/// 9 MiB of varied bytes: more than one upload part.
fn large_artifact() -> Vec<u8> {
    (0..9 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

async fn download(app: &TestApp, token: &str, bundle: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = app.get(token, &format!("/v1/tenants/acme/evidence/{bundle}/download")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    (headers, response.bytes().await.unwrap().to_vec())
}

async fn log_kinds(app: &TestApp, token: &str, log: &str) -> Vec<Value> {
    let (_, page) = json(app.get(token, &format!("/v1/tenants/acme/{log}?limit=100")).await).await;
    page["items"].as_array().unwrap().iter().map(|item| item["record"].clone()).collect()
}

async fn a_case_seals_into_a_bundle_that_verifies_offline(backend: Backend) {
    let (app, key, _) = evidence_app(backend, ServerConfig::default()).await;
    let token = app
        .token(&[
            "evidence:create#tenant/acme",
            "evidence:read#tenant/acme",
            "evidence:export#tenant/acme",
            "timeline:read#tenant/acme",
            "audit:read#tenant/acme",
        ])
        .await;
    let large = large_artifact();
    let (status, uploaded) = json(put_artifact(&app, &token, "case-7", "capture.pcap", large.clone()).await).await;
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["sha256"], hex::encode(Sha256::digest(&large)));
    assert_eq!(uploaded["size"], large.len());
    assert_eq!(uploaded["media_type"], "application/vnd.tcpdump.pcap");
    assert!(uploaded.get("object_key").is_none(), "where it is stored is custos's business: {uploaded}");
    let (status, _) = json(put_artifact(&app, &token, "case-7", "notes.txt", b"seen at 03:12\n".to_vec()).await).await;
    assert_eq!(status, 201);

    // Write-once: the same name again is refused, whatever the bytes.
    let refused =
        error(put_artifact(&app, &token, "case-7", "notes.txt", b"other".to_vec()).await, 409, "conflict").await;
    assert_eq!(refused["field"], "name");

    let (status, sealed) = json(seal(&app, &token, "case-7").await).await;
    assert_eq!(status, 201, "{sealed}");
    let bundle = sealed["bundle_id"].as_str().unwrap().to_owned();
    assert!(bundle.starts_with("evb_"), "{sealed}");
    assert_eq!(sealed["files"], 3, "two artifacts and custody.json: {sealed}");
    assert_eq!(sealed["signed_by"], json!([key.key_id()]));

    // Read back and re-verified.
    let (status, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(read["verification"]["verified"], true, "{read}");
    assert_eq!(read["verification"]["signed_by"], json!([key.key_id()]));
    assert_eq!(read["bundle"]["merkle_root"], sealed["merkle_root"]);
    let backend = if matches!(backend, Backend::Sqlite) { "local" } else { "s3" };
    assert_eq!(read["storage"], json!({"backend": backend, "object_lock": null}), "no Object Lock here: {read}");
    let paths: Vec<&str> =
        read["manifest"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["artifacts/capture.pcap", "artifacts/notes.txt", "custody.json"]);

    // The same bundle downloads to the same bytes, which verify offline with the key.
    let (headers, first) = download(&app, &token, &bundle).await;
    let (_, second) = download(&app, &token, &bundle).await;
    assert_eq!(first, second, "a deterministic archive");
    assert_eq!(headers["content-type"], "application/gzip");
    assert_eq!(headers["x-custos-manifest-sha256"].to_str().unwrap(), sealed["manifest_sha256"].as_str().unwrap());
    let keys = vec![TrustedKey { key: key.dsse_signer().public_key(), not_before: None, not_after: None }];
    let report = Verifier::new(keys).verify_tar_gz(first.as_slice()).unwrap();
    assert_eq!(report.bundle_id, bundle);
    assert_eq!(report.bytes, sealed["bytes"].as_u64().unwrap());
    assert!(report.bytes > large.len() as u64 + 14, "both artifacts and the custody file");
    assert_eq!(report.merkle_root, sealed["merkle_root"].as_str().unwrap());

    // The chain of custody in the timeline, the actions (downloads too) in the audit log.
    let timeline = log_kinds(&app, &token, "timeline").await;
    let sealed_event = timeline.iter().find(|e| e["kind"] == "custos.evidence.bundle.sealed").unwrap();
    assert_eq!(sealed_event["event_id"], sealed["event_id"]);
    assert_eq!(sealed_event["details"]["merkle_root"], sealed["merkle_root"]);
    assert_eq!(sealed_event["details"]["custody_sha256"], sealed["custody_sha256"]);
    let uploads = timeline.iter().filter(|e| e["kind"] == "custos.evidence.artifact.uploaded").count();
    assert_eq!(uploads, 2, "the refused upload left no event");
    let audit = log_kinds(&app, &token, "audit").await;
    let downloads: Vec<&Value> = audit.iter().filter(|r| r["action"] == "custos.evidence.bundle.downloaded").collect();
    assert_eq!(downloads.len(), 2, "every download is audited");
    assert_eq!(downloads[0]["resource_id"], bundle.as_str());

    // The custody file names each upload's event.
    let custody: Value = {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(first.as_slice()));
        let mut entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().ends_with("custody.json"))
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(custody["steps"][0]["name"], "capture.pcap");
    assert_eq!(custody["steps"][0]["sha256"], uploaded["sha256"]);
    assert_eq!(custody["steps"][0]["event_id"], uploaded["event_id"]);

    // The attestation: about the manifest, verified on read, and by the public verifier.
    let path = format!("/v1/tenants/acme/attestations?subject_id={bundle}");
    let (status, attestations) = json(app.get(&token, &path).await).await;
    assert_eq!(status, 200);
    let attestation = &attestations[0];
    assert_eq!(attestations.as_array().unwrap().len(), 1);
    assert_eq!(attestation["attestation_id"], sealed["attestation_id"]);
    assert_eq!(attestation["subject_sha256"], sealed["manifest_sha256"]);
    assert_eq!(attestation["verification"]["verified"], true, "{attestation}");
    let body = json!({"envelope": attestation["envelope"], "subject_sha256": sealed["manifest_sha256"]});
    let (_, verdict) =
        json(app.client.post(app.url("/v1/attestations/verify")).json(&body).send().await.unwrap()).await;
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["statement"]["predicate"]["runDetails"]["metadata"]["invocationId"], bundle.as_str());

    // The case, whole.
    let (_, case) = json(app.get(&token, "/v1/tenants/acme/evidence/cases/case-7").await).await;
    assert_eq!(case["artifacts"].as_array().unwrap().len(), 2);
    assert_eq!(case["bundles"][0]["bundle_id"], bundle.as_str());
    assert_eq!(case["held"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_seals_into_a_bundle_that_verifies_offline_on_sqlite_and_local_objects() {
    a_case_seals_into_a_bundle_that_verifies_offline(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_seals_into_a_bundle_that_verifies_offline_on_postgres_and_s3() {
    a_case_seals_into_a_bundle_that_verifies_offline(Backend::Postgres).await;
}

/// Makes a local object writable again and replaces one byte of it: what someone with
/// access to the object directory could do.
fn flip_byte(file: &std::path::Path, at: usize) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 1;
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_in_the_object_store_is_caught() {
    let (app, _, root) = evidence_app(Backend::Sqlite, ServerConfig::default()).await;
    let root = root.unwrap();
    let token = app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme"]).await;
    put_artifact(&app, &token, "case-1", "a.log", b"line one\n".to_vec()).await;
    let (_, sealed) = json(seal(&app, &token, "case-1").await).await;
    let bundle = sealed["bundle_id"].as_str().unwrap();
    let dir = root.join(format!("tenants/acme/evidence/case-1/{bundle}"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("manifest.json")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o444, "bundle files are read-only");

    // One flipped byte in an artifact: the file and the check are named.
    flip_byte(&dir.join("artifacts/a.log"), 3);
    let (_, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
    assert_eq!(read["verification"]["verified"], false, "{read}");
    assert_eq!(read["verification"]["check"], "file_digest");
    assert!(read["verification"]["error"].as_str().unwrap().contains("artifacts/a.log"), "{read}");
    flip_byte(&dir.join("artifacts/a.log"), 3);

    // A file added beside them.
    std::fs::write(dir.join("artifacts/extra.log"), b"planted").unwrap();
    let (_, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
    assert_eq!(read["verification"]["check"], "file_unlisted", "{read}");
    std::fs::remove_file(dir.join("artifacts/extra.log")).unwrap();
    let (_, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
    assert_eq!(read["verification"]["verified"], true, "restored: {read}");

    // An upload changed before sealing: the case is not sealed.
    put_artifact(&app, &token, "case-2", "b.log", b"original".to_vec()).await;
    let uploads = root.join("tenants/acme/evidence/case-2/uploads");
    let upload = std::fs::read_dir(&uploads).unwrap().next().unwrap().unwrap().path();
    flip_byte(&upload, 0);
    let refused = error(seal(&app, &token, "case-2").await, 409, "conflict").await;
    assert!(refused["message"].as_str().unwrap().contains("b.log"), "{refused}");
    let (_, case) = json(app.get(&token, "/v1/tenants/acme/evidence/cases/case-2").await).await;
    assert!(case["bundles"].as_array().unwrap().is_empty(), "{case}");
}

async fn holds_scopes_and_bad_input(backend: Backend) {
    let config = ServerConfig { evidence_max_artifact_bytes: 1024, ..ServerConfig::default() };
    let (app, _, _) = evidence_app(backend, config).await;
    let creator = app.token(&["evidence:create#tenant/acme"]).await;
    let reader = app.token(&["evidence:read#tenant/acme"]).await;
    let holder = app.token(&["evidence:hold#tenant/acme", "audit:read#tenant/acme"]).await;
    let globex = app.token(&["evidence:read#tenant/globex", "evidence:create#tenant/globex"]).await;

    // Scopes: each route its own permission.
    let denied = error(put_artifact(&app, &reader, "c", "a.log", b"x".to_vec()).await, 403, "forbidden").await;
    assert_eq!(denied["message"], "missing scope evidence:create#tenant/acme");
    put_artifact(&app, &creator, "c", "a.log", b"x".to_vec()).await;
    let (_, sealed) = json(seal(&app, &creator, "c").await).await;
    let bundle = sealed["bundle_id"].as_str().unwrap();
    error(app.get(&creator, &format!("/v1/tenants/acme/evidence/{bundle}")).await, 403, "forbidden").await;
    let denied =
        error(app.get(&reader, &format!("/v1/tenants/acme/evidence/{bundle}/download")).await, 403, "forbidden").await;
    assert_eq!(denied["message"], "missing scope evidence:export#tenant/acme");
    // Another tenant's token, on its own tenant: the bundle is not there.
    error(app.get(&globex, &format!("/v1/tenants/globex/evidence/{bundle}")).await, 404, "not_found").await;
    error(app.get(&reader, "/v1/tenants/acme/evidence/evb_nope").await, 404, "not_found").await;

    // Bad input: the field at fault, nothing written.
    for (name, field) in [(".hidden", "name"), ("a%20b", "name"), (&"n".repeat(256) as &str, "name")] {
        let refused = error(put_artifact(&app, &creator, "c", name, b"x".to_vec()).await, 422, "invalid_field").await;
        assert_eq!(refused["field"], field, "{name}: {refused}");
    }
    let refused =
        error(put_artifact(&app, &creator, "c%2Fd", "a.log", b"x".to_vec()).await, 422, "invalid_field").await;
    assert_eq!(refused["field"], "case");
    let response = app
        .client
        .put(app.url("/v1/tenants/acme/evidence/cases/c/artifacts/t.bin"))
        .bearer_auth(&creator)
        .header("content-type", "not a type")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(error(response, 422, "invalid_field").await["field"], "content-type");
    // Over the size limit, declared or streamed.
    error(put_artifact(&app, &creator, "c", "big.bin", vec![0; 1025]).await, 413, "payload_too_large").await;
    let chunks = futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![7u8; 600])));
    let response = app
        .client
        .put(app.url("/v1/tenants/acme/evidence/cases/c/artifacts/streamed.bin"))
        .bearer_auth(&creator)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    error(response, 413, "payload_too_large").await;
    let (_, case) = json(app.get(&reader, "/v1/tenants/acme/evidence/cases/c").await).await;
    let names: Vec<&str> = case["artifacts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.log"], "no refused upload was recorded");

    let snapshot = |body: Value| {
        app.client.post(app.url("/v1/tenants/acme/evidence/snapshots")).bearer_auth(&creator).json(&body).send()
    };
    let refused = error(snapshot(json!({"kind": "export", "case_id": "c"})).await.unwrap(), 422, "invalid_field").await;
    assert_eq!(refused["field"], "kind");
    assert!(refused["message"].as_str().unwrap().contains("not sealed by this build yet"), "{refused}");
    let refused =
        error(snapshot(json!({"kind": "evaluation", "case_id": "c"})).await.unwrap(), 422, "invalid_field").await;
    assert_eq!(refused["field"], "resource_id", "{refused}");
    let body = json!({"kind": "evaluation", "case_id": "c", "resource_id": "no-such-run"});
    let refused = error(snapshot(body).await.unwrap(), 422, "invalid_field").await;
    assert_eq!(refused["field"], "resource_id");
    assert!(refused["message"].as_str().unwrap().contains("no rule run \"no-such-run\""), "{refused}");
    let refused =
        error(snapshot(json!({"kind": "everything", "case_id": "c"})).await.unwrap(), 422, "invalid_field").await;
    assert!(refused["message"].as_str().unwrap().contains("known: case, evaluation, job, export"), "{refused}");
    let refused =
        error(snapshot(json!({"kind": "case", "case_id": "empty"})).await.unwrap(), 422, "invalid_field").await;
    assert_eq!(refused["field"], "case_id");
    let refused =
        error(snapshot(json!({"kind": "case", "case_id": "c", "extra": 1})).await.unwrap(), 422, "invalid_field").await;
    assert!(refused["message"].as_str().unwrap().contains("extra"), "{refused}");
    let refused =
        error(app.get(&reader, "/v1/tenants/acme/attestations?subject_sha256=abc").await, 422, "invalid_field").await;
    assert_eq!(refused["field"], "subject_sha256");

    // Holds: one active per case, audited, released and kept.
    let hold_url = app.url("/v1/tenants/acme/evidence/holds/c");
    let place = || app.client.post(&hold_url).bearer_auth(&holder).json(&json!({"reason": "matter 7"})).send();
    let (status, hold) = json(place().await.unwrap()).await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(hold["id"], "c");
    error(place().await.unwrap(), 409, "conflict").await;
    let (_, case) = json(app.get(&reader, "/v1/tenants/acme/evidence/cases/c").await).await;
    assert_eq!(case["held"], true);
    error(
        app.client.post(&hold_url).bearer_auth(&reader).json(&json!({"reason": "x"})).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    let (status, released) = json(app.client.delete(&hold_url).bearer_auth(&holder).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(released["released_at"].is_string(), "{released}");
    error(app.client.delete(&hold_url).bearer_auth(&holder).send().await.unwrap(), 404, "not_found").await;
    let (_, holds) = json(app.get(&reader, "/v1/tenants/acme/evidence/holds").await).await;
    assert_eq!(holds.as_array().unwrap().len(), 1);
    let audit = log_kinds(&app, &holder, "audit").await;
    let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).filter(|a| a.contains("hold")).collect();
    assert_eq!(actions, ["custos.evidence.hold.released", "custos.evidence.hold.placed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_scopes_and_bad_input_on_sqlite() {
    holds_scopes_and_bad_input(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_scopes_and_bad_input_on_postgres() {
    holds_scopes_and_bad_input(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_object_store_the_locker_says_so() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["evidence:create#tenant/acme"]).await;
    let refused = error(put_artifact(&app, &token, "c", "a.log", b"x".to_vec()).await, 503, "unavailable").await;
    assert!(refused["message"].as_str().unwrap().contains("object store"), "{refused}");
}

const TSA_CONFIG: &str = include_str!("../../../../test-data/tsa/openssl-tsa.cnf");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_timestamped_by_a_real_tsa() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = custos_server::testing::start_tsa(dir.path(), TSA_CONFIG).await;
    let config = custos_server::evidence::TsaConfig { url: tsa.url.clone(), certificates: tsa.certificates.clone() };
    let (app, key, _) =
        evidence_app(Backend::Sqlite, ServerConfig { tsa: Some(config), ..ServerConfig::default() }).await;
    let token = app
        .token(&[
            "evidence:create#tenant/acme",
            "evidence:read#tenant/acme",
            "evidence:export#tenant/acme",
            "timeline:read#tenant/acme",
        ])
        .await;
    put_artifact(&app, &token, "case-1", "a.log", b"line one\n".to_vec()).await;
    let before = custos_model::Timestamp::now();
    let (status, sealed) = json(seal(&app, &token, "case-1").await).await;
    assert_eq!(status, 201, "{sealed}");
    let stamped_at = custos_model::Timestamp::parse("t", sealed["timestamped_at"].as_str().unwrap()).unwrap();
    assert!(stamped_at.as_micros() >= before.as_micros() - 2_000_000, "{sealed}");
    let bundle = sealed["bundle_id"].as_str().unwrap();

    // Verified on read, against the pinned TSA certificate.
    let (_, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
    assert_eq!(read["verification"]["verified"], true, "{read}");
    assert_eq!(read["verification"]["timestamp"]["verified"], true, "{read}");
    assert_eq!(read["verification"]["timestamp"]["tsa"], "CN=custos test TSA");

    // And offline: the token travels in the archive.
    let (_, archive) = download(&app, &token, bundle).await;
    let keys = vec![TrustedKey { key: key.dsse_signer().public_key(), not_before: None, not_after: None }];
    let report = Verifier::new(keys.clone())
        .with_tsa_certificates(tsa.certificates.clone())
        .verify_tar_gz(&archive[..])
        .unwrap();
    assert_eq!(report.timestamp.unwrap().time, stamped_at);
    let unchecked = Verifier::new(keys).verify_tar_gz(&archive[..]).unwrap();
    assert!(unchecked.timestamp_unchecked, "without the TSA's certificate, present but unchecked");
    let timeline = log_kinds(&app, &token, "timeline").await;
    let event = timeline.iter().find(|e| e["kind"] == "custos.evidence.bundle.sealed").unwrap();
    assert_eq!(event["details"]["timestamp"]["tsa"], "CN=custos test TSA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_tsa_nothing_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = custos_server::testing::start_tsa(dir.path(), TSA_CONFIG).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = custos_server::evidence::TsaConfig {
        url: format!("http://{closed}/tsa"),
        certificates: tsa.certificates.clone(),
    };
    let (app, _, _) =
        evidence_app(Backend::Sqlite, ServerConfig { tsa: Some(config), ..ServerConfig::default() }).await;
    let token = app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme"]).await;
    put_artifact(&app, &token, "case-1", "a.log", b"line one\n".to_vec()).await;
    let refused = error(seal(&app, &token, "case-1").await, 503, "unavailable").await;
    assert!(refused["message"].as_str().unwrap().contains("time-stamping authority"), "{refused}");
    // Its address and the client's error are the operator's, not the caller's.
    assert!(!refused.to_string().contains(&closed.to_string()), "{refused}");
    assert!(!refused.to_string().contains("error sending request"), "{refused}");
    let (_, case) = json(app.get(&token, "/v1/tenants/acme/evidence/cases/case-1").await).await;
    assert!(case["bundles"].as_array().unwrap().is_empty(), "{case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_expired_evidence_except_what_is_held() {
    let (app, _, root) = evidence_app(Backend::Sqlite, ServerConfig::default()).await;
    let root = root.unwrap();
    let admin = app.token(&["admin#tenant/acme"]).await;
    for case in ["old", "held"] {
        put_artifact(&app, &admin, case, "a.log", b"line one\n".to_vec()).await;
        assert_eq!(seal(&app, &admin, case).await.status(), 201);
    }
    let (_, case) = json(app.get(&admin, "/v1/tenants/acme/evidence/cases/old").await).await;
    let old = case["bundles"][0]["bundle_id"].as_str().unwrap().to_owned();
    let (_, case) = json(app.get(&admin, "/v1/tenants/acme/evidence/cases/held").await).await;
    let held = case["bundles"][0]["bundle_id"].as_str().unwrap().to_owned();
    let hold_url = app.url("/v1/tenants/acme/evidence/holds/held");
    app.client.post(&hold_url).bearer_auth(&admin).json(&json!({"reason": "matter 9"})).send().await.unwrap();

    // Forever by default; then a day.
    let later = custos_model::Timestamp::now().saturating_add_micros(2 * 86_400 * 1_000_000);
    assert_eq!(custos_server::evidence::retention_pass(&app.state, later).await, 0, "kept forever by default");
    let (_, retention) = json(app.get(&admin, "/v1/tenants/acme/evidence/retention").await).await;
    assert_eq!(retention, json!({"days": null}));
    let url = app.url("/v1/tenants/acme/evidence/retention");
    let refused = error(
        app.client.put(&url).bearer_auth(&admin).json(&json!({"days": 0})).send().await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(refused["field"], "days");
    let (status, _) =
        json(app.client.put(&url).bearer_auth(&admin).json(&json!({"days": 1})).send().await.unwrap()).await;
    assert_eq!(status, 200);

    // The old case's bundle and upload go, objects and all; the held case's stay.
    assert_eq!(custos_server::evidence::retention_pass(&app.state, later).await, 2);
    error(app.get(&admin, &format!("/v1/tenants/acme/evidence/{old}")).await, 404, "not_found").await;
    let old_dir = root.join("tenants/acme/evidence/old");
    let left: Vec<_> = walk(&old_dir);
    assert!(left.is_empty(), "no object of the old case is left: {left:?}");
    let (_, read) = json(app.get(&admin, &format!("/v1/tenants/acme/evidence/{held}")).await).await;
    assert_eq!(read["verification"]["verified"], true, "{read}");
    let timeline = log_kinds(&app, &admin, "timeline").await;
    let pruned = timeline.iter().find(|e| e["kind"] == "custos.evidence.pruned").expect("the pass is recorded");
    assert_eq!(pruned["details"]["bundles"], json!([old]));
    assert_eq!(pruned["details"]["uploads"], json!(["old/a.log"]));

    // Released, the held case goes at the next pass.
    app.client.delete(&hold_url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(custos_server::evidence::retention_pass(&app.state, later).await, 2);
    error(app.get(&admin, &format!("/v1/tenants/acme/evidence/{held}")).await, 404, "not_found").await;
}

/// Every file under `dir` (none when it is gone).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

async fn platforms_attest_their_own_artifacts(backend: Backend) {
    let (app, key, _) = evidence_app(backend, ServerConfig::default()).await;
    let token =
        app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme", "timeline:read#tenant/acme"]).await;
    let reader = app.token(&["evidence:read#tenant/acme"]).await;
    let digest = hex::encode(Sha256::digest(b"detections-2026.11.tar"));
    let url = app.url("/v1/tenants/acme/attestations");
    let attest = |token: &str, body: Value| app.client.post(&url).bearer_auth(token).json(&body).send();
    let body = json!({
        "subject_name": "detections-2026.11.tar", "subject_sha256": digest.to_uppercase(),
        "build_type": "https://platform.example/rule-pack/v2", "external_parameters": {"pack": "okta", "rules": 41},
        "invocation_id": "run-7", "started_on": "2026-11-23T10:00:00Z", "finished_on": "2026-11-23T10:02:00Z",
    });
    let (status, made) = json(attest(&token, body.clone()).await.unwrap()).await;
    assert_eq!(status, 201, "{made}");

    // It verifies with the public verifier against the artifact's digest, and says what was reported.
    let check = json!({"envelope": made["envelope"], "subject_sha256": digest});
    let (_, verdict) =
        json(app.client.post(app.url("/v1/attestations/verify")).json(&check).send().await.unwrap()).await;
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["signed_by"], json!([key.key_id()]));
    let predicate = &verdict["statement"]["predicate"];
    assert_eq!(predicate["buildDefinition"]["buildType"], "https://platform.example/rule-pack/v2");
    assert_eq!(predicate["buildDefinition"]["externalParameters"]["rules"], 41);
    assert!(predicate["buildDefinition"]["internalParameters"]["reported_by"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(predicate["runDetails"]["metadata"]["invocationId"], "run-7");
    let (_, listed) =
        json(app.get(&reader, &format!("/v1/tenants/acme/attestations?subject_sha256={digest}")).await).await;
    assert_eq!(listed[0]["attestation_id"], made["attestation_id"]);
    assert_eq!(listed[0]["subject_type"], "artifact");
    assert_eq!(listed[0]["verification"]["verified"], true);
    let timeline = log_kinds(&app, &token, "timeline").await;
    assert!(
        timeline
            .iter()
            .any(|e| e["kind"] == "custos.attestation.created" && e["resource_id"] == made["attestation_id"])
    );

    // Scope, and each bad field named.
    error(attest(&reader, body.clone()).await.unwrap(), 403, "forbidden").await;
    let big: String = "x".repeat(17 * 1024);
    for (field, value) in [
        ("subject_sha256", json!("abc")),
        ("subject_name", json!("")),
        ("build_type", json!("not a uri")),
        ("external_parameters", json!({"blob": big})),
        ("finished_on", json!("yesterday")),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let refused = error(attest(&token, bad).await.unwrap(), 422, "invalid_field").await;
        assert_eq!(refused["field"], field, "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_attest_their_own_artifacts_on_sqlite() {
    platforms_attest_their_own_artifacts(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_attest_their_own_artifacts_on_postgres() {
    platforms_attest_their_own_artifacts(Backend::Postgres).await;
}

/// The forgery of issue 21: tenant globex asks custos to sign a statement that reads as
/// custos's own provenance of acme's bundle. The API refuses custos's build types; a
/// statement of the shape the API signed before (custos's builder, the bundle build type,
/// acme in `externalParameters`), signed with the deployment's key, fails every verifier
/// naming what disagrees; globex's own report about acme's manifest verifies only as
/// globex's report.
async fn a_tenant_cannot_forge_another_tenants_provenance(backend: Backend) {
    let (app, key, _) = evidence_app(backend, ServerConfig::default()).await;
    let acme = app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme"]).await;
    let globex = app.token(&["evidence:create#tenant/globex", "evidence:read#tenant/globex"]).await;
    assert_eq!(put_artifact(&app, &acme, "IR-7", "notes.txt", b"seen at 10:02".to_vec()).await.status(), 201);
    let (status, sealed) = json(seal(&app, &acme, "IR-7").await).await;
    assert_eq!(status, 201, "{sealed}");
    let manifest_sha256 = sealed["manifest_sha256"].as_str().unwrap().to_owned();
    let attest_url = app.url("/v1/tenants/globex/attestations");
    let attest = |body: Value| app.client.post(&attest_url).bearer_auth(&globex).json(&body).send();

    // custos's build types are refused, in any spelling.
    for build_type in [
        "https://custos.dev/evidence-bundle/v1",
        "HTTPS://Custos.Dev/evidence-bundle/v1",
        "https://custos.dev./evidence-bundle/v1",
        "https://custos.dev/export/v1",
    ] {
        let body = json!({"subject_name": "evb/manifest.json", "subject_sha256": manifest_sha256,
            "build_type": build_type, "external_parameters": {"tenant_id": "acme", "case_id": "IR-7"}});
        let refused = error(attest(body).await.unwrap(), 422, "invalid_field").await;
        assert_eq!(refused["field"], "build_type", "{build_type}: {refused}");
    }

    // The verifier names what disagrees in statements of the old shape, signed by the key.
    let verify = |envelope: Value, tenant: Option<&str>| {
        let body = json!({"envelope": envelope, "subject_sha256": manifest_sha256, "tenant": tenant});
        app.client.post(app.url("/v1/attestations/verify")).json(&body).send()
    };
    let forged = |builder: &str, internal: Value| {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "evb/manifest.json", "digest": {"sha256": manifest_sha256}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {"buildType": "https://custos.dev/evidence-bundle/v1",
                    "externalParameters": {"tenant_id": "acme", "case_id": "IR-7"}, "internalParameters": internal},
                "runDetails": {"builder": {"id": builder}},
            },
        });
        let envelope = custos_ledger::dsse::Envelope::sign(
            custos_ledger::dsse::PAYLOAD_TYPE_IN_TOTO,
            &serde_json::to_vec(&statement).unwrap(),
            &[&key.dsse_signer()],
        );
        serde_json::to_value(envelope).unwrap()
    };
    let deployment = "https://custos.local/custos";
    for (builder, internal, check) in [
        (deployment, json!({"tenant_id": "globex", "reported_by": "tok_x"}), "build_type"),
        (deployment, json!({"tenant_id": "globex"}), "tenant"),
        ("https://custos.local/custos/platform", json!({"tenant_id": "globex"}), "builder"),
    ] {
        let (status, verdict) = json(verify(forged(builder, internal), None).await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!((verdict["verified"].as_bool(), verdict["check"].as_str()), (Some(false), Some(check)), "{verdict}");
    }

    // globex may report an artifact that happens to be acme's manifest: it verifies as
    // globex's report, never as acme's provenance.
    let body = json!({"subject_name": "evb/manifest.json", "subject_sha256": manifest_sha256,
        "external_parameters": {"tenant_id": "acme"}});
    let (status, made) = json(attest(body).await.unwrap()).await;
    assert_eq!(status, 201, "{made}");
    let (_, verdict) = json(verify(made["envelope"].clone(), None).await.unwrap()).await;
    assert_eq!(
        (verdict["verified"].as_bool(), verdict["origin"].as_str()),
        (Some(true), Some("platform")),
        "{verdict}"
    );
    assert_eq!(verdict["tenant_id"], "globex");
    assert!(
        verdict["statement"]["predicate"]["runDetails"]["builder"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/custos/platform")
    );
    let (_, verdict) = json(verify(made["envelope"].clone(), Some("acme")).await.unwrap()).await;
    assert_eq!((verdict["verified"].as_bool(), verdict["check"].as_str()), (Some(false), Some("tenant")), "{verdict}");

    // acme's own provenance: custos's, acme's, with the tenant signed in twice.
    let (_, listed) =
        json(app.get(&acme, &format!("/v1/tenants/acme/attestations?subject_sha256={manifest_sha256}")).await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "globex's report is not listed as acme's: {listed}");
    assert_eq!(listed[0]["verification"]["origin"], "custos", "{listed}");
    let (_, verdict) = json(verify(listed[0]["envelope"].clone(), Some("acme")).await.unwrap()).await;
    assert_eq!((verdict["verified"].as_bool(), verdict["origin"].as_str()), (Some(true), Some("custos")), "{verdict}");
    let definition = &verdict["statement"]["predicate"]["buildDefinition"];
    assert_eq!(
        (
            definition["externalParameters"]["tenant_id"].as_str(),
            definition["internalParameters"]["tenant_id"].as_str()
        ),
        (Some("acme"), Some("acme"))
    );
    let (_, verdict) = json(verify(listed[0]["envelope"].clone(), Some("globex")).await.unwrap()).await;
    assert_eq!(verdict["check"], "tenant", "{verdict}");
    error(verify(listed[0]["envelope"].clone(), Some("Not A Tenant")).await.unwrap(), 422, "invalid_field").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_forge_another_tenants_provenance_on_sqlite() {
    a_tenant_cannot_forge_another_tenants_provenance(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_forge_another_tenants_provenance_on_postgres() {
    a_tenant_cannot_forge_another_tenants_provenance(Backend::Postgres).await;
}

/// A case hold's placing and release, and an evidence retention change, commit with
/// their audit records: when the audit log cannot be written, each is a 503 and nothing
/// changed.
async fn evidence_actions_fail_whole_when_their_record_cannot_be_written(backend: Backend) {
    let (app, _, _) = evidence_app(backend, ServerConfig::default()).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    let hold_url = app.url("/v1/tenants/acme/evidence/holds/IR-2");
    let place = |url: String| app.client.post(url).bearer_auth(&admin).json(&json!({"reason": "matter 7"})).send();
    assert_eq!(place(app.url("/v1/tenants/acme/evidence/holds/IR-1")).await.unwrap().status(), 201);
    let retention_url = app.url("/v1/tenants/acme/evidence/retention");
    let set = |days: u32| app.client.put(&retention_url).bearer_auth(&admin).json(&json!({"days": days})).send();
    assert_eq!(set(30).await.unwrap().status(), 200);

    crate::ledger::refuse_appends(&app, "audit_records").await;
    error(place(hold_url.clone()).await.unwrap(), 503, "unavailable").await;
    let release = app.client.delete(app.url("/v1/tenants/acme/evidence/holds/IR-1")).bearer_auth(&admin).send();
    error(release.await.unwrap(), 503, "unavailable").await;
    error(set(7).await.unwrap(), 503, "unavailable").await;
    let (_, holds) = json(app.get(&admin, "/v1/tenants/acme/evidence/holds").await).await;
    let holds: Vec<(&str, bool)> =
        holds.as_array().unwrap().iter().map(|h| (h["id"].as_str().unwrap(), h["released_at"].is_null())).collect();
    assert_eq!(holds, [("IR-1", true)], "IR-2 not placed, IR-1 not released");
    let (_, retention) = json(app.get(&admin, "/v1/tenants/acme/evidence/retention").await).await;
    assert_eq!(retention["days"], 30, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_actions_fail_whole_when_their_record_cannot_be_written_on_sqlite() {
    evidence_actions_fail_whole_when_their_record_cannot_be_written(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_actions_fail_whole_when_their_record_cannot_be_written_on_postgres() {
    evidence_actions_fail_whole_when_their_record_cannot_be_written(Backend::Postgres).await;
}

/// A file of a downloaded bundle archive, by its path inside the bundle.
fn archived_file(archive: &[u8], path: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut entry = tar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_str().unwrap().split_once('/').unwrap().1 == path)
        .unwrap_or_else(|| panic!("{path} is not in the archive"));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
    bytes
}

async fn a_rule_run_seals_with_its_timeline_events_and_their_proofs(backend: Backend) {
    let (app, key, root) = evidence_app(backend, ServerConfig::default()).await;
    let writer = app.token(&["ingest:write#tenant/acme", "timeline:write#tenant/acme"]).await;
    let token = app
        .token(&[
            "evidence:create#tenant/acme",
            "evidence:read#tenant/acme",
            "evidence:export#tenant/acme",
            "timeline:read#tenant/acme",
        ])
        .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let context = json!({
        "trigger": {"event_id": "okta-991", "sha256": "ab".repeat(32)},
        "inputs": [{"name": "okta.system_log", "sha256": "cd".repeat(32)}],
        "engine": {"version": "3.1.0", "config_sha256": "ef".repeat(32)},
    });
    let run = json!({"id": "run-42", "rule_key": "mfa-fatigue", "rule_version": "7", "status": "failed",
        "error_message": "engine timeout", "started_at": "2026-11-23T10:00:00Z",
        "finished_at": "2026-11-23T10:00:02Z", "trace_id": trace, "context": context});
    let (status, body) =
        json(app.post(&writer, "/v1/tenants/acme/rule-runs", "application/json", run.to_string()).await).await;
    assert_eq!(status, 201, "{body}");
    let events = [
        json!({"event_id": "before", "ts": "2026-11-23T09:00:00Z", "kind": "platform.other"}),
        json!({"event_id": "triage", "ts": "2026-11-23T10:05:00Z", "kind": "platform.finding.triaged",
            "resource_type": "rule_run", "resource_id": "run-42"}),
        json!({"event_id": "page", "ts": "2026-11-23T10:01:00Z", "kind": "platform.oncall.paged", "trace_id": trace}),
        json!({"event_id": "after", "ts": "2026-11-23T11:00:00Z", "kind": "platform.other"}),
    ];
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    let response =
        app.post(&writer, "/v1/tenants/acme/timeline/events", "application/x-ndjson", lines.join("\n")).await;
    assert_eq!(response.status(), 200);

    let body = json!({"kind": "evaluation", "case_id": "case-9", "resource_id": "run-42"});
    let response =
        app.client.post(app.url("/v1/tenants/acme/evidence/snapshots")).bearer_auth(&token).json(&body).send().await;
    let (status, sealed) = json(response.unwrap()).await;
    assert_eq!(status, 201, "{sealed}");
    assert_eq!((sealed["kind"].as_str(), sealed["resource_id"].as_str()), (Some("evaluation"), Some("run-42")));
    let bundle = sealed["bundle_id"].as_str().unwrap().to_owned();

    // Read back: every proof re-verified.
    let (_, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
    assert_eq!(read["verification"]["verified"], true, "{read}");
    assert_eq!(read["verification"]["inclusion_proofs"], 3, "{read}");
    let paths: Vec<&str> =
        read["manifest"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 9, "{paths:?}");
    assert_eq!(&paths[..3], ["custody.json", "evaluation/rule_run.json", "proofs/timeline.checkpoint"]);

    // Offline: the archive verifies, proofs included, with the public key alone.
    let (_, archive) = download(&app, &token, &bundle).await;
    let keys = vec![TrustedKey { key: key.dsse_signer().public_key(), not_before: None, not_after: None }];
    let report = Verifier::new(keys).verify_tar_gz(archive.as_slice()).unwrap();
    assert_eq!((report.kind.as_str(), report.inclusion_proofs), ("evaluation", 3));

    // The run as reported, context and all.
    let preserved: Value = serde_json::from_slice(&archived_file(&archive, "evaluation/rule_run.json")).unwrap();
    assert_eq!(preserved["context"], context);
    assert_eq!((preserved["rule_key"].as_str(), preserved["rule_version"].as_str()), (Some("mfa-fatigue"), Some("7")));
    assert!(preserved["received_at"].is_string(), "{preserved}");

    // The related events, not the others: by the run's id, its trace, and custos's own
    // record of its failure; each file is the leaf's exact bytes.
    let custody: Value = serde_json::from_slice(&archived_file(&archive, "custody.json")).unwrap();
    assert_eq!(custody["steps"][0]["step"], "reported");
    let recorded: Vec<&str> =
        custody["steps"].as_array().unwrap()[1..].iter().map(|step| step["event_id"].as_str().unwrap()).collect();
    assert_eq!(recorded, ["custos-rule-run-failed-run-42", "triage", "page"], "in log order: {custody}");
    assert_eq!(custody["records_truncated"], false);
    for step in &custody["steps"].as_array().unwrap()[1..] {
        let event_id = step["event_id"].as_str().unwrap();
        let file = archived_file(&archive, step["file"].as_str().unwrap());
        let (_, served) = json(app.get(&token, &format!("/v1/tenants/acme/timeline/{event_id}")).await).await;
        let leaf: [u8; 32] = Sha256::digest([&[0u8][..], &file].concat()).into();
        assert_eq!(served["leaf_hash"], base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf));
    }
    // An implementation sharing no code with custos agrees (RFC 9162 in Python).
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice())).unpack(unpacked.path()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../custos-ledger/tests/python/verify_inclusion.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(unpacked.path().join(&bundle))
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 3, "{stdout}");

    // The checkpoint is one the log serves.
    let size = custody["checkpoint"]["size"].as_u64().unwrap();
    let response = app.get(&token, &format!("/v1/tenants/acme/timeline/checkpoint?size={size}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().as_bytes(), archived_file(&archive, "proofs/timeline.checkpoint"));

    // A proof in the store that no longer leads to the checkpoint is caught on read.
    if let Some(root) = root {
        let proof_path = root.join(format!("tenants/acme/evidence/case-9/{bundle}/{}", paths[3]));
        flip_byte(&proof_path, 0);
        let (_, read) = json(app.get(&token, &format!("/v1/tenants/acme/evidence/{bundle}")).await).await;
        assert_eq!(read["verification"]["verified"], false);
        assert_eq!(read["verification"]["check"], "file_digest", "the manifest catches it first: {read}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_run_seals_with_its_timeline_events_and_their_proofs_on_sqlite() {
    a_rule_run_seals_with_its_timeline_events_and_their_proofs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_run_seals_with_its_timeline_events_and_their_proofs_on_postgres_and_s3() {
    a_rule_run_seals_with_its_timeline_events_and_their_proofs(Backend::Postgres).await;
}

async fn a_job_capsule_seals_with_its_report_and_proofs(backend: Backend) {
    let (app, key, root) = evidence_app(backend, ServerConfig::default()).await;
    let platform = app.token(&["ingest:write#tenant/acme", "timeline:write#tenant/acme"]).await;
    let token =
        app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme", "evidence:export#tenant/acme"]).await;
    let path = "/v1/tenants/acme/components/nightly-export";
    let body = json!({"kind": "scheduled_job", "schedule": {"cron": "0 2 * * *"}});
    assert_eq!(app.put_json(&platform, path, &body).await.status(), 201);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let image = format!("ghcr.io/acme/runner@sha256:{}", "1f".repeat(32));
    let capsule = json!({
        "run_id": "2026-11-23", "started_at": "2026-11-23T02:00:00Z", "finished_at": "2026-11-23T02:04:10Z",
        "exit_code": 0, "runner_image": image, "trace_id": trace,
        "inputs": [{"name": "s3://acme-raw/2026-11-22/", "sha256": "AB".repeat(32)}],
        "outputs": [{"name": "exports/findings.parquet", "sha256": "cd".repeat(32), "size": 7340032}],
        "environment": {"EXPORT_BUCKET": "acme-exports", "DATABASE_PASSWORD": "hunter2-but-longer"},
        "transcript": "$ export-findings --since 2026-11-22\nexported 18211 rows\n",
    });
    let capsule_path = "/v1/tenants/acme/jobs/nightly-export/capsule";
    let (status, reported) =
        json(app.post(&platform, capsule_path, "application/json", capsule.to_string()).await).await;
    assert_eq!(status, 201, "{reported}");
    assert_eq!(reported["resource_id"], "nightly-export/2026-11-23");
    // Once per run.
    let again =
        error(app.post(&platform, capsule_path, "application/json", capsule.to_string()).await, 409, "conflict").await;
    assert_eq!(again["field"], "run_id");
    // Events of the run's trace join it in the bundle.
    let event = json!({"event_id": "export-done", "ts": "2026-11-23T02:04:11Z", "kind": "platform.export.finished", "trace_id": trace});
    let response = app.post(&platform, "/v1/tenants/acme/timeline/events", "application/json", event.to_string()).await;
    assert_eq!(response.status(), 201);

    let snapshot = |resource: &str| {
        let body = json!({"kind": "job", "case_id": "case-3", "resource_id": resource});
        app.client.post(app.url("/v1/tenants/acme/evidence/snapshots")).bearer_auth(&token).json(&body).send()
    };
    let (status, sealed) = json(snapshot("nightly-export/2026-11-23").await.unwrap()).await;
    assert_eq!(status, 201, "{sealed}");
    let bundle = sealed["bundle_id"].as_str().unwrap().to_owned();
    let (_, archive) = download(&app, &token, &bundle).await;
    let keys = vec![TrustedKey { key: key.dsse_signer().public_key(), not_before: None, not_after: None }];
    let report = Verifier::new(keys).verify_tar_gz(archive.as_slice()).unwrap();
    assert_eq!((report.kind.as_str(), report.inclusion_proofs), ("job", 2));

    // The environment's values are nowhere: not in the capsule, not in the bundle.
    let kept: Value = serde_json::from_slice(&archived_file(&archive, "job/capsule.json")).unwrap();
    assert!(!archive.windows(7).any(|w| w == b"hunter2"), "a value reached the bundle");
    let salt: [u8; 32] = hex::decode(kept["environment"]["salt"].as_str().unwrap()).unwrap().try_into().unwrap();
    let expected = custos_server::capsules::hash_variable(&salt, "DATABASE_PASSWORD", "hunter2-but-longer");
    assert_eq!(kept["environment"]["variables"]["DATABASE_PASSWORD"], expected.as_str());
    assert_eq!(kept["environment"]["sha256"], reported["environment_sha256"]);
    assert_eq!(kept["inputs"][0]["sha256"], "ab".repeat(32), "kept lowercase");
    assert_eq!(kept["runner_image"], image.as_str());
    assert_eq!(
        archived_file(&archive, "job/transcript.txt"),
        b"$ export-findings --since 2026-11-22\nexported 18211 rows\n"
    );
    let custody: Value = serde_json::from_slice(&archived_file(&archive, "custody.json")).unwrap();
    assert_eq!(custody["steps"][0]["sha256"], reported["capsule_sha256"]);
    let recorded: Vec<&str> =
        custody["steps"].as_array().unwrap()[1..].iter().map(|s| s["event_id"].as_str().unwrap()).collect();
    assert_eq!(recorded, [reported["event_id"].as_str().unwrap(), "export-done"]);

    // Bad resource ids name the field.
    for resource in ["nightly-export", "nightly-export/other-run", "../x"] {
        let refused = error(snapshot(resource).await.unwrap(), 422, "invalid_field").await;
        assert_eq!(refused["field"], "resource_id", "{resource}: {refused}");
    }
    // A capsule changed in the store after it was reported is not sealed.
    if let Some(root) = root {
        let file = root.join("tenants/acme/jobs/nightly-export/capsules/2026-11-23/capsule.json");
        flip_byte(&file, 10);
        let refused = error(snapshot("nightly-export/2026-11-23").await.unwrap(), 409, "conflict").await;
        assert!(refused["message"].as_str().unwrap().contains("no longer matches"), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_capsule_seals_with_its_report_and_proofs_on_sqlite() {
    a_job_capsule_seals_with_its_report_and_proofs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_capsule_seals_with_its_report_and_proofs_on_postgres_and_s3() {
    a_job_capsule_seals_with_its_report_and_proofs(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_ids_of_dots_are_422() {
    let (app, _, _) = evidence_app(Backend::Sqlite, ServerConfig::default()).await;
    let token =
        app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme", "evidence:hold#tenant/acme"]).await;
    // In a path, `.` and `..` are taken out by the URL itself; `...` reaches the server.
    let refused = error(put_artifact(&app, &token, "...", "a.txt", b"x".to_vec()).await, 422, "invalid_field").await;
    assert_eq!(refused["field"], "case", "{refused}");
    for case in ["...", "..", "."] {
        let body = json!({"kind": "case", "case_id": case});
        let response =
            app.client.post(app.url("/v1/tenants/acme/evidence/snapshots")).bearer_auth(&token).json(&body).send();
        let refused = error(response.await.unwrap(), 422, "invalid_field").await;
        assert_eq!(refused["field"], "case_id", "{case}: {refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_capsules_name_the_field_and_write_nothing() {
    let (app, _, root) = evidence_app(Backend::Sqlite, ServerConfig::default()).await;
    let platform = app.token(&["ingest:write#tenant/acme"]).await;
    let reader = app.token(&["obs:read#tenant/acme"]).await;
    let body = json!({"kind": "scheduled_job", "schedule": {"cron": "0 2 * * *"}});
    assert_eq!(app.put_json(&platform, "/v1/tenants/acme/components/job-a", &body).await.status(), 201);
    let post = |path: &'static str, body: Value| app.post(&platform, path, "application/json", body.to_string());
    let capsule_path = "/v1/tenants/acme/jobs/job-a/capsule";
    let digest = "ab".repeat(32);
    for (body, field) in [
        (json!({"run_id": "a b"}), "run_id"),
        (json!({"runner_image": "ubuntu:latest"}), "runner_image"),
        (json!({"inputs": [{"name": "x", "sha256": "zz"}]}), "inputs[0].sha256"),
        (json!({"outputs": [{"name": "", "sha256": digest}]}), "outputs[0].name"),
        (json!({"environment": {"1BAD": "x"}}), "environment.1BAD"),
        (json!({"environment": {"BIG": "x".repeat(64 * 1024 + 1)}}), "environment.BIG"),
        (json!({"trace_id": "XYZ"}), "trace_id"),
        (json!({"started_at": "2026-11-23T02:00:00Z", "finished_at": "2026-11-23T01:00:00Z"}), "finished_at"),
        (json!({"transcript": "x".repeat(1024 * 1024 + 1)}), "transcript"),
    ] {
        let refused = error(post(capsule_path, body).await, 422, "invalid_field").await;
        assert_eq!(refused["field"], field, "{refused}");
    }
    let refused = error(post(capsule_path, json!({"nope": 1})).await, 422, "invalid_field").await;
    assert_eq!(refused["field"], "nope");
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"name": format!("f{i}"), "sha256": digest})).collect();
    let refused = error(post(capsule_path, json!({"inputs": too_many})).await, 422, "invalid_field").await;
    assert_eq!(refused["field"], "inputs");
    error(post(capsule_path, json!({"transcript": "x".repeat(2 * 1024 * 1024 + 1)})).await, 413, "payload_too_large")
        .await;
    error(post("/v1/tenants/acme/jobs/no-such-job/capsule", json!({})).await, 404, "not_found").await;
    let other = json!({"kind": "connector", "provider": "okta"});
    assert_eq!(app.put_json(&platform, "/v1/tenants/acme/components/okta", &other).await.status(), 201);
    error(post("/v1/tenants/acme/jobs/okta/capsule", json!({})).await, 409, "conflict").await;
    error(app.post(&reader, capsule_path, "application/json", "{}").await, 403, "forbidden").await;
    // Nothing was written by any refusal.
    assert!(!root.unwrap().join("tenants/acme/jobs").exists());
}

/// With Object Lock configured, a retention S3 refuses (here: a bucket of moto's S3
/// emulator created without Object Lock) fails the upload with a 503, and the case
/// records no artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_object_lock_fails_the_upload_and_records_nothing() {
    let prefix = format!("evidence-{}", uuid::Uuid::new_v4().simple());
    let app = locked_app("CUSTOS_TEST_S3_NOLOCK_BUCKET", &prefix, "compliance:1d").await;
    let token = app.token(&["evidence:create#tenant/acme", "evidence:read#tenant/acme"]).await;

    let response = put_artifact(&app, &token, "IR-7", "capture.pcap", b"packets".to_vec()).await;
    let body = error(response, 503, "unavailable").await;
    assert!(body["message"].as_str().unwrap().contains("object store"), "{body}");
    let (_, case) = json(app.get(&token, "/v1/tenants/acme/evidence/cases/IR-7").await).await;
    assert_eq!(case["artifacts"], json!([]), "nothing recorded: {case}");

    // Every object store request is timed, custos's own Object Lock requests among them.
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |labels: &str| {
        let series = format!("custos_object_store_operation_duration_seconds_count{{{labels}}} ");
        metrics.lines().find_map(|line| line.strip_prefix(series.as_str())).map(|v| v.parse::<f64>().unwrap())
    };
    assert!(
        count(r#"backend="s3",operation="head",outcome="not_found""#) >= Some(1.0),
        "the path was checked: {metrics}"
    );
    assert!(count(r#"backend="s3",operation="put_multipart",outcome="ok""#) >= Some(1.0), "{metrics}");
    assert_eq!(count(r#"backend="s3",operation="put_retention",outcome="error""#), Some(1.0), "{metrics}");
}

/// An app whose objects are in moto's S3, in the bucket `bucket_variable` names, under
/// `prefix`, with Object Lock `lock` configured.
async fn locked_app(bucket_variable: &str, prefix: &str, lock: &str) -> TestApp {
    let endpoint = std::env::var("CUSTOS_TEST_S3_LOCK_ENDPOINT").expect("scripts/test.sh starts moto's S3");
    let bucket = std::env::var(bucket_variable).unwrap();
    let objects = custos_store::objects::open_s3(&format!("s3://{bucket}/{prefix}"), Some(&endpoint))
        .unwrap()
        .with_object_lock(lock.parse().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("signing.key");
    custos_server::keys::SigningKey::generate().create(&path).unwrap();
    let config = ServerConfig { signing_key_file: Some(path.clone()), ..ServerConfig::default() };
    let app =
        TestApp::with_objects(Backend::Sqlite, config, Some((objects, std::time::Duration::from_secs(3600)))).await;
    custos_server::keys::load_or_create(&*app.store, &path).await.unwrap();
    app
}

/// Waits for the `n`th `custos.evidence.s3_legal_holds.synced` record (holds are
/// mirrored into S3 on a task of their own) and returns its details.
async fn synced(app: &TestApp, token: &str, n: usize) -> Value {
    for _ in 0..200 {
        let audit = log_kinds(app, token, "audit").await;
        let synced: Vec<&Value> =
            audit.iter().filter(|r| r["action"] == "custos.evidence.s3_legal_holds.synced").collect();
        if synced.len() >= n {
            return synced[synced.len() - n]["details"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no sync record number {n}");
}

/// With Object Lock configured, custos's holds reach S3: a case hold puts the case's
/// objects under legal hold, objects written into a held case are held as they land, a
/// tenant-wide hold holds every case, and releasing turns off only what no other hold
/// covers. Each pass is recorded in the audit log with what it set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_become_s3_legal_holds_under_object_lock() {
    let endpoint = std::env::var("CUSTOS_TEST_S3_LOCK_ENDPOINT").unwrap();
    let bucket = std::env::var("CUSTOS_TEST_S3_LOCK_BUCKET").unwrap();
    let prefix = format!("holds-{}", uuid::Uuid::new_v4().simple());
    let app = locked_app("CUSTOS_TEST_S3_LOCK_BUCKET", &prefix, "governance:1h").await;
    let token = app
        .token(&[
            "evidence:create#tenant/acme",
            "evidence:hold#tenant/acme",
            "admin#tenant/acme",
            "audit:read#tenant/acme",
        ])
        .await;
    let holds = || custos_store::testing::s3_head_field(&endpoint, &bucket, &prefix, "ObjectLockLegalHoldStatus");
    let of_case = |holds: &std::collections::BTreeMap<String, Value>, case: &str| -> Vec<Value> {
        holds.iter().filter(|(key, _)| key.contains(&format!("/evidence/{case}/"))).map(|(_, v)| v.clone()).collect()
    };
    let post = |path: &str, body: Value| app.client.post(app.url(path)).bearer_auth(&token).json(&body).send();
    let delete = |path: &str| app.client.delete(app.url(path)).bearer_auth(&token).send();

    assert_eq!(put_artifact(&app, &token, "IR-1", "a.pcap", b"a".to_vec()).await.status(), 201);
    assert_eq!(of_case(&holds(), "IR-1"), [Value::Null], "no hold yet");

    let response = post("/v1/tenants/acme/evidence/holds/IR-1", json!({"reason": "matter 7"})).await.unwrap();
    assert_eq!(response.status(), 201);
    let details = synced(&app, &token, 1).await;
    assert_eq!(
        details,
        json!({"cause": "custos.evidence.hold.placed", "case_id": "IR-1", "objects_on": 1, "objects_off": 0})
    );
    assert_eq!(of_case(&holds(), "IR-1"), ["ON"], "the case hold reaches S3");

    // Written into a held case: held as it lands, bundle files included.
    assert_eq!(put_artifact(&app, &token, "IR-1", "b.pcap", b"b".to_vec()).await.status(), 201);
    assert_eq!(seal(&app, &token, "IR-1").await.status(), 201);
    let now = holds();
    assert_eq!(of_case(&now, "IR-1").len(), 2 + 6, "two uploads, six bundle files: {now:?}");
    assert!(of_case(&now, "IR-1").iter().all(|v| v == "ON"), "{now:?}");

    // A tenant-wide hold holds every case; releasing the case's own hold then changes nothing.
    assert_eq!(put_artifact(&app, &token, "IR-2", "c.pcap", b"c".to_vec()).await.status(), 201);
    assert_eq!(of_case(&holds(), "IR-2"), [Value::Null]);
    let response = post("/v1/tenants/acme/holds", json!({"id": "litigation", "reason": "all of it"})).await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(synced(&app, &token, 2).await["objects_on"], 9);
    assert_eq!(of_case(&holds(), "IR-2"), ["ON"]);
    assert_eq!(delete("/v1/tenants/acme/evidence/holds/IR-1").await.unwrap().status(), 200);
    assert_eq!(synced(&app, &token, 3).await["objects_on"], 8, "the tenant hold still covers IR-1");
    assert!(holds().values().all(|v| v == "ON"), "{:?}", holds());

    // Released everywhere: nothing is held in S3 any more.
    assert_eq!(delete("/v1/tenants/acme/holds/litigation").await.unwrap().status(), 200);
    assert_eq!(
        synced(&app, &token, 4).await,
        json!({"cause": "custos.hold.released", "objects_on": 0, "objects_off": 9})
    );
    assert!(holds().values().all(|v| v == "OFF"), "{:?}", holds());
}
