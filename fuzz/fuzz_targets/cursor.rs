//! Keyset cursors come back from clients: decoding arbitrary text must never panic,
//! and a decoded cursor must re-encode to a cursor that decodes to itself.

#![no_main]

use custos_model::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cursor) = Cursor::decode(text) {
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
    }
});
