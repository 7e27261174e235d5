//! Namespace files (nsfs: an fd on /proc/PID/ns/net, ...), NS in files.img.
//! cryo dumps only trees in its own namespaces, so such an fd can only be
//! restored when it names one of those: it is opened again as
//! /proc/self/ns/<type> of the restored tree (CRIU's ns file entry, ns_id as
//! in ids-PID.img).

use super::{DescribeCx, FdCtx, FdKind, FileError, FileTable, OpenError, OpenFile, RestoreCx, SetError};
use cryo_image::pb;

/// (name in /proc/PID/ns, CLONE_NEW* flag, CRIU's id of cryo's own namespace
/// of that type, as dump::root_ns_ids numbers them).
pub const NS_TYPES: &[(&str, u32, u32)] = &[
    ("pid", libc::CLONE_NEWPID as u32, 1),
    ("net", libc::CLONE_NEWNET as u32, 2),
    ("ipc", libc::CLONE_NEWIPC as u32, 3),
    ("uts", libc::CLONE_NEWUTS as u32, 4),
    ("time", 0x80, 5),
    ("mnt", libc::CLONE_NEWNS as u32, 6),
    ("user", libc::CLONE_NEWUSER as u32, 7),
    ("cgroup", libc::CLONE_NEWCGROUP as u32, 8),
];

/// "net:[4026531840]" -> ("net", 4026531840).
fn parse_link(link: &str) -> Option<(&str, u64)> {
    let (name, rest) = link.split_once(":[")?;
    let ino = rest.strip_suffix(']')?.parse().ok()?;
    NS_TYPES.iter().any(|t| t.0 == name).then_some((name, ino))
}

pub struct NsFile;

impl FdKind for NsFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Ns
    }

    fn detect(&self, c: &FdCtx) -> bool {
        parse_link(&c.link).is_some()
    }

    fn dump(&self, c: &FdCtx, id: u32, _t: &mut FileTable) -> Result<pb::FileEntry, FileError> {
        let (name, ino) = parse_link(&c.link).expect("detected");
        let &(_, cflag, ns_id) = NS_TYPES.iter().find(|t| t.0 == name).expect("known type");
        let own = std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if own.ok() != Some(ino) {
            return Err(c.unsupported(format!(
                "a {name} namespace other than cryo's own (namespaces are not supported yet)"
            )));
        }
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Ns as i32,
            id,
            nsf: Some(pb::NsFileEntry {
                id,
                ns_id,
                ns_cflag: cflag,
                flags: c.flags(),
            }),
            ..Default::default()
        })
    }

    fn describe(&self, e: &pb::FileEntry, cx: &DescribeCx) -> Result<Box<dyn OpenFile>, SetError> {
        let n = e.nsf.as_ref().ok_or_else(|| cx.bad("NS without nsf"))?;
        if restore_name(n).is_none() {
            return Err(super::set::unsupported(
                cx.file,
                0,
                format!(
                    "entry {} (file id {}): namespace {} of type {:#x} is not one cryo restores into (namespaces are not supported yet)",
                    cx.index, e.id, n.ns_id, n.ns_cflag
                ),
            ));
        }
        Ok(Box::new(NsFileFile(*n)))
    }
}

// ---- Restore side -------------------------------------------------------

/// The /proc/self/ns name of a dumped ns file, if it names one of the
/// namespaces cryo restores into (its own).
pub fn restore_name(e: &pb::NsFileEntry) -> Option<&'static str> {
    NS_TYPES
        .iter()
        .find(|t| t.1 == e.ns_cflag && t.2 == e.ns_id)
        .map(|t| t.0)
}

/// A namespace file to open again (its files.img entry), one of cryo's own
/// namespaces.
#[derive(Clone, Debug)]
pub struct NsFileFile(pub pb::NsFileEntry);

impl OpenFile for NsFileFile {
    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Ns
    }

    /// The namespace file, opened in the engine's (the restored tree's)
    /// namespace of that type.
    fn restore(&self, id: u32, _cx: &mut RestoreCx) -> Result<Option<std::os::fd::OwnedFd>, OpenError> {
        let e = &self.0;
        let err = |reason: String| super::set::open_err(pb::FdTypes::Ns, format!("namespace file id {id}"), reason);
        let name = restore_name(e).ok_or_else(|| {
            err(format!(
                "namespace {} of type {:#x} is not cryo's own",
                e.ns_id, e.ns_cflag
            ))
        })?;
        let acc = e.flags as i32 & libc::O_ACCMODE;
        let f = std::fs::OpenOptions::new()
            .read(acc != libc::O_WRONLY)
            .write(acc != libc::O_RDONLY)
            .open(format!("/proc/self/ns/{name}"))
            .map_err(|x| err(format!("/proc/self/ns/{name}: {x}")))?;
        Ok(Some(f.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_links_parse() {
        assert_eq!(parse_link("net:[4026531840]"), Some(("net", 4026531840)));
        assert_eq!(parse_link("pid:[1]"), Some(("pid", 1)));
        assert_eq!(parse_link("anon_inode:[eventfd]"), None);
        assert_eq!(parse_link("pipe:[12]"), None);
    }
}
