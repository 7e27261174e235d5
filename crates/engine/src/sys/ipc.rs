//! SysV IPC syscalls (shm, sem, msg) of the calling thread's IPC namespace:
//! the listing and stat of every object, MSG_COPY reads, creation with a
//! chosen id (through the namespace's *_next_id sysctls, written by the
//! caller), and attachments of shm segments in this process.

use std::io;

pub const IPC_CREAT: i32 = libc::IPC_CREAT;
pub const IPC_EXCL: i32 = libc::IPC_EXCL;
pub const IPC_NOWAIT: i32 = libc::IPC_NOWAIT;
const SHM_STAT: i32 = 13;
const SHM_INFO: i32 = 14;
const SEM_STAT: i32 = 18;
const SEM_INFO: i32 = 19;
const MSG_STAT: i32 = 11;
const MSG_INFO: i32 = 12;
const GETALL: i32 = 13;
const SETALL: i32 = 17;
const MSG_COPY: i32 = 0o40000;

fn cvt(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The permissions of an object (struct ipc64_perm's fields as read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
}

fn perm(p: &libc::ipc_perm) -> Perm {
    Perm {
        key: p.__key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode as u32,
    }
}

/// Every shm segment: (id, perm, size, attach count).
pub fn shm_list() -> io::Result<Vec<(i32, Perm, u64, u64)>> {
    // SAFETY: zeroed plain C structs; SHM_INFO writes a struct shm_info
    // (smaller than shmid_ds) into the buffer.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds is a valid buffer for the kernel to write.
    let max = cvt(unsafe { libc::shmctl(0, SHM_INFO, &mut ds) })?;
    let mut out = Vec::new();
    for i in 0..=max {
        // SAFETY: as above.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds is a valid buffer; SHM_STAT takes an index.
        match cvt(unsafe { libc::shmctl(i, SHM_STAT, &mut ds) }) {
            Ok(id) => out.push((id, perm(&ds.shm_perm), ds.shm_segsz as u64, ds.shm_nattch)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every semaphore set: (id, perm, nsems).
pub fn sem_list() -> io::Result<Vec<(i32, Perm, u64)>> {
    // SAFETY: zeroed plain C struct; SEM_INFO writes a struct seminfo (smaller).
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: semctl with a pointer argument to a valid buffer.
    let max = cvt(unsafe { libc::semctl(0, 0, SEM_INFO, &mut ds as *mut libc::semid_ds) })?;
    let mut out = Vec::new();
    for i in 0..=max {
        // SAFETY: as above.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: as above; SEM_STAT takes an index.
        match cvt(unsafe { libc::semctl(i, 0, SEM_STAT, &mut ds as *mut libc::semid_ds) }) {
            Ok(id) => out.push((id, perm(&ds.sem_perm), ds.sem_nsems as u64)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every message queue: (id, perm, qbytes, qnum).
pub fn msg_list() -> io::Result<Vec<(i32, Perm, u64, u64)>> {
    // SAFETY: zeroed plain C struct; MSG_INFO writes a struct msginfo (smaller).
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: ds is a valid buffer.
    let max = cvt(unsafe { libc::msgctl(0, MSG_INFO, &mut ds) })?;
    let mut out = Vec::new();
    for i in 0..=max {
        // SAFETY: as above.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: ds is a valid buffer; MSG_STAT takes an index.
        match cvt(unsafe { libc::msgctl(i, MSG_STAT, &mut ds) }) {
            Ok(id) => out.push((id, perm(&ds.msg_perm), ds.msg_qbytes as u64, ds.msg_qnum as u64)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// GETALL of a semaphore set of `n` semaphores.
pub fn sem_values(id: i32, n: usize) -> io::Result<Vec<u16>> {
    let mut v = vec![0u16; n];
    // SAFETY: GETALL writes nsems u16 values into the array, which has n.
    cvt(unsafe { libc::semctl(id, 0, GETALL, v.as_mut_ptr()) })?;
    Ok(v)
}

/// SETALL of a semaphore set.
pub fn sem_set_values(id: i32, v: &[u16]) -> io::Result<()> {
    // SAFETY: SETALL reads nsems u16 values; the caller's set has v.len().
    cvt(unsafe { libc::semctl(id, 0, SETALL, v.as_ptr()) })?;
    Ok(())
}

/// The `n`-th message of queue `id`, left in the queue (MSG_COPY): (mtype, data).
pub fn msg_copy(id: i32, n: i64, max: usize) -> io::Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: buf holds a long and max bytes of text, as msgrcv is told.
    let r = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), max, n, IPC_NOWAIT | MSG_COPY) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mtype = i64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    Ok((mtype, buf[8..8 + r as usize].to_vec()))
}

/// msgsnd of one message, without waiting.
pub fn msg_send(id: i32, mtype: i64, data: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 + data.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(data);
    // SAFETY: buf is a long then data.len() bytes, as msgsnd is told.
    cvt(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), IPC_NOWAIT) })?;
    Ok(())
}

/// The size of segment `id`.
pub fn shm_size(id: i32) -> io::Result<u64> {
    // SAFETY: zeroed plain C struct, a valid buffer for IPC_STAT.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds.shm_segsz as u64)
}

pub fn shm_get(key: i32, size: u64, flags: i32) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::shmget(key, size as usize, flags) })
}

pub fn sem_get(key: i32, n: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::semget(key, n, flags) })
}

pub fn msg_get(key: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// Which object kind [`set_owner`] changes.
#[derive(Clone, Copy, Debug)]
pub enum Obj {
    Shm,
    Sem,
    Msg,
}

/// IPC_STAT then IPC_SET with the owner uid/gid (and, for a queue, its qbytes).
pub fn set_owner(kind: Obj, id: i32, uid: u32, gid: u32, qbytes: Option<u64>) -> io::Result<()> {
    match kind {
        Obj::Shm => {
            // SAFETY: zeroed plain C struct.
            let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: ds is a valid buffer for IPC_STAT.
            cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) })?;
            ds.shm_perm.uid = uid;
            ds.shm_perm.gid = gid;
            // SAFETY: ds is a valid struct for IPC_SET.
            cvt(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) })?;
        }
        Obj::Sem => {
            // SAFETY: zeroed plain C struct.
            let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: ds is a valid buffer for IPC_STAT.
            cvt(unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) })?;
            ds.sem_perm.uid = uid;
            ds.sem_perm.gid = gid;
            // SAFETY: ds is a valid struct for IPC_SET.
            cvt(unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) })?;
        }
        Obj::Msg => {
            // SAFETY: zeroed plain C struct.
            let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: ds is a valid buffer for IPC_STAT.
            cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
            ds.msg_perm.uid = uid;
            ds.msg_perm.gid = gid;
            if let Some(q) = qbytes {
                ds.msg_qbytes = q as _;
            }
            // SAFETY: ds is a valid struct for IPC_SET.
            cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) })?;
        }
    }
    Ok(())
}

/// A segment attached in this process, detached on drop.
pub struct ShmAttach {
    addr: *mut u8,
    len: usize,
}

impl ShmAttach {
    /// shmat anywhere, read-only or read-write.
    pub fn new(id: i32, len: u64, write: bool) -> io::Result<ShmAttach> {
        let flags = if write { 0 } else { libc::SHM_RDONLY };
        // SAFETY: the kernel picks a free address; nothing of ours is there.
        let a = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if a as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(ShmAttach {
            addr: a.cast(),
            len: len as usize,
        })
    }

    /// The segment's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the attachment maps len bytes at addr until drop.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }

    /// Copy `data` at `off` (bounds-checked).
    pub fn write(&mut self, off: usize, data: &[u8]) -> io::Result<()> {
        if off.checked_add(data.len()).is_none_or(|e| e > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "past the end of the segment",
            ));
        }
        // SAFETY: off lies inside the attachment (checked above).
        let dst = unsafe { self.addr.add(off) };
        // SAFETY: [dst, dst + len) lies inside the writable attachment.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}

impl Drop for ShmAttach {
    fn drop(&mut self) {
        // SAFETY: addr is our attachment; no reference to it outlives self.
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}
