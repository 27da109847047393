//! API tokens: 256 random bits shown once, stored only as their SHA-256.
//!
//! A token is `cst_` followed by 43 base64url characters. The prefix lets secret
//! scanners and the log scrubber recognise it. SHA-256 without salt is the right hash
//! here: the secret is uniformly random, so there is nothing to brute-force, and lookup
//! by hash stays a single index probe.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "cst_";

/// A new token: the secret to print once, and what is stored.
#[derive(Debug)]
pub struct GeneratedToken {
    /// Public id, used to list and revoke (`tok_` and 16 hex digits).
    pub id: String,
    /// The bearer secret. Never stored, never logged.
    pub secret: String,
    /// Hex SHA-256 of the secret, the stored lookup key.
    pub secret_hash: String,
}

pub fn generate() -> GeneratedToken {
    let secret_bytes: [u8; 32] = rand::random();
    let id_bytes: [u8; 8] = rand::random();
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret_bytes));
    GeneratedToken { id: format!("tok_{}", hex::encode(id_bytes)), secret_hash: hash_secret(&secret), secret }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The prefix of a console session's secret (the value of its cookie), so secret
/// scanners and the log scrubber recognise it as they do API tokens.
pub const SESSION_PREFIX: &str = "css_";

/// A new console session secret (256 random bits) and its stored hash.
pub fn generate_session() -> (String, String) {
    let secret = format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// A random one-time value for forms that have no session yet (the login form's
/// double-submit check).
pub fn generate_nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The anti-forgery token of a session's forms: derived from the session secret, so
/// it needs no storage, and one-way, so a leaked form reveals nothing of the cookie.
pub fn csrf_token(session_secret: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"custos console csrf\0");
    digest.update(session_secret.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.finalize())
}

/// Compares two secrets without an early exit on the first differing byte: the
/// comparison is of their SHA-256 digests, so its timing says nothing about either.
pub fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_and_their_csrf_token_is_derived_one_way() {
        let (a, a_hash) = generate_session();
        let (b, _) = generate_session();
        assert_ne!(a, b);
        assert!(a.starts_with(SESSION_PREFIX) && a.len() == SESSION_PREFIX.len() + 43, "{a}");
        assert_eq!(a_hash, hash_secret(&a));
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert!(!csrf_token(&a).contains(&a[SESSION_PREFIX.len()..]));
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret(&a, &b));
        assert_ne!(generate_nonce(), generate_nonce());
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(a.secret.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(a.secret_hash, hash_secret(&a.secret));
        assert_ne!(a.secret_hash, a.secret);
        assert_eq!(a.id.len(), 20);
    }
}
