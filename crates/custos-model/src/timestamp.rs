//! Instants as stored and shown: microseconds since the Unix epoch, UTC.
//!
//! Input is any RFC 3339 timestamp; it is normalised to UTC and truncated to whole
//! microseconds (the precision both backends store). Output is always
//! `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so timestamps sort lexically too.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Earliest accepted instant, 1970-01-01T00:00:00Z; latest, 9999-12-31T23:59:59.999999Z.
const MIN_MICROS: i64 = 0;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

impl Timestamp {
    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    fn from_datetime(datetime: OffsetDateTime) -> Self {
        Self((datetime.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// Parses an RFC 3339 timestamp; the error names `field`.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let datetime = OffsetDateTime::parse(value, &Rfc3339)
            .map_err(|_| FieldError::new(field, "must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"))?;
        let ts = Self::from_datetime(datetime);
        if !(MIN_MICROS..=MAX_MICROS).contains(&ts.0) {
            return Err(FieldError::new(field, "must be between 1970-01-01 and 9999-12-31"));
        }
        Ok(ts)
    }

    pub fn saturating_add_micros(self, micros: i64) -> Self {
        Self(self.0.saturating_add(micros))
    }

    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        match OffsetDateTime::from_unix_timestamp(seconds) {
            Ok(dt) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                micros
            ),
            Err(_) => write!(f, "@{}us", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Timestamp::parse("timestamp", &raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .examples(["2026-11-22T10:00:00.000000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_offsets_and_precision() {
        let ts = Timestamp::parse("t", "2026-11-22T12:30:00.123456789+02:00").unwrap();
        assert_eq!(ts.to_string(), "2026-11-22T10:30:00.123456Z");
        assert_eq!(Timestamp::parse("t", "1970-01-01T00:00:00Z").unwrap().as_micros(), 0);
    }

    #[test]
    fn rejects_non_rfc3339() {
        for bad in ["", "2026-11-22", "2026-11-22 10:00:00", "yesterday", "1969-12-31T23:59:59Z"] {
            assert_eq!(Timestamp::parse("started_at", bad).unwrap_err().field, "started_at", "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(micros in MIN_MICROS..=MAX_MICROS) {
            let ts = Timestamp::from_micros(micros);
            prop_assert_eq!(Timestamp::parse("t", &ts.to_string()).unwrap(), ts);
        }
    }
}
