//! Handlers, by resource.

pub(crate) mod attestations;
pub(crate) mod components;
pub(crate) mod evidence;
pub(crate) mod holds;
pub(crate) mod incidents;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod maintenance;
pub(crate) mod platform;
pub(crate) mod records;
pub(crate) mod status_page;
pub(crate) mod traces;

/// The CSV cell of the field at `path` (dotted) of `json`: text as it is, other values as
/// JSON, nothing when absent. Text a spreadsheet would read as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`, so a record a
/// platform reported cannot run in the auditor's spreadsheet (CSV injection).
pub(crate) fn csv_cell(json: &serde_json::Value, path: &str) -> String {
    match path.split('.').try_fold(json, |v, key| v.get(key)) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(text)) => csv_text(text),
        Some(other) => other.to_string(),
    }
}

/// `text` made safe to open in a spreadsheet (see [`csv_cell`]).
pub(crate) fn csv_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formula_cells_are_neutralised() {
        for formula in ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(super::csv_text(formula), format!("'{formula}"));
        }
        for plain in ["okta.mfa", "a=b", "", "1-2", "'quoted"] {
            assert_eq!(super::csv_text(plain), plain);
        }
        let json = serde_json::json!({"a": {"b": "=1+1"}, "n": -3, "t": true});
        assert_eq!(super::csv_cell(&json, "a.b"), "'=1+1");
        assert_eq!(super::csv_cell(&json, "n"), "-3", "numbers stay numbers");
        assert_eq!(super::csv_cell(&json, "t"), "true");
        assert_eq!(super::csv_cell(&json, "missing"), "");
    }
}
