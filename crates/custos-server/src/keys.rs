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
//! After `custos keys rotate --overlap`, the file also holds the key it replaced,
//! `"previous": {"key_id", "created_at", "private_key", "public_key", "until"}`, which
//! signs beside the current key until `until` (the store's `not_after` for it): every
//! envelope and checkpoint made in the window carries both signatures, so a verifier
//! that knows only the old public key keeps verifying while it fetches the new one.
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
    /// The key this one replaced and the end of its overlap window.
    previous: Option<(Box<SigningKey>, Timestamp)>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("previous", &self.previous.as_ref().map(|(key, until)| (key.key_id(), until)))
            .finish_non_exhaustive()
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<PreviousKeyFile>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviousKeyFile {
    key_id: String,
    created_at: Timestamp,
    private_key: String,
    public_key: String,
    until: Timestamp,
}

/// Reads a base64 seed and checks that its public half and id are the ones stated.
fn key_from_parts(
    private_key: &str,
    public_key: &str,
    key_id: &str,
    created_at: Timestamp,
) -> Result<SigningKey, String> {
    let seed: [u8; 32] = STANDARD
        .decode(private_key)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "private_key must be 32 bytes in standard base64".to_owned())?;
    let key = SigningKey::from_seed(seed, created_at);
    if STANDARD.encode(key.public_key) != public_key || key.key_id != key_id {
        return Err("public_key or key_id does not belong to private_key".into());
    }
    Ok(key)
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
        Self { key_id: fingerprint(&public_key), secret, public_key, created_at, previous: None }
    }

    /// This key, keeping `previous` signing beside it until `until` (a rotation's
    /// overlap window). The previous key's own previous key is dropped: only one key
    /// overlaps.
    #[must_use]
    pub fn with_previous(mut self, previous: SigningKey, until: Timestamp) -> Self {
        self.previous = Some((Box::new(previous.without_previous()), until));
        self
    }

    /// This key alone, its previous key dropped.
    #[must_use]
    pub fn without_previous(mut self) -> Self {
        self.previous = None;
        self
    }

    /// The key this one replaced and the end of its overlap window, if the file keeps it.
    pub fn previous(&self) -> Option<(&SigningKey, Timestamp)> {
        self.previous.as_ref().map(|(key, until)| (&**key, *until))
    }

    /// The keys that sign at `at`: this one, and the previous one inside its window
    /// (`at` before its `until`, as a verifier reads `not_after`).
    pub fn signing_at(&self, at: Timestamp) -> Vec<&SigningKey> {
        let mut keys = vec![self];
        if let Some((previous, until)) = self.previous()
            && at < until
        {
            keys.push(previous);
        }
        keys
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

    /// The signer for a log's checkpoints (named as the log's origin), by this key alone.
    ///
    /// # Errors
    ///
    /// When `origin` is not a valid key name (it holds a space or `+`).
    pub fn signer(&self, origin: &str) -> Result<NoteSigner, custos_ledger::note::NoteError> {
        NoteSigner::new(origin, self.secret.as_bytes())
    }

    /// The signers of a log's checkpoints at `at`: see [`SigningKey::signing_at`].
    ///
    /// # Errors
    ///
    /// When `origin` is not a valid key name (it holds a space or `+`).
    pub fn signers(&self, origin: &str, at: Timestamp) -> Result<Vec<NoteSigner>, custos_ledger::note::NoteError> {
        self.signing_at(at).into_iter().map(|key| key.signer(origin)).collect()
    }

    /// The signer of DSSE envelopes (evidence manifests, attestations) by this key
    /// alone; its key id is [`SigningKey::key_id`].
    pub fn dsse_signer(&self) -> custos_ledger::dsse::DsseSigner {
        custos_ledger::dsse::DsseSigner::new(self.secret.as_bytes())
    }

    /// The signers of DSSE envelopes made at `at`, current key first: see
    /// [`SigningKey::signing_at`].
    pub fn dsse_signers(&self, at: Timestamp) -> Vec<custos_ledger::dsse::DsseSigner> {
        self.signing_at(at).into_iter().map(SigningKey::dsse_signer).collect()
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
        let key =
            key_from_parts(&file.private_key, &file.public_key, &file.key_id, file.created_at).map_err(invalid)?;
        let Some(previous) = file.previous else {
            return Ok(key);
        };
        let old = key_from_parts(&previous.private_key, &previous.public_key, &previous.key_id, previous.created_at)
            .map_err(|message| invalid(format!("previous: {message}")))?;
        if old.key_id == key.key_id {
            return Err(invalid("previous is the current key".into()));
        }
        Ok(key.with_previous(old, previous.until))
    }

    fn file_bytes(&self) -> Vec<u8> {
        let file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            algorithm: "ed25519".into(),
            key_id: self.key_id.clone(),
            created_at: self.created_at,
            private_key: STANDARD.encode(self.secret.as_bytes()),
            public_key: STANDARD.encode(self.public_key),
            previous: self.previous().map(|(key, until)| PreviousKeyFile {
                key_id: key.key_id.clone(),
                created_at: key.created_at,
                private_key: STANDARD.encode(key.secret.as_bytes()),
                public_key: STANDARD.encode(key.public_key),
                until,
            }),
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
            custos_store::create_private_dir(dir).map_err(io)?;
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

    #[test]
    fn an_overlap_keeps_the_previous_key_signing_until_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let (old, new) = (SigningKey::from_seed([1; 32], Timestamp::from_micros(0)), SigningKey::generate());
        let (old_id, new_id) = (old.key_id().to_owned(), new.key_id().to_owned());
        let until = Timestamp::from_micros(5_000_000);
        // Only one key overlaps: the old key's own previous key is not carried on.
        let old = old.with_previous(SigningKey::from_seed([9; 32], Timestamp::from_micros(0)), until);
        new.with_previous(old, until).replace(&path).unwrap();

        let loaded = SigningKey::load(&path).unwrap();
        assert_eq!(loaded.key_id(), new_id);
        let (previous, end) = loaded.previous().unwrap();
        assert_eq!((previous.key_id(), end), (old_id.as_str(), until));
        assert!(previous.previous().is_none());
        let ids = |at: i64| -> Vec<String> {
            loaded.signing_at(Timestamp::from_micros(at)).iter().map(|k| k.key_id().to_owned()).collect()
        };
        assert_eq!(ids(4_999_999), [new_id.clone(), old_id]);
        // `until` is the store's `not_after`: a verifier counts the key strictly before it.
        assert_eq!(ids(5_000_000), [new_id]);
        assert_eq!(loaded.dsse_signers(Timestamp::from_micros(0)).len(), 2);
        let origin = "custos.example/tenants/acme/timeline";
        assert_eq!(loaded.signers(origin, Timestamp::from_micros(0)).unwrap().len(), 2);

        // Dropping it writes a file with the current key alone.
        loaded.without_previous().replace(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("previous"), "{text}");
        assert!(SigningKey::load(&path).unwrap().previous().is_none());
    }

    #[test]
    fn a_damaged_previous_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let key = SigningKey::from_seed([1; 32], Timestamp::from_micros(0));
        let same = SigningKey::from_seed([1; 32], Timestamp::from_micros(0));
        key.with_previous(same, Timestamp::from_micros(1)).replace(&path).unwrap();
        let error = SigningKey::load(&path).unwrap_err().to_string();
        assert!(error.contains("previous is the current key"), "{error}");

        let key = SigningKey::from_seed([1; 32], Timestamp::from_micros(0));
        let old = SigningKey::from_seed([2; 32], Timestamp::from_micros(0));
        let old_public = STANDARD.encode(old.public_key());
        key.with_previous(old, Timestamp::from_micros(1)).replace(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let swapped = text.replace(&old_public, &STANDARD.encode([9u8; 32]));
        std::fs::write(&path, swapped).unwrap();
        let error = SigningKey::load(&path).unwrap_err().to_string();
        assert!(error.contains("previous: public_key or key_id does not belong"), "{error}");
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
