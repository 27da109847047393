//! Evidence bundles: the format, and its offline verification (`custos forensic verify`).
//!
//! A bundle is a directory, or a `.tar.gz` of one directory, holding:
//!
//! - `manifest.json`: what the bundle is ([`Manifest`]): its id, tenant, case, kind, the
//!   resource it preserves, who made it and when, the custos version, the signing key's
//!   id, every other file with its path, size, SHA-256 and media type (in path order),
//!   and the Merkle root over those files.
//! - `manifest.dsse.json`: a DSSE envelope of payload type [`PAYLOAD_TYPE_MANIFEST`]
//!   whose payload is exactly the bytes of `manifest.json`.
//! - `root.merkle`: the Merkle root in lowercase hex and a newline, for tools that only
//!   want the root.
//! - the files the manifest lists (custos writes them under `artifacts/`, `evaluation/`,
//!   `job/`, `timeline/`, `audit/` and `proofs/`).
//!
//! **Inclusion proofs** tie a bundle's copies of log records to the log itself. A file
//! under `timeline/` or `audit/` is one record's exact leaf bytes; `proofs/<log>.checkpoint`
//! is a checkpoint of that log, a signed note as `GET …/<log>/checkpoint` serves it; and
//! `proofs/<log>/<name>.json` is an [`InclusionProof`] of one such file to that
//! checkpoint. Every file so named is checked (other files under `proofs/` are checked
//! by their digest alone): a proof's leaf file is listed, the
//! RFC 6962 audit path leads from `SHA-256(0x00 ‖ leaf bytes)` to the checkpoint's root,
//! and the checkpoint is signed, under the origin
//! `<deployment>/tenants/<tenant>/<log>` the manifest implies, by a key of the keyring
//! that existed when the bundle was made.
//!
//! **The Merkle root** is RFC 6962's over one leaf per listed file, in the manifest's
//! order (bytewise path order): the leaf's data is the UTF-8 text
//! `<sha256 hex> <size in decimal> <path>`, so its hash is
//! `SHA-256(0x00 ‖ "<sha256> <size> <path>")`; interior nodes as in [`crate::merkle`].
//!
//! **Verification** ([`Verifier`]) reads every file once, streaming, and checks: the
//! envelope's signature by a key of the keyring valid when the manifest says it was
//! made; that `manifest.json` is the signed payload; every listed file's size and
//! digest; that no file is missing or unlisted; the Merkle root in the manifest and in
//! `root.merkle`. It names the first file and check that fails. A `.tar.gz` from
//! outside is hostile: absolute paths, `..`, links, devices, duplicate entries, more
//! than [`MAX_ENTRIES`] entries or a decompression ratio over [`MAX_RATIO`] are refused,
//! and nothing is ever written to disk. [`Verifier::check`] takes the files one at a
//! time instead, from wherever they are stored.
//!
//! [`ArchiveWriter`] writes the `.tar.gz` deterministically: the same bundle always
//! archives to the same bytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use custos_model::Timestamp;
use sha2::{Digest, Sha256};

use crate::dsse::{DsseError, DsseKey, DsseSigner, Envelope};
use crate::merkle::{Hash, RootBuilder, leaf_hash};

/// The `format` of a manifest.
pub const BUNDLE_FORMAT: &str = "custos-evidence-bundle/v1";
/// The payload type of the manifest's envelope.
pub const PAYLOAD_TYPE_MANIFEST: &str = "application/vnd.custos.evidence-manifest+json";
pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_ENVELOPE: &str = "manifest.dsse.json";
pub const ROOT_FILE: &str = "root.merkle";
/// The files of a bundle that are not listed in its manifest.
/// An RFC 3161 time-stamp token (DER) over the Merkle root: optional.
pub const TIMESTAMP_FILE: &str = "timestamp.tsr";

pub const METADATA_FILES: [&str; 4] = [MANIFEST, MANIFEST_ENVELOPE, ROOT_FILE, TIMESTAMP_FILE];

/// The directory of a bundle's inclusion proofs and checkpoints.
pub const PROOFS_DIR: &str = "proofs";
/// The `format` of an inclusion proof file.
pub const PROOF_FORMAT: &str = "custos-inclusion-proof/v1";
/// The logs a bundle can prove records of; each is also the directory of its records.
pub const PROOF_LOGS: [&str; 2] = ["timeline", "audit"];
/// Bytes of one file under `proofs/` (read into memory).
pub const MAX_PROOF_BYTES: u64 = 64 * 1024;

/// Files a manifest may list.
pub const MAX_FILES: usize = 100_000;
/// Entries an archive may hold (files, directories, and the metadata).
pub const MAX_ENTRIES: usize = MAX_FILES + 1_000;
/// Bytes of a path inside a bundle.
pub const MAX_PATH_BYTES: usize = 1024;
/// Bytes of `manifest.json`, its envelope or `root.merkle` (read into memory).
pub const MAX_METADATA_BYTES: u64 = 64 * 1024 * 1024;
/// An archive may inflate to at most this many times its compressed size (beyond its
/// first [`RATIO_ALLOWANCE`] bytes): more is a decompression bomb.
pub const MAX_RATIO: u64 = 200;
pub const RATIO_ALLOWANCE: u64 = 16 * 1024 * 1024;

/// Why a bundle does not verify, naming the file and the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the bundle: {0}")]
    Read(String),
    #[error("{path}: the bundle has no {path}")]
    MissingMetadata { path: &'static str },
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error("{MANIFEST_ENVELOPE}: {0}")]
    Signature(DsseError),
    #[error("{MANIFEST}: the file differs from the payload signed in {MANIFEST_ENVELOPE}")]
    ManifestNotSigned,
    #[error(
        "{MANIFEST_ENVELOPE}: signed by {key_id}, which the keyring says was not valid at {signed_at} (valid {window})"
    )]
    KeyNotValid { key_id: String, signed_at: String, window: String },
    #[error("{path}: listed in the manifest but not in the bundle")]
    FileMissing { path: String },
    #[error("{path}: in the bundle but not listed in the manifest")]
    FileUnlisted { path: String },
    #[error("{path}: {found} bytes, the manifest says {expected}")]
    FileSize { path: String, expected: u64, found: u64 },
    #[error("{path}: SHA-256 is {found}, the manifest says {expected}")]
    FileDigest { path: String, expected: String, found: String },
    #[error("{MANIFEST}: the Merkle root of the listed files is {computed}, the manifest says {stated}")]
    RootMismatch { stated: String, computed: String },
    #[error("{ROOT_FILE}: holds {found:?}, the manifest's root is {expected}")]
    RootFileMismatch { expected: String, found: String },
    #[error("{path}: refused: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("the bundle holds more entries than the {0} allowed")]
    TooManyEntries(usize),
    #[error("the archive inflates more than {MAX_RATIO} times its size (a decompression bomb?)")]
    Bomb,
    #[error("{TIMESTAMP_FILE}: {0}")]
    Timestamp(crate::tsa::TsaError),
    #[error("{path}: {message}")]
    Proof { path: String, message: String },
}

impl BundleError {
    /// The check that failed, for machines (`file_digest`, `signature`, …).
    pub fn check(&self) -> &'static str {
        match self {
            Self::Read(_) => "read",
            Self::MissingMetadata { .. } => "missing_metadata",
            Self::Malformed { .. } => "malformed",
            Self::Signature(_) => "signature",
            Self::ManifestNotSigned => "manifest_not_signed",
            Self::KeyNotValid { .. } => "key_not_valid",
            Self::FileMissing { .. } => "file_missing",
            Self::FileUnlisted { .. } => "file_unlisted",
            Self::FileSize { .. } => "file_size",
            Self::FileDigest { .. } => "file_digest",
            Self::RootMismatch { .. } => "merkle_root",
            Self::RootFileMismatch { .. } => "root_file",
            Self::Unsafe { .. } => "unsafe_entry",
            Self::TooManyEntries(_) => "too_many_entries",
            Self::Bomb => "decompression_bomb",
            Self::Timestamp(_) => "timestamp",
            Self::Proof { .. } => "inclusion_proof",
        }
    }
}

/// One file of a bundle, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub media_type: String,
}

impl FileEntry {
    /// The file's leaf in the bundle's Merkle tree.
    pub fn leaf(&self) -> Hash {
        leaf_hash(format!("{} {} {}", self.sha256, self.size, self.path).as_bytes())
    }
}

/// `proofs/<log>/<name>.json`: the proof that a file of the bundle is a record of a
/// custos log, at the checkpoint `proofs/<log>.checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// `timeline` or `audit`: the log, and the directory this proof is under.
    pub log: String,
    /// The record's file in the bundle, under `<log>/`: its bytes are the leaf's.
    pub leaf: String,
    pub leaf_index: u64,
    /// The checkpoint's size.
    pub tree_size: u64,
    /// RFC 9162 §2.1.3 inclusion proof: sibling hashes from the leaf up, standard base64.
    pub audit_path: Vec<String>,
}

impl InclusionProof {
    /// The proof's bytes as written to its file (pretty JSON, a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a proof serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Whether the file at `path` is a record of a provable log (`timeline/…`, `audit/…`).
fn log_record_dir(path: &str) -> bool {
    PROOF_LOGS.iter().any(|log| path.strip_prefix(log).is_some_and(|rest| rest.starts_with('/')))
}

/// What a file under `proofs/` is to the verifier, by its path: the checkpoint of a log
/// (`proofs/<log>.checkpoint`), an inclusion proof in a log (`proofs/<log>/<name>.json`),
/// or neither (`None`: a plain file, checked by its digest alone, as in bundles made
/// before proofs were checked).
fn proof_file(path: &str) -> Option<(&'static str, bool)> {
    let rest = path.strip_prefix(PROOFS_DIR)?.strip_prefix('/')?;
    PROOF_LOGS.iter().find_map(|&log| {
        let after = rest.strip_prefix(log)?;
        if after == ".checkpoint" {
            return Some((log, true));
        }
        let name = after.strip_prefix('/')?;
        (name.ends_with(".json") && !name.contains('/')).then_some((log, false))
    })
}

/// A bundle's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    pub bundle_id: String,
    pub tenant_id: String,
    pub case_id: String,
    /// `evaluation`, `job`, `export` or `case`.
    pub kind: String,
    /// What the bundle preserves: a rule run, a job, an export, the case.
    pub resource_id: String,
    pub created_at: Timestamp,
    /// The token (id and name) that asked for the bundle.
    pub created_by: String,
    pub custos_version: String,
    /// The deployment that made it (`--deployment`).
    pub deployment: String,
    /// The key that signs `manifest.dsse.json` (its `/v1/keys` id).
    pub key_id: String,
    /// Every file but the metadata, in bytewise path order.
    pub files: Vec<FileEntry>,
    /// RFC 6962 root over the files, lowercase hex.
    pub merkle_root: String,
}

/// The Merkle root over `files`, in their order.
pub fn merkle_root(files: &[FileEntry]) -> Hash {
    let mut root = RootBuilder::new();
    for file in files {
        root.push(file.leaf());
    }
    root.root()
}

/// Why a path cannot name a file in a bundle; `None` when it can: relative, `/`-separated,
/// no empty, `.` or `..` component, no backslash or control character, at most
/// [`MAX_PATH_BYTES`] bytes.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("the path is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return Some("the path is over 1024 bytes");
    }
    if path.starts_with('/') {
        return Some("the path is absolute");
    }
    if path.contains('\\') {
        return Some("the path holds a backslash");
    }
    if path.chars().any(char::is_control) {
        return Some("the path holds a control character");
    }
    for component in path.split('/') {
        match component {
            "" => return Some("the path has an empty component"),
            "." | ".." => return Some("the path has a '.' or '..' component"),
            _ => {}
        }
    }
    None
}

impl Manifest {
    /// The manifest's bytes as written to `manifest.json` (pretty JSON, a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The signed envelope of these exact manifest bytes.
    pub fn sign(bytes: &[u8], signers: &[&DsseSigner]) -> Envelope {
        Envelope::sign(PAYLOAD_TYPE_MANIFEST, bytes, signers)
    }

    /// Checks what the format requires beyond its JSON: the format name, file paths,
    /// bytewise path order without repeats, digests as 64 lowercase hex digits.
    pub fn check(&self) -> Result<(), String> {
        if self.format != BUNDLE_FORMAT {
            return Err(format!("format is {:?}, expected {BUNDLE_FORMAT:?}", self.format));
        }
        if self.files.len() > MAX_FILES {
            return Err(format!("lists {} files, over {MAX_FILES}", self.files.len()));
        }
        for (i, file) in self.files.iter().enumerate() {
            if let Some(problem) = path_problem(&file.path) {
                return Err(format!("files[{i}].path {:?}: {problem}", file.path));
            }
            if METADATA_FILES.contains(&file.path.as_str()) {
                return Err(format!("files[{i}].path {:?} names a metadata file", file.path));
            }
            if !is_hex_digest(&file.sha256) {
                return Err(format!("files[{i}].sha256 must be 64 lowercase hex digits"));
            }
            if i > 0 && self.files[i - 1].path.as_bytes() >= file.path.as_bytes() {
                return Err(format!("files[{i}].path {:?} is out of order or repeated", file.path));
            }
        }
        if !is_hex_digest(&self.merkle_root) {
            return Err("merkle_root must be 64 lowercase hex digits".into());
        }
        Ok(())
    }
}

fn is_hex_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A key a verifier trusts, with the window in which it signed (from `/v1/keys`); a key
/// given alone has no window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: DsseKey,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
}

impl TrustedKey {
    fn window(&self) -> String {
        let show = |t: Option<Timestamp>| t.map_or_else(|| "…".to_owned(), |t| t.to_string());
        format!("{} to {}", show(self.not_before), show(self.not_after))
    }

    /// Whether the key was signing at `at` (`not_before` ≤ `at` < `not_after`).
    pub fn valid_at(&self, at: Timestamp) -> bool {
        self.not_before.is_none_or(|from| from <= at) && self.not_after.is_none_or(|until| at < until)
    }
}

/// Reads a keyring: the JSON of `GET /v1/keys` (`{"keys": [{"key_id", "algorithm",
/// "public_key", "not_before", "not_after"}, …]}`), saved by the verifier.
pub fn parse_keyring(json: &[u8]) -> Result<Vec<TrustedKey>, String> {
    #[derive(serde::Deserialize)]
    struct Published {
        key_id: String,
        algorithm: String,
        public_key: String,
        not_before: Option<Timestamp>,
        not_after: Option<Timestamp>,
    }
    #[derive(serde::Deserialize)]
    struct Keys {
        keys: Vec<Published>,
    }
    let keys: Keys = serde_json::from_slice(json).map_err(|e| format!("not a /v1/keys document: {e}"))?;
    keys.keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            if k.algorithm != "ed25519" {
                return Err(format!("keys[{i}]: algorithm {:?} is not ed25519", k.algorithm));
            }
            let raw: [u8; 32] = crate::dsse::decode_base64(&k.public_key)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("keys[{i}].public_key must be 32 bytes of base64"))?;
            let key = DsseKey::from_bytes(&raw).ok_or_else(|| format!("keys[{i}].public_key is not an Ed25519 key"))?;
            if key.key_id() != k.key_id {
                return Err(format!("keys[{i}].key_id is {:?} but the key's id is {:?}", k.key_id, key.key_id()));
            }
            Ok(TrustedKey { key, not_before: k.not_before, not_after: k.not_after })
        })
        .collect()
}

/// What a verified bundle is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BundleReport {
    pub bundle_id: String,
    /// SHA-256 of `manifest.json`: the subject of the bundle's provenance attestation.
    pub manifest_sha256: String,
    pub tenant_id: String,
    pub case_id: String,
    pub kind: String,
    pub files: usize,
    pub bytes: u64,
    pub merkle_root: String,
    pub signed_by: Vec<String>,
    pub signed_at: Timestamp,
    /// The RFC 3161 timestamp of the root, verified against the trusted TSA
    /// certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<crate::tsa::VerifiedTimestamp>,
    /// The bundle carries a timestamp that was not checked: no TSA certificate was
    /// trusted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timestamp_unchecked: bool,
    /// Inclusion proofs of the bundle's log records, each verified to its signed
    /// checkpoint.
    #[serde(skip_serializing_if = "is_zero")]
    pub inclusion_proofs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The files of a bundle as read: the metadata in memory, every other file hashed.
#[derive(Debug, Default)]
struct Contents {
    metadata: BTreeMap<&'static str, Vec<u8>>,
    files: BTreeMap<String, (u64, String)>,
    /// Files under `proofs/`, kept to be checked once the manifest vouches for them.
    proofs: BTreeMap<String, Vec<u8>>,
    /// The RFC 6962 leaf hash of each log record file.
    leaves: BTreeMap<String, Hash>,
}

impl Contents {
    /// Reads one file of the bundle at `path` (relative to the bundle's directory).
    fn add(&mut self, path: &str, mut reader: impl Read) -> Result<(), BundleError> {
        if let Some(problem) = path_problem(path) {
            return Err(BundleError::Unsafe { path: path.to_owned(), reason: problem.to_owned() });
        }
        let duplicate = || BundleError::Unsafe { path: path.to_owned(), reason: "a second entry of this path".into() };
        if let Some(&name) = METADATA_FILES.iter().find(|&&m| m == path) {
            let mut bytes = Vec::new();
            (&mut reader).take(MAX_METADATA_BYTES + 1).read_to_end(&mut bytes).map_err(|e| read_failure(path, &e))?;
            if bytes.len() as u64 > MAX_METADATA_BYTES {
                return Err(BundleError::Malformed { path: path.into(), message: "over 64 MiB".into() });
            }
            if self.metadata.insert(name, bytes).is_some() {
                return Err(duplicate());
            }
            return Ok(());
        }
        if self.files.len() >= MAX_FILES {
            return Err(BundleError::TooManyEntries(MAX_FILES));
        }
        if self.files.contains_key(path) {
            return Err(duplicate());
        }
        if proof_file(path).is_some() {
            let mut bytes = Vec::new();
            (&mut reader).take(MAX_PROOF_BYTES + 1).read_to_end(&mut bytes).map_err(|e| read_failure(path, &e))?;
            if bytes.len() as u64 > MAX_PROOF_BYTES {
                return Err(BundleError::Malformed { path: path.into(), message: "a proof file over 64 KiB".into() });
            }
            self.files.insert(path.to_owned(), (bytes.len() as u64, hex::encode(Sha256::digest(&bytes))));
            self.proofs.insert(path.to_owned(), bytes);
            return Ok(());
        }
        let (size, digest) = if log_record_dir(path) {
            let mut leaf = Sha256::new();
            leaf.update([0u8]);
            let mut tee = Tee { inner: &mut reader, hasher: &mut leaf };
            let found = hash_reader(&mut tee).map_err(|e| read_failure(path, &e))?;
            self.leaves.insert(path.to_owned(), leaf.finalize().into());
            found
        } else {
            hash_reader(&mut reader).map_err(|e| read_failure(path, &e))?
        };
        self.files.insert(path.to_owned(), (size, hex::encode(digest)));
        Ok(())
    }

    fn metadata(&self, path: &'static str) -> Result<&[u8], BundleError> {
        self.metadata.get(path).map(Vec::as_slice).ok_or(BundleError::MissingMetadata { path })
    }

    fn verify(mut self, keys: &[TrustedKey], tsa: &[x509_cert::Certificate]) -> Result<BundleReport, BundleError> {
        let mut present = std::mem::take(&mut self.files);
        let envelope = Envelope::parse(self.metadata(MANIFEST_ENVELOPE)?).map_err(BundleError::Signature)?;
        let manifest_bytes = self.metadata(MANIFEST)?;
        let root_file = self.metadata(ROOT_FILE)?;
        let dsse_keys: Vec<DsseKey> = keys.iter().map(|k| k.key.clone()).collect();
        let verified = envelope.verify(&dsse_keys, PAYLOAD_TYPE_MANIFEST).map_err(BundleError::Signature)?;
        if verified.payload != manifest_bytes {
            return Err(BundleError::ManifestNotSigned);
        }
        let malformed = |message: String| BundleError::Malformed { path: MANIFEST.into(), message };
        let manifest: Manifest = serde_json::from_slice(manifest_bytes).map_err(|e| malformed(e.to_string()))?;
        manifest.check().map_err(malformed)?;
        // The signature counts only from a key valid when the bundle was made.
        let signed_by: Vec<&TrustedKey> =
            verified.signed_by.iter().filter_map(|id| keys.iter().find(|k| k.key.key_id() == id)).collect();
        if !signed_by.iter().any(|k| k.valid_at(manifest.created_at)) {
            let key = signed_by[0];
            return Err(BundleError::KeyNotValid {
                key_id: key.key.key_id().to_owned(),
                signed_at: manifest.created_at.to_string(),
                window: key.window(),
            });
        }

        let mut bytes = 0;
        for file in &manifest.files {
            let Some((size, digest)) = present.remove(&file.path) else {
                return Err(BundleError::FileMissing { path: file.path.clone() });
            };
            if size != file.size {
                return Err(BundleError::FileSize { path: file.path.clone(), expected: file.size, found: size });
            }
            if digest != file.sha256 {
                return Err(BundleError::FileDigest {
                    path: file.path.clone(),
                    expected: file.sha256.clone(),
                    found: digest,
                });
            }
            bytes += size;
        }
        if let Some(path) = present.into_keys().next() {
            return Err(BundleError::FileUnlisted { path });
        }
        let computed = hex::encode(merkle_root(&manifest.files));
        if computed != manifest.merkle_root {
            return Err(BundleError::RootMismatch { stated: manifest.merkle_root, computed });
        }
        let found = String::from_utf8_lossy(root_file);
        if found.strip_suffix('\n') != Some(manifest.merkle_root.as_str()) {
            return Err(BundleError::RootFileMismatch { expected: manifest.merkle_root, found: found.into_owned() });
        }
        let inclusion_proofs = check_proofs(&manifest, keys, &self.proofs, &self.leaves)?;
        let (timestamp, timestamp_unchecked) = match self.metadata.get(TIMESTAMP_FILE) {
            None => (None, false),
            Some(_) if tsa.is_empty() => (None, true),
            Some(token) => {
                let root: Hash = hex::decode(&manifest.merkle_root)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .expect("the manifest's root was checked to be 64 hex digits");
                (Some(crate::tsa::verify_token(token, &root, None, tsa).map_err(BundleError::Timestamp)?), false)
            }
        };
        let manifest_sha256 = hex::encode(Sha256::digest(manifest_bytes));
        Ok(BundleReport {
            bundle_id: manifest.bundle_id,
            manifest_sha256,
            tenant_id: manifest.tenant_id,
            case_id: manifest.case_id,
            kind: manifest.kind,
            files: manifest.files.len(),
            bytes,
            merkle_root: manifest.merkle_root,
            // Only the keys that count: a signature by a key outside its window is not
            // reported as a signer.
            signed_by: signed_by
                .iter()
                .filter(|k| k.valid_at(manifest.created_at))
                .map(|k| k.key.key_id().to_owned())
                .collect(),
            signed_at: manifest.created_at,
            timestamp,
            timestamp_unchecked,
            inclusion_proofs,
        })
    }
}

/// A reader that also feeds what it reads to a hasher.
struct Tee<'a, R: Read> {
    inner: &'a mut R,
    hasher: &'a mut Sha256,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Checks every file under `proofs/` (all listed in the verified manifest by now):
/// checkpoints against the keyring, proofs against their leaf files and checkpoints.
/// Returns how many proofs verified.
fn check_proofs(
    manifest: &Manifest,
    keys: &[TrustedKey],
    files: &BTreeMap<String, Vec<u8>>,
    leaves: &BTreeMap<String, Hash>,
) -> Result<usize, BundleError> {
    let failed = |path: &str, message: String| BundleError::Proof { path: path.to_owned(), message };
    // Keys that existed when the bundle was made may have signed its checkpoints (a
    // checkpoint is signed before the bundle, perhaps by a key since retired).
    let existing: Vec<&TrustedKey> =
        keys.iter().filter(|k| k.not_before.is_none_or(|from| from <= manifest.created_at)).collect();
    let mut checkpoints = BTreeMap::new();
    let mut proofs = Vec::new();
    for (path, bytes) in files {
        let Some((log, is_checkpoint)) = proof_file(path) else { continue };
        if is_checkpoint {
            let origin = format!("{}/tenants/{}/{log}", manifest.deployment, manifest.tenant_id);
            let verifiers: Vec<crate::note::NoteVerifier> = existing
                .iter()
                .filter_map(|k| crate::note::NoteVerifier::new(&origin, &k.key.to_bytes()).ok())
                .collect();
            let (checkpoint, _) = crate::note::Checkpoint::open(bytes, &origin, &verifiers).map_err(|e| {
                failed(path, format!("the checkpoint does not verify with a key the keyring held at signing: {e}"))
            })?;
            checkpoints.insert(log, checkpoint);
        } else {
            let proof: InclusionProof =
                serde_json::from_slice(bytes).map_err(|e| failed(path, format!("not an inclusion proof: {e}")))?;
            if proof.format != PROOF_FORMAT {
                return Err(failed(path, format!("format is {:?}, expected {PROOF_FORMAT:?}", proof.format)));
            }
            if proof.log != log {
                return Err(failed(path, format!("a proof in {PROOFS_DIR}/{log}/ names log {:?}", proof.log)));
            }
            proofs.push((path, proof));
        }
    }
    for (path, proof) in &proofs {
        let Some(checkpoint) = checkpoints.get(proof.log.as_str()) else {
            return Err(failed(path, format!("the bundle has no {PROOFS_DIR}/{}.checkpoint", proof.log)));
        };
        if proof.tree_size != checkpoint.size {
            return Err(failed(
                path,
                format!("the proof is to a tree of {} leaves, the checkpoint has {}", proof.tree_size, checkpoint.size),
            ));
        }
        if !proof.leaf.strip_prefix(proof.log.as_str()).is_some_and(|rest| rest.starts_with('/')) {
            return Err(failed(path, format!("its leaf {:?} is not under {}/", proof.leaf, proof.log)));
        }
        let Some(leaf) = leaves.get(&proof.leaf) else {
            return Err(failed(path, format!("its leaf {:?} is not in the bundle", proof.leaf)));
        };
        let audit_path: Vec<Hash> = proof
            .audit_path
            .iter()
            .map(|h| crate::dsse::decode_base64(h).and_then(|b| b.try_into().ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| failed(path, "audit_path must hold 32-byte hashes in base64".into()))?;
        crate::merkle::verify_inclusion(proof.leaf_index, proof.tree_size, leaf, &audit_path, &checkpoint.root)
            .map_err(|e| {
                failed(
                    path,
                    format!(
                        "{} (leaf {}) is not in the {} log's checkpoint of {} leaves: {e}",
                        proof.leaf, proof.leaf_index, proof.log, checkpoint.size
                    ),
                )
            })?;
    }
    Ok(proofs.len())
}

/// The size and SHA-256 of everything `reader` yields.
pub fn hash_reader(reader: &mut impl Read) -> std::io::Result<(u64, Hash)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().into()))
}

/// Writes a bundle as a deterministic `.tar.gz`: the same files always give the same
/// bytes, which any implementation can reproduce. Entries are `<bundle id>/<path>`, added
/// in bytewise path order (metadata files included; out-of-order adds are refused),
/// regular files only, mode 0644, owner and group 0 without names, modification time 0,
/// GNU long names past 100 bytes. The tar stream is wrapped by [`StoredGzip`]: stored
/// (uncompressed) deflate blocks in a fixed layout, so the bytes depend on no
/// compressor's version, and inflate as fast as they are read (evidence is often
/// compressed already).
pub struct ArchiveWriter<W: std::io::Write> {
    tar: tar::Builder<StoredGzip<W>>,
    top: String,
    last: Option<String>,
}

impl<W: std::io::Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter").field("top", &self.top).field("last", &self.last).finish_non_exhaustive()
    }
}

impl<W: std::io::Write> ArchiveWriter<W> {
    pub fn new(out: W, bundle_id: &str) -> Self {
        let mut tar = tar::Builder::new(StoredGzip::new(out));
        tar.mode(tar::HeaderMode::Deterministic);
        Self { tar, top: bundle_id.to_owned(), last: None }
    }

    /// Adds the file at `path` of `size` bytes, read from `data`.
    pub fn add(&mut self, path: &str, size: u64, data: impl Read) -> std::io::Result<()> {
        if let Some(problem) = path_problem(path) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{path}: {problem}")));
        }
        if self.last.as_deref().is_some_and(|last| last.as_bytes() >= path.as_bytes()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{path}: added out of bytewise path order"),
            ));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        self.tar.append_data(&mut header, format!("{}/{path}", self.top), data.take(size))?;
        self.last = Some(path.to_owned());
        Ok(())
    }

    /// Ends the archive and the gzip member; returns the output.
    pub fn finish(self) -> std::io::Result<W> {
        self.tar.into_inner()?.finish()
    }
}

/// Largest stored deflate block (RFC 1951 §3.2.4: LEN is 16 bits).
const STORED_BLOCK: usize = 65_535;

/// A gzip member (RFC 1952) of stored deflate blocks (RFC 1951 §3.2.4), in one fixed
/// layout: the header `1f 8b 08 00 00000000 00 ff` (no flags, modification time 0, no
/// extra flags, unknown OS); the data in blocks of exactly 65,535 bytes, each
/// `00 LEN NLEN` and the bytes (LEN little-endian, NLEN its complement); one final block
/// `01 LEN NLEN` with the remaining 0 to 65,534 bytes; then the CRC-32 and the length
/// modulo 2³², little-endian. Written by hand because it is this small and the layout
/// is the format.
pub struct StoredGzip<W: std::io::Write> {
    out: W,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u32,
    started: bool,
}

impl<W: std::io::Write> std::fmt::Debug for StoredGzip<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredGzip").field("size", &self.size).finish_non_exhaustive()
    }
}

impl<W: std::io::Write> StoredGzip<W> {
    pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

    pub fn new(out: W) -> Self {
        Self { out, block: Vec::with_capacity(STORED_BLOCK), crc: crc32fast::Hasher::new(), size: 0, started: false }
    }

    fn start(&mut self) -> std::io::Result<()> {
        if !self.started {
            self.out.write_all(&Self::HEADER)?;
            self.started = true;
        }
        Ok(())
    }

    fn emit(&mut self, last: bool, data: &[u8]) -> std::io::Result<()> {
        self.start()?;
        let len = u16::try_from(data.len()).expect("a stored block holds at most 65,535 bytes");
        let [l0, l1] = len.to_le_bytes();
        self.out.write_all(&[u8::from(last), l0, l1, !l0, !l1])?;
        self.out.write_all(data)
    }

    /// Writes the final block and the trailer; returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let block = std::mem::take(&mut self.block);
        self.emit(true, &block)?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&self.size.to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: std::io::Write> std::io::Write for StoredGzip<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // A full block is held back until more data shows it is not the last one.
        if self.block.len() == STORED_BLOCK && !data.is_empty() {
            let block = std::mem::take(&mut self.block);
            self.emit(false, &block)?;
            self.block = block;
            self.block.clear();
        }
        let n = data.len().min(STORED_BLOCK - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        self.size = self.size.wrapping_add(n as u32);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Verifies bundles against trusted keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<TrustedKey>,
    max_entries: usize,
    tsa: Vec<x509_cert::Certificate>,
}

impl Verifier {
    pub fn new(keys: Vec<TrustedKey>) -> Self {
        Self { keys, max_entries: MAX_ENTRIES, tsa: Vec::new() }
    }

    /// Trusts these TSA certificates for a bundle's `timestamp.tsr` (without any, a
    /// timestamp is reported present but unchecked).
    pub fn with_tsa_certificates(mut self, certificates: Vec<x509_cert::Certificate>) -> Self {
        self.tsa = certificates;
        self
    }

    /// Refuses bundles of more than `max` entries (default [`MAX_ENTRIES`]).
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.min(MAX_ENTRIES);
        self
    }

    /// A verification fed file by file, in any order: for bundles read from elsewhere
    /// than a directory or an archive (an object store).
    pub fn check(&self) -> BundleCheck<'_> {
        BundleCheck { verifier: self, contents: Contents::default(), entries: 0 }
    }

    /// Verifies the bundle in directory `dir` (the one holding `manifest.json`). Links
    /// and special files are refused, not followed.
    pub fn verify_dir(&self, dir: &Path) -> Result<BundleReport, BundleError> {
        let mut check = self.check();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((at, prefix)) = pending.pop() {
            let mut children: Vec<_> = std::fs::read_dir(&at)
                .map_err(|e| BundleError::Read(format!("{}: {e}", at.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| BundleError::Read(format!("{}: {e}", at.display())))?;
            children.sort_by_key(std::fs::DirEntry::file_name);
            for child in children {
                check.count_entry()?;
                let name = child.file_name();
                let name = name.to_str().ok_or_else(|| BundleError::Unsafe {
                    path: format!("{prefix}{}", name.to_string_lossy()),
                    reason: "the name is not UTF-8".into(),
                })?;
                let path = format!("{prefix}{name}");
                let kind = child.file_type().map_err(|e| BundleError::Read(format!("{path}: {e}")))?;
                if kind.is_dir() {
                    pending.push((child.path(), format!("{path}/")));
                } else if kind.is_file() {
                    let file =
                        std::fs::File::open(child.path()).map_err(|e| BundleError::Read(format!("{path}: {e}")))?;
                    check.read(&path, file)?;
                } else {
                    let reason = if kind.is_symlink() { "a symbolic link" } else { "not a regular file" };
                    return Err(BundleError::Unsafe { path, reason: reason.into() });
                }
            }
        }
        check.finish()
    }

    /// Verifies a `.tar.gz` of a bundle: every entry under one top directory, read once,
    /// streaming.
    pub fn verify_tar_gz(&self, input: impl Read) -> Result<BundleReport, BundleError> {
        let compressed = Counted::new(input);
        let compressed_bytes = compressed.count.clone();
        let inflated = Counted::new(flate2::read::GzDecoder::new(compressed));
        let inflated_bytes = inflated.count.clone();
        let bomb_check = move || {
            let packed = compressed_bytes.get();
            let unpacked = inflated_bytes.get();
            unpacked <= RATIO_ALLOWANCE.max(packed.saturating_mul(MAX_RATIO))
        };
        let mut archive = tar::Archive::new(Guarded { inner: inflated, ok: bomb_check });
        let mut check = self.check();
        let mut top: Option<String> = None;
        let read_error = |e: std::io::Error| read_failure("the archive", &e);
        let entries = archive.entries().map_err(read_error)?;
        for entry in entries {
            check.count_entry()?;
            let entry = entry.map_err(read_error)?;
            let raw = entry.path_bytes();
            let path = std::str::from_utf8(&raw)
                .map_err(|_| BundleError::Unsafe {
                    path: String::from_utf8_lossy(&raw).into_owned(),
                    reason: "the name is not UTF-8".into(),
                })?
                .trim_end_matches('/')
                .to_owned();
            if let Some(problem) = path_problem(&path) {
                return Err(BundleError::Unsafe { path, reason: problem.to_owned() });
            }
            let (first, rest) = path.split_once('/').unwrap_or((path.as_str(), ""));
            match &top {
                None => top = Some(first.to_owned()),
                Some(top) if top != first => {
                    return Err(BundleError::Unsafe {
                        path: path.clone(),
                        reason: format!("outside the bundle's directory {top}/"),
                    });
                }
                Some(_) => {}
            }
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                other => {
                    let reason = match other {
                        tar::EntryType::Symlink => "a symbolic link".to_owned(),
                        tar::EntryType::Link => "a hard link".to_owned(),
                        tar::EntryType::Char | tar::EntryType::Block => "a device file".to_owned(),
                        tar::EntryType::Fifo => "a FIFO".to_owned(),
                        other => format!("an entry of type {:?}", other.as_byte() as char),
                    };
                    return Err(BundleError::Unsafe { path, reason });
                }
            }
            if rest.is_empty() {
                return Err(BundleError::Unsafe { path, reason: "a file outside the bundle's directory".into() });
            }
            let rest = rest.to_owned();
            check.read(&rest, entry)?;
        }
        if top.is_none() {
            return Err(BundleError::Read("the archive is empty".into()));
        }
        check.finish()
    }
}

/// A bundle's verification, fed one file at a time ([`Verifier::check`]).
#[derive(Debug)]
pub struct BundleCheck<'a> {
    verifier: &'a Verifier,
    contents: Contents,
    entries: usize,
}

impl BundleCheck<'_> {
    /// Counts an entry (a file or a directory) against the verifier's bound.
    fn count_entry(&mut self) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.verifier.max_entries {
            return Err(BundleError::TooManyEntries(self.verifier.max_entries));
        }
        Ok(())
    }

    fn read(&mut self, path: &str, data: impl Read) -> Result<(), BundleError> {
        self.contents.add(path, data)
    }

    /// Reads the bundle's file at `path` (relative to the bundle), streaming.
    pub fn add(&mut self, path: &str, data: impl Read) -> Result<(), BundleError> {
        self.count_entry()?;
        self.read(path, data)
    }

    /// The verdict, once every file was added.
    pub fn finish(self) -> Result<BundleReport, BundleError> {
        self.contents.verify(&self.verifier.keys, &self.verifier.tsa)
    }
}

const BOMB_MARK: &str = "decompression bomb";

/// A read error of `what`: [`BundleError::Bomb`] when the ratio guard stopped it.
fn read_failure(what: &str, error: &std::io::Error) -> BundleError {
    if error.to_string().contains(BOMB_MARK) {
        BundleError::Bomb
    } else {
        BundleError::Read(format!("{what}: {error}"))
    }
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R> Counted<R> {
    fn new(inner: R) -> Self {
        Self { inner, count: Default::default() }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// A reader that fails once `ok` says the inflation ratio is exceeded.
struct Guarded<R, F> {
    inner: R,
    ok: F,
}

impl<R: Read, F: Fn() -> bool> Read for Guarded<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !(self.ok)() {
            return Err(std::io::Error::other(BOMB_MARK));
        }
        Ok(n)
    }
}

/// Checks that `envelope` is this verified bundle's provenance: a SLSA provenance by one
/// of `keys` about the bundle's `manifest.json`, custos's own (not a platform's report about
/// the same digest), of the bundle's tenant, and naming the bundle as its invocation.
pub fn check_bundle_attestation(
    report: &BundleReport,
    envelope: &Envelope,
    keys: &[TrustedKey],
) -> Result<crate::intoto::VerifiedAttestation, crate::intoto::AttestationError> {
    use crate::intoto::{AttestationError, Origin, OriginField};
    let dsse_keys: Vec<DsseKey> = keys.iter().map(|k| k.key.clone()).collect();
    let verified =
        crate::intoto::verify_provenance(envelope, &dsse_keys, &report.manifest_sha256, Some(&report.tenant_id))?;
    if verified.origin != Origin::Custos {
        return Err(AttestationError::Origin {
            field: OriginField::BuildType,
            message: format!(
                "the statement is a platform's report (build type {:?}), not custos's provenance of the bundle",
                verified.statement.predicate.build_definition.build_type
            ),
        });
    }
    let invocation =
        verified.statement.predicate.run_details.metadata.as_ref().and_then(|m| m.invocation_id.as_deref());
    if invocation != Some(report.bundle_id.as_str()) {
        return Err(AttestationError::Predicate {
            predicate_type: crate::intoto::SLSA_PROVENANCE.into(),
            message: format!("the invocation is {invocation:?}, not the bundle {:?}", report.bundle_id),
        });
    }
    // As for the manifest, a signature counts only from a key valid when the bundle was made.
    let in_window =
        verified.signed_by.iter().any(|id| keys.iter().any(|k| k.key.key_id() == id && k.valid_at(report.signed_at)));
    if !in_window {
        return Err(AttestationError::KeyWindow {
            signed_by: verified.signed_by.join(", "),
            at: report.signed_at.to_string(),
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests;
