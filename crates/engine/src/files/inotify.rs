//! inotify: an INOTIFY entry in files.img with one wd entry per watch: the
//! watch descriptor, the event mask, the watched inode (s_dev in the
//! kernel's encoding, i_ino) and its file handle, plus the path the handle
//! resolves to (CRIU 4.2 writes it too, as a hint).
//!
//! Queued events are not saved (CRIU does not save them either).

use super::anon::{self, fdinfo_text, is_anon, token};
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenFile, SetError};
use cryo_image::pb;

pub struct Inotify;

/// CRIU's handle array: at least 16 u64 words (fh.proto's min_entries),
/// i.e. MAX_HANDLE_SZ bytes.
pub const FH_WORDS: usize = 16;
pub const MAX_HANDLE_SZ: usize = 128;

/// One `inotify wd:` line of fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WdInfo {
    pub wd: u32,
    pub ino: u64,
    /// Kernel encoding (major << 20 | minor).
    pub sdev: u32,
    pub mask: u32,
    pub ignored_mask: u32,
    pub fh_type: u32,
    pub handle: Vec<u8>,
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parse the watches of an inotify fd's fdinfo text.
pub fn parse(text: &str) -> Result<Vec<WdInfo>, String> {
    let mut v = Vec::new();
    for l in text.lines().filter(|l| l.starts_with("inotify ")) {
        let hx = |k: &str| -> Result<u64, String> {
            token(l, k)
                .and_then(anon::hex64)
                .ok_or_else(|| format!("no or bad {k:?} in {l:?}"))
        };
        if token(l, "fhandle-bytes").is_none() {
            // The kernel prints no handle when the filesystem cannot make one.
            return Err(format!(
                "watch {}: the filesystem of the watched inode gives no file handle ({l:?})",
                token(l, "wd").unwrap_or("?")
            ));
        }
        let bytes = hx("fhandle-bytes")? as usize;
        let handle = token(l, "f_handle")
            .and_then(hex_bytes)
            .ok_or_else(|| format!("no or bad \"f_handle\" in {l:?}"))?;
        if handle.len() != bytes || bytes > MAX_HANDLE_SZ {
            return Err(format!(
                "file handle of {} bytes, {bytes} announced, in {l:?}",
                handle.len()
            ));
        }
        v.push(WdInfo {
            wd: hx("wd")? as u32,
            ino: hx("ino")?,
            sdev: hx("sdev")? as u32,
            mask: hx("mask")? as u32,
            ignored_mask: hx("ignored_mask")? as u32,
            fh_type: hx("fhandle-type")? as u32,
            handle,
        });
    }
    Ok(v)
}

/// Handle bytes as CRIU stores them: little-endian u64 words, zero-padded
/// to at least [`FH_WORDS`].
pub fn pack_handle(b: &[u8]) -> Vec<u64> {
    let mut words: Vec<u64> = b
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    if words.len() < FH_WORDS {
        words.resize(FH_WORDS, 0);
    }
    words
}

/// The inverse of [`pack_handle`] for `bytes` bytes.
pub fn unpack_handle(words: &[u64], bytes: usize) -> Option<Vec<u8>> {
    let all: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    all.get(..bytes).map(|b| b.to_vec())
}

impl FdKind for Inotify {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Inotify
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "inotify")
    }

    fn dump(&self, c: &FdCtx, id: u32, _t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let wds = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(format!("inotify: {e}")))?;
        let mut out = Vec::new();
        for w in wds {
            let path = dump_side::watched_path(c.pid, &w).map_err(|e| {
                c.unsupported(format!(
                    "inotify watch {} (inode {} on {}:{}): {e}",
                    w.wd,
                    w.ino,
                    w.sdev >> 20,
                    w.sdev & 0xfffff
                ))
            })?;
            out.push(pb::InotifyWdEntry {
                id: 0,
                i_ino: w.ino,
                mask: w.mask,
                ignored_mask: w.ignored_mask,
                s_dev: w.sdev,
                wd: w.wd,
                f_handle: pb::FhEntry {
                    bytes: w.handle.len() as u32,
                    r#type: w.fh_type,
                    handle: pack_handle(&w.handle),
                    path,
                    mnt_id: None,
                },
            });
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Inotify as i32,
            id,
            ify: Some(pb::InotifyFileEntry {
                id,
                flags: c.flags(),
                fown: fown(),
                wd: out,
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        anon::describe_body(e, cx, e.ify.clone(), check, InotifyFile)
    }
}

/// Validation of an image entry.
pub fn check(e: &pb::InotifyFileEntry) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for w in &e.wd {
        if w.wd == 0 || w.wd > i32::MAX as u32 {
            return Err(format!("watch descriptor {} is out of range", w.wd));
        }
        if !seen.insert(w.wd) {
            return Err(format!("watch descriptor {} listed twice", w.wd));
        }
        let fh = &w.f_handle;
        if fh.bytes as usize > MAX_HANDLE_SZ || unpack_handle(&fh.handle, fh.bytes as usize).is_none() {
            return Err(format!(
                "watch {}: file handle of {} bytes with {} words",
                w.wd,
                fh.bytes,
                fh.handle.len()
            ));
        }
        if w.mask & libc::IN_ALL_EVENTS == 0 {
            return Err(format!("watch {}: mask {:#x} watches no event", w.wd, w.mask));
        }
    }
    Ok(())
}

/// Mounts (major, minor, mount point) of a mountinfo text; mounts of the
/// whole filesystem (root "/") first.
pub fn mounts_of(mountinfo: &str, major: u32, minor: u32) -> Vec<String> {
    let mut v: Vec<(bool, String)> = Vec::new();
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        if f[2] != format!("{major}:{minor}") {
            continue;
        }
        // Mount points escape spaces etc. as octal (\040).
        v.push((f[3] != "/", unescape(f[4])));
    }
    v.sort_by_key(|x| x.0);
    v.into_iter().map(|x| x.1).collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// open_by_handle_at, shared by dump (to find the path) and restore.
pub(super) mod by_handle {
    use crate::sys::files as sys;
    use std::os::fd::OwnedFd;

    /// Open (O_PATH) the object of handle (`ty`, `bytes`) through any mount
    /// of filesystem `major:minor` in `mountinfo`, reached under `root`
    /// ("" or "/proc/PID/root"), and check its inode number.
    pub fn open(root: &str, mountinfo: &str, kdev: u32, ino: u64, ty: u32, bytes: &[u8]) -> Result<OwnedFd, String> {
        let (ma, mi) = super::anon::kdev_split(kdev);
        let mounts = super::mounts_of(mountinfo, ma, mi);
        if mounts.is_empty() {
            return Err(format!("no mount of device {ma}:{mi}"));
        }
        let mut fh = Vec::with_capacity(8 + bytes.len());
        fh.extend_from_slice(&(bytes.len() as u32).to_ne_bytes());
        fh.extend_from_slice(&(ty as i32).to_ne_bytes());
        fh.extend_from_slice(bytes);
        let mut last = String::new();
        for m in mounts {
            let p = format!("{root}{m}");
            if p.contains('\0') {
                continue;
            }
            // A real open (open_by_handle_at does not take O_PATH fds):
            // mount points are directories but for file bind mounts.
            let mfd = sys::open(&p, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .or_else(|_| sys::open(&p, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC));
            let mfd = match mfd {
                Ok(fd) => fd,
                Err(e) => {
                    last = format!("{p}: {e}");
                    continue;
                }
            };
            let fd = match sys::open_by_handle_at(&mfd, &fh) {
                Ok(fd) => fd,
                Err(e) => {
                    last = format!("open_by_handle_at through {p}: {e}");
                    continue;
                }
            };
            let st = nix::sys::stat::fstat(&fd).map_err(|e| e.to_string())?;
            if st.st_ino != ino {
                return Err(format!("the handle opens inode {}, not {ino}", st.st_ino));
            }
            return Ok(fd);
        }
        Err(last)
    }
}

pub(super) mod dump_side {
    use super::WdInfo;
    use std::os::fd::AsRawFd;

    /// The path of the watched object (CRIU 4.2 records it beside the
    /// handle): the handle opened through a mount of its filesystem in the
    /// task's mount table, and the path of what it opens. An object the
    /// handle cannot reach (deleted) is refused.
    pub fn watched_path(pid: i32, w: &WdInfo) -> Result<Option<String>, String> {
        let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|e| e.to_string())?;
        let fd = super::by_handle::open(&format!("/proc/{pid}/root"), &mi, w.sdev, w.ino, w.fh_type, &w.handle)
            .map_err(|e| format!("cannot open its file handle ({e}): deleted?"))?;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| e.to_string())?;
        let p = p.to_string_lossy().into_owned();
        if p.ends_with(" (deleted)") && nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_nlink == 0) {
            // A deleted object: no path; restore finds it as the ghost file
            // of the same inode (an fd of the tree must hold it, as CRIU
            // requires).
            return Ok(None);
        }
        if !p.starts_with('/') || p.ends_with(" (deleted)") {
            return Err(format!("the watched object has no usable path ({p})"));
        }
        // The link shows the path from the dumper's root; keep it only if
        // it names the same inode from the task's root (it may not when
        // the task lives in another mount namespace; restore then relies
        // on the handle alone).
        let same = nix::sys::stat::stat(format!("/proc/{pid}/root{p}").as_str())
            .map(|st| {
                let (ma, mi) = super::anon::kdev_split(w.sdev);
                st.st_ino == w.ino && libc::major(st.st_dev) == ma && libc::minor(st.st_dev) == mi
            })
            .unwrap_or(false);
        Ok(same.then_some(p))
    }
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::InotifyFile;

mod restore_side {
    use crate::files::anon::set_status_flags;
    use crate::files::reg::Remaps;
    use crate::files::set::open_err;
    use crate::files::{FileSet, OpenError, OpenFile, RestoreCx};
    use crate::sys::files as sys;
    use cryo_image::pb;
    use std::os::fd::{AsRawFd, OwnedFd};

    /// How many watches may be added and removed to reach a dumped wd.
    const MAX_STEPS: u32 = 1 << 20;

    fn err(object: &str, reason: impl std::fmt::Display) -> OpenError {
        open_err(pb::FdTypes::Inotify, object, reason)
    }

    /// An inotify instance to recreate with its watches (its files.img entry).
    #[derive(Clone, Debug)]
    pub struct InotifyFile(pub pb::InotifyFileEntry);

    impl OpenFile for InotifyFile {
        fn fd_type(&self) -> pb::FdTypes {
            pb::FdTypes::Inotify
        }

        fn restore(&self, id: u32, cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
            let files = cx.files;
            restore_open(files, &mut cx.remaps, id, &self.0).map(Some)
        }
    }

    /// Add a watch on `path` with number `wd`. The kernel hands out wds in
    /// increasing order (idr_alloc_cyclic): add, and remove again until the
    /// dumped number comes up.
    fn place(ifd: &OwnedFd, path: &str, mask: u32, wd: u32, placed: &[u32]) -> Result<(), String> {
        let mut steps = 0;
        loop {
            let got = sys::inotify_add_watch(ifd, path, mask).map_err(|x| format!("inotify_add_watch: {x}"))?;
            if got == wd {
                return Ok(());
            }
            if placed.contains(&got) {
                return Err(format!("the object of watch {got} already"));
            }
            sys::inotify_rm_watch(ifd, got);
            steps += 1;
            if got > wd || steps > MAX_STEPS {
                return Err(format!("the kernel hands out wd {got}, cannot reach {wd}"));
            }
        }
    }

    /// A new inotify instance with every dumped watch at its wd number.
    /// A watched object deleted at dump time is the ghost file of the same
    /// inode (made through `remaps`).
    fn restore_open(
        plan: &FileSet,
        remaps: &mut Remaps,
        id: u32,
        e: &pb::InotifyFileEntry,
    ) -> Result<OwnedFd, OpenError> {
        let object = format!("inotify (file id {id})");
        // Non-blocking while being set up (see the drain below).
        let ifd = sys::inotify_init(libc::IN_NONBLOCK | libc::IN_CLOEXEC)
            .map_err(|x| err(&object, format!("inotify_init1: {x}")))?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut wds: Vec<&pb::InotifyWdEntry> = e.wd.iter().collect();
        wds.sort_by_key(|w| w.wd);
        let mut placed: Vec<u32> = Vec::new();
        for w in wds {
            let wobj = format!("{object}, watch {}", w.wd);
            let fh = &w.f_handle;
            // The watched object: first the file handle (the very inode, if
            // its filesystem is mounted here and the inode still exists;
            // open_by_handle_at needs CAP_DAC_READ_SEARCH, which the engine
            // has as root), then the path CRIU/cryo recorded beside it (the
            // object as the program names it, e.g. after the directory was
            // re-created or the images moved to another machine; no inode
            // check then, as CRIU does with its path hint).
            let bytes = super::unpack_handle(&fh.handle, fh.bytes as usize)
                .ok_or_else(|| err(&wobj, "bad file handle (validated before; engine bug)"))?;
            if let Some(g) = remaps.ghost_of_inode(plan, w.s_dev, w.i_ino)? {
                // Deleted at dump time: the inode is the ghost (never the
                // old inode, which may still exist, nor what is at its path).
                let mask = w.mask & !(libc::IN_MASK_ADD | libc::IN_MASK_CREATE);
                place(&ifd, &g, mask, w.wd, &placed).map_err(|x| err(&wobj, format!("{g}: {x}")))?;
                placed.push(w.wd);
                continue;
            }
            let by_handle = super::by_handle::open("", &mountinfo, w.s_dev, w.i_ino, fh.r#type, &bytes);
            let (target, keep) = match (by_handle, &fh.path) {
                (Ok(fd), _) => (format!("/proc/self/fd/{}", fd.as_raw_fd()), Some(fd)),
                (Err(_), Some(p)) => (p.clone(), None),
                (Err(e), None) => {
                    return Err(err(
                        &wobj,
                        format!("inode {} on {:#x}: {e}, and the image has no path", w.i_ino, w.s_dev),
                    ))
                }
            };
            // Through /proc/self/fd the link must be followed; a path is
            // watched as dumped.
            let mut mask = w.mask & !(libc::IN_MASK_ADD | libc::IN_MASK_CREATE);
            if keep.is_some() {
                mask &= !libc::IN_DONT_FOLLOW;
            }
            place(&ifd, &target, mask, w.wd, &placed).map_err(|x| err(&wobj, format!("{target}: {x}")))?;
            placed.push(w.wd);
        }
        // Each removal above queued an IN_IGNORED event: drop them (queued
        // events are not part of the image, so the queue starts empty).
        sys::drain(&ifd);
        set_status_flags(&ifd, e.flags).map_err(|x| err(&object, x))?;
        Ok(ifd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inotify_fdinfo() {
        let t = "pos:\t0\nflags:\t04000\nmnt_id:\t17\nino:\t1030\n\
                 inotify wd:3 ino:992039 sdev:fe00000 mask:302 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:3920990046f70da8\n\
                 inotify wd:1 ino:10 sdev:2e mask:100 ignored_mask:0 fhandle-bytes:c fhandle-type:81 f_handle:0a000000000000001c3f9e00\n";
        let w = parse(t).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0],
            WdInfo {
                wd: 3,
                ino: 0x992039,
                sdev: 0xfe00000,
                mask: 0x302,
                ignored_mask: 0,
                fh_type: 1,
                handle: vec![0x39, 0x20, 0x99, 0x00, 0x46, 0xf7, 0x0d, 0xa8],
            }
        );
        assert_eq!(w[1].handle.len(), 12);
        assert!(parse(
            "inotify wd:1 ino:10 sdev:2e mask:100 ignored_mask:0 fhandle-bytes:4 fhandle-type:1 f_handle:00\n"
        )
        .is_err());
    }

    #[test]
    fn a_watch_without_handle_is_explained() {
        let e = parse("inotify wd:2 ino:10 sdev:2e mask:100 ignored_mask:0\n").unwrap_err();
        assert!(e.contains("watch 2") && e.contains("no file handle"), "{e}");
    }

    #[test]
    fn handles_pack_like_criu() {
        // The fixture's handle: 8 bytes in one little-endian word, 16 words.
        let b = 17269994129209213018u64.to_le_bytes();
        let words = pack_handle(&b);
        assert_eq!(words.len(), FH_WORDS);
        assert_eq!(words[0], 17269994129209213018);
        assert_eq!(unpack_handle(&words, 8).unwrap(), b);
        let odd = pack_handle(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(odd[1], 0x0c0b0a09);
        assert_eq!(unpack_handle(&odd, 12).unwrap(), (1..=12).collect::<Vec<u8>>());
        assert!(unpack_handle(&odd[..1], 12).is_none());
    }

    #[test]
    fn mounts_by_device() {
        let mi = "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                  30 22 254:0 /srv /mnt/srv rw - ext4 /dev/vda rw\n\
                  31 22 0:40 / /tmp/my\\040dir rw - tmpfs x rw\n";
        assert_eq!(mounts_of(mi, 254, 0), vec!["/".to_string(), "/mnt/srv".to_string()]);
        assert_eq!(mounts_of(mi, 0, 40), vec!["/tmp/my dir".to_string()]);
        assert!(mounts_of(mi, 8, 1).is_empty());
    }
}
