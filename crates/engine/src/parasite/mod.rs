//! The parasite loader: maps the `parasite` blob into a stopped task with an
//! injected mmap, runs it, talks to it over a SOCK_SEQPACKET unix socket
//! (protocol in [`cryo_abi::parasite`]) and removes it so that the task's registers, FPU
//! state, signal mask, code and mappings are exactly as before.
//!
//! ```no_run
//! # use cryo_engine::{ptrace, parasite::Parasite};
//! let mut t = ptrace::seize(1234)?.interrupt()?;
//! let code_addr = 0x400000; // start of any executable mapping of the task
//! let mut p = Parasite::inject(&mut t, code_addr)?;
//! assert_eq!(p.ping(41)?, 42);
//! p.cure()?;
//! # Ok::<(), cryo_engine::parasite::ParasiteError>(())
//! ```

pub mod blob;

use crate::ptrace::{PtraceError, Saved, Stopped};
use crate::sys::mem::{as_bytes, from_bytes, Plain};
use cryo_abi::parasite::*;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum ParasiteError {
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    #[error("parasite in task {tid}: {what}: {source}")]
    Io {
        tid: i32,
        what: &'static str,
        source: io::Error,
    },
    #[error("parasite in task {tid}: {what}")]
    Proto { tid: i32, what: String },
    #[error("parasite in task {tid}: command {cmd} failed: errno {errno}")]
    Command { tid: i32, cmd: u32, errno: i32 },
}

pub type Result<T> = std::result::Result<T, ParasiteError>;

const PAGE: usize = 4096;

fn page_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// A running parasite in a task. Drop removes it (best effort); call
/// [`Parasite::cure`] to remove it and see errors.
pub struct Parasite<'a> {
    task: &'a mut Stopped,
    saved: Saved,
    code_addr: u64,
    base: u64,
    size: usize,
    sock: Option<OwnedFd>,
    cured: bool,
}

fn nix_err(tid: i32, what: &'static str, e: nix::errno::Errno) -> ParasiteError {
    ParasiteError::Io {
        tid,
        what,
        source: e.into(),
    }
}

fn io_err(tid: i32, what: &'static str) -> ParasiteError {
    ParasiteError::Io {
        tid,
        what,
        source: io::Error::last_os_error(),
    }
}

impl<'a> Parasite<'a> {
    /// Map, copy and start the parasite blob in `task`. `code_addr` is any
    /// address in an executable mapping of the task (3 bytes are borrowed
    /// there for the injected syscalls and put back).
    #[allow(unsafe_code)] // injects syscalls / writes the blob into the task
    pub fn inject(task: &'a mut Stopped, code_addr: u64) -> Result<Parasite<'a>> {
        let tid = task.tid();
        let blob = &blob::PARASITE;
        let size = page_up(blob.mem_size) + ARGS_AREA_SIZE + STACK_SIZE;
        let saved = Saved::take(task)?;
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        // SAFETY: an anonymous mmap where the kernel picks the address
        // changes nothing the task uses; code_addr is executable (contract).
        let base = unsafe {
            inject_syscall(
                task,
                code_addr,
                libc::SYS_mmap as u64,
                [0, size as u64, prot, flags, u64::MAX, 0],
            )
        }?;
        if base < 0 {
            return Err(ParasiteError::Proto {
                tid,
                what: format!("mmap of {size} bytes failed: errno {}", -base),
            });
        }
        let base = base as u64;
        let mut p = Parasite {
            task,
            saved,
            code_addr,
            base,
            size,
            sock: None,
            cured: false,
        };
        p.start(blob)?;
        Ok(p)
    }

    #[allow(unsafe_code)] // injects syscalls / writes the blob into the task
    fn start(&mut self, blob: &blob::Blob) -> Result<()> {
        let tid = self.task.tid();
        let img = blob.relocated(self.base);
        // SAFETY: the range is the fresh mapping made for the blob in inject().
        unsafe { crate::sys::process_vm_writev(tid, self.base, &img) }.map_err(|source| ParasiteError::Io {
            tid,
            what: "copying the blob",
            source,
        })?;
        // Listening socket with an abstract name unique to this injection.
        use nix::sys::socket as sk;
        let name = format!("cryo-parasite-{}-{}-{:x}", std::process::id(), tid, self.base);
        let listen = || -> Result<std::os::fd::OwnedFd> {
            let lfd = sk::socket(
                sk::AddressFamily::Unix,
                sk::SockType::SeqPacket,
                sk::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|e| nix_err(tid, "socket", e))?;
            let addr = sk::UnixAddr::new_abstract(name.as_bytes()).map_err(|e| nix_err(tid, "bind", e))?;
            sk::bind(lfd.as_raw_fd(), &addr).map_err(|e| nix_err(tid, "bind", e))?;
            sk::listen(&lfd, sk::Backlog::new(1).expect("valid backlog")).map_err(|e| nix_err(tid, "listen", e))?;
            Ok(lfd)
        };
        // Abstract names are per network namespace: a task in another one
        // connects to a socket made in its namespace.
        let theirs = format!("/proc/{tid}/ns/net");
        let lfd = if std::fs::read_link(&theirs).ok() != std::fs::read_link("/proc/self/ns/net").ok() {
            let ns = std::fs::File::open(&theirs).map_err(|source| ParasiteError::Io {
                tid,
                what: "its network namespace",
                source,
            })?;
            crate::sys::rtnl::in_netns(&ns, listen).map_err(|source| ParasiteError::Io {
                tid,
                what: "entering its network namespace",
                source,
            })??
        } else {
            listen()?
        };
        let mut args = BootArgs {
            magic: BOOT_MAGIC,
            abi_version: ABI_VERSION,
            sun_path_len: (1 + name.len()) as u32,
            _pad: 0,
            sun_path: [0; 108],
            _pad2: 0,
        };
        args.sun_path[1..1 + name.len()].copy_from_slice(name.as_bytes());
        let args_addr = self.base + page_up(blob.mem_size) as u64;
        let bytes = as_bytes(std::slice::from_ref(&args));
        // SAFETY: the args area of the blob's fresh mapping, which nothing runs yet.
        unsafe { crate::sys::process_vm_writev(tid, args_addr, bytes) }.map_err(|source| ParasiteError::Io {
            tid,
            what: "writing boot args",
            source,
        })?;
        let mut r = self.saved.regs;
        r.rip = self.base + blob.entry as u64;
        r.rsp = self.base + self.size as u64 - 64;
        r.rdi = args_addr;
        r.orig_rax = u64::MAX;
        self.task.set_regs(&r)?;
        self.task.set_sigmask(crate::ptrace::ALL_BUT_SIGTRAP)?;
        // Resume it; the ptrace handle stays "stopped" in type but the task runs
        // until the blob traps. Nothing else touches it meanwhile.
        if crate::sys::ptrace::scalar(libc::PTRACE_CONT, tid, 0, 0) < 0 {
            return Err(io_err(tid, "PTRACE_CONT"));
        }
        self.wait_readable(lfd.as_raw_fd())?;
        let c = crate::sys::accept_cloexec(&lfd).map_err(|source| ParasiteError::Io {
            tid,
            what: "accept",
            source,
        })?;
        self.sock = Some(c);
        Ok(())
    }

    /// Poll `fd` for input while watching the task: if it stops or dies
    /// instead (crash in the blob), fail.
    fn wait_readable(&mut self, fd: RawFd) -> Result<()> {
        let tid = self.task.tid();
        loop {
            if crate::sys::restore::poll_in(fd, 100).unwrap_or(false) {
                return Ok(());
            }
            let (w, st) = crate::sys::ptrace::waitpid(tid, libc::WNOHANG | libc::__WALL).unwrap_or((-1, 0));
            if w == tid {
                if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                    self.cured = true;
                    return Err(PtraceError::TaskDied { tid }.into());
                }
                let sig = libc::WSTOPSIG(st);
                // The blob trapped or crashed: it is stopped now; put it back.
                self.sock = None;
                let _ = self.remove_stopped();
                return Err(ParasiteError::Proto {
                    tid,
                    what: format!("blob stopped with signal {sig} (rax at trap unknown)"),
                });
            }
        }
    }

    /// Send a command (with an optional fd) and read the reply.
    pub fn call(&mut self, cmd: Cmd, payload: &[u8], fds: &[RawFd]) -> Result<Vec<u8>> {
        self.send(cmd, payload, fds)?;
        self.reply(cmd.cmd)
    }

    /// Send a command (with fds) without waiting for its reply.
    fn send(&mut self, cmd: Cmd, payload: &[u8], fds: &[RawFd]) -> Result<()> {
        let tid = self.task.tid();
        let sk = self.sock.as_ref().expect("connected").as_raw_fd();
        let mut msg = Vec::with_capacity(size_of::<Cmd>() + payload.len());
        msg.extend_from_slice(as_bytes(std::slice::from_ref(&cmd)));
        msg.extend_from_slice(payload);
        use nix::sys::socket as nsk;
        let iov = [std::io::IoSlice::new(&msg)];
        let rights = [nsk::ControlMessage::ScmRights(fds)];
        let cmsgs: &[nsk::ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        nsk::sendmsg::<()>(sk, &iov, cmsgs, nsk::MsgFlags::MSG_NOSIGNAL, None)
            .map_err(|e| nix_err(tid, "sending a command", e))?;
        Ok(())
    }

    /// Read the reply to command `cmd` (sent with [`Parasite::send`]).
    fn reply(&mut self, cmd: u32) -> Result<Vec<u8>> {
        let tid = self.task.tid();
        let sk = self.sock.as_ref().expect("connected").as_raw_fd();
        self.wait_readable(sk)?;
        let mut buf = vec![0u8; MAX_MSG + 64];
        let n = nix::sys::socket::recv(sk, &mut buf, nix::sys::socket::MsgFlags::empty())
            .map_err(|e| nix_err(tid, "reading a reply", e))?;
        if n < size_of::<Reply>() {
            return Err(ParasiteError::Proto {
                tid,
                what: format!("short reply ({n} bytes) to command {}", cmd),
            });
        }
        let rep: Reply = from_bytes(&buf).expect("length checked");
        if rep.cmd != cmd || size_of::<Reply>() + rep.len as usize != n {
            return Err(ParasiteError::Proto {
                tid,
                what: format!("bad reply {rep:?} to command {cmd}"),
            });
        }
        if rep.status < 0 {
            return Err(ParasiteError::Command {
                tid,
                cmd,
                errno: -rep.status,
            });
        }
        buf.drain(..size_of::<Reply>());
        buf.truncate(rep.len as usize);
        Ok(buf)
    }

    fn simple(&mut self, c: u32, args: &[u64]) -> Result<Vec<u8>> {
        let mut cmd = Cmd {
            cmd: c,
            ..Default::default()
        };
        cmd.arg[..args.len()].copy_from_slice(args);
        self.call(cmd, &[], &[])
    }

    /// Round trip: returns `v + 1`.
    pub fn ping(&mut self, v: u64) -> Result<u64> {
        let r = self.simple(CMD_PING, &[v])?;
        Ok(u64::from_le_bytes(r[..8].try_into().map_err(|_| self.short())?))
    }

    fn short(&self) -> ParasiteError {
        ParasiteError::Proto {
            tid: self.task.tid(),
            what: "short payload".into(),
        }
    }

    fn read_array<T: Plain>(&self, r: &[u8], n: usize) -> Result<Vec<T>> {
        if r.len() < n * size_of::<T>() {
            return Err(self.short());
        }
        Ok((0..n)
            .map(|i| from_bytes(&r[i * size_of::<T>()..]).expect("length checked"))
            .collect())
    }

    /// The 64 sigactions (index = signal - 1).
    pub fn sigactions(&mut self) -> Result<Vec<KSigaction>> {
        let r = self.simple(CMD_SIGACTIONS, &[])?;
        self.read_array(&r, 64)
    }

    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub fn itimers(&mut self) -> Result<Vec<Itimerval>> {
        let r = self.simple(CMD_ITIMERS, &[])?;
        self.read_array(&r, 3)
    }

    /// timer_gettime/timer_getoverrun of each POSIX timer id.
    pub fn posix_timers(&mut self, ids: &[i32]) -> Result<Vec<PosixTimer>> {
        let mut cmd = Cmd {
            cmd: CMD_POSIX_TIMERS,
            ..Default::default()
        };
        cmd.arg[0] = ids.len() as u64;
        let payload: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let r = self.call(cmd, &payload, &[])?;
        self.read_array(&r, ids.len())
    }

    /// umask, prctl values, rlimits.
    pub fn misc(&mut self) -> Result<Misc> {
        let r = self.simple(CMD_MISC, &[])?;
        Ok(self.read_array::<Misc>(&r, 1)?[0])
    }

    /// pdeath signal and sigaltstack of the thread the parasite runs in.
    pub fn thread_misc(&mut self) -> Result<ThreadMisc> {
        let r = self.simple(CMD_THREAD_MISC, &[])?;
        Ok(self.read_array::<ThreadMisc>(&r, 1)?[0])
    }

    /// Hand an fd to the parasite; returns its number in the target.
    pub fn take_fd(&mut self, fd: RawFd) -> Result<i32> {
        let r = self.call(
            Cmd {
                cmd: CMD_TAKE_FD,
                ..Default::default()
            },
            &[],
            &[fd],
        )?;
        Ok(self.read_array::<i32>(&r, 1)?[0])
    }

    /// Close an fd received with [`Parasite::take_fd`].
    pub fn close_fd(&mut self, fd: i32) -> Result<()> {
        self.simple(CMD_CLOSE_FD, &[fd as u64]).map(|_| ())
    }

    /// vmsplice `[addr, addr+len)` into the target-side pipe fd `pipe_fd` (gift).
    pub fn vmsplice(&mut self, addr: u64, len: u64, pipe_fd: i32) -> Result<u64> {
        let r = self.simple(CMD_VMSPLICE, &[addr, len, pipe_fd as u64])?;
        Ok(self.read_array::<u64>(&r, 1)?[0])
    }

    /// vmsplice each range into its own pipe (the write ends in `pipes`, same
    /// order, at most [`MAX_FDS_PER_MSG`]); the parasite closes its copies.
    /// Returns the bytes spliced.
    pub fn vmsplice_batch(&mut self, ranges: &[Range], pipes: &[RawFd]) -> Result<u64> {
        self.vmsplice_batch_send(ranges, pipes)?;
        self.vmsplice_batch_wait()
    }

    /// [`Parasite::vmsplice_batch`] in two halves, so that the caller can
    /// work while the blob splices: send the batch now, and call
    /// [`Parasite::vmsplice_batch_wait`] before any other command. Our
    /// copies of the pipe ends may be closed as soon as this returns.
    pub fn vmsplice_batch_send(&mut self, ranges: &[Range], pipes: &[RawFd]) -> Result<()> {
        assert_eq!(ranges.len(), pipes.len());
        assert!(pipes.len() <= MAX_FDS_PER_MSG);
        let mut cmd = Cmd {
            cmd: CMD_VMSPLICE_BATCH,
            ..Default::default()
        };
        cmd.arg[0] = ranges.len() as u64;
        let payload = as_bytes(ranges);
        self.send(cmd, payload, pipes)
    }

    /// The bytes spliced by the batch sent last with [`Parasite::vmsplice_batch_send`].
    pub fn vmsplice_batch_wait(&mut self) -> Result<u64> {
        let r = self.reply(CMD_VMSPLICE_BATCH)?;
        Ok(self.read_array::<u64>(&r, 1)?[0])
    }

    /// Stop the parasite and remove it; the task is back to its exact state.
    pub fn cure(mut self) -> Result<()> {
        self.cure_inner()
    }

    fn cure_inner(&mut self) -> Result<()> {
        if self.cured {
            return Ok(());
        }
        let tid = self.task.tid();
        let fini = if self.sock.is_some() {
            self.simple(CMD_FINI, &[]).map(|_| ())
        } else {
            Ok(())
        };
        self.sock = None; // a blob still serving sees EOF and traps
        let trap = self.task.wait_trap();
        let removed = self.remove_stopped();
        fini?;
        let regs = trap?;
        removed?;
        if (regs.rax as i64) < 0 {
            return Err(ParasiteError::Proto {
                tid,
                what: format!("blob exited with error {}", regs.rax as i64),
            });
        }
        Ok(())
    }

    /// The task is stopped (after the blob's trap or crash): restore state and unmap.
    #[allow(unsafe_code)] // injects syscalls / writes the blob into the task
    fn remove_stopped(&mut self) -> Result<()> {
        self.cured = true;
        self.saved.restore(self.task)?;
        // SAFETY: unmaps the blob's own mapping, made in inject(); nothing
        // of the task is left in it (registers and mask are back).
        let r = unsafe {
            inject_syscall(
                self.task,
                self.code_addr,
                libc::SYS_munmap as u64,
                [self.base, self.size as u64, 0, 0, 0, 0],
            )
        }?;
        if r < 0 {
            return Err(ParasiteError::Proto {
                tid: self.task.tid(),
                what: format!("munmap of the blob failed: errno {}", -r),
            });
        }
        Ok(())
    }

    /// Address where the blob is mapped (for tests and diagnostics).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// A 2 KiB scratch buffer inside the blob's mapping (shared by all threads
    /// of the process) for syscalls injected into other threads.
    pub fn scratch_addr(&self) -> u64 {
        self.base + page_up(blob::PARASITE.mem_size) as u64 + SCRATCH_OFF as u64
    }

    /// Per-thread values of another (stopped) thread of the same process,
    /// through injected syscalls writing into the scratch buffer.
    #[allow(unsafe_code)] // injects syscalls / writes the blob into the task
    pub fn thread_misc_of(&self, t: &mut Stopped) -> Result<ThreadMisc> {
        let tid = t.tid();
        let s = self.scratch_addr();
        let mut m = ThreadMisc {
            tid,
            ..Default::default()
        };
        let code = self.code_addr;
        // SAFETY (the four injections): read-only queries of the thread
        // whose results land in the blob's scratch buffer, which nothing of
        // the task uses; code is the address inject() was given.
        // SAFETY: as above.
        unsafe {
            inject_syscall(
                t,
                code,
                libc::SYS_prctl as u64,
                [libc::PR_GET_PDEATHSIG as u64, s, 0, 0, 0, 0],
            )
        }?;
        // SAFETY: as above.
        unsafe { inject_syscall(t, code, libc::SYS_sigaltstack as u64, [0, s + 8, 0, 0, 0, 0]) }?;
        // SAFETY: as above.
        unsafe {
            inject_syscall(
                t,
                code,
                libc::SYS_prctl as u64,
                [40 /* PR_GET_TID_ADDRESS */, s + 32, 0, 0, 0, 0],
            )
        }?;
        // SAFETY: as above.
        let sb = unsafe {
            inject_syscall(
                t,
                code,
                libc::SYS_prctl as u64,
                [27 /* PR_GET_SECUREBITS */, 0, 0, 0, 0, 0],
            )
        }?;
        let mut buf = [0u8; 40];
        crate::sys::process_vm_readv(self.task.tid(), &mut buf, &[(s, 40)]).map_err(|source| ParasiteError::Io {
            tid,
            what: "reading scratch",
            source,
        })?;
        let w = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
        m.pdeath_sig = w(0) as i32;
        m.ss_sp = w(8);
        m.ss_flags = w(16) as i32;
        m.ss_size = w(24);
        m.clear_tid = w(32);
        m.secbits = sb as i32;
        Ok(m)
    }
}

impl Drop for Parasite<'_> {
    fn drop(&mut self) {
        let _ = self.cure_inner();
    }
}

/// Address of the first executable mapping of `pid` (for `code_addr`).
pub fn find_code_addr(pid: i32) -> io::Result<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    for l in maps.lines() {
        let mut it = l.split_whitespace();
        let (range, perms) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        if perms.as_bytes().get(2) == Some(&b'x') && !l.ends_with("[vsyscall]") {
            if let Some((a, _)) = range.split_once('-') {
                return u64::from_str_radix(a, 16).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no executable mapping in /proc/{pid}/maps"),
    ))
}

/// Write a word into the stopped task `t` (even to read-only text).
///
/// # Safety
/// This writes the task's memory: see [`crate::sys::ptrace::pokedata`].
#[allow(unsafe_code)]
unsafe fn poke(t: &Stopped, addr: u64, v: u64) -> std::result::Result<(), PtraceError> {
    // SAFETY: the caller upholds pokedata's contract.
    if unsafe { crate::sys::ptrace::pokedata(t.tid(), addr, v) } < 0 {
        return Err(crate::ptrace::err(t.tid(), "PTRACE_POKEDATA"));
    }
    Ok(())
}

/// Run one syscall inside the stopped task `t`: writes `syscall; int3` at `code_addr`
/// (any mapped address; the original bytes are put back), blocks all
/// signals, runs, and restores registers, FPU state, signal mask and code
/// exactly. Returns the raw result (negative errno on failure).
///
/// # Safety
/// The syscall runs inside the task, with its memory and fds: the caller
/// must make sure it does there what the task (or the parasite in it)
/// expects; `code_addr` must be mapped in the task and its 3 bytes not
/// be run by another thread meanwhile. This process is not touched.
#[allow(unsafe_code)]
pub(crate) unsafe fn inject_syscall(
    t: &mut Stopped,
    code_addr: u64,
    nr: u64,
    args: [u64; 6],
) -> std::result::Result<i64, PtraceError> {
    let saved = Saved::take(t)?;
    let old = t.peek(code_addr)?;
    let code = (old & !0xff_ffff) | 0xcc_05_0f; // 0f 05 = syscall, cc = int3
    let res = (|| {
        // SAFETY: code_addr is the caller's choice (see the contract);
        // the original word goes back below whatever happens.
        unsafe { poke(t, code_addr, code) }?;
        let mut r = saved.regs;
        r.rip = code_addr;
        r.rax = nr;
        r.orig_rax = u64::MAX; // not in a syscall: no restart logic on resume
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        t.set_regs(&r)?;
        t.set_sigmask(crate::ptrace::ALL_BUT_SIGTRAP)?;
        let after = t.cont_until_trap()?;
        Ok(after.rax as i64)
    })();
    // SAFETY: puts back the word read above.
    let restored = unsafe { poke(t, code_addr, old) }.and_then(|_| saved.restore(t));
    let rax = res?;
    restored?;
    Ok(rax)
}

/// Create a userfaultfd inside the stopped task `t` (it binds to the mm of
/// the process that creates it), `O_CLOEXEC | O_NONBLOCK`, moved to the
/// lowest free fd from `min_fd` on. `user_only`: user-mode faults only
/// (allowed to any uid; a fault from the kernel, e.g. a syscall writing
/// into the task's memory, gets SIGBUS instead of waiting); without it the
/// task needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd.
/// Returns its number in the task; with `take`, a copy of it for the engine
/// instead, the task's own fd closed again (the task keeps nothing). Nothing
/// else of the task changes.
#[allow(unsafe_code)]
pub fn make_userfaultfd(
    t: &mut Stopped,
    code_addr: u64,
    min_fd: i32,
    user_only: bool,
    take: bool,
) -> Result<(i32, Option<OwnedFd>)> {
    let tid = t.tid();
    let fail = |what: &'static str, r: i64| ParasiteError::Io {
        tid,
        what,
        source: io::Error::from_raw_os_error(-r as i32),
    };
    let mut flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    if user_only {
        flags |= crate::sys::uffd::UFFD_USER_MODE_ONLY;
    }
    // (The injections: each makes, moves or closes an fd of the task that
    // only this function knows of; code_addr is the caller's mapped
    // executable address, run by no other thread: the task is frozen.)
    // SAFETY: as said above.
    let fd = unsafe { inject_syscall(t, code_addr, libc::SYS_userfaultfd as u64, [flags, 0, 0, 0, 0, 0]) }?;
    if fd < 0 {
        return Err(fail("userfaultfd in the task", fd));
    }
    // SAFETY: as above.
    let hi = unsafe {
        inject_syscall(
            t,
            code_addr,
            libc::SYS_fcntl as u64,
            [fd as u64, libc::F_DUPFD_CLOEXEC as u64, min_fd as u64, 0, 0, 0],
        )
    }?;
    // SAFETY: as above.
    let _ = unsafe { inject_syscall(t, code_addr, libc::SYS_close as u64, [fd as u64, 0, 0, 0, 0, 0]) }?;
    if hi < 0 {
        return Err(fail("moving the userfaultfd up in the task", hi));
    }
    if !take {
        return Ok((hi as i32, None));
    }
    let got = crate::sys::pidfd_open(tid).and_then(|p| crate::sys::pidfd_getfd(p.as_raw_fd(), hi as i32));
    // SAFETY: as above.
    let _ = unsafe { inject_syscall(t, code_addr, libc::SYS_close as u64, [hi as u64, 0, 0, 0, 0, 0]) }?;
    let u = got.map_err(|source| ParasiteError::Io {
        tid,
        what: "taking the userfaultfd",
        source,
    })?;
    Ok((hi as i32, Some(u)))
}
