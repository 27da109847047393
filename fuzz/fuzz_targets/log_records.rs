//! The timeline and audit body parser on arbitrary bytes: it must never panic, and
//! whatever it accepts must be records whose leaf bytes are canonical JSON (RFC 8785:
//! re-canonicalizing them changes nothing) within the details bound, and that read back
//! as the same record.

#![no_main]

use custos_model::ledger::{AuditRecord, MAX_DETAILS_BYTES, TimelineEvent};
use custos_model::records::{Validate, ValidationContext};
use custos_model::{BodyFormat, TenantId, Timestamp, canonical, parse_records};
use libfuzzer_sys::fuzz_target;

const MAX_RECORDS: usize = 64;

fn check<R: Validate + serde::de::DeserializeOwned>(body: &[u8], format: BodyFormat, leaf: impl Fn(&R) -> Vec<u8>) {
    let mut ctx = ValidationContext::new(Timestamp::from_micros(1_795_000_000_000_000));
    ctx.path_tenant = Some(TenantId::parse("acme").unwrap());
    if let Ok(records) = parse_records::<R>(body, format, &ctx, MAX_RECORDS) {
        assert!(!records.is_empty() && records.len() <= MAX_RECORDS);
        for record in &records {
            let bytes = leaf(record);
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("a leaf is JSON");
            assert_eq!(canonical::to_vec(&value), bytes, "a leaf is canonical");
            assert!(!bytes.contains(&b'\n') && !bytes.contains(&b'\t'), "a leaf fits an export line");
            assert!(value["details"].to_string().len() <= MAX_DETAILS_BYTES + 2);
            let again: R = serde_json::from_slice(&bytes).expect("a leaf reads back");
            assert_eq!(leaf(&again), bytes);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { BodyFormat::Json } else { BodyFormat::Ndjson };
    if selector & 2 == 0 {
        check::<TimelineEvent>(body, format, TimelineEvent::canonical_bytes);
    } else {
        check::<AuditRecord>(body, format, AuditRecord::canonical_bytes);
    }
});
