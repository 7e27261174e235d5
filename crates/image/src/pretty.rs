//! The value conversions crit applies: base64 as Python's `base64.encodebytes` writes it, quoted-printable
//! as `quopri.encodestring`, and the `--pretty` forms of CRIU's field options (hex, dev, flags, dict, ipadd).

use base64::Engine as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Base64 with a newline after every 76 characters and at the end (empty input: empty string).
pub fn base64_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() / 3 * 4 + data.len() / 57 + 8);
    for chunk in data.chunks(57) {
        B64.encode_string(chunk, &mut out);
        out.push('\n');
    }
    out
}

/// Decode base64, ignoring line breaks and other white space (as Python's `decodebytes`).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    B64.decode(&clean).map_err(|e| format!("bad base64: {e}"))
}

/// Quoted-printable as Python's `quopri.encodestring` (binascii.b2a_qp, text mode, 76-column lines).
pub fn quopri_encode(data: &[u8]) -> String {
    const MAX: usize = 76;
    let crlf = data
        .iter()
        .position(|&c| c == b'\n')
        .is_some_and(|i| i > 0 && data[i - 1] == b'\r');
    let mut out = String::new();
    let mut linelen = 0usize;
    let n = data.len();
    let mut i = 0;
    while i < n {
        let c = data[i];
        let next = data.get(i + 1).copied();
        let must_encode = c > 126
            || c == b'='
            || (c == b'.' && linelen == 0 && matches!(next, None | Some(b'\n') | Some(b'\r') | Some(0)))
            || ((c == b'\t' || c == b' ') && i + 1 == n)
            || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ');
        if must_encode {
            if linelen + 3 >= MAX {
                out.push_str("=\n");
                linelen = 0;
            }
            out.push_str(&format!("={c:02X}"));
            linelen += 3;
            i += 1;
        } else if c == b'\n' || (c == b'\r' && next == Some(b'\n')) {
            // Trailing white space before a line break is encoded.
            if let Some(last) = out.chars().last() {
                if last == ' ' || last == '\t' {
                    out.pop();
                    out.push_str(&format!("={:02X}", last as u8));
                }
            }
            out.push_str(if crlf { "\r\n" } else { "\n" });
            linelen = 0;
            i += if c == b'\r' { 2 } else { 1 };
        } else {
            if i + 1 != n && next != Some(b'\n') && linelen + 1 >= MAX {
                out.push_str("=\n");
                linelen = 0;
            }
            out.push(c as char);
            linelen += 1;
            i += 1;
        }
    }
    out
}

/// Undo quoted-printable (`=XX` escapes and `=` soft line breaks).
pub fn quopri_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hexval = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hexval(c)),
                b.get(i + 2).and_then(|&c| hexval(c)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `"0x%x"` as Python formats it (negative numbers as `-0x…`).
pub fn hex(x: i128) -> String {
    if x < 0 {
        format!("-{:#x}", -x)
    } else {
        format!("{x:#x}")
    }
}

const MINORBITS: u32 = 20;

/// `major:minor` of a device number: the kernel's packing, or glibc's `makedev` packing for `odev`.
pub fn dev_to_string(v: u64, old: bool) -> String {
    if old {
        let major = ((v >> 8) & 0xfff) | ((v >> 32) & !0xfff);
        let minor = (v & 0xff) | ((v >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!("{}:{}", v >> MINORBITS, v & ((1 << MINORBITS) - 1))
    }
}

/// Parse `major:minor` back into a device number.
pub fn dev_from_string(s: &str, old: bool) -> Result<u64, String> {
    let (a, b) = s.split_once(':').ok_or_else(|| format!("{s:?} is not major:minor"))?;
    let major: u64 = a.trim().parse().map_err(|_| format!("bad major in {s:?}"))?;
    let minor: u64 = b.trim().parse().map_err(|_| format!("bad minor in {s:?}"))?;
    Ok(if old {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    } else {
        major << MINORBITS | minor
    })
}

type FlagMap = &'static [(&'static str, u64)];

const MMAP_PROT: FlagMap = &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];
const MMAP_FLAGS: FlagMap = &[
    ("MAP_SHARED", 0x1),
    ("MAP_PRIVATE", 0x2),
    ("MAP_ANON", 0x20),
    ("MAP_GROWSDOWN", 0x100),
];
const MMAP_STATUS: FlagMap = &[
    ("VMA_AREA_NONE", 0),
    ("VMA_AREA_REGULAR", 1 << 0),
    ("VMA_AREA_STACK", 1 << 1),
    ("VMA_AREA_VSYSCALL", 1 << 2),
    ("VMA_AREA_VDSO", 1 << 3),
    ("VMA_AREA_HEAP", 1 << 5),
    ("VMA_FILE_PRIVATE", 1 << 6),
    ("VMA_FILE_SHARED", 1 << 7),
    ("VMA_ANON_SHARED", 1 << 8),
    ("VMA_ANON_PRIVATE", 1 << 9),
    ("VMA_AREA_SYSVIPC", 1 << 10),
    ("VMA_AREA_SOCKET", 1 << 11),
    ("VMA_AREA_VVAR", 1 << 12),
    ("VMA_AREA_AIORING", 1 << 13),
    ("VMA_AREA_MEMFD", 1 << 14),
    ("VMA_UNSUPP", 1 << 31),
];
const RFILE_FLAGS: FlagMap = &[
    ("O_WRONLY", 0o1),
    ("O_RDWR", 0o2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_NOCTTY", 0o400),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
    ("O_NONBLOCK", 0o4000),
    ("O_DSYNC", 0o10000),
    ("FASYNC", 0o20000),
    ("O_DIRECT", 0o40000),
    ("O_LARGEFILE", 0o100000),
    ("O_DIRECTORY", 0o200000),
    ("O_NOFOLLOW", 0o400000),
    ("O_NOATIME", 0o1000000),
    ("O_CLOEXEC", 0o2000000),
];
const SEALS_FLAGS: FlagMap = &[
    ("F_SEAL_SEAL", 0x1),
    ("F_SEAL_SHRINK", 0x2),
    ("F_SEAL_GROW", 0x4),
    ("F_SEAL_WRITE", 0x8),
    ("F_SEAL_FUTURE_WRITE", 0x10),
];
const PMAP_FLAGS: FlagMap = &[("PE_PARENT", 1 << 0), ("PE_LAZY", 1 << 1), ("PE_PRESENT", 1 << 2)];

/// The flag table behind a `(criu).flags` name, if crit knows it.
pub fn flags_map(name: &str) -> Option<FlagMap> {
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

/// Names of the set bits joined with `" | "`, unknown bits last as hex (0: empty string).
pub fn map_flags(mut v: u64, map: FlagMap) -> String {
    let mut parts: Vec<String> = map
        .iter()
        .filter(|(_, b)| v & b != 0)
        .map(|(n, _)| n.to_string())
        .collect();
    let all: u64 = map.iter().map(|(_, b)| b).sum();
    v &= !all;
    if v != 0 {
        parts.push(format!("{v:#x}"));
    }
    parts.join(" | ")
}

/// Parse `"A | B | 0x40"` back into a number.
pub fn unmap_flags(s: &str, map: FlagMap) -> Result<u64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut v = 0u64;
    for part in s.split('|').map(str::trim) {
        v += match map.iter().find(|(n, _)| *n == part) {
            Some((_, b)) => *b,
            None => {
                let x = parse_int(part).map_err(|_| format!("{part:?} is not a flag name or number"))?;
                u64::try_from(x).map_err(|_| format!("{part:?} is negative"))?
            }
        };
    }
    Ok(v)
}

fn dict_table(dict: &str, field: &str) -> Option<&'static [(i128, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (3, "Zombie"), (6, "Stopped")],
        ("sk", "family") => &[(1, "UNIX"), (2, "INET"), (10, "INET6"), (16, "NETLINK"), (17, "PACKET")],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

/// The name a `(criu).dict` table gives a value.
pub fn dict_name(dict: &str, field: &str, v: i128) -> Option<&'static str> {
    dict_table(dict, field)?.iter().find(|(x, _)| *x == v).map(|(_, n)| *n)
}

/// The value of a `(criu).dict` name.
pub fn dict_value(dict: &str, field: &str, name: &str) -> Option<i128> {
    dict_table(dict, field)?
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(x, _)| *x)
}

/// Python's `int(s, 0)`: decimal, 0x, 0o, 0b, with sign and underscores.
pub fn parse_int(s: &str) -> Result<i128, String> {
    let t = s.trim().replace('_', "");
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, t.strip_prefix('+').unwrap_or(&t).to_string()),
    };
    let lower = t.to_ascii_lowercase();
    let r = if let Some(h) = lower.strip_prefix("0x") {
        i128::from_str_radix(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        i128::from_str_radix(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        i128::from_str_radix(b, 2)
    } else {
        lower.parse::<i128>()
    };
    let v = r.map_err(|_| format!("{s:?} is not a number"))?;
    Ok(if neg { -v } else { v })
}

/// An address from CRIU's `ipadd` words (network-order u32s: one for IPv4, four for IPv6).
pub fn ip_from_words(items: &[prost_reflect::Value]) -> String {
    let w: Vec<u32> = items.iter().map(|v| v.as_u32().unwrap_or(0)).collect();
    ip_from_u32s(&w)
}

/// As [`ip_from_words`], from the words themselves.
pub fn ip_from_u32s(w: &[u32]) -> String {
    if w.len() == 1 {
        std::net::Ipv4Addr::from(u32::from_be(w[0])).to_string()
    } else {
        let mut b = [0u8; 16];
        for (i, x) in w.iter().take(4).enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
        }
        std::net::Ipv6Addr::from(b).to_string()
    }
}

/// Words for an address string (inverse of [`ip_from_words`]).
pub fn ip_to_words(s: &str) -> Result<Vec<u32>, String> {
    let a: std::net::IpAddr = s.parse().map_err(|_| format!("{s:?} is not an IP address"))?;
    Ok(match a {
        std::net::IpAddr::V4(v) => vec![u32::from(v).to_be()],
        std::net::IpAddr::V6(v) => v
            .octets()
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_wraps_like_python() {
        assert_eq!(base64_lines(b""), "");
        assert_eq!(base64_lines(b"ab"), "YWI=\n");
        let l = base64_lines(&[7u8; 100]);
        assert_eq!(l.lines().next().unwrap().len(), 76);
        assert_eq!(base64_decode(&l).unwrap(), vec![7u8; 100]);
    }

    #[test]
    fn quopri_round_trip() {
        let s = b"\0/tmp/sock=1 \xff";
        let e = quopri_encode(s);
        assert_eq!(e, "=00/tmp/sock=3D1 =FF");
        assert_eq!(quopri_decode(&e), s);
        let long = vec![b'a'; 200];
        assert_eq!(quopri_decode(&quopri_encode(&long)), long);
    }

    #[test]
    fn flags_and_devs() {
        assert_eq!(map_flags(0, RFILE_FLAGS), "");
        assert_eq!(
            map_flags(0o100002 | 0x8000_0000, RFILE_FLAGS),
            "O_RDWR | O_LARGEFILE | 0x80000000"
        );
        assert_eq!(
            unmap_flags("O_RDWR | O_LARGEFILE | 0x80000000", RFILE_FLAGS).unwrap(),
            0o100002 | 0x8000_0000
        );
        assert_eq!(dev_to_string(266338304, false), "254:0");
        assert_eq!(dev_from_string("254:0", false).unwrap(), 266338304);
        assert_eq!(
            dev_from_string(&dev_to_string(0x1234_5678, true), true).unwrap(),
            0x1234_5678
        );
        assert_eq!(hex(-5), "-0x5");
        assert_eq!(parse_int("0x1f").unwrap(), 31);
    }

    #[test]
    fn ip_words() {
        let w = ip_to_words("127.0.0.1").unwrap();
        let v: Vec<_> = w.iter().map(|&x| prost_reflect::Value::U32(x)).collect();
        assert_eq!(ip_from_words(&v), "127.0.0.1");
        let w = ip_to_words("::1").unwrap();
        let v: Vec<_> = w.iter().map(|&x| prost_reflect::Value::U32(x)).collect();
        assert_eq!(ip_from_words(&v), "::1");
    }
}
