//! Canonical JSON bytes (RFC 8785, the JSON Canonicalization Scheme): what a record's
//! digest and its Merkle leaf are computed over.
//!
//! - Object members are sorted by key, comparing keys as UTF-16 code units; no
//!   whitespace is written.
//! - Strings escape only `"`, `\` and the control characters U+0000–U+001F: `\b \t \n
//!   \f \r` in short form, the rest as `\u00xx` with lowercase hex. Everything else,
//!   `/` and non-ASCII included, is written as its UTF-8 bytes.
//! - Numbers are written as ECMAScript writes an IEEE 754 double (RFC 8785 §3.2.2.3):
//!   the shortest digits that read back to the same double, plain notation for
//!   magnitudes in [1e-6, 1e21), exponent notation (`1e+21`, `5e-324`) outside it, and
//!   `-0` as `0`. Integers beyond ±2^53 cannot all be doubles: they are written as the
//!   nearest double, as RFC 8785 does, so inputs that must hash exactly refuse them
//!   first ([`check_exact_numbers`]).
//!
//! The output does not depend on serde_json's map-ordering feature flags. Numbers are
//! read with serde_json's `float_roundtrip` feature, so a decimal in the input becomes
//! the double nearest to it.

use serde_json::{Number, Value};

/// The largest integer every smaller integer of which is a double: 2^53.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out
}

/// Appends the canonical bytes of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
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
        Value::String(s) => write_string(s, out),
        Value::Number(n) => write_number(n, out),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Null => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as RFC 8785 §3.2.2.2 writes it (serde_json's escaping is that rule).
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_EXACT_INTEGER {
            out.extend_from_slice(i.to_string().as_bytes());
            return;
        }
    } else if let Some(u) = n.as_u64()
        && u <= MAX_EXACT_INTEGER
    {
        out.extend_from_slice(u.to_string().as_bytes());
        return;
    }
    // serde_json holds no NaN or infinity: every number it parsed or built is finite.
    write_double(n.as_f64().unwrap_or_default(), out);
}

/// Writes a finite double as ECMAScript's `Number.prototype.toString` does (`ryu-js`,
/// whose shortest digits break ties to even, as ECMAScript requires).
pub fn write_double(value: f64, out: &mut Vec<u8>) {
    if value == 0.0 {
        out.push(b'0');
        return;
    }
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(value).as_bytes());
}

/// Checks that every number in `value` hashes as it was written: integers within
/// ±2^53 (I-JSON, RFC 7493 §2.2). On failure, the path of the first offending number
/// below `field` (`details.count`, `details.items[2]`).
pub fn check_exact_numbers(field: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n) => {
            let exact = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.unsigned_abs() <= MAX_EXACT_INTEGER,
                (None, Some(u)) => u <= MAX_EXACT_INTEGER,
                (None, None) => true,
            };
            if exact { Ok(()) } else { Err(field.to_owned()) }
        }
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, item)| check_exact_numbers(&format!("{field}[{i}]"), item))
        }
        Value::Object(map) => {
            map.iter().try_for_each(|(key, member)| check_exact_numbers(&format!("{field}.{key}"), member))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(json: &str) -> String {
        String::from_utf8(to_vec(&serde_json::from_str(json).unwrap())).unwrap()
    }

    #[test]
    fn sorts_keys_recursively_without_whitespace() {
        let value = serde_json::json!({"b": [{"z": 1, "a": "x\ny"}], "a": null, "é": true, "Z": -5});
        assert_eq!(
            String::from_utf8(to_vec(&value)).unwrap(),
            r#"{"Z":-5,"a":null,"b":[{"a":"x\ny","z":1}],"é":true}"#
        );
    }

    /// RFC 8785 §3.2.2, the worked example.
    #[test]
    fn rfc_8785_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canonical(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3, the sorting example: keys compared as UTF-16 code units.
    #[test]
    fn rfc_8785_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let keys: Vec<String> = {
            let text = canonical(input);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            // Read the order back from the text, not from the (sorted) map.
            let mut order: Vec<(usize, String)> = value
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap().to_owned())
                .map(|v| (text.find(&v).unwrap(), v))
                .collect();
            order.sort();
            order.into_iter().map(|(_, v)| v).collect()
        };
        assert_eq!(
            keys,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
    #[test]
    fn rfc_8785_number_vectors() {
        let vectors: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in vectors {
            let mut out = Vec::new();
            write_double(f64::from_bits(bits), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "bits {bits:#018x}");
            // The same through a JSON number, as records reach it.
            if let Some(n) = serde_json::Number::from_f64(f64::from_bits(bits)) {
                assert_eq!(String::from_utf8(to_vec(&Value::Number(n))).unwrap(), expected, "bits {bits:#018x}");
            }
        }
    }

    #[test]
    fn integers_are_written_as_doubles_would_be() {
        assert_eq!(
            canonical("[1, -1, 1.0, 100, 1e2, 9007199254740992, -9007199254740992]"),
            "[1,-1,1,100,100,9007199254740992,-9007199254740992]"
        );
        // Beyond 2^53, the nearest double, as RFC 8785 writes it.
        assert_eq!(canonical("[9007199254740993, 18446744073709551615]"), "[9007199254740992,18446744073709552000]");
    }

    #[test]
    fn inexact_integers_are_named_by_path() {
        let value = serde_json::json!({"ok": 9007199254740992_u64, "list": [1, {"big": 9007199254740993_u64}]});
        assert_eq!(check_exact_numbers("details", &value), Err("details.list[1].big".to_owned()));
        assert_eq!(
            check_exact_numbers("details", &serde_json::json!({"n": -9007199254740992_i64, "f": 1e300})),
            Ok(())
        );
    }
}
