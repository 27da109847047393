//! Keyset cursors for newest-first lists: the position after the last item returned,
//! as (listed-at instant, id). Opaque to clients (base64url), stable across inserts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::FieldError;
use crate::timestamp::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub listed_at: Timestamp,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.listed_at.as_micros(), self.id))
    }

    pub fn decode(value: &str) -> Result<Self, FieldError> {
        let err = || FieldError::new("cursor", "is not a cursor returned by this API");
        let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| err())?;
        let text = String::from_utf8(bytes).map_err(|_| err())?;
        let (micros, id) = text.split_once(':').ok_or_else(err)?;
        let micros: i64 = micros.parse().map_err(|_| err())?;
        if id.is_empty() {
            return Err(err());
        }
        Ok(Self { listed_at: Timestamp::from_micros(micros), id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(micros in any::<i64>(), id in "[A-Za-z0-9._:-]{1,128}") {
            let cursor = Cursor { listed_at: Timestamp::from_micros(micros), id };
            prop_assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(value in ".*") {
            let _ = Cursor::decode(&value);
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "!!!", "MTIz", "YWJjOmRlZg"] {
            assert_eq!(Cursor::decode(bad).unwrap_err().field, "cursor", "{bad}");
        }
    }
}
