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

const CONFIG: &str = "\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = custos test TSA
[ tsa_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
[ loose_ext ]
extendedKeyUsage = timeStamping
[ none_ext ]
basicConstraints = CA:FALSE
[ tsa_config ]
serial = ./serial
crypto_device = builtin
signer_cert = ./tsa.crt
certs = ./tsa.crt
signer_key = ./tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.2
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
";

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
