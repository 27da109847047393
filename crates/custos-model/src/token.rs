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

#[cfg(test)]
mod tests {
    use super::*;

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
