//! Whole images: the head magics, `[u32 size][message]` entries to the end of the file, and the payloads
//! that follow some entries. Decoding is dynamic (prost-reflect), so every image kind in the table decodes,
//! and re-encoding is byte-identical: fields are written in field-number order as protobuf-c does, and
//! unknown fields are kept and written back.
//!
//! Every length is checked against what is left of the input before anything is allocated, so a corrupt
//! length prefix costs nothing.

use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};

use crate::error::{ImageError, Result};
use crate::magic::{self, MagicDesc, IMG_COMMON, IMG_SERVICE};

/// The payload that follows an entry (crit's "extra").
#[derive(Debug, Clone, PartialEq)]
pub enum Extra {
    /// Nothing follows.
    None,
    /// Raw bytes (pipes-data, fifo-data, sk-queues, bpfmap-data, ghost-file contents, ipcns-shm).
    Blob(Vec<u8>),
    /// tcp-stream: receive and send queues.
    Tcp { inq: Vec<u8>, outq: Vec<u8> },
    /// ipcns-sem: the semaphore values (u16 each, padded to 8 bytes in the file).
    Sems(Vec<u16>),
    /// ipcns-msg: the queued messages, each an `ipc_msg` and its data (padded to 8 bytes in the file).
    Msgs(Vec<(DynamicMessage, Vec<u8>)>),
}

/// One entry of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub msg: DynamicMessage,
    pub extra: Extra,
}

/// A decoded image (everything but raw images).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub magic: &'static MagicDesc,
    /// The head magic the file had (`IMG_COMMON`, `IMG_SERVICE`, or `None` for inventory).
    pub head: Option<u32>,
    pub entries: Vec<Entry>,
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A protobuf image; the entries start at `body`.
    Entries {
        magic: &'static MagicDesc,
        head: Option<u32>,
        body: usize,
    },
    /// No known magic: a raw image such as pages-*.img (or garbage).
    Raw { first: Option<u32> },
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Identify an image from its first bytes.
pub fn identify(data: &[u8]) -> Kind {
    let Some(first) = le32(data, 0) else {
        return Kind::Raw { first: None };
    };
    if first == IMG_COMMON || first == IMG_SERVICE {
        if let Some(m) = le32(data, 4).and_then(magic::by_value) {
            return Kind::Entries {
                magic: m,
                head: Some(first),
                body: 8,
            };
        }
        return Kind::Raw { first: Some(first) };
    }
    match magic::by_value(first) {
        Some(m) if m.name == "INVENTORY" => Kind::Entries {
            magic: m,
            head: None,
            body: 4,
        },
        _ => Kind::Raw { first: Some(first) },
    }
}

/// The descriptor of a message by its proto name.
pub fn message(name: &str) -> MessageDescriptor {
    crate::message_descriptor(name).unwrap_or_else(|| panic!("message {name} missing from the compiled protos"))
}

/// The descriptor of a message with every architecture's definitions (for building messages from JSON).
pub fn message_full(name: &str) -> MessageDescriptor {
    crate::message_descriptor_full(name).unwrap_or_else(|| panic!("message {name} missing from the compiled protos"))
}

/// Cursor over an image's bytes with errors that name the file, entry and offset.
struct Reader<'a> {
    file: &'a str,
    data: &'a [u8],
    pos: usize,
    index: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn err(&self, offset: usize, what: impl Into<String>) -> ImageError {
        ImageError::Entry {
            file: self.file.to_string(),
            index: self.index,
            offset,
            what: what.into(),
        }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(self.err(
                self.pos,
                format!("{what}: needs {n} bytes, only {left} left in the file"),
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// `[u32 size][message]`.
    fn message(&mut self, desc: &MessageDescriptor) -> Result<DynamicMessage> {
        let start = self.pos;
        let left = self.data.len() - self.pos;
        if left < 4 {
            return Err(self.err(start, format!("truncated length prefix ({left} of 4 bytes)")));
        }
        let len = le32(self.data, self.pos).unwrap() as usize;
        self.pos += 4;
        if len > self.data.len() - self.pos {
            return Err(self.err(
                start,
                format!(
                    "length prefix {len} runs past the end of the file ({} bytes left)",
                    self.data.len() - self.pos
                ),
            ));
        }
        let body = &self.data[self.pos..self.pos + len];
        self.pos += len;
        let dec = |desc: &MessageDescriptor| {
            DynamicMessage::decode(desc.clone(), body).map_err(|cause| ImageError::Decode {
                file: self.file.to_string(),
                index: self.index,
                offset: start,
                message: desc.name().to_string(),
                cause,
            })
        };
        let mut msg = dec(desc)?;
        // Another architecture's fields: decode again with the full definitions.
        if msg.unknown_fields().next().is_some() && crate::has_lean_variant(desc.name()) {
            msg = dec(&message_full(desc.name()))?;
        }
        if let Some(missing) = missing_required(&msg) {
            return Err(self.err(start, format!("{}: required field {missing} is missing", desc.name())));
        }
        Ok(msg)
    }
}

/// The first required field (as a dotted path) that a message or any message inside it lacks.
/// protobuf-c and Python's protobuf refuse such messages, so we do too.
pub fn missing_required(msg: &DynamicMessage) -> Option<String> {
    for f in msg.descriptor().fields() {
        if f.cardinality() == prost_reflect::Cardinality::Required && !msg.has_field(&f) {
            return Some(f.name().to_string());
        }
    }
    for (f, v) in msg.fields() {
        let sub = |m: &DynamicMessage| missing_required(m).map(|p| format!("{}.{p}", f.name()));
        match v {
            Value::Message(m) => {
                if let Some(p) = sub(m) {
                    return Some(p);
                }
            }
            Value::List(items) => {
                for (i, it) in items.iter().enumerate() {
                    if let Some(p) = it.as_message().and_then(missing_required) {
                        return Some(format!("{}[{i}].{p}", f.name()));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Read an unsigned integer field of a decoded entry (absent: 0).
pub fn get_u64(msg: &DynamicMessage, field: &str) -> u64 {
    match msg.get_field_by_name(field).as_deref() {
        Some(Value::U32(v)) => *v as u64,
        Some(Value::U64(v)) => *v,
        Some(Value::I32(v)) => *v as u64,
        Some(Value::I64(v)) => *v as u64,
        Some(Value::Bool(b)) => *b as u64,
        _ => 0,
    }
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Decode a whole image. `file` names it in errors.
pub fn decode(file: &str, data: &[u8]) -> Result<Image> {
    let (magic, head, body) = match identify(data) {
        Kind::Entries { magic, head, body } => (magic, head, body),
        Kind::Raw { first: None } => {
            return Err(ImageError::NoHead {
                file: file.into(),
                len: data.len(),
            })
        }
        Kind::Raw { first: Some(m) } => {
            let (magic, offset) = if m == IMG_COMMON || m == IMG_SERVICE {
                (le32(data, 4).unwrap_or(0), 4)
            } else {
                (m, 0)
            };
            return Err(ImageError::UnknownMagic {
                file: file.into(),
                magic,
                offset,
                hint: " (not a protobuf image: pages-*.img and other raw images have no magic)",
            });
        }
    };
    let msg_name = magic.message.expect("entry images have a message");
    let mut r = Reader {
        file,
        data,
        pos: body,
        index: 0,
    };
    let mut entries = Vec::new();
    match magic.name {
        "PAGEMAP" => {
            let head_d = message("pagemap_head");
            let ent_d = message("pagemap_entry");
            while !r.at_end() {
                let d = if r.index == 0 { &head_d } else { &ent_d };
                entries.push(Entry {
                    msg: r.message(d)?,
                    extra: Extra::None,
                });
                r.index += 1;
            }
        }
        "GHOST_FILE" => {
            let gf = r.message(&message("ghost_file_entry"))?;
            let chunks = get_u64(&gf, "chunks") != 0;
            if chunks {
                entries.push(Entry {
                    msg: gf,
                    extra: Extra::None,
                });
                let chunk_d = message("ghost_chunk_entry");
                while !r.at_end() {
                    r.index += 1;
                    let c = r.message(&chunk_d)?;
                    let len = get_u64(&c, "len") as usize;
                    let blob = r.bytes(len, "ghost chunk data")?.to_vec();
                    entries.push(Entry {
                        msg: c,
                        extra: Extra::Blob(blob),
                    });
                }
            } else {
                let rest = data[r.pos..].to_vec();
                entries.push(Entry {
                    msg: gf,
                    extra: Extra::Blob(rest),
                });
            }
        }
        _ => {
            let desc = message(msg_name);
            while !r.at_end() {
                let msg = r.message(&desc)?;
                let extra = read_extra(&mut r, magic.name, &msg)?;
                entries.push(Entry { msg, extra });
                r.index += 1;
            }
        }
    }
    Ok(Image { magic, head, entries })
}

fn read_extra(r: &mut Reader<'_>, kind: &str, msg: &DynamicMessage) -> Result<Extra> {
    Ok(match kind {
        "PIPES_DATA" | "FIFO_DATA" => Extra::Blob(r.bytes(get_u64(msg, "bytes") as usize, "pipe data")?.to_vec()),
        "SK_QUEUES" => Extra::Blob(r.bytes(get_u64(msg, "length") as usize, "socket queue data")?.to_vec()),
        "BPFMAP_DATA" => {
            let n = get_u64(msg, "keys_bytes").saturating_add(get_u64(msg, "values_bytes"));
            Extra::Blob(r.bytes(n as usize, "bpf map data")?.to_vec())
        }
        "TCP_STREAM" => {
            let inq = r.bytes(get_u64(msg, "inq_len") as usize, "tcp receive queue")?.to_vec();
            let outq = r.bytes(get_u64(msg, "outq_len") as usize, "tcp send queue")?.to_vec();
            Extra::Tcp { inq, outq }
        }
        "IPCNS_SHM" => {
            if get_u64(msg, "in_pagemaps") != 0 {
                Extra::Blob(Vec::new())
            } else {
                let size = get_u64(msg, "size") as usize;
                let data = r.bytes(size, "shm contents")?.to_vec();
                r.bytes(round_up(size, 4) - size, "shm padding")?;
                Extra::Blob(data)
            }
        }
        "IPCNS_SEM" => {
            let n = get_u64(msg, "nsems") as usize;
            let size = n.checked_mul(2).ok_or_else(|| r.err(r.pos, "nsems overflows"))?;
            let raw = r.bytes(size, "semaphore values")?;
            r.bytes(round_up(size, 8) - size, "semaphore padding")?;
            Extra::Sems(raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
        }
        "IPCNS_MSG" => {
            let q = get_u64(msg, "qnum") as usize;
            let d = message("ipc_msg");
            let mut msgs = Vec::new();
            for _ in 0..q {
                let m = r.message(&d)?;
                let size = get_u64(&m, "msize") as usize;
                let data = r.bytes(size, "message data")?.to_vec();
                r.bytes(round_up(size, 8) - size, "message padding")?;
                msgs.push((m, data));
            }
            Extra::Msgs(msgs)
        }
        _ => Extra::None,
    })
}

fn put_message(out: &mut Vec<u8>, msg: &DynamicMessage) {
    let len = msg.encoded_len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(out).expect("Vec grows");
}

/// Encode an image back to bytes. Payload sizes must agree with the entry fields that give them.
pub fn encode(file: &str, img: &Image) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(h) = img.head {
        out.extend_from_slice(&h.to_le_bytes());
    }
    out.extend_from_slice(&img.magic.magic.to_le_bytes());
    for (index, e) in img.entries.iter().enumerate() {
        let offset = out.len();
        put_message(&mut out, &e.msg);
        let bad = |what: String| ImageError::Entry {
            file: file.into(),
            index,
            offset,
            what,
        };
        let want = |field: &str, have: usize| -> Result<()> {
            let w = get_u64(&e.msg, field) as usize;
            if w != have {
                return Err(bad(format!("payload is {have} bytes but {field} says {w}")));
            }
            Ok(())
        };
        match (&e.extra, img.magic.name) {
            (Extra::None, _) => {}
            (Extra::Blob(b), "PIPES_DATA" | "FIFO_DATA") => {
                want("bytes", b.len())?;
                out.extend_from_slice(b)
            }
            (Extra::Blob(b), "SK_QUEUES") => {
                want("length", b.len())?;
                out.extend_from_slice(b)
            }
            (Extra::Blob(b), "GHOST_FILE") => {
                if index > 0 {
                    want("len", b.len())?;
                }
                out.extend_from_slice(b)
            }
            (Extra::Blob(b), "BPFMAP_DATA") => {
                let w = (get_u64(&e.msg, "keys_bytes") + get_u64(&e.msg, "values_bytes")) as usize;
                if w != b.len() {
                    return Err(bad(format!(
                        "payload is {} bytes but keys_bytes + values_bytes say {w}",
                        b.len()
                    )));
                }
                out.extend_from_slice(b)
            }
            (Extra::Blob(b), "IPCNS_SHM") => {
                if get_u64(&e.msg, "in_pagemaps") == 0 {
                    want("size", b.len())?;
                    out.extend_from_slice(b);
                    out.resize(out.len() + round_up(b.len(), 4) - b.len(), 0);
                }
            }
            (Extra::Tcp { inq, outq }, "TCP_STREAM") => {
                want("inq_len", inq.len())?;
                want("outq_len", outq.len())?;
                out.extend_from_slice(inq);
                out.extend_from_slice(outq);
            }
            (Extra::Sems(v), "IPCNS_SEM") => {
                want("nsems", v.len())?;
                for s in v {
                    out.extend_from_slice(&s.to_le_bytes());
                }
                out.resize(out.len() + round_up(v.len() * 2, 8) - v.len() * 2, 0);
            }
            (Extra::Msgs(v), "IPCNS_MSG") => {
                want("qnum", v.len())?;
                for (m, data) in v {
                    put_message(&mut out, m);
                    let size = get_u64(m, "msize") as usize;
                    if size != data.len() {
                        return Err(bad(format!(
                            "message data is {} bytes but msize says {size}",
                            data.len()
                        )));
                    }
                    out.extend_from_slice(data);
                    out.resize(out.len() + round_up(size, 8) - size, 0);
                }
            }
            (x, kind) => return Err(bad(format!("a {kind} entry cannot carry this payload ({x:?})"))),
        }
    }
    Ok(out)
}
