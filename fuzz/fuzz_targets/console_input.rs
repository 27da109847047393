//! The console reads three things from a browser: the audit and timeline filters' query strings, the
//! `Cookie` header, and the `next=` page after login. None may panic; a parsed filter
//! must survive its own link, a cookie value must be a piece of the header, and the page
//! after login must stay on the console and be a valid `Location` header.

#![no_main]

use custos_model::console::{AuditFilter, DEFAULT_NEXT, TimelineFilter, cookie, safe_next};
use custos_model::{TenantId, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    if let Ok(filter) = AuditFilter::parse(Some(text)) {
        let tenant = TenantId::parse("acme").unwrap();
        let _ = filter.list_query(Timestamp::from_micros(1_795_000_000_000_000), true);
        let back = AuditFilter::parse(Some(&filter.href(&tenant, filter.cursor.as_deref())))
            .expect("a filter's own link parses");
        assert_eq!(back, AuditFilter { tenant: Some("acme".into()), ..filter });
    }

    if let Ok(filter) = TimelineFilter::parse(Some(text)) {
        let tenant = TenantId::parse("acme").unwrap();
        let _ = filter.list_query(Timestamp::from_micros(1_795_000_000_000_000), true);
        let back = TimelineFilter::parse(Some(&filter.href(&tenant, filter.cursor.as_deref())))
            .expect("a filter's own link parses");
        assert_eq!(back, TimelineFilter { tenant: Some("acme".into()), ..filter });
    }

    if let Some(value) = cookie([text], "custos_session") {
        assert!(!value.is_empty() && !value.contains(';') && text.contains(value));
    }

    let next = safe_next(Some(text));
    assert!(next == DEFAULT_NEXT || next == text);
    assert!(next.starts_with("/admin") && !next.contains("//"));
    assert!(next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'));
});
