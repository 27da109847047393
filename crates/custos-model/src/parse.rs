//! The ingest body parser: untrusted bytes in, validated records or one precise error out.
//!
//! A body is one JSON object (`application/json`) or NDJSON, one object per line
//! (`application/x-ndjson`; blank lines are ignored). Parsing is all or nothing: the first
//! bad line rejects the whole body, and the error says which line, and which field or
//! column, is at fault. Malformed JSON is a syntax error (HTTP 400); well-formed JSON that
//! breaks the schema or a rule is invalid (HTTP 422).

use crate::error::FieldError;
use crate::records::{Validate, ValidationContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Ndjson,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}, column {column}: malformed JSON: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("line {line}: {field}: {message}")]
    Invalid { line: usize, field: String, message: String },
    #[error("the body holds no records")]
    Empty,
    #[error("the body holds more than {limit} records")]
    TooManyRecords { limit: usize },
}

impl ParseError {
    /// The field at fault, for errors that have one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Parses and validates a body of `R` records. `max_records` bounds an NDJSON batch.
pub fn parse_records<R: Validate>(
    body: &[u8],
    format: BodyFormat,
    ctx: &ValidationContext,
    max_records: usize,
) -> Result<Vec<R>, ParseError> {
    match format {
        BodyFormat::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(ParseError::Empty);
            }
            if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                return Err(ParseError::Invalid {
                    line: 1,
                    field: String::new(),
                    message: "expected one JSON object; send many as application/x-ndjson, one per line".into(),
                });
            }
            Ok(vec![parse_one::<R>(body, 0, ctx)?])
        }
        BodyFormat::Ndjson => {
            // Rough upper bound from the newline count, so a large batch allocates once.
            let mut records = Vec::with_capacity(memchr_count(body).min(max_records) + 1);
            for (index, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if records.len() == max_records {
                    return Err(ParseError::TooManyRecords { limit: max_records });
                }
                records.push(parse_one::<R>(line, index, ctx)?);
            }
            if records.is_empty() {
                return Err(ParseError::Empty);
            }
            Ok(records)
        }
    }
}

fn memchr_count(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
}

/// Parses one JSON text; `line_offset` is the 0-based line it starts on in the body.
fn parse_one<R: Validate>(text: &[u8], line_offset: usize, ctx: &ValidationContext) -> Result<R, ParseError> {
    let input: R::Input = match serde_json::from_slice(text) {
        Ok(input) => input,
        Err(err) => return Err(describe_error::<R>(text, line_offset, &err)),
    };
    R::validate(input, ctx).map_err(|FieldError { field, message }| ParseError::Invalid {
        line: line_offset + 1,
        field,
        message,
    })
}

/// Turns a serde error into a [`ParseError`]. Only the failing line pays for the second,
/// path-tracking parse that finds the field at fault.
fn describe_error<R: Validate>(text: &[u8], line_offset: usize, err: &serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    let line = line_offset + err.line().max(1);
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ParseError::Syntax { line, column: err.column(), message: strip_position(&err.to_string()) }
        }
        Category::Data => {
            let mut deserializer = serde_json::Deserializer::from_slice(text);
            let (path, message) = match serde_path_to_error::deserialize::<_, R::Input>(&mut deserializer) {
                Err(tracked) => (tracked.path().to_string(), strip_position(&tracked.inner().to_string())),
                Ok(_) => (String::from("."), strip_position(&err.to_string())),
            };
            ParseError::Invalid { line, field: field_at_fault(&path, &message), message }
        }
    }
}

/// The field a serde data error is about: its path, or for errors reported at the
/// parent object (`missing field `x``, `unknown field `x``), the field it names.
pub fn field_at_fault(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"].iter().find_map(|prefix| {
        let rest = message.strip_prefix(prefix)?;
        rest.split('`').next().map(str::to_owned)
    });
    let parent = if path == "." { "" } else { path };
    match named {
        Some(name) if message.starts_with("unknown") && !parent.is_empty() && parent.ends_with(&name) => parent.into(),
        Some(name) if parent.is_empty() => name,
        Some(name) => format!("{parent}.{name}"),
        None => parent.into(),
    }
}

/// serde_json appends " at line L column C"; the error carries the position separately.
pub fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::records::{QueueSnapshot, RuleRun};
    use crate::timestamp::Timestamp;

    const GOOD: &str = r#"{"rule_key":"r","status":"failed","started_at":"2026-11-22T09:00:00Z"}"#;

    fn ctx() -> ValidationContext {
        ValidationContext::new(Timestamp::from_micros(0))
    }

    fn ndjson(body: &str) -> Result<Vec<RuleRun>, ParseError> {
        parse_records::<RuleRun>(body.as_bytes(), BodyFormat::Ndjson, &ctx(), 10)
    }

    #[test]
    fn parses_ndjson_skipping_blank_lines() {
        let body = format!("{GOOD}\r\n\n{GOOD}\n");
        assert_eq!(ndjson(&body).unwrap().len(), 2);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = ndjson(&format!("{GOOD}\n{GOOD}\n{{\"rule_key\": \n")).unwrap_err();
        assert!(matches!(err, ParseError::Syntax { line: 3, .. }), "{err:?}");
        let err = ndjson(&format!("{GOOD}\nnot json\n")).unwrap_err();
        assert!(matches!(err, ParseError::Syntax { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn schema_errors_name_line_and_field() {
        let cases = [
            (r#"{"rule_key":"r","status":"failed"}"#, "started_at"),
            (r#"{"rule_key":"r","status":"failed","started_at":"2026-11-22T09:00:00Z","colour":1}"#, "colour"),
            (r#"{"rule_key":"r","status":"exploded","started_at":"2026-11-22T09:00:00Z"}"#, "status"),
            (r#"{"rule_key":7,"status":"failed","started_at":"2026-11-22T09:00:00Z"}"#, "rule_key"),
            (
                r#"{"rule_key":"r","status":"failed","started_at":"2026-11-22T09:00:00Z","events_evaluated":-2}"#,
                "events_evaluated",
            ),
            (
                r#"{"rule_key":"r","status":"failed","started_at":"2026-11-22T09:00:00Z","duration_ms":1e99}"#,
                "duration_ms",
            ),
        ];
        for (line, field) in cases {
            let err = ndjson(&format!("{GOOD}\n{line}\n")).unwrap_err();
            match err {
                ParseError::Invalid { line: 2, field: ref got, .. } => assert_eq!(got, field, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn nested_fields_get_a_dotted_path() {
        let c = ValidationContext { path_component_id: Some("q".into()), ..ctx() };
        let err =
            parse_records::<QueueSnapshot>(br#"{"depth":{"pending":"many"}}"#, BodyFormat::Json, &c, 1).unwrap_err();
        assert_eq!(err.field(), Some("depth.pending"));
        let err = parse_records::<QueueSnapshot>(br#"{"depth":{"stuck":1}}"#, BodyFormat::Json, &c, 1).unwrap_err();
        assert_eq!(err.field(), Some("depth.stuck"));
    }

    #[test]
    fn bounds_and_empty_bodies() {
        let body = format!("{GOOD}\n").repeat(11);
        assert_eq!(ndjson(&body).unwrap_err(), ParseError::TooManyRecords { limit: 10 });
        assert_eq!(ndjson("\n \n").unwrap_err(), ParseError::Empty);
        assert_eq!(parse_records::<RuleRun>(b"  ", BodyFormat::Json, &ctx(), 1).unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn json_body_is_one_object() {
        let one = parse_records::<RuleRun>(GOOD.as_bytes(), BodyFormat::Json, &ctx(), 1).unwrap();
        assert_eq!(one.len(), 1);
        let err = parse_records::<RuleRun>(format!("[{GOOD}]").as_bytes(), BodyFormat::Json, &ctx(), 1).unwrap_err();
        assert!(matches!(err, ParseError::Invalid { .. }));
        let err =
            parse_records::<RuleRun>(format!("{GOOD} {GOOD}").as_bytes(), BodyFormat::Json, &ctx(), 1).unwrap_err();
        assert!(matches!(err, ParseError::Syntax { .. }), "{err:?}");
    }

    // The fuzz target (fuzz/fuzz_targets/ingest_body.rs) explores far more; this keeps
    // a quick no-panic check in every test run.
    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), ndjson in any::<bool>()) {
            let format = if ndjson { BodyFormat::Ndjson } else { BodyFormat::Json };
            let _ = parse_records::<RuleRun>(&body, format, &ctx(), 8);
        }

        #[test]
        fn json_shaped_text_never_panics(body in r#"[{}\[\]":,0-9a-z_ .\n-]{0,300}"#) {
            let _ = parse_records::<RuleRun>(body.as_bytes(), BodyFormat::Ndjson, &ctx(), 8);
            let c = ValidationContext { path_component_id: Some("q".into()), ..ctx() };
            let _ = parse_records::<QueueSnapshot>(body.as_bytes(), BodyFormat::Json, &c, 8);
        }
    }
}
