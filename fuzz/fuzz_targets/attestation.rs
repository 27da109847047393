//! What `custos forensic verify` and `POST /v1/attestations/verify` read from outside:
//! DSSE envelopes and the in-toto statements inside them, and RFC 3161 tokens. On arbitrary bytes none may
//! panic; an envelope that verifies was signed by the pinned key over its payload, and a
//! provenance that verifies is SLSA provenance about the digest asked for.

#![no_main]

use custos_ledger::dsse::{DsseSigner, Envelope, PAYLOAD_TYPE_IN_TOTO, decode_base64};
use custos_ledger::intoto::{Provenance, SLSA_PROVENANCE, Statement, verify_provenance};
use libfuzzer_sys::fuzz_target;

/// The subject digest of the seed (`fuzz/seeds/attestation`).
const DIGEST: &str = "abababababababababababababababababababababababababababababababab";

fuzz_target!(|data: &[u8]| {
    // RFC 3161 tokens come from outside too (bundles carry them): parsing must not panic.
    let _ = custos_ledger::tsa::verify_token(data, &[0; 32], None, &[]);
    let _ = custos_ledger::tsa::token_from_response(data);
    let key = DsseSigner::new(&[7; 32]).public_key();
    let _ = serde_json::from_slice::<Statement>(data);
    let _ = serde_json::from_slice::<Statement<Provenance>>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_base64(text);
    }
    let Ok(envelope) = Envelope::parse(data) else { return };
    if let Ok(verified) = envelope.verify(std::slice::from_ref(&key), PAYLOAD_TYPE_IN_TOTO) {
        assert_eq!(verified.signed_by, [key.key_id()]);
        assert_eq!(Some(verified.payload), decode_base64(&envelope.payload));
    }
    if let Ok(verified) = verify_provenance(&envelope, std::slice::from_ref(&key), DIGEST, None) {
        assert_eq!(verified.statement.predicate_type, SLSA_PROVENANCE);
        assert_eq!(verified.subject.digest.get("sha256").map(String::as_str), Some(DIGEST));
    }
});
