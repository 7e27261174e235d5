//! Terminals: the slave side of a unix98 pty (/dev/pts/N) that a shell job
//! inherited from its shell. Only with `--shell-job`: the session owning the
//! terminal is outside the dumped tree, so the terminal is not ours to
//! recreate; restore connects such fds to the restorer's own terminal
//! (its stdin), with the dumped termios and window size.
//!
//! Images, as CRIU writes them: a REG entry for the path, a TTY entry in
//! files.img (`tty_file_entry`, pointing at the REG entry with `regf_id` and
//! at its terminal with `tty_info_id` = index * 2, +1 for a master), and one
//! `tty_info_entry` per terminal in tty-info.img (type PTY, sid and foreground
//! pgrp when the terminal is the task's controlling one, termios, locked
//! termios, window size, pty index).

use super::{fown, reg, FdCtx, FdKind, FileError, FileTable};
use cryo_image::pb;
use std::os::fd::{AsRawFd, OwnedFd};

/// Unix98 pty slave majors (UNIX98_PTY_SLAVE_MAJOR .. + 7).
pub fn is_pty_slave(rdev: u64) -> bool {
    (136..=143).contains(&libc::major(rdev))
}

/// The kernel's `struct termios` (TCGETS): 19 control characters, no speeds.
#[repr(C)]
#[derive(Default)]
struct KTermios {
    c_iflag: u32,
    c_oflag: u32,
    c_cflag: u32,
    c_lflag: u32,
    c_line: u8,
    c_cc: [u8; 19],
}

pub struct Tty;

impl FdKind for Tty {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Tty
    }

    fn detect(&self, c: &FdCtx) -> bool {
        c.fmt() == libc::S_IFCHR && is_pty_slave(c.stat.st_rdev)
    }

    fn dump(&self, c: &FdCtx, id: u32, t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        if !t.shell_job {
            return Err(c.unsupported(
                "a terminal (pty slave) from outside the dumped tree: dump it as a shell job with --shell-job (-j)",
            ));
        }
        let rdev = c.stat.st_rdev;
        let index = (libc::major(rdev) - 136) * 256 + libc::minor(rdev);
        let info_id = index << 1;
        let path = format!("/dev/pts/{index}");
        let regf_id = t.alloc_id();
        let e = reg::reg_entry(regf_id, &path, false, &c.stat, c.flags(), 0, None, t)?;
        t.insert(e);
        if let std::collections::btree_map::Entry::Vacant(slot) = t.tty_infos.entry(info_id) {
            // A shell job's terminal belongs to a session outside the tree
            // (the shell's): a session of the tree controlling it means the
            // terminal is the tree's own, which --shell-job cannot restore.
            for &pid in &t.tree_pids {
                if let Some((sid, tty_nr, _)) = stat_tty(pid) {
                    if tty_nr as u64 == rdev && t.tree_pids.contains(&(sid as i32)) {
                        return Err(c.unsupported(format!(
                            "{path} is the controlling terminal of session {sid}, whose leader is in the dumped \
                             tree: not a shell job (--shell-job restores only terminals of a session outside the tree)"
                        )));
                    }
                }
            }
            let fd = c.steal()?;
            slot.insert(tty_info(c, &fd, info_id, index)?);
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
}

/// An ioctl that fills a `T` (all-zero is a valid `T`).
#[allow(unsafe_code)]
fn ioctl_get<T: Default>(fd: &OwnedFd, req: libc::c_ulong) -> std::io::Result<T> {
    let mut v = T::default();
    // SAFETY: `req` is a read request whose kernel argument has the layout of `T`;
    // the pointer is valid for writes of size_of::<T>() for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut T) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// struct winsize (TIOCGWINSZ).
#[repr(C)]
#[derive(Default)]
struct Winsize {
    ws_row: u16,
    ws_col: u16,
    ws_xpixel: u16,
    ws_ypixel: u16,
}

fn ioctl_err(c: &FdCtx, what: &str) -> FileError {
    FileError::Io {
        pid: c.pid,
        fd: c.fd,
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

fn termios_of(c: &FdCtx, fd: &OwnedFd, req: libc::c_ulong, what: &str) -> Result<pb::TermiosEntry, FileError> {
    let k: KTermios = ioctl_get(fd, req).map_err(|_| ioctl_err(c, what))?;
    Ok(pb::TermiosEntry {
        c_iflag: k.c_iflag,
        c_oflag: k.c_oflag,
        c_cflag: k.c_cflag,
        c_lflag: k.c_lflag,
        c_line: k.c_line as u32,
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: k.c_cc.iter().map(|&b| b as u32).collect(),
    })
}

/// (session, tty_nr, tpgid) from /proc/PID/stat.
fn stat_tty(pid: i32) -> Option<(u32, u32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(3)?.parse().ok()?,
        f.get(4)?.parse().ok()?,
        f.get(5)?.parse().ok()?,
    ))
}

fn tty_info(c: &FdCtx, fd: &OwnedFd, id: u32, index: u32) -> Result<pb::TtyInfoEntry, FileError> {
    let termios = termios_of(c, fd, libc::TCGETS, "TCGETS")?;
    let termios_locked = termios_of(c, fd, libc::TIOCGLCKTRMIOS, "TIOCGLCKTRMIOS")?;
    let w: Winsize = ioctl_get(fd, libc::TIOCGWINSZ).map_err(|_| ioctl_err(c, "TIOCGWINSZ"))?;
    let exclusive = ioctl_get::<libc::c_int>(fd, libc::TIOCGEXCL).is_ok_and(|x| x != 0);
    // Session and foreground group as the task sees them: only when this
    // terminal is its controlling one (what TIOCGSID/TIOCGPGRP answer from
    // inside the task; 0 otherwise).
    let (sid, pgrp) = match stat_tty(c.pid) {
        Some((sid, tty_nr, tpgid)) if tty_nr as u64 == c.stat.st_rdev && tpgid > 0 => (sid, tpgid as u32),
        Some(_) => (0, 0),
        None => return Err(ioctl_err(c, "reading /proc/PID/stat")),
    };
    Ok(pb::TtyInfoEntry {
        id,
        r#type: pb::TtyType::Pty as i32,
        locked: false,
        exclusive,
        packet_mode: false,
        sid,
        pgrp,
        rdev: c.stat.st_rdev as u32,
        termios: Some(termios),
        termios_locked: Some(termios_locked),
        winsize: Some(pb::WinsizeEntry {
            ws_row: w.ws_row as u32,
            ws_col: w.ws_col as u32,
            ws_xpixel: w.ws_xpixel as u32,
            ws_ypixel: w.ws_ypixel as u32,
        }),
        pty: Some(pb::TtyPtyEntry { index }),
        dev: Some(c.stat.st_dev as u32),
        uid: None,
        gid: None,
    })
}

/// An ioctl that reads a `T` from us.
#[allow(unsafe_code)]
fn ioctl_set<T>(fd: &OwnedFd, req: libc::c_ulong, v: &T) -> std::io::Result<()> {
    // SAFETY: `req` is a write request whose kernel argument has the layout of `T`;
    // the pointer is valid for reads for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, v as *const T) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
        ioctl_set(&fd, libc::TCSETS, &k).map_err(|e| std::io::Error::new(e.kind(), format!("TCSETS: {e}")))?;
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
