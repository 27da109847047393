//! Canonical JSON bytes: what a digest of a record is computed over.
//!
//! Object members are sorted by key (by UTF-16 code units, as RFC 8785 orders them),
//! no whitespace is written, and strings and numbers are written as serde_json writes
//! them, which for the strings and integers of custos records matches RFC 8785. The
//! output does not depend on serde_json's map-ordering feature flags.

use serde_json::Value;

pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
                out.push(b':');
                write(member, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_recursively_without_whitespace() {
        let value = serde_json::json!({"b": [{"z": 1, "a": "x\ny"}], "a": null, "é": true, "Z": -5});
        assert_eq!(
            String::from_utf8(to_vec(&value)).unwrap(),
            r#"{"Z":-5,"a":null,"b":[{"a":"x\ny","z":1}],"é":true}"#
        );
    }
}
