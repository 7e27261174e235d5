//! fanotify: a FANOTIFY entry in files.img (CRIU 4.2's FanotifyFileEntry)
//! with the group's init flags, its event-fd flags and its marks: inode
//! marks by file handle (as inotify watches, see files::inotify) and mount
//! marks by mount id and mount point. Queued events are not kept (nor does
//! CRIU keep them).
//!
//! Restore creates the group in the engine (fanotify_init with the dumped
//! flags; needs CAP_SYS_ADMIN, which the engine has) and adds every mark
//! and ignore mark again, inode marks through the dumped handle (or the
//! recorded path), mount marks at the mount point.

use super::anon::{fdinfo_text, is_anon, token};
use super::inotify::{pack_handle, WdInfo, MAX_HANDLE_SZ};
use super::{fown, DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenFile, SetError};
use cryo_image::pb;

pub struct Fanotify;

/// What an fdinfo of a fanotify fd says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FanInfo {
    pub faflags: u32,
    pub evflags: u32,
    pub marks: Vec<MarkInfo>,
}

/// One mark line.
#[derive(Debug, PartialEq, Eq)]
pub struct MarkInfo {
    /// Some((inode, sdev, fhandle type, handle)) for an inode mark.
    pub inode: Option<(u64, u32, u32, Vec<u8>)>,
    /// The mount id of a mount mark.
    pub mnt_id: Option<u32>,
    pub mflags: u32,
    pub mask: u32,
    pub ignored_mask: u32,
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Parse the fanotify lines of an fdinfo text.
pub fn parse(text: &str) -> Result<FanInfo, String> {
    let mut f = FanInfo::default();
    for l in text.lines() {
        let hx = |k: &str| -> Result<u64, String> {
            token(l, k)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("no or bad {k:?} in {l:?}"))
        };
        if let Some(rest) = l.strip_prefix("fanotify flags:") {
            let fl = rest.split_whitespace().next().unwrap_or("");
            f.faflags = u32::from_str_radix(fl, 16).map_err(|_| format!("bad flags in {l:?}"))?;
            f.evflags = hx("event-flags")? as u32;
        } else if l.starts_with("fanotify ino:") {
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
            f.marks.push(MarkInfo {
                inode: Some((hx("ino")?, hx("sdev")? as u32, hx("fhandle-type")? as u32, handle)),
                mnt_id: None,
                mflags: hx("mflags")? as u32,
                mask: hx("mask")? as u32,
                ignored_mask: hx("ignored_mask")? as u32,
            });
        } else if l.starts_with("fanotify mnt_id:") {
            f.marks.push(MarkInfo {
                inode: None,
                mnt_id: Some(hx("mnt_id")? as u32),
                mflags: hx("mflags")? as u32,
                mask: hx("mask")? as u32,
                ignored_mask: hx("ignored_mask")? as u32,
            });
        } else if l.starts_with("fanotify ") {
            return Err(format!("a kind of fanotify mark cryo does not know: {l:?}"));
        }
    }
    Ok(f)
}

/// (mount point, kernel-encoded device) of mount `id` in a mountinfo text.
pub fn mount_point(mountinfo: &str, id: u32) -> Option<(String, u32)> {
    for l in mountinfo.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() > 4 && w[0].parse() == Ok(id) {
            let (ma, mi) = w[2].split_once(':')?;
            let (ma, mi): (u32, u32) = (ma.parse().ok()?, mi.parse().ok()?);
            return Some((w[4].replace("\\040", " "), ma << 20 | mi));
        }
    }
    None
}

impl FdKind for Fanotify {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Fanotify
    }

    fn detect(&self, c: &FdCtx) -> bool {
        is_anon(c, "[fanotify]")
    }

    fn dump(&self, c: &FdCtx, id: u32, _t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let info = parse(&fdinfo_text(c)?).map_err(|e| c.unsupported(format!("fanotify: {e}")))?;
        let mi = std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid)).unwrap_or_default();
        let mut marks = Vec::new();
        for m in info.marks {
            let mut e = pb::FanotifyMarkEntry {
                id,
                r#type: pb::MarkType::Inode as i32,
                mflags: m.mflags,
                mask: m.mask,
                ignored_mask: m.ignored_mask,
                s_dev: 0,
                ie: None,
                me: None,
            };
            if let Some((ino, sdev, ty, handle)) = m.inode {
                let w = WdInfo {
                    wd: 0,
                    ino,
                    sdev,
                    mask: m.mask,
                    ignored_mask: m.ignored_mask,
                    fh_type: ty,
                    handle,
                };
                let path = super::inotify::dump_side::watched_path(c.pid, &w).map_err(|e| {
                    c.unsupported(format!(
                        "fanotify mark on inode {ino} ({}:{}): {e}",
                        sdev >> 20,
                        sdev & 0xfffff
                    ))
                })?;
                e.s_dev = sdev;
                e.ie = Some(pb::FanotifyInodeMarkEntry {
                    i_ino: ino,
                    f_handle: pb::FhEntry {
                        bytes: w.handle.len() as u32,
                        r#type: ty,
                        handle: pack_handle(&w.handle),
                        path,
                        mnt_id: None,
                    },
                });
            } else if let Some(mnt) = m.mnt_id {
                let (path, sdev) = mount_point(&mi, mnt).ok_or_else(|| {
                    c.unsupported(format!(
                        "fanotify mount mark on mount {mnt}, which is not in its mountinfo"
                    ))
                })?;
                e.r#type = pb::MarkType::Mount as i32;
                e.s_dev = sdev;
                e.me = Some(pb::FanotifyMountMarkEntry {
                    mnt_id: mnt,
                    path: Some(path),
                });
            }
            marks.push(e);
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Fanotify as i32,
            id,
            ffy: Some(pb::FanotifyFileEntry {
                id,
                flags: c.flags(),
                fown: fown(),
                faflags: info.faflags,
                evflags: info.evflags,
                mark: marks,
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let f = e.ffy.as_ref().ok_or_else(|| cx.bad("FANOTIFY without ffy"))?;
        check(f).map_err(|what| {
            super::set::bad(
                cx.file,
                0,
                format!("entry {} (file id {}, fanotify): {what}", cx.index, e.id),
            )
        })?;
        Ok(Box::new(FanotifyFile(f.clone())))
    }
}

/// Validation of an image entry: every mark says where it is.
pub fn check(e: &pb::FanotifyFileEntry) -> Result<(), String> {
    for (i, m) in e.mark.iter().enumerate() {
        let ok = match pb::MarkType::try_from(m.r#type) {
            Ok(pb::MarkType::Inode) => m.ie.as_ref().is_some_and(|ie| {
                ie.f_handle.bytes as usize <= MAX_HANDLE_SZ
                    && super::inotify::unpack_handle(&ie.f_handle.handle, ie.f_handle.bytes as usize).is_some()
            }),
            Ok(pb::MarkType::Mount) => m.me.as_ref().is_some_and(|me| me.path.is_some()),
            Err(_) => false,
        };
        if !ok {
            return Err(format!(
                "mark {i} (type {}): no usable inode handle or mount path",
                m.r#type
            ));
        }
    }
    Ok(())
}

// ---- Restore side -------------------------------------------------------

pub use restore_side::FanotifyFile;

mod restore_side {
    use crate::files::set::open_err;
    use crate::files::{OpenError, OpenFile, RestoreCx};
    use crate::sys::files as sys;
    use cryo_image::pb;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn err(object: &str, reason: impl std::fmt::Display) -> OpenError {
        open_err(pb::FdTypes::Fanotify, object, reason)
    }

    /// A fanotify group to recreate with its marks (its files.img entry).
    #[derive(Clone, Debug)]
    pub struct FanotifyFile(pub pb::FanotifyFileEntry);

    impl OpenFile for FanotifyFile {
        fn fd_type(&self) -> pb::FdTypes {
            pb::FdTypes::Fanotify
        }

        fn restore(&self, id: u32, _cx: &mut RestoreCx) -> Result<Option<OwnedFd>, OpenError> {
            restore_open(id, &self.0).map(Some)
        }
    }

    const FAN_MARK_ADD: u32 = 0x1;
    const FAN_MARK_MOUNT: u32 = 0x10;
    const FAN_MARK_IGNORED_MASK: u32 = 0x20;
    const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;

    fn mark(fd: &OwnedFd, flags: u32, mask: u32, path: &str) -> std::io::Result<()> {
        sys::fanotify_mark(fd, flags, mask as u64, path)
    }

    /// A new fanotify group with the dumped flags and marks.
    fn restore_open(id: u32, e: &pb::FanotifyFileEntry) -> Result<OwnedFd, OpenError> {
        let object = format!("fanotify (file id {id})");
        // (The group's flags as dumped, FAN_CLOEXEC included or not: the
        // engine keeps a close-on-exec duplicate of this fd.)
        let fd = sys::fanotify_init(e.faflags, e.evflags).map_err(|x| {
            err(
                &object,
                format!("fanotify_init({:#x}, {:#x}): {x}", e.faflags, e.evflags),
            )
        })?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        // The kernel lists a group's marks newest first: add them oldest
        // first, so that they are listed in the dumped order again.
        for (i, m) in e.mark.iter().enumerate().rev() {
            let mobj = format!("{object}, mark {i}");
            let mut keep = None;
            let (target, kind) = if let Some(me) = &m.me {
                (me.path.clone().unwrap_or_default(), FAN_MARK_MOUNT)
            } else if let Some(ie) = &m.ie {
                let fh = &ie.f_handle;
                let bytes = super::super::inotify::unpack_handle(&fh.handle, fh.bytes as usize)
                    .ok_or_else(|| err(&mobj, "bad file handle (validated before; engine bug)"))?;
                match (
                    super::super::inotify::by_handle::open("", &mountinfo, m.s_dev, ie.i_ino, fh.r#type, &bytes),
                    &fh.path,
                ) {
                    (Ok(o), _) => {
                        let t = format!("/proc/self/fd/{}", o.as_raw_fd());
                        keep = Some(o);
                        (t, 0)
                    }
                    (Err(_), Some(p)) => (p.clone(), 0),
                    (Err(x), None) => {
                        return Err(err(
                            &mobj,
                            format!("inode {} on {:#x}: {x}, and the image has no path", ie.i_ino, m.s_dev),
                        ))
                    }
                }
            } else {
                return Err(err(
                    &mobj,
                    "a mark without inode or mount (validated before; engine bug)",
                ));
            };
            let c = target.as_str();
            let user = m.mflags & !FAN_MARK_IGNORED_SURV_MODIFY;
            if m.mask != 0 {
                mark(&fd, FAN_MARK_ADD | kind | user, m.mask, c)
                    .map_err(|x| err(&mobj, format!("fanotify_mark {target} mask {:#x}: {x}", m.mask)))?;
            }
            if m.ignored_mask != 0 {
                mark(
                    &fd,
                    FAN_MARK_ADD | kind | FAN_MARK_IGNORED_MASK | m.mflags,
                    m.ignored_mask,
                    c,
                )
                .map_err(|x| {
                    err(
                        &mobj,
                        format!("fanotify_mark {target} ignored mask {:#x}: {x}", m.ignored_mask),
                    )
                })?;
            }
            drop(keep);
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fanotify_fdinfo() {
        let t = "pos:\t0\nflags:\t04000\nmnt_id:\t15\nino:\t1057\n\
                 fanotify flags:12 event-flags:8000\n\
                 fanotify mnt_id:2e mflags:0 mask:3b ignored_mask:0\n\
                 fanotify ino:4f969 sdev:800013 mflags:40 mask:0 ignored_mask:40000003 fhandle-bytes:8 fhandle-type:1 f_handle:69f90400031bba3d\n";
        let f = parse(t).unwrap();
        assert_eq!((f.faflags, f.evflags), (0x12, 0x8000));
        assert_eq!(f.marks.len(), 2);
        assert_eq!((f.marks[0].mnt_id, f.marks[0].mask), (Some(0x2e), 0x3b));
        let (ino, sdev, ty, h) = f.marks[1].inode.clone().unwrap();
        assert_eq!((ino, sdev, ty, h.len()), (0x4f969, 0x800013, 1, 8));
        assert_eq!((f.marks[1].mflags, f.marks[1].ignored_mask), (0x40, 0x40000003));
        let mi = "46 29 0:44 / /tmp rw,relatime shared:20 - tmpfs tmpfs rw\n";
        assert_eq!(mount_point(mi, 46), Some(("/tmp".into(), 44)));
        assert_eq!(mount_point(mi, 47), None);
    }
}
