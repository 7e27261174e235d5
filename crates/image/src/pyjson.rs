//! JSON text exactly as Python's `json.dump` writes it (what crit prints): `ensure_ascii`, separators
//! `", "`/`": "` on one line, or `","`/`": "` with `indent` spaces per level.

use std::fmt::Write as _;

use serde_json::Value;

/// Serialize `v` as Python's `json.dumps(v, indent=indent)` would.
pub fn to_string(v: &Value, indent: Option<usize>) -> String {
    let mut out = String::with_capacity(4096);
    write_value(&mut out, v, indent, 0);
    out
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        for _ in 0..n * level {
            out.push(' ');
        }
    }
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 1e16 {
                    let _ = write!(out, "{f:.1}");
                } else {
                    let _ = write!(out, "{f}");
                }
            } else {
                let _ = write!(out, "{n}");
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, indent, level + 1);
                write_value(out, x, indent, level + 1);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(o) => {
            if o.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, indent, level + 1);
                write_str(out, k);
                out.push_str(": ");
                write_value(out, x, indent, level + 1);
            }
            newline(out, indent, level);
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let plain = |b: u8| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\';
    let mut rest = s;
    // Runs of printable ASCII (nearly everything crit prints, base64 included) are copied whole.
    while let Some(i) = rest.bytes().position(|b| !plain(b)) {
        out.push_str(&rest[..i]);
        let c = rest[i..].chars().next().expect("position is at a char boundary");
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            _ => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_shapes() {
        let v: Value = serde_json::from_str(r#"{"a": [1, 2], "b": {}, "c": "é\n", "d": []}"#).unwrap();
        assert_eq!(
            to_string(&v, None),
            r#"{"a": [1, 2], "b": {}, "c": "\u00e9\n", "d": []}"#
        );
        assert_eq!(to_string(&v, Some(4)), "{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": {},\n    \"c\": \"\\u00e9\\n\",\n    \"d\": []\n}");
        let v = Value::String("q\"b\\s\u{1}\u{1F600}x\u{8}\u{c}\r\t~".into());
        assert_eq!(to_string(&v, None), r#""q\"b\\s\u0001\ud83d\ude00x\b\f\r\t~""#);
    }
}
