//! Property: walking a list page by page with its cursors returns every matching record
//! exactly once, newest first, whatever the page size, the ties in time, or the records
//! inserted between page reads.

use custos_model::records::{RuleRun, Validate, ValidationContext};
use custos_model::{TenantId, Timestamp};
use custos_store::{RecordQuery, Tenant};
use proptest::prelude::*;

fn run(id: u32, second: u32) -> RuleRun {
    let input = serde_json::from_value(serde_json::json!({
        "id": format!("r{id}"), "rule_key": "k", "status": "succeeded",
        "started_at": format!("2026-11-22T10:00:{:02}Z", second % 60)
    }))
    .unwrap();
    RuleRun::validate(input, &ValidationContext::new(Timestamp::now())).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn cursor_walk_is_complete_and_ordered(
        seconds in proptest::collection::vec(0u32..8, 1..60),
        page_size in 1usize..12,
        late in proptest::collection::vec(0u32..8, 0..5),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = custos_store::open(None, dir.path()).await.unwrap();
            let acme = TenantId::parse("acme").unwrap();
            store.create_tenant(&Tenant { id: acme.clone(), name: None, retention_days: 1, created_at: Timestamp::now() }).await.unwrap();
            let runs: Vec<RuleRun> = seconds.iter().enumerate().map(|(i, s)| run(i as u32, *s)).collect();
            store.record_rule_runs(&acme, runs.clone(), Timestamp::now()).await.unwrap();

            let mut expected: Vec<(Timestamp, String)> = runs.iter().map(|r| (r.started_at, r.id.clone())).collect();
            expected.sort();
            expected.reverse();

            let mut seen = Vec::new();
            let mut query = RecordQuery { limit: page_size, ..RecordQuery::default() };
            let mut inserted_late = false;
            loop {
                let page = store.rule_runs_page(&acme, &query).await.unwrap();
                prop_assert!(page.items.len() <= page_size);
                seen.extend(page.items.iter().map(|s| (s.record.started_at, s.record.id.clone())));
                // Records that arrive mid-walk with times no later than the cursor
                // belong to the part not yet read; later ones must not disturb the walk.
                if !inserted_late {
                    inserted_late = true;
                    let late_runs: Vec<RuleRun> = late.iter().enumerate().map(|(i, s)| run(1000 + i as u32, *s)).collect();
                    if !late_runs.is_empty() {
                        store.record_rule_runs(&acme, late_runs.clone(), Timestamp::now()).await.unwrap();
                        if let Some(cursor) = &page.next_cursor {
                            for r in late_runs {
                                let key = (r.started_at, r.id.clone());
                                if key < (cursor.listed_at, cursor.id.clone()) {
                                    expected.push(key);
                                }
                            }
                            expected.sort();
                            expected.reverse();
                        }
                    }
                }
                match page.next_cursor {
                    Some(cursor) => query.after = Some(cursor),
                    None => break,
                }
            }
            prop_assert_eq!(seen, expected);
            Ok(())
        })?;
    }
}
