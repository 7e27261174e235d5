//! Terminals, both sides in one place (CRIU's tty.c is the model):
//!
//! * **pty pairs** inside the tree: the master (/dev/ptmx, or devpts' ptmx)
//!   and its slaves (/dev/pts/N). Restore opens ptmx until the kernel hands
//!   out the dumped index, unlocks it, opens the slaves by index, puts back
//!   the slave's termios, locked termios and window size (TCGETS and friends
//!   on a master act on its slave), ownership, packet mode and lock, and
//!   refills the data queued in both directions.
//! * **hung-up slaves** (their master was closed): re-created through a
//!   stand-in master closed again once the slaves are open.
//! * **the controlling terminal**: a session leader gets its pty back with
//!   TIOCSCTTY right after setsid (so that its children inherit it), and the
//!   foreground group with TIOCSPGRP once every group exists (restore/task.rs).
//! * **/dev/tty** (the controlling-terminal alias): a file of its own on the
//!   real terminal; re-opened by a short-lived helper that takes the pty as
//!   its controlling terminal for the time of one open.
//! * **/dev/console and virtual terminals** (/dev/ttyN): re-opened at their
//!   paths with their termios.
//! * **a shell job's terminal** (a slave whose master is outside the tree,
//!   `--shell-job`): connected to the restorer's own terminal.
//!
//! Images, as CRIU writes them: a REG entry for the path, a TTY entry in
//! files.img (`tty_file_entry`, pointing at the REG entry with `regf_id` and
//! at its terminal with `tty_info_id`: index * 2 for a slave, + 1 for a
//! master, CRIU's fixed ids for the console, vts and /dev/tty), one
//! `tty_info_entry` per terminal in tty-info.img, and the queued data in
//! tty-data.img (`tty_id` names the end the data was read from; restore
//! writes it into the other end).
//!
//! Queued data: what the slave side would read (the input queue) is read at
//! dump from a slave, line by line in canonical mode (a line ended by EOF
//! gets the VEOF character back, an unfinished line is read with ICANON off
//! for a moment), and fed back with TIOCSTI, which runs the line discipline
//! at once, with echo and signals off. What the master would read (the
//! slave's output, already processed) is written back through the slave with
//! OPOST off. Both happen with the tree frozen (dump) or before any task
//! exists (restore).

use super::set::{bad, unsupported};
use super::{
    fown, reg, DescribeCx, FdCtx, FdKind, FileError, FileSet, FileTable, OpenError, OpenFile, RestoreCx, SetError,
};
use cryo_image::pb;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

/// CRIU's fixed tty_info ids (index << 1) of the terminals that have no index.
pub const CONSOLE_ID: u32 = 1002 << 1;
pub const VT_ID: u32 = 1004 << 1;
pub const CTTY_ID: u32 = 1006 << 1;
/// The biggest pty index CRIU accepts (MAX_PTY_INDEX).
pub const MAX_PTY_INDEX: u32 = 1000;
/// Queued data above this (per direction) is refused: a pty buffers far less.
const MAX_QUEUED: usize = 256 << 10;

/// Unix98 pty slave majors (UNIX98_PTY_SLAVE_MAJOR .. + 7).
pub fn is_pty_slave(rdev: u64) -> bool {
    (136..=143).contains(&libc::major(rdev))
}

/// /dev/ptmx (5:2) or a unix98 master major.
pub fn is_pty_master(rdev: u64) -> bool {
    (libc::major(rdev) == 5 && libc::minor(rdev) == 2) || (128..=135).contains(&libc::major(rdev))
}

/// Terminal devices: /dev/tty*, consoles, ptys (majors 4, 5, 128-143).
pub fn is_tty(rdev: u64) -> bool {
    let ma = libc::major(rdev);
    ma == 4 || ma == 5 || (128..=143).contains(&ma)
}

pub use crate::sys::files::KTermios;
use crate::sys::files::Winsize;

impl KTermios {
    fn from_entry(t: &pb::TermiosEntry) -> Self {
        let mut k = KTermios {
            c_iflag: t.c_iflag,
            c_oflag: t.c_oflag,
            c_cflag: t.c_cflag,
            c_lflag: t.c_lflag,
            c_line: t.c_line as u8,
            c_cc: [0; 19],
        };
        for (d, s) in k.c_cc.iter_mut().zip(&t.c_cc) {
            *d = *s as u8;
        }
        k
    }

    fn to_entry(self) -> pb::TermiosEntry {
        pb::TermiosEntry {
            c_iflag: self.c_iflag,
            c_oflag: self.c_oflag,
            c_cflag: self.c_cflag,
            c_lflag: self.c_lflag,
            c_line: self.c_line as u32,
            c_ispeed: 0,
            c_ospeed: 0,
            c_cc: self.c_cc.iter().map(|&b| b as u32).collect(),
        }
    }

    fn canonical(&self) -> bool {
        self.c_lflag & libc::ICANON != 0
    }

    /// The characters that end a canonical line besides '\n' (0 = disabled).
    fn line_ends(&self) -> [u8; 2] {
        [self.c_cc[libc::VEOL], self.c_cc[libc::VEOL2]]
    }
}

/// A terminal ioctl that fills a `T`.
fn ioctl_get<T: crate::sys::files::TtyArg>(fd: &OwnedFd, req: libc::c_ulong) -> std::io::Result<T> {
    crate::sys::files::tty_get(fd, req)
}

/// A terminal ioctl that reads a `T` from us.
fn ioctl_set<T: crate::sys::files::TtyArg>(fd: &OwnedFd, req: libc::c_ulong, v: &T) -> std::io::Result<()> {
    crate::sys::files::tty_set(fd, req, v)
}

/// A terminal ioctl whose argument is a plain integer.
pub fn ioctl_arg(fd: i32, req: libc::c_ulong, arg: libc::c_ulong) -> std::io::Result<()> {
    crate::sys::files::tty_ioctl_arg(fd, req, arg)
}

fn get_termios(fd: &OwnedFd, req: libc::c_ulong) -> std::io::Result<KTermios> {
    ioctl_get(fd, req)
}

fn set_termios(fd: &OwnedFd, t: &KTermios) -> std::io::Result<()> {
    ioctl_set(fd, libc::TCSETS, t)
}

fn ctx_err(c: &FdCtx, what: &str, source: std::io::Error) -> FileError {
    FileError::Io {
        pid: c.pid,
        fd: c.fd,
        what: what.into(),
        source,
    }
}

/// (session, tty_nr, tpgid) from /proc/PID/stat.
pub fn stat_tty(pid: i32) -> Option<(u32, u32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(3)?.parse().ok()?,
        f.get(4)?.parse().ok()?,
        f.get(5)?.parse().ok()?,
    ))
}

/// The kernel's new_encode_dev (as /proc/PID/stat's tty_nr and TIOCGDEV).
fn encode_dev(rdev: u64) -> u32 {
    let (ma, mi) = (libc::major(rdev), libc::minor(rdev));
    (mi & 0xff) | (ma << 8) | ((mi & !0xff) << 12)
}

fn decode_dev(d: u32) -> u64 {
    libc::makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
}

/// What the dump keeps of one terminal until the end (queued data, checks).
pub struct DumpedTty {
    pid: i32,
    fd_no: i32,
    link: String,
    fd: OwnedFd,
    /// /dev/tty: the terminal it stands for (TIOCGDEV).
    real: u64,
}

impl DumpedTty {
    fn refuse(&self, what: impl Into<String>) -> FileError {
        FileError::Unsupported {
            pid: self.pid,
            fd: self.fd_no,
            link: self.link.clone(),
            what: what.into(),
        }
    }
    fn io(&self, what: impl Into<String>, source: std::io::Error) -> FileError {
        FileError::Io {
            pid: self.pid,
            fd: self.fd_no,
            what: what.into(),
            source,
        }
    }
}

pub struct Tty;

impl FdKind for Tty {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Tty
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.fmt() == libc::S_IFCHR && is_tty(c.stat.st_rdev)
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let rdev = c.stat.st_rdev;
        let (ma, mi) = (libc::major(rdev), libc::minor(rdev));
        let fd = c.steal()?;
        let link = c.link.strip_suffix(" (deleted)").unwrap_or(&c.link).to_string();
        let (ty, info_id, index, path) = if is_pty_master(rdev) {
            let index: u32 = ioctl_get::<libc::c_uint>(&fd, libc::TIOCGPTN).map_err(|e| ctx_err(c, "TIOCGPTN", e))?;
            (pb::TtyType::Pty, index * 2 + 1, Some(index), link)
        } else if is_pty_slave(rdev) {
            let index = (ma - 136) * 256 + mi;
            let path = if link.starts_with("/dev/pts/") {
                format!("/dev/pts/{index}")
            } else {
                link
            };
            (pb::TtyType::Pty, index * 2, Some(index), path)
        } else if ma == 5 && mi == 1 {
            (pb::TtyType::Console, CONSOLE_ID, None, link)
        } else if ma == 5 && mi == 0 {
            (pb::TtyType::Ctty, CTTY_ID, None, link)
        } else if ma == 4 && (1..=63).contains(&mi) {
            (pb::TtyType::Vt, VT_ID, None, link)
        } else {
            return Err(c.unsupported(format!(
                "a terminal of an unsupported kind (device {ma}:{mi}): only ptys, /dev/tty, /dev/console \
                 and virtual terminals are supported"
            )));
        };
        if index.is_some_and(|i| i > MAX_PTY_INDEX) {
            return Err(c.unsupported(format!(
                "pty index {} is above {MAX_PTY_INDEX}, the biggest CRIU's image format allows",
                index.unwrap_or(0)
            )));
        }
        let regf_id = t.alloc_id();
        let e = reg::reg_entry(regf_id, &path, false, &c.stat, c.flags(), 0, None, t)?;
        t.insert(e);
        let real = if ty == pb::TtyType::Ctty {
            let d: libc::c_uint = ioctl_get(&fd, libc::TIOCGDEV).map_err(|e| ctx_err(c, "TIOCGDEV on /dev/tty", e))?;
            decode_dev(d)
        } else {
            rdev
        };
        match t.tty_infos.get(&info_id) {
            None => {
                let info = tty_info(c, &fd, info_id, ty, index, real)?;
                t.tty_infos.insert(info_id, info);
                t.tty_dumped.insert(
                    info_id,
                    DumpedTty {
                        pid: c.pid,
                        fd_no: c.fd,
                        link: c.link.clone(),
                        fd,
                        real,
                    },
                );
            }
            Some(old) => {
                // The fixed ids stand for one terminal each in CRIU's format.
                let first = &t.tty_dumped[&info_id];
                if old.rdev != rdev as u32 || first.real != real {
                    return Err(c.unsupported(format!(
                        "a second terminal of the same kind ({:?}) as pid {} fd {} ({}), on another device: \
                         CRIU's image format holds one of each",
                        ty, first.pid, first.fd_no, first.link
                    )));
                }
            }
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: info_id,
                flags: c.flags(),
                fown: fown(),
                regf_id: Some(regf_id),
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        Ok(Box::new(describe_tty(e, cx)?))
    }

    /// A controlling terminal goes back to its session's leader, which must
    /// be restored (a shell job's terminal, without its master, is cryo's).
    fn check(&self, files: &FileSet) -> Result<(), SetError> {
        let infos = &files.tty_infos;
        for info in infos {
            let has_master = info
                .pty
                .as_ref()
                .is_some_and(|p| infos.iter().any(|x| x.id == p.index * 2 + 1));
            let simple = info.r#type == pb::TtyType::Console as i32 || info.r#type == pb::TtyType::Vt as i32;
            if info.sid == 0 || info.termios.is_none() || !(has_master || simple) {
                continue;
            }
            let leader = files.tree.tasks.iter().find(|p| p.pid == info.sid as i32);
            if !leader.is_some_and(|p| p.sid == p.pid && p.alive) {
                return Err(unsupported(
                    files.set.path("tty-info.img").display().to_string(),
                    info.sid as i32,
                    format!(
                        "terminal {} is the controlling terminal of session {}, whose leader is not a live task of the images",
                        info.id, info.sid
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn tty_info(
    c: &FdCtx,
    fd: &OwnedFd,
    id: u32,
    ty: pb::TtyType,
    index: Option<u32>,
    real: u64,
) -> Result<pb::TtyInfoEntry, FileError> {
    let master = is_pty_master(c.stat.st_rdev);
    let flag = |req| ioctl_get::<libc::c_int>(fd, req).is_ok_and(|x| x != 0);
    let mut info = pb::TtyInfoEntry {
        id,
        r#type: ty as i32,
        locked: master && flag(libc::TIOCGPTLCK),
        exclusive: flag(libc::TIOCGEXCL),
        packet_mode: master && flag(libc::TIOCGPKT),
        sid: 0,
        pgrp: 0,
        rdev: c.stat.st_rdev as u32,
        termios: None,
        termios_locked: None,
        winsize: None,
        pty: index.map(|index| pb::TtyPtyEntry { index }),
        dev: Some(c.stat.st_dev as u32),
        uid: Some(c.stat.st_uid),
        gid: Some(c.stat.st_gid),
    };
    let termios = match get_termios(fd, libc::TCGETS) {
        Ok(t) => t,
        // A hung-up terminal (its master was closed): only what is left.
        Err(e) if e.raw_os_error() == Some(libc::EIO) && !master => return Ok(info),
        Err(e) => return Err(ctx_err(c, "TCGETS", e)),
    };
    let locked = get_termios(fd, libc::TIOCGLCKTRMIOS).map_err(|e| ctx_err(c, "TIOCGLCKTRMIOS", e))?;
    let w: Winsize = ioctl_get(fd, libc::TIOCGWINSZ).map_err(|e| ctx_err(c, "TIOCGWINSZ", e))?;
    // Session and foreground group: a master answers for its slave from
    // anywhere; any other terminal only to a task it controls, so the
    // holder's /proc/PID/stat tells (what TIOCGSID/TIOCGPGRP answer from
    // inside the task; 0 otherwise).
    if master {
        info.sid = ioctl_get::<libc::pid_t>(fd, libc::TIOCGSID).map_or(0, |s| s.max(0) as u32);
        info.pgrp = ioctl_get::<libc::pid_t>(fd, libc::TIOCGPGRP).map_or(0, |s| s.max(0) as u32);
    } else {
        match stat_tty(c.pid) {
            Some((sid, tty_nr, tpgid)) if tty_nr != 0 && tty_nr == encode_dev(real) => {
                info.sid = sid;
                info.pgrp = tpgid.max(0) as u32;
            }
            Some(_) => {}
            None => return Err(ctx_err(c, "reading /proc/PID/stat", std::io::Error::last_os_error())),
        }
    }
    info.termios = Some(termios.to_entry());
    info.termios_locked = Some(locked.to_entry());
    info.winsize = Some(pb::WinsizeEntry {
        ws_row: w.ws_row as u32,
        ws_col: w.ws_col as u32,
        ws_xpixel: w.ws_xpixel as u32,
        ws_ypixel: w.ws_ypixel as u32,
    });
    Ok(info)
}

/// The end of the dump of terminals, once every fd of the tree is seen:
/// every pty slave needs its master in the tree (or is a shell job's), every
/// controlling terminal its session leader, every /dev/tty its terminal;
/// then the queued data of each pair is read and put back at once (the
/// tree keeps it whether it is killed, left running, or the dump fails).
/// Returns tty-data.img's entries.
pub fn finish(t: &mut FileTable) -> Result<Vec<pb::TtyDataEntry>, FileError> {
    // Taken: the stolen fds close at the end (a master kept open would
    // keep its pty index busy).
    let dumped_map = std::mem::take(&mut t.tty_dumped);
    let dumped = &dumped_map;
    let infos = &t.tty_infos;
    let in_tree = |pid: u32| t.tree_pids.contains(&(pid as i32));
    let mut unpaired = 0;
    for (&id, info) in infos {
        let d = &dumped[&id];
        let Some(index) = info.pty.as_ref().map(|p| p.index) else {
            continue;
        };
        let hung = info.termios.is_none();
        let slave = id & 1 == 0;
        if slave && !hung && !infos.contains_key(&(id + 1)) {
            // A terminal from outside the tree.
            if !t.shell_job {
                return Err(d.refuse(format!(
                    "a pty slave (/dev/pts/{index}) whose master is not in the dumped tree (a terminal from \
                     outside): dump it as a shell job with --shell-job (-j)"
                )));
            }
            unpaired += 1;
            if unpaired > 1 {
                return Err(d.refuse(
                    "a second pty slave whose master is outside the tree: --shell-job connects only one \
                     terminal (cryo's own) to the restored tree",
                ));
            }
            // A shell job's terminal belongs to a session outside the tree
            // (the shell's): a session of the tree controlling it means the
            // terminal is the tree's own, which --shell-job cannot restore.
            for &pid in &t.tree_pids {
                if let Some((sid, tty_nr, _)) = stat_tty(pid) {
                    if tty_nr == encode_dev(d.real) && t.tree_pids.contains(&(sid as i32)) {
                        return Err(d.refuse(format!(
                            "/dev/pts/{index} is the controlling terminal of session {sid}, whose leader is in \
                             the dumped tree, but its master is not: not a shell job (--shell-job restores only \
                             terminals of a session outside the tree)"
                        )));
                    }
                }
            }
            continue;
        }
        if info.sid != 0 && !in_tree(info.sid) && !hung {
            return Err(d.refuse(format!(
                "the pty (index {index}) is the controlling terminal of session {}, whose leader is not in the \
                 dumped tree: dump the whole session",
                info.sid
            )));
        }
    }
    // /dev/tty: the controlling terminal of its holder, a pty of the dump
    // (or, for a shell job, cryo's terminal at restore).
    if let (Some(info), Some(d)) = (infos.get(&CTTY_ID), dumped.get(&CTTY_ID)) {
        let holder_ctty = stat_tty(d.pid).map(|(_, nr, _)| nr).unwrap_or(0);
        if info.sid == 0 || holder_ctty != encode_dev(d.real) {
            return Err(d.refuse(format!(
                "/dev/tty stands for terminal {}:{}, which is no longer the controlling terminal of pid {}",
                libc::major(d.real),
                libc::minor(d.real),
                d.pid
            )));
        }
        if !is_pty_slave(d.real) {
            return Err(d.refuse("/dev/tty stands for a terminal that is not a pty"));
        }
        let index = (libc::major(d.real) - 136) * 256 + libc::minor(d.real);
        if !infos.contains_key(&(index * 2 + 1)) && !t.shell_job {
            return Err(d.refuse(format!(
                "/dev/tty stands for /dev/pts/{index}, whose master is not in the dumped tree: dump it as a shell \
                 job with --shell-job (-j)"
            )));
        }
    }
    // Session leaders of the tree: a controlling terminal that is no pty of
    // the dump would be lost.
    if !t.shell_job {
        for &pid in &t.tree_pids {
            let Some((sid, tty_nr, _)) = stat_tty(pid) else {
                continue;
            };
            if sid as i32 != pid || tty_nr == 0 {
                continue;
            }
            let rdev = decode_dev(tty_nr);
            let ours = if is_pty_slave(rdev) {
                let index = (libc::major(rdev) - 136) * 256 + libc::minor(rdev);
                infos.contains_key(&(index * 2 + 1))
            } else {
                // A console or vt of the dump, with that session recorded.
                [CONSOLE_ID, VT_ID]
                    .iter()
                    .any(|id| dumped.get(id).is_some_and(|d| d.real == rdev) && infos[id].sid == sid)
            };
            if !ours {
                return Err(FileError::Unsupported {
                    pid,
                    fd: -1,
                    link: format!("controlling terminal {}:{}", libc::major(rdev), libc::minor(rdev)),
                    what: "the session leader's controlling terminal is not a pty whose master is in the dumped \
                           tree (a terminal from outside): dump it as a shell job with --shell-job (-j)"
                        .into(),
                });
            }
        }
    }
    // Every task has its session leader's controlling terminal: restore
    // gives it to the leader before forking the others, who inherit it.
    for &pid in &t.tree_pids {
        let Some((sid, tty_nr, _)) = stat_tty(pid) else {
            continue;
        };
        if sid as i32 == pid || !t.tree_pids.contains(&(sid as i32)) {
            continue;
        }
        let leader = stat_tty(sid as i32).map(|(_, nr, _)| nr).unwrap_or(0);
        if tty_nr != leader {
            let dev = decode_dev(tty_nr);
            return Err(FileError::Unsupported {
                pid,
                fd: -1,
                link: format!("controlling terminal {}:{}", libc::major(dev), libc::minor(dev)),
                what: format!(
                    "its controlling terminal is not the one of its session leader {sid} (a task forked before \
                     its leader took the terminal, or after it was given up): cannot be restored"
                ),
            });
        }
    }
    // Queued data of each pair, master and slave.
    let mut out = Vec::new();
    for (&id, info) in infos {
        if id & 1 == 0 || info.pty.is_none() || id >= CONSOLE_ID {
            continue;
        }
        let index = id / 2;
        let m = &dumped[&id];
        let termios = info.termios.as_ref().map(KTermios::from_entry).unwrap_or_default();
        // A slave to read the input queue from: the tree's, or one of our own.
        let own;
        let s = match dumped.get(&(id - 1)) {
            Some(s) if infos[&(id - 1)].termios.is_some() => &s.fd,
            _ => {
                own = open_slave(&format!("/dev/pts/{index}"), libc::O_RDWR)
                    .map_err(|e| m.io(format!("opening /dev/pts/{index} to read its queued input"), e))?;
                &own
            }
        };
        // Whatever is read goes back at once: the tree keeps its data
        // also when the dump fails later or leaves it running.
        let output = read_queue(m, &m.fd, info.packet_mode, None)?;
        let input = match read_queue(m, s, false, Some(termios)) {
            Ok(i) => i,
            Err(e) => {
                let _ = refill(s, &[], &output, &termios);
                return Err(e);
            }
        };
        refill(s, &input, &output, &termios).map_err(|e| m.io("putting the queued data back", e))?;
        if !input.is_empty() && !infos.contains_key(&(id - 1)) {
            // tty-data.img names the end the data was read from, and CRIU
            // restores data only for terminals some task holds.
            return Err(m.refuse(format!(
                "{} bytes are queued for /dev/pts/{index}, which no task of the tree holds open:                  the image format cannot carry them",
                input.len()
            )));
        }
        if !input.is_empty() {
            out.push(pb::TtyDataEntry {
                tty_id: id - 1,
                data: input,
            });
        }
        if !output.is_empty() {
            out.push(pb::TtyDataEntry {
                tty_id: id,
                data: output,
            });
        }
    }
    out.sort_by_key(|e| e.tty_id);
    Ok(out)
}

fn open_slave(path: &str, flags: i32) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let acc = flags & libc::O_ACCMODE;
    let f = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(flags & !libc::O_ACCMODE | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

/// Set the file status flags of `fd` (shared with the task for a stolen fd).
fn set_fl(fd: &OwnedFd, flags: i32) -> std::io::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(flags)),
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

/// Everything readable on one end, without waiting. With `canon` (a slave
/// in canonical mode) lines keep their ends: a line ended by EOF gets the
/// VEOF character back, and an unfinished line is read with ICANON off for
/// a moment. With `packet`, each read's status byte is dropped.
fn read_queue(d: &DumpedTty, fd: &OwnedFd, packet: bool, termios: Option<KTermios>) -> Result<Vec<u8>, FileError> {
    let orig = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(|e| d.io("F_GETFL", e.into()))?;
    set_fl(fd, orig | libc::O_NONBLOCK).map_err(|e| d.io("F_SETFL O_NONBLOCK", e))?;
    let r = read_all(d, fd, packet, termios);
    set_fl(fd, orig).map_err(|e| d.io("F_SETFL (back)", e))?;
    r
}

fn read_all(d: &DumpedTty, fd: &OwnedFd, packet: bool, termios: Option<KTermios>) -> Result<Vec<u8>, FileError> {
    let canon = termios.filter(|t| t.canonical());
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    for _ in 0..(MAX_QUEUED / 16) {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => {
                // EOF at the start of a line (canonical), or nothing more.
                match canon {
                    Some(t) if t.c_cc[libc::VEOF] != 0 && crate::sys::fionread(fd.as_raw_fd()).unwrap_or(0) > 0 => {
                        out.push(t.c_cc[libc::VEOF]);
                    }
                    _ => break,
                }
            }
            Ok(n) => {
                let chunk = if packet { &buf[1..n] } else { &buf[..n] };
                out.extend_from_slice(chunk);
                if let Some(t) = canon {
                    let last = chunk.last().copied();
                    let ended = last == Some(b'\n') || last.is_some_and(|c| c != 0 && t.line_ends().contains(&c));
                    if !ended && t.c_cc[libc::VEOF] != 0 {
                        out.push(t.c_cc[libc::VEOF]);
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(nix::errno::Errno::EIO) => break, // the other side is gone: nothing queued
            Err(e) => return Err(d.io("reading queued terminal data", e.into())),
        }
        if out.len() > MAX_QUEUED {
            return Err(d.refuse(format!("more than {MAX_QUEUED} bytes queued on the terminal")));
        }
    }
    if let Some(t) = canon {
        // An unfinished line: readable only outside canonical mode.
        let mut raw = t;
        raw.c_lflag &= !libc::ICANON;
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        set_termios(fd, &raw).map_err(|e| d.io("TCSETS (reading an unfinished line)", e))?;
        let r = nix::unistd::read(fd, &mut buf);
        set_termios(fd, &t).map_err(|e| d.io("TCSETS (back)", e))?;
        match r {
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EIO) => {}
            Err(e) => return Err(d.io("reading an unfinished line", e.into())),
        }
    }
    Ok(out)
}

/// Put queued data back into a pair: `input` into the slave's input queue
/// (TIOCSTI runs it through the line discipline now, with echo, signals and
/// input mapping off so that it is taken as it was read), `output` into the
/// master's (written through the slave with output processing off); then the
/// slave's termios as they were.
pub fn refill(slave: &OwnedFd, input: &[u8], output: &[u8], t: &KTermios) -> std::io::Result<()> {
    if input.is_empty() && output.is_empty() {
        return Ok(());
    }
    let mut tmp = *t;
    tmp.c_lflag &= !(libc::ECHO
        | libc::ECHOE
        | libc::ECHOK
        | libc::ECHONL
        | libc::ECHOCTL
        | libc::ECHOPRT
        | libc::ECHOKE
        | libc::ISIG
        | libc::IEXTEN);
    tmp.c_iflag &= !(libc::ICRNL
        | libc::INLCR
        | libc::IGNCR
        | libc::IUCLC
        | libc::ISTRIP
        | libc::IXON
        | libc::IXOFF
        | libc::PARMRK
        | libc::INPCK);
    for c in [libc::VERASE, libc::VKILL, libc::VWERASE, libc::VREPRINT, libc::VLNEXT] {
        tmp.c_cc[c] = 0;
    }
    tmp.c_oflag &= !libc::OPOST;
    // Locked bits would keep echo or output processing on: unlocked for
    // the time of the refill.
    let locked = get_termios(slave, libc::TIOCGLCKTRMIOS)?;
    let unlocked = KTermios::default();
    if locked != unlocked {
        ioctl_set(slave, libc::TIOCSLCKTRMIOS, &unlocked)?;
    }
    set_termios(slave, &tmp)?;
    let r = (|| {
        for &b in input {
            ioctl_set(slave, libc::TIOCSTI, &b).map_err(|e| std::io::Error::new(e.kind(), format!("TIOCSTI: {e}")))?;
        }
        let mut off = 0;
        while off < output.len() {
            match nix::unistd::write(slave, &output[off..]) {
                Ok(n) => off += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::Error::from(e).kind(),
                        format!("write: {e}"),
                    ))
                }
            }
        }
        Ok(())
    })();
    set_termios(slave, t)?;
    if locked != unlocked {
        ioctl_set(slave, libc::TIOCSLCKTRMIOS, &locked)?;
    }
    r
}

// ---------------------------------------------------------------------------
// Restore.

/// One terminal file to open (files.img's TTY entry with its info).
#[derive(Clone, Debug)]
pub struct TtyFile {
    pub id: u32,
    pub flags: u32,
    /// The path of its REG entry.
    pub path: String,
    /// The mode of its REG entry, if recorded.
    pub mode: Option<u32>,
    pub info: pb::TtyInfoEntry,
}

/// Entry `cx.index` of files.img, a TTY entry, with its tty-info.img entry
/// and the path of its REG entry.
fn describe_tty(f: &pb::FileEntry, cx: &DescribeCx) -> Result<TtyFile, SetError> {
    let t = f.tty.as_ref().ok_or_else(|| cx.bad("TTY without tty"))?;
    let info = cx
        .tty_infos
        .iter()
        .find(|x| x.id == t.tty_info_id)
        .ok_or_else(|| cx.bad(format!("tty_info_id {} is not in tty-info.img", t.tty_info_id)))?;
    let ti = || cx.set.path("tty-info.img").display().to_string();
    let known = [
        pb::TtyType::Pty,
        pb::TtyType::Console,
        pb::TtyType::Vt,
        pb::TtyType::Ctty,
    ];
    if !known.iter().any(|k| *k as i32 == info.r#type) {
        return Err(unsupported(
            ti(),
            0,
            format!(
                "terminal {}: type {} (only ptys, /dev/tty, /dev/console and vts are supported)",
                info.id, info.r#type
            ),
        ));
    }
    if info
        .pty
        .as_ref()
        .is_some_and(|p| p.index > MAX_PTY_INDEX || info.id >> 1 != p.index)
    {
        return Err(bad(
            ti(),
            0,
            format!(
                "terminal {}: a pty index above {} or not matching its id",
                info.id, MAX_PTY_INDEX
            ),
        ));
    }
    if (info.r#type == pb::TtyType::Pty as i32) != info.pty.is_some() {
        return Err(bad(
            ti(),
            0,
            format!(
                "terminal {}: pty data on a terminal that is no pty, or none on a pty",
                info.id
            ),
        ));
    }
    if info.termios.as_ref().is_some_and(|t| t.c_cc.len() < 19)
        || info.termios_locked.as_ref().is_some_and(|t| t.c_cc.len() < 19)
    {
        return Err(bad(
            ti(),
            0,
            format!("terminal {}: termios with fewer than 19 control characters", info.id),
        ));
    }
    let regf = t.regf_id.unwrap_or(t.id);
    let r = cx.reg_entry(regf);
    let path = match (r, &info.pty) {
        (Some(r), _) => r.name.clone(),
        (None, Some(_)) if info.id & 1 == 1 => "/dev/ptmx".to_string(),
        (None, Some(p)) => format!("/dev/pts/{}", p.index),
        (None, None) => return Err(cx.bad(format!("TTY {} names REG entry {regf}, which is missing", t.id))),
    };
    Ok(TtyFile {
        id: f.id,
        flags: t.flags,
        path,
        mode: r.and_then(|r| r.mode),
        info: info.clone(),
    })
}

/// The terminals opened together by [`restore_used`], by file id.
#[derive(Default)]
struct Opened(BTreeMap<u32, OwnedFd>);

impl OpenFile for TtyFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Tty
    }

    /// Opened with every other terminal by [`restore_used`].
    fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
        cx.state::<Opened>().0.remove(&id).map(Some).ok_or_else(|| {
            super::set::open_err(
                pb::FdTypes::Tty,
                format!("terminal file id {id}"),
                "not opened (engine bug)",
            )
        })
    }
}

/// Open every terminal file that a task uses (`used`: file ids), first and
/// all together (pairs, sessions, queued data), before any task exists;
/// each goes to its fd through [`OpenFile::restore`]. Returns, per session,
/// a slave of its controlling terminal (for TIOCSCTTY in its leader) and
/// the foreground group (0: the leader's).
pub fn restore_used(
    cx: &mut RestoreCx,
    used: &std::collections::BTreeSet<u32>,
) -> Result<BTreeMap<i32, (OwnedFd, i32)>, OpenError> {
    let files = cx.files;
    let ttys: Vec<TtyFile> = used
        .iter()
        .filter_map(|&id| files.get_as::<TtyFile>(id).cloned())
        .collect();
    let r = restore_all(&ttys, &files.tty_data, cx.shell_job).map_err(|e| {
        super::set::open_err(
            pb::FdTypes::Tty,
            files.set.path("tty-info.img").display().to_string(),
            e,
        )
    })?;
    cx.state::<Opened>().0 = r.fds;
    Ok(r.ctty)
}

/// What restoring the terminals leaves for the tasks.
#[derive(Default)]
pub struct Restored {
    /// An open fd per TTY file id.
    pub fds: BTreeMap<u32, OwnedFd>,
    /// Per session: a slave of its controlling terminal (for TIOCSCTTY in
    /// its leader) and the foreground group (0: the leader's).
    pub ctty: BTreeMap<i32, (OwnedFd, i32)>,
}

fn err(id: u32, what: impl std::fmt::Display) -> String {
    format!("terminal file id {id}: {what}")
}

fn open_ptmx(path: &str, index: u32, flags: i32) -> std::io::Result<OwnedFd> {
    // The kernel hands out the lowest free index: open until it is ours.
    // A just-killed tree may still hold it for a moment: wait, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let mut extra = Vec::new();
        let mut got = 0;
        for _ in 0..=MAX_PTY_INDEX {
            let fd = open_slave(path, flags)?;
            got = ioctl_get::<libc::c_uint>(&fd, libc::TIOCGPTN)?;
            if got == index {
                return Ok(fd);
            }
            if got > index {
                break;
            }
            extra.push(fd);
        }
        drop(extra);
        if std::time::Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "pty index {index} is taken (the kernel handed out {got}): a pty of that index is open on this \
                 devpts instance"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn restore_params(fd: &OwnedFd, f: &TtyFile) -> std::io::Result<()> {
    let info = &f.info;
    if let Some(tl) = &info.termios_locked {
        let want = KTermios::from_entry(tl);
        let cur = get_termios(fd, libc::TIOCGLCKTRMIOS)?;
        if cur != want {
            ioctl_set(fd, libc::TIOCSLCKTRMIOS, &want)
                .map_err(|e| std::io::Error::new(e.kind(), format!("TIOCSLCKTRMIOS: {e}")))?;
        }
    }
    if let Some(t) = &info.termios {
        let want = KTermios::from_entry(t);
        if get_termios(fd, libc::TCGETS)? != want {
            set_termios(fd, &want).map_err(|e| std::io::Error::new(e.kind(), format!("TCSETS: {e}")))?;
        }
    }
    if let Some(w) = &info.winsize {
        let ws = Winsize {
            ws_row: w.ws_row as u16,
            ws_col: w.ws_col as u16,
            ws_xpixel: w.ws_xpixel as u16,
            ws_ypixel: w.ws_ypixel as u16,
        };
        ioctl_set(fd, libc::TIOCSWINSZ, &ws).map_err(|e| std::io::Error::new(e.kind(), format!("TIOCSWINSZ: {e}")))?;
    }
    Ok(())
}

/// Owner and mode of a slave's node (devpts keeps them per pty).
fn restore_owner(fd: &OwnedFd, f: &TtyFile) -> std::io::Result<()> {
    let st = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
    if let (Some(uid), Some(gid)) = (f.info.uid, f.info.gid) {
        if st.st_uid != uid || st.st_gid != gid {
            nix::unistd::fchown(fd, Some(uid.into()), Some(gid.into()))
                .map_err(|e| std::io::Error::other(format!("fchown {uid}:{gid}: {e}")))?;
        }
    }
    if let Some(mode) = f.mode {
        if st.st_mode & 0o7777 != mode & 0o7777 {
            nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777))
                .map_err(|e| std::io::Error::other(format!("fchmod {:o}: {e}", mode & 0o7777)))?;
        }
    }
    Ok(())
}

fn oflags(f: &TtyFile) -> i32 {
    f.flags as i32 & (libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC)
}

/// Open every terminal file of the plan, before any task exists. `data` is
/// tty-data.img by tty_id.
pub fn restore_all(files: &[TtyFile], data: &BTreeMap<u32, Vec<u8>>, shell_job: bool) -> Result<Restored, String> {
    let mut r = Restored::default();
    let mut by_index: BTreeMap<u32, Vec<&TtyFile>> = BTreeMap::new();
    let mut others = Vec::new();
    for f in files {
        match (f.info.r#type, &f.info.pty) {
            (t, Some(p)) if t == pb::TtyType::Pty as i32 => by_index.entry(p.index).or_default().push(f),
            _ => others.push(f),
        }
    }
    for (&index, fs) in &by_index {
        let masters: Vec<&&TtyFile> = fs.iter().filter(|f| f.info.id & 1 == 1).collect();
        let slaves: Vec<&&TtyFile> = fs.iter().filter(|f| f.info.id & 1 == 0).collect();
        let slave_path = format!("/dev/pts/{index}");
        match masters.as_slice() {
            [] => {
                let hung = slaves.iter().all(|s| s.info.termios.is_none());
                if hung {
                    // Hung up: a stand-in master for the time of the opens.
                    let ptmx = open_ptmx("/dev/ptmx", index, libc::O_RDWR)
                        .map_err(|e| err(slaves[0].id, format!("opening a stand-in master for pty {index}: {e}")))?;
                    ioctl_set(&ptmx, libc::TIOCSPTLCK, &0i32).map_err(|e| err(slaves[0].id, format!("unlock: {e}")))?;
                    for s in &slaves {
                        let fd = open_slave(&s.path, oflags(s)).map_err(|e| err(s.id, format!("{}: {e}", s.path)))?;
                        restore_owner(&fd, s).map_err(|e| err(s.id, e))?;
                        r.fds.insert(s.id, fd);
                    }
                    drop(ptmx); // hangs the slaves up
                    continue;
                }
                // A shell job's terminal: cryo's own.
                if !shell_job {
                    return Err(err(
                        slaves[0].id,
                        format!(
                            "pty {index} has no master in the images (a terminal from outside the dumped tree): \
                             restore it as a shell job with --shell-job (-j)"
                        ),
                    ));
                }
                for s in &slaves {
                    let fd = restore_open(s.id, s.flags, &s.info).map_err(|e| err(s.id, e))?;
                    r.fds.insert(s.id, fd);
                }
            }
            [m] => {
                let master = open_ptmx(&m.path, index, oflags(m))
                    .map_err(|e| err(m.id, format!("opening {} with index {index}: {e}", m.path)))?;
                ioctl_set(&master, libc::TIOCSPTLCK, &0i32).map_err(|e| err(m.id, format!("TIOCSPTLCK: {e}")))?;
                restore_params(&master, m).map_err(|e| err(m.id, e))?;
                for s in &slaves {
                    let fd = open_slave(&s.path, oflags(s)).map_err(|e| err(s.id, format!("{}: {e}", s.path)))?;
                    restore_params(&fd, s).map_err(|e| err(s.id, e))?;
                    restore_owner(&fd, s).map_err(|e| err(s.id, e))?;
                    r.fds.insert(s.id, fd);
                }
                let sid = fs.iter().map(|f| f.info.sid).max().unwrap_or(0) as i32;
                let pgrp = fs.iter().map(|f| f.info.pgrp).max().unwrap_or(0) as i32;
                let input = data.get(&(index * 2)).map(Vec::as_slice).unwrap_or_default();
                let output = data.get(&(index * 2 + 1)).map(Vec::as_slice).unwrap_or_default();
                if sid != 0 || !input.is_empty() || !output.is_empty() {
                    // A slave of our own, for the data and the session leader.
                    let s =
                        open_slave(&slave_path, libc::O_RDWR).map_err(|e| err(m.id, format!("{slave_path}: {e}")))?;
                    if let Some(t) = &m.info.termios {
                        refill(&s, input, output, &KTermios::from_entry(t))
                            .map_err(|e| err(m.id, format!("refilling queued data: {e}")))?;
                    }
                    if sid != 0 {
                        r.ctty.insert(sid, (s, pgrp));
                    }
                }
                if m.info.packet_mode {
                    ioctl_set(&master, libc::TIOCPKT, &1i32).map_err(|e| err(m.id, format!("TIOCPKT: {e}")))?;
                }
                if m.info.exclusive {
                    ioctl_arg(master.as_raw_fd(), libc::TIOCEXCL, 0)
                        .map_err(|e| err(m.id, format!("TIOCEXCL: {e}")))?;
                }
                // Exclusive last: it refuses later opens of the slave.
                if let Some(s) = slaves.iter().find(|s| s.info.exclusive) {
                    ioctl_arg(r.fds[&s.id].as_raw_fd(), libc::TIOCEXCL, 0)
                        .map_err(|e| err(s.id, format!("TIOCEXCL: {e}")))?;
                }
                if m.info.locked {
                    ioctl_set(&master, libc::TIOCSPTLCK, &1i32).map_err(|e| err(m.id, format!("TIOCSPTLCK: {e}")))?;
                }
                r.fds.insert(m.id, master);
            }
            _ => return Err(err(masters[1].id, format!("a second master of pty {index}"))),
        }
    }
    for f in others {
        let fd = match f.info.r#type {
            t if t == pb::TtyType::Console as i32 || t == pb::TtyType::Vt as i32 => {
                let fd = open_slave(&f.path, oflags(f)).map_err(|e| err(f.id, format!("{}: {e}", f.path)))?;
                restore_params(&fd, f).map_err(|e| err(f.id, e))?;
                if f.info.sid != 0 {
                    let dup = fd.try_clone().map_err(|e| err(f.id, format!("dup: {e}")))?;
                    r.ctty.insert(f.info.sid as i32, (dup, f.info.pgrp as i32));
                }
                fd
            }
            t if t == pb::TtyType::Ctty as i32 => open_ctty(f, &r, shell_job)?,
            t => return Err(err(f.id, format!("terminal type {t} is not supported"))),
        };
        r.fds.insert(f.id, fd);
    }
    Ok(r)
}

/// /dev/tty: opened by a helper that is, for that moment, the leader of a
/// session controlled by the terminal it stands for (the dumped session's
/// pty); a shell job's stands for cryo's own terminal.
fn open_ctty(f: &TtyFile, r: &Restored, shell_job: bool) -> Result<OwnedFd, String> {
    let sid = f.info.sid as i32;
    let Some((slave, _)) = r.ctty.get(&sid) else {
        if shell_job {
            return open_slave(&f.path, oflags(f)).map_err(|e| err(f.id, format!("{} (cryo's own): {e}", f.path)));
        }
        return Err(err(
            f.id,
            format!("/dev/tty of session {sid}: no pty of the images is that session's controlling terminal"),
        ));
    };
    // The helper's exit as a session leader hangs up any terminal but a pty.
    let st = nix::sys::stat::fstat(slave).map_err(|e| err(f.id, format!("fstat: {e}")))?;
    if !is_pty_slave(st.st_rdev) {
        return Err(err(
            f.id,
            format!("/dev/tty of session {sid} stands for a terminal that is not a pty: not supported"),
        ));
    }
    match crate::sys::files::open_as_ctty_leader(slave, &f.path, oflags(f) | libc::O_CLOEXEC) {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) => Err(err(
            f.id,
            format!("the helper could not take pty of session {sid} as its controlling terminal to open /dev/tty"),
        )),
        Err(e) => Err(err(f.id, e)),
    }
}

/// Restore (shell job): the terminal of the restorer itself, reached through
/// its stdin (which must be a terminal), opened anew with the dumped flags;
/// the dumped termios and window size are put back on it.
pub fn restore_open(id: u32, flags: u32, info: &pb::TtyInfoEntry) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let stdin = std::fs::read_link("/proc/self/fd/0")?;
    let st = super::stat_path("/proc/self/fd/0")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !is_pty_slave(st.st_rdev) {
        return Err(std::io::Error::other(format!(
            "--shell-job connects the job's terminal to cryo's own, but cryo's stdin ({}) is not a pty slave",
            stdin.display()
        )));
    }
    let acc = flags as i32 & libc::O_ACCMODE;
    let extra = flags as i32 & (libc::O_APPEND | libc::O_NONBLOCK) | libc::O_NOCTTY;
    let f = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(extra)
        .open("/proc/self/fd/0")
        .map_err(|e| std::io::Error::new(e.kind(), format!("opening {} for file id {id}: {e}", stdin.display())))?;
    let fd: OwnedFd = f.into();
    if let Some(t) = &info.termios {
        set_termios(&fd, &KTermios::from_entry(t))
            .map_err(|e| std::io::Error::new(e.kind(), format!("TCSETS: {e}")))?;
    }
    if let Some(w) = &info.winsize {
        let ws = Winsize {
            ws_row: w.ws_row as u16,
            ws_col: w.ws_col as u16,
            ws_xpixel: w.ws_xpixel as u16,
            ws_ypixel: w.ws_ypixel as u16,
        };
        ioctl_set(&fd, libc::TIOCSWINSZ, &ws).map_err(|e| std::io::Error::new(e.kind(), format!("TIOCSWINSZ: {e}")))?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_encoding_round_trips() {
        for (ma, mi) in [(136u32, 0u32), (136, 5), (137, 300), (4, 5), (5, 1)] {
            let d = libc::makedev(ma, mi);
            assert_eq!(decode_dev(encode_dev(d)), d);
        }
        assert_eq!(encode_dev(libc::makedev(136, 3)), 0x8803);
    }
}
