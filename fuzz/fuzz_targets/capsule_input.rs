//! A job capsule report (`POST /v1/tenants/{t}/jobs/{job}/capsule`) on arbitrary bytes:
//! reading and checking it must never panic, and a capsule it accepts is within its
//! bounds, digests what it says it digests, reads back as itself, and holds no
//! environment value.

#![no_main]

use custos_model::capsule::{
    Capsule, CapsuleInput, MAX_DIGESTS, MAX_TRANSCRIPT_BYTES, MAX_VARIABLES, Receipt, build, environment_sha256,
    hash_variable,
};
use custos_model::{TenantId, Timestamp};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const SALT: [u8; 32] = [7; 32];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<CapsuleInput>(data) else { return };
    let environment = input.environment.clone();
    let tenant = TenantId::parse("acme").expect("a valid tenant");
    let receipt = Receipt {
        reported_by: "tok_fuzz".into(),
        received_at: Timestamp::from_micros(1_795_000_000_000_000),
        salt: SALT,
    };
    let Ok((capsule, transcript)) = build(&tenant, "nightly", input, receipt) else { return };

    assert!(capsule.inputs.len() <= MAX_DIGESTS && capsule.outputs.len() <= MAX_DIGESTS);
    for r in capsule.inputs.iter().chain(&capsule.outputs) {
        assert!(r.sha256.len() == 64 && r.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    assert!(capsule.environment.variables.len() <= MAX_VARIABLES);
    assert_eq!(capsule.environment.variables.len(), environment.len());
    for (name, value) in &environment {
        assert_eq!(capsule.environment.variables[name], hash_variable(&SALT, name, value));
    }
    assert_eq!(capsule.environment.sha256, environment_sha256(&capsule.environment.variables));
    assert_eq!(capsule.transcript.is_some(), transcript.is_some());
    if let (Some(reference), Some(text)) = (&capsule.transcript, &transcript) {
        assert!(text.len() <= MAX_TRANSCRIPT_BYTES);
        assert_eq!(reference.sha256, hex::encode(Sha256::digest(text.as_bytes())));
        assert_eq!(reference.bytes, text.len() as u64);
    }
    if let (Some(start), Some(finish)) = (capsule.started_at, capsule.finished_at) {
        assert!(start <= finish);
    }

    // What is stored reads back as the same capsule.
    let bytes = serde_json::to_vec(&capsule).expect("a capsule serializes");
    let again: Capsule = serde_json::from_slice(&bytes).expect("a stored capsule reads back");
    assert_eq!(serde_json::to_vec(&again).unwrap(), bytes);

    // No environment value is kept: one that shows up in the stored capsule must come
    // from something else the report said (a name, an input) rather than the value.
    let mut without_environment = capsule.clone();
    without_environment.environment.variables.clear();
    let stripped = serde_json::to_vec(&without_environment).unwrap();
    for (name, value) in &environment {
        let escaped = serde_json::to_string(value).unwrap();
        let needle = escaped.trim_matches('"').as_bytes();
        if needle.len() < 16 || contains(&stripped, needle) || environment.keys().any(|n| n.contains(value.as_str())) {
            continue;
        }
        assert!(!contains(&bytes, needle), "the value of {name} was kept");
    }
});
