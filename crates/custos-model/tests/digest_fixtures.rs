//! The stored content digest of each record kind, frozen in `test-data/digests/v1`.
//! Idempotent re-sends compare against digests stored by earlier versions, so the
//! validated form, its canonical JSON and its SHA-256 must not drift.

use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun, ValidationContext};
use custos_model::{Timestamp, canonical};
use sha2::{Digest, Sha256};

fn check<R: IngestRecord>(fixture: &serde_json::Value) {
    let mut ctx = ValidationContext::new(Timestamp::parse("now", "2026-11-22T10:05:00Z").unwrap());
    ctx.path_component_id = fixture["component_id"].as_str().map(str::to_owned);
    let input: R::Input = serde_json::from_value(fixture["input"].clone()).unwrap();
    let record = R::validate(input, &ctx).unwrap();
    let canonical = String::from_utf8(canonical::to_vec(&record.to_json())).unwrap();
    let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(
        canonical,
        fixture["canonical_json"].as_str().unwrap_or_default(),
        "{}: canonical JSON changed",
        R::KIND.as_str()
    );
    assert_eq!(digest, fixture["sha256"].as_str().unwrap_or_default(), "{}: digest changed", R::KIND.as_str());
    assert_eq!(hex::encode(record.content_digest()), digest);
}

#[test]
fn v1_digests_are_stable() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-data/digests/v1");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        match fixture["kind"].as_str().unwrap() {
            "rule_run" => check::<RuleRun>(&fixture),
            "connector_sync" => check::<ConnectorSync>(&fixture),
            "queue_snapshot" => check::<QueueSnapshot>(&fixture),
            "delivery" => check::<Delivery>(&fixture),
            other => panic!("unknown fixture kind {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 4, "one fixture per record kind");
}
