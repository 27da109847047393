use super::*;
use crate::parse::{BodyFormat, ParseError, parse_records};

fn ctx() -> ValidationContext {
    ValidationContext {
        path_tenant: Some(TenantId::parse("acme").unwrap()),
        ..ValidationContext::new(Timestamp::from_micros(0))
    }
}

fn timeline(body: &str) -> Result<Vec<TimelineEvent>, ParseError> {
    parse_records::<TimelineEvent>(body.as_bytes(), BodyFormat::Ndjson, &ctx(), 100)
}

fn invalid_field(body: &str) -> String {
    match timeline(body) {
        Err(ParseError::Invalid { field, .. }) => field,
        other => panic!("{body}: {other:?}"),
    }
}

const EVENT: &str = r#"{"event_id":"e-1","ts":"2026-11-23T10:00:00.5+01:00","kind":"platform.policy.changed","actor":"alice@example.com","resource_type":"policy","resource_id":"p/7","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","details":{"b":[1,2.50,"x"],"a":{"z":null,"y":true}}}"#;

/// The leaf bytes are the event's canonical JSON, tenant from the URL, time in UTC to
/// the microsecond, absent fields absent: a snapshot of the format auditors rely on.
#[test]
fn leaf_bytes_are_canonical_json() {
    let event = timeline(EVENT).unwrap().remove(0);
    assert_eq!(
        String::from_utf8(event.canonical_bytes()).unwrap(),
        r#"{"actor":"alice@example.com","details":{"a":{"y":true,"z":null},"b":[1,2.5,"x"]},"event_id":"e-1","kind":"platform.policy.changed","resource_id":"p/7","resource_type":"policy","tenant_id":"acme","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","ts":"2026-11-23T09:00:00.500000Z"}"#
    );
    let minimal = timeline(r#"{"event_id":"e","ts":"2026-11-23T10:00:00Z","kind":"a.b"}"#).unwrap().remove(0);
    assert_eq!(
        String::from_utf8(minimal.canonical_bytes()).unwrap(),
        r#"{"details":{},"event_id":"e","kind":"a.b","tenant_id":"acme","ts":"2026-11-23T10:00:00.000000Z"}"#
    );
    // The leaf reads back as the same event.
    let back: TimelineEvent = serde_json::from_slice(&event.canonical_bytes()).unwrap();
    assert_eq!(back, event);
}

#[test]
fn bad_events_name_the_field() {
    let with = |field: &str, value: &str| {
        let mut event: serde_json::Value = serde_json::from_str(EVENT).unwrap();
        event[field] = serde_json::from_str(value).unwrap();
        event.to_string()
    };
    for (field, value, at_fault) in [
        ("kind", r#""custos.connector.stale""#, "kind"),
        ("kind", r#""policy""#, "kind"),
        ("kind", r#""Platform.Policy""#, "kind"),
        ("kind", r#""platform..changed""#, "kind"),
        ("event_id", r#""has space""#, "event_id"),
        ("event_id", r#""checkpoint""#, "event_id"),
        ("event_id", r#""export""#, "event_id"),
        // custos's own ids: a client taking one would make custos's record a duplicate.
        ("event_id", r#""custos-rule-run-failed-run-7""#, "event_id"),
        ("event_id", r#""custos-job-capsule-0123456789abcdef0123456789abcdef""#, "event_id"),
        ("event_id", r#""CUSTOS-retention-timeline-5""#, "event_id"),
        ("event_id", r#""""#, "event_id"),
        ("ts", r#""yesterday""#, "ts"),
        ("tenant_id", r#""globex""#, "tenant_id"),
        ("trace_id", r#""xyz""#, "trace_id"),
        ("details", r#"[1]"#, "details"),
        ("details", r#"{"n": 9007199254740993}"#, "details.n"),
        ("details", r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":1}}}}}}}}}"#, "details"),
        ("resource_type", r#""a b""#, "resource_type"),
        ("actor", r#""""#, "actor"),
        ("extra", r#"1"#, "extra"),
    ] {
        assert_eq!(invalid_field(&with(field, value)), at_fault, "{field} = {value}");
    }
    let big = format!(
        r#"{{"event_id":"e","ts":"2026-11-23T10:00:00Z","kind":"a.b","details":{{"s":"{}"}}}}"#,
        "x".repeat(MAX_DETAILS_BYTES)
    );
    assert_eq!(invalid_field(&big), "details");
    assert_eq!(invalid_field(r#"{"ts":"2026-11-23T10:00:00Z","kind":"a.b"}"#), "event_id");
    assert_eq!(invalid_field(r#"{"event_id":"e","kind":"a.b"}"#), "ts");
    // The URL's tenant, when given, passes; an id merely containing custos too.
    assert!(timeline(&with("tenant_id", r#""acme""#)).is_ok());
    assert!(timeline(&with("event_id", r#""my-custos-1""#)).is_ok());
}

#[test]
fn custos_events_must_use_its_namespace() {
    let event = TimelineEvent {
        event_id: "x".into(),
        ts: Timestamp::from_micros(0),
        tenant_id: TenantId::parse("acme").unwrap(),
        project_id: None,
        kind: "custos.connector.stale".into(),
        actor: None,
        resource_type: None,
        resource_id: None,
        trace_id: None,
        details: serde_json::json!({}),
    };
    assert!(event.clone().checked().is_ok());
    assert_eq!(TimelineEvent { kind: "platform.x".into(), ..event }.checked().unwrap_err().field, "kind");
}

#[test]
fn audit_records_validate_and_hash() {
    let body = r#"{"event_id":"a-1","ts":"2026-11-23T10:00:00Z","actor":{"id":"u-7","name":"alice"},"actor_ip":"2001:db8::1","action":"platform.user.login","outcome":"denied","request_id":"r-1"}"#;
    let record = parse_records::<AuditRecord>(body.as_bytes(), BodyFormat::Json, &ctx(), 1).unwrap().remove(0);
    assert_eq!(
        String::from_utf8(record.canonical_bytes()).unwrap(),
        r#"{"action":"platform.user.login","actor":{"id":"u-7","name":"alice"},"actor_ip":"2001:db8::1","details":{},"event_id":"a-1","outcome":"denied","request_id":"r-1","tenant_id":"acme","ts":"2026-11-23T10:00:00.000000Z"}"#
    );
    let field = |body: &str| match parse_records::<AuditRecord>(body.as_bytes(), BodyFormat::Json, &ctx(), 1) {
        Err(ParseError::Invalid { field, .. }) => field,
        other => panic!("{body}: {other:?}"),
    };
    assert_eq!(field(&body.replace("platform.user.login", "custos.token.created")), "action");
    assert_eq!(field(&body.replace("2001:db8::1", "10.0.0.300")), "actor_ip");
    assert_eq!(field(&body.replace("denied", "maybe")), "outcome");
    assert_eq!(field(&body.replace(r#""event_id":"a-1""#, r#""event_id":"custos-token-1""#)), "event_id");
    assert_eq!(field(&body.replace(r#""name":"alice""#, r#""name":"","x":1"#)), "actor.x");
    assert_eq!(field(&body.replace(r#""name":"alice""#, r#""name":"""#)), "actor.name");
}
