//! The ingest body parser on arbitrary bytes: it must never panic, and whatever it
//! accepts must be valid records that serialize, digest deterministically, and hold
//! no more than the batch bound.

#![no_main]

use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun, ValidationContext};
use custos_model::{BodyFormat, Timestamp, parse_records};
use libfuzzer_sys::fuzz_target;

const MAX_RECORDS: usize = 64;

fn check<R: IngestRecord>(body: &[u8], format: BodyFormat) {
    let mut ctx = ValidationContext::new(Timestamp::from_micros(1_795_000_000_000_000));
    ctx.path_component_id = Some("queue".into());
    ctx.max_context_bytes = 256;
    if let Ok(records) = parse_records::<R>(body, format, &ctx, MAX_RECORDS) {
        assert!(!records.is_empty() && records.len() <= MAX_RECORDS);
        if format == BodyFormat::Json {
            assert_eq!(records.len(), 1);
        }
        for record in &records {
            assert!(!record.id().is_empty());
            assert_eq!(record.content_digest(), record.content_digest());
            let json = record.to_json();
            // What was accepted reads back as the same record.
            let again: R = serde_json::from_value(json).expect("accepted records round-trip");
            assert_eq!(again.content_digest(), record.content_digest());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = if selector & 1 == 0 { BodyFormat::Json } else { BodyFormat::Ndjson };
    match (selector >> 1) % 4 {
        0 => check::<RuleRun>(body, format),
        1 => check::<ConnectorSync>(body, format),
        2 => check::<QueueSnapshot>(body, format),
        _ => check::<Delivery>(body, format),
    }
});
