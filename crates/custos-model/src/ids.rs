//! Identifiers and their grammar. A tenant id appears in URLs, object paths, metric
//! labels and scopes, so it is restricted to a DNS-label-like alphabet.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, check};

/// Longest client-supplied record or component id.
pub const MAX_ID_LEN: usize = 128;

/// A tenant id: 1..=63 characters, lowercase ASCII letters, digits and '-', starting
/// with a letter or digit. `*` is not a tenant id (it is the all-tenants selector).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let ok_len = (1..=63).contains(&value.len());
        let ok_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_start = value.bytes().next().is_some_and(|b| b != b'-');
        if ok_len && ok_chars && ok_start {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                "tenant",
                "must be 1 to 63 characters of lowercase letters, digits and '-', not starting with '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A W3C trace id: 32 lowercase hex digits, not all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let err = || FieldError::new(field, "must be 32 lowercase hexadecimal digits, not all zero");
        if value.len() != 32 || !value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err());
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(value, &mut bytes).map_err(|_| err())?;
        if bytes == [0u8; 16] {
            return Err(err());
        }
        Ok(Self(bytes))
    }

    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0u8; 16] {
                return Self(bytes);
            }
        }
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Validates a client-supplied record id, or generates a time-ordered UUIDv7 when absent.
pub fn record_id(field: &str, supplied: Option<String>) -> Result<String, FieldError> {
    match supplied {
        Some(id) => {
            check::identifier(field, &id, MAX_ID_LEN)?;
            Ok(id)
        }
        None => Ok(uuid::Uuid::now_v7().to_string()),
    }
}

/// Validates a component id (also used for `integration_id` and `destination_id`).
pub fn component_id(field: &str, value: &str) -> Result<(), FieldError> {
    check::identifier(field, value, MAX_ID_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for good in ["acme", "a", "acme-2", "0day", &"a".repeat(63)] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-acme", "Acme", "ac_me", "*", "acme/x", &"a".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trace_ids() {
        assert!(TraceId::parse("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736").is_ok());
        for bad in [
            "",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "00000000000000000000000000000000",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "zbf92f3577b34da6a3ce929d0e0e4736",
        ] {
            let err = TraceId::parse("trace_id", bad).unwrap_err();
            assert_eq!(err.field, "trace_id");
        }
    }

    #[test]
    fn record_ids() {
        assert_eq!(record_id("id", Some("run-1:a.b_c".into())).unwrap(), "run-1:a.b_c");
        assert!(record_id("id", Some("has space".into())).is_err());
        assert!(record_id("id", Some(String::new())).is_err());
        assert!(record_id("id", Some("x".repeat(129))).is_err());
        let generated = record_id("id", None).unwrap();
        assert_eq!(generated.len(), 36);
    }
}
