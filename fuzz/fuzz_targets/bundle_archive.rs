//! What `custos forensic verify` reads from outside: a bundle archive. The input is the
//! tar inside the gzip (the harness compresses it), so the fuzzer explores entries,
//! names and types rather than checksums. On arbitrary input nothing may panic, and a
//! bundle that verifies was signed by the pinned key.

#![no_main]

use std::io::Write as _;

use custos_ledger::bundle::{Manifest, TrustedKey, Verifier};
use custos_ledger::dsse::DsseSigner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let _ = manifest.check();
    }
    let key = DsseSigner::new(&[7; 32]).public_key();
    let verifier = Verifier::new(vec![TrustedKey { key: key.clone(), not_before: None, not_after: None }]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(data).unwrap();
    let archive = gz.finish().unwrap();
    if let Ok(report) = verifier.verify_tar_gz(&archive[..]) {
        assert_eq!(report.signed_by, [key.key_id()]);
    }
});
