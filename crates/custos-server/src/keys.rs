//! The checkpoint signing key: an Ed25519 key kept in a file (never in the database),
//! whose public half is published in the store with its validity window.
//!
//! The file is JSON, created with mode 0600 and replaced atomically on rotation:
//!
//! ```json
//! {"format":"custos-signing-key/v1","algorithm":"ed25519","key_id":"ed25519:3f1c…",
//!  "created_at":"2026-11-23T10:00:00.000000Z","private_key":"<base64 32-byte seed>",
//!  "public_key":"<base64 32 bytes>"}
//! ```
//!
//! One key signs every log's checkpoints. Signed notes name their key after the log
//! (C2SP: the key name is the checkpoint's origin), so each log has its own verifier
//! key string, `<origin>+<key id>+<base64(0x01 ‖ public key)>`, all from this one key.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custos_ledger::note::{NoteSigner, NoteVerifier};
use custos_model::Timestamp;
use custos_store::SigningKeyRecord;

/// The `format` of a key file.
pub const KEY_FILE_FORMAT: &str = "custos-signing-key/v1";

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a custos signing key: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: the key file is readable by others (mode {mode:o}); it holds a private key: chmod 600 it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} already exists; use `custos keys rotate` to replace the key")]
    Exists { path: PathBuf },
}

/// A checkpoint signing key, loaded.
pub struct SigningKey {
    key_id: String,
    /// Wiped from memory when dropped (ed25519-dalek's `zeroize`).
    secret: ed25519_dalek::SigningKey,
    public_key: [u8; 32],
    created_at: Timestamp,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    algorithm: String,
    key_id: String,
    created_at: Timestamp,
    private_key: String,
    public_key: String,
}

/// The id custos lists a key by: `ed25519:` and the first 16 hex digits of the
/// SHA-256 of its public key, also the `keyid` of its DSSE signatures. (Signed notes
/// carry their own 4-byte key ids, which depend on the log's name as well.)
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    custos_ledger::dsse::key_id(public_key)
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        use rand::TryRngCore as _;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut seed).expect("the operating system's random source works");
        Self::from_seed(seed, Timestamp::now())
    }

    fn from_seed(seed: [u8; 32], created_at: Timestamp) -> Self {
        let secret = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public_key = secret.verifying_key().to_bytes();
        Self { key_id: fingerprint(&public_key), secret, public_key, created_at }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The signer for a log's checkpoints (named as the log's origin).
    ///
    /// # Errors
    ///
    /// When `origin` is not a valid key name (it holds a space or `+`).
    pub fn signer(&self, origin: &str) -> Result<NoteSigner, custos_ledger::note::NoteError> {
        NoteSigner::new(origin, self.secret.as_bytes())
    }

    /// The signer of DSSE envelopes (evidence manifests, attestations); its key id is
    /// [`SigningKey::key_id`].
    pub fn dsse_signer(&self) -> custos_ledger::dsse::DsseSigner {
        custos_ledger::dsse::DsseSigner::new(self.secret.as_bytes())
    }

    /// The public record published in the store: valid from now, until rotated.
    pub fn record(&self, not_before: Timestamp) -> SigningKeyRecord {
        SigningKeyRecord {
            key_id: self.key_id.clone(),
            algorithm: "ed25519".into(),
            public_key: self.public_key,
            created_at: self.created_at,
            not_before,
            not_after: None,
        }
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io { path: path.to_owned(), source };
        let invalid = |message: String| KeyFileError::Invalid { path: path.to_owned(), message };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions { path: path.to_owned(), mode });
            }
        }
        let text = std::fs::read(path).map_err(io)?;
        let file: KeyFile = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if file.format != KEY_FILE_FORMAT {
            return Err(invalid(format!("format {:?} is not {KEY_FILE_FORMAT:?}", file.format)));
        }
        if file.algorithm != "ed25519" {
            return Err(invalid(format!("algorithm {:?} is not \"ed25519\"", file.algorithm)));
        }
        let seed: [u8; 32] = STANDARD
            .decode(&file.private_key)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| invalid("private_key must be 32 bytes in standard base64".into()))?;
        let key = Self::from_seed(seed, file.created_at);
        if STANDARD.encode(key.public_key) != file.public_key || key.key_id != file.key_id {
            return Err(invalid("public_key or key_id does not belong to private_key".into()));
        }
        Ok(key)
    }

    fn file_bytes(&self) -> Vec<u8> {
        let file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            algorithm: "ed25519".into(),
            key_id: self.key_id.clone(),
            created_at: self.created_at,
            private_key: STANDARD.encode(self.secret.as_bytes()),
            public_key: STANDARD.encode(self.public_key),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("a key file serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Writes the key to a new file (mode 0600); an existing file is an error.
    pub fn create(&self, path: &Path) -> Result<(), KeyFileError> {
        if path.exists() {
            return Err(KeyFileError::Exists { path: path.to_owned() });
        }
        self.write_new(path, path)
    }

    /// Replaces the key file atomically: the new key is written to a temporary file
    /// (mode 0600) beside it, synced, and renamed over the old one.
    pub fn replace(&self, path: &Path) -> Result<(), KeyFileError> {
        let temporary = path.with_extension(format!("new-{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        self.write_new(&temporary, path)?;
        std::fs::rename(&temporary, path).map_err(|source| KeyFileError::Io { path: path.to_owned(), source })
    }

    fn write_new(&self, at: &Path, named: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io { path: named.to_owned(), source };
        if let Some(dir) = at.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(at).map_err(io)?;
        file.write_all(&self.file_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }
}

/// The signed-note verifier key of `public_key` for the log `origin`:
/// `<origin>+<8 hex digits of key id>+<base64(0x01 ‖ public key)>`.
///
/// # Errors
///
/// When `origin` is not a valid key name.
pub fn verifier_key(origin: &str, public_key: &[u8; 32]) -> Result<String, custos_ledger::note::NoteError> {
    Ok(NoteVerifier::new(origin, public_key)?.to_string())
}

/// The key `serve` signs with: the file's, created on first use when missing, and
/// published in the store (idempotently) so `/v1/keys` lists it.
///
/// # Errors
///
/// When the file exists but cannot be used, cannot be created, or the store fails.
pub async fn load_or_create(store: &dyn custos_store::Store, path: &Path) -> Result<SigningKey, KeySetupError> {
    let key = match SigningKey::load(path) {
        Ok(key) => key,
        Err(KeyFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate();
            key.create(path)?;
            tracing::info!(key_id = key.key_id(), path = %path.display(), "created the checkpoint signing key");
            key
        }
        Err(error) => return Err(error.into()),
    };
    let published = store.signing_keys().await?;
    if !published.iter().any(|k| k.key_id == key.key_id()) {
        store.put_signing_key(&key.record(key.created_at())).await?;
        tracing::info!(key_id = key.key_id(), "published the checkpoint signing key");
    }
    let others: Vec<&str> = published
        .iter()
        .filter(|k| k.not_after.is_none() && k.key_id != key.key_id())
        .map(|k| k.key_id.as_str())
        .collect();
    if !others.is_empty() {
        tracing::warn!(
            key_id = key.key_id(),
            others = others.join(",").as_str(),
            "other signing keys are published as active too: every replica should share one key file; \
             `custos keys rotate` retires the others"
        );
    }
    Ok(key)
}

/// Why the signing key could not be set up: its file, or the store.
#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Store(#[from] custos_store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        let key = SigningKey::generate();
        key.create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let loaded = SigningKey::load(&path).unwrap();
        assert_eq!(loaded.key_id(), key.key_id());
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(matches!(key.create(&path), Err(KeyFileError::Exists { .. })));

        let next = SigningKey::generate();
        next.replace(&path).unwrap();
        assert_eq!(SigningKey::load(&path).unwrap().key_id(), next.key_id());
        assert_ne!(next.key_id(), key.key_id());
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_damaged_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        SigningKey::generate().create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(SigningKey::load(&path), Err(KeyFileError::Permissions { mode: 0o644, .. })));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let other = STANDARD.encode([9u8; 32]);
        let swapped = text.replacen("\"public_key\": \"", &format!("\"public_key\": \"{other}"), 1);
        std::fs::write(&path, swapped).unwrap();
        let error = SigningKey::load(&path).unwrap_err().to_string();
        assert!(error.contains("does not belong"), "{error}");
    }

    #[test]
    fn the_verifier_key_is_go_compatible_in_form() {
        let key = SigningKey::from_seed([7; 32], Timestamp::from_micros(0));
        let origin = "custos.example/tenants/acme/timeline";
        let vkey = verifier_key(origin, key.public_key()).unwrap();
        let signer = key.signer(origin).unwrap();
        assert_eq!(vkey, signer.verifier().to_string());
        assert!(vkey.starts_with(&format!("{origin}+{:08x}+", signer.key_id())), "{vkey}");
        assert!(key.key_id().starts_with("ed25519:") && key.key_id().len() == 24);
    }
}
