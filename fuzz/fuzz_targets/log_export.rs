//! What `custos forensic verify-log` reads from outside: a log export, a signed
//! checkpoint and verifier keys. On arbitrary bytes none may panic, and an export that
//! verifies must carry a checkpoint that opens under the pinned key.

#![no_main]

use custos_ledger::export::Verifier;
use custos_ledger::note::{Checkpoint, NoteSigner, NoteVerifier, open};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "custos.fuzz/tenants/acme/timeline";

fuzz_target!(|data: &[u8]| {
    let signer = NoteSigner::new(ORIGIN, &[7; 32]).unwrap();
    let key = signer.verifier();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = NoteVerifier::parse(text);
        let _ = Checkpoint::parse(text);
    }
    let _ = open(data, std::slice::from_ref(&key));
    let verifier = Verifier::new(vec![key.clone()]).with_earlier(data.to_vec());
    let _ = verifier.verify(data);
    if let Ok(report) = Verifier::new(vec![key.clone()]).verify(data) {
        assert_eq!(report.origin, ORIGIN);
        assert_eq!(report.records + report.pruned, report.size);
    }
});
