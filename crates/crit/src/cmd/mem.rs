//! `crit mem DIR --pid P`: a process's memory from the dumped pages.
//!
//! * no other option: the mappings, with how much of each the dump holds;
//! * `--addr A [--len N]`: the bytes at A, as `hexdump -C` (default), `--raw` or `--hex`;
//! * `--shm ID [--addr OFF --len N]`: the contents of SysV shm segment ID (its offsets; all of it
//!   without `--addr`), attached by a process or not;
//! * `--search TEXT | --regex RE | --bytes HEX`: every match, with its mapping and the bytes around it,
//!   narrowed with `--prot`, `--range` and `--kind`; `--json` prints JSON Lines (one object per match,
//!   then a summary). Without `--pid` every process is searched and each line starts with the pid.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use cryo_image::ImageSet;
use serde_json::json;

use crate::explore;
use crate::explore::table::{Align, Table};
use crate::explore::vma::{VmaKind, PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::io::write_output;
use crate::memory::{
    bytes_regex, escape, hexdump, literal, parse_hex, Filter, Memory, SearchError, SearchOpts, OVERLAP,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Anon,
    File,
    Stack,
    Heap,
    Shared,
}

impl From<Kind> for VmaKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Anon => VmaKind::Anon,
            Kind::File => VmaKind::File,
            Kind::Stack => VmaKind::Stack,
            Kind::Heap => VmaKind::Heap,
            Kind::Shared => VmaKind::Shared,
        }
    }
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("pattern").args(["search", "regex", "bytes"])))]
#[command(group(ArgGroup::new("format").args(["raw", "hex"])))]
#[command(group(ArgGroup::new("at").args(["addr", "shm"]).multiple(true)))]
pub struct MemArgs {
    /// Image directory
    pub dir: PathBuf,
    /// Process (or thread). Without it, a search goes through every process
    #[arg(long, required_unless_present_any = ["search", "regex", "bytes", "shm"])]
    pub pid: Option<u32>,
    /// A SysV shm segment (its id, as `crit x DIR ipc` lists it) instead of a process: --addr is an
    /// offset in it
    #[arg(long, conflicts_with_all = ["pid", "pattern"])]
    pub shm: Option<u32>,
    /// Address to read (hex with 0x, or decimal)
    #[arg(long, value_parser = parse_addr, conflicts_with = "pattern")]
    pub addr: Option<u64>,
    /// Bytes to read at --addr
    #[arg(long, default_value_t = 256, requires = "addr")]
    pub len: usize,
    /// Write the bytes as they are
    #[arg(long, requires = "at")]
    pub raw: bool,
    /// Write the bytes as plain hex, 32 a line
    #[arg(long, requires = "at")]
    pub hex: bool,
    /// Search for this text
    #[arg(long)]
    pub search: Option<String>,
    /// Search for this regular expression (bytes; `(?u)` turns Unicode on)
    #[arg(long)]
    pub regex: Option<String>,
    /// Search for these bytes (hex: `deadbeef`, `de ad be ef`)
    #[arg(long)]
    pub bytes: Option<String>,
    /// Only mappings with these permissions (letters of rwx, e.g. `rw`)
    #[arg(long, value_parser = parse_prot)]
    pub prot: Option<u32>,
    /// Only addresses in START-END (hex)
    #[arg(long, value_parser = parse_range)]
    pub range: Option<(u64, u64)>,
    /// Only these kinds of mapping (repeat or comma-separate)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub kind: Vec<Kind>,
    /// Bytes of context shown around a match
    #[arg(long, default_value_t = 16)]
    pub context: usize,
    /// Stop after this many matches
    #[arg(long)]
    pub max_count: Option<u64>,
    /// Search window in bytes (testing aid; the overlap is a quarter of it, at most 64 KiB)
    #[arg(long, hide = true)]
    pub window: Option<usize>,
    /// JSON (mappings: an array; search: JSON Lines)
    #[arg(long)]
    pub json: bool,
}

/// An address: `0x` hex, or plain hex when it has hex letters, else decimal.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if t.chars().any(|c| c.is_ascii_alphabetic()) {
        u64::from_str_radix(t, 16)
    } else {
        t.parse()
    };
    r.map_err(|_| format!("{s:?} is not an address"))
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?}: expected START-END"))?;
    let hex =
        |x: &str| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).map_err(|_| format!("{x:?} is not hex"));
    let (a, b) = (hex(a)?, hex(b)?);
    if a >= b {
        return Err(format!("{s:?}: empty range"));
    }
    Ok((a, b))
}

fn parse_prot(s: &str) -> Result<u32, String> {
    s.chars().try_fold(0, |p, c| match c {
        'r' => Ok(p | PROT_READ),
        'w' => Ok(p | PROT_WRITE),
        'x' => Ok(p | PROT_EXEC),
        '-' | 'p' | 's' => Ok(p),
        _ => Err(format!("{s:?}: use letters of rwx")),
    })
}

fn show_regions(m: &Memory, as_json: bool) -> Result<String> {
    if as_json {
        let mut s = serde_json::to_string_pretty(&m.regions)?;
        s.push('\n');
        return Ok(s);
    }
    let mut t = Table::new(&[
        ("START", Align::Left),
        ("END", Align::Left),
        ("PERM", Align::Left),
        ("KIND", Align::Left),
        ("DUMPED", Align::Right),
        ("NAME", Align::Left),
    ]);
    for r in &m.regions {
        t.row(vec![
            format!("{:x}", r.start),
            format!("{:x}", r.end),
            r.perms.clone(),
            r.kind.name().into(),
            format!("{}K", r.dumped / 1024),
            r.name.clone(),
        ]);
    }
    Ok(t.render())
}

pub fn run(a: &MemArgs) -> Result<()> {
    crate::archive::with_dir(&a.dir, |dir| run_in(a, dir))
}

/// [`run`] on the image directory `dir` (`a.dir`, or the images of the archive `a.dir`).
fn run_in(a: &MemArgs, dir: &std::path::Path) -> Result<()> {
    let set = ImageSet::open(dir)?;
    if let Some(id) = a.shm {
        let (_, seg) = crate::memory::shm_segment(&set, id)?;
        let (off, len) = match a.addr {
            Some(off) => (off, a.len),
            None => (0, seg.len()),
        };
        let end = off
            .checked_add(len as u64)
            .filter(|&e| e <= seg.len() as u64)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "shm segment {id}: {off:#x} + {len} is past its end ({} bytes)",
                    seg.len()
                )
            })?;
        return put_bytes(&seg[off as usize..end as usize], a, off);
    }
    if let Some(pid) = a.pid {
        let mem = Memory::open(&set, pid)?;
        if let Some(addr) = a.addr {
            return read(&mem, a, addr);
        }
        if a.search.is_none() && a.regex.is_none() && a.bytes.is_none() {
            return write_output(None, show_regions(&mem, a.json)?.as_bytes());
        }
    }
    let re = match (&a.search, &a.regex, &a.bytes) {
        (Some(t), _, _) => {
            if t.is_empty() {
                bail!("--search: empty text");
            }
            literal(t.as_bytes())
        }
        (_, Some(r), _) => bytes_regex(r).with_context(|| format!("--regex {r:?}"))?,
        (_, _, Some(h)) => literal(&parse_hex(h).map_err(|e| anyhow::anyhow!("--bytes {e}"))?),
        _ => bail!("--pid is needed unless searching"),
    };
    let filter = Filter {
        prot: a.prot.unwrap_or(0),
        range: a.range,
        kinds: a.kind.iter().map(|&k| k.into()).collect(),
    };
    let mut opts = SearchOpts {
        context: a.context,
        ..Default::default()
    };
    if let Some(w) = a.window {
        if w < 16 {
            bail!("--window: at least 16 bytes");
        }
        opts.window = w;
        opts.overlap = (w / 4).min(OVERLAP);
    }
    // One process, or every live one (then each line starts with its pid).
    let pids: Vec<u32> = match a.pid {
        Some(p) => vec![p],
        None => explore::select_live(&set, None)?.iter().map(|p| p.pid).collect(),
    };
    let all = a.pid.is_none();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut n, mut regions, mut bytes) = (0u64, 0u64, 0u64);
    for pid in pids {
        if a.max_count.is_some_and(|max| n >= max) {
            break;
        }
        let mem = Memory::open(&set, pid)?;
        let r = mem.search(&re, &filter, &opts, |m| {
            let reg = &mem.regions[m.region];
            if a.json {
                let v = json!({
                    "type": "match",
                    "pid": mem.pid,
                    "addr": m.addr,
                    "len": m.len,
                    "mapping": reg,
                    "offset_in_mapping": m.addr - reg.start,
                    "text": escape(&m.matched),
                    "before": escape(&m.before),
                    "after": escape(&m.after),
                });
                writeln!(out, "{v}")?;
            } else {
                if all {
                    write!(out, "{}  ", mem.pid)?;
                }
                writeln!(
                    out,
                    "{:#x}  {}  \"{}«{}»{}\"",
                    m.addr,
                    reg.describe(),
                    escape(&m.before),
                    escape(&m.matched),
                    escape(&m.after)
                )?;
            }
            n += 1;
            Ok(a.max_count.is_none_or(|max| n < max))
        });
        let stats = match r {
            Ok(s) => s,
            Err(SearchError::Output(e)) => return Err(e.into()),
            Err(SearchError::Explore(e)) => return Err(e.into()),
        };
        regions += stats.regions;
        bytes += stats.bytes;
    }
    if a.json {
        writeln!(
            out,
            "{}",
            json!({"type": "summary", "matches": n, "regions": regions, "bytes_searched": bytes})
        )?;
    }
    out.flush()?;
    if n == 0 {
        // grep's convention: no match is a failure (exit status 1).
        let whose = a
            .pid
            .map(|p| format!("pid {p}"))
            .unwrap_or_else(|| "all processes".into());
        bail!("no match in {bytes} dumped bytes of {regions} mappings of {whose}");
    }
    Ok(())
}

/// `--addr`: the bytes as hexdump -C, raw or hex.
fn read(mem: &Memory, a: &MemArgs, addr: u64) -> Result<()> {
    let data = mem.read(addr, a.len)?;
    put_bytes(&data, a, addr)
}

/// `data` (read at `addr`) as --raw, --hex or hexdump -C says.
fn put_bytes(data: &[u8], a: &MemArgs, addr: u64) -> Result<()> {
    if a.raw {
        return write_output(None, data);
    }
    let text = if a.hex {
        let mut s = String::with_capacity(data.len() * 2 + data.len() / 16);
        for line in data.chunks(32) {
            for b in line {
                s.push_str(&format!("{b:02x}"));
            }
            s.push('\n');
        }
        s
    } else {
        hexdump(data, addr)
    };
    write_output(None, text.as_bytes())
}
