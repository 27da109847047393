//! A log export and its offline verification.
//!
//! An export is every leaf of a log up to a signed checkpoint, in a text format a few
//! lines of any language can read (`docs/forensics/verification.md` specifies it):
//!
//! ```text
//! {"format":"custos-log-export/v1","origin":"…","size":3,"pruned_before":0,"checkpoint":"<signed note>"}
//! 0<TAB><base64 stored leaf hash><TAB><the record's canonical JSON>
//! 1<TAB><base64 stored leaf hash><TAB><the record's canonical JSON>
//! 2<TAB><base64 stored leaf hash><TAB>
//! ```
//!
//! The first line is a JSON header; then one line per leaf, in leaf order: its index,
//! the leaf hash the log stored, and the record's exact bytes (empty when retention
//! removed the record). Canonical JSON never holds a raw tab or newline, so the record
//! needs no escaping and its bytes are exactly the leaf's.
//!
//! [`Verifier`] checks an export against the checkpoint's signature and a pinned key,
//! recomputes every leaf hash and the root, checks consistency with an earlier
//! checkpoint, and on failure names the first leaf that does not match.
//!
//! A record may be missing (blank) only where retention removed it, and retention proves
//! it: each prune is itself a leaf of the log (`custos.retention.pruned`, naming the
//! leaves below `before_index`, the cutoff and the retention that allowed it), so the
//! checkpoint signs it. A blank record is accepted only under such a leaf that comes
//! after it, and a prune leaf is accepted only if its cutoff is at least its retention
//! before its own time. The header's `pruned_before` is not signed and is not trusted.

use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::{Hash, RootBuilder, leaf_hash};
use crate::note::{Checkpoint, NoteError, NoteVerifier};

/// The `format` of an export's header.
pub const EXPORT_FORMAT: &str = "custos-log-export/v1";

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// The log's origin: `<deployment>/tenants/<tenant>/<log>`.
    pub origin: String,
    /// Leaves that follow: the checkpoint's size.
    pub size: u64,
    /// Leaves below this index had their records removed by retention (their hashes
    /// remain). Informational: not signed, so verification does not rely on it (the
    /// signed prune leaves say what was removed).
    pub pruned_before: u64,
    /// The signed checkpoint (a C2SP signed note) the export is taken at.
    pub checkpoint: String,
}

impl ExportHeader {
    /// The header line, with its newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a header serializes");
        line.push('\n');
        line
    }
}

/// One leaf line, with its newline: `index TAB base64(leaf hash) TAB record`.
pub fn leaf_line(index: u64, leaf: &Hash, record: Option<&str>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = write!(out, "{index}\t{}\t", STANDARD.encode(leaf));
    if let Some(record) = record {
        out.extend_from_slice(record.as_bytes());
    }
    out.push(b'\n');
}

/// Why an export does not verify. Each names what an auditor looks at next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("reading the export: {0}")]
    Read(String),
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("the export's checkpoint does not verify: {0}")]
    Checkpoint(NoteError),
    #[error("the export is of log {found:?}, but no pinned key is named for it (pinned: {pinned})")]
    NoKeyForOrigin { found: String, pinned: String },
    #[error("the export's header says size {header} but its checkpoint says {checkpoint}")]
    SizeMismatch { header: u64, checkpoint: u64 },
    #[error(
        "leaf {index}: the record does not match its leaf hash, which the signed checkpoint authenticates; \
         the record was altered or replaced (event {event_id})"
    )]
    RecordAltered { index: u64, event_id: String },
    #[error(
        "leaf {index}: the record is missing, and no retention record (custos.retention.pruned) after it covers it"
    )]
    RecordMissing { index: u64 },
    #[error("leaf {index}: the retention record is not valid: {message}")]
    BadPrune { index: u64, message: String },
    #[error(
        "more than {MAX_BLANK_RUNS} separate runs of missing records, the first at leaf {first}: not what retention leaves"
    )]
    TooManyGaps { first: u64 },
    #[error("leaf {index} is missing from the log: it holds {found} of the checkpoint's {size} leaves")]
    Truncated { index: u64, found: u64, size: u64 },
    #[error("line {line}: expected leaf {expected}, found leaf {found}: leaves are missing or out of order")]
    OutOfOrder { line: u64, expected: u64, found: u64 },
    #[error(
        "leaf {index}: the stored leaf hash was altered (the records reproduce the signed root; the stored hashes do not)"
    )]
    StoredHashAltered { index: u64 },
    #[error(
        "the log does not reproduce the signed root: first differing leaf {first_difference:?}; the stored hashes \
         were rewritten along with the records"
    )]
    RootMismatch { first_difference: Option<u64> },
    #[error("the earlier checkpoint does not verify: {0}")]
    EarlierCheckpoint(NoteError),
    #[error("the earlier checkpoint is of log {found:?}, not {expected:?}")]
    EarlierOrigin { expected: String, found: String },
    #[error(
        "the log shrank: the earlier checkpoint has {earlier} leaves, this one {now}; records were removed from the end"
    )]
    Shrank { earlier: u64, now: u64 },
    #[error(
        "the log's first {size} leaves no longer hash to the earlier checkpoint's root: history before leaf {size} \
         was rewritten"
    )]
    Inconsistent { size: u64 },
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub origin: String,
    /// Leaves verified: the checkpoint's size.
    pub size: u64,
    /// The checkpoint's root hash, base64.
    pub root: String,
    /// Records present and matching their leaf hashes.
    pub records: u64,
    /// Leaves whose records retention removed (their hashes still verify).
    pub pruned: u64,
    /// The retention records covering them: the newest, and the least retention any of
    /// them states (an auditor compares it with the retention the tenant was promised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSummary>,
    /// Key ids (8 hex digits) of the pinned keys whose signatures verified.
    pub signed_by: Vec<String>,
    /// The earlier checkpoint's size, when consistency with one was checked.
    pub consistent_with: Option<u64>,
    /// Bytes of leaf lines read.
    pub bytes: u64,
}

/// What the retention records of a verified export say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionSummary {
    /// Retention records (`custos.retention.pruned` leaves) present in the log.
    pub records: u64,
    /// The newest one's leaf, and the leaves below which it removed records.
    pub newest_leaf: u64,
    pub newest_before_index: u64,
    /// The least retention, in days, a retention record states; `None` when one
    /// (written before custos recorded it) states none.
    pub min_retention_days: Option<u64>,
}

/// Most separate runs of blank records an export may have (an honest log has one, the
/// oldest leaves, or none).
pub const MAX_BLANK_RUNS: usize = 100_000;

/// The `kind` (timeline) or `action` (audit) of a retention record.
pub const PRUNE_KIND: &str = "custos.retention.pruned";

/// A retention record as read from its leaf.
#[derive(Debug, Clone, Copy)]
struct PruneLeaf {
    index: u64,
    before_index: u64,
    retention_days: Option<u64>,
}

/// Reads `record` as a retention record, if it is one: `Ok(None)` for any other record,
/// an error naming what is wrong with one that claims to be.
fn prune_leaf(index: u64, record: &[u8]) -> Result<Option<PruneLeaf>, VerifyError> {
    if memchr::memmem::find(record, PRUNE_KIND.as_bytes()).is_none() {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        kind: Option<String>,
        action: Option<String>,
        ts: Option<String>,
        details: Option<serde_json::Value>,
    }
    let Ok(probe) = serde_json::from_slice::<Probe>(record) else { return Ok(None) };
    if probe.kind.as_deref() != Some(PRUNE_KIND) && probe.action.as_deref() != Some(PRUNE_KIND) {
        return Ok(None);
    }
    let bad = |message: String| VerifyError::BadPrune { index, message };
    let details = probe.details.unwrap_or_default();
    let before_index =
        details["before_index"].as_u64().ok_or_else(|| bad("details.before_index must be a leaf index".into()))?;
    if before_index > index {
        return Err(bad(format!("it removes records up to leaf {before_index}, after itself")));
    }
    let retention_days = match &details["retention_days"] {
        serde_json::Value::Null => None,
        days => Some(
            days.as_u64()
                .filter(|d| *d > 0)
                .ok_or_else(|| bad("details.retention_days must be a positive number".into()))?,
        ),
    };
    if let Some(days) = retention_days {
        let time = |field: &str, value: Option<&str>| {
            value
                .and_then(|v| custos_model::Timestamp::parse(field, v).ok())
                .ok_or_else(|| bad(format!("{field} must be an RFC 3339 time")))
        };
        let at = time("ts", probe.ts.as_deref())?;
        let cutoff = time("details.received_before", details["received_before"].as_str())?;
        let retention_micros = i64::try_from(days).unwrap_or(i64::MAX).saturating_mul(86_400_000_000);
        if cutoff.as_micros() > at.as_micros().saturating_sub(retention_micros) {
            return Err(bad(format!(
                "its cutoff {cutoff} is less than its retention of {days} days before its time {at}"
            )));
        }
    }
    Ok(Some(PruneLeaf { index, before_index, retention_days }))
}

/// Checks that every run of blank records is covered by a retention record after it:
/// leaf `i` is covered when some retention record at a leaf `p > i` removed records below
/// `before > i`. Returns the first leaf that is not.
fn first_uncovered(runs: &[(u64, u64)], prunes: &[PruneLeaf]) -> Option<u64> {
    // `reach[k]`: the greatest `before_index` of the retention records from the k-th on
    // (by leaf). The cover of leaf i, M(i) = max before over records after i, falls as i
    // grows, so within a run the covered leaves come first: search for the first that
    // is not.
    let mut reach: Vec<u64> = prunes.iter().map(|p| p.before_index).collect();
    for k in (0..reach.len().saturating_sub(1)).rev() {
        reach[k] = reach[k].max(reach[k + 1]);
    }
    let cover = |leaf: u64| {
        let after = prunes.partition_point(|p| p.index <= leaf);
        reach.get(after).copied().unwrap_or(0)
    };
    for &(start, end) in runs {
        if cover(end - 1) > end - 1 {
            continue;
        }
        let (mut low, mut high) = (start, end - 1);
        while low < high {
            let middle = low + (high - low) / 2;
            if cover(middle) > middle { low = middle + 1 } else { high = middle }
        }
        return Some(low);
    }
    None
}

/// Verifies exports against pinned keys (signed-note verifier keys, whose names are
/// the origins they sign for) and, optionally, an earlier checkpoint.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<NoteVerifier>,
    earlier: Option<Vec<u8>>,
}

impl Verifier {
    pub fn new(keys: Vec<NoteVerifier>) -> Self {
        Self { keys, earlier: None }
    }

    /// Also checks that the export extends this earlier signed checkpoint.
    pub fn with_earlier(mut self, note: Vec<u8>) -> Self {
        self.earlier = Some(note);
        self
    }

    /// Reads and verifies a whole export.
    pub fn verify(&self, input: impl BufRead) -> Result<VerifyReport, VerifyError> {
        let mut lines = Lines { input, spill: Vec::new(), pending: 0 };
        let Some(line) = lines.next()? else {
            return Err(VerifyError::Malformed { line: 1, message: "the export is empty".into() });
        };
        let header: ExportHeader = serde_json::from_slice(line)
            .map_err(|e| VerifyError::Malformed { line: 1, message: format!("the header: {e}") })?;
        if header.format != EXPORT_FORMAT {
            return Err(VerifyError::Malformed {
                line: 1,
                message: format!("format {:?} is not {EXPORT_FORMAT:?}", header.format),
            });
        }
        if !self.keys.iter().any(|k| k.name() == header.origin) {
            let pinned: Vec<&str> = self.keys.iter().map(NoteVerifier::name).collect();
            return Err(VerifyError::NoKeyForOrigin { found: header.origin, pinned: pinned.join(", ") });
        }
        let (checkpoint, verified) = Checkpoint::open(header.checkpoint.as_bytes(), &header.origin, &self.keys)
            .map_err(VerifyError::Checkpoint)?;
        if checkpoint.size != header.size {
            return Err(VerifyError::SizeMismatch { header: header.size, checkpoint: checkpoint.size });
        }
        let earlier = match &self.earlier {
            None => None,
            Some(note) => {
                let (earlier, _) = Checkpoint::open(note, &header.origin, &self.keys).map_err(|e| match e {
                    NoteError::WrongOrigin { expected, found } => VerifyError::EarlierOrigin { expected, found },
                    other => VerifyError::EarlierCheckpoint(other),
                })?;
                if earlier.size > checkpoint.size {
                    return Err(VerifyError::Shrank { earlier: earlier.size, now: checkpoint.size });
                }
                Some(earlier)
            }
        };

        let mut stored = RootBuilder::new();
        // The tree of recomputed hashes, once it departs from the stored one.
        let mut recomputed: Option<RootBuilder> = None;
        let mut first_altered: Option<(u64, String)> = None;
        // Blank records as runs of leaves `[start, end)`, and the retention records seen.
        let mut blank_runs: Vec<(u64, u64)> = Vec::new();
        let mut prunes: Vec<PruneLeaf> = Vec::new();
        let mut earlier_roots: Option<(Hash, Hash)> = None;
        let (mut records, mut pruned, mut bytes) = (0u64, 0u64, 0u64);
        for index in 0..header.size {
            if let Some(earlier) = &earlier
                && earlier.size == index
            {
                earlier_roots =
                    Some((stored.root(), recomputed.as_ref().map_or_else(|| stored.root(), RootBuilder::root)));
            }
            let line_number = index + 2;
            let Some(line) = lines.next()? else {
                return Err(VerifyError::Truncated { index, found: index, size: header.size });
            };
            bytes += line.len() as u64;
            let (found, stored_hash, record) = parse_leaf_line(line, line_number)?;
            if found != index {
                return Err(VerifyError::OutOfOrder { line: line_number, expected: index, found });
            }
            let computed = if record.is_empty() {
                pruned += 1;
                if let Some((_, end)) = blank_runs.last_mut()
                    && *end == index
                {
                    *end += 1;
                } else if blank_runs.len() >= MAX_BLANK_RUNS {
                    return Err(VerifyError::TooManyGaps { first: blank_runs[0].0 });
                } else {
                    blank_runs.push((index, index + 1));
                }
                stored_hash
            } else {
                records += 1;
                let computed = leaf_hash(record);
                if computed != stored_hash && first_altered.is_none() {
                    first_altered = Some((index, event_id_of(record)));
                    recomputed.get_or_insert_with(|| stored.clone());
                }
                if computed == stored_hash
                    && let Some(prune) = prune_leaf(index, record)?
                {
                    prunes.push(prune);
                }
                computed
            };
            stored.push(stored_hash);
            if let Some(tree) = &mut recomputed {
                tree.push(computed);
            }
        }
        if lines.next()?.is_some() {
            return Err(VerifyError::Malformed {
                line: header.size + 2,
                message: format!("the export holds more than the checkpoint's {} leaves", header.size),
            });
        }
        if let Some(earlier) = &earlier
            && earlier.size == header.size
        {
            earlier_roots = Some((stored.root(), recomputed.as_ref().map_or_else(|| stored.root(), RootBuilder::root)));
        }

        let stored_root = stored.root();
        if stored_root == checkpoint.root {
            // The stored hashes hash to the signed root, so each is authentic: a record
            // that does not match its own is the one that changed.
            if let Some((index, event_id)) = first_altered {
                return Err(VerifyError::RecordAltered { index, event_id });
            }
            if let Some(index) = first_uncovered(&blank_runs, &prunes) {
                return Err(VerifyError::RecordMissing { index });
            }
        } else {
            let recomputed_root = recomputed.as_ref().map(RootBuilder::root);
            return Err(match (first_altered, recomputed_root) {
                (Some((index, _)), Some(root)) if root == checkpoint.root => VerifyError::StoredHashAltered { index },
                (first, _) => VerifyError::RootMismatch { first_difference: first.map(|(i, _)| i) },
            });
        }
        if let (Some(earlier), Some((stored_at, _))) = (&earlier, earlier_roots)
            && stored_at != earlier.root
        {
            return Err(VerifyError::Inconsistent { size: earlier.size });
        }
        let retention = prunes.last().map(|newest| RetentionSummary {
            records: prunes.len() as u64,
            newest_leaf: newest.index,
            newest_before_index: newest.before_index,
            min_retention_days: prunes.iter().map(|p| p.retention_days).min().flatten(),
        });
        Ok(VerifyReport {
            origin: header.origin,
            size: header.size,
            root: STANDARD.encode(checkpoint.root),
            records,
            pruned,
            retention,
            signed_by: verified.signed_by.iter().map(|(_, id)| format!("{id:08x}")).collect(),
            consistent_with: earlier.map(|e| e.size),
            bytes,
        })
    }
}

/// The lines of an export, each with its newline (the last may lack one). A line that
/// lies wholly in the reader's buffer is lent from it; only one that straddles a refill
/// is copied.
struct Lines<R> {
    input: R,
    /// The line that straddled a refill.
    spill: Vec<u8>,
    /// Bytes of the reader's buffer lent out by the previous call, consumed by the next.
    pending: usize,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> Result<Option<&[u8]>, VerifyError> {
        let failed = |e: std::io::Error| VerifyError::Read(e.to_string());
        self.input.consume(std::mem::take(&mut self.pending));
        let buffered = self.input.fill_buf().map_err(failed)?;
        if buffered.is_empty() {
            return Ok(None);
        }
        if let Some(end) = memchr::memchr(b'\n', buffered) {
            self.pending = end + 1;
            // Filled already, so this reads nothing.
            return Ok(Some(&self.input.fill_buf().map_err(failed)?[..=end]));
        }
        self.spill.clear();
        self.input.read_until(b'\n', &mut self.spill).map_err(failed)?;
        Ok(Some(&self.spill))
    }
}

/// Splits a leaf line into its index, stored hash and record bytes.
fn parse_leaf_line(line: &[u8], line_number: u64) -> Result<(u64, Hash, &[u8]), VerifyError> {
    /// A leaf hash in standard base64: 43 characters and one `=`.
    const HASH_CHARS: usize = 44;
    let malformed = |message: &str| VerifyError::Malformed { line: line_number, message: message.to_owned() };
    let fields = || malformed("expected index TAB leaf-hash TAB record");
    let line = line.strip_suffix(b"\n").ok_or_else(|| malformed("the line does not end with a newline"))?;
    let tab = memchr::memchr(b'\t', line).ok_or_else(fields)?;
    let (index, rest) = (&line[..tab], &line[tab + 1..]);
    let (hash, record) = match rest.get(HASH_CHARS) {
        Some(b'\t') => (&rest[..HASH_CHARS], &rest[HASH_CHARS + 1..]),
        _ => {
            let tab = memchr::memchr(b'\t', rest).ok_or_else(fields)?;
            (&rest[..tab], &rest[tab + 1..])
        }
    };
    if index.is_empty() || !index.iter().all(u8::is_ascii_digit) || (index.len() > 1 && index[0] == b'0') {
        return Err(malformed("the leaf index must be a decimal number without leading zeros"));
    }
    let index = index
        .iter()
        .try_fold(0u64, |n, digit| n.checked_mul(10)?.checked_add(u64::from(digit - b'0')))
        .ok_or_else(|| malformed("the leaf index is out of range"))?;
    let mut decoded = [0u8; 33];
    let hash = match STANDARD.decode_slice(hash, &mut decoded) {
        Ok(32) => decoded[..32].try_into().expect("32 bytes"),
        _ => return Err(malformed("the leaf hash must be 32 bytes in standard base64")),
    };
    Ok((index, hash, record))
}

/// The record's `event_id`, to name it in an error (best effort: the record may be the
/// altered part).
fn event_id_of(record: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: Option<String>,
    }
    serde_json::from_slice::<Id>(record).ok().and_then(|id| id.event_id).unwrap_or_else(|| "unreadable".into())
}

#[cfg(test)]
mod tests;
