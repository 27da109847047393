use super::*;
use crate::merkle::MemoryLog;
use crate::note::NoteSigner;

const ORIGIN: &str = "custos.test/tenants/acme/timeline";

fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, &[7; 32]).unwrap()
}

fn records(n: u64) -> Vec<String> {
    (0..n).map(|i| format!(r#"{{"event_id":"e-{i}","kind":"platform.thing.done","n":{i}}}"#)).collect()
}

/// A log of `records`, checkpointed at its full size.
struct Fixture {
    records: Vec<String>,
    hashes: Vec<Hash>,
    log: MemoryLog,
}

impl Fixture {
    fn new(n: u64) -> Self {
        Self::of(records(n))
    }

    fn of(records: Vec<String>) -> Self {
        let mut log = MemoryLog::new();
        let hashes: Vec<Hash> = records.iter().map(|r| leaf_hash(r.as_bytes())).collect();
        for hash in &hashes {
            log.push(*hash);
        }
        Self { records, hashes, log }
    }

    fn note(&self, size: u64) -> String {
        let checkpoint =
            Checkpoint { origin: ORIGIN.into(), size, root: self.log.root(size).unwrap(), extensions: vec![] };
        checkpoint.sign(&signer()).unwrap()
    }

    /// The export of the first `size` leaves, with `pruned_before`, leaves as given.
    fn export_with(&self, size: u64, pruned_before: u64, leaves: &[(u64, Hash, Option<String>)]) -> Vec<u8> {
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            origin: ORIGIN.into(),
            size,
            pruned_before,
            checkpoint: self.note(size),
        };
        let mut out = header.to_line().into_bytes();
        for (index, hash, record) in leaves {
            leaf_line(*index, hash, record.as_deref(), &mut out);
        }
        out
    }

    fn leaves(&self) -> Vec<(u64, Hash, Option<String>)> {
        self.records.iter().zip(&self.hashes).enumerate().map(|(i, (r, h))| (i as u64, *h, Some(r.clone()))).collect()
    }

    fn export(&self) -> Vec<u8> {
        self.export_with(self.records.len() as u64, 0, &self.leaves())
    }
}

fn verifier() -> Verifier {
    Verifier::new(vec![signer().verifier()])
}

#[test]
fn an_intact_export_verifies() {
    let fixture = Fixture::new(37);
    let report = verifier().verify(&fixture.export()[..]).unwrap();
    assert_eq!(report.size, 37);
    assert_eq!(report.records, 37);
    assert_eq!(report.pruned, 0);
    assert_eq!(report.root, STANDARD.encode(fixture.log.root(37).unwrap()));
    assert_eq!(report.signed_by, vec![format!("{:08x}", signer().key_id())]);
}

#[test]
fn the_empty_log_verifies() {
    let fixture = Fixture::new(0);
    let report = verifier().verify(&fixture.export()[..]).unwrap();
    assert_eq!((report.size, report.records), (0, 0));
}

#[test]
fn a_changed_byte_is_pinpointed() {
    let fixture = Fixture::new(20);
    let mut leaves = fixture.leaves();
    leaves[13].2 = Some(leaves[13].2.as_ref().unwrap().replace("\"n\":13", "\"n\":14"));
    let error = verifier().verify(&fixture.export_with(20, 0, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::RecordAltered { index: 13, event_id: "e-13".into() });
}

#[test]
fn a_deleted_record_is_pinpointed_unless_a_tombstone_covers_it() {
    let fixture = Fixture::new(20);
    let mut leaves = fixture.leaves();
    leaves[4].2 = None;
    let error = verifier().verify(&fixture.export_with(20, 0, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::RecordMissing { index: 4 });

    // Retention removed leaves 0..5 and said so at leaf 8: their hashes still verify.
    let fixture = Fixture::of(with_prune(20, 8, 5, 30));
    let mut pruned = fixture.leaves();
    for leaf in &mut pruned[..5] {
        leaf.2 = None;
    }
    let report = verifier().verify(&fixture.export_with(20, 5, &pruned)[..]).unwrap();
    assert_eq!((report.records, report.pruned), (15, 5));
    let retention = report.retention.unwrap();
    assert_eq!((retention.records, retention.newest_leaf, retention.newest_before_index), (1, 8, 5));
    assert_eq!(retention.min_retention_days, Some(30));
}

/// `records(n)` with a retention record at `at` that removed the leaves below `before`
/// under a retention of `days`, its cutoff exactly `days` before its time.
fn with_prune(n: u64, at: usize, before: u64, days: u64) -> Vec<String> {
    let mut records = records(n);
    records[at] = prune_record(at, before, "2026-12-01T00:00:00.000000Z", &cutoff(days), Some(days));
    records
}

fn cutoff(days: u64) -> String {
    let at = custos_model::Timestamp::parse("ts", "2026-12-01T00:00:00Z").unwrap();
    custos_model::Timestamp::from_micros(at.as_micros() - days as i64 * 86_400_000_000).to_string()
}

fn prune_record(at: usize, before: u64, ts: &str, cutoff: &str, days: Option<u64>) -> String {
    let days = days.map_or(String::new(), |d| format!(r#","retention_days":{d}"#));
    format!(
        r#"{{"details":{{"before_index":{before},"log":"timeline","received_before":"{cutoff}"{days}}},"event_id":"custos-retention-{at}","kind":"custos.retention.pruned","ts":"{ts}"}}"#
    )
}

/// The attack of issue 21: whoever edits a saved export blanks recent records and raises
/// the header's `pruned_before` over them. The header is not signed, so it buys nothing:
/// only a retention record in the log covers a blank record.
#[test]
fn an_unsigned_pruned_before_covers_nothing() {
    let fixture = Fixture::of(with_prune(20, 8, 5, 30));
    let mut leaves = fixture.leaves();
    for leaf in &mut leaves[..5] {
        leaf.2 = None;
    }
    leaves[12].2 = None;
    leaves[13].2 = None;
    let error = verifier().verify(&fixture.export_with(20, 14, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::RecordMissing { index: 12 });
    // Blanking the retention record too takes away what covered the old ones.
    let mut leaves = fixture.leaves();
    for leaf in &mut leaves[..9] {
        leaf.2 = None;
    }
    let error = verifier().verify(&fixture.export_with(20, 9, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::RecordMissing { index: 0 });
    // A record after the retention record but below its before_index cannot exist;
    // one the record does not reach is missing.
    let fixture = Fixture::of(with_prune(20, 8, 5, 30));
    let mut leaves = fixture.leaves();
    for leaf in &mut leaves[..6] {
        leaf.2 = None;
    }
    assert_eq!(
        verifier().verify(&fixture.export_with(20, 6, &leaves)[..]).unwrap_err(),
        VerifyError::RecordMissing { index: 5 }
    );
}

/// A later retention record covers what an earlier, itself removed, one did.
#[test]
fn the_newest_retention_record_covers_the_older_ones() {
    let mut records = with_prune(30, 8, 5, 30);
    records[20] = prune_record(20, 15, "2026-12-01T00:00:00.000000Z", &cutoff(30), Some(30));
    let fixture = Fixture::of(records);
    let mut leaves = fixture.leaves();
    for leaf in &mut leaves[..15] {
        leaf.2 = None;
    }
    let report = verifier().verify(&fixture.export_with(30, 15, &leaves)[..]).unwrap();
    assert_eq!(report.pruned, 15);
    assert_eq!(report.retention.unwrap().records, 1, "the older record is among those removed");
}

/// A retention record is itself checked: its cutoff is at least its retention before its
/// own time, and it removes only records before it.
#[test]
fn a_retention_record_must_be_consistent() {
    let bad = [
        prune_record(8, 5, "2026-12-01T00:00:00.000000Z", &cutoff(29), Some(30)),
        prune_record(8, 9, "2026-12-01T00:00:00.000000Z", &cutoff(30), Some(30)),
        prune_record(8, 5, "2026-12-01T00:00:00.000000Z", &cutoff(30), Some(0)),
        prune_record(8, 5, "yesterday", &cutoff(30), Some(30)),
    ];
    for record in bad {
        let mut log = records(20);
        log[8] = record.clone();
        let fixture = Fixture::of(log);
        let error = verifier().verify(&fixture.export()[..]).unwrap_err();
        assert!(matches!(error, VerifyError::BadPrune { index: 8, .. }), "{record}: {error}");
    }
    // One written before custos recorded the retention is read, and says so.
    let mut log = records(20);
    log[8] = prune_record(8, 5, "2026-12-01T00:00:00.000000Z", &cutoff(30), None);
    let fixture = Fixture::of(log);
    let mut leaves = fixture.leaves();
    leaves[0].2 = None;
    let report = verifier().verify(&fixture.export_with(20, 1, &leaves)[..]).unwrap();
    assert_eq!(report.retention.unwrap().min_retention_days, None);
    // A client's record mentioning the kind in its details is not a retention record.
    let mut log = records(20);
    log[8] = r#"{"details":{"note":"custos.retention.pruned","before_index":9},"event_id":"x","kind":"platform.a.b"}"#
        .into();
    let fixture = Fixture::of(log);
    let mut leaves = fixture.leaves();
    leaves[0].2 = None;
    assert_eq!(
        verifier().verify(&fixture.export_with(20, 1, &leaves)[..]).unwrap_err(),
        VerifyError::RecordMissing { index: 0 }
    );
}

/// Gaps everywhere are refused before they cost memory.
#[test]
fn too_many_separate_gaps_are_refused() {
    let n = (MAX_BLANK_RUNS as u64 + 1) * 2;
    let fixture = Fixture::new(n);
    let mut leaves = fixture.leaves();
    for leaf in leaves.iter_mut().step_by(2) {
        leaf.2 = None;
    }
    assert_eq!(
        verifier().verify(&fixture.export_with(n, 0, &leaves)[..]).unwrap_err(),
        VerifyError::TooManyGaps { first: 0 }
    );
}

#[test]
fn two_swapped_records_are_pinpointed_at_the_first() {
    let fixture = Fixture::new(20);
    let mut leaves = fixture.leaves();
    let (a, b) = (leaves[6].2.clone(), leaves[11].2.clone());
    leaves[6].2 = b;
    leaves[11].2 = a;
    let error = verifier().verify(&fixture.export_with(20, 0, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::RecordAltered { index: 6, event_id: "e-11".into() });
}

#[test]
fn truncation_and_gaps_are_pinpointed() {
    let fixture = Fixture::new(20);
    let leaves = fixture.leaves();
    let error = verifier().verify(&fixture.export_with(20, 0, &leaves[..12])[..]).unwrap_err();
    assert_eq!(error, VerifyError::Truncated { index: 12, found: 12, size: 20 });

    let mut gap = leaves;
    gap.remove(7);
    let error = verifier().verify(&fixture.export_with(20, 0, &gap)[..]).unwrap_err();
    assert_eq!(error, VerifyError::OutOfOrder { line: 9, expected: 7, found: 8 });
}

#[test]
fn an_altered_stored_hash_is_told_apart_from_an_altered_record() {
    let fixture = Fixture::new(20);
    let mut leaves = fixture.leaves();
    leaves[9].1[0] ^= 1;
    let error = verifier().verify(&fixture.export_with(20, 0, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::StoredHashAltered { index: 9 });
}

#[test]
fn a_consistent_rewrite_of_record_and_hash_still_fails_the_signed_root() {
    let fixture = Fixture::new(20);
    let mut leaves = fixture.leaves();
    let forged = leaves[3].2.as_ref().unwrap().replace("done", "undone");
    leaves[3].1 = leaf_hash(forged.as_bytes());
    leaves[3].2 = Some(forged);
    let error = verifier().verify(&fixture.export_with(20, 0, &leaves)[..]).unwrap_err();
    assert_eq!(error, VerifyError::RootMismatch { first_difference: None });
}

#[test]
fn the_checkpoint_must_be_signed_by_a_pinned_key_for_the_origin() {
    let fixture = Fixture::new(5);
    let other = NoteSigner::new(ORIGIN, &[8; 32]).unwrap();
    let error = Verifier::new(vec![other.verifier()]).verify(&fixture.export()[..]).unwrap_err();
    assert!(matches!(error, VerifyError::Checkpoint(_)), "{error}");

    let elsewhere = NoteSigner::new("custos.test/tenants/globex/timeline", &[7; 32]).unwrap();
    let error = Verifier::new(vec![elsewhere.verifier()]).verify(&fixture.export()[..]).unwrap_err();
    assert!(matches!(error, VerifyError::NoKeyForOrigin { .. }), "{error}");
}

#[test]
fn consistency_with_an_earlier_checkpoint_is_checked() {
    let fixture = Fixture::new(30);
    for earlier in [0, 1, 17, 30] {
        let report = verifier().with_earlier(fixture.note(earlier).into_bytes()).verify(&fixture.export()[..]).unwrap();
        assert_eq!(report.consistent_with, Some(earlier));
    }
    // A checkpoint of a different history at size 17 (a forked or rewritten log).
    let mut forked = Fixture::new(30);
    forked.records[2] = r#"{"event_id":"e-2","kind":"platform.thing.forged"}"#.into();
    forked = {
        let mut log = MemoryLog::new();
        let hashes: Vec<Hash> = forked.records.iter().map(|r| leaf_hash(r.as_bytes())).collect();
        for hash in &hashes {
            log.push(*hash);
        }
        Fixture { records: forked.records, hashes, log }
    };
    let error = verifier().with_earlier(forked.note(17).into_bytes()).verify(&fixture.export()[..]).unwrap_err();
    assert_eq!(error, VerifyError::Inconsistent { size: 17 });

    let shorter = Fixture::new(10);
    let error = verifier().with_earlier(fixture.note(30).into_bytes()).verify(&shorter.export()[..]).unwrap_err();
    assert_eq!(error, VerifyError::Shrank { earlier: 30, now: 10 });
}

#[test]
fn malformed_exports_are_refused_with_the_line() {
    let fixture = Fixture::new(3);
    let export = String::from_utf8(fixture.export()).unwrap();
    let cases = [
        ("", 1),
        ("{}\n", 1),
        (&export.replacen(EXPORT_FORMAT, "custos-log-export/v9", 1), 1),
        (&export.replacen("\n1\t", "\n01\t", 1), 3),
        (&export.replacen("\n1\t", "\n1 ", 1), 3),
        (&format!("{export}3\tAAAA\t{{}}\n"), 5),
    ];
    for (text, line) in cases {
        match verifier().verify(text.as_bytes()) {
            Err(VerifyError::Malformed { line: found, .. }) => assert_eq!(found, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let short_hash = export.replacen(&STANDARD.encode(fixture.hashes[0]), "AAAA", 1);
    assert!(matches!(verifier().verify(short_hash.as_bytes()), Err(VerifyError::Malformed { line: 2, .. })));
}

/// Lines are lent from the reader's buffer when they fit and copied when they straddle
/// a refill: whatever the buffer's size, the verdict is the same, and a damaged line is
/// named by the same number.
#[test]
fn the_reader_buffer_size_does_not_change_the_verdict() {
    let fixture = Fixture::new(40);
    let export = fixture.export();
    let expected = verifier().verify(&export[..]).unwrap();
    let altered = String::from_utf8(export.clone()).unwrap().replacen("\"n\":17}", "\"n\":71}", 1).into_bytes();
    let unterminated = &export[..export.len() - 1];
    for capacity in [1, 2, 7, 64, 100, 1 << 16] {
        let read = |bytes: &[u8]| verifier().verify(std::io::BufReader::with_capacity(capacity, bytes));
        assert_eq!(read(&export).unwrap(), expected, "capacity {capacity}");
        assert_eq!(
            read(&altered).unwrap_err(),
            VerifyError::RecordAltered { index: 17, event_id: "e-17".into() },
            "capacity {capacity}"
        );
        assert!(
            matches!(read(unterminated), Err(VerifyError::Malformed { line: 41, .. })),
            "capacity {capacity}: {:?}",
            read(unterminated)
        );
    }
}
