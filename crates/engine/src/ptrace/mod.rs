//! ptrace as typestate: a [`Running`] tracee (seized, not stopped) and a
//! [`Stopped`] one. Registers and memory are only reachable on a [`Stopped`]
//! task (writing its memory and running syscalls in it are the parasite
//! loader's, `crate::parasite`, which takes a `&mut Stopped`). ESRCH and
//! unexpected exits become [`PtraceError::TaskDied`]. No `unsafe` here.
//!
//! Typical use:
//! ```no_run
//! # use cryo_engine::ptrace::*;
//! let mut t = seize(1234)?.interrupt()?;      // Stopped
//! let regs = t.regs()?;
//! let word = t.peek(regs.rip)?;
//! t.detach()?;
//! # Ok::<(), PtraceError>(())
//! ```
use crate::sys::mem::{as_bytes, from_bytes};
use crate::sys::ptrace as sys;
use std::io;

pub use libc::user_regs_struct as Regs;

/// The signal mask injected code runs with: everything blocked but SIGTRAP.
/// Its int3 raises a forced SIGTRAP, and a forced signal that is blocked
/// makes the kernel reset the task's SIGTRAP handler to SIG_DFL (and
/// unblock it): the dumped handler would be lost.
pub const ALL_BUT_SIGTRAP: u64 = !(1u64 << (libc::SIGTRAP - 1));

/// Errors of this module, each naming the thread.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    #[error("task {tid} died")]
    TaskDied { tid: i32 },
    #[error("task {tid}: {op}: {source}")]
    Os {
        tid: i32,
        op: &'static str,
        source: io::Error,
    },
    #[error("task {tid}: unexpected stop: {what}")]
    Unexpected { tid: i32, what: String },
}

pub type Result<T> = std::result::Result<T, PtraceError>;

pub const PTRACE_EVENT_STOP: i32 = 128;
use sys::{PTRACE_INTERRUPT, PTRACE_SEIZE};
/// Suspend the tracee's seccomp filters while we inject code.
pub const PTRACE_O_SUSPEND_SECCOMP: u64 = 1 << 21;
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
const NT_PRSTATUS: usize = 1;
pub const NT_X86_XSTATE: usize = 0x202;

/// The error of ptrace request `op` on `tid` (errno; ESRCH: the task died).
pub(crate) fn err(tid: i32, op: &'static str) -> PtraceError {
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        PtraceError::TaskDied { tid }
    } else {
        PtraceError::Os { tid, op, source: e }
    }
}

/// A request without pointers (see [`sys::scalar`]).
fn raw(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> libc::c_long {
    sys::scalar(req, tid, addr, data)
}

/// How a task reported to `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// PTRACE_EVENT_STOP: after PTRACE_INTERRUPT (sig SIGTRAP) or a group stop (sig SIGSTOP/TSTP/...).
    Event { sig: i32 },
    /// Signal-delivery-stop for `sig` (the signal is discarded unless passed to `cont`).
    Signal { sig: i32 },
    /// Another ptrace event (fork/clone/exec/exit...).
    OtherEvent { sig: i32, event: i32 },
}

/// waitpid(tid, __WALL) until it stops; exits become `TaskDied`.
pub fn wait_stop(tid: i32) -> Result<StopKind> {
    loop {
        let (_, st) = match sys::waitpid(tid, libc::__WALL) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Err(PtraceError::TaskDied { tid }),
            Err(e) => {
                return Err(PtraceError::Os {
                    tid,
                    op: "waitpid",
                    source: e,
                })
            }
        };
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            return Err(PtraceError::TaskDied { tid });
        }
        if libc::WIFSTOPPED(st) {
            let sig = libc::WSTOPSIG(st);
            let event = st >> 16;
            return Ok(match event {
                0 => StopKind::Signal { sig },
                PTRACE_EVENT_STOP => StopKind::Event { sig },
                e => StopKind::OtherEvent { sig, event: e },
            });
        }
    }
}

/// Reap a traced task that was killed (bounded: gives up after ~2 s or as
/// soon as the task is no longer ours to wait for).
pub fn wait_exit(tid: i32) {
    for _ in 0..200 {
        match sys::waitpid(tid, libc::__WALL | libc::WNOHANG) {
            Err(_) => return,
            Ok((r, st)) if r == tid && (libc::WIFEXITED(st) || libc::WIFSIGNALED(st)) => return,
            Ok(_) => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A seized task that is (or may be) running.
#[derive(Debug)]
pub struct Running {
    tid: i32,
}

/// A seized task in a ptrace-stop: registers and memory are accessible.
#[derive(Debug)]
pub struct Stopped {
    tid: i32,
    /// How it stopped when we interrupted it (group stop => it was stopped before we came).
    pub first_stop: StopKind,
}

/// PTRACE_SEIZE `tid` with `PTRACE_O_SUSPEND_SECCOMP`.
pub fn seize(tid: i32) -> Result<Running> {
    if raw(PTRACE_SEIZE, tid, 0, PTRACE_O_SUSPEND_SECCOMP as usize) < 0 {
        return Err(err(tid, "PTRACE_SEIZE"));
    }
    Ok(Running { tid })
}

impl Running {
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// PTRACE_INTERRUPT and wait for the PTRACE_EVENT_STOP. Signals that
    /// arrive first are delivered (PTRACE_CONT with the signal) and we wait
    /// again, as they would have been delivered without us.
    pub fn interrupt(self) -> Result<Stopped> {
        let tid = self.tid;
        if raw(PTRACE_INTERRUPT, tid, 0, 0) < 0 {
            return Err(err(tid, "PTRACE_INTERRUPT"));
        }
        for _ in 0..64 {
            match wait_stop(tid)? {
                st @ StopKind::Event { .. } => return Ok(Stopped { tid, first_stop: st }),
                StopKind::Signal { sig } => {
                    if raw(libc::PTRACE_CONT, tid, 0, sig as usize) < 0 {
                        return Err(err(tid, "PTRACE_CONT"));
                    }
                    // The interrupt may have been consumed by the signal stop: re-arm it.
                    if raw(PTRACE_INTERRUPT, tid, 0, 0) < 0 {
                        return Err(err(tid, "PTRACE_INTERRUPT"));
                    }
                }
                StopKind::OtherEvent { .. } => {
                    if raw(libc::PTRACE_CONT, tid, 0, 0) < 0 {
                        return Err(err(tid, "PTRACE_CONT"));
                    }
                }
            }
        }
        Err(PtraceError::Unexpected {
            tid,
            what: "signals keep arriving, cannot stop it".into(),
        })
    }

    /// Detach without stopping first (the kernel allows it for a running seized task only if it
    /// is stopped; so interrupt, then detach).
    pub fn detach(self) -> Result<()> {
        self.interrupt()?.detach()
    }
}

impl Stopped {
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// After the group stop was ended under us (SIGCONT sent by the freezer):
    /// run the task to a plain PTRACE_INTERRUPT stop, discarding the
    /// SIGCONT. The task keeps `first_stop` (it is still recorded as stopped).
    pub fn resync(&mut self) -> Result<()> {
        let tid = self.tid;
        if raw(PTRACE_INTERRUPT, tid, 0, 0) < 0 || raw(libc::PTRACE_CONT, tid, 0, 0) < 0 {
            return Err(err(tid, "PTRACE_INTERRUPT/CONT"));
        }
        for _ in 0..64 {
            match wait_stop(tid)? {
                StopKind::Event { sig } if sig == libc::SIGTRAP => return Ok(()),
                StopKind::Signal { sig } => {
                    let deliver = if sig == libc::SIGCONT { 0 } else { sig };
                    if raw(libc::PTRACE_CONT, tid, 0, deliver as usize) < 0 || raw(PTRACE_INTERRUPT, tid, 0, 0) < 0 {
                        return Err(err(tid, "PTRACE_CONT"));
                    }
                }
                _ => {
                    if raw(libc::PTRACE_CONT, tid, 0, 0) < 0 || raw(PTRACE_INTERRUPT, tid, 0, 0) < 0 {
                        return Err(err(tid, "PTRACE_CONT"));
                    }
                }
            }
        }
        Err(PtraceError::Unexpected {
            tid,
            what: "cannot bring a stopped task out of its group stop".into(),
        })
    }

    /// True if the task was in a group stop (state T) when we froze it.
    pub fn was_group_stopped(&self) -> bool {
        matches!(self.first_stop, StopKind::Event { sig } if sig != libc::SIGTRAP)
    }

    /// General registers (NT_PRSTATUS), including fs_base/gs_base.
    pub fn regs(&self) -> Result<Regs> {
        let mut b = [0u8; std::mem::size_of::<Regs>()];
        let mut len = 0;
        if sys::getregset(self.tid, NT_PRSTATUS, &mut b, &mut len) < 0 {
            return Err(err(self.tid, "PTRACE_GETREGSET(NT_PRSTATUS)"));
        }
        Ok(from_bytes(&b).expect("sized"))
    }

    pub fn set_regs(&self, r: &Regs) -> Result<()> {
        if sys::setregset(self.tid, NT_PRSTATUS, as_bytes(std::slice::from_ref(r))) < 0 {
            return Err(err(self.tid, "PTRACE_SETREGSET(NT_PRSTATUS)"));
        }
        Ok(())
    }

    /// The full XSAVE area (NT_X86_XSTATE), sized from CPUID.
    pub fn xstate(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; crate::sys::xsave_size()];
        let mut len = 0;
        if sys::getregset(self.tid, NT_X86_XSTATE, &mut buf, &mut len) < 0 {
            return Err(err(self.tid, "PTRACE_GETREGSET(NT_X86_XSTATE)"));
        }
        buf.truncate(len);
        Ok(buf)
    }

    pub fn set_xstate(&self, x: &[u8]) -> Result<()> {
        if sys::setregset(self.tid, NT_X86_XSTATE, x) < 0 {
            return Err(err(self.tid, "PTRACE_SETREGSET(NT_X86_XSTATE)"));
        }
        Ok(())
    }

    /// Blocked signal mask.
    pub fn sigmask(&self) -> Result<u64> {
        let mut m: u64 = 0;
        if sys::get_sigmask(self.tid, &mut m) < 0 {
            return Err(err(self.tid, "PTRACE_GETSIGMASK"));
        }
        Ok(m)
    }

    pub fn set_sigmask(&self, m: u64) -> Result<()> {
        if sys::set_sigmask(self.tid, &m) < 0 {
            return Err(err(self.tid, "PTRACE_SETSIGMASK"));
        }
        Ok(())
    }

    /// Pending siginfos (128 bytes each) of the thread, or of the process when `shared`.
    pub fn peek_siginfo(&self, shared: bool) -> Result<Vec<[u8; 128]>> {
        let mut out = Vec::new();
        loop {
            let mut buf = vec![[0u8; 128]; 32];
            let flags = if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 };
            let n = sys::peek_siginfo(self.tid, out.len() as u64, flags, &mut buf);
            if n < 0 {
                return Err(err(self.tid, "PTRACE_PEEKSIGINFO"));
            }
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    /// rseq registration: (address, length, signature), or None.
    pub fn rseq(&self) -> Result<Option<(u64, u32, u32)>> {
        // struct ptrace_rseq_configuration: u64 rseq_abi_pointer, u32
        // rseq_abi_size, u32 signature, u32 flags, u32 pad.
        let mut c = [0u8; 24];
        if sys::get_rseq_configuration(self.tid, &mut c) < 0 {
            return Err(err(self.tid, "PTRACE_GET_RSEQ_CONFIGURATION"));
        }
        let abi = u64::from_ne_bytes(c[0..8].try_into().expect("8 bytes"));
        let len = u32::from_ne_bytes(c[8..12].try_into().expect("4 bytes"));
        let sig = u32::from_ne_bytes(c[12..16].try_into().expect("4 bytes"));
        Ok((abi != 0).then_some((abi, len, sig)))
    }

    /// PTRACE_GET_THREAD_AREA for GDT entry `idx`: `struct user_desc` as 4 words.
    pub fn thread_area(&self, idx: u32) -> Result<[u32; 4]> {
        let mut d = [0u32; 4];
        d[0] = idx;
        if sys::get_thread_area(self.tid, idx, &mut d) < 0 {
            return Err(err(self.tid, "PTRACE_GET_THREAD_AREA"));
        }
        Ok(d)
    }

    /// PTRACE_SECCOMP_GET_FILTER: the BPF program (struct sock_filter array,
    /// 8 bytes per instruction) of the `idx`-th filter, 0 = the oldest; None
    /// past the newest.
    pub fn seccomp_filter(&self, idx: u64) -> Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 4096 * 8];
        let n = sys::seccomp_get_filter(self.tid, idx, &mut buf);
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                return Ok(None);
            }
            return Err(err(self.tid, "PTRACE_SECCOMP_GET_FILTER"));
        }
        buf.truncate(n as usize * 8);
        Ok(Some(buf))
    }

    /// PTRACE_SECCOMP_GET_METADATA: the SECCOMP_FILTER_FLAG_* the `idx`-th
    /// filter (as for [`Self::seccomp_filter`]) was installed with that the
    /// kernel keeps (LOG).
    pub fn seccomp_flags(&self, idx: u64) -> Result<u32> {
        let mut flags = 0u64;
        if sys::seccomp_get_metadata(self.tid, idx, &mut flags) < 0 {
            return Err(err(self.tid, "PTRACE_SECCOMP_GET_METADATA"));
        }
        Ok(flags as u32)
    }

    /// Read a word (works on any mapping, like a debugger).
    pub fn peek(&self, addr: u64) -> Result<u64> {
        // errno must be cleared to tell -1 data from an error.
        sys::set_errno(0);
        let v = raw(libc::PTRACE_PEEKDATA, self.tid, addr as usize, 0);
        if v == -1 && io::Error::last_os_error().raw_os_error() != Some(0) {
            return Err(err(self.tid, "PTRACE_PEEKDATA"));
        }
        Ok(v as u64)
    }

    /// Resume (PTRACE_CONT) delivering `sig` (0 for none).
    pub fn cont(self, sig: i32) -> Result<Running> {
        if raw(libc::PTRACE_CONT, self.tid, 0, sig as usize) < 0 {
            return Err(err(self.tid, "PTRACE_CONT"));
        }
        Ok(Running { tid: self.tid })
    }

    /// Resume and wait for the next stop, which must be a SIGTRAP (our int3).
    /// Any other stop is an error (the task is left in that stop).
    pub fn cont_until_trap(&mut self) -> Result<Regs> {
        if raw(libc::PTRACE_CONT, self.tid, 0, 0) < 0 {
            return Err(err(self.tid, "PTRACE_CONT"));
        }
        self.wait_trap()
    }

    /// Wait for the SIGTRAP of an `int3` after a `cont` done elsewhere.
    pub fn wait_trap(&mut self) -> Result<Regs> {
        match wait_stop(self.tid)? {
            StopKind::Signal { sig } if sig == libc::SIGTRAP => self.regs(),
            other => Err(PtraceError::Unexpected {
                tid: self.tid,
                what: format!("{other:?} instead of the blob's trap"),
            }),
        }
    }

    /// Detach (the task continues; a group-stopped task stays stopped).
    pub fn detach(self) -> Result<()> {
        if raw(libc::PTRACE_DETACH, self.tid, 0, 0) < 0 {
            return Err(err(self.tid, "PTRACE_DETACH"));
        }
        Ok(())
    }
}

/// Register/FPU/sigmask snapshot, put back with [`Saved::restore`].
#[derive(Clone)]
pub struct Saved {
    pub regs: Regs,
    pub xstate: Vec<u8>,
    pub sigmask: u64,
}

impl Saved {
    pub fn take(t: &Stopped) -> Result<Saved> {
        Ok(Saved {
            regs: t.regs()?,
            xstate: t.xstate()?,
            sigmask: t.sigmask()?,
        })
    }

    pub fn restore(&self, t: &Stopped) -> Result<()> {
        t.set_regs(&self.regs)?;
        t.set_xstate(&self.xstate)?;
        t.set_sigmask(self.sigmask)
    }
}
