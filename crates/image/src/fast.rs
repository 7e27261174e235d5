//! The fast image -> JSON path: protobuf wire bytes straight to crit's JSON through static tables generated
//! at build time (`schema.rs`), without building prost-reflect descriptors or dynamic messages. Building
//! descriptors costs more than the rest of a `crit decode` put together, and a decode is usually one process
//! per image.
//!
//! It covers the well-formed common case only and gives up (`None`) on anything else: unknown fields, a
//! field that appears twice, a missing required field, invalid UTF-8, an enum number without a name,
//! truncation, and image kinds with payloads other than none (pagemap included). The caller then takes
//! the reflective path ([`crate::codec::decode`] + [`crate::json::image_to_json`]), which gives the exact
//! error or keeps the unknown fields under `"_unknown"`. Tests check both paths give the same JSON for
//! every fixture image, and the fuzz target checks it for arbitrary input.

use serde_json::{Map, Value as Json};

use crate::codec::{identify, Kind};
use crate::json::{bytes_to_json, int_to_json, CriuOpts};
use crate::pretty;

/// A field's protobuf type (CRIU's protos use only some of them; the generator maps them all).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    /// Index into MESSAGES.
    Message(u16),
    /// Index into ENUMS.
    Enum(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Optional,
    Required,
    Repeated,
}

/// A name in the generated tables: offset and length in NAMES.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name(u32, u16);

impl Name {
    fn get(self) -> &'static str {
        &generated::NAMES[self.0 as usize..self.0 as usize + self.1 as usize]
    }
}

#[derive(Debug)]
pub(crate) struct FieldSchema {
    number: u32,
    name: Name,
    ty: Ty,
    label: Label,
    /// Index into OPTS.
    opts: u16,
}

impl FieldSchema {
    fn name(&self) -> &'static str {
        self.name.get()
    }

    fn opts(&self) -> &'static CriuOpts {
        &generated::OPTS[self.opts as usize]
    }
}

#[derive(Debug)]
pub(crate) struct MsgSchema {
    name: Name,
    /// The fields are FIELDS[first..first + len].
    first: u32,
    len: u16,
}

impl MsgSchema {
    fn fields(&self) -> &'static [FieldSchema] {
        &generated::FIELDS[self.first as usize..self.first as usize + self.len as usize]
    }
}

mod generated {
    use super::{FieldSchema, Label, MsgSchema, Name, Ty};
    use crate::json::{CriuOpts, NO_OPTS};
    include!(concat!(env!("OUT_DIR"), "/schema.rs"));
}

fn message_schema(name: &str) -> Option<&'static MsgSchema> {
    let i = generated::MESSAGES.binary_search_by(|m| m.name.get().cmp(name)).ok()?;
    Some(&generated::MESSAGES[i])
}

/// CRIU's options of a field, by its message's full name and its number.
pub(crate) fn field_opts(message: &str, number: u32) -> Option<&'static CriuOpts> {
    let fields = message_schema(message)?.fields();
    let i = fields.binary_search_by_key(&number, |f| f.number).ok()?;
    Some(fields[i].opts())
}

fn enum_name(e: u16, n: i32) -> Option<&'static str> {
    let (first, count) = generated::ENUMS[e as usize];
    let vals = &generated::ENUM_VALUES[first as usize..(first + count) as usize];
    let i = vals.binary_search_by_key(&n, |(v, _)| *v).ok()?;
    Some(vals[i].1.get())
}

/// Whether the fast path handles this image kind at all (not those whose entries carry payloads).
pub fn covers(magic_name: &str) -> bool {
    !matches!(
        magic_name,
        "PIPES_DATA"
            | "FIFO_DATA"
            | "SK_QUEUES"
            | "BPFMAP_DATA"
            | "TCP_STREAM"
            | "IPCNS_SHM"
            | "IPCNS_SEM"
            | "IPCNS_MSG"
            | "GHOST_FILE"
    )
}

/// An image's JSON by the fast path, or `None` when the reflective path must do it (see the module docs).
pub fn image_json(data: &[u8], pretty: bool) -> Option<Json> {
    let Kind::Entries { magic, body, .. } = identify(data) else {
        return None;
    };
    if !covers(magic.name) {
        return None;
    }
    let (first, rest) = match magic.name {
        "PAGEMAP" => (message_schema("pagemap_head")?, message_schema("pagemap_entry")?),
        _ => {
            let m = message_schema(magic.message?)?;
            (m, m)
        }
    };
    let mut entries = Vec::new();
    let mut pos = body;
    while pos < data.len() {
        let len = u32::from_le_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        let msg = data.get(pos..pos.checked_add(len)?)?;
        pos += len;
        let schema = if entries.is_empty() { first } else { rest };
        entries.push(Json::Object(message(schema, msg, pretty, false)?));
    }
    let mut top = Map::new();
    top.insert("magic".into(), Json::String(magic.name.to_string()));
    top.insert("entries".into(), Json::Array(entries));
    Some(Json::Object(top))
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn fixed<const N: usize>(b: &[u8], pos: &mut usize) -> Option<[u8; N]> {
    let s: [u8; N] = b.get(*pos..*pos + N)?.try_into().ok()?;
    *pos += N;
    Some(s)
}

/// What has been read for one field of a message.
enum Slot {
    Empty,
    One(Json),
    Many(Vec<Json>),
    /// A repeated `ipadd` field in pretty mode: the words, printed as one address at the end.
    Words(Vec<u32>),
}

/// One scalar value of type `ty` from the wire (`wire`: its wire type), as JSON.
fn scalar(f: &FieldSchema, wire: u64, b: &[u8], pos: &mut usize, pretty: bool, hex: bool) -> Option<Json> {
    let o = f.opts();
    let int = |x: i128| Some(int_to_json(f.name(), o, x, pretty, hex));
    match (f.ty, wire) {
        (Ty::Int32, 0) => int(varint(b, pos)? as i32 as i128),
        (Ty::Int64, 0) => int(varint(b, pos)? as i64 as i128),
        (Ty::Uint32, 0) => int(varint(b, pos)? as u32 as i128),
        (Ty::Uint64, 0) => int(varint(b, pos)? as i128),
        (Ty::Sint32, 0) => {
            let v = varint(b, pos)? as u32;
            int((((v >> 1) as i32) ^ -((v & 1) as i32)) as i128)
        }
        (Ty::Sint64, 0) => {
            let v = varint(b, pos)?;
            int((((v >> 1) as i64) ^ -((v & 1) as i64)) as i128)
        }
        (Ty::Bool, 0) => Some(Json::Bool(varint(b, pos)? != 0)),
        (Ty::Enum(e), 0) => Some(Json::String(enum_name(e, varint(b, pos)? as i32)?.to_string())),
        (Ty::Fixed32, 5) => int(u32::from_le_bytes(fixed(b, pos)?) as i128),
        (Ty::Sfixed32, 5) => int(i32::from_le_bytes(fixed(b, pos)?) as i128),
        (Ty::Float, 5) => Some(Json::from(f32::from_le_bytes(fixed(b, pos)?) as f64)),
        (Ty::Fixed64, 1) => int(u64::from_le_bytes(fixed(b, pos)?) as i128),
        (Ty::Sfixed64, 1) => int(i64::from_le_bytes(fixed(b, pos)?) as i128),
        (Ty::Double, 1) => Some(Json::from(f64::from_le_bytes(fixed(b, pos)?))),
        (Ty::String | Ty::Bytes | Ty::Message(_), 2) => {
            let len = usize::try_from(varint(b, pos)?).ok()?;
            let body = b.get(*pos..pos.checked_add(len)?)?;
            *pos += len;
            match f.ty {
                Ty::String => Some(Json::String(std::str::from_utf8(body).ok()?.to_string())),
                Ty::Bytes => Some(bytes_to_json(o, body)),
                Ty::Message(m) => Some(Json::Object(message(
                    &generated::MESSAGES[m as usize],
                    body,
                    pretty,
                    hex,
                )?)),
                _ => unreachable!("matched above"),
            }
        }
        _ => None,
    }
}

/// Whether values of this type can come packed (several in one length-delimited field).
fn packable(ty: Ty) -> bool {
    !matches!(ty, Ty::String | Ty::Bytes | Ty::Message(_))
}

/// One message's JSON object: its set fields in field-number order (`is_hex`: a parent field was hex).
fn message(schema: &MsgSchema, b: &[u8], pretty: bool, is_hex: bool) -> Option<Map<String, Json>> {
    let fields = schema.fields();
    let mut slots: Vec<Slot> = (0..fields.len()).map(|_| Slot::Empty).collect();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let number = u32::try_from(key >> 3).ok()?;
        let wire = key & 7;
        let i = fields.binary_search_by_key(&number, |f| f.number).ok()?;
        let f = &fields[i];
        let hex = is_hex || f.opts().hex;
        if f.label != Label::Repeated {
            if !matches!(slots[i], Slot::Empty) {
                return None; // last-one-wins / merge semantics: left to the reflective path
            }
            slots[i] = Slot::One(scalar(f, wire, b, &mut pos, pretty, hex)?);
            continue;
        }
        let ipadd = pretty && f.opts().ipadd;
        if ipadd && !matches!(f.ty, Ty::Uint32) {
            return None;
        }
        // Packed: a run of values in one length-delimited field.
        let run = if wire == 2 && packable(f.ty) {
            let len = usize::try_from(varint(b, &mut pos)?).ok()?;
            let end = pos.checked_add(len)?;
            if len == 0 || end > b.len() {
                return None;
            }
            let start = pos;
            pos = end;
            Some((start, end))
        } else {
            None
        };
        let elem_wire = match f.ty {
            Ty::Fixed32 | Ty::Sfixed32 | Ty::Float => 5,
            Ty::Fixed64 | Ty::Sfixed64 | Ty::Double => 1,
            Ty::String | Ty::Bytes | Ty::Message(_) => 2,
            _ => 0,
        };
        let push = |slot: &mut Slot, bytes: &[u8], p: &mut usize, w: u64| -> Option<()> {
            if ipadd {
                if w != 0 {
                    return None;
                }
                let x = varint(bytes, p)? as u32;
                match slot {
                    Slot::Empty => *slot = Slot::Words(vec![x]),
                    Slot::Words(v) => v.push(x),
                    _ => return None,
                }
            } else {
                let j = scalar(f, w, bytes, p, pretty, hex)?;
                match slot {
                    Slot::Empty => *slot = Slot::Many(vec![j]),
                    Slot::Many(v) => v.push(j),
                    _ => return None,
                }
            }
            Some(())
        };
        match run {
            Some((start, end)) => {
                let body = &b[..end];
                let mut p = start;
                while p < end {
                    push(&mut slots[i], body, &mut p, elem_wire)?;
                }
            }
            None => push(&mut slots[i], b, &mut pos, wire)?,
        }
    }
    let mut out = Map::new();
    for (f, slot) in fields.iter().zip(slots) {
        let j = match slot {
            Slot::Empty if f.label == Label::Required => return None,
            Slot::Empty => continue,
            Slot::One(j) => j,
            Slot::Many(v) => Json::Array(v),
            Slot::Words(w) => Json::Array(vec![Json::String(pretty::ip_from_u32s(&w))]),
        };
        out.insert(f.name().to_string(), j);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_consistent() {
        assert!(generated::MESSAGES
            .windows(2)
            .all(|w| w[0].name.get() < w[1].name.get()));
        for m in generated::MESSAGES {
            let fields = m.fields();
            for f in fields {
                match f.ty {
                    Ty::Message(i) => assert!((i as usize) < generated::MESSAGES.len(), "{}", f.name()),
                    Ty::Enum(i) => assert!((i as usize) < generated::ENUMS.len(), "{}", f.name()),
                    _ => {}
                }
            }
            assert!(fields.windows(2).all(|w| w[0].number < w[1].number), "{}", m.name.get());
        }
        assert_eq!(enum_name(message_enum("core_entry", 1), 1), Some("X86_64"));
        assert!(field_opts("vma_entry", 1).unwrap().hex);
        assert_eq!(field_opts("vma_entry", 7).unwrap().flags, Some("mmap.status"));
        assert!(!field_opts("pstree_entry", 1).unwrap().hex);
    }

    fn message_enum(msg: &str, number: u32) -> u16 {
        let f = message_schema(msg)
            .unwrap()
            .fields()
            .iter()
            .find(|f| f.number == number)
            .unwrap();
        match f.ty {
            Ty::Enum(e) => e,
            _ => panic!("{msg}.{number} is not an enum"),
        }
    }
}
