//! The last step: take the restorer's bootstrap mapping (blob, arguments,
//! stacks, sigframes) out of the restored processes.
//!
//! A thread cannot unmap the code it runs, so the engine does it over ptrace
//! (as CRIU does): every thread is seized while it waits at the barrier, then
//! stepped from syscall to syscall until the exit of its rt_sigreturn. There
//! its registers are exactly the dumped ones (orig_rax = -1, no restart
//! pending) and nothing of it runs in the blob any more. Non-leader threads
//! are let go; once all threads of a process are out, its leader is made to
//! run one `munmap(bootstrap)` from a `syscall` instruction in the blob
//! (entry and exit stops, so no instruction after it is fetched), its
//! registers are put back, and it is let go. A stopped task is let go into
//! its group stop, out of the restorer (see [`stop_and_detach`]).
use crate::sys::ptrace as sys;
use cryo_abi::restorer::RstSlot;
use std::collections::HashMap;
use std::io;

use sys::{PTRACE_INTERRUPT, PTRACE_SEIZE};
const PTRACE_O_TRACESYSGOOD: usize = 1;
/// Seccomp filters restored in the blob do not apply to the rest of the
/// restorer and to the injected munmap while the engine traces the thread.
const PTRACE_O_SUSPEND_SECCOMP: usize = 1 << 21;
const PTRACE_EVENT_STOP: i32 = 128;
const NR_RT_SIGRETURN: u64 = 15;
const NR_MUNMAP: u64 = 11;

/// A request without pointers ([`sys::scalar`]), its error naming it.
fn pt(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    check(req, tid, sys::scalar(req, tid, addr, data))
}

/// The result of a ptrace call: an error naming the request and thread.
fn check(req: libc::c_uint, tid: i32, r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::other(format!(
            "ptrace({req:#x}) on {tid}: {}",
            io::Error::last_os_error()
        )))
    } else {
        Ok(r)
    }
}

fn wait(tid: i32) -> io::Result<i32> {
    loop {
        match sys::waitpid(tid, libc::__WALL) {
            Ok((r, st)) if r == tid => return Ok(st),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(io::Error::other(format!("waitpid({tid}): {e}"))),
        }
    }
}

fn regs(tid: i32) -> io::Result<libc::user_regs_struct> {
    let mut r = sys::zero_regs();
    check(libc::PTRACE_GETREGS, tid, sys::getregs(tid, &mut r))?;
    Ok(r)
}

fn set_regs(tid: i32, r: &libc::user_regs_struct) -> io::Result<()> {
    check(libc::PTRACE_SETREGS, tid, sys::setregs(tid, r)).map(|_| ())
}

/// A signal-delivery stop of `tid` for a signal sent with tgkill (si_code
/// SI_TKILL): the restorer's own stop before rt_sigreturn (nobody else
/// knows the thread yet; a SIGSTOP from kill() has SI_USER).
fn self_stop(tid: i32) -> bool {
    let mut si = [0u8; 128];
    if check(libc::PTRACE_GETSIGINFO, tid, sys::getsiginfo(tid, &mut si)).is_err() {
        return false;
    }
    i32::from_ne_bytes(si[8..12].try_into().expect("4 bytes")) == libc::SI_TKILL
}

/// Whether /proc says thread `tid` is traced by this process.
fn traced_by_us(tid: i32) -> bool {
    let me = std::process::id().to_string();
    std::fs::read_to_string(format!("/proc/{tid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() == me)
    })
}

/// (op, nr) of the current syscall stop: op 1 = entry, 2 = exit.
fn syscall_info(tid: i32) -> io::Result<(u8, u64)> {
    let mut buf = [0u8; 88];
    check(sys::PTRACE_GET_SYSCALL_INFO, tid, sys::get_syscall_info(tid, &mut buf))?;
    Ok((buf[0], u64::from_le_bytes(buf[24..32].try_into().expect("8 bytes"))))
}

/// A process to take out of the restorer.
pub struct Target {
    pub pid: i32,
    pub tids: Vec<i32>,
    /// A stopped task: the signal of its group stop (0: it runs).
    pub stop_signo: i32,
}

/// Threads seized at the barrier.
pub struct Seized {
    /// tid -> process leader pid.
    threads: Vec<(i32, i32)>,
    /// Stopped processes: pid -> stop signal.
    stops: HashMap<i32, i32>,
}

/// Seize and stop every thread (all are in futex_wait at the barrier);
/// with `suspend_seccomp`, the threads' seccomp filters are off while traced.
pub fn seize(procs: &[Target], suspend_seccomp: bool) -> io::Result<Seized> {
    let mut s = Seized {
        threads: Vec::new(),
        stops: procs
            .iter()
            .filter(|p| p.stop_signo > 0)
            .map(|p| (p.pid, p.stop_signo))
            .collect(),
    };
    let opts = PTRACE_O_TRACESYSGOOD | if suspend_seccomp { PTRACE_O_SUSPEND_SECCOMP } else { 0 };
    let one = |tid: i32, pid: i32, s: &mut Seized| -> io::Result<()> {
        pt(PTRACE_SEIZE, tid, 0, opts)?;
        s.threads.push((tid, pid));
        pt(PTRACE_INTERRUPT, tid, 0, 0)?;
        let st = wait(tid)?;
        if !libc::WIFSTOPPED(st) || st >> 16 != PTRACE_EVENT_STOP {
            return Err(io::Error::other(format!(
                "thread {tid}: unexpected stop {st:#x} at the barrier"
            )));
        }
        Ok(())
    };
    for p in procs {
        for &tid in &p.tids {
            if let Err(e) = one(tid, p.pid, &mut s) {
                s.release();
                return Err(e);
            }
        }
    }
    Ok(s)
}

impl Seized {
    /// Let everybody go without doing anything (error paths).
    pub fn release(&mut self) {
        for (tid, _) in self.threads.drain(..) {
            // Detaching a tracee of ours.
            sys::scalar(libc::PTRACE_DETACH, tid, 0, 0);
        }
    }

    /// After the engine's go: step every thread to the exit of its
    /// rt_sigreturn, let the other threads go, unmap each process's
    /// bootstrap from its leader, let the leaders go.
    pub fn finish(self, slots: &HashMap<i32, RstSlot>) -> io::Result<()> {
        let tids: Vec<i32> = self.threads.iter().map(|t| t.0).collect();
        let leaders: Vec<i32> = self.threads.iter().map(|t| t.1).collect();
        let r = self.step_out(slots);
        if r.is_err() {
            // Let go of whatever is still ours (a tracee left in a stop would
            // hang the restored tree), and reap the traced threads that died
            // (a failing restorer ends its process with exit_group): a traced
            // thread stays a zombie until its tracer reaps it, and its leader
            // cannot be waited for before. Non-leaders first; bounded.
            let mut left: Vec<i32> = tids.iter().copied().filter(|t| !leaders.contains(t)).collect();
            left.extend(tids.iter().copied().filter(|t| leaders.contains(t)));
            left.retain(|&t| traced_by_us(t));
            for &tid in &left {
                sys::scalar(PTRACE_INTERRUPT, tid, 0, 0);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while !left.is_empty() && std::time::Instant::now() < deadline {
                left.retain(|&tid| {
                    let (w, st) = sys::waitpid(tid, libc::__WALL | libc::WNOHANG).unwrap_or((-1, 0));
                    if w == tid && libc::WIFSTOPPED(st) {
                        // Detaching a stopped tracee of ours.
                        sys::scalar(libc::PTRACE_DETACH, tid, 0, 0);
                    }
                    w == 0
                });
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        r
    }

    fn step_out(self, slots: &HashMap<i32, RstSlot>) -> io::Result<()> {
        // Each thread runs freely to its SIGSTOP right before rt_sigreturn
        // (GO_RUN_TRACED), then is stepped through that one syscall.
        for &(tid, _) in &self.threads {
            pt(libc::PTRACE_CONT, tid, 0, 0)?;
        }
        let mut trapped: HashMap<i32, bool> = HashMap::new();
        let mut in_sigreturn: HashMap<i32, bool> = HashMap::new();
        let mut left: HashMap<i32, usize> = HashMap::new();
        for &(_, pid) in &self.threads {
            *left.entry(pid).or_default() += 1;
        }
        let mut pending = self.threads.len();
        let mut leaders_waiting: Vec<i32> = Vec::new();
        let mut held: HashMap<i32, Vec<i32>> = HashMap::new();
        while pending > 0 {
            let (tid, st) = match sys::waitpid(-1, libc::__WALL) {
                Ok(r) => r,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(io::Error::other(format!("waitpid: {e}"))),
            };
            let Some(&(_, pid)) = self.threads.iter().find(|(t, _)| *t == tid) else {
                continue; // not a tracee (e.g. the root exiting in a test)
            };
            if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                return Err(io::Error::other(format!(
                    "thread {tid} died while leaving the restorer ({st:#x})"
                )));
            }
            let sig = libc::WSTOPSIG(st);
            if sig == libc::SIGTRAP | 0x80 {
                let (op, nr) = syscall_info(tid)?;
                let was = in_sigreturn.get(&tid).copied().unwrap_or(false);
                if op == 1 {
                    in_sigreturn.insert(tid, nr == NR_RT_SIGRETURN);
                } else if op == 2 && was {
                    // Out of the blob with the dumped registers.
                    pending -= 1;
                    let n = left.get_mut(&pid).expect("counted");
                    *n -= 1;
                    if tid == pid {
                        leaders_waiting.push(pid);
                    } else if self.stops.contains_key(&pid) {
                        // Held until the group stop is under way.
                        held.entry(pid).or_default().push(tid);
                    } else {
                        pt(libc::PTRACE_DETACH, tid, 0, 0)?;
                    }
                    // Leaders whose threads are all out: unmap, let go.
                    let ready: Vec<i32> = leaders_waiting.iter().copied().filter(|l| left[l] == 0).collect();
                    for l in ready {
                        leaders_waiting.retain(|x| *x != l);
                        let r = slots.get(&l).map(|s| unmap_bootstrap(l, s)).unwrap_or(Ok(()));
                        match self.stops.get(&l) {
                            Some(&sig) => stop_and_detach(l, sig, &held.remove(&l).unwrap_or_default())?,
                            None => {
                                pt(libc::PTRACE_DETACH, l, 0, 0)?;
                            }
                        }
                        r?;
                    }
                    continue;
                }
                pt(libc::PTRACE_SYSCALL, tid, 0, 0)?;
            } else if st >> 16 == PTRACE_EVENT_STOP {
                let step = if trapped.get(&tid).copied().unwrap_or(false) {
                    libc::PTRACE_SYSCALL
                } else {
                    libc::PTRACE_CONT
                };
                pt(step, tid, 0, 0)?;
            } else if sig == libc::SIGSTOP && !trapped.get(&tid).copied().unwrap_or(false) && self_stop(tid) {
                // The restorer's own SIGSTOP right before rt_sigreturn:
                // swallow it, step into rt_sigreturn.
                trapped.insert(tid, true);
                pt(libc::PTRACE_SYSCALL, tid, 0, 0)?;
            } else {
                // A signal on its way in: deliver it as it would have been.
                let step = if trapped.get(&tid).copied().unwrap_or(false) {
                    libc::PTRACE_SYSCALL
                } else {
                    libc::PTRACE_CONT
                };
                pt(step, tid, 0, sig as usize)?;
            }
        }
        Ok(())
    }
}

/// Put a stopped process back in its group stop, out of the restorer: the
/// leader, at the exit of its rt_sigreturn, is detached with the stop signal
/// (a syscall-exit stop resumed with a signal sends it to the thread, which
/// starts the group stop before it reaches user code); once it is stopped,
/// the other threads (still in their syscall-exit stops, with the group stop
/// now pending for them) are detached and stop too.
fn stop_and_detach(leader: i32, sig: i32, others: &[i32]) -> io::Result<()> {
    pt(libc::PTRACE_DETACH, leader, 0, sig as usize)?;
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{leader}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next().map(str::to_string))
            })
            .is_some_and(|st| st == "T")
    };
    let wait_stopped = |d: std::time::Duration| {
        let deadline = std::time::Instant::now() + d;
        while !stopped() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    };
    if !wait_stopped(std::time::Duration::from_secs(2)) {
        // A stop signal other than SIGSTOP is dropped in an orphaned
        // process group: SIGSTOP always stops.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(leader), nix::sys::signal::Signal::SIGSTOP);
        if !wait_stopped(std::time::Duration::from_secs(2)) {
            for &t in others {
                let _ = pt(libc::PTRACE_DETACH, t, 0, 0);
            }
            return Err(io::Error::other(format!("pid {leader} did not stop with signal {sig}")));
        }
    }
    for &t in others {
        pt(libc::PTRACE_DETACH, t, 0, 0)?;
    }
    Ok(())
}

/// Run munmap(bootstrap) in `tid`, stopped at the exit of its rt_sigreturn.
fn unmap_bootstrap(tid: i32, s: &RstSlot) -> io::Result<()> {
    if s.syscall_at == 0 || s.len == 0 {
        return Ok(());
    }
    let saved = regs(tid)?;
    // Signals that became deliverable with the restored mask wait until the
    // task is let go (no signal-delivery stop in the middle of the munmap).
    let mut mask: u64 = 0;
    check(sys::PTRACE_GETSIGMASK, tid, sys::get_sigmask(tid, &mut mask))?;
    let all: u64 = !0;
    check(sys::PTRACE_SETSIGMASK, tid, sys::set_sigmask(tid, &all))?;
    let res = unmap_blocked(tid, s, &saved);
    let put_back = set_regs(tid, &saved).and_then(|_| check(sys::PTRACE_SETSIGMASK, tid, sys::set_sigmask(tid, &mask)));
    res?;
    put_back?;
    Ok(())
}

fn unmap_blocked(tid: i32, s: &RstSlot, saved: &libc::user_regs_struct) -> io::Result<()> {
    let mut r = *saved;
    r.rip = s.syscall_at;
    r.rax = NR_MUNMAP;
    r.orig_rax = u64::MAX;
    r.rdi = s.start;
    r.rsi = s.len;
    set_regs(tid, &r)?;
    // To the entry, then the exit of the injected syscall.
    for _ in 0..2 {
        pt(libc::PTRACE_SYSCALL, tid, 0, 0)?;
        let st = wait(tid)?;
        if !libc::WIFSTOPPED(st) || libc::WSTOPSIG(st) != libc::SIGTRAP | 0x80 {
            return Err(io::Error::other(format!(
                "thread {tid}: unexpected stop {st:#x} while unmapping the restorer"
            )));
        }
    }
    let after = regs(tid)?;
    if after.rax != 0 {
        return Err(io::Error::other(format!(
            "pid {tid}: munmap of the restorer at {:#x} failed: {}",
            s.start,
            io::Error::from_raw_os_error(-(after.rax as i64) as i32)
        )));
    }
    Ok(())
}
