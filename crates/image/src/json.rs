//! crit's JSON: the same shape and values as CRIU's `crit decode` (and `--pretty`), and back.
//!
//! * An image is `{"magic": NAME, "entries": [...]}`; each entry has the message's set fields in
//!   field-number order, and its payload under `"extra"` shaped as crit shapes it.
//! * Enums are names, bytes are line-wrapped base64 (quoted-printable for unix socket names).
//! * With `pretty`, integer fields carrying CRIU's field options print as crit prints them: `hex` as
//!   `"0x…"` (inherited by nested messages), `dev` as `"major:minor"`, `flags` as names joined with
//!   `" | "`, `dict` through its table, and `ipadd` lists as dotted/colon addresses.
//! * Unknown fields (numbers our protos do not know) are not lost: they are kept as base64 of their wire
//!   bytes under the key `"_unknown"`, which CRIU's crit ignores and our `encode` writes back.
//!
//! `encode` accepts both the plain and the pretty form.

use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};
use serde_json::{Map, Value as Json};

use crate::codec::{message_full as message, Entry, Extra, Image};
use crate::error::{ImageError, Result};
use crate::magic;
use crate::pretty;

/// CRIU's per-field options (`[(criu).hex = true]` and friends), extracted from the protos at build time.
#[derive(Debug, Default, Clone, Copy)]
pub struct CriuOpts {
    pub hex: bool,
    pub ipadd: bool,
    pub flags: Option<&'static str>,
    pub dev: bool,
    pub odev: bool,
    pub dict: Option<&'static str>,
    pub conv: Option<&'static str>,
}

pub(crate) const NO_OPTS: CriuOpts = CriuOpts {
    hex: false,
    ipadd: false,
    flags: None,
    dev: false,
    odev: false,
    dict: None,
    conv: None,
};

/// CRIU's options of one field (all off when it has none).
pub fn criu_opts(field: &FieldDescriptor) -> &'static CriuOpts {
    crate::fast::field_opts(field.parent_message().full_name(), field.number()).unwrap_or(&NO_OPTS)
}

// ---------------------------------------------------------------------------------------------------
// image -> JSON

/// Convert a decoded image to crit's JSON.
pub fn image_to_json(img: &Image, pretty: bool) -> Json {
    let mut entries = Vec::with_capacity(img.entries.len());
    for e in &img.entries {
        let mut m = message_to_json(&e.msg, pretty, false);
        match &e.extra {
            Extra::None => {}
            Extra::Blob(b) => {
                m.insert("extra".into(), Json::String(pretty::base64_lines(b)));
            }
            Extra::Tcp { inq, outq } => {
                let mut t = Map::new();
                t.insert("inq".into(), Json::String(pretty::base64_lines(inq)));
                t.insert("outq".into(), Json::String(pretty::base64_lines(outq)));
                m.insert("extra".into(), Json::Object(t));
            }
            Extra::Sems(v) => {
                m.insert("extra".into(), Json::Array(v.iter().map(|&x| Json::from(x)).collect()));
            }
            Extra::Msgs(v) => {
                let mut l = Vec::with_capacity(v.len() * 2);
                for (msg, data) in v {
                    // crit shapes queued messages without the pretty conversions.
                    l.push(Json::Object(message_to_json(msg, false, false)));
                    l.push(Json::String(pretty::base64_lines(data)));
                }
                m.insert("extra".into(), Json::Array(l));
            }
        }
        entries.push(Json::Object(m));
    }
    let mut top = Map::new();
    top.insert("magic".into(), Json::String(img.magic.name.to_string()));
    top.insert("entries".into(), Json::Array(entries));
    Json::Object(top)
}

/// Convert one message to crit's JSON object (`is_hex`: a parent field was marked hex).
pub fn message_to_json(msg: &DynamicMessage, pretty: bool, is_hex: bool) -> Map<String, Json> {
    let mut fields: Vec<(FieldDescriptor, &Value)> = msg.fields().collect();
    fields.sort_by_key(|(f, _)| f.number());
    let mut out = Map::new();
    for (f, v) in fields {
        let o = criu_opts(&f);
        let hex = is_hex || o.hex;
        let j = match v {
            Value::List(items) => {
                if pretty && o.ipadd {
                    Json::Array(vec![Json::String(pretty::ip_from_words(items))])
                } else {
                    Json::Array(items.iter().map(|x| scalar_to_json(&f, o, x, pretty, hex)).collect())
                }
            }
            x => scalar_to_json(&f, o, x, pretty, hex),
        };
        out.insert(f.name().to_string(), j);
    }
    let unknown: Vec<u8> = {
        let mut b = Vec::new();
        for u in msg.unknown_fields() {
            u.encode(&mut b);
        }
        b
    };
    if !unknown.is_empty() {
        out.insert("_unknown".into(), Json::String(pretty::base64_lines(&unknown)));
    }
    out
}

/// An integer field's JSON: a number, or in pretty mode what its CRIU options make of it.
pub(crate) fn int_to_json(name: &str, o: &CriuOpts, x: i128, pretty: bool, hex: bool) -> Json {
    if pretty {
        if hex {
            return Json::String(pretty::hex(x));
        }
        if o.dev {
            return Json::String(pretty::dev_to_string(x as u64, o.odev));
        }
        if let Some(map) = o.flags {
            return Json::String(match pretty::flags_map(map) {
                Some(m) => pretty::map_flags(x as u64, m),
                None => pretty::hex(x),
            });
        }
        if let Some(d) = o.dict {
            if let Some(n) = pretty::dict_name(d, name, x) {
                return Json::String(n.to_string());
            }
        }
    }
    if x < 0 {
        Json::from(x as i64)
    } else {
        Json::from(x as u64)
    }
}

/// A bytes field's JSON: wrapped base64, or quoted-printable for unix socket names.
pub(crate) fn bytes_to_json(o: &CriuOpts, b: &[u8]) -> Json {
    Json::String(if o.conv == Some("unix_name") {
        pretty::quopri_encode(b)
    } else {
        pretty::base64_lines(b)
    })
}

fn scalar_to_json(f: &FieldDescriptor, o: &CriuOpts, v: &Value, pretty: bool, hex: bool) -> Json {
    let int = |x: i128| int_to_json(f.name(), o, x, pretty, hex);
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(x) => int(*x as i128),
        Value::I64(x) => int(*x as i128),
        Value::U32(x) => int(*x as i128),
        Value::U64(x) => int(*x as i128),
        Value::F32(x) => Json::from(*x as f64),
        Value::F64(x) => Json::from(*x),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => bytes_to_json(o, b),
        Value::EnumNumber(n) => match f.kind() {
            Kind::Enum(e) => e
                .get_value(*n)
                .map(|v| Json::String(v.name().to_string()))
                .unwrap_or(Json::Null),
            _ => Json::from(*n),
        },
        Value::Message(m) => Json::Object(message_to_json(m, pretty, hex)),
        Value::List(_) | Value::Map(_) => Json::Null,
    }
}

/// Decode an image's bytes to crit's JSON: the fast path ([`crate::fast`]) when it applies, else the
/// reflective one (which also gives the precise error for bad input). `file` names the input in errors.
pub fn decode_to_json(file: &str, data: &[u8], pretty: bool) -> Result<Json> {
    if let Some(j) = crate::fast::image_json(data, pretty) {
        return Ok(j);
    }
    Ok(image_to_json(&crate::codec::decode(file, data)?, pretty))
}

// ---------------------------------------------------------------------------------------------------
// JSON -> image

struct Ctx<'a> {
    file: &'a str,
    index: usize,
}

impl Ctx<'_> {
    fn err(&self, path: &str, what: impl std::fmt::Display) -> ImageError {
        ImageError::Json {
            file: self.file.to_string(),
            what: format!("entry {}: {path}: {what}", self.index),
        }
    }
}

/// Build an image from crit's JSON (plain or pretty). `file` names the input in errors.
pub fn image_from_json(file: &str, j: &Json) -> Result<Image> {
    let jerr = |what: String| ImageError::Json {
        file: file.to_string(),
        what,
    };
    let obj = j
        .as_object()
        .ok_or_else(|| jerr("the top level is not an object".into()))?;
    let name = obj
        .get("magic")
        .and_then(Json::as_str)
        .ok_or_else(|| jerr("no \"magic\" string at the top level".into()))?;
    let magic = magic::by_name(name)
        .filter(|m| m.message.is_some())
        .ok_or_else(|| jerr(format!("unknown magic {name:?}")))?;
    let list = obj
        .get("entries")
        .and_then(Json::as_array)
        .ok_or_else(|| jerr("no \"entries\" list at the top level".into()))?;
    let mut entries = Vec::with_capacity(list.len());
    let mut ghost_chunks = false;
    for (index, e) in list.iter().enumerate() {
        let cx = Ctx { file, index };
        let eo = e.as_object().ok_or_else(|| cx.err("", "entry is not an object"))?;
        let desc = match (magic.name, index) {
            ("PAGEMAP", 0) => message("pagemap_head"),
            ("PAGEMAP", _) => message("pagemap_entry"),
            ("GHOST_FILE", 0) => message("ghost_file_entry"),
            ("GHOST_FILE", _) => message("ghost_chunk_entry"),
            _ => message(magic.message.unwrap()),
        };
        let msg = message_from_json(&cx, "", &desc, eo)?;
        let x = eo.get("extra");
        if magic.name == "GHOST_FILE" && index == 0 {
            ghost_chunks = crate::codec::get_u64(&msg, "chunks") != 0;
        }
        let extra = match (magic.name, x) {
            (_, None) => Extra::None,
            ("GHOST_FILE", Some(x)) => {
                if index == 0 && ghost_chunks {
                    return Err(cx.err("extra", "a chunked ghost file keeps its data in the chunk entries"));
                } else if index > 0 && !ghost_chunks {
                    return Err(cx.err("", "only a chunked ghost file has more than one entry"));
                }
                Extra::Blob(b64(&cx, "extra", x)?)
            }
            ("PIPES_DATA" | "FIFO_DATA" | "SK_QUEUES" | "BPFMAP_DATA" | "IPCNS_SHM", Some(x)) => {
                Extra::Blob(b64(&cx, "extra", x)?)
            }
            ("TCP_STREAM", Some(x)) => {
                let t = x
                    .as_object()
                    .ok_or_else(|| cx.err("extra", "want {\"inq\", \"outq\"}"))?;
                let q = |k: &str| {
                    t.get(k)
                        .map(|v| b64(&cx, k, v))
                        .transpose()
                        .map(Option::unwrap_or_default)
                };
                Extra::Tcp {
                    inq: q("inq")?,
                    outq: q("outq")?,
                }
            }
            ("IPCNS_SEM", Some(x)) => {
                let l = x
                    .as_array()
                    .ok_or_else(|| cx.err("extra", "want a list of semaphore values"))?;
                let mut v = Vec::with_capacity(l.len());
                for s in l {
                    let n = s.as_u64().filter(|&n| n <= u16::MAX as u64);
                    v.push(
                        n.ok_or_else(|| cx.err("extra", format!("{s} is not a semaphore value (0..65535)")))? as u16,
                    );
                }
                Extra::Sems(v)
            }
            ("IPCNS_MSG", Some(x)) => {
                let l = x
                    .as_array()
                    .ok_or_else(|| cx.err("extra", "want a list [msg, data, msg, data, ...]"))?;
                if l.len() % 2 != 0 {
                    return Err(cx.err("extra", "the list must alternate message and data"));
                }
                let d = message("ipc_msg");
                let mut v = Vec::with_capacity(l.len() / 2);
                for p in l.chunks(2) {
                    let mo = p[0]
                        .as_object()
                        .ok_or_else(|| cx.err("extra", "a queued message is not an object"))?;
                    v.push((message_from_json(&cx, "extra", &d, mo)?, b64(&cx, "extra", &p[1])?));
                }
                Extra::Msgs(v)
            }
            (_, Some(_)) => return Err(cx.err("extra", format!("{} entries carry no payload", magic.name))),
        };
        entries.push(Entry { msg, extra });
    }
    Ok(Image {
        magic,
        head: magic::head_magic(magic.name),
        entries,
    })
}

fn b64(cx: &Ctx<'_>, path: &str, v: &Json) -> Result<Vec<u8>> {
    let s = v.as_str().ok_or_else(|| cx.err(path, "want a base64 string"))?;
    pretty::base64_decode(s).map_err(|e| cx.err(path, e))
}

fn message_from_json(
    cx: &Ctx<'_>,
    path: &str,
    desc: &MessageDescriptor,
    o: &Map<String, Json>,
) -> Result<DynamicMessage> {
    let mut msg = DynamicMessage::new(desc.clone());
    for f in desc.fields() {
        let Some(v) = o.get(f.name()) else { continue };
        let p = if path.is_empty() {
            f.name().to_string()
        } else {
            format!("{path}.{}", f.name())
        };
        let opts = criu_opts(&f);
        let value = if f.is_list() {
            let l = v.as_array().ok_or_else(|| cx.err(&p, "want a list"))?;
            if opts.ipadd && l.first().is_some_and(Json::is_string) {
                let words = pretty::ip_to_words(l[0].as_str().unwrap()).map_err(|e| cx.err(&p, e))?;
                Value::List(words.into_iter().map(Value::U32).collect())
            } else {
                let mut items = Vec::with_capacity(l.len());
                for (i, x) in l.iter().enumerate() {
                    items.push(value_from_json(cx, &format!("{p}[{i}]"), &f, opts, x)?);
                }
                Value::List(items)
            }
        } else {
            value_from_json(cx, &p, &f, opts, v)?
        };
        msg.set_field(&f, value);
    }
    if let Some(u) = o.get("_unknown") {
        let raw = b64(cx, &format!("{path}._unknown"), u)?;
        msg.merge(raw.as_slice())
            .map_err(|e| cx.err(&format!("{path}._unknown"), e))?;
    }
    for f in desc.fields() {
        if f.cardinality() == prost_reflect::Cardinality::Required && !msg.has_field(&f) {
            let p = if path.is_empty() {
                f.name().to_string()
            } else {
                format!("{path}.{}", f.name())
            };
            return Err(cx.err(&p, format!("required field missing from {}", desc.name())));
        }
    }
    Ok(msg)
}

fn value_from_json(cx: &Ctx<'_>, p: &str, f: &FieldDescriptor, o: &CriuOpts, v: &Json) -> Result<Value> {
    let int = || -> Result<i128> {
        match v {
            Json::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or_else(|| cx.err(p, format!("{n} is not an integer"))),
            Json::Bool(b) => Ok(*b as i128),
            Json::String(s) => {
                if o.dev {
                    return pretty::dev_from_string(s, o.odev)
                        .map(i128::from)
                        .map_err(|e| cx.err(p, e));
                }
                if let Some(m) = o.flags.and_then(pretty::flags_map) {
                    return pretty::unmap_flags(s, m).map(i128::from).map_err(|e| cx.err(p, e));
                }
                if let Some(d) = o.dict {
                    if let Some(x) = pretty::dict_value(d, f.name(), s) {
                        return Ok(x);
                    }
                }
                pretty::parse_int(s).map_err(|e| cx.err(p, e))
            }
            _ => Err(cx.err(p, format!("want an integer, found {v}"))),
        }
    };
    let range = |x: i128, lo: i128, hi: i128| -> Result<i128> {
        if x < lo || x > hi {
            Err(cx.err(p, format!("{x} is out of range for {:?}", f.kind())))
        } else {
            Ok(x)
        }
    };
    Ok(match f.kind() {
        Kind::Bool => match v {
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Bool(n.as_u64().unwrap_or(1) != 0),
            _ => return Err(cx.err(p, format!("want true or false, found {v}"))),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(range(int()?, i32::MIN as i128, i32::MAX as i128)? as i32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(range(int()?, i64::MIN as i128, i64::MAX as i128)? as i64)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(range(int()?, 0, u32::MAX as i128)? as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(range(int()?, 0, u64::MAX as i128)? as u64),
        Kind::Float => Value::F32(v.as_f64().ok_or_else(|| cx.err(p, "want a number"))? as f32),
        Kind::Double => Value::F64(v.as_f64().ok_or_else(|| cx.err(p, "want a number"))?),
        Kind::String => Value::String(
            v.as_str()
                .ok_or_else(|| cx.err(p, format!("want a string, found {v}")))?
                .to_string(),
        ),
        Kind::Bytes => {
            let s = v.as_str().ok_or_else(|| cx.err(p, "want an encoded string"))?;
            let b = if o.conv == Some("unix_name") {
                pretty::quopri_decode(s)
            } else {
                pretty::base64_decode(s).map_err(|e| cx.err(p, e))?
            };
            Value::Bytes(b.into())
        }
        Kind::Enum(e) => match v {
            Json::String(s) => Value::EnumNumber(
                e.get_value_by_name(s)
                    .ok_or_else(|| cx.err(p, format!("{s:?} is not a value of enum {}", e.name())))?
                    .number(),
            ),
            Json::Number(n) => Value::EnumNumber(
                n.as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| cx.err(p, "bad enum number"))?,
            ),
            _ => return Err(cx.err(p, format!("want an enum name, found {v}"))),
        },
        Kind::Message(m) => {
            let mo = v.as_object().ok_or_else(|| cx.err(p, "want an object"))?;
            Value::Message(message_from_json(cx, p, &m, mo)?)
        }
    })
}

/// Encode a message's JSON the typed way (helper for tests and tools).
pub fn message_descriptor_of<M: ReflectMessage>(m: &M) -> MessageDescriptor {
    m.descriptor()
}

#[cfg(test)]
mod tests {
    #[test]
    fn criu_options_are_read() {
        let m = crate::message_descriptor("thread_info_x86").unwrap();
        assert!(super::criu_opts(&m.get_field_by_name("clear_tid_addr").unwrap()).hex);
        let m = crate::message_descriptor("vma_entry").unwrap();
        assert_eq!(
            super::criu_opts(&m.get_field_by_name("status").unwrap()).flags,
            Some("mmap.status")
        );
        let m = crate::message_descriptor("pstree_entry").unwrap();
        assert!(!super::criu_opts(&m.get_field_by_name("pid").unwrap()).hex);
    }
}
