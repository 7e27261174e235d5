//! The syscalls of the fd kinds (files/*): everything unsafe they need,
//! behind safe functions (pointers are built here from Rust values), nix
//! where it wraps the call. The ioctl helpers that take a type the kernel
//! reads or writes through are `unsafe fn`s (the request must match it).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, owned};

fn cstr(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(io::Error::other)
}

fn from_nix(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// open(2) with raw flags (no mode: nothing is created).
pub fn open(path: &str, flags: i32) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::from_bits_retain(flags),
        nix::sys::stat::Mode::empty(),
    )
    .map_err(from_nix)
}

/// openat(2) of `name` in the directory open at fd number `dir` (a restore
/// task reaching the images from inside another mount namespace).
pub fn openat_raw(dir: std::os::fd::RawFd, name: &str, flags: i32) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call; a bad fd
    // number only makes the call fail.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd, owned from here on.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// mkdir(2) with exactly `mode` requested (the umask applies).
pub fn mkdir(path: &str, mode: u32) -> io::Result<()> {
    nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_retain(mode)).map_err(from_nix)
}

/// mknod(2): `mode` holds the file type and permission bits.
pub fn mknod(path: &str, mode: u32, dev: libc::dev_t) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c is a valid C string.
    cvt(unsafe { libc::mknod(c.as_ptr(), mode, dev) } as libc::c_long).map(|_| ())
}

/// mkfifo(3).
pub fn mkfifo(path: &str, mode: u32) -> io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_retain(mode)).map_err(from_nix)
}

/// chmod(2).
pub fn chmod(path: &str, mode: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c is a valid C string.
    cvt(unsafe { libc::chmod(c.as_ptr(), mode) } as libc::c_long).map(|_| ())
}

/// lchown(2).
pub fn lchown(path: &str, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c is a valid C string.
    cvt(unsafe { libc::lchown(c.as_ptr(), uid, gid) } as libc::c_long).map(|_| ())
}

/// utimensat(2) of `path` itself (AT_SYMLINK_NOFOLLOW): atime, mtime.
pub fn lutimens(path: &str, times: &[libc::timespec; 2]) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c is a valid C string and times two valid timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    cvt(r as libc::c_long).map(|_| ())
}

/// eventfd2(2) with a zero counter.
pub fn eventfd(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    owned(unsafe { libc::syscall(libc::SYS_eventfd2, 0, flags) })
}

/// write(2) of one u64 (an eventfd's counter): true if all 8 bytes went.
pub fn write_u64(fd: &OwnedFd, v: u64) -> io::Result<()> {
    let n = nix::unistd::write(fd, &v.to_ne_bytes()).map_err(from_nix)?;
    if n != 8 {
        return Err(io::Error::other(format!("short write ({n} bytes)")));
    }
    Ok(())
}

/// signalfd4(2) of a new signalfd for `mask`.
pub fn signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: &mask is 8 readable bytes (the kernel's sigset size).
    owned(unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags) })
}

/// timerfd_create(2).
pub fn timerfd_create(clock: u32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    owned(unsafe { libc::syscall(libc::SYS_timerfd_create, clock as libc::c_long, flags) })
}

/// timerfd_settime(2), without the old value.
pub fn timerfd_settime(fd: &OwnedFd, flags: i32, its: &libc::itimerspec) -> io::Result<()> {
    // SAFETY: its is a valid itimerspec; a null old value is allowed.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, its, std::ptr::null_mut()) };
    cvt(r as libc::c_long).map(|_| ())
}

/// _IOW('T', 0, u64): set the expiration count (needs CONFIG_CHECKPOINT_RESTORE).
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// TFD_IOC_SET_TICKS: the unread expirations of a timerfd.
pub fn timerfd_set_ticks(fd: &OwnedFd, ticks: u64) -> io::Result<()> {
    // SAFETY: the ioctl reads one u64 from &ticks.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks) };
    cvt(r as libc::c_long).map(|_| ())
}

/// epoll_create1(EPOLL_CLOEXEC).
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: scalar argument.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)
}

/// epoll_ctl(EPOLL_CTL_ADD) of fd `fd` with (`events`, `data`) to `epfd`
/// (fd numbers of this task, which may be at any number).
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: ev is a valid epoll_event; the kernel checks the fds.
    let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    cvt(r as libc::c_long).map(|_| ())
}

/// kcmp(2) KCMP_EPOLL_TFD.
const KCMP_EPOLL_TFD: libc::c_long = 7;

#[repr(C)]
struct KcmpEpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// Is fd `fd` of `pid` the target file of item (`tfd`, `toff`) of epoll
/// fd `efd` of `pid`?
pub fn kcmp_epoll_tfd(pid: i32, fd: u32, efd: i32, tfd: u32, toff: u32) -> bool {
    let slot = KcmpEpollSlot {
        efd: efd as u32,
        tfd,
        toff,
    };
    // SAFETY: the kernel reads the slot (3 u32) through the pointer; no writes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            fd as libc::c_ulong,
            &slot as *const KcmpEpollSlot,
        )
    };
    r == 0
}

/// inotify_init1(2).
pub fn inotify_init(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    owned(unsafe { libc::inotify_init1(flags) } as libc::c_long)
}

/// inotify_add_watch(2): the watch descriptor.
pub fn inotify_add_watch(fd: &OwnedFd, path: &str, mask: u32) -> io::Result<u32> {
    let c = cstr(path)?;
    // SAFETY: c is a valid C string.
    let r = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    cvt(r as libc::c_long).map(|w| w as u32)
}

/// inotify_rm_watch(2), errors ignored (the caller goes on either way).
pub fn inotify_rm_watch(fd: &OwnedFd, wd: u32) {
    // SAFETY: scalar arguments.
    unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd as i32) };
}

/// Read and drop everything readable now from a non-blocking fd.
pub fn drain(fd: &OwnedFd) {
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// fanotify_init(2).
pub fn fanotify_init(faflags: u32, evflags: u32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    owned(unsafe { libc::syscall(libc::SYS_fanotify_init, faflags, evflags) })
}

/// fanotify_mark(2) of `path` (relative to the cwd).
pub fn fanotify_mark(fd: &OwnedFd, flags: u32, mask: u64, path: &str) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c is a valid C string; scalar arguments otherwise.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fanotify_mark,
            fd.as_raw_fd(),
            flags,
            mask,
            libc::AT_FDCWD,
            c.as_ptr(),
        )
    };
    cvt(r).map(|_| ())
}

/// open_by_handle_at(2), O_PATH: `handle` is a whole struct file_handle
/// (handle_bytes, handle_type, f_handle[handle_bytes]).
pub fn open_by_handle_at(mount_fd: &OwnedFd, handle: &[u8]) -> io::Result<OwnedFd> {
    let n = handle
        .get(..4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
    if n.is_none_or(|n| handle.len() < 8 + n as usize) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: handle holds a complete struct file_handle (checked above),
    // which the kernel only reads.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            handle.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    })
}

/// memfd_create(2).
pub fn memfd_create(name: &str, flags: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: c is a valid C string.
    owned(unsafe { libc::memfd_create(c.as_ptr(), flags) } as libc::c_long)
}

/// A shared mapping of a whole (hugetlb) file, to write its pages.
pub struct SharedWindow {
    at: *mut libc::c_void,
    len: usize,
}

impl SharedWindow {
    pub fn new(fd: &OwnedFd, len: u64) -> io::Result<SharedWindow> {
        // SAFETY: a fresh shared mapping of our own fd, unmapped on drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedWindow {
            at: p,
            len: len as usize,
        })
    }

    /// Copy `data` to offset `off` of the file.
    pub fn write(&self, off: u64, data: &[u8]) -> io::Result<()> {
        let off = off as usize;
        if off.checked_add(data.len()).is_none_or(|e| e > self.len) {
            return Err(io::Error::other(format!(
                "pages at {off:#x}+{:#x} past the end ({:#x})",
                data.len(),
                self.len
            )));
        }
        let dst = (self.at as usize + off) as *mut u8;
        // SAFETY: the range lies inside our own mapping (checked above).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}

impl Drop for SharedWindow {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in new().
        unsafe { libc::munmap(self.at, self.len) };
    }
}

/// A shmem file as MAP_SHARED|MAP_ANONYMOUS (with `huge`: MAP_HUGETLB and
/// its page size) creates it, reached through /proc/self/map_files.
pub fn shared_anon(size: u64, huge: i32) -> io::Result<OwnedFd> {
    let len = size.max(4096);
    // SAFETY: a fresh shared anonymous mapping, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | huge,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let a = p as u64;
    // Through cryo's own /proc: the calling thread may be in a restored
    // mount namespace whose proc is not mounted yet.
    let r = match proc_root() {
        Some(proc) => openat_rw(proc, &format!("self/map_files/{:x}-{:x}", a, a + len)),
        None => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/map_files/{:x}-{:x}", a, a + len))
            .map(OwnedFd::from),
    };
    // SAFETY: unmapping the mapping made above (nobody else knows it).
    unsafe { libc::munmap(p, len as usize) };
    r
}

/// cryo's own /proc (an O_PATH fd opened on first use: call it before a
/// thread enters another mount namespace).
pub fn proc_root() -> Option<&'static OwnedFd> {
    static P: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    P.get_or_init(|| open("/proc", libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).ok())
        .as_ref()
}

/// openat(dir, path, O_RDWR|O_CLOEXEC).
fn openat_rw(dir: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path and a borrowed, open directory fd.
    owned(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) } as libc::c_long)
}

/// pidfd_open(2) with the pidfd's O_NONBLOCK from `flags`.
pub fn pidfd_open(pid: i32, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: scalar arguments.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags & libc::O_NONBLOCK as u32) })
}

/// A child that dies at once (a plain fork with exit signal 0, so no
/// SIGCHLD reaches anybody): a stand-in dead process. Reap it with
/// [`reap_stand_in`].
pub fn fork_stand_in() -> io::Result<i32> {
    // SAFETY: a plain fork (no shared memory, exit signal 0); the child
    // only calls _exit.
    let child = cvt(unsafe { libc::syscall(libc::SYS_clone, 0, 0, 0, 0, 0) })?;
    if child == 0 {
        // SAFETY: the child kills itself at once (SIGKILL: the exit status
        // its pidfds report, as for CRIU's stand-in); _exit if that fails.
        let me = unsafe { libc::syscall(libc::SYS_getpid) };
        // SAFETY: as above (scalar arguments).
        unsafe { libc::syscall(libc::SYS_kill, me, libc::SIGKILL) };
        // SAFETY: as above.
        unsafe { libc::_exit(0) }
    }
    Ok(child as i32)
}

/// Reap a child of [`fork_stand_in`] (exit signal 0: __WALL).
pub fn reap_stand_in(pid: i32) {
    let mut st = 0;
    loop {
        // SAFETY: reaping our own child; st is a valid int.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

/// The kernel's `struct termios` (TCGETS): 19 control characters, no speeds.
#[repr(C)]
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct KTermios {
    pub c_iflag: u32,
    pub c_oflag: u32,
    pub c_cflag: u32,
    pub c_lflag: u32,
    pub c_line: u8,
    pub c_cc: [u8; 19],
}

/// struct winsize (TIOCGWINSZ).
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct Winsize {
    pub ws_row: u16,
    pub ws_col: u16,
    pub ws_xpixel: u16,
    pub ws_ypixel: u16,
}

mod sealed {
    pub trait Sealed {}
}

/// A type terminal ioctls read or write, with the requests that take it
/// (implemented here only, so [`tty_get`] and [`tty_set`] can be safe).
///
/// # Safety
/// Every request in `GET` writes exactly a `Self` (any bit pattern of which
/// is valid), every one in `SET` reads at most a `Self`.
pub unsafe trait TtyArg: Default + sealed::Sealed {
    const GET: &'static [libc::c_ulong];
    const SET: &'static [libc::c_ulong];
}

macro_rules! tty_arg {
    ($t:ty, [$($g:ident),*], [$($s:ident),*]) => {
        impl sealed::Sealed for $t {}
        // SAFETY: the kernel's argument of each request listed is this type.
        unsafe impl TtyArg for $t {
            const GET: &'static [libc::c_ulong] = &[$(libc::$g),*];
            const SET: &'static [libc::c_ulong] = &[$(libc::$s),*];
        }
    };
}

tty_arg!(
    libc::c_int,
    [TIOCGPTLCK, TIOCGEXCL, TIOCGPKT, TIOCGSID, TIOCGPGRP],
    [TIOCSPTLCK, TIOCPKT]
);
tty_arg!(libc::c_uint, [TIOCGPTN, TIOCGDEV], []);
tty_arg!(u8, [], [TIOCSTI]);
tty_arg!(KTermios, [TCGETS, TIOCGLCKTRMIOS], [TCSETS, TIOCSLCKTRMIOS]);
tty_arg!(Winsize, [TIOCGWINSZ], [TIOCSWINSZ]);

/// A terminal ioctl that fills a `T` (`req` must be one of `T::GET`).
pub fn tty_get<T: TtyArg>(fd: &OwnedFd, req: libc::c_ulong) -> io::Result<T> {
    if !T::GET.contains(&req) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut v = T::default();
    // SAFETY: `req` writes a `T` (TtyArg), and the pointer is valid for
    // writes of size_of::<T>() for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut T) } as libc::c_long)?;
    Ok(v)
}

/// A terminal ioctl that reads a `T` from us (`req` must be one of `T::SET`).
pub fn tty_set<T: TtyArg>(fd: &OwnedFd, req: libc::c_ulong, v: &T) -> io::Result<()> {
    if !T::SET.contains(&req) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `req` reads at most a `T` (TtyArg), and the pointer is valid
    // for reads for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, v as *const T) } as libc::c_long).map(|_| ())
}

/// Terminal ioctls whose argument is a plain integer.
const TTY_SCALAR: &[libc::c_ulong] = &[libc::TIOCSCTTY, libc::TIOCEXCL, libc::TIOCNXCL, libc::TIOCNOTTY];

/// A terminal ioctl whose argument is a plain integer (TIOCSCTTY,
/// TIOCEXCL, ...): no memory is read or written through it. Other
/// requests fail with EINVAL.
pub fn tty_ioctl_arg(fd: RawFd, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    if !TTY_SCALAR.contains(&req) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `req` takes a scalar argument (checked above).
    cvt(unsafe { libc::ioctl(fd, req, arg) } as libc::c_long).map(|_| ())
}

/// Open `path` (a /dev/tty) in a forked helper that is, for that moment,
/// the leader of a session whose controlling terminal is `slave`: the fd
/// comes back over a socket. `Ok(None)`: the helper could not (setsid,
/// TIOCSCTTY or open failed). Errors name the failing call ("fork: ...").
pub fn open_as_ctty_leader(slave: &OwnedFd, path: &str, flags: i32) -> Result<Option<OwnedFd>, String> {
    let (a, b) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let path = cstr(path).map_err(|e| e.to_string())?;
    // SAFETY: the child only makes async-signal-safe calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // Plain syscalls in the forked child; sendmsg's buffers live on this stack.
        // SAFETY: no arguments.
        let mut ok = unsafe { libc::setsid() } >= 0;
        // SAFETY: TIOCSCTTY takes an integer argument.
        ok = ok && unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } == 0;
        let fd = if ok {
            // SAFETY: path is a NUL-terminated string that outlives the call.
            unsafe { libc::open(path.as_ptr(), flags) }
        } else {
            -1
        };
        ok &= fd >= 0;
        let mut byte = [u8::from(ok)];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let mut cbuf = [0u64; 4];
        // SAFETY: all-zero is a valid msghdr (no buffers).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if ok {
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            // SAFETY: a pure size computation.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
            // SAFETY: msg's control buffer (cbuf, 32 bytes) holds one cmsghdr.
            let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            // SAFETY: a pure size computation.
            let len = unsafe { libc::CMSG_LEN(4) } as usize;
            let hdr = libc::cmsghdr {
                cmsg_len: len,
                cmsg_level: libc::SOL_SOCKET,
                cmsg_type: libc::SCM_RIGHTS,
            };
            // SAFETY: c points at the start of cbuf (aligned for cmsghdr, room for it).
            unsafe { c.write(hdr) };
            // SAFETY: CMSG_DATA of c lies inside cbuf, with room for one int.
            let data = unsafe { libc::CMSG_DATA(c) } as *mut i32;
            // SAFETY: as above.
            unsafe { data.write_unaligned(fd) };
        }
        // SAFETY: msg and the buffers it names live on this stack.
        unsafe { libc::sendmsg(b.as_raw_fd(), &msg, 0) };
        // SAFETY: leave the forked child without unwinding.
        unsafe { libc::_exit(0) };
    }
    drop(b);
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(libc::c_int);
    let got = nix::sys::socket::recvmsg::<()>(
        a.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map(|m| {
        m.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(v) => v.first().copied(),
            _ => None,
        })
    });
    let mut st = 0;
    // SAFETY: pid is our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    match got {
        // SAFETY: a fresh fd received with SCM_RIGHTS, owned by nobody else.
        Ok(Some(fd)) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) })),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("recvmsg: {e}")),
    }
}

/// Open `path` read-only and non-blocking, and close it at once (a probe:
/// EWOULDBLOCK if a write lease conflicts).
pub fn open_read_nonblock(path: &str) -> io::Result<()> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// F_GETLEASE: the lease held through `fd` (F_RDLCK, F_WRLCK or F_UNLCK).
pub fn get_lease(fd: &impl AsRawFd) -> io::Result<i32> {
    // SAFETY: scalar arguments.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) } as libc::c_long).map(|r| r as i32)
}

/// One lease break [`break_leases`] starts again: an fd of the engine on
/// the leased open file, whether the conflicting open is for writing (a
/// break to none) or for reading (a downgrade), and whether the file keeps
/// the helper's ownership removed afterwards (false: F_SETOWN 0).
#[derive(Clone, Copy, Debug)]
pub struct LeaseBreak {
    pub fd: RawFd,
    pub for_writing: bool,
    pub keep_owner: bool,
}

/// How [`break_leases`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseBreakEnd {
    Done,
    /// Step `step` for `breaks[index]` failed with `errno` (0: the open
    /// succeeded, so there was no lease to break): 0 F_SETOWN to the helper,
    /// 1/2 the conflicting open, 3 removing the helper as owner.
    Failed {
        index: usize,
        step: i32,
        errno: i32,
    },
    /// The helper ended otherwise (its wait status).
    Status(i32),
}

/// Start the lease breaks `breaks` again from a short-lived child that
/// blocks every signal and owns every file meanwhile (F_SETOWN), so the
/// kernel's break signals go to it and die with it: first every file is
/// owned (one open breaks every lease of the inode), then each conflicting
/// open is made non-blocking (it must fail with EWOULDBLOCK), then the
/// owner is removed where `keep_owner` is false.
pub fn break_leases(breaks: &[LeaseBreak]) -> io::Result<LeaseBreakEnd> {
    let paths: Vec<CString> = breaks
        .iter()
        .map(|b| CString::new(format!("/proc/self/fd/{}", b.fd)).expect("no NUL"))
        .collect();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: the child only makes raw syscalls (everything it needs was
    // allocated before the fork) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let wfd = w.as_raw_fd();
        let fail = |i: usize, step: i32, e: i32| -> ! {
            let msg = [i as i32, step, e];
            // SAFETY: msg is 12 readable bytes.
            unsafe { libc::write(wfd, msg.as_ptr().cast(), 12) };
            // SAFETY: leave without unwinding.
            unsafe { libc::_exit(1) }
        };
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: all-zero is a valid sigset_t.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is a local sigset_t.
        unsafe { libc::sigfillset(&mut set) };
        // SAFETY: set is a filled sigset_t; no old mask wanted.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        // SAFETY: no arguments.
        let me = unsafe { libc::getpid() };
        for (i, b) in breaks.iter().enumerate() {
            // SAFETY: scalar arguments.
            if unsafe { libc::fcntl(b.fd, libc::F_SETOWN, me) } != 0 {
                fail(i, 0, errno());
            }
        }
        for (i, b) in breaks.iter().enumerate() {
            let mode = if b.for_writing { libc::O_WRONLY } else { libc::O_RDONLY };
            // SAFETY: paths[i] is a valid C string.
            let r = unsafe {
                libc::open(
                    paths[i].as_ptr(),
                    mode | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
                )
            };
            if r >= 0 {
                fail(i, 1, 0);
            }
            if errno() != libc::EWOULDBLOCK {
                fail(i, 2, errno());
            }
        }
        for (i, b) in breaks.iter().enumerate() {
            // SAFETY: scalar arguments.
            if !b.keep_owner && unsafe { libc::fcntl(b.fd, libc::F_SETOWN, 0) } != 0 {
                fail(i, 3, errno());
            }
        }
        // SAFETY: leave without unwinding.
        unsafe { libc::_exit(0) }
    }
    drop(w);
    let mut msg = [0u8; 12];
    let n = nix::unistd::read(&r, &mut msg).unwrap_or(0);
    drop(r);
    let status = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    if n == 12 {
        let word = |k: usize| i32::from_ne_bytes(msg[4 * k..4 * k + 4].try_into().expect("4 bytes"));
        return Ok(LeaseBreakEnd::Failed {
            index: word(0) as usize,
            step: word(1),
            errno: word(2),
        });
    }
    match status {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(LeaseBreakEnd::Done),
        Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => Ok(LeaseBreakEnd::Status(c << 8)),
        Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => Ok(LeaseBreakEnd::Status(sig as i32)),
        Ok(_) => Ok(LeaseBreakEnd::Status(-1)),
        Err(e) => Err(io::Error::from(e)),
    }
}
