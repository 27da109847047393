//! Independent implementations read what custos signs:
//!
//! - Go's `golang.org/x/mod/sumdb/note` and `tlog` verify custos's checkpoints and
//!   proofs, and refuse altered ones. Needs `go` with the `golang.org/x/mod` sources in
//!   GOPATH (Debian's `golang-go` and `golang-golang-x-mod-dev`).
//! - PyPI's `securesystemslib` verifies custos's DSSE envelopes and `in-toto-attestation`
//!   validates its in-toto statements; custos verifies an envelope securesystemslib
//!   signed. Needs `python3` with both (`scripts/requirements-test.txt`).
//!
//! `scripts/test.sh` installs all of them; these tests fail, never skip, without them.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custos_ledger::dsse::{DsseKey, DsseSigner, Envelope, PAYLOAD_TYPE_IN_TOTO};
use custos_ledger::intoto::{
    BuildDefinition, Builder, Provenance, ResourceDescriptor, RunDetails, SLSA_PROVENANCE, Statement, verify_provenance,
};
use custos_ledger::merkle::{MemoryLog, leaf_hash};
use custos_ledger::note::{Checkpoint, NoteSigner};

const GOPATH: &str = "/usr/share/gocode";
const ORIGIN: &str = "custos.test/tenants/acme/timeline";

fn b64_all(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

#[test]
fn go_note_and_tlog_verify_custos_checkpoints_and_proofs() {
    assert!(
        Path::new(GOPATH).join("src/golang.org/x/mod/sumdb/tlog").is_dir(),
        "Go's golang.org/x/mod is missing: apt-get install golang-go golang-golang-x-mod-dev (scripts/test.sh does)"
    );
    let records: Vec<Vec<u8>> =
        (0..1000).map(|i| format!("{{\"event_id\":\"e{i}\",\"n\":{i}}}").into_bytes()).collect();
    let mut log = MemoryLog::new();
    for record in &records {
        log.push(leaf_hash(record));
    }
    let signer = NoteSigner::new(ORIGIN, &[9; 32]).unwrap();
    let sizes = [1u64, 2, 7, 8, 100, 513, 1000];
    let mut checkpoints: Vec<String> = sizes
        .iter()
        .map(|&size| {
            Checkpoint { origin: ORIGIN.into(), size, root: log.root(size).unwrap(), extensions: vec![] }
                .sign(&signer)
                .unwrap()
        })
        .collect();
    // A rotation's overlap: signed by a new key Go was not given, then by the old one.
    let stranger = NoteSigner::new(ORIGIN, &[10; 32]).unwrap();
    checkpoints.push(
        Checkpoint { origin: ORIGIN.into(), size: 8, root: log.root(8).unwrap(), extensions: vec![] }
            .sign_all(&[&stranger, &signer])
            .unwrap(),
    );
    // Refused: a root that is not the log's, and a key Go was not given.
    checkpoints.push(
        Checkpoint { origin: ORIGIN.into(), size: 999, root: log.root(998).unwrap(), extensions: vec![] }
            .sign(&signer)
            .unwrap(),
    );
    checkpoints.push(
        Checkpoint { origin: ORIGIN.into(), size: 5, root: log.root(5).unwrap(), extensions: vec![] }
            .sign(&stranger)
            .unwrap(),
    );

    let mut inclusion = Vec::new();
    for (index, size) in
        [(0u64, 1u64), (0, 8), (5, 8), (6, 7), (99, 100), (256, 513), (512, 513), (0, 1000), (999, 1000)]
    {
        let proof = log.inclusion_proof(index, size).unwrap();
        inclusion.push(serde_json::json!({"index": index, "size": size, "proof": b64_all(&proof)}));
    }
    let mut tampered = log.inclusion_proof(400, 1000).unwrap();
    tampered[3][0] ^= 1;
    inclusion.push(serde_json::json!({"index": 400, "size": 1000, "proof": b64_all(&tampered)}));

    let mut consistency = Vec::new();
    for (old, new) in [(1u64, 2u64), (1, 8), (7, 8), (2, 7), (8, 100), (100, 513), (513, 1000), (7, 1000)] {
        let proof = log.consistency_proof(old, new).unwrap();
        consistency.push(serde_json::json!({"old": old, "new": new, "proof": b64_all(&proof)}));
    }
    let mut short = log.consistency_proof(100, 1000).unwrap();
    short.pop();
    consistency.push(serde_json::json!({"old": 100, "new": 1000, "proof": b64_all(&short)}));

    let cases = serde_json::json!({
        "verifier_key": signer.verifier().to_string(),
        "origin": ORIGIN,
        "leaves": records.iter().map(|r| STANDARD.encode(r)).collect::<Vec<_>>(),
        "checkpoints": checkpoints,
        "inclusion": inclusion,
        "consistency": consistency,
    });
    let dir = tempfile::tempdir().unwrap();
    let case_file = dir.path().join("cases.json");
    std::fs::write(&case_file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let output = Command::new("go")
        .args(["run", "verify.go"])
        .arg(&case_file)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.path().join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .expect("running `go` (apt-get install golang-go golang-golang-x-mod-dev)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "go failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "verifier-key ok custos.test/tenants/acme/timeline",
            "checkpoint 1 ok",
            "checkpoint 2 ok",
            "checkpoint 7 ok",
            "checkpoint 8 ok",
            "checkpoint 100 ok",
            "checkpoint 513 ok",
            "checkpoint 1000 ok",
            "checkpoint 8 ok",
            "checkpoint 999 FAIL: root differs from tlog's",
            "checkpoint FAIL: note has no verifiable signatures",
            "inclusion 0/1 ok",
            "inclusion 0/8 ok",
            "inclusion 5/8 ok",
            "inclusion 6/7 ok",
            "inclusion 99/100 ok",
            "inclusion 256/513 ok",
            "inclusion 512/513 ok",
            "inclusion 0/1000 ok",
            "inclusion 999/1000 ok",
            "inclusion 400/1000 FAIL: invalid transparency proof",
            "consistency 1->2 ok",
            "consistency 1->8 ok",
            "consistency 7->8 ok",
            "consistency 2->7 ok",
            "consistency 8->100 ok",
            "consistency 100->513 ok",
            "consistency 513->1000 ok",
            "consistency 7->1000 ok",
            "consistency 100->1000 FAIL: invalid transparency proof",
        ],
        "{stdout}"
    );
}

fn provenance(digest: &str) -> Statement<Provenance> {
    Statement::provenance(
        vec![ResourceDescriptor::sha256("bundle.tar.gz", digest)],
        Provenance {
            build_definition: BuildDefinition {
                build_type: "https://custos.dev/evidence-bundle/v1".into(),
                external_parameters: serde_json::json!({"tenant_id": "acme", "case_id": "IR-7"})
                    .as_object()
                    .unwrap()
                    .clone(),
                internal_parameters: None,
                resolved_dependencies: vec![],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: "https://custos.test/custos".into(),
                    version: Default::default(),
                    builder_dependencies: vec![],
                },
                metadata: None,
                byproducts: vec![],
            },
        },
    )
}

fn key_spec(signer: &DsseSigner) -> serde_json::Value {
    serde_json::json!({"keyid": signer.key_id(), "public_key": STANDARD.encode(signer.public_key().to_bytes())})
}

#[test]
fn securesystemslib_and_in_toto_read_custos_attestations() {
    let (old, new, stranger) = (DsseSigner::new(&[1; 32]), DsseSigner::new(&[2; 32]), DsseSigner::new(&[3; 32]));
    let digest = "ab".repeat(32);
    let signed = provenance(&digest).sign(&[&new]);
    let rotating = provenance(&digest).sign(&[&old, &new]);
    let mut altered = signed.clone();
    altered.payload = STANDARD.encode(provenance(&"cd".repeat(32)).to_payload());
    let envelopes = [
        ("signed", &signed, vec![key_spec(&new)]),
        ("rotation-old", &rotating, vec![key_spec(&old)]),
        ("rotation-new", &rotating, vec![key_spec(&new)]),
        ("altered", &altered, vec![key_spec(&new)]),
        ("stranger", &provenance(&digest).sign(&[&stranger]), vec![key_spec(&new)]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let python_out = dir.path().join("python-signed.json");
    let python_signer = DsseSigner::new(&[4; 32]);
    let python_payload = String::from_utf8(provenance(&"ef".repeat(32)).to_payload()).unwrap();
    let cases = serde_json::json!({
        "envelopes": envelopes.iter().map(|(name, envelope, keys)| serde_json::json!({
            "name": name, "envelope": envelope, "keys": keys,
        })).collect::<Vec<_>>(),
        "python_seed": STANDARD.encode([4u8; 32]),
        "python_key": key_spec(&python_signer),
        "python_payload": python_payload,
        "python_out": python_out,
    });
    let case_file = dir.path().join("cases.json");
    std::fs::write(&case_file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let output = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_attestations.py"))
        .arg(&case_file)
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed (pip install -r scripts/requirements-test.txt): {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ok = format!("ok {SLSA_PROVENANCE} {digest}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("signed {ok}"),
            format!("rotation-old {ok}"),
            format!("rotation-new {ok}"),
            "altered FAIL: VerificationError".into(),
            "stranger FAIL: VerificationError".into(),
            "signed".into(),
        ],
        "{stdout}"
    );

    // The other way round: securesystemslib's envelope verifies here, and only for its
    // subject.
    let envelope = Envelope::parse(&std::fs::read(&python_out).unwrap()).unwrap();
    assert_eq!(envelope.payload_type, PAYLOAD_TYPE_IN_TOTO);
    let keys = [DsseKey::from_bytes(&python_signer.public_key().to_bytes()).unwrap()];
    let verified = verify_provenance(&envelope, &keys, &"ef".repeat(32), Some("acme")).unwrap();
    assert_eq!(verified.signed_by, [python_signer.key_id()]);
    assert!(verify_provenance(&envelope, &keys, &digest, None).is_err());
}
