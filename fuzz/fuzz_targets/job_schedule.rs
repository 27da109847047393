//! Job schedules come from clients (cron expressions, time-zone names, periods): any
//! JSON must validate or be refused with a field, never panic; a schedule that
//! validates must compile, and its next expected run after any instant is later than
//! that instant.

#![no_main]

use custos_model::Timestamp;
use custos_model::jobs::JobSchedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (instant, json) = data.split_at(8);
    let Ok(schedule) = serde_json::from_slice::<JobSchedule>(json) else { return };
    let Ok(valid) = schedule.validate("schedule") else { return };
    let compiled = valid.compile().expect("a validated schedule compiles");
    // Instants from 1970 to about 2100.
    let micros = (i64::from_le_bytes(instant.try_into().unwrap()) & i64::MAX) % 4_102_444_800_000_000;
    let at = Timestamp::from_micros(micros);
    if let Some(next) = compiled.next_after(at) {
        assert!(next > at, "{valid:?}: next run {next} is not after {at}");
    }
});
