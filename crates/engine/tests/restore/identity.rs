//! The image-identity check (issue 11): a refactoring of the engine must not change one byte of what
//! `cryo dump` writes. Real test programs are started in a fresh namespace and each live, idle process
//! is dumped with `--leave-running` by a baseline cryo and then by the cryo under test; the two image
//! sets are compared file by file, byte for byte ([`compare_sets`]).
//!
//! * `identity_two_dumps_of_an_idle_program_compare_equal` (always run) dumps one idle program twice
//!   with the current cryo and also shows that the comparator sees a flipped byte, a changed register
//!   and a disarmed timer: the comparator is tested.
//! * `identity_against_baseline` (ignored; run by `scripts/image-identity.sh OLD_CRYO [NEW_CRYO]`)
//!   does it for every program of [`CASES`] with `CRYO_BASELINE` (the old binary) against `CRYO_NEW`
//!   (default: this build's cryo).
//!
//! What two dumps of one live process may legitimately differ in, and nothing else, is masked
//! ([`mask`]); everything else must be equal to the byte:
//! * `stats-dump`: the four `*_time` fields (how long freezing, the frozen period, the memory dump
//!   and write took); the page and pipe counts stay compared;
//! * `inventory.img`: `dump_criu_run_id`, a fresh UUID per dump (present in both);
//! * `timens-*.img`: `monotonic` and `boottime`, the clocks read at the dump (the second not earlier);
//! * `core-*.img`: the remaining time of armed timers (`tc.timers.{real,virt,prof}.{vsec,vusec}`, and
//!   `vsec`, `vnsec`, `overrun` of POSIX timers), only where the timer is armed (a value or an interval
//!   left) in both dumps: a periodic timer read just as it expires shows a value of 0;
//! * `core-*.img` of a stopped program: the sender pid of a pending SIGCONT, which the previous dump's
//!   cryo sent (the rest of its siginfo stays compared);
//! * `files.img`: the remaining time and expiration count (`vsec`, `vnsec`, `ticks`) of timerfds armed
//!   (a value or an interval left) in both dumps.
//!
//! A first dump of each program is taken and thrown away before the two compared ones: it moves threads
//! asleep in a system call that restarts through a restart block (nanosleep, poll with a timeout) into
//! `restart_syscall`, where they stay from then on, and sets the access time of the files it reads
//! (ghost files), which relatime leaves alone from then on. Programs that keep working on their own
//! (periodic timers, polling loops) are stopped (SIGSTOP) before the dumps: their memory stays as it is.
//! Every program runs on one CPU (taskset): the kernel writes the CPU number and concurrency id of a
//! thread into its rseq area when the thread runs on another CPU than before, which would change a
//! page of memory between two dumps. (ASLR needs no switching off: both dumps are of one process.)

use super::*;

/// One program of the baseline check: the shell command starting it in /tmp/anchor (its cwd), the
/// file there that is non-empty once it is set up, extra `cryo dump` options, whether it keeps
/// working on its own (then it is stopped before the dumps) and what it covers.
struct Case {
    name: &'static str,
    prog: &'static str,
    cmd: &'static str,
    ready: &'static str,
    opts: &'static str,
    busy: bool,
}

/// `{}` in `cmd` is the program's binary.
const CASES: &[Case] = &[
    // Heap pattern, 4 threads with registers set, a pipe and a FIFO with data, a ghost file, files at
    // offsets, sigactions, blocked and pending signals, an itimer and a POSIX timer, umask.
    Case {
        name: "state",
        prog: "state",
        cmd: "{} /tmp/anchor",
        ready: "out",
        opts: "",
        busy: false,
    },
    // Signals, timers, an alternate stack, rlimits, fds and cwd.
    Case {
        name: "rstate",
        prog: "rstate",
        cmd: "{} /tmp/anchor",
        ready: "state.ready",
        opts: "",
        busy: true,
    },
    // eventfd, timerfds (periodic, absolute, fired), signalfd, inotify, epoll.
    Case {
        name: "fdkinds",
        prog: "fdkinds",
        cmd: "{} /tmp/anchor",
        ready: "out",
        opts: "",
        busy: true,
    },
    // Pipes of several sizes with 200000 queued bytes and per-description flags.
    Case {
        name: "fdstate-pipes",
        prog: "fdstate",
        cmd: "{} /tmp/anchor pipes",
        ready: "fdstate.ready",
        opts: "",
        busy: false,
    },
    // memfds: mode, contents, offset, seals, a shared mapping.
    Case {
        name: "fdstate-memfd",
        prog: "fdstate",
        cmd: "{} /tmp/anchor memfd",
        ready: "fdstate.ready",
        opts: "",
        busy: false,
    },
    // POSIX, flock and OFD locks on regular files.
    Case {
        name: "rlocks",
        prog: "rlocks",
        cmd: "{} /tmp/anchor",
        ready: "locks.ready",
        opts: "--file-locks",
        busy: true,
    },
    // Ghost files: small and sparse, two names of one inode, a shared mapping, O_TMPFILE.
    Case {
        name: "ghosts-reg",
        prog: "ghosts",
        cmd: "{} reg",
        ready: "ghosts.status",
        opts: "",
        busy: false,
    },
    // A removed cwd and directory, an unlinked FIFO with data, a device node, a symlink.
    Case {
        name: "ghosts-kinds",
        prog: "ghosts",
        cmd: "{} kinds",
        ready: "ghosts.status",
        opts: "",
        busy: false,
    },
    // Two pty pairs with queued data, a controlling terminal, a foreground group in a child.
    Case {
        name: "ptypair",
        prog: "ptypair",
        cmd: "sh -c 'mount -t devpts -o newinstance,ptmxmode=0666 cryo-pts /dev/pts && exec {} /tmp/anchor'",
        ready: "pty.ready",
        opts: "",
        busy: false,
    },
    // Threads of a non-root user with ambient capabilities.
    Case {
        name: "creds-plain",
        prog: "creds",
        cmd: "setpriv --reuid 1000 --regid 1000 --clear-groups --inh-caps +net_bind_service \
              --ambient-caps +net_bind_service {} plain /tmp/anchor",
        ready: "creds.ready",
        opts: "",
        busy: true,
    },
    // Threads with credentials of their own.
    Case {
        name: "creds-mixed",
        prog: "creds",
        cmd: "{} mixed /tmp/anchor",
        ready: "creds.ready",
        opts: "",
        busy: true,
    },
    // Threads asleep in system calls of every kind.
    Case {
        name: "sleepers",
        prog: "sleepers",
        cmd: "{} /tmp/anchor",
        ready: "sleepers.ready",
        opts: "",
        busy: true,
    },
    // SIGEV_THREAD timers, robust futexes, a SIGTRAP handler, a parent-death signal.
    Case {
        name: "tstate",
        prog: "tstate",
        cmd: "{} /tmp/anchor",
        ready: "tstate.ready",
        opts: "",
        busy: true,
    },
    // Unix sockets: pairs with queues both ways, shutdown states, listeners (path, abstract), a bound
    // datagram socket with queued datagrams, shared with a child (files.img UNIXSK, sk-queues.img).
    Case {
        name: "unixsk",
        prog: "unixsk",
        cmd: "{} /tmp/anchor",
        ready: "unixsk.ready",
        opts: "",
        busy: false,
    },
    // A private and a shared mapping of a memfd.
    Case {
        name: "memfdpriv",
        prog: "memfdpriv",
        cmd: "{}",
        ready: "memfdpriv.status",
        opts: "",
        busy: false,
    },
];

/// Start `case` in a fresh namespace and dump it three times with `--leave-running`: once with `old`
/// (thrown away, see the module doc), then with `old` into img-old and with `new` into img-new.
/// Returns the namespace (its /tmp/anchor holds the sets) or the dump's error.
fn dump_with_both(case: &Case, old: &str, new: &str) -> Result<Ns, String> {
    let bin = build_prog(case.prog);
    let cmd = case.cmd.replace("{}", &bin.display().to_string());
    let (ready, opts) = (case.ready, case.opts);
    // A stopped program: every thread in state T before the first dump.
    let stop = if case.busy {
        "kill -STOP $P; while grep -L '^State:.*T' /proc/$P/task/*/status | grep -q .; do sleep 0.02; done;"
    } else {
        ""
    };
    // The first CPU this test may run on.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cpus = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    let cpu: u32 = cpus.trim().split([',', '-']).next().unwrap().parse().unwrap();
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         taskset -c {cpu} {cmd} >/tmp/anchor/out 2>/dev/null </dev/null & P=$!; \
         while [ ! -s /tmp/anchor/{ready} ]; do sleep 0.02; done; sleep 0.2; {stop} \
         mkdir img-warm img-old img-new; \
         {old} dump --leave-running {opts} -t $P -D img-warm 2>.err-warm \
         && {old} dump --leave-running {opts} -t $P -D img-old 2>.err-old \
         && {new} dump --leave-running {opts} -t $P -D img-new 2>.err-new; \
         R=$?; cat .err-warm .err-old .err-new > .cryo-err 2>/dev/null; echo $R > /tmp/anchor/.cryo-rc; \
         exec sleep 100000"
    );
    let ns = Ns::start(&script);
    let (rc, err) = ns.cryo_result();
    if rc != 0 {
        return Err(format!("{}: cryo dump failed ({rc}): {err}", case.name));
    }
    Ok(ns)
}

/// What [`compare_sets`] found: the files that differ (with where and how) and the files equal only
/// after masking (with what was masked).
#[derive(Debug, Default)]
struct Comparison {
    mismatches: Vec<String>,
    masked: Vec<String>,
}

/// Compare two image sets file by file: the same names, and every file byte for byte, but for the
/// fields [`mask`] lets differ. A mismatch names the file, the first differing byte and (for protobuf
/// images) shows a diff of crit's JSON of both; for pages-*.img the page and its address.
fn compare_sets(a: &Path, b: &Path) -> Comparison {
    let names = |d: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let (na, nb) = (names(a), names(b));
    let mut out = Comparison::default();
    for n in na.symmetric_difference(&nb) {
        let side = if na.contains(n) { a } else { b };
        out.mismatches.push(format!("{n}: only in {}", side.display()));
    }
    for n in na.intersection(&nb) {
        let (da, db) = (std::fs::read(a.join(n)).unwrap(), std::fs::read(b.join(n)).unwrap());
        if da == db {
            continue;
        }
        let at = da
            .iter()
            .zip(&db)
            .position(|(x, y)| x != y)
            .unwrap_or(da.len().min(db.len()));
        let sizes = format!("{} vs {} bytes, first difference at byte {at}", da.len(), db.len());
        if n.starts_with("pages-") {
            out.mismatches.push(format!(
                "{n}: {sizes} (page {}{})",
                at / 4096,
                page_addr(a, n, at / 4096)
            ));
            continue;
        }
        let dec = |d: &[u8]| cryo_image::codec::decode(n, d).map(|i| cryo_image::json::image_to_json(&i, false));
        let (ja, jb) = match (dec(&da), dec(&db)) {
            (Ok(ja), Ok(jb)) => (ja, jb),
            (ea, eb) => {
                out.mismatches
                    .push(format!("{n}: {sizes}; not decodable: {:?} / {:?}", ea.err(), eb.err()));
                continue;
            }
        };
        let (mut ma, mut mb) = (ja.clone(), jb.clone());
        match mask(n, &mut ma, &mut mb) {
            Ok(what) if !what.is_empty() && ma == mb => {
                out.masked.push(format!("{n}: equal but for {}", what.join(", ")));
            }
            r => {
                let why = r.err().map(|e| format!("; {e}")).unwrap_or_default();
                out.mismatches
                    .push(format!("{n}: {sizes}{why}\n{}", json_diff(&ja, &jb)));
            }
        }
    }
    out
}

/// A unified diff of the pretty JSON of two images, at most 80 lines.
fn json_diff(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let (ta, tb) = (
        serde_json::to_string_pretty(a).unwrap(),
        serde_json::to_string_pretty(b).unwrap(),
    );
    let d = similar::TextDiff::from_lines(&ta, &tb)
        .unified_diff()
        .context_radius(3)
        .header("a", "b")
        .to_string();
    let lines: Vec<&str> = d.lines().collect();
    let mut s = lines.iter().take(80).copied().collect::<Vec<_>>().join("\n");
    if lines.len() > 80 {
        s.push_str(&format!("\n... ({} more lines)", lines.len() - 80));
    }
    s
}

/// " at 0xADDR (pagemap-PID.img)" of page `page` of pages file `name`, found through the pagemaps.
fn page_addr(dir: &Path, name: &str, page: usize) -> String {
    let id: u64 = name
        .trim_start_matches("pages-")
        .trim_end_matches(".img")
        .parse()
        .unwrap_or(0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let pm = e.file_name().to_string_lossy().into_owned();
        if !pm.starts_with("pagemap-") {
            continue;
        }
        let Ok(j) = cryo_image::json::decode_to_json(&pm, &std::fs::read(e.path()).unwrap(), false) else {
            continue;
        };
        let entries = j["entries"].as_array().cloned().unwrap_or_default();
        if entries.first().and_then(|h| h["pages_id"].as_u64()) != Some(id) {
            continue;
        }
        let mut n = 0usize;
        for r in &entries[1..] {
            let (vaddr, nr) = (
                r["vaddr"].as_u64().unwrap_or(0),
                r["nr_pages"].as_u64().unwrap_or(0) as usize,
            );
            if r["flags"].as_u64().unwrap_or(0) & cryo_image::PE_PRESENT as u64 == 0 {
                continue;
            }
            if page < n + nr {
                return format!(" at {:#x}, {pm}", vaddr + 4096 * (page - n) as u64);
            }
            n += nr;
        }
    }
    String::new()
}

/// Blank, in both JSON forms of image `name`, the fields two dumps of one live process may differ in
/// (see the module doc); returns what was blanked, or why the two cannot be equal.
fn mask(name: &str, a: &mut serde_json::Value, b: &mut serde_json::Value) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let mut what = Vec::new();
    let (ea, eb) = match (a["entries"].as_array_mut(), b["entries"].as_array_mut()) {
        (Some(ea), Some(eb)) if ea.len() == eb.len() => (ea, eb),
        _ => return Err("different entry counts".into()),
    };
    // Blank `keys` of objects `x` and `y` if `ok(x, y)`; note it as `label`.
    let mut blank = |x: &mut Value, y: &mut Value, keys: &[&str], label: String, ok: bool| {
        if !ok || !x.is_object() || !y.is_object() {
            return;
        }
        for k in keys {
            x[*k] = Value::Null;
            y[*k] = Value::Null;
        }
        what.push(label);
    };
    let num = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    for (i, (x, y)) in ea.iter_mut().zip(eb.iter_mut()).enumerate() {
        if name == "stats-dump" {
            let keys = ["freezing_time", "frozen_time", "memdump_time", "memwrite_time"];
            blank(&mut x["dump"], &mut y["dump"], &keys, "the dump's timings".into(), true);
        } else if name == "inventory.img" {
            let both = x["dump_criu_run_id"].is_string() && y["dump_criu_run_id"].is_string();
            blank(x, y, &["dump_criu_run_id"], "dump_criu_run_id".into(), both);
        } else if name.starts_with("timens-") {
            for clock in ["monotonic", "boottime"] {
                let t = |v: &Value| (num(&v[clock], "tv_sec"), num(&v[clock], "tv_nsec"));
                if t(y) < t(x) {
                    return Err(format!("{clock} went back"));
                }
                let (cx, cy) = (&mut x[clock], &mut y[clock]);
                blank(cx, cy, &["tv_sec", "tv_nsec"], format!("the {clock} clock"), true);
            }
        } else if name.starts_with("core-") {
            let (tx, ty) = (&mut x["tc"]["timers"], &mut y["tc"]["timers"]);
            for it in ["real", "virt", "prof"] {
                let armed = |v: &Value| {
                    num(&v[it], "vsec") | num(&v[it], "vusec") | num(&v[it], "isec") | num(&v[it], "iusec") != 0
                };
                let both = armed(tx) && armed(ty);
                let (ix, iy) = (&mut tx[it], &mut ty[it]);
                blank(
                    ix,
                    iy,
                    &["vsec", "vusec"],
                    format!("the time left on itimer {it}"),
                    both,
                );
            }
            if let (Some(px), Some(py)) = (tx["posix"].as_array_mut(), ty["posix"].as_array_mut()) {
                for (j, (p, q)) in px.iter_mut().zip(py.iter_mut()).enumerate() {
                    let armed = |v: &Value| num(v, "vsec") | num(v, "vnsec") | num(v, "isec") | num(v, "insec") != 0;
                    let both = armed(p) && armed(q);
                    let keys = ["vsec", "vnsec", "overrun"];
                    blank(p, q, &keys, format!("the time left on POSIX timer {j}"), both);
                }
            }
            // A stopped program: the SIGCONT queued by the previous dump's cryo names that cryo's pid.
            let (sx, sy) = (
                &mut x["tc"]["signals_s"]["signals"],
                &mut y["tc"]["signals_s"]["signals"],
            );
            if let (Some(sx), Some(sy)) = (sx.as_array_mut(), sy.as_array_mut()) {
                for (p, q) in sx.iter_mut().zip(sy.iter_mut()) {
                    let (Some(ip), Some(iq)) = (sigcont_without_pid(&p["siginfo"]), sigcont_without_pid(&q["siginfo"]))
                    else {
                        continue;
                    };
                    let label = "the sender pid of a pending SIGCONT".to_string();
                    blank(p, q, &["siginfo"], label, ip == iq);
                }
            }
        } else if name == "files.img" {
            let t = |v: &Value, k: &str| num(&v["tfd"], k);
            let armed = |v: &Value| t(v, "vsec") | t(v, "vnsec") | t(v, "isec") | t(v, "insec") != 0;
            let both = armed(x) && armed(y);
            let keys = ["vsec", "vnsec", "ticks"];
            blank(
                &mut x["tfd"],
                &mut y["tfd"],
                &keys,
                format!("the time left on timerfd entry {i}"),
                both,
            );
        }
    }
    what.dedup();
    Ok(what)
}

/// The siginfo (base64 in crit's JSON) of a SIGCONT with its sender pid (si_pid) zeroed; None for
/// another signal.
fn sigcont_without_pid(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text: String = v.as_str()?.split_whitespace().collect();
    let mut si = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    if si.len() < 20 || i32::from_le_bytes(si[..4].try_into().unwrap()) != libc::SIGCONT {
        return None;
    }
    si[16..20].fill(0);
    Some(si)
}

#[test]
fn identity_two_dumps_of_an_idle_program_compare_equal() {
    let case = &CASES[0];
    let ns = dump_with_both(case, CRYO, CRYO).unwrap();
    let (a, b) = (ns.anchor("img-old"), ns.anchor("img-new"));
    let c = compare_sets(&a, &b);
    assert!(c.mismatches.is_empty(), "{}", c.mismatches.join("\n"));
    // The program's itimer and POSIX timer run: their remaining time is all that is masked in its core.
    assert!(
        c.masked
            .iter()
            .any(|m| m.starts_with("core-") && m.contains("itimer real")),
        "{:?}",
        c.masked
    );
    let allowed = ["stats-dump", "inventory.img", "timens-", "core-"];
    for m in &c.masked {
        assert!(allowed.iter().any(|p| m.starts_with(p)), "{m}");
    }

    // The comparator sees what differs: a flipped byte of memory, a register, a disarmed timer.
    let set = cryo_image::ImageSet::open(&b).unwrap();
    let pid = set.pstree().unwrap()[0].pid;
    let copy = copy_set(&b, "identity-b2");
    let pages = std::fs::read_dir(&copy)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("pages-"))
        .unwrap();
    let mut data = std::fs::read(&pages).unwrap();
    data[3 * 4096 + 17] ^= 1;
    std::fs::write(&pages, &data).unwrap();
    let core_name = format!("core-{pid}.img");
    let mut core = set.core(pid).unwrap();
    core.thread_info.as_mut().unwrap().gpregs.r12 ^= 0x10;
    let timers = core.tc.as_mut().unwrap().timers.as_mut().unwrap();
    timers.posix[0].vsec = 0;
    timers.posix[0].vnsec = 0;
    let mut w = cryo_image::ImageWriter::create(copy.join(&core_name), Some("CORE")).unwrap();
    w.entry(&core).unwrap();
    w.finish().unwrap();
    std::fs::remove_file(copy.join("stats-dump")).unwrap();
    let c = compare_sets(&a, &copy);
    let find = |p: &str| {
        c.mismatches
            .iter()
            .find(|m| m.starts_with(p))
            .unwrap_or_else(|| panic!("{p} not reported: {:?}", c.mismatches))
    };
    let pname = pages.file_name().unwrap().to_string_lossy().into_owned();
    let m = find(&pname);
    assert!(
        m.contains(&format!("byte {}", 3 * 4096 + 17)) && m.contains("(page 3 at 0x"),
        "{m}"
    );
    let m = find(&core_name);
    assert!(m.contains("\"r12\"") && m.contains("\"vsec\": 0"), "{m}");
    assert!(find("stats-dump").contains("only in"));
    assert_eq!(c.mismatches.len(), 3, "{:?}", c.mismatches);
    drop(ns);
    std::fs::remove_dir_all(&copy).unwrap();
}

/// Every program of [`CASES`] (or those named in `CRYO_IDENTITY_CASES`, comma-separated) dumped by
/// `CRYO_BASELINE` and by `CRYO_NEW` (default: this build's cryo): the image sets must be the same.
/// Run through scripts/image-identity.sh.
#[test]
#[ignore = "needs CRYO_BASELINE=/path/to/old/cryo: run scripts/image-identity.sh"]
fn identity_against_baseline() {
    let old = std::env::var("CRYO_BASELINE").expect("CRYO_BASELINE names the baseline cryo");
    let new = std::env::var("CRYO_NEW").unwrap_or_else(|_| CRYO.to_string());
    let only = std::env::var("CRYO_IDENTITY_CASES").ok();
    let keep = std::env::var_os("CRYO_IDENTITY_KEEP").map(PathBuf::from);
    let mut failed = Vec::new();
    let mut ran = 0;
    for case in CASES {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|n| n == case.name)) {
            continue;
        }
        ran += 1;
        let ns = match dump_with_both(case, &old, &new) {
            Ok(ns) => ns,
            Err(e) => {
                eprintln!("{}: ERROR {e}", case.name);
                failed.push(case.name);
                continue;
            }
        };
        let (a, b) = (ns.anchor("img-old"), ns.anchor("img-new"));
        let c = compare_sets(&a, &b);
        let files = std::fs::read_dir(&a).unwrap().count();
        if c.mismatches.is_empty() {
            eprintln!("{}: same ({files} files; {})", case.name, c.masked.join("; "));
        } else {
            eprintln!("{}: DIFFERENT\n{}", case.name, c.mismatches.join("\n"));
            failed.push(case.name);
        }
        if let Some(k) = &keep {
            for d in ["img-old", "img-new"] {
                cryo_testsupport::copy_dir(&ns.anchor(d), &k.join(case.name).join(d));
            }
        }
    }
    assert!(ran > 0, "no case named in CRYO_IDENTITY_CASES");
    assert!(failed.is_empty(), "image sets differ for {failed:?} (see above)");
}
