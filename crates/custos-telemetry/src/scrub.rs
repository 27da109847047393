//! What must never reach a log line, and how it is masked. Applied by the log layer to
//! every field name and value, so call sites cannot opt out.

use std::sync::LazyLock;

use regex::Regex;

/// Field names whose values are always replaced: credentials, whatever they contain.
/// Matches the whole name or its last `_`-separated part (`access_token`), but not
/// longer names that merely contain one (`token_id` stays).
static SENSITIVE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(^|[_.-])(authorization|proxy_authorization|password|passwd|secret|token|api_key|apikey|cookie|set_cookie|private_key|credentials?)$")
        .expect("valid regex")
});

/// Patterns masked inside any value, with their replacement.
const PATTERN_SOURCES: [(&str, &str); 7] = [
    // custos API tokens
    (r"cst_[A-Za-z0-9_-]{16,}", "cst_[redacted]"),
    // custos console session secrets (the session cookie)
    (r"css_[A-Za-z0-9_-]{16,}", "css_[redacted]"),
    // HTTP credentials in header form
    (r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}", "$1 [redacted]"),
    // JSON Web Tokens
    (r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "[redacted-jwt]"),
    // passwords in URLs (postgres://user:pass@host)
    (r"(?i)([a-z][a-z0-9+.-]*://[^/:@\s]+):[^@\s/]+@", "$1:[redacted]@"),
    // AWS access key ids
    (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "[redacted-aws-key]"),
    // e-mail addresses (personal data)
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "[redacted-email]"),
];

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    PATTERN_SOURCES
        .into_iter()
        .map(|(pattern, replacement)| (Regex::new(pattern).expect("valid regex"), replacement))
        .collect()
});

/// All patterns in one automaton: most values match none, and one pass tells.
static ANY_PATTERN: LazyLock<regex::RegexSet> =
    LazyLock::new(|| regex::RegexSet::new(PATTERN_SOURCES.map(|(pattern, _)| pattern)).expect("valid regexes"));

pub const REDACTED: &str = "[redacted]";

pub fn is_sensitive_key(key: &str) -> bool {
    SENSITIVE_KEY.is_match(key)
}

/// Masks every sensitive pattern in `value`.
pub fn scrub(value: &str) -> std::borrow::Cow<'_, str> {
    let mut out = std::borrow::Cow::Borrowed(value);
    let matched = ANY_PATTERN.matches(value);
    if !matched.matched_any() {
        return out;
    }
    for (index, (pattern, replacement)) in PATTERNS.iter().enumerate() {
        // A pattern that did not match the original may match after an earlier
        // replacement only by accident of the replacement text; those never create
        // secrets, so checking the original's matches suffices.
        if matched.matched(index) && pattern.is_match(&out) {
            out = std::borrow::Cow::Owned(pattern.replace_all(&out, *replacement).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_credentials_and_personal_data() {
        let cases = [
            ("token cst_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcdef used", "token cst_[redacted] used"),
            ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer [redacted]"),
            ("custos_session=css_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcdef", "custos_session=css_[redacted]"),
            ("basic dXNlcjpwYXNzd29yZA==", "basic [redacted]"),
            ("postgres://custos:hunter2@db:5432/custos", "postgres://custos:[redacted]@db:5432/custos"),
            ("mail alice.smith+x@example.co.uk now", "mail [redacted-email] now"),
            ("key AKIAIOSFODNN7EXAMPLE", "key [redacted-aws-key]"),
            ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "jwt [redacted-jwt]"),
        ];
        for (input, expected) in cases {
            assert_eq!(scrub(input), expected, "{input}");
        }
        assert_eq!(scrub("rule okta.impossible_travel took 40 ms"), "rule okta.impossible_travel took 40 ms");
    }

    #[test]
    fn sensitive_keys() {
        for key in
            ["authorization", "Authorization", "token", "access_token", "password", "db.password", "api_key", "cookie"]
        {
            assert!(is_sensitive_key(key), "{key}");
        }
        for key in ["token_id", "tokens", "route", "secret_hash_prefix", "actor"] {
            assert!(!is_sensitive_key(key), "{key}");
        }
    }
}
