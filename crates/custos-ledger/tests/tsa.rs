//! RFC 3161 against a real time-stamping authority: OpenSSL's `openssl ts`, with a P-256
//! key and a certificate whose extended key usage is the critical `timeStamping`. Our
//! requests are answered by it, and its tokens verify here; altered tokens, other
//! digests, other nonces and other TSAs do not. Needs `openssl` (scripts/test.sh
//! installs it); fails, never skips, without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use custos_ledger::tsa::{
    TsaError, parse_certificates, request, token_from_response, tsa_certificate_problem, verify_token,
};
use sha2::{Digest, Sha256};

const CONFIG: &str = include_str!("../../../test-data/tsa/openssl-tsa.cnf");

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A TSA in a temporary directory: a P-256 key, a certificate with `extensions`.
struct Tsa {
    dir: tempfile::TempDir,
}

impl Tsa {
    fn new(extensions: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tsa.cnf"), CONFIG).unwrap();
        std::fs::write(dir.path().join("serial"), "01\n").unwrap();
        openssl(dir.path(), &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tsa.key"]);
        openssl(
            dir.path(),
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "tsa.key",
                "-out",
                "tsa.crt",
                "-days",
                "3650",
                "-config",
                "tsa.cnf",
                "-extensions",
                extensions,
            ],
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn certificate_pem(&self) -> String {
        std::fs::read_to_string(self.path("tsa.crt")).unwrap()
    }

    /// Answers a DER request, as `openssl ts -reply` does.
    fn reply(&self, request: &[u8]) -> Vec<u8> {
        std::fs::write(self.path("q.tsq"), request).unwrap();
        openssl(
            self.dir.path(),
            &["ts", "-reply", "-queryfile", "q.tsq", "-config", "tsa.cnf", "-section", "tsa_config", "-out", "r.tsr"],
        );
        std::fs::read(self.path("r.tsr")).unwrap()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

#[test]
fn openssl_tokens_verify_for_their_digest_only() {
    let tsa = Tsa::new("tsa_ext");
    let trusted = parse_certificates(&tsa.certificate_pem()).unwrap();
    let root = digest("merkle root of bundle evb-01");
    let nonce = 0x8000_0000_0000_0001; // top bit set: encoded with a leading zero byte
    let response = tsa.reply(&request(&root, nonce));
    // OpenSSL's own verifier accepts the exchange: our request is what it expects.
    openssl(tsa.dir.path(), &["ts", "-verify", "-queryfile", "q.tsq", "-in", "r.tsr", "-CAfile", "tsa.crt"]);

    let token = token_from_response(&response).unwrap();
    let before = custos_model::Timestamp::now().saturating_add_micros(-120_000_000);
    let stamped = verify_token(&token, &root, Some(nonce), &trusted).unwrap();
    assert!(stamped.time >= before && stamped.time <= custos_model::Timestamp::now(), "{stamped:?}");
    assert_eq!(stamped.policy, "1.2.3.4.1");
    assert_eq!(stamped.tsa, "CN=custos test TSA");
    assert_eq!(stamped.serial, "02"); // openssl advances its serial file before it signs
    assert!(verify_token(&token, &root, None, &trusted).is_ok());

    assert_eq!(verify_token(&token, &digest("another root"), None, &trusted), Err(TsaError::ImprintMismatch));
    assert_eq!(verify_token(&token, &root, Some(7), &trusted), Err(TsaError::NonceMismatch));
    let stranger = Tsa::new("tsa_ext");
    let other = parse_certificates(&stranger.certificate_pem()).unwrap();
    assert_eq!(verify_token(&token, &root, None, &other), Err(TsaError::UntrustedSigner));
    // Trusting both finds the right one.
    let both: Vec<_> = other.iter().chain(&trusted).cloned().collect();
    assert!(verify_token(&token, &root, None, &both).is_ok());

    // Small nonces are encoded in their fewest bytes, as DER requires, and answered.
    for small in [0u64, 7, 0x7f, 0x80, 0x1234] {
        let query = request(&root, small);
        let token = token_from_response(&tsa.reply(&query)).unwrap();
        assert!(verify_token(&token, &root, Some(small), &trusted).is_ok(), "nonce {small:#x}");
        openssl(tsa.dir.path(), &["ts", "-verify", "-queryfile", "q.tsq", "-in", "r.tsr", "-CAfile", "tsa.crt"]);
    }
    let query = request(&root, 7);
    assert!(query.windows(3).any(|w| w == [0x02, 0x01, 0x07]), "nonce 7 is INTEGER 02 01 07");

    // Any flipped byte of the token fails it (and never panics).
    for i in 0..token.len() {
        let mut altered = token.clone();
        altered[i] ^= 0x01;
        assert!(verify_token(&altered, &root, None, &trusted).is_err(), "byte {i} flipped still verifies");
    }
}

#[test]
fn only_certificates_for_time_stamping_count() {
    assert_eq!(tsa_certificate_problem(&parse_certificates(&Tsa::new("tsa_ext").certificate_pem()).unwrap()[0]), None);
    let loose = parse_certificates(&Tsa::new("loose_ext").certificate_pem()).unwrap();
    assert_eq!(tsa_certificate_problem(&loose[0]).as_deref(), Some("its extended key usage is not critical"));
    let none = parse_certificates(&Tsa::new("none_ext").certificate_pem()).unwrap();
    assert_eq!(tsa_certificate_problem(&none[0]).as_deref(), Some("it has no extended key usage"));
    assert!(parse_certificates("not a certificate").is_err());
    assert!(matches!(token_from_response(b"\x30\x03\x02\x01\x02"), Err(TsaError::Malformed(_))));
}

/// A bundle in `dir`, signed with `signer`: one artifact, and the metadata files.
fn write_bundle(dir: &Path, signer: &custos_ledger::dsse::DsseSigner) -> [u8; 32] {
    use custos_ledger::bundle::{self, FileEntry, Manifest};
    let body = b"seen at 03:12\n";
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    std::fs::write(dir.join("artifacts/notes.txt"), body).unwrap();
    let files = vec![FileEntry {
        path: "artifacts/notes.txt".into(),
        size: body.len() as u64,
        sha256: hex::encode(Sha256::digest(body)),
        media_type: "text/plain".into(),
    }];
    let root = bundle::merkle_root(&files);
    let manifest = Manifest {
        format: bundle::BUNDLE_FORMAT.into(),
        bundle_id: "evb-tsa".into(),
        tenant_id: "acme".into(),
        case_id: "IR-9".into(),
        kind: "case".into(),
        resource_id: "IR-9".into(),
        created_at: custos_model::Timestamp::now(),
        created_by: "test".into(),
        custos_version: "0.1.0".into(),
        deployment: "custos.test".into(),
        key_id: signer.key_id().into(),
        merkle_root: hex::encode(root),
        files,
    };
    let bytes = manifest.to_bytes();
    std::fs::write(dir.join(bundle::MANIFEST), &bytes).unwrap();
    std::fs::write(dir.join(bundle::MANIFEST_ENVELOPE), Manifest::sign(&bytes, &[signer]).to_json()).unwrap();
    std::fs::write(dir.join(bundle::ROOT_FILE), format!("{}\n", manifest.merkle_root)).unwrap();
    root
}

#[test]
fn a_bundles_timestamp_verifies_against_the_pinned_tsa_only() {
    use custos_ledger::bundle::{TIMESTAMP_FILE, TrustedKey, Verifier};
    let tsa = Tsa::new("tsa_ext");
    let trusted = parse_certificates(&tsa.certificate_pem()).unwrap();
    let signer = custos_ledger::dsse::DsseSigner::new(&[9; 32]);
    let keys = vec![TrustedKey { key: signer.public_key(), not_before: None, not_after: None }];
    let dir = tempfile::tempdir().unwrap();
    let root = write_bundle(dir.path(), &signer);
    let token = token_from_response(&tsa.reply(&request(&root, 42))).unwrap();
    std::fs::write(dir.path().join(TIMESTAMP_FILE), &token).unwrap();

    let report = Verifier::new(keys.clone()).with_tsa_certificates(trusted.clone()).verify_dir(dir.path()).unwrap();
    let stamped = report.timestamp.expect("a verified timestamp");
    assert_eq!(stamped.tsa, "CN=custos test TSA");
    assert!(!report.timestamp_unchecked);
    // Without a pinned TSA: the bundle verifies, and says its timestamp was not checked.
    let report = Verifier::new(keys.clone()).verify_dir(dir.path()).unwrap();
    assert!(report.timestamp.is_none() && report.timestamp_unchecked);
    // Another TSA's certificate: refused, naming the file and the check.
    let stranger = parse_certificates(&Tsa::new("tsa_ext").certificate_pem()).unwrap();
    let error = Verifier::new(keys.clone()).with_tsa_certificates(stranger).verify_dir(dir.path()).unwrap_err();
    assert_eq!(error.check(), "timestamp");
    assert!(error.to_string().starts_with("timestamp.tsr: "), "{error}");
    // An independent implementation agrees: PyPI's rfc3161-client verifies the token
    // custos keeps, over this root, with the same pinned certificate, and not over another.
    let independent = |root: &[u8; 32]| {
        std::fs::write(dir.path().join("token.der"), &token).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_timestamp.py");
        let output = Command::new("python3")
            .arg(script)
            .arg(dir.path().join("token.der"))
            .arg(hex::encode(root))
            .arg(tsa.path("tsa.crt"))
            .output()
            .expect("running python3 (scripts/test.sh installs rfc3161-client)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        std::fs::remove_file(dir.path().join("token.der")).unwrap();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    assert!(independent(&root).starts_with("ok "), "rfc3161-client refused the token");
    assert!(independent(&[1; 32]).starts_with("FAIL"), "rfc3161-client accepted another root");

    // A token over another root (another bundle's): refused.
    let other = token_from_response(&tsa.reply(&request(&[1; 32], 43))).unwrap();
    std::fs::write(dir.path().join(TIMESTAMP_FILE), &other).unwrap();
    let error = Verifier::new(keys.clone()).with_tsa_certificates(trusted.clone()).verify_dir(dir.path()).unwrap_err();
    assert_eq!(error, custos_ledger::bundle::BundleError::Timestamp(TsaError::ImprintMismatch));
    // A flipped byte of the token: refused.
    let mut altered = token.clone();
    altered[token.len() / 2] ^= 1;
    std::fs::write(dir.path().join(TIMESTAMP_FILE), &altered).unwrap();
    let error = Verifier::new(keys).with_tsa_certificates(trusted).verify_dir(dir.path()).unwrap_err();
    assert_eq!(error.check(), "timestamp");
}
