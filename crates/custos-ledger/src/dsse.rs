//! DSSE, the Dead Simple Signing Envelope (v1.0, <https://github.com/secure-systems-lab/dsse>),
//! with Ed25519 keys: what custos signs evidence manifests and in-toto statements in.
//!
//! - **Envelope**: the JSON object `{"payload": <base64>, "payloadType": <string>,
//!   "signatures": [{"keyid": <string>, "sig": <base64>}, …]}`.
//! - **What is signed** is the pre-authentication encoding of the payload type and the
//!   payload bytes (not the base64 text, not the JSON):
//!   `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where `SP`
//!   is one space and `LEN` the byte length in ASCII decimal without leading zeros.
//! - **Base64**: custos writes standard padded base64 (RFC 4648 §4); it reads standard or
//!   URL-safe (§5), padded or not, as the specification asks of readers.
//! - **Key ids**: custos names a key `ed25519:` and the first 16 hex digits of SHA-256 of
//!   its raw 32-byte public key ([`key_id`]), the id `/v1/keys` lists it under, and
//!   always sets `keyid`, which verifiers such as securesystemslib match keys by.
//! - **A key rotation window** is two signatures on one envelope, one per key.
//!
//! Verification is strict: a signature by an unknown key is ignored, but every
//! signature by a known key must verify, and an envelope needs at least one.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The payload type of in-toto statements.
pub const PAYLOAD_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
/// Envelopes larger than this are refused unread (a manifest of 100,000 files is about
/// 20 MiB).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024 * 1024;
/// At most this many signatures are read from one envelope.
pub const MAX_SIGNATURES: usize = 16;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("the envelope is {0} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("the envelope's {field} is not base64")]
    Base64 { field: &'static str },
    #[error("the envelope has {0} signatures; at most {MAX_SIGNATURES} are read")]
    TooManySignatures(usize),
    #[error("the envelope's payload type is {found:?}, expected {expected:?}")]
    PayloadType { expected: String, found: String },
    #[error("the signature by key {keyid} does not verify")]
    BadSignature { keyid: String },
    #[error("the envelope has no signature by a known key (signed by: {signers})")]
    NoKnownSignature { signers: String },
}

/// The pre-authentication encoding that DSSE signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// The id custos names an Ed25519 public key by: `ed25519:` and the first 16 hex digits
/// of SHA-256 of the raw 32-byte key.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ed25519:{hex}")
}

/// Decodes base64 in any of the four forms a DSSE reader accepts.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    let url_safe = text.iter().any(|&b| b == b'-' || b == b'_');
    let padded = text.ends_with(b"=");
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.decode(text).ok()
}

/// A DSSE envelope as its JSON reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The payload bytes, base64.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// The signature over [`pae`], base64.
    pub sig: String,
}

/// An Ed25519 key that signs envelopes, named by its [`key_id`].
#[derive(Clone)]
pub struct DsseSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for DsseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsseSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl DsseSigner {
    /// The signer with the Ed25519 key of the 32-byte `seed` (RFC 8032's private key).
    pub fn new(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(key.verifying_key().as_bytes());
        Self { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, to verify with.
    pub fn public_key(&self) -> DsseKey {
        DsseKey { key_id: self.key_id.clone(), key: self.key.verifying_key() }
    }

    fn sign(&self, payload_type: &str, payload: &[u8]) -> EnvelopeSignature {
        let signature = self.key.sign(&pae(payload_type, payload));
        EnvelopeSignature { keyid: self.key_id.clone(), sig: STANDARD.encode(signature.to_bytes()) }
    }
}

/// An Ed25519 public key that envelopes are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsseKey {
    key_id: String,
    key: VerifyingKey,
}

impl DsseKey {
    /// The key of the raw 32-byte Ed25519 public key; `None` when it is not a valid point.
    pub fn from_bytes(public_key: &[u8; 32]) -> Option<Self> {
        let key = VerifyingKey::from_bytes(public_key).ok()?;
        Some(Self { key_id: key_id(public_key), key })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

/// What a verified envelope holds: its payload, and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEnvelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    /// The known keys whose signatures verified, in the envelope's order.
    pub signed_by: Vec<String>,
}

impl Envelope {
    /// The envelope of `payload`, signed by each of `signers` (two during a key rotation).
    pub fn sign(payload_type: &str, payload: &[u8], signers: &[&DsseSigner]) -> Self {
        Self {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: signers.iter().map(|signer| signer.sign(payload_type, payload)).collect(),
        }
    }

    /// Reads an envelope's JSON, bounded by [`MAX_ENVELOPE_BYTES`].
    pub fn parse(bytes: &[u8]) -> Result<Self, DsseError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DsseError::TooLarge(bytes.len()));
        }
        let envelope: Self = serde_json::from_slice(bytes).map_err(|e| DsseError::Malformed(e.to_string()))?;
        if envelope.signatures.len() > MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures(envelope.signatures.len()));
        }
        Ok(envelope)
    }

    /// The envelope as JSON, with a final newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("an envelope serializes");
        json.push('\n');
        json
    }

    /// Verifies the envelope against `keys` and checks its payload type: every
    /// signature by one of `keys` must verify, and there must be at least one.
    pub fn verify(&self, keys: &[DsseKey], payload_type: &str) -> Result<VerifiedEnvelope, DsseError> {
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures(self.signatures.len()));
        }
        let payload = decode_base64(&self.payload).ok_or(DsseError::Base64 { field: "payload" })?;
        let message = pae(&self.payload_type, &payload);
        let mut signed_by = Vec::new();
        let mut seen = BTreeSet::new();
        for signature in &self.signatures {
            let Some(key) = keys.iter().find(|k| k.key_id == signature.keyid) else {
                continue;
            };
            let bytes = decode_base64(&signature.sig).ok_or(DsseError::Base64 { field: "signature" })?;
            let signature_ok =
                Signature::from_slice(&bytes).ok().is_some_and(|sig| key.key.verify(&message, &sig).is_ok());
            if !signature_ok {
                return Err(DsseError::BadSignature { keyid: signature.keyid.clone() });
            }
            if seen.insert(key.key_id.clone()) {
                signed_by.push(key.key_id.clone());
            }
        }
        if signed_by.is_empty() {
            let signers: Vec<&str> = self.signatures.iter().map(|s| s.keyid.as_str()).collect();
            return Err(DsseError::NoKnownSignature {
                signers: if signers.is_empty() { "nobody".into() } else { signers.join(", ") },
            });
        }
        // The type is signed too: checked after the signatures, a wrong type is
        // reported for an envelope a known key did sign (one meant for another use).
        if self.payload_type != payload_type {
            return Err(DsseError::PayloadType { expected: payload_type.to_owned(), found: self.payload_type.clone() });
        }
        Ok(VerifiedEnvelope { payload_type: self.payload_type.clone(), payload, signed_by })
    }
}

#[cfg(test)]
mod tests;
