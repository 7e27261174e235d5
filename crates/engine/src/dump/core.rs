//! core-PID.img: registers and FPU/xsave state, task state, signals, rseq,
//! scheduling — one `CoreEntry` per thread (creds, seccomp, sigactions,
//! timers and rlimits in it are [`crate::state`]'s).

use super::freeze::FrozenProc;
use super::{read, write_image, DumpCtx, DumpError, Inside, ProcFacts, Result, TASK_ALIVE, TASK_STOPPED};
use crate::proc;
use crate::proc::{Stat, Status};
use crate::ptrace::PtraceError;
use crate::ptrace::Regs;
use crate::state::{creds, rlimits, seccomp, sigactions, timers};
use cryo_abi::parasite::ThreadMisc;
use cryo_image::pb;

/// Registers as CRIU's dump writes them for a task stopped inside a
/// syscall the kernel would restart: a restartable call (-ERESTARTSYS,
/// -ERESTARTNOINTR, -ERESTARTNOHAND) is rewound to run again (ax = the
/// syscall number, ip back over the 2-byte `syscall`); a call that would
/// restart through its restart block, which cannot be carried across a
/// restore, returns -EINTR. The image then means the same to any restore.
pub fn rewind_interrupted_syscall(r: &Regs) -> Regs {
    const ERESTARTSYS: i32 = -512;
    const ERESTARTNOINTR: i32 = -513;
    const ERESTARTNOHAND: i32 = -514;
    const ERESTART_RESTARTBLOCK: i32 = -516;
    const EINTR: i64 = 4;
    let mut r = *r;
    if (r.orig_rax as i64) < 0 {
        return r;
    }
    match r.rax as i32 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            r.rax = r.orig_rax;
            r.rip -= 2;
        }
        ERESTART_RESTARTBLOCK => r.rax = (-EINTR) as u64,
        _ => {}
    }
    r
}

/// General registers in CRIU's layout (`r` already rewound, see
/// [`rewind_interrupted_syscall`]).
pub fn gpregs(r: &Regs) -> pb::UserX86RegsEntry {
    pb::UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    }
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

/// Enabled user xfeatures: from the kernel's sw_reserved bytes of the xsave
/// area, else from CPUID.
fn xfeatures(x: &[u8]) -> u64 {
    if x.len() >= 512 && u32::from_le_bytes(x[464..468].try_into().unwrap()) == FP_XSTATE_MAGIC1 {
        return u64::from_le_bytes(x[472..480].try_into().unwrap());
    }
    let r = std::arch::x86_64::__cpuid_count(0xd, 0);
    r.eax as u64 | (r.edx as u64) << 32
}

fn component(x: &[u8], i: u32) -> Option<&[u8]> {
    let r = std::arch::x86_64::__cpuid_count(0xd, i);
    let (size, off) = (r.eax as usize, r.ebx as usize);
    (size > 0 && off + size <= x.len()).then(|| &x[off..off + size])
}

/// The XSAVE area (standard format, from NT_X86_XSTATE) as CRIU stores it.
pub fn fpregs(x: &[u8]) -> pb::UserX86FpregsEntry {
    let le16 = |o: usize| u16::from_le_bytes(x[o..o + 2].try_into().unwrap()) as u32;
    let le32 = |o: usize| u32::from_le_bytes(x[o..o + 4].try_into().unwrap());
    let le64 = |o: usize| u64::from_le_bytes(x[o..o + 8].try_into().unwrap());
    let mut fp = pb::UserX86FpregsEntry {
        cwd: le16(0),
        swd: le16(2),
        twd: le16(4),
        fop: le16(6),
        rip: le64(8),
        rdp: le64(16),
        mxcsr: le32(24),
        mxcsr_mask: le32(28),
        st_space: u32s(&x[32..160]),
        xmm_space: u32s(&x[160..416]),
        padding: Vec::new(),
        xsave: None,
    };
    if x.len() > 512 + 64 {
        let feat = xfeatures(x);
        let mut xs = pb::UserX86XsaveEntry {
            xstate_bv: le64(512),
            ..Default::default()
        };
        let has = |b: u32| feat & (1 << b) != 0;
        if has(2) {
            xs.ymmh_space = component(x, 2).map(u32s).unwrap_or_default();
        }
        if has(3) {
            xs.bndreg_state = component(x, 3).map(u64s).unwrap_or_default();
        }
        if has(4) {
            xs.bndcsr_state = component(x, 4).map(u64s).unwrap_or_default();
        }
        if has(5) {
            xs.opmask_reg = component(x, 5).map(u64s).unwrap_or_default();
        }
        if has(6) {
            xs.zmm_upper = component(x, 6).map(u64s).unwrap_or_default();
        }
        if has(7) {
            xs.hi16_zmm = component(x, 7).map(u64s).unwrap_or_default();
        }
        if has(9) {
            xs.pkru = component(x, 9).map(u32s).unwrap_or_default();
        }
        if has(17) {
            xs.xtilecfg = component(x, 17).map(u64s).unwrap_or_default();
        }
        // CET user state is supervisor xstate (IA32_XSS): recorded when the CPU supports it.
        if std::arch::x86_64::__cpuid_count(0xd, 1).ecx & (1 << 11) != 0 {
            xs.cet = Some(pb::UserX86CetEntry { cet: 0, ssp: 0 });
        }
        fp.xsave = Some(xs);
    }
    fp
}

/// The three GDT TLS slots (entries 12..14) via PTRACE_GET_THREAD_AREA.
pub fn tls(descs: &[[u32; 4]; 3]) -> Vec<pb::UserDescT> {
    descs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            // struct user_desc: entry_number, base_addr, limit, flags bitfield.
            let f = d[3];
            pb::UserDescT {
                entry_number: 12 + i as u32,
                base_addr: d[1],
                limit: d[2],
                seg_32bit: f & 1 != 0,
                contents_h: f & 4 != 0,
                contents_l: f & 2 != 0,
                read_exec_only: f & 8 != 0,
                limit_in_pages: f & 16 != 0,
                seg_not_present: f & 32 != 0,
                usable: f & 64 != 0,
            }
        })
        .collect()
}

pub fn signal_queue(sis: &[[u8; 128]]) -> pb::SignalQueueEntry {
    pb::SignalQueueEntry {
        signals: sis.iter().map(|s| pb::SiginfoEntry { siginfo: s.to_vec() }).collect(),
    }
}

/// Per-thread values that go into ThreadCoreEntry.
pub struct ThreadFacts {
    pub stat: Stat,
    pub status: Status,
    pub secbits: u32,
    pub misc: ThreadMisc,
    pub futex_rla: u64,
    pub futex_rla_len: u32,
    pub sigmask: u64,
    pub pending: Vec<[u8; 128]>,
    pub rseq: Option<(u64, u32, u32)>,
    pub comm: String,
    /// sched_getscheduler(): the policy with its SCHED_RESET_ON_FORK bit,
    /// which /proc/PID/stat does not show (None: read from stat).
    pub sched_policy: Option<i32>,
    /// The index of its newest seccomp filter (seccomp mode 2).
    pub seccomp_filter: Option<u32>,
}

pub fn thread_core(f: &ThreadFacts, leader: bool) -> pb::ThreadCoreEntry {
    let (seccomp_mode, seccomp_filter) = seccomp::thread_fields(f.status.seccomp, f.seccomp_filter);
    let policy = f.sched_policy.map_or(f.stat.policy, |p| p as u32);
    let base = policy & !(libc::SCHED_RESET_ON_FORK as u32);
    pb::ThreadCoreEntry {
        futex_rla: f.futex_rla,
        futex_rla_len: f.futex_rla_len,
        sched_nice: Some(f.stat.nice as i32),
        sched_policy: Some(policy),
        sched_prio: (base == libc::SCHED_FIFO as u32 || base == libc::SCHED_RR as u32).then_some(f.stat.rt_priority),
        blk_sigset: (!leader).then_some(f.sigmask),
        sas: Some(pb::ThreadSasEntry {
            ss_sp: f.misc.ss_sp,
            ss_size: f.misc.ss_size,
            ss_flags: f.misc.ss_flags as u32,
        }),
        pdeath_sig: (f.misc.pdeath_sig != 0).then_some(f.misc.pdeath_sig as u32),
        signals_p: Some(signal_queue(&f.pending)),
        creds: Some(creds::dump(&f.status, f.secbits)),
        seccomp_mode,
        seccomp_filter,
        comm: Some(f.comm.clone()),
        blk_sigset_extended: None,
        rseq_entry: Some(match f.rseq {
            Some((a, l, s)) => pb::RseqEntry {
                rseq_abi_pointer: a,
                rseq_abi_size: l,
                signature: s,
                rseq_cs_pointer: None,
            },
            None => pb::RseqEntry {
                rseq_abi_pointer: 0,
                rseq_abi_size: 0,
                signature: 0,
                rseq_cs_pointer: None,
            },
        }),
        cg_set: Some(1),
    }
}

// ---- writing core-TID.img ----

/// core-TID.img of every thread, leader first (the leader's carries the
/// task core).
pub(super) fn write_cores(ctx: &mut DumpCtx, p: &FrozenProc, f: &ProcFacts, inside: &Inside) -> Result<()> {
    let pid = p.pid;
    let ptr = |source| DumpError::Ptrace { pid, source };
    let leader_mask = p.threads[0].sigmask().map_err(ptr)?;
    let shared_pending = p.threads[0].peek_siginfo(true).map_err(ptr)?;
    for (i, t) in p.threads.iter().enumerate() {
        let tid = t.tid();
        let tm = inside.tmisc.get(i).copied().unwrap_or_default();
        let mut regs = t.regs().map_err(ptr)?;
        if let Some(abort) = inside.rseq_abort[i] {
            // Stopped inside an rseq critical section: the kernel would have
            // sent it to its abort handler on the way back to user space, but
            // the parasite's run cleared rseq_cs. Jump there as CRIU does, in
            // the image and in the live task (--leave-running, a failed dump).
            regs.rip = abort;
            t.set_regs(&regs).map_err(ptr)?;
        }
        let xs = t.xstate().map_err(ptr)?;
        let mut areas = [[0u32; 4]; 3];
        for (j, d) in areas.iter_mut().enumerate() {
            *d = t.thread_area(12 + j as u32).map_err(ptr)?;
        }
        let facts = thread_facts(ctx, pid, t, tm)?;
        let leader = i == 0;
        let tc = leader.then(|| {
            let mut tc = task_core(pid, p, f, inside, leader_mask, &shared_pending);
            // /proc/PID/timers names a timer's target thread as cryo sees it.
            for x in tc.timers.iter_mut().flat_map(|t| t.posix.iter_mut()) {
                if let Some(tid) = x.notify_thread_id.as_mut() {
                    *tid = ctx.vpid(*tid);
                }
            }
            // In a user namespace of its own: as the namespace sees it.
            if let (Some(u), Some(l)) = (&ctx.ns.user, tc.loginuid.as_mut()) {
                *l = u.inside_uid(*l);
            }
            tc
        });
        let mut thc = thread_core(&facts, leader);
        if let (Some(u), Some(c)) = (&ctx.ns.user, thc.creds.as_mut()) {
            u.creds_inside(c)
                .map_err(|what| DumpError::Refused { pid: tid, what })?;
        }
        let core_e = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(pb::ThreadInfoX86 {
                clear_tid_addr: tm.clear_tid,
                gpregs: gpregs(&rewind_interrupted_syscall(&regs)),
                fpregs: fpregs(&xs),
                tls: tls(&areas),
            }),
            tc,
            ids: None,
            thread_core: Some(pb::ThreadCoreEntry {
                cg_set: Some(ctx.cg.set_of(tid)),
                ..thc
            }),
            ..Default::default()
        };
        let path = ctx.out.path(&format!("core-{}.img", ctx.vpid(tid)));
        let w = write_image(&path, "CORE", &[core_e])?;
        ctx.defer(w);
    }
    Ok(())
}

/// What a thread's core says about it, read from /proc and ptrace (its
/// seccomp filters go into the dump's table now).
fn thread_facts(
    ctx: &mut DumpCtx,
    pid: i32,
    t: &crate::ptrace::Stopped,
    tm: cryo_abi::parasite::ThreadMisc,
) -> Result<ThreadFacts> {
    let ptr = |source| DumpError::Ptrace { pid, source };
    let tid = t.tid();
    let tstat = proc::parse_stat(&read(&format!("/proc/{pid}/task/{tid}/stat"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let tstatus = proc::parse_status(&read(&format!("/proc/{pid}/task/{tid}/status"), pid)?)
        .map_err(|e| DumpError::task(pid, e.to_string()))?;
    let (rla, rla_len) = crate::sys::get_robust_list(tid).unwrap_or((0, 0));
    let sched_policy = crate::sys::sched_policy(tid).ok();
    if sched_policy.is_some_and(|p| p & !libc::SCHED_RESET_ON_FORK == 6) {
        return Err(DumpError::Refused {
            pid,
            what: format!("thread {tid} runs SCHED_DEADLINE, which cannot be restored yet"),
        });
    }
    let mut facts = ThreadFacts {
        comm: tstat.comm.clone(),
        stat: tstat,
        status: tstatus,
        secbits: tm.secbits as u32,
        misc: tm,
        futex_rla: rla,
        futex_rla_len: rla_len as u32,
        sigmask: t.sigmask().map_err(ptr)?,
        pending: t.peek_siginfo(false).map_err(ptr)?,
        rseq: t.rseq().map_err(ptr)?,
        sched_policy,
        seccomp_filter: None,
    };
    if facts.status.seccomp == 2 {
        facts.seccomp_filter = Some(seccomp_chain(ctx, t).map_err(ptr)?);
    }
    Ok(facts)
}

/// The task core of a process (in its leader's core).
fn task_core(
    pid: i32,
    p: &FrozenProc,
    f: &ProcFacts,
    inside: &Inside,
    leader_mask: u64,
    shared_pending: &[[u8; 128]],
) -> pb::TaskCoreEntry {
    let misc = &inside.misc;
    pb::TaskCoreEntry {
        task_state: if p.threads[0].was_group_stopped() {
            TASK_STOPPED
        } else {
            TASK_ALIVE
        },
        exit_code: 0,
        personality: u32::from_str_radix(
            read(&format!("/proc/{pid}/personality"), pid)
                .unwrap_or_default()
                .trim(),
            16,
        )
        .unwrap_or(0),
        flags: f.stat.flags,
        blk_sigset: leader_mask,
        comm: f.stat.comm.clone(),
        timers: Some(timers::dump(&inside.itimers, &f.timers, &inside.posix)),
        rlimits: Some(rlimits::dump(&misc.rlimits)),
        cg_set: None,
        signals_s: Some(signal_queue(shared_pending)),
        old_seccomp_mode: None,
        old_seccomp_filter: None,
        loginuid: read(&format!("/proc/{pid}/loginuid"), pid)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        oom_score_adj: read(&format!("/proc/{pid}/oom_score_adj"), pid)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        sigactions: sigactions::dump(&inside.sigacts),
        child_subreaper: Some(misc.child_subreaper != 0),
        blk_sigset_extended: None,
        stop_signo: match p.threads[0].first_stop {
            crate::ptrace::StopKind::Event { sig } if sig != libc::SIGTRAP => Some(sig as u32),
            _ => None,
        },
        // As the kernel reports it (CRIU stores it unchanged, when not zero).
        membarrier_registration_mask: (misc.membarrier_mask != 0).then_some(misc.membarrier_mask),
    }
}

/// The thread's seccomp filters into the dump's table (see
/// [`crate::state::seccomp::Filters`]); returns the index of the thread's
/// newest filter.
fn seccomp_chain(ctx: &mut DumpCtx, t: &crate::ptrace::Stopped) -> std::result::Result<u32, PtraceError> {
    let mut chain = Vec::new();
    // Index 0 is the oldest filter (the kernel counts back from the newest).
    while let Some(f) = t.seccomp_filter(chain.len() as u64)? {
        let flags = t.seccomp_flags(chain.len() as u64)?;
        chain.push((f, flags));
    }
    ctx.seccomp.add_chain(chain).ok_or(PtraceError::Unexpected {
        tid: t.tid(),
        what: "seccomp mode 2 without filters".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fpregs_legacy_fields() {
        let mut x = vec![0u8; 1024];
        x[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        x[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        x[160..164].copy_from_slice(&7u32.to_le_bytes());
        x[512..520].copy_from_slice(&3u64.to_le_bytes());
        let fp = fpregs(&x);
        assert_eq!((fp.cwd, fp.mxcsr), (0x37f, 0x1f80));
        assert_eq!(fp.xmm_space[0], 7);
        assert_eq!(fp.st_space.len(), 32);
        assert_eq!(fp.xmm_space.len(), 64);
        assert_eq!(fp.xsave.unwrap().xstate_bv, 3);
    }

    fn regs(ax: i64, orig_ax: i64) -> Regs {
        Regs {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: ax as u64,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: orig_ax as u64,
            rip: 0x1002,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        }
    }

    #[test]
    fn interrupted_syscalls_are_written_as_criu_writes_them() {
        for e in [-512, -513, -514] {
            let r = rewind_interrupted_syscall(&regs(e, 130));
            assert_eq!((r.rax, r.rip, r.orig_rax), (130, 0x1000, 130), "{e}");
        }
        let r = rewind_interrupted_syscall(&regs(-516, 230));
        assert_eq!((r.rax as i64, r.rip), (-4, 0x1002));
        // Not in a syscall, or a syscall that returned: unchanged.
        let r = rewind_interrupted_syscall(&regs(-514, -1));
        assert_eq!((r.rax as i64, r.rip), (-514, 0x1002));
        let r = rewind_interrupted_syscall(&regs(0, 1));
        assert_eq!((r.rax, r.rip), (0, 0x1002));
    }
}
