//! Engine integration tests: real programs (tests/progs/*.c) frozen, injected,
//! dumped, and their images read back with the image library and checked
//! against what the program set up.

mod common;

use common::*;
use cryo_engine::dump::{self, DumpOpts, Hook, Stage};
use cryo_engine::parasite::{find_code_addr, Parasite};
use cryo_engine::ptrace;
use cryo_image::{pb, ImageSet};
use std::path::Path;
use std::sync::Arc;

/// Inject the parasite, ping it, remove it: registers, FPU state, signal mask
/// and maps are identical before and after, and the program keeps running.
#[test]
fn parasite_injection_leaves_no_trace() {
    let out = tmp_dir("inject").join("out");
    let (t, _) = Target::start("spin", &[out.to_str().unwrap()]);
    let maps_before = maps(t.pid);
    let mut s = ptrace::seize(t.pid).unwrap().interrupt().unwrap();
    let regs_before = s.regs().unwrap();
    let xs_before = s.xstate().unwrap();
    let mask_before = s.sigmask().unwrap();
    {
        let code = find_code_addr(t.pid).unwrap();
        let mut p = Parasite::inject(&mut s, code).unwrap();
        assert_eq!(p.ping(41).unwrap(), 42);
        assert_ne!(maps(t.pid), maps_before, "the blob should be mapped while it runs");
        let sa = p.sigactions().unwrap();
        assert_ne!(
            sa[libc::SIGUSR1 as usize - 1].handler,
            0,
            "SIGUSR1 handler seen from inside"
        );
        assert_eq!(sa[libc::SIGUSR2 as usize - 1].handler, 0);
        let m = p.misc().unwrap();
        assert!(m.rlimits[libc::RLIMIT_NOFILE as usize][0] > 0);
        p.cure().unwrap();
    }
    assert_eq!(format!("{regs_before:?}"), format!("{:?}", s.regs().unwrap()));
    assert_eq!(xs_before, s.xstate().unwrap());
    assert_eq!(mask_before, s.sigmask().unwrap());
    assert_eq!(maps_before, maps(t.pid));
    s.detach().unwrap();
    let a = ask(t.pid, &out, "ok");
    std::fs::remove_file(&out).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = ask(t.pid, &out, "ok");
    assert_ne!(a, b, "counter must advance after the injection");
    assert!(t.alive());
}

fn images_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn reg(files: &[pb::FileEntry], id: u32) -> &pb::RegFileEntry {
    files
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| f.reg.as_ref())
        .unwrap_or_else(|| panic!("no REG file {id}"))
}

fn fdi(fds: &[pb::FdinfoEntry], fd: &str) -> pb::FdinfoEntry {
    let fd: u32 = fd.parse().unwrap();
    fds.iter()
        .find(|e| e.fd == fd)
        .cloned()
        .unwrap_or_else(|| panic!("fd {fd} not in fdinfo"))
}

/// Dump the `state` program (default mode: the tree is killed afterwards) and
/// check every kind of state it set up against the images.
#[test]
fn dump_records_program_state() {
    let work = tmp_dir("state");
    let imgs = tmp_dir("state-img");
    let (t, line) = Target::start("state", &[work.to_str().unwrap()]);
    wait_threads_parked(t.pid);
    let s = dump::dump(DumpOpts::new(t.pid, &imgs)).unwrap();
    assert_eq!((s.processes, s.threads), (1, 4));
    assert!(wait_gone(t.pid), "default dump kills the tree");

    let set = ImageSet::open(&imgs).unwrap();
    let pid = t.pid as u32;
    assert!(set.inventory().is_ok());
    let tree = set.pstree().unwrap();
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].pid, pid);
    assert_eq!(tree[0].threads.len(), 4);

    // Memory: the heap pattern at its address.
    let heap = hex(&kv(&line, "heap"));
    let len: usize = kv(&line, "heap_len").parse().unwrap();
    let seed: u64 = kv(&line, "seed").parse().unwrap();
    assert!(
        set.read_memory(pid, heap, len).unwrap() == pattern(len, seed),
        "heap pattern differs"
    );

    // Signals: handlers, masks, pending.
    let core = set.core(pid).unwrap();
    let tc = core.tc.as_ref().unwrap();
    assert_eq!(tc.sigactions.len(), 62);
    let usr1 = &tc.sigactions[libc::SIGUSR1 as usize - 2]; // SIGKILL (9) is not stored
    assert_ne!(usr1.sigaction, 0);
    assert_ne!(usr1.flags & libc::SA_RESTART as u64, 0);
    assert_eq!(usr1.mask, 1 << (libc::SIGUSR2 - 1));
    assert_eq!(
        tc.sigactions[libc::SIGTERM as usize - 2].sigaction,
        1,
        "SIGTERM is SIG_IGN"
    );
    let blocked = (1u64 << (libc::SIGUSR2 - 1)) | (1 << (libc::SIGHUP - 1));
    assert_eq!(tc.blk_sigset & blocked, blocked);
    let shared = &tc.signals_s.as_ref().unwrap().signals;
    assert_eq!(shared.len(), 1);
    assert_eq!(
        i32::from_le_bytes(shared[0].siginfo[..4].try_into().unwrap()),
        libc::SIGHUP
    );
    // Timers.
    let timers = tc.timers.as_ref().unwrap();
    assert!(timers.real.vsec <= 2000 && timers.real.vsec > 1000, "{:?}", timers.real);
    assert_eq!(timers.posix.len(), 1);
    assert_eq!(timers.posix[0].si_signo, libc::SIGRTMIN() as u32 + 2);
    assert!(timers.posix[0].vsec <= 1000 && timers.posix[0].vsec > 500);
    assert_eq!(timers.posix[0].clock_id, libc::CLOCK_MONOTONIC as u32);

    // Threads: names and the registers of the "regs" thread.
    let mut names = Vec::new();
    for &tid in &tree[0].threads {
        let c = set.core(tid).unwrap();
        let tcore = c.thread_core.as_ref().unwrap();
        names.push(tcore.comm.clone().unwrap());
        if tcore.comm.as_deref() == Some("regs") {
            let ti = c.thread_info.as_ref().unwrap();
            assert_eq!(ti.gpregs.r12, 0x1122334455667788);
            assert_eq!(ti.gpregs.r13, 0x99aabbccddeeff00);
            let x = &ti.fpregs.xmm_space;
            assert_eq!((x[20] as u64) | (x[21] as u64) << 32, 0x1122334455667788, "xmm5");
            assert!(ti.fpregs.xsave.is_some());
            assert_ne!(ti.gpregs.fs_base, 0);
        }
        assert!(c.thread_core.as_ref().unwrap().creds.is_some());
    }
    names.sort();
    assert_eq!(names, ["idle-1", "idle-2", "prog-state", "regs"]);

    // Files.
    let ids = set.ids(pid).unwrap();
    let fds = set.fdinfo(ids.files_id).unwrap();
    let files = set.files().unwrap();
    let data = fdi(&fds, &kv(&line, "data_fd"));
    let r = reg(&files, data.id);
    assert!(r.name.ends_with("/state/data.txt"), "{}", r.name);
    assert_eq!((r.pos, r.flags & libc::O_ACCMODE as u32), (7, libc::O_RDWR as u32));
    assert_eq!(r.size, Some(12));
    let rd = fdi(&fds, &kv(&line, "rd_fd"));
    assert_eq!(rd.flags, libc::FD_CLOEXEC as u32);
    assert_eq!(reg(&files, rd.id).pos, 3);
    let d = reg(&files, fdi(&fds, &kv(&line, "dir_fd")).id);
    assert_eq!(d.mode.unwrap() & libc::S_IFMT, libc::S_IFDIR);
    let p = reg(&files, fdi(&fds, &kv(&line, "path_fd")).id);
    assert_ne!(p.flags & libc::O_PATH as u32, 0);
    let n = reg(&files, fdi(&fds, &kv(&line, "null_fd")).id);
    assert_eq!(n.name, "/dev/null");
    assert_eq!(
        n.flags & (libc::O_WRONLY | libc::O_APPEND) as u32,
        (libc::O_WRONLY | libc::O_APPEND) as u32
    );
    // Pipe: both ends, same pipe, 5000 queued bytes kept.
    let pr = fdi(&fds, &kv(&line, "pipe_r"));
    let pw = fdi(&fds, &kv(&line, "pipe_w"));
    assert_eq!(pr.r#type, pb::FdTypes::Pipe as i32);
    let pipe_of = |id| files.iter().find(|f| f.id == id).unwrap().pipe.unwrap();
    assert_eq!(pipe_of(pr.id).pipe_id, pipe_of(pw.id).pipe_id);
    let pd = set.pipes_data().unwrap();
    let (e, bytes) = pd.iter().find(|(e, _)| e.pipe_id == pipe_of(pr.id).pipe_id).unwrap();
    assert_eq!(e.bytes, 5000);
    assert!(*bytes == pattern(5000, 77));
    // FIFO: its own entry pointing at a REG entry for the path; 300 bytes queued.
    let ff = fdi(&fds, &kv(&line, "fifo_fd"));
    assert_eq!(ff.r#type, pb::FdTypes::Fifo as i32);
    let fifo = files.iter().find(|f| f.id == ff.id).unwrap().fifo.unwrap();
    assert!(reg(&files, fifo.regf_id.unwrap()).name.ends_with("/state/fifo"));
    let fd_data: Vec<(pb::PipeDataEntry, Vec<u8>)> = set.with_payload("fifo-data.img").unwrap();
    let (e, bytes) = fd_data.iter().find(|(e, _)| e.pipe_id == fifo.pipe_id).unwrap();
    assert_eq!(e.bytes, 300);
    assert!(*bytes == pattern(300, 55));
    // Ghost (deleted while open) file: contents saved, position kept.
    let g = fdi(&fds, &kv(&line, "ghost_fd"));
    assert_eq!(reg(&files, g.id).pos, 1234);
    let remaps: Vec<pb::RemapFilePathEntry> = set.entries("remap-fpath.img", "REMAP_FPATH").unwrap();
    let rm = remaps.iter().find(|r| r.orig_id == g.id).expect("ghost remap");
    // 10000 bytes: under CRIU's 12 KiB threshold, one blob after the entry.
    let content = ghost_content(&set, rm.remap_id);
    assert!(content == pattern(10000, 99), "ghost contents");

    // fs: umask and cwd.
    let fs = set.fs(pid).unwrap();
    assert_eq!(fs.umask, Some(0o027));
    assert!(reg(&files, fs.cwd_id).name.ends_with("/state"));
    assert_eq!(reg(&files, fs.root_id).name, "/");
    // mm: exe and heap VMA.
    let mm = set.mm(pid).unwrap();
    assert!(reg(&files, mm.exe_file_id).name.ends_with("prog-state"));
    assert!(mm.vmas.iter().any(|v| v.start <= heap && heap + len as u64 <= v.end));
}

/// Wait until every thread of `state` sleeps where it will stay: the "regs"
/// thread in nanosleep, the main thread in sigsuspend (waiting for SIGUSR1),
/// the idle ones in pause.
fn wait_threads_parked(pid: i32) {
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: i32 = e.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap();
        let nr = if comm.trim() == "regs" {
            libc::SYS_nanosleep
        } else if tid == pid {
            libc::SYS_rt_sigsuspend
        } else {
            libc::SYS_pause
        };
        wait_in_syscall(pid, tid, nr);
    }
}

fn thread_regs(pid: i32) -> Vec<(i32, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    tids.sort();
    let mut stopped = Vec::new();
    for t in tids {
        stopped.push(ptrace::seize(t).unwrap().interrupt().unwrap());
    }
    for s in &stopped {
        let mut r = s.regs().unwrap();
        // A syscall interrupted twice may restart as restart_syscall: compare the rest.
        r.rax = 0;
        r.orig_rax = 0;
        out.push((s.tid(), format!("{r:?}"), s.xstate().unwrap()));
    }
    for s in stopped {
        s.detach().unwrap();
    }
    out
}

fn fd_table(pid: i32) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let e = e.unwrap();
        let fd = e.file_name().to_string_lossy().into_owned();
        let link = std::fs::read_link(e.path()).unwrap().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
        // stderr is the test harness's own (a CI log others write to): its offset moves under us.
        let info: String = info
            .lines()
            .filter(|l| (l.starts_with("pos") && fd != "2") || l.starts_with("flags"))
            .collect();
        v.push((fd, link, info));
    }
    v.sort();
    v
}

/// `--leave-running`: maps, fds and registers are the same before and after,
/// and the program still works (its own check of heap, ghost file, offsets).
#[test]
fn leave_running_keeps_the_program_intact() {
    let work = tmp_dir("lr");
    let imgs = tmp_dir("lr-img");
    let (t, _) = Target::start("state", &[work.to_str().unwrap()]);
    // Every thread must be parked in its final syscall before we compare registers.
    wait_threads_parked(t.pid);
    let maps_before = maps(t.pid);
    let fds_before = fd_table(t.pid);
    let regs_before = thread_regs(t.pid);
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    assert!(Path::new(&imgs.join("inventory.img")).exists());
    assert_eq!(tracer(t.pid), 0);
    assert_eq!(maps_before, maps(t.pid));
    assert_eq!(fds_before, fd_table(t.pid));
    let regs_after = thread_regs(t.pid);
    assert_eq!(regs_before.len(), regs_after.len());
    for (a, b) in regs_before.iter().zip(&regs_after) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1, "registers of thread {}", a.0);
        assert!(a.2 == b.2, "xstate of thread {}", a.0);
    }
    let v = ask(t.pid, &work.join("verify"), "heap=");
    assert!(v.starts_with("ok "), "program check after the dump: {v}");
}

/// A tree: pstree parents, one pipe shared by all, per-process fd tables and memory.
#[test]
fn dump_records_a_process_tree() {
    let work = tmp_dir("tree");
    let imgs = tmp_dir("tree-img");
    let (t, line) = Target::start("tree", &[work.to_str().unwrap()]);
    let procs: Vec<(u32, u32, u64)> = line
        .split_whitespace()
        .skip(1)
        .map(|w| {
            let p: Vec<&str> = w.split(':').collect();
            (p[0].parse().unwrap(), p[1].parse().unwrap(), hex(p[2]))
        })
        .collect();
    assert_eq!(procs.len(), 4);
    let s = dump::dump(DumpOpts::new(t.pid, &imgs)).unwrap();
    assert_eq!(s.processes, 4);
    let set = ImageSet::open(&imgs).unwrap();
    let tree = set.pstree().unwrap();
    assert_eq!(tree[0].pid, t.pid as u32);
    assert_eq!(tree[0].ppid, 0);
    let pid_of = |idx: u32| procs.iter().find(|p| p.0 == idx).unwrap().1;
    let ppid_of = |pid: u32| tree.iter().find(|e| e.pid == pid).unwrap().ppid;
    assert_eq!(ppid_of(pid_of(1)), pid_of(0));
    assert_eq!(ppid_of(pid_of(2)), pid_of(0));
    assert_eq!(ppid_of(pid_of(3)), pid_of(1));
    let mut pipe_ids = Vec::new();
    let mut files_ids = Vec::new();
    for &(idx, pid, heap) in &procs {
        assert!(set.read_memory(pid, heap, 64 << 10).unwrap() == pattern(64 << 10, 1000 + idx as u64));
        let ids = set.ids(pid).unwrap();
        files_ids.push(ids.files_id);
        let pipes: Vec<u32> = set
            .fdinfo(ids.files_id)
            .unwrap()
            .iter()
            .filter(|e| e.r#type == pb::FdTypes::Pipe as i32)
            .map(|e| e.id)
            .collect();
        pipe_ids.push(pipes);
    }
    files_ids.sort();
    files_ids.dedup();
    assert_eq!(files_ids.len(), 4, "fork gives every process its own fd table");
    assert!(
        pipe_ids.windows(2).all(|w| w[0] == w[1]),
        "inherited pipe ends share their file ids: {pipe_ids:?}"
    );
    let pd = set.pipes_data().unwrap();
    assert!(pd.iter().any(|(e, d)| e.bytes == 100 && d.iter().all(|&b| b == b'x')));
    for &(_, pid, _) in &procs {
        assert!(wait_gone(pid as i32));
    }
}

/// A task killed in the middle of the dump: clear error naming it, no
/// inventory (no set that looks complete), the rest of the tree resumes.
#[test]
fn dump_fails_cleanly_when_a_task_dies_midway() {
    let work = tmp_dir("die");
    let imgs = tmp_dir("die-img");
    let (t, line) = Target::start("tree", &[work.to_str().unwrap()]);
    let victim: i32 = line
        .split_whitespace()
        .find(|w| w.starts_with("2:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.hook = Some(Hook(Arc::new(move |s| {
        if s == Stage::Pages(victim) {
            kill(victim, libc::SIGKILL);
        }
    })));
    let err = dump::dump(o).unwrap_err().to_string();
    assert!(err.contains(&victim.to_string()), "error names the pid: {err}");
    assert!(!imgs.join("inventory.img").exists());
    assert!(
        images_of(&imgs).is_empty(),
        "partial images left: {:?}",
        images_of(&imgs)
    );
    // The survivors run on, untraced, and still pass their own checks.
    for w in line.split_whitespace().skip(1) {
        let pid: i32 = w.split(':').nth(1).unwrap().parse().unwrap();
        if pid == victim {
            continue;
        }
        assert_eq!(tracer(pid), 0);
        assert_eq!(ask(pid, &work.join(format!("verify-{pid}")), "o").trim(), "ok");
    }
    for w in line.split_whitespace().skip(1) {
        let pid: i32 = w.split(':').nth(1).unwrap().parse().unwrap();
        kill(pid, libc::SIGKILL);
    }
}

/// Sockets cryo cannot dump (an established TCP connection without --tcp-established, a raw socket)
/// are refused before anything is written, naming pid, fd and the connection; the program is
/// released untouched.
#[test]
fn sockets_are_refused_before_writing() {
    for mode in ["tcp", "raw"] {
        sockets_are_refused(mode);
    }
}

fn sockets_are_refused(mode: &str) {
    let work = tmp_dir(&format!("sock-{mode}"));
    let imgs = tmp_dir(&format!("sock-{mode}-img"));
    let args: &[&str] = if mode == "raw" {
        &[work.to_str().unwrap(), "raw"]
    } else {
        &[work.to_str().unwrap()]
    };
    let (t, _) = Target::start("sock", args);
    let err = dump::dump(DumpOpts::new(t.pid, &imgs)).unwrap_err().to_string();
    assert!(
        err.contains("socket") && err.contains(&format!("pid {}", t.pid)),
        "{err}"
    );
    if mode == "raw" {
        assert!(err.contains("raw inet (IPv4) socket (ICMP)"), "{err}");
    } else {
        assert!(
            err.contains("established TCP connection 127.0.0.1:")
                && err.contains("(ESTABLISHED)")
                && err.contains("--tcp-established"),
            "{err}"
        );
    }
    assert!(images_of(&imgs).is_empty());
    assert_eq!(tracer(t.pid), 0);
    assert!(t.alive());
    assert!(kill(t.pid, libc::SIGUSR1));
    for _ in 0..polls(10) {
        if work.join("verify").exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let st = std::fs::read_to_string(format!("/proc/{}/status", t.pid)).unwrap();
    let sc = std::fs::read_to_string(format!("/proc/{}/syscall", t.pid)).unwrap();
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", t.pid)).unwrap();
    let ls: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    panic!("no verify file; cwd {cwd:?} work {work:?} has {ls:?}; syscall {sc} status:\n{st}");
}

/// Unix sockets cryo cannot restore are refused before anything is written,
/// naming pid, fd and why; the program goes on with its socket intact.
#[test]
fn unrestorable_unix_sockets_are_refused_before_writing() {
    for (mode, why) in [
        ("scm", "in flight (SCM_RIGHTS)"),
        ("backlog", "not accepted yet"),
        ("closed", "connecting socket is closed"),
        ("outside", "outside the dumped tree; dump with --ext-unix-sk"),
    ] {
        let work = tmp_dir(&format!("unixrefuse-{mode}"));
        let imgs = tmp_dir(&format!("unixrefuse-{mode}-img"));
        let (t, line) = Target::start("unixrefuse", &[work.to_str().unwrap(), mode]);
        let pid: i32 = line.trim().strip_prefix("ready pid=").unwrap().parse().unwrap();
        let err = dump::dump(DumpOpts::new(pid, &imgs)).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains(&format!("pid {pid} fd ")) && err.contains("socket:["),
            "{mode}: {err}"
        );
        assert!(images_of(&imgs).is_empty(), "{mode}: {:?}", images_of(&imgs));
        assert_eq!(tracer(pid), 0, "{mode}");
        assert_eq!(
            ask(pid, &work.join("verify"), "\n").trim(),
            "ok",
            "{mode}: the socket changed"
        );
        if pid != t.pid {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Both page readers (parasite vmsplice, process_vm_readv) write the same
/// pagemap and the same heap contents.
#[test]
fn page_readers_agree() {
    let work = tmp_dir("readers");
    let (t, line) = Target::start("state", &[work.to_str().unwrap()]);
    wait_threads_parked(t.pid);
    let heap = hex(&kv(&line, "heap"));
    let len: usize = kv(&line, "heap_len").parse().unwrap();
    let seed: u64 = kv(&line, "seed").parse().unwrap();
    let mut sets = Vec::new();
    for (name, reader) in [
        ("readv", dump::PageReader::Readv),
        ("vmsplice", dump::PageReader::Vmsplice),
    ] {
        let imgs = tmp_dir(&format!("readers-{name}"));
        let mut o = DumpOpts::new(t.pid, &imgs);
        o.leave_running = true;
        o.pages = reader;
        dump::dump(o).unwrap();
        let set = ImageSet::open(&imgs).unwrap();
        assert!(
            set.read_memory(t.pid as u32, heap, len).unwrap() == pattern(len, seed),
            "{name}: heap"
        );
        let pm = set.pagemap(t.pid as u32).unwrap();
        sets.push((name, pm.present_bytes()));
    }
    // The same pages are present (the second dump may see a few more stack
    // or libc pages touched by the first one's parasite, never fewer).
    assert!(sets[1].1 >= sets[0].1 && sets[1].1 - sets[0].1 <= 64 << 10, "{sets:?}");
    assert!(ask(t.pid, &work.join("verify"), "heap=").starts_with("ok "));
}

/// A big mapping with a few runs of pages, across the steps in which the
/// vmsplice reader scans and splices (250 MiB) and across 1 MiB pipes: both
/// readers record exactly the touched pages, with their contents.
#[test]
fn sparse_pages_across_scan_steps() {
    let (t, line) = Target::start("sparse", &[]);
    let addr = hex(&kv(&line, "addr"));
    let len: u64 = kv(&line, "len").parse().unwrap();
    let runs: Vec<(u64, u64)> = kv(&line, "runs")
        .split(',')
        .map(|r| {
            let (o, l) = r.split_once(':').unwrap();
            (o.parse().unwrap(), l.parse().unwrap())
        })
        .collect();
    let byte = |o: u64| ((o * 31 + (o >> 12)) | 1) as u8;
    let touched: u64 = runs.iter().map(|(_, l)| l).sum();
    for (name, reader) in [
        ("readv", dump::PageReader::Readv),
        ("vmsplice", dump::PageReader::Vmsplice),
    ] {
        let imgs = tmp_dir(&format!("sparse-{name}"));
        let mut o = DumpOpts::new(t.pid, &imgs);
        o.leave_running = true;
        o.pages = reader;
        dump::dump(o).unwrap();
        let set = ImageSet::open(&imgs).unwrap();
        for &(off, l) in &runs {
            let got = set.read_memory(t.pid as u32, addr + off, l as usize).unwrap();
            let want: Vec<u8> = (off..off + l).map(byte).collect();
            assert!(got == want, "{name}: run at +{off:#x}");
        }
        let pm = set.pagemap(t.pid as u32).unwrap();
        let inside: u64 = pm
            .runs
            .iter()
            .filter(|r| r.offset.is_some() && r.vaddr >= addr && r.end() <= addr + len)
            .map(|r| r.nr_pages * 4096)
            .sum();
        assert_eq!(inside, touched, "{name}: present bytes in the mapping");
        // VmFlags (read by a thread while the dump goes on) reach mm.img:
        // the mapping's MADV_NOHUGEPAGE, the stack's MAP_GROWSDOWN.
        let mm = set.mm(t.pid as u32).unwrap();
        let vma = mm.vmas.iter().find(|v| v.start == addr).expect("the mapping");
        assert_eq!(vma.madv, Some(1 << libc::MADV_NOHUGEPAGE), "{name}: madv");
        assert!(
            mm.vmas.iter().any(|v| v.flags & libc::MAP_GROWSDOWN as u32 != 0),
            "{name}: the stack grows down"
        );
    }
    assert!(t.alive());
}

/// File locks: refused without --file-locks (nothing written, program
/// untouched); recorded in filelocks.img with it.
#[test]
fn file_locks_need_the_flag_and_are_recorded() {
    let work = tmp_dir("locks");
    let (t, line) = Target::start("locks", &[work.to_str().unwrap()]);
    let imgs = tmp_dir("locks-img");
    let err = dump::dump(DumpOpts::new(t.pid, &imgs)).unwrap_err().to_string();
    assert!(
        err.contains("--file-locks") && err.contains(&t.pid.to_string()),
        "{err}"
    );
    assert!(images_of(&imgs).is_empty());
    assert_eq!(tracer(t.pid), 0);

    let mut o = DumpOpts::new(t.pid, &imgs);
    o.file_locks = true;
    o.leave_running = true;
    dump::dump(o).unwrap();
    let set = ImageSet::open(&imgs).unwrap();
    let locks: Vec<pb::FileLockEntry> = set.entries("filelocks.img", "FILE_LOCKS").unwrap();
    let a: i32 = kv(&line, "a").parse().unwrap();
    let b: i32 = kv(&line, "b").parse().unwrap();
    let pa = locks.iter().find(|l| l.fd == a).expect("POSIX lock");
    assert_eq!(
        (pa.flag, pa.r#type, pa.pid, pa.start, pa.len),
        (1, libc::F_WRLCK as u32, t.pid, 10, 100)
    );
    let fb = locks.iter().find(|l| l.fd == b).expect("flock");
    assert_eq!((fb.flag, fb.r#type, fb.len), (2, libc::F_RDLCK as u32, 0));
    ask(t.pid, &work.join("verify"), "ok");
}

fn state_of(pid: i32) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s.rsplit(')').next().unwrap().trim_start().chars().next().unwrap()
}

/// A stopped process (state T) is recorded as stopped (with its stop
/// signal), stays stopped after a --leave-running dump, and works once continued.
#[test]
fn stopped_process_is_recorded_as_stopped() {
    let out = tmp_dir("stopped").join("out");
    let (t, _) = Target::start("spin", &[out.to_str().unwrap()]);
    assert!(kill(t.pid, libc::SIGSTOP));
    for _ in 0..polls(5) {
        if state_of(t.pid) == 'T' {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(state_of(t.pid), 'T');
    let imgs = tmp_dir("stopped-img");
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    let set = ImageSet::open(&imgs).unwrap();
    let tc = set.core(t.pid as u32).unwrap().tc.unwrap();
    assert_eq!(tc.task_state, dump::TASK_STOPPED);
    assert_eq!(tc.stop_signo, Some(libc::SIGSTOP as u32));
    // Stopped again once we let go (the SIGSTOP we send takes effect at once,
    // but asynchronously).
    for _ in 0..polls(5) {
        if state_of(t.pid) == 'T' {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(state_of(t.pid), 'T', "still stopped after the dump");
    assert!(kill(t.pid, libc::SIGCONT));
    ask(t.pid, &out, "ok");
}

/// memfd and shared anonymous memory: one MEMFD_INODE per object however many
/// processes map it, its data once in pagemap-shmem-INO + pages, and every
/// mapping pointing at it.
#[test]
fn shared_memory_is_dumped_once() {
    let work = tmp_dir("shm");
    let imgs = tmp_dir("shm-img");
    let (t, line) = Target::start("shm", &[work.to_str().unwrap()]);
    let child: i32 = kv(&line, "child").parse().unwrap();
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    let set = ImageSet::open(&imgs).unwrap();
    let inodes: Vec<pb::MemfdInodeEntry> = set.entries("memfd.img", "MEMFD_INODE").unwrap();
    assert_eq!(inodes.len(), 2, "{inodes:?}");
    let memfd = inodes
        .iter()
        .find(|i| i.name == "cryo-test-memfd")
        .expect("memfd inode");
    let anon = inodes
        .iter()
        .find(|i| i.name == "/dev/zero")
        .expect("shared anon inode");
    assert_eq!((memfd.size, anon.size), (128 << 10, 64 << 10));
    let contents = |ino: &pb::MemfdInodeEntry| -> Vec<u8> {
        let name = format!("pagemap-shmem-{}.img", ino.shmid);
        let e: Vec<pb::PagemapEntry> = set.entries(&name, "PAGEMAP").unwrap();
        let head: Vec<pb::PagemapHead> = set.entries(&name, "PAGEMAP").unwrap();
        let pages = std::fs::read(imgs.join(format!("pages-{}.img", head[0].pages_id))).unwrap();
        let mut out = vec![0u8; ino.size as usize];
        let mut at = 0usize;
        for r in &e[1..] {
            let n = r.nr_pages.unwrap() as usize * 4096;
            out[r.vaddr as usize..r.vaddr as usize + n].copy_from_slice(&pages[at..at + n]);
            at += n;
        }
        out
    };
    assert!(contents(memfd) == pattern(128 << 10, 4242), "memfd data");
    assert!(
        contents(anon)[4096..] == pattern((64 << 10) - 4096, 4343)[..],
        "shared anon data"
    );
    let files = set.files().unwrap();
    for pid in [t.pid as u32, child as u32] {
        let mm = set.mm(pid).unwrap();
        let shared: Vec<u32> = mm
            .vmas
            .iter()
            .filter(|v| v.status & (1 << 14) != 0)
            .map(|v| {
                files
                    .iter()
                    .find(|f| f.id == v.shmid as u32)
                    .unwrap()
                    .memfd
                    .unwrap()
                    .inode_id
            })
            .collect();
        let mut want = vec![memfd.inode_id as u32, anon.inode_id as u32];
        let mut got = shared.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "pid {pid} maps both objects");
    }
    let fds = set.fdinfo(set.ids(t.pid as u32).unwrap().files_id).unwrap();
    let mfd = fdi(&fds, &kv(&line, "fd"));
    assert_eq!(mfd.r#type, pb::FdTypes::Memfd as i32);
    assert_eq!(mfd.flags, libc::FD_CLOEXEC as u32);
    for pid in [t.pid, child] {
        assert_eq!(ask(pid, &work.join(format!("verify-{pid}")), "\n").trim(), "ok");
    }
    kill(child, libc::SIGKILL);
}

/// A 512 KiB tmpfs on `dir` (a disk that fills up during a dump), unmounted when dropped.
struct SmallTmpfs<'a>(&'a Path);

impl<'a> SmallTmpfs<'a> {
    fn mount(dir: &'a Path, name: &str) -> Self {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", name])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a small tmpfs");
        SmallTmpfs(dir)
    }
}

impl Drop for SmallTmpfs<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

/// Disk full: the dump fails before the tree is touched for good (it goes on
/// running), nothing that looks like an image set is left.
#[test]
fn full_disk_fails_cleanly() {
    let work = tmp_dir("full");
    let imgs = tmp_dir("full-img");
    let _u = SmallTmpfs::mount(&imgs, "cryo-test-full");
    let (t, _) = Target::start("state", &[work.to_str().unwrap()]);
    wait_threads_parked(t.pid);
    for reader in [dump::PageReader::Vmsplice, dump::PageReader::Readv] {
        let mut o = DumpOpts::new(t.pid, &imgs);
        o.pages = reader;
        let err = dump::dump(o).unwrap_err().to_string();
        assert!(
            err.contains("available") || err.contains("No space left"),
            "{reader:?}: {err}"
        );
        assert!(images_of(&imgs).is_empty(), "{reader:?}: left {:?}", images_of(&imgs));
        assert_eq!(tracer(t.pid), 0);
    }
    assert!(ask(t.pid, &work.join("verify"), "heap=").starts_with("ok "));
}

/// A zombie child is recorded with its exit status only (pstree + core).
#[test]
fn zombie_children_are_recorded() {
    let work = tmp_dir("zombie");
    let imgs = tmp_dir("zombie-img");
    let (t, line) = Target::start("zombie", &[work.to_str().unwrap()]);
    let z: u32 = kv(&line, "zombie").parse().unwrap();
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    let s = dump::dump(o).unwrap();
    assert_eq!(s.processes, 2);
    let set = ImageSet::open(&imgs).unwrap();
    let tree = set.pstree().unwrap();
    let ze = tree.iter().find(|e| e.pid == z).expect("zombie in pstree");
    assert_eq!((ze.ppid, ze.threads.clone()), (t.pid as u32, vec![z]));
    let core = set.core(z).unwrap();
    let tc = core.tc.unwrap();
    assert_eq!(tc.task_state, dump::TASK_DEAD);
    assert_eq!(tc.exit_code, 3 << 8);
    assert!(core.thread_info.is_none());
    assert!(!imgs.join(format!("mm-{z}.img")).exists());
    ask(t.pid, &work.join("verify"), "ok");
}

/// seccomp filters: both programs in seccomp.img, chained newest -> oldest,
/// the thread pointing at the newest; the parasite ran despite them.
#[test]
fn seccomp_filters_are_dumped() {
    let work = tmp_dir("seccomp");
    let imgs = tmp_dir("seccomp-img");
    let (t, _) = Target::start("seccomp", &[work.to_str().unwrap()]);
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    let set = ImageSet::open(&imgs).unwrap();
    let se: Vec<pb::SeccompEntry> = set.entries("seccomp.img", "SECCOMP").unwrap();
    let f = &se[0].seccomp_filters;
    assert_eq!(f.len(), 2);
    let tcore = set.core(t.pid as u32).unwrap().thread_core.unwrap();
    assert_eq!(tcore.seccomp_mode, Some(2));
    let newest = tcore.seccomp_filter.unwrap() as usize;
    assert_eq!(f[newest].filter.len(), 4 * 8, "the acct filter");
    let older = f[newest].prev.unwrap() as usize;
    assert_eq!(f[older].filter.len(), 8, "the allow-all filter");
    assert_eq!(f[older].prev, None);
    assert_eq!(tcore.creds.unwrap().no_new_privs, Some(1));
    assert_eq!(ask(t.pid, &work.join("verify"), "\n").trim(), "ok");
}

/// A program whose binary was deleted while it runs: the exe and its
/// mappings are saved as a ghost file with the binary's bytes.
#[test]
fn deleted_executable_becomes_a_ghost() {
    let dir = tmp_dir("delexe");
    let bin = dir.join("spin-copy");
    std::fs::copy(prog("spin"), &bin).unwrap();
    let bytes = std::fs::read(&bin).unwrap();
    let out = dir.join("out");
    let (t, _) = Target::start_bin(&bin, &[out.to_str().unwrap()]);
    std::fs::remove_file(&bin).unwrap();
    let imgs = tmp_dir("delexe-img");
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    let set = ImageSet::open(&imgs).unwrap();
    let mm = set.mm(t.pid as u32).unwrap();
    let files = set.files().unwrap();
    assert!(reg(&files, mm.exe_file_id).name.ends_with("/delexe/spin-copy"));
    let remaps: Vec<pb::RemapFilePathEntry> = set.entries("remap-fpath.img", "REMAP_FPATH").unwrap();
    let rm = remaps
        .iter()
        .find(|r| r.orig_id == mm.exe_file_id)
        .expect("exe remapped to a ghost");
    let content = ghost_content(&set, rm.remap_id);
    assert!(content == bytes, "ghost holds the deleted binary");
    ask(t.pid, &out, "ok");
}

/// A deleted file over --ghost-limit is refused (as criu does), within it saved.
#[test]
fn ghost_limit_is_enforced() {
    let work = tmp_dir("glimit");
    let (t, _) = Target::start("state", &[work.to_str().unwrap()]);
    wait_threads_parked(t.pid);
    let imgs = tmp_dir("glimit-img");
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.ghost_limit = 4096; // the ghost of `state` holds 10000 bytes
    let err = dump::dump(o).unwrap_err().to_string();
    assert!(err.contains("ghost limit") && err.contains("ghost.bin"), "{err}");
    assert!(images_of(&imgs).is_empty());
    assert_eq!(tracer(t.pid), 0);
    let mut o = DumpOpts::new(t.pid, &imgs);
    // criu counts the data blocks: 10000 bytes take three 4 KiB blocks.
    o.ghost_limit = 12288;
    o.leave_running = true;
    dump::dump(o).unwrap();
    assert!(ask(t.pid, &work.join("verify"), "heap=").starts_with("ok "));
}

/// A shell job on a pty (its session, the "shell", outside the dumped tree):
/// refused without --shell-job; with it, the fds become TTY entries pointing
/// at one tty-info.img entry with the terminal's session, foreground group,
/// termios and window size. Dumping the shell too (the terminal's session
/// inside the tree) with -j is refused.
#[test]
fn shell_job_terminal_is_dumped_with_j() {
    // The slave stays open here too: a master whose slave is closed reads EIO.
    let (mut master, slave, _slave_fd) = pty::open_pty(33, 97);
    let mut shell = std::process::Command::new(prog("ttyjob"))
        .arg(&slave)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sh = shell.id() as i32;
    let out = pty::read_until(&mut master, "\n");
    let job: i32 = out.trim().strip_prefix("ready ").unwrap().parse().unwrap();

    let refused = tmp_dir("tty-refused");
    let err = dump::dump(DumpOpts::new(job, &refused)).unwrap_err().to_string();
    assert!(err.contains("--shell-job") && err.contains(&job.to_string()), "{err}");
    assert!(images_of(&refused).is_empty());
    assert_eq!(tracer(job), 0);

    let imgs = tmp_dir("tty-img");
    let mut o = DumpOpts::new(job, &imgs);
    o.shell_job = true;
    o.leave_running = true;
    dump::dump(o).unwrap();
    // The job still echoes after a leave-running dump.
    use std::io::Write;
    master.write_all(b"hello\n").unwrap();
    pty::read_until(&mut master, "tty:hello");

    let set = ImageSet::open(&imgs).unwrap();
    let r = cryo_image::check::check_set(&set);
    assert!(r.is_ok(), "{r}");
    let ids = set.ids(job as u32).unwrap();
    let fds = set.fdinfo(ids.files_id).unwrap();
    let files = set.files().unwrap();
    let index: u32 = slave.strip_prefix("/dev/pts/").unwrap().parse().unwrap();
    let mut tty_id = None;
    for fd in ["0", "1", "2"] {
        let e = fdi(&fds, fd);
        assert_eq!(e.r#type, pb::FdTypes::Tty as i32, "fd {fd}");
        let f = files.iter().find(|f| f.id == e.id && f.tty.is_some()).unwrap();
        let t = f.tty.as_ref().unwrap();
        assert_eq!(t.tty_info_id, index << 1);
        assert_eq!(t.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
        assert_eq!(reg(&files, t.regf_id.unwrap()).name, slave);
        assert_eq!(*tty_id.get_or_insert(e.id), e.id, "one open file behind fds 0-2");
    }
    let infos: Vec<pb::TtyInfoEntry> = set.entries("tty-info.img", "TTY_INFO").unwrap();
    assert_eq!(infos.len(), 2, "the pty and /dev/tty");
    // /dev/tty (fd 5): CRIU's CTTY terminal, of the shell's session.
    let c = fdi(&fds, "5");
    let cf = files.iter().find(|f| f.id == c.id).unwrap().tty.as_ref().unwrap();
    assert_eq!(cf.tty_info_id, 1006 << 1);
    assert_eq!(reg(&files, cf.regf_id.unwrap()).name, "/dev/tty");
    let ct = infos.iter().find(|i| i.id == 1006 << 1).unwrap();
    assert_eq!((ct.r#type, ct.sid), (pb::TtyType::Ctty as i32, sh as u32));
    let i = infos.iter().find(|i| i.id == index << 1).unwrap();
    assert_eq!(i.id, index << 1);
    assert_eq!(i.r#type, pb::TtyType::Pty as i32);
    assert_eq!(i.pty.as_ref().unwrap().index, index);
    assert_eq!(i.sid, sh as u32, "the shell's session");
    assert_eq!(i.pgrp, job as u32, "the job is the foreground group");
    let w = i.winsize.as_ref().unwrap();
    assert_eq!((w.ws_row, w.ws_col), (33, 97));
    let tm = i.termios.as_ref().unwrap();
    assert_eq!(tm.c_cc.len(), 19);
    // The line discipline's state as the test sees it from the master side.
    // SAFETY: a zeroed termios is filled by tcgetattr.
    let mut now: libc::termios = unsafe { std::mem::zeroed() };
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd and out pointer.
    assert_eq!(unsafe { libc::tcgetattr(master.as_raw_fd(), &mut now) }, 0);
    assert_eq!(
        (tm.c_iflag, tm.c_oflag, tm.c_lflag),
        (now.c_iflag, now.c_oflag, now.c_lflag)
    );
    assert_eq!(tm.c_cc[libc::VINTR], now.c_cc[libc::VINTR] as u32);
    assert!(i.termios_locked.is_some());

    // The shell with its job: the terminal's session is inside the tree,
    // so it is no shell job: refused, and both go on.
    let whole = tmp_dir("tty-session-inside");
    let mut o = DumpOpts::new(sh, &whole);
    o.shell_job = true;
    let err = dump::dump(o).unwrap_err().to_string();
    assert!(
        err.contains(&format!("controlling terminal of session {sh}")) && err.contains(&slave),
        "{err}"
    );
    assert!(images_of(&whole).is_empty());
    assert_eq!((tracer(sh), tracer(job)), (0, 0));
    master.write_all(b"again\n").unwrap();
    pty::read_until(&mut master, "echo:again");

    assert!(kill(job, libc::SIGKILL));
    let _ = shell.wait();
}

/// The anon-inode kinds: each entry in files.img holds what the `fdkinds`
/// program set up, with the fields CRIU 4.2 sets (as in the fdzoo fixture).
#[test]
fn eventfd_timerfd_signalfd_inotify_epoll_are_recorded() {
    use std::os::unix::fs::MetadataExt;
    let work = tmp_dir("fdkinds");
    let imgs = tmp_dir("fdkinds-img");
    let (t, line) = Target::start("fdkinds", &[work.to_str().unwrap()]);
    let fdn = |k: &str| kv(&line, k).parse::<u32>().unwrap();
    // The anon inode every one of these fds lives on.
    let anon = std::fs::metadata(format!("/proc/{}/fd/{}", t.pid, fdn("efd"))).unwrap();
    dump::dump(DumpOpts::new(t.pid, &imgs)).unwrap();
    assert!(wait_gone(t.pid));
    let set = ImageSet::open(&imgs).unwrap();
    let fds = set.fdinfo(set.ids(t.pid as u32).unwrap().files_id).unwrap();
    let files = set.files().unwrap();
    let entry = |k: &str, ty: pb::FdTypes| {
        let fe = fdi(&fds, &kv(&line, k));
        assert_eq!(fe.r#type, ty as i32, "{k}");
        let f = files.iter().find(|f| f.id == fe.id).unwrap().clone();
        assert_eq!(f.r#type, ty as i32, "{k}");
        (fe, f)
    };
    let rdwr_nb = (libc::O_RDWR | libc::O_NONBLOCK) as u32;
    let cloexec = libc::FD_CLOEXEC as u32;

    let (fe, f) = entry("efd", pb::FdTypes::Eventfd);
    let e = f.efd.unwrap();
    assert_eq!((e.counter, e.flags, fe.flags), (0x1_0000_0007, rdwr_nb, cloexec));

    let (fe, f) = entry("tfd", pb::FdTypes::Timerfd);
    let e = f.tfd.unwrap();
    assert_eq!((e.clockid, e.settime_flags, e.flags, fe.flags), (1, 0, rdwr_nb, 0));
    assert_eq!((e.isec, e.insec), (0, 100_000_000));
    assert!(e.vsec == 0 && e.vnsec <= 100_000_000, "{e:?}");
    let (fe, f) = entry("tabs", pb::FdTypes::Timerfd);
    let e = f.tfd.unwrap();
    assert_eq!(
        (e.clockid, e.settime_flags, e.flags, fe.flags),
        (
            libc::CLOCK_REALTIME as u32,
            libc::TFD_TIMER_ABSTIME as u32,
            libc::O_RDWR as u32,
            cloexec
        )
    );
    assert_eq!((e.isec, e.insec, e.ticks), (3, 500_000_000, 0));
    assert!((800..1000).contains(&e.vsec), "time left, not the date: {e:?}");
    let (_, f) = entry("tick", pb::FdTypes::Timerfd);
    let e = f.tfd.unwrap();
    assert_eq!(e.clockid, libc::CLOCK_BOOTTIME as u32);
    assert_eq!(
        (e.ticks, e.vsec, e.vnsec, e.isec, e.insec),
        (1, 0, 0, 0, 0),
        "one unread expiry"
    );

    let (_, f) = entry("sfd", pb::FdTypes::Signalfd);
    let e = f.sgfd.unwrap();
    let mask = (1u64 << (libc::SIGUSR2 - 1)) | (1u64 << (libc::SIGRTMIN() + 1 - 1));
    assert_eq!((e.sigmask, e.flags), (mask, rdwr_nb));

    let (_, f) = entry("ifd", pb::FdTypes::Inotify);
    let e = f.ify.unwrap();
    assert_eq!(e.flags, libc::O_NONBLOCK as u32);
    let mut wds: Vec<_> = e.wd.iter().map(|w| (w.wd, w.mask)).collect();
    wds.sort();
    let (cr, md, dl) = (libc::IN_CREATE, libc::IN_MODIFY, libc::IN_DELETE);
    assert_eq!(wds, vec![(fdn("wd1"), cr), (fdn("wd3"), cr | md), (fdn("wd4"), dl)]);
    assert_eq!((fdn("wd1"), fdn("wd3"), fdn("wd4")), (1, 3, 4));
    for (wd, sub) in [(1, "fdk-w1"), (3, "fdk-w3"), (4, "fdk-w2")] {
        let w = e.wd.iter().find(|w| w.wd == wd).unwrap();
        let dir = work.join(sub);
        let md = std::fs::metadata(&dir).unwrap();
        let kdev = (libc::major(md.dev()) << 20) | libc::minor(md.dev());
        assert_eq!(
            (w.i_ino, w.s_dev, w.ignored_mask, w.id),
            (md.ino(), kdev, 0, 0),
            "wd {wd}"
        );
        let fh = &w.f_handle;
        assert!(fh.bytes > 0 && fh.handle.len() >= 16 && fh.mnt_id.is_none(), "{fh:?}");
        assert_eq!(fh.path.as_deref(), Some(dir.to_str().unwrap()), "wd {wd}");
    }

    let (fe, f) = entry("ep", pb::FdTypes::Eventpoll);
    let e = f.epfd.unwrap();
    assert_eq!((e.flags, fe.flags), (libc::O_RDWR as u32, cloexec));
    let mut items: Vec<_> = e.tfd.iter().map(|x| (x.tfd, x.events, x.data)).collect();
    items.sort();
    let base = (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32;
    let mut want = vec![
        (fdn("efd"), base | libc::EPOLLET as u32, 0x1111000000000001),
        (fdn("tfd"), base, 0x2222000000000002),
        (fdn("sfd"), base, 0x3333000000000003),
        (fdn("ifd"), base, 0x4444000000000004),
    ];
    want.sort();
    assert_eq!(items, want);
    for x in &e.tfd {
        assert_eq!(x.id, 0);
        assert_eq!((x.inode, x.pos), (Some(anon.ino()), Some(0)));
        assert_eq!(x.dev, Some((libc::major(anon.dev()) << 20) | libc::minor(anon.dev())));
    }
}

/// An epoll item whose target fd was closed cannot be restored under its
/// number: the dump refuses it, writes no image set, and the program goes on.
#[test]
fn epoll_with_a_closed_target_is_refused() {
    let work = tmp_dir("fdkinds-closed");
    let imgs = tmp_dir("fdkinds-closed-img");
    let (t, _) = Target::start("fdkinds", &[work.to_str().unwrap(), "closed-target"]);
    let err = dump::dump(DumpOpts::new(t.pid, &imgs)).unwrap_err().to_string();
    assert!(
        err.contains("epoll target fd") && err.contains(&t.pid.to_string()) && err.contains("closed"),
        "{err}"
    );
    assert!(!imgs.join("inventory.img").exists());
    assert_eq!(tracer(t.pid), 0);
    assert!(t.alive());
    assert_eq!(ask(t.pid, &work.join("fdkinds.verify"), "o").trim(), "ok");
}

/// CPU affinity: threads pinned to {0} and {1} are written to the sidecar
/// (cryo.json) with their CPU lists, a thread allowed on every online
/// CPU ({0,1}) is left out, the set still passes `crit check`, and the
/// program's own check still passes after the dump (--leave-running).
#[test]
fn pinned_threads_go_to_the_affinity_sidecar() {
    let work = tmp_dir("affin");
    let imgs = tmp_dir("affin-img");
    let (t, line) = Target::start("affinity", &["pin", work.to_str().unwrap()]);
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    assert!(imgs.join("inventory.img").exists());
    let text = std::fs::read_to_string(imgs.join(cryo_image::sidecar::FILE)).unwrap();
    let side = cryo_image::sidecar::parse(&text).unwrap();
    let (main, t1) = (kv(&line, "main"), kv(&line, "t1"));
    let got: Vec<(String, String)> = side
        .affinity
        .iter()
        .map(|(t, c)| (t.to_string(), cryo_image::sidecar::format_cpulist(c)))
        .collect();
    assert_eq!(
        got,
        vec![(main.clone(), "0".into()), (t1.clone(), "1".into())],
        "{text}"
    );
    // The text is the documented shape: version 2, affinity: tid -> cpulist.
    assert!(text.contains("\"version\": 2"), "{text}");
    assert!(text.contains("\"affinity\""), "{text}");
    assert!(text.contains(&format!("\"{main}\": \"0\"")), "{text}");
    // Every core-TID has a thread; the sidecar does not upset crit check.
    let set = ImageSet::open(&imgs).unwrap();
    let r = cryo_image::check::check_set(&set);
    assert!(r.is_ok(), "{r}");
    for tid in [&main, &t1, &kv(&line, "t2")] {
        assert!(imgs.join(format!("core-{tid}.img")).exists());
    }
    assert_eq!(tracer(t.pid), 0);
    assert_eq!(
        ask(t.pid, &work.join("affinity.verify"), "affinity=").trim(),
        "affinity=ok"
    );
}

/// An unpinned program: no sidecar (the file set is CRIU's), and a stale
/// sidecar from an earlier dump into the same directory is removed.
#[test]
fn unpinned_threads_write_no_affinity_sidecar() {
    let work = tmp_dir("noaffin");
    let imgs = tmp_dir("noaffin-img");
    let stale = imgs.join(cryo_image::sidecar::FILE);
    std::fs::write(&stale, "{\"version\": 2, \"affinity\": {\"1\": \"0\"}}\n").unwrap();
    let stale_v1 = imgs.join(cryo_image::sidecar::LEGACY_FILE);
    std::fs::write(&stale_v1, "{\"version\": 1, \"threads\": {\"1\": \"0\"}}\n").unwrap();
    let (t, _) = Target::start("affinity", &["none", work.to_str().unwrap()]);
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.leave_running = true;
    dump::dump(o).unwrap();
    assert!(imgs.join("inventory.img").exists());
    assert!(
        !stale.exists() && !stale_v1.exists(),
        "stale sidecar kept: {:?}",
        images_of(&imgs)
    );
    assert!(
        images_of(&imgs)
            .iter()
            .all(|n| n.ends_with(".img") || n == "stats-dump"),
        "{:?}",
        images_of(&imgs)
    );
    assert_eq!(
        ask(t.pid, &work.join("affinity.verify"), "affinity=").trim(),
        "affinity=ok"
    );
}

/// A dump that fails after the affinity sidecar was written (here: no room
/// for the pages, found once every image but the pages is written) removes
/// it with the other images; the program runs on with its affinity.
#[test]
fn a_failed_dump_removes_the_affinity_sidecar() {
    let work = tmp_dir("affin-full");
    let imgs = tmp_dir("affin-full-img");
    let _u = SmallTmpfs::mount(&imgs, "cryo-test-affin-full");
    let (t, _) = Target::start("affinity", &["pin", work.to_str().unwrap()]);
    let mut o = DumpOpts::new(t.pid, &imgs);
    o.pages = dump::PageReader::Vmsplice;
    let err = dump::dump(o).unwrap_err().to_string();
    assert!(err.contains("available"), "{err}");
    assert!(images_of(&imgs).is_empty(), "left {:?}", images_of(&imgs));
    assert_eq!(tracer(t.pid), 0);
    assert_eq!(
        ask(t.pid, &work.join("affinity.verify"), "affinity=").trim(),
        "affinity=ok"
    );
}

/// A tree whose children are born and die all the time (each exits at once and is reaped) is
/// frozen and dumped: a child that exits between being listed and being seized is simply not part
/// of the tree. Dumped ten times with --leave-running; the parent is untraced after each and
/// still forking.
#[test]
fn a_tree_that_forks_and_reaps_all_the_time_is_dumped() {
    let (t, _) = Target::start("forker", &[]);
    for i in 0..10 {
        let imgs = tmp_dir(&format!("forker-img{i}"));
        let mut o = DumpOpts::new(t.pid, &imgs);
        o.leave_running = true;
        let s = dump::dump(o).unwrap_or_else(|e| panic!("dump {i}: {e}"));
        assert!(s.processes >= 1, "dump {i}");
        let set = ImageSet::open(&imgs).unwrap();
        let r = cryo_image::check::check_set(&set);
        assert!(r.is_ok(), "dump {i}: {r}");
        assert_eq!(set.pstree().unwrap()[0].pid as i32, t.pid);
        assert_eq!(tracer(t.pid), 0, "dump {i}: the parent is still traced");
        std::fs::remove_dir_all(&imgs).unwrap();
    }
    assert!(t.alive());
}

/// The contents of ghost-file-<id>.img: the blob after the entry (small
/// files, as CRIU writes them) or the chunks put at their offsets.
fn ghost_content(set: &cryo_image::ImageSet, id: u32) -> Vec<u8> {
    let img = set.image(&format!("ghost-file-{id}.img")).unwrap();
    let head: pb::GhostFileEntry =
        prost::Message::decode(prost::Message::encode_to_vec(&img.entries[0].msg).as_slice()).unwrap();
    if head.chunks != Some(true) {
        match &img.entries[0].extra {
            cryo_image::Extra::Blob(b) => return b.clone(),
            _ => return Vec::new(),
        }
    }
    let mut out = vec![0u8; head.size.unwrap() as usize];
    for e in &img.entries[1..] {
        let c: pb::GhostChunkEntry = prost::Message::decode(prost::Message::encode_to_vec(&e.msg).as_slice()).unwrap();
        let cryo_image::Extra::Blob(d) = &e.extra else {
            panic!("chunk without data")
        };
        out[c.off as usize..c.off as usize + d.len()].copy_from_slice(d);
    }
    out
}
