//! What the operator console reads from outside: cookies, the `next=` page after login,
//! and the rule-run audit filter's query string. Pure functions with no IO, so the
//! fuzz targets exercise exactly what the server runs.

use crate::{FieldError, TenantId, Timestamp};

/// Where a console login goes when `next=` is absent or not allowed.
pub const DEFAULT_NEXT: &str = "/admin/health";

/// The value of cookie `name` among `Cookie` header values, if it is sent and not
/// empty. Names match exactly (`x_custos_session` is not `custos_session`); the first
/// match wins.
pub fn cookie<'a>(header_values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    header_values
        .into_iter()
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The page to go to after login: `next` when it is a console page other than the
/// login page itself, else [`DEFAULT_NEXT`]. What is returned always starts with
/// `/admin`, never leaves this origin (no `//`, no `\`, which browsers read as `/`), and
/// is printable ASCII, so it is a valid `Location` header as it stands.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with("/admin")
                && !path.starts_with("/admin/login")
                && !path.contains("//")
                && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            path
        }
        _ => DEFAULT_NEXT,
    }
}

/// Quick windows the audit filter offers, as `(value, label, hours)`; `all` is no
/// lower bound.
pub const WINDOWS: [(&str, &str, i64); 5] = [
    ("1h", "last hour", 1),
    ("24h", "last 24 hours", 24),
    ("7d", "last 7 days", 168),
    ("30d", "last 30 days", 720),
    ("all", "all time", 0),
];

/// The rule-run audit filter as its form shows it (empty fields dropped). The values
/// other than `window` are checked by the list query they become
/// ([`AuditFilter::list_query`]), the same parser as the API's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub rule_key: Option<String>,
    pub integration_id: Option<String>,
    pub status: Option<String>,
    /// One of [`WINDOWS`]; ignored when `from` is set.
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
}

const FILTER_PARAMETERS: &str = "tenant, rule_key, integration_id, status, window, from, to, cursor";

impl AuditFilter {
    /// Reads a query string. A parameter given twice, one this page does not know, or
    /// an unknown window is an error naming the parameter.
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        let mut filter = AuditFilter::default();
        read_query(
            raw,
            &mut [
                ("tenant", &mut filter.tenant),
                ("rule_key", &mut filter.rule_key),
                ("integration_id", &mut filter.integration_id),
                ("status", &mut filter.status),
                ("window", &mut filter.window),
                ("from", &mut filter.from),
                ("to", &mut filter.to),
                ("cursor", &mut filter.cursor),
            ],
            FILTER_PARAMETERS,
        )?;
        check_window(filter.window.as_deref())?;
        Ok(filter)
    }

    /// The filter as a query string for the rule-run list parser: the record filters,
    /// `from`/`to` (a quick window becomes a `from` relative to `now`; a browser's
    /// `datetime-local` value is read as UTC), and `cursor` when asked for.
    pub fn list_query(&self, now: Timestamp, with_cursor: bool) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in
            [("rule_key", &self.rule_key), ("integration_id", &self.integration_id), ("status", &self.status)]
        {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        let cursor = if with_cursor { self.cursor.as_deref() } else { None };
        append_bounds(&mut out, self.from.as_deref(), self.to.as_deref(), self.window.as_deref(), cursor, now);
        out.finish()
    }

    /// This filter as a link's query string (for paging and export), with `cursor`.
    /// [`AuditFilter::parse`] reads it back to the same filter.
    pub fn href(&self, tenant: &TenantId, cursor: Option<&str>) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        out.append_pair("tenant", tenant.as_str());
        for (name, value) in [
            ("rule_key", &self.rule_key),
            ("integration_id", &self.integration_id),
            ("status", &self.status),
            ("window", &self.window),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        if let Some(cursor) = cursor {
            out.append_pair("cursor", cursor);
        }
        out.finish()
    }
}

/// The timeline page's filter as its form shows it (empty fields dropped). `kind` may
/// be a pattern (`platform.policy.*`, `*.failed`); the values are checked by the list
/// query they become ([`TimelineFilter::list_query`]), the API's own parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineFilter {
    pub tenant: Option<String>,
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub project: Option<String>,
    pub trace_id: Option<String>,
    /// One of [`WINDOWS`]; ignored when `from` is set.
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
}

const TIMELINE_PARAMETERS: &str =
    "tenant, kind, actor, resource_type, resource_id, project, trace_id, window, from, to, cursor";

impl TimelineFilter {
    /// Reads a query string. A parameter given twice, one this page does not know, or
    /// an unknown window is an error naming the parameter.
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        let mut filter = TimelineFilter::default();
        read_query(
            raw,
            &mut [
                ("tenant", &mut filter.tenant),
                ("kind", &mut filter.kind),
                ("actor", &mut filter.actor),
                ("resource_type", &mut filter.resource_type),
                ("resource_id", &mut filter.resource_id),
                ("project", &mut filter.project),
                ("trace_id", &mut filter.trace_id),
                ("window", &mut filter.window),
                ("from", &mut filter.from),
                ("to", &mut filter.to),
                ("cursor", &mut filter.cursor),
            ],
            TIMELINE_PARAMETERS,
        )?;
        check_window(filter.window.as_deref())?;
        Ok(filter)
    }

    fn fields(&self) -> [(&'static str, &Option<String>); 6] {
        [
            ("kind", &self.kind),
            ("actor", &self.actor),
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
            ("project", &self.project),
            ("trace_id", &self.trace_id),
        ]
    }

    /// The filter as a query string for the timeline list parser (as
    /// [`AuditFilter::list_query`]).
    pub fn list_query(&self, now: Timestamp, with_cursor: bool) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.fields() {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        let cursor = if with_cursor { self.cursor.as_deref() } else { None };
        append_bounds(&mut out, self.from.as_deref(), self.to.as_deref(), self.window.as_deref(), cursor, now);
        out.finish()
    }

    /// This filter as a link's query string, with `cursor`; [`TimelineFilter::parse`]
    /// reads it back to the same filter.
    pub fn href(&self, tenant: &TenantId, cursor: Option<&str>) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        out.append_pair("tenant", tenant.as_str());
        for (name, value) in self.fields() {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        for (name, value) in [("window", &self.window), ("from", &self.from), ("to", &self.to)] {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        if let Some(cursor) = cursor {
            out.append_pair("cursor", cursor);
        }
        out.finish()
    }
}

/// Reads a filter's query string into its named slots: each parameter at most once,
/// values trimmed, empty ones dropped; an unknown parameter is an error naming it and
/// listing `known`.
fn read_query(raw: Option<&str>, slots: &mut [(&str, &mut Option<String>)], known: &str) -> Result<(), FieldError> {
    let mut seen = std::collections::HashSet::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(FieldError::new(key, "is given more than once"));
        }
        let Some((_, slot)) = slots.iter_mut().find(|(name, _)| *name == key) else {
            return Err(FieldError::new(key, format!("is not a parameter of this page; known: {known}")));
        };
        **slot = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
    }
    Ok(())
}

/// A quick window must be one of [`WINDOWS`].
fn check_window(window: Option<&str>) -> Result<(), FieldError> {
    if let Some(window) = window
        && !WINDOWS.iter().any(|(value, _, _)| *value == window)
    {
        let known: Vec<&str> = WINDOWS.iter().map(|(v, _, _)| *v).collect();
        return Err(FieldError::new("window", format!("must be one of {}", known.join(", "))));
    }
    Ok(())
}

/// Appends a list query's time bounds: `from` (or the quick window's start before
/// `now`), `to`, read as UTC when a browser's `datetime-local`, and `cursor`.
fn append_bounds(
    out: &mut form_urlencoded::Serializer<'_, String>,
    from: Option<&str>,
    to: Option<&str>,
    window: Option<&str>,
    cursor: Option<&str>,
    now: Timestamp,
) {
    let from = from.map(rfc3339).or_else(|| {
        let hours = WINDOWS.iter().find(|(v, _, _)| Some(*v) == window).map_or(0, |w| w.2);
        (hours > 0).then(|| now.saturating_add_micros(-hours * 3_600_000_000).to_string())
    });
    if let Some(from) = from {
        out.append_pair("from", &from);
    }
    if let Some(to) = to {
        out.append_pair("to", &rfc3339(to));
    }
    if let Some(cursor) = cursor {
        out.append_pair("cursor", cursor);
    }
}

/// A browser's `datetime-local` value (`2026-11-22T10:00`, seconds optional) read as
/// UTC; anything else is passed on as given (RFC 3339, checked by the list parser).
fn rfc3339(value: &str) -> String {
    let b = value.as_bytes();
    let local = |len: usize| b.len() == len && b[4] == b'-' && b[10] == b'T' && !value.contains(['Z', '+']);
    if local(16) {
        format!("{value}:00Z")
    } else if local(19) {
        format!("{value}Z")
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/admin/audit/rules?tenant=acme")), "/admin/audit/rules?tenant=acme");
        for hostile in [
            "https://evil.example/",
            "//evil.example/admin",
            "/admin//evil",
            "/admin\\..\\\\evil.example",
            "/status",
            "/admin/login",
            "/admin/health\r\nSet-Cookie: x=1",
            "/admin/h\u{e9}alth",
            "/admin/ x",
        ] {
            assert_eq!(safe_next(Some(hostile)), DEFAULT_NEXT, "{hostile:?}");
        }
        assert_eq!(safe_next(None), DEFAULT_NEXT);
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let headers = ["a=1", "x_custos_session=no; custos_session=yes; other=1"];
        assert_eq!(cookie(headers, "custos_session"), Some("yes"));
        assert_eq!(cookie(headers, "a"), Some("1"));
        assert_eq!(cookie(headers, "missing"), None);
        assert_eq!(cookie(["custos_session=; b=2"], "custos_session"), None);
    }

    #[test]
    fn the_filter_names_the_parameter_at_fault() {
        let cases = [
            ("rule_key=a&rule_key=b", "rule_key"),
            ("sort=asc", "sort"),
            ("window=2h", "window"),
            ("tenant=acme&tenant=acme", "tenant"),
        ];
        for (raw, field) in cases {
            assert_eq!(AuditFilter::parse(Some(raw)).unwrap_err().field, field, "{raw}");
        }
    }

    #[test]
    fn a_link_reads_back_to_the_same_filter() {
        let filter = AuditFilter::parse(Some(
            "tenant=acme&rule_key=brute+force%26more&status=failed&window=24h&from=2026-11-22T10:00&to=&cursor=x",
        ))
        .unwrap();
        assert_eq!(filter.rule_key.as_deref(), Some("brute force&more"));
        assert_eq!(filter.to, None);
        let tenant = TenantId::parse("acme").unwrap();
        let back = AuditFilter::parse(Some(&filter.href(&tenant, Some("x")))).unwrap();
        assert_eq!(back, filter);
    }

    #[test]
    fn windows_and_local_times_become_utc_bounds() {
        let now = Timestamp::parse("now", "2026-11-22T12:00:00Z").unwrap();
        let filter = AuditFilter { window: Some("1h".into()), ..AuditFilter::default() };
        assert_eq!(filter.list_query(now, false), "from=2026-11-22T11%3A00%3A00.000000Z");
        let filter =
            AuditFilter { from: Some("2026-11-22T10:00".into()), to: Some("2026-11-22T10:30:15".into()), ..filter };
        // An explicit `from` wins over the quick window.
        assert_eq!(filter.list_query(now, false), "from=2026-11-22T10%3A00%3A00Z&to=2026-11-22T10%3A30%3A15Z");
    }

    #[test]
    fn other_times_pass_through_to_the_list_parser() {
        assert_eq!(rfc3339("2026-11-22T10:00:00+01:00"), "2026-11-22T10:00:00+01:00");
        assert_eq!(rfc3339("2026-11-22T10:00Z"), "2026-11-22T10:00Z");
        assert_eq!(rfc3339("yesterday"), "yesterday");
    }
}
