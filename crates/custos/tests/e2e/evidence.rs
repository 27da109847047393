//! `custos forensic verify`: evidence bundles verified offline by the binary, with the
//! exit codes scripts rely on (0 verified, 1 not, 2 usage or unreadable input).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::common::Store;

/// `test-data/bundles/v1/independent-python.tar.gz`, made without custos.
fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/bundles/v1/independent-python.tar.gz")
}

/// The fixture's signing key (seed: 32 bytes of 0x07).
fn fixture_key() -> custos_ledger::dsse::DsseKey {
    custos_ledger::dsse::DsseSigner::new(&[7; 32]).public_key()
}

fn verify(store: &Store, args: &[&str]) -> (i32, String, String) {
    let output = store.command().args(["forensic", "verify"]).args(args).output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn keyring(dir: &Path, not_before: &str, not_after: Option<&str>) -> std::path::PathBuf {
    let key = fixture_key();
    let path = dir.join(format!("keys-{not_before}.json"));
    let json = serde_json::json!({"deployment": "custos.fuzz", "keys": [{
        "key_id": key.key_id(), "algorithm": "ed25519", "public_key": STANDARD.encode(key.to_bytes()),
        "created_at": not_before, "not_before": not_before, "not_after": not_after,
    }]});
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn bundles_verify_offline_with_a_key_or_a_keyring() {
    let store = Store::sqlite();
    let bundle = fixture();
    let key = STANDARD.encode(fixture_key().to_bytes());
    let (code, stdout, stderr) = verify(&store, &[bundle.to_str().unwrap(), "--key", &key]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("verified bundle evb-seed"), "{stdout}");
    assert!(stdout.contains(&format!("signed by    {} at 2026-11-23T10:00:00", fixture_key().key_id())), "{stdout}");

    // A keyring counts the key only inside its window.
    let inside = keyring(store.dir.path(), "2026-11-01T00:00:00Z", None);
    let (code, stdout, _) =
        verify(&store, &[bundle.to_str().unwrap(), "--keyring", inside.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report["verified"].as_bool(), report["files"].as_u64()), (Some(true), Some(3)));
    let retired = keyring(store.dir.path(), "2026-10-01T00:00:00Z", Some("2026-11-01T00:00:00Z"));
    let (code, stdout, stderr) =
        verify(&store, &[bundle.to_str().unwrap(), "--keyring", retired.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{stderr}");
    let refusal: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(refusal["check"], "key_not_valid", "{refusal}");

    // Someone else's key: the signature is not one we trust.
    let stranger = STANDARD.encode(custos_ledger::dsse::DsseSigner::new(&[8; 32]).public_key().to_bytes());
    let (code, _, stderr) = verify(&store, &[bundle.to_str().unwrap(), "--key", &stranger]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no signature by a known key"), "{stderr}");
}

#[test]
fn an_altered_file_is_named() {
    let store = Store::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let archive = std::fs::File::open(fixture()).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(archive)).unpack(dir.path()).unwrap();
    let bundle = dir.path().join("evb-seed");
    let key = STANDARD.encode(fixture_key().to_bytes());
    assert_eq!(verify(&store, &[bundle.to_str().unwrap(), "--key", &key]).0, 0);
    std::fs::write(bundle.join("artifacts/notes.txt"), b"analyst notez\n").unwrap();
    let (code, stdout, stderr) = verify(&store, &[bundle.to_str().unwrap(), "--key", &key, "--json"]);
    assert_eq!(code, 1, "{stderr}");
    let refusal: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(refusal["check"], "file_digest");
    assert!(refusal["error"].as_str().unwrap().starts_with("artifacts/notes.txt: SHA-256 is "), "{refusal}");
    assert!(stderr.contains("the bundle does not verify: artifacts/notes.txt: SHA-256 is"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let store = Store::sqlite();
    let key = STANDARD.encode(fixture_key().to_bytes());
    let (code, _, stderr) = verify(&store, &["/no/such/bundle.tar.gz", "--key", &key]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read the bundle /no/such/bundle.tar.gz"), "{stderr}");
    let (code, _, stderr) = verify(&store, &[fixture().to_str().unwrap(), "--key", "AAAA"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--key \"AAAA\": expected an Ed25519 public key"), "{stderr}");
    // Neither --key nor --keyring: clap's usage error.
    assert_eq!(verify(&store, &[fixture().to_str().unwrap()]).0, 2);
}

/// The locker from the command line against a running server: upload with progress,
/// seal and download, verify offline, and show the provenance both ways.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_uploads_seals_downloads_and_shows_provenance() {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    let server = crate::common::Server::start(&store);
    let token = crate::common::create_token(
        &store,
        &["--tenant", "acme", "--scope", "evidence:create", "--scope", "evidence:read", "--scope", "evidence:export"],
    );
    let dir = store.dir.path();
    let cli = |args: &[&str]| {
        let output = store
            .command()
            .args(["forensic"])
            .args(args)
            .args(["--server", &server.base, "--token", &token])
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let artifact = dir.join("capture.pcap");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&artifact, &bytes).unwrap();

    let (code, stdout, stderr) =
        cli(&["artifact", "upload", "--tenant", "acme", "--case", "IR-1", artifact.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let uploaded: Value = serde_json::from_str(&stdout).unwrap();
    use sha2::Digest as _;
    assert_eq!(uploaded["artifact"]["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(uploaded["trace_id"].as_str().unwrap().len(), 32);

    let archive = dir.join("bundle.tar.gz");
    let (code, stdout, stderr) = cli(&[
        "snapshot",
        "create",
        "--tenant",
        "acme",
        "--case",
        "IR-1",
        "--scope",
        "case",
        "--output",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("sealed bundle evb_"), "{stdout}");
    assert!(stdout.contains("trace_id     "), "{stdout}");
    let saved = std::fs::read(&archive).unwrap();
    assert!(stdout.contains(&format!("sha256 {}", hex::encode(sha2::Sha256::digest(&saved)))), "{stdout}");

    // Offline, with the keys saved from the server.
    let keys = reqwest::get(format!("{}/v1/keys", server.base)).await.unwrap().text().await.unwrap();
    let keyring = dir.join("keys.json");
    std::fs::write(&keyring, &keys).unwrap();
    let (code, stdout, _) = verify(&store, &[archive.to_str().unwrap(), "--keyring", keyring.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");

    // The bundle's provenance, looked up on the server by its manifest's digest.
    let (code, stdout, stderr) = cli(&["attest", "show", archive.to_str().unwrap(), "--tenant", "acme"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("\nverified att_"), "{stdout}");
    assert!(stdout.contains("https://slsa.dev/provenance/v1"), "{stdout}");
    assert!(stderr.contains("keys taken from the server"), "{stderr}");
    // The artifact alone has no attestation of its own.
    let (code, _, stderr) = cli(&["attest", "show", artifact.to_str().unwrap(), "--tenant", "acme"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no attestation found"), "{stderr}");

    // Offline: the envelope saved, the keys pinned; a statement about another file fails.
    let (_, json_out, _) = cli(&["attest", "show", archive.to_str().unwrap(), "--tenant", "acme", "--json"]);
    let shown: Value = serde_json::from_str(&json_out).unwrap();
    let bundle_id = shown["attestations"][0]["statement"]["predicate"]["runDetails"]["metadata"]["invocationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/v1/tenants/acme/attestations?subject_id={bundle_id}", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let envelope = dir.join("bundle.intoto.json");
    std::fs::write(&envelope, listed[0]["envelope"].to_string()).unwrap();
    let offline = |target: &str| {
        let output = store
            .command()
            .args(["forensic", "attest", "show", target, "--envelope"])
            .arg(&envelope)
            .args(["--keyring", keyring.to_str().unwrap()])
            .output()
            .unwrap();
        (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
    };
    let (code, stdout) = offline(archive.to_str().unwrap());
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout) = offline(artifact.to_str().unwrap());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("NOT verified"), "{stdout}");

    // A rule run's evaluation: sealed with custos's record of its failure, whose
    // inclusion proof verifies offline.
    let ingest = crate::common::create_token(&store, &["--tenant", "acme", "--scope", "ingest:write"]);
    let run = serde_json::json!({"id": "run-9", "rule_key": "impossible-travel", "status": "failed",
        "error_message": "geoip lookup timed out", "started_at": "2026-11-23T10:00:00Z",
        "context": {"engine": {"version": "2.4.1"}}});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tenants/acme/rule-runs", server.base))
        .bearer_auth(&ingest)
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let evaluation = dir.join("evaluation.tar.gz");
    let (code, stdout, stderr) = cli(&[
        "snapshot",
        "create",
        "--tenant",
        "acme",
        "--case",
        "IR-1",
        "--scope",
        "eval",
        "--id",
        "run-9",
        "--output",
        evaluation.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("kind         evaluation run-9"), "{stdout}");
    let (code, stdout, _) = verify(&store, &[evaluation.to_str().unwrap(), "--keyring", keyring.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("proofs       1 log record(s)"), "{stdout}");

    // What this build does not seal yet, it says.
    let (code, _, stderr) =
        cli(&["snapshot", "create", "--tenant", "acme", "--case", "IR-1", "--scope", "export", "--id", "x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not sealed by this build yet"), "{stderr}");
    server.stop();
}

/// Every offline verifier of a bundle's provenance (`forensic verify --attestation`,
/// `forensic attest show --envelope`, and the documented securesystemslib script) takes
/// custos's own provenance of the bundle, and refuses another tenant's report about the
/// same manifest, naming the field that disagrees.
#[tokio::test(flavor = "multi_thread")]
async fn offline_verifiers_refuse_another_tenants_statement_about_a_bundle() {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    store.ok(&["tenants", "create", "evil"]);
    let server = crate::common::Server::start(&store);
    let acme = crate::common::create_token(
        &store,
        &["--tenant", "acme", "--scope", "evidence:create", "--scope", "evidence:read", "--scope", "evidence:export"],
    );
    let evil = crate::common::create_token(&store, &["--tenant", "evil", "--scope", "evidence:create"]);
    let dir = store.dir.path();
    let client = reqwest::Client::new();
    let response = client
        .put(format!("{}/v1/tenants/acme/evidence/cases/IR-7/artifacts/notes.txt", server.base))
        .bearer_auth(&acme)
        .body("seen at 10:02")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let sealed: Value = client
        .post(format!("{}/v1/tenants/acme/evidence/snapshots", server.base))
        .bearer_auth(&acme)
        .json(&serde_json::json!({"kind": "case", "case_id": "IR-7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bundle_id = sealed["bundle_id"].as_str().unwrap();
    let archive = dir.join("bundle.tar.gz");
    let download = client
        .get(format!("{}/v1/tenants/acme/evidence/{bundle_id}/download", server.base))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    std::fs::write(&archive, download.bytes().await.unwrap()).unwrap();
    let keyring = dir.join("keys.json");
    std::fs::write(&keyring, reqwest::get(format!("{}/v1/keys", server.base)).await.unwrap().text().await.unwrap())
        .unwrap();
    let listed: Value = client
        .get(format!("{}/v1/tenants/acme/attestations?subject_id={bundle_id}", server.base))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own = dir.join("own.intoto.json");
    std::fs::write(&own, listed[0]["envelope"].to_string()).unwrap();
    // evil's report about acme's manifest, claiming acme in the parameters it chooses.
    let made: Value = client
        .post(format!("{}/v1/tenants/evil/attestations", server.base))
        .bearer_auth(&evil)
        .json(&serde_json::json!({"subject_name": format!("{bundle_id}/manifest.json"),
            "subject_sha256": sealed["manifest_sha256"], "external_parameters": {"tenant_id": "acme"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let forged = dir.join("evil.intoto.json");
    std::fs::write(&forged, made["envelope"].to_string()).unwrap();
    server.stop();

    let with = |attestation: &Path| {
        verify(
            &store,
            &[
                archive.to_str().unwrap(),
                "--keyring",
                keyring.to_str().unwrap(),
                "--attestation",
                attestation.to_str().unwrap(),
            ],
        )
    };
    let (code, stdout, stderr) = with(&own);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("provenance   custos's own, tenant acme, built by https://"), "{stdout}");
    let (code, _, stderr) = with(&forged);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("its attestation does not (tenant)"), "{stderr}");

    let show = |envelope: &Path| {
        let output = store
            .command()
            .args(["forensic", "attest", "show", archive.to_str().unwrap(), "--envelope"])
            .arg(envelope)
            .args(["--keyring", keyring.to_str().unwrap()])
            .output()
            .unwrap();
        (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
    };
    let (code, stdout) = show(&own);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("custos's own provenance, tenant acme"), "{stdout}");
    let (code, stdout) = show(&forged);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("NOT verified the envelope: a platform's report about the bundle"), "{stdout}");
    // Named by id, a bundle is not vouched for by the provenance of another one.
    let output = store
        .command()
        .args(["forensic", "attest", "show", "evb_another", "--envelope"])
        .arg(&own)
        .args(["--keyring", keyring.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("is the provenance of bundle"), "{stdout}");

    // The script docs/forensics/provenance-attestation.md shows, run as printed there.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/forensics/verify_bundle_attestation.py");
    let page = std::fs::read_to_string(script.with_file_name("provenance-attestation.md")).unwrap();
    assert!(page.contains(&std::fs::read_to_string(&script).unwrap()), "the page shows the script as it is");
    let unpacked = dir.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status = std::process::Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&unpacked).status().unwrap();
    assert!(status.success());
    let manifest = unpacked.join(bundle_id).join("manifest.json");
    let python = |envelope: &Path| {
        let output = std::process::Command::new("python3")
            .arg(&script)
            .arg(envelope)
            .arg(&keyring)
            .arg(&manifest)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    };
    let (ok, out) = python(&own);
    assert!(ok, "{out}");
    assert!(out.contains("tenant acme"), "{out}");
    let (ok, out) = python(&forged);
    assert!(!ok, "{out}");
    assert!(out.contains("NOT verified: build_type"), "{out}");
}

/// `serve --tsa-url --tsa-cert` stamps bundles with a real TSA; `forensic verify
/// --tsa-cert` checks the stamp offline, and without it says it was not checked.
#[tokio::test(flavor = "multi_thread")]
async fn timestamps_from_a_real_tsa_verify_offline() {
    let store = Store::sqlite();
    let tsa_dir = tempfile::tempdir().unwrap();
    let config = include_str!("../../../../test-data/tsa/openssl-tsa.cnf");
    let tsa = custos_server::testing::start_tsa(tsa_dir.path(), config).await;
    // A TSA certificate that cannot sign time stamps is refused at start-up.
    let (ok, _, stderr) = store.run(&["serve", "--tsa-url", &tsa.url, "--tsa-cert", "/nonexistent.pem"]);
    assert!(!ok && stderr.contains("TSA certificate"), "{stderr}");

    store.ok(&["tenants", "create", "acme"]);
    let cert = tsa.certificate.to_str().unwrap();
    let server = crate::common::Server::start_with(&store, &["--tsa-url", &tsa.url, "--tsa-cert", cert]);
    let token = crate::common::create_token(
        &store,
        &["--tenant", "acme", "--scope", "evidence:create", "--scope", "evidence:export"],
    );
    let archive = crate::common::upload_and_seal(&store, &server, &token, "IR-2");

    let keys = reqwest::get(format!("{}/v1/keys", server.base)).await.unwrap().text().await.unwrap();
    let keyring = store.dir.path().join("keys.json");
    std::fs::write(&keyring, &keys).unwrap();
    let (code, stdout, stderr) =
        verify(&store, &[archive.to_str().unwrap(), "--keyring", keyring.to_str().unwrap(), "--tsa-cert", cert]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("by CN=custos test TSA (RFC 3161"), "{stdout}");
    let (code, stdout, _) = verify(&store, &[archive.to_str().unwrap(), "--keyring", keyring.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("present, not checked"), "{stdout}");
    // Another TSA's certificate: the stamp does not verify, and the check is named.
    let other_dir = tempfile::tempdir().unwrap();
    let other = custos_server::testing::start_tsa(other_dir.path(), config).await;
    let (code, stdout, _) = verify(
        &store,
        &[
            archive.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
            "--tsa-cert",
            other.certificate.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1);
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdict["check"], "timestamp", "{verdict}");
    server.stop();
}

/// `serve --evidence-object-lock` on S3 (moto's emulator, the only server here with
/// Object Lock): every object of an uploaded and sealed case is locked, as boto3 reads
/// it; a bucket without Object Lock, or a local directory, keeps the server from starting.
#[tokio::test(flavor = "multi_thread")]
async fn object_lock_covers_every_object_of_a_sealed_bundle() {
    let endpoint = std::env::var("CUSTOS_TEST_S3_LOCK_ENDPOINT")
        .expect("CUSTOS_TEST_S3_LOCK_ENDPOINT is unset: run the tests with scripts/test.sh, which starts moto's S3");
    let bucket = std::env::var("CUSTOS_TEST_S3_LOCK_BUCKET").unwrap();
    let nolock = std::env::var("CUSTOS_TEST_S3_NOLOCK_BUCKET").unwrap();
    let prefix = format!("e2e-{}", uuid::Uuid::new_v4());
    let s3_env = |bucket: &str| {
        vec![
            ("CUSTOS_OBJECT_STORE_URL".to_owned(), format!("s3://{bucket}/{prefix}")),
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "custos-test-key".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "custos-test-secret".to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ]
    };
    let store = Store::sqlite();
    let lock = ["serve", "--listen", "127.0.0.1:0", "--evidence-object-lock", "compliance:2d"];

    let output = store.command().args(lock).envs(s3_env(&nolock)).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("no Object Lock configuration"), "{stderr}");
    let (ok, _, stderr) = store.run(&lock);
    assert!(!ok && stderr.contains("needs S3 objects"), "a local directory: {stderr}");
    let (ok, _, stderr) = store.run(&["serve", "--evidence-object-lock", "legal:2d"]);
    assert!(!ok && stderr.contains("compliance or governance"), "{stderr}");

    store.ok(&["tenants", "create", "acme"]);
    let env = s3_env(&bucket);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = crate::common::Server::spawn(&store, &lock, &env);
    let token = crate::common::create_token(
        &store,
        &["--tenant", "acme", "--scope", "evidence:create", "--scope", "evidence:export"],
    );
    let archive = crate::common::upload_and_seal(&store, &server, &token, "IR-9");
    let keys = reqwest::get(format!("{}/v1/keys", server.base)).await.unwrap().text().await.unwrap();
    let keyring = store.dir.path().join("keys.json");
    std::fs::write(&keyring, &keys).unwrap();
    let (code, _, stderr) = verify(&store, &[archive.to_str().unwrap(), "--keyring", keyring.to_str().unwrap()]);
    assert_eq!(code, 0, "a locked bundle downloads and verifies offline like any other: {stderr}");
    // The bundle's read reports the retention S3 holds for it.
    let reader = crate::common::create_token(&store, &["--tenant", "acme", "--scope", "evidence:read"]);
    let client = reqwest::Client::new();
    let get = |path: String| client.get(format!("{}{path}", server.base)).bearer_auth(&reader).send();
    let case: Value = get("/v1/tenants/acme/evidence/cases/IR-9".into()).await.unwrap().json().await.unwrap();
    let bundle = case["bundles"][0]["bundle_id"].as_str().unwrap_or_else(|| panic!("{case}"));
    let read: Value = get(format!("/v1/tenants/acme/evidence/{bundle}")).await.unwrap().json().await.unwrap();
    assert_eq!(read["verification"]["verified"], true, "{read}");
    assert_eq!(read["storage"]["backend"], "s3", "{read}");
    assert_eq!(read["storage"]["object_lock"]["mode"], "compliance", "{read}");
    let until = read["storage"]["object_lock"]["retain_until"].as_str().unwrap();
    let until = time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339).unwrap();
    let hours = (until - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((47..=48).contains(&hours), "compliance:2d is two days from the seal: {read}");
    let (ok, log) = server.stop();
    assert!(ok, "{log:?}");

    let modes = custos_store::testing::s3_head_field(&endpoint, &bucket, &prefix, "ObjectLockMode");
    for file in ["manifest.json", "manifest.dsse.json", "root.merkle", "custody.json", "artifacts/notes.txt"] {
        assert!(modes.keys().any(|k| k.ends_with(&format!("/{file}"))), "{file} was written: {modes:?}");
    }
    assert!(modes.keys().any(|k| k.contains("/uploads/")), "the upload was written: {modes:?}");
    for (key, mode) in &modes {
        assert_eq!(mode, "COMPLIANCE", "{key} is locked: {modes:?}");
    }
}
