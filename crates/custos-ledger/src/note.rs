//! Signed notes (C2SP `signed-note`) with Ed25519 keys, and the checkpoints of a
//! transparency log (C2SP `tlog-checkpoint`) that custos signs as such notes.
//!
//! The byte formats, exactly as <https://c2sp.org/signed-note> and Go's
//! `golang.org/x/mod/sumdb/note` define them:
//!
//! - A **note** is UTF-8 text ending in `\n`, with no control character but `\n`, then
//!   a blank line, then one line per signature: `— <key name> <base64(key id ‖ sig)>`
//!   (U+2014 EM DASH and a space first; standard padded base64). The signature is over
//!   the text, final newline included, blank line excluded.
//! - A **key id** is the first 4 bytes of `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`
//!   (`0x01`: the Ed25519 algorithm byte), read big-endian.
//! - A **verifier key** is `<key name>+<key id, 8 lowercase hex digits>+<base64(0x01 ‖
//!   32-byte public key)>`. Key names are non-empty, without spaces or `+`.
//! - A **checkpoint** is a note whose text is the log's origin, its size in decimal (no
//!   leading zeros) and its root hash in standard base64, one per line, then any
//!   extension lines; the log signs it with a key named as its origin.
//!
//! Verification is strict where it can be: only known keys count, every signature by a
//! known key must verify, and a note needs at least one such signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The algorithm byte of Ed25519 keys in key ids and verifier keys.
pub const ALG_ED25519: u8 = 0x01;
/// What a signature line starts with: U+2014 EM DASH and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// At most this many signature lines, as Go's `note.Open` allows.
const MAX_SIGNATURES: usize = 100;
/// Notes larger than this are refused unread (a checkpoint is under 200 bytes).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

/// Why a note, a key or a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    InvalidName(String),
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("note is {0} bytes, over the {MAX_NOTE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the signature of {name} (key id {key_id:08x}) does not verify")]
    BadSignature { name: String, key_id: u32 },
    #[error("the note has no signature by a known key (signed by: {signers})")]
    NoKnownSignature { signers: String },
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// Whether `name` may name a key: non-empty, no Unicode white space, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// The key id of an Ed25519 public key under `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALG_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// An Ed25519 key that signs notes under a name.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: u32,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner").field("name", &self.name).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` with the Ed25519 key of the 32-byte `seed` (RFC 8032's
    /// private key).
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidName(name.to_owned()));
        }
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key, key_id })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The verifier of this signer's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key: self.key.verifying_key(), key_id: self.key_id }
    }

    /// Signs `text` (UTF-8 ending in `\n`, no control character but `\n`) into a note
    /// with this one signature.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        sign(text, &[self])
    }

    fn signature_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// Signs `text` into a note with one signature line per signer, in order (a key
/// rotation's overlap signs with the new key and the old one).
///
/// # Errors
///
/// When the text is not a note's text, or no signer is given.
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::MalformedNote("a note needs at least one signature"));
    }
    let mut note = format!("{text}\n");
    for signer in signers {
        note.push_str(&signer.signature_line(text));
    }
    Ok(note)
}

/// An Ed25519 public key under a name, as a verifier key string names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    key_id: u32,
}

impl NoteVerifier {
    /// The verifier of `public_key` under `name`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidName(name.to_owned()));
        }
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::MalformedVerifierKey("not an Ed25519 public key"))?;
        Ok(Self { name: name.to_owned(), key, key_id: key_id(name, public_key) })
    }

    /// Reads a verifier key string, `<name>+<hex key id>+<base64(0x01 ‖ public key)>`,
    /// and checks that its key id is the one its name and key give.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let vkey = vkey.trim();
        // A name holds no '+', but standard base64 may: split from the left.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedVerifierKey("expected <name>+<key id>+<key>"));
        };
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(NoteError::MalformedVerifierKey("the key id must be 8 lowercase hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16).expect("checked hex");
        let key = STANDARD.decode(key_b64).map_err(|_| NoteError::MalformedVerifierKey("the key is not base64"))?;
        let Some((&ALG_ED25519, public)) = key.split_first() else {
            return Err(NoteError::MalformedVerifierKey("not an Ed25519 key (algorithm byte 0x01)"));
        };
        let public: [u8; 32] =
            public.try_into().map_err(|_| NoteError::MalformedVerifierKey("an Ed25519 key is 32 bytes"))?;
        let verifier = Self::new(name, &public)?;
        if verifier.key_id != id {
            return Err(NoteError::MalformedVerifierKey("the key id does not match the name and key"));
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &signature).is_ok()
    }
}

impl std::fmt::Display for NoteVerifier {
    /// The verifier key string.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(key))
    }
}

/// A note whose signatures were checked: its text, and who signed it among the known keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    pub text: String,
    /// Names and key ids of the known keys whose signatures verified.
    pub signed_by: Vec<(String, u32)>,
    /// Names and key ids of signatures by keys not known here (not checked).
    pub unverified: Vec<(String, u32)>,
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MalformedNote("the text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote("the text holds a control character"));
    }
    Ok(())
}

/// Opens a signed note: checks its form, and every signature by a key in `known`
/// (matched by name and key id). Fails unless at least one known key signed it and
/// every known key's signature verifies.
pub fn open(note: &[u8], known: &[NoteVerifier]) -> Result<VerifiedNote, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge(note.len()));
    }
    let note = std::str::from_utf8(note).map_err(|_| NoteError::MalformedNote("not UTF-8"))?;
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote("a control character other than newline"));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(NoteError::MalformedNote("the signatures must end with a newline"));
    }
    let mut verified = VerifiedNote { text: text.to_owned(), signed_by: Vec::new(), unverified: Vec::new() };
    for (count, line) in signatures.lines().enumerate() {
        if count == MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("more than 100 signatures"));
        }
        let line = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::MalformedNote("a signature line must start with '— '"))?;
        let (name, b64) =
            line.split_once(' ').ok_or(NoteError::MalformedNote("a signature line needs a name and a signature"))?;
        let blob = STANDARD.decode(b64).map_err(|_| NoteError::MalformedNote("a signature is not base64"))?;
        if !is_valid_name(name) || blob.len() < 5 {
            return Err(NoteError::MalformedNote("a signature line is malformed"));
        }
        let key_id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        let signer = (name.to_owned(), key_id);
        if verified.signed_by.contains(&signer) || verified.unverified.contains(&signer) {
            continue;
        }
        match known.iter().find(|v| v.name == name && v.key_id == key_id) {
            Some(verifier) if verifier.verifies(text.as_bytes(), &blob[4..]) => verified.signed_by.push(signer),
            Some(_) => return Err(NoteError::BadSignature { name: name.to_owned(), key_id }),
            None => verified.unverified.push(signer),
        }
    }
    if verified.signed_by.is_empty() {
        let signers = verified.unverified.iter().map(|(n, id)| format!("{n}+{id:08x}")).collect::<Vec<_>>().join(", ");
        return Err(NoteError::NoKnownSignature { signers });
    }
    Ok(verified)
}

/// A log's signed statement of its size and root hash (C2SP `tlog-checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log: for custos, `<deployment>/tenants/<tenant>/<log>`.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Lines after the root hash, if any (custos writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, size and root, one per line, then the extension lines.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Reads a checkpoint's note text.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let body = text.strip_suffix('\n').ok_or(NoteError::MalformedCheckpoint("the text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::MalformedCheckpoint("no origin line"))?;
        let size = lines.next().ok_or(NoteError::MalformedCheckpoint("no tree size line"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(NoteError::MalformedCheckpoint("the tree size must be a decimal number without leading zeros"));
        }
        let size = size.parse().map_err(|_| NoteError::MalformedCheckpoint("the tree size is out of range"))?;
        let root = lines.next().ok_or(NoteError::MalformedCheckpoint("no root hash line"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::MalformedCheckpoint("the root hash must be 32 bytes in standard base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::MalformedCheckpoint("an extension line is empty"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }

    /// Signs the checkpoint with `signer`, which must be named as the origin.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, NoteError> {
        self.sign_all(&[signer])
    }

    /// Signs the checkpoint with every signer, each named as the origin.
    pub fn sign_all(&self, signers: &[&NoteSigner]) -> Result<String, NoteError> {
        if let Some(signer) = signers.iter().find(|s| s.name() != self.origin) {
            return Err(NoteError::WrongOrigin { expected: signer.name().to_owned(), found: self.origin.clone() });
        }
        sign(&self.to_text(), signers)
    }

    /// Opens a signed checkpoint of the log `origin`: the note must carry a valid
    /// signature by one of `known`, under the origin's name.
    pub fn open(note: &[u8], origin: &str, known: &[NoteVerifier]) -> Result<(Self, VerifiedNote), NoteError> {
        let known: Vec<NoteVerifier> = known.iter().filter(|v| v.name == origin).cloned().collect();
        let verified = open(note, &known)?;
        let checkpoint = Self::parse(&verified.text)?;
        if checkpoint.origin != origin {
            return Err(NoteError::WrongOrigin { expected: origin.to_owned(), found: checkpoint.origin });
        }
        Ok((checkpoint, verified))
    }
}

#[cfg(test)]
mod tests;
