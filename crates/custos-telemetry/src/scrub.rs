//! What must never reach a log line, and how it is masked. Applied by the log layer to
//! every field name and value, so call sites cannot opt out.

use std::sync::LazyLock;

use regex::Regex;

/// Field names whose values are always replaced: credentials, whatever they contain.
/// A name is sensitive when it is one of these or ends with one after a `_`, `.` or `-`
/// (`access_token`, `db.password`), compared without regard to ASCII case; longer
/// names that merely contain one (`token_id`) are not.
const SENSITIVE_NAMES: [&str; 13] = [
    "authorization",
    "proxy_authorization",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "cookie",
    "set_cookie",
    "private_key",
    "credential",
    "credentials",
];

/// Patterns masked inside any value, with their replacement.
const PATTERN_SOURCES: [(&str, &str); 7] = [
    // custos API tokens
    (r"cst_[A-Za-z0-9_-]{16,}", "cst_[redacted]"),
    // custos console session secrets (the session cookie)
    (r"css_[A-Za-z0-9_-]{16,}", "css_[redacted]"),
    // HTTP credentials in header form (ASCII case-insensitive, as HTTP schemes are)
    (r"(?i-u)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}", "$1 [redacted]"),
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

/// Literals at least one of which every pattern above needs, compared without regard
/// to ASCII case. Nearly every value logged contains none of them, and this search is
/// several times cheaper than the patterns' automaton; a value that has one goes on to
/// the patterns. Adding a pattern means adding the literal it cannot match without.
const TRIGGERS: [&str; 9] = ["cst_", "css_", "bearer", "basic", "token", "eyj", "akia", "asia", "@"];

static ANY_TRIGGER: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(TRIGGERS).expect("valid literals")
});

/// All patterns in one automaton: a value with a trigger usually matches none, and one
/// pass tells.
static ANY_PATTERN: LazyLock<regex::RegexSet> =
    LazyLock::new(|| regex::RegexSet::new(PATTERN_SOURCES.map(|(pattern, _)| pattern)).expect("valid regexes"));

pub const REDACTED: &str = "[redacted]";

pub fn is_sensitive_key(key: &str) -> bool {
    let key = key.as_bytes();
    SENSITIVE_NAMES.iter().any(|name| {
        let Some(start) = key.len().checked_sub(name.len()) else {
            return false;
        };
        key[start..].eq_ignore_ascii_case(name.as_bytes())
            && (start == 0 || matches!(key[start - 1], b'_' | b'.' | b'-'))
    })
}

/// Masks every sensitive pattern in `value`.
pub fn scrub(value: &str) -> std::borrow::Cow<'_, str> {
    if !ANY_TRIGGER.is_match(value) {
        return std::borrow::Cow::Borrowed(value);
    }
    scrub_patterns(value)
}

/// [`scrub`] without the literal prefilter.
fn scrub_patterns(value: &str) -> std::borrow::Cow<'_, str> {
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
    use proptest::strategy::Strategy as _;

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
        for key in ["token_id", "tokens", "route", "secret_hash_prefix", "actor", "mytoken", "", "_"] {
            assert!(!is_sensitive_key(key), "{key}");
        }
    }

    /// The rule for names, as it was first written: a regular expression.
    fn sensitive_key_by_regex(key: &str) -> bool {
        static RULE: LazyLock<Regex> = LazyLock::new(|| {
            let names = SENSITIVE_NAMES.join("|");
            Regex::new(&format!("(?i-u)(^|[_.-])({names})$")).expect("valid regex")
        });
        RULE.is_match(key)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The prefilter never lets a value through that a pattern would have masked.
        #[test]
        fn the_prefilter_changes_nothing(
            value in proptest::collection::vec(
                proptest::prop_oneof![
                    // Each pattern's shape, with lengths on both sides of its bounds.
                    "[cC][sS][tT]_[A-Za-z0-9_-]{14,18}",
                    "[cC][sS][sS]_[A-Za-z0-9_-]{14,18}",
                    "(Bearer|bAsic|TOKEN|token)[ \t]{1,2}[A-Za-z0-9._~+/=-]{6,10}",
                    "ey[jJ][A-Za-z0-9_-]{4,6}\\.[A-Za-z0-9_-]{4,6}\\.[A-Za-z0-9_-]{0,4}",
                    "[a-zA-Z][a-z0-9+.-]{0,4}:?//[a-z]{1,5}:[a-z]{1,5}@[a-z]{1,5}",
                    "(AKIA|ASIA|akia)[0-9A-Z]{15,17}",
                    "[A-Za-z0-9._%+-]{1,5}@[A-Za-z0-9-]{1,5}(\\.[A-Za-z0-9-]{1,3})?\\.[A-Za-z]{1,3}",
                    // Anything between them.
                    ".{0,4}",
                    "[ ./:@_-]",
                ],
                0..12,
            ).prop_map(|pieces| pieces.concat())
        ) {
            proptest::prop_assert_eq!(scrub(&value), scrub_patterns(&value));
        }

        #[test]
        fn sensitive_names_follow_the_rule(
            key in "([a-zA-Z]{0,6}[_.-]?){0,2}(authorization|PASSWORD|passwd|Secret|token|api_key|apikey|cookie|set_cookie|private_key|credentials?|to|key|xtoken)?[_.-]?"
        ) {
            proptest::prop_assert_eq!(is_sensitive_key(&key), sensitive_key_by_regex(&key), "{}", key);
        }
    }
}
