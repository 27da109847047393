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
