//! Pure parsers of /proc text. I/O lives in the callers (`read_*` helpers at
//! the bottom only read a file and call the parser). Each parser is tested on
//! captured text in `fixtures/proc/`.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: line {line}: {what}")]
pub struct ParseError {
    pub file: &'static str,
    pub line: usize,
    pub what: String,
}

fn perr(file: &'static str, line: usize, what: impl Into<String>) -> ParseError {
    ParseError {
        file,
        line,
        what: what.into(),
    }
}

/// One line of /proc/PID/maps (plus VmFlags when parsed from smaps).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub pgoff: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    /// Path or pseudo name (`[heap]`, `[vdso]`...), without a " (deleted)" suffix.
    pub name: String,
    pub deleted: bool,
    /// Two-letter VmFlags from smaps (empty from maps).
    pub vmflags: Vec<String>,
}

impl Vma {
    pub fn has_flag(&self, f: &str) -> bool {
        self.vmflags.iter().any(|x| x == f)
    }
    pub fn is_file(&self) -> bool {
        self.ino != 0 || (self.name.starts_with('/') && !self.name.starts_with("/SYSV"))
    }
}

fn hex(file: &'static str, line: usize, s: &str) -> Result<u64, ParseError> {
    u64::from_str_radix(s, 16).map_err(|_| perr(file, line, format!("bad hex number {s:?}")))
}

fn parse_map_line(file: &'static str, ln: usize, l: &str) -> Result<Vma, ParseError> {
    let mut it = l.splitn(6, ' ');
    let range = it.next().ok_or_else(|| perr(file, ln, "empty line"))?;
    let perms = it.next().ok_or_else(|| perr(file, ln, "no perms"))?;
    let off = it.next().ok_or_else(|| perr(file, ln, "no offset"))?;
    let dev = it.next().ok_or_else(|| perr(file, ln, "no dev"))?;
    let ino = it.next().ok_or_else(|| perr(file, ln, "no inode"))?;
    let name = it.next().unwrap_or("").trim_start();
    let (a, b) = range.split_once('-').ok_or_else(|| perr(file, ln, "bad range"))?;
    let (ma, mi) = dev.split_once(':').ok_or_else(|| perr(file, ln, "bad dev"))?;
    let pb = perms.as_bytes();
    if pb.len() != 4 {
        return Err(perr(file, ln, format!("bad perms {perms:?}")));
    }
    let (name, deleted) = match name.strip_suffix(" (deleted)") {
        Some(n) => (n.to_string(), true),
        None => (name.to_string(), false),
    };
    Ok(Vma {
        start: hex(file, ln, a)?,
        end: hex(file, ln, b)?,
        read: pb[0] == b'r',
        write: pb[1] == b'w',
        exec: pb[2] == b'x',
        shared: pb[3] == b's',
        pgoff: hex(file, ln, off)?,
        dev_major: hex(file, ln, ma)? as u32,
        dev_minor: hex(file, ln, mi)? as u32,
        ino: ino.parse().map_err(|_| perr(file, ln, format!("bad inode {ino:?}")))?,
        name,
        deleted,
        vmflags: Vec::new(),
    })
}

fn is_map_line(l: &str) -> bool {
    l.split(' ')
        .next()
        .is_some_and(|r| r.contains('-') && r.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'))
}

/// /proc/PID/maps.
pub fn parse_maps(s: &str) -> Result<Vec<Vma>, ParseError> {
    s.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_map_line("maps", i + 1, l))
        .collect()
}

/// /proc/PID/smaps: the maps lines with their VmFlags.
pub fn parse_smaps(s: &str) -> Result<Vec<Vma>, ParseError> {
    let mut out: Vec<Vma> = Vec::new();
    for (i, l) in s.lines().enumerate() {
        if is_map_line(l) {
            out.push(parse_map_line("smaps", i + 1, l)?);
        } else if let Some(f) = l.strip_prefix("VmFlags:") {
            let v = out
                .last_mut()
                .ok_or_else(|| perr("smaps", i + 1, "VmFlags before any mapping"))?;
            v.vmflags = f.split_whitespace().map(str::to_string).collect();
        }
    }
    Ok(out)
}

/// The fields of /proc/PID/stat we use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub flags: u32,
    pub nice: i64,
    pub num_threads: i64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub rt_priority: u32,
    pub policy: u32,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: i32,
}

/// /proc/PID/stat (comm may contain spaces and parentheses: split at the last ')').
pub fn parse_stat(s: &str) -> Result<Stat, ParseError> {
    let f = "stat";
    let open = s.find('(').ok_or_else(|| perr(f, 1, "no '('"))?;
    let close = s.rfind(')').ok_or_else(|| perr(f, 1, "no ')'"))?;
    let pid = s[..open].trim().parse().map_err(|_| perr(f, 1, "bad pid"))?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state).
    let num = |field: usize| -> Result<i64, ParseError> {
        rest.get(field - 3)
            .ok_or_else(|| perr(f, 1, format!("missing field {field}")))?
            .parse::<i64>()
            .or_else(|_| rest[field - 3].parse::<u64>().map(|v| v as i64))
            .map_err(|_| perr(f, 1, format!("bad field {field}")))
    };
    Ok(Stat {
        pid,
        comm,
        state: rest
            .first()
            .and_then(|s| s.chars().next())
            .ok_or_else(|| perr(f, 1, "no state"))?,
        ppid: num(4)? as i32,
        pgid: num(5)? as i32,
        sid: num(6)? as i32,
        flags: num(9)? as u32,
        nice: num(19)?,
        num_threads: num(20)?,
        start_code: num(26)? as u64,
        end_code: num(27)? as u64,
        start_stack: num(28)? as u64,
        rt_priority: num(40)? as u32,
        policy: num(41)? as u32,
        start_data: num(45)? as u64,
        end_data: num(46)? as u64,
        start_brk: num(47)? as u64,
        arg_start: num(48)? as u64,
        arg_end: num(49)? as u64,
        env_start: num(50)? as u64,
        env_end: num(51)? as u64,
        exit_code: num(52)? as i32,
    })
}

/// The fields of /proc/PID/status we use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    pub umask: Option<u32>,
    pub state: char,
    pub tgid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// real, effective, saved, fs.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    /// Namespaced pids, outermost first.
    pub nspid: Vec<i32>,
    pub threads: u32,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: u32,
    pub seccomp: u32,
    pub seccomp_filters: u32,
}

/// /proc/PID/status.
pub fn parse_status(s: &str) -> Result<Status, ParseError> {
    let f = "status";
    let mut st = Status::default();
    for (i, l) in s.lines().enumerate() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let ln = i + 1;
        let hexv = || u64::from_str_radix(v, 16).map_err(|_| perr(f, ln, format!("bad hex in {k}")));
        let dec = || v.parse::<i64>().map_err(|_| perr(f, ln, format!("bad number in {k}")));
        let ids = || -> Result<[u32; 4], ParseError> {
            let w: Vec<u32> = v
                .split_whitespace()
                .map(|x| x.parse().map_err(|_| perr(f, ln, "bad id")))
                .collect::<Result<_, _>>()?;
            w.try_into().map_err(|_| perr(f, ln, format!("{k}: expected 4 ids")))
        };
        match k {
            "Name" => st.name = v.to_string(),
            "Umask" => st.umask = Some(u32::from_str_radix(v, 8).map_err(|_| perr(f, ln, "bad umask"))?),
            "State" => st.state = v.chars().next().unwrap_or('?'),
            "Tgid" => st.tgid = dec()? as i32,
            "PPid" => st.ppid = dec()? as i32,
            "TracerPid" => st.tracer_pid = dec()? as i32,
            "Uid" => st.uids = ids()?,
            "Gid" => st.gids = ids()?,
            "Groups" => {
                st.groups = v
                    .split_whitespace()
                    .map(|x| x.parse().map_err(|_| perr(f, ln, "bad group")))
                    .collect::<Result<_, _>>()?
            }
            "NSpid" => {
                st.nspid = v
                    .split_whitespace()
                    .map(|x| x.parse().map_err(|_| perr(f, ln, "bad pid")))
                    .collect::<Result<_, _>>()?
            }
            "Threads" => st.threads = dec()? as u32,
            "SigPnd" => st.sig_pnd = hexv()?,
            "ShdPnd" => st.shd_pnd = hexv()?,
            "SigBlk" => st.sig_blk = hexv()?,
            "SigIgn" => st.sig_ign = hexv()?,
            "CapInh" => st.cap_inh = hexv()?,
            "CapPrm" => st.cap_prm = hexv()?,
            "CapEff" => st.cap_eff = hexv()?,
            "CapBnd" => st.cap_bnd = hexv()?,
            "CapAmb" => st.cap_amb = hexv()?,
            "NoNewPrivs" => st.no_new_privs = dec()? as u32,
            "Seccomp" => st.seccomp = dec()? as u32,
            "Seccomp_filters" => st.seccomp_filters = dec()? as u32,
            _ => {}
        }
    }
    if st.tgid == 0 {
        return Err(perr(f, 0, "no Tgid line"));
    }
    Ok(st)
}

/// /proc/PID/fdinfo/FD: the common key/value lines (pos, flags, mnt_id, ino, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pos: u64,
    /// Octal in the file.
    pub flags: u32,
    pub mnt_id: i32,
    pub ino: u64,
    /// Every line, for kind-specific keys (eventfd-count, tfd, ...).
    pub raw: BTreeMap<String, String>,
    /// The `lock:` lines (file locks held through this open file).
    pub locks: Vec<FileLockInfo>,
}

/// One lock as /proc shows it: "1: POSIX  ADVISORY  WRITE 2383 fe:00:1022 0 EOF".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileLockInfo {
    /// POSIX, FLOCK, OFDLCK, LEASE...
    pub class: String,
    /// ADVISORY, MANDATORY; for leases ACTIVE, BREAKING, BREAKER.
    pub mode: String,
    /// READ, WRITE, ... (a breaking lease shows its target type).
    pub kind: String,
    pub pid: i32,
    pub ino: u64,
    pub start: i64,
    /// None for EOF.
    pub end: Option<i64>,
}

/// A /proc/locks or fdinfo `lock:` line.
pub fn parse_lock_line(l: &str) -> Result<FileLockInfo, ParseError> {
    let bad = || perr("locks", 1, format!("bad lock line {l:?}"));
    let w: Vec<&str> = l.split_whitespace().collect();
    if w.len() < 8 || w[1] == "->" {
        return Err(bad());
    }
    let ino = w[5].rsplit(':').next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    Ok(FileLockInfo {
        class: w[1].to_string(),
        mode: w[2].to_string(),
        kind: w[3].to_string(),
        pid: w[4].parse().map_err(|_| bad())?,
        ino,
        start: w[6].parse().map_err(|_| bad())?,
        end: if w[7] == "EOF" {
            None
        } else {
            Some(w[7].parse().map_err(|_| bad())?)
        },
    })
}

pub fn parse_fdinfo(s: &str) -> Result<FdInfo, ParseError> {
    let f = "fdinfo";
    let mut fi = FdInfo::default();
    for (i, l) in s.lines().enumerate() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let bad = || perr(f, i + 1, format!("bad value for {k}: {v:?}"));
        match k {
            "pos" => fi.pos = v.parse().map_err(|_| bad())?,
            "flags" => fi.flags = u32::from_str_radix(v, 8).map_err(|_| bad())?,
            "mnt_id" => fi.mnt_id = v.parse().map_err(|_| bad())?,
            "ino" => fi.ino = v.parse().map_err(|_| bad())?,
            "lock" => fi.locks.push(parse_lock_line(v)?),
            _ => {}
        }
        fi.raw.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    Ok(fi)
}

/// One entry of /proc/PID/timers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PosixTimerInfo {
    pub id: i32,
    pub signo: i32,
    pub sival_ptr: u64,
    /// How the timer notifies: "signal", "thread" or "none" (the kernel's
    /// names for SIGEV_SIGNAL, SIGEV_THREAD, SIGEV_NONE).
    pub notify: String,
    /// SIGEV_THREAD_ID: the signal goes to thread `notify_tid` ("tid.N"),
    /// not to the process ("pid.N").
    pub to_thread: bool,
    pub notify_tid: i32,
    pub clock_id: i32,
}

/// /proc/PID/timers.
pub fn parse_timers(s: &str) -> Result<Vec<PosixTimerInfo>, ParseError> {
    let f = "timers";
    let mut out: Vec<PosixTimerInfo> = Vec::new();
    for (i, l) in s.lines().enumerate() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let bad = || perr(f, i + 1, format!("bad {k}: {v:?}"));
        match k {
            "ID" => out.push(PosixTimerInfo {
                id: v.parse().map_err(|_| bad())?,
                ..Default::default()
            }),
            "signal" => {
                let t = out.last_mut().ok_or_else(bad)?;
                let (sig, ptr) = v.split_once('/').ok_or_else(bad)?;
                t.signo = sig.parse().map_err(|_| bad())?;
                t.sival_ptr = u64::from_str_radix(ptr.trim_start_matches("0x"), 16).map_err(|_| bad())?;
            }
            "notify" => {
                let t = out.last_mut().ok_or_else(bad)?;
                let (kind, tid) = v.split_once('/').ok_or_else(bad)?;
                t.notify = kind.to_string();
                let (to, id) = tid.split_once('.').ok_or_else(bad)?;
                t.to_thread = match to {
                    "tid" => true,
                    "pid" => false,
                    _ => return Err(bad()),
                };
                t.notify_tid = id.parse().map_err(|_| bad())?;
            }
            "ClockID" => out.last_mut().ok_or_else(bad)?.clock_id = v.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok(out)
}

/// /proc/PID/auxv (binary): the (type, value) words without the final AT_NULL pair.
pub fn parse_auxv(b: &[u8]) -> Vec<u64> {
    let mut w: Vec<u64> = b
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    if let Some(p) = w.chunks_exact(2).position(|p| p[0] == 0) {
        w.truncate(p * 2);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(name: &str) -> String {
        std::fs::read_to_string(format!("{}/fixtures/proc/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn maps_and_smaps_agree() {
        let m = parse_maps(&fx("maps.txt")).unwrap();
        let s = parse_smaps(&fx("smaps.txt")).unwrap();
        assert_eq!(m.len(), s.len());
        for (a, b) in m.iter().zip(&s) {
            assert_eq!((a.start, a.end, &a.name), (b.start, b.end, &b.name));
            assert!(!b.vmflags.is_empty());
        }
        let heap = m.iter().find(|v| v.name == "[heap]").unwrap();
        assert_eq!((heap.start, heap.end), (0x55d66ac20000, 0x55d66acb3000));
        assert!(heap.read && heap.write && !heap.exec && !heap.shared);
        let bash = &m[0];
        assert_eq!((bash.dev_major, bash.dev_minor, bash.ino), (0xfe, 0, 247003));
        assert_eq!(bash.name, "/usr/bin/bash");
        let stack = s.iter().find(|v| v.name == "[stack]").unwrap();
        assert!(stack.has_flag("gd"));
        assert!(m.iter().any(|v| v.name == "[vvar_vclock]"));
    }

    #[test]
    fn bad_maps_line_is_an_error() {
        let e = parse_maps("zzzz-1 r--p 0 00:00 0\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(parse_maps("1000-2000 r-\n").is_err());
    }

    #[test]
    fn stat_fields() {
        let s = parse_stat(&fx("stat.txt")).unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid, s.pgid, s.sid),
            (19625, "bash", 'S', 19623, 19623, 4948)
        );
        assert_eq!(s.start_code, 94378837782528);
        assert_eq!(s.env_end, 140720615600106);
        assert_eq!(s.num_threads, 1);
        let odd = parse_stat("7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0").unwrap();
        assert_eq!(odd.comm, "a) b) c");
        assert!(parse_stat("12 (x) R 1").is_err());
    }

    #[test]
    fn status_fields() {
        let s = parse_status(&fx("status.txt")).unwrap();
        assert_eq!(s.tgid, 19625);
        assert_eq!(s.umask, Some(0o22));
        assert_eq!(s.sig_blk, 0x10000);
        assert_eq!(s.cap_eff, 0x1fffeffffff);
        assert_eq!(s.uids, [0; 4]);
        assert_eq!(s.nspid, vec![19625]);
        assert!(parse_status("Name: x\n").is_err());
    }

    #[test]
    fn fdinfo_fields() {
        let f = parse_fdinfo(&fx("fdinfo-0.txt")).unwrap();
        assert_eq!((f.pos, f.flags, f.mnt_id, f.ino), (0, 0o100000, 24, 3));
    }

    #[test]
    fn lock_lines() {
        let f = parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t77\nlock:\t1: POSIX  ADVISORY  WRITE 2383 fe:00:77 10 109\nlock:\t2: FLOCK  ADVISORY  READ 2383 fe:00:77 0 EOF\n").unwrap();
        assert_eq!(f.locks.len(), 2);
        assert_eq!(
            (f.locks[0].class.as_str(), f.locks[0].kind.as_str(), f.locks[0].pid),
            ("POSIX", "WRITE", 2383)
        );
        assert_eq!((f.locks[0].start, f.locks[0].end, f.locks[0].ino), (10, Some(109), 77));
        assert_eq!(f.locks[1].end, None);
        assert!(parse_lock_line("1: -> POSIX ADVISORY WRITE 1 0:0:0 0 EOF").is_err());
    }

    #[test]
    fn timers_fields() {
        let t = parse_timers("ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.7\nClockID: 1\nID: 3\nsignal: 10/00007ffd00000000\nnotify: signal/tid.9\nClockID: 0\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (
                t[0].id,
                t[0].signo,
                t[0].clock_id,
                t[0].notify.as_str(),
                t[0].notify_tid
            ),
            (0, 14, 1, "signal", 7)
        );
        assert!(!t[0].to_thread);
        assert_eq!(
            (t[1].sival_ptr, t[1].notify_tid, t[1].to_thread),
            (0x7ffd00000000, 9, true)
        );
        assert!(parse_timers("ID: 0\nnotify: signal/9\n").is_err());
    }

    #[test]
    fn auxv_strips_at_null() {
        let mut b = Vec::new();
        for w in [33u64, 5, 6, 4096, 0, 0] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(parse_auxv(&b), vec![33, 5, 6, 4096]);
    }
}
