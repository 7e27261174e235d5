//! Restore tests: cgroups (state::cgroup). Each test makes its own parent cgroup in the v1 memory
//! and pids hierarchies and in cgroup v2, below the cgroups the test runs in (so the memory it
//! uses stays accounted where it was), puts a program in a child `t` of it with a memory limit
//! and pids.max, dumps it inside a fresh pid + mount namespace, and restores it; the program
//! reports its cgroups and the limits it reads in them from inside. The parents (and whatever
//! is left below them) are removed at the end.

#[allow(unused_imports)]
use super::*;
use crate::common::prog;

/// The test's own parent cgroup in each hierarchy it uses.
pub struct Cgroups {
    /// (hierarchy mount, path below it) of the parents: memory, pids, v2.
    parents: Vec<(String, String)>,
}

pub const LIMIT: u64 = 64 << 20;
pub const PIDS_MAX: u32 = 20;

impl Cgroups {
    pub fn new(tag: &str) -> Cgroups {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let of = |name: &str| {
            own.lines()
                .find_map(|l| {
                    let mut it = l.splitn(3, ':');
                    let (_, n, p) = (it.next()?, it.next()?, it.next()?);
                    (n == name).then(|| p.trim_end_matches('/').to_string())
                })
                .unwrap_or_default()
        };
        let leaf = format!("cryo-test-{tag}-{}", std::process::id());
        let parents = vec![
            ("/sys/fs/cgroup/memory".to_string(), format!("{}/{leaf}", of("memory"))),
            ("/sys/fs/cgroup/pids".to_string(), format!("{}/{leaf}", of("pids"))),
            ("/sys/fs/cgroup/unified".to_string(), format!("{}/{leaf}", of(""))),
        ];
        let c = Cgroups { parents };
        for (m, p) in &c.parents {
            std::fs::create_dir_all(format!("{m}{p}/t")).unwrap();
        }
        c.set_limits("t");
        c
    }

    pub fn dir(&self, i: usize, child: &str) -> String {
        format!("{}{}/{child}", self.parents[i].0, self.parents[i].1)
    }

    /// The path of `child` as /proc/PID/cgroup shows it, per hierarchy.
    pub fn path(&self, i: usize, child: &str) -> String {
        format!("{}/{child}", self.parents[i].1)
    }

    pub fn set_limits(&self, child: &str) {
        std::fs::write(
            format!("{}/memory.limit_in_bytes", self.dir(0, child)),
            LIMIT.to_string(),
        )
        .unwrap();
        std::fs::write(format!("{}/pids.max", self.dir(1, child)), PIDS_MAX.to_string()).unwrap();
    }

    /// Shell words that put the calling shell into `child` of every hierarchy.
    pub fn enter(&self, child: &str) -> String {
        (0..3)
            .map(|i| format!("echo $$ > {}/cgroup.procs", self.dir(i, child)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn rmdir(&self, child: &str) -> String {
        (0..3)
            .map(|i| format!("rmdir {}", self.dir(i, child)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn exists(&self, child: &str) -> Vec<bool> {
        (0..3).map(|i| Path::new(&self.dir(i, child)).is_dir()).collect()
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        // Deepest first; a task killed a moment ago leaves its cgroup a little later.
        for (m, p) in &self.parents {
            let top = format!("{m}{p}");
            let mut dirs: Vec<PathBuf> = Vec::new();
            let mut todo = vec![PathBuf::from(&top)];
            while let Some(d) = todo.pop() {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            todo.push(e.path());
                        }
                    }
                }
                dirs.push(d);
            }
            for d in dirs.iter().rev() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while std::fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Start cgself in `t` (in its own cgroup namespace with `cgns`), dump it, run `between`, then
/// restore it with `ropts` (and `env`); returns the namespace once restore has finished.
fn run(cg: &Cgroups, cgns: bool, dopts: &str, between: &str, env: &str, ropts: &str) -> Ns {
    let prog = prog("cgself");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         setsid sh -c '{enter}; exec {unshare}{prog}' >/dev/null 2>&1 </dev/null & U=$!; \
         while [ ! -s cgself.ready ]; do sleep 0.02; done; cp cgself.verify before.verify; \
         mkdir img; {CRYO} dump -t $U -D img {dopts} 2>.dump-err; echo $? > .dump-rc; wait $U; \
         {between}; \
         {env} {CRYO} restore -d -D img --pidfile /tmp/anchor/.pidfile {ropts} 2>.cryo-err; echo $? > .cryo-rc; \
         exec sleep 100000",
        enter = cg.enter("t"),
        unshare = if cgns { "unshare --cgroup " } else { "" },
        prog = prog.display(),
    );
    let ns = Ns::start(&script);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(ns.anchor(".cryo-rc")).is_ok_and(|s| s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "restore never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    ns
}

fn read(ns: &Ns, file: &str) -> String {
    std::fs::read_to_string(ns.anchor(file)).unwrap_or_default()
}

/// The restored program's report, asked with SIGUSR1.
fn report(ns: &Ns) -> (i32, String) {
    let inner: i32 = read(ns, ".pidfile").trim().parse().expect("pidfile");
    let outer = ns.outer(inner).expect("restored task");
    let _ = std::fs::remove_file(ns.anchor("cgself.verify"));
    assert!(common::kill(outer, libc::SIGUSR1));
    (outer, ns.wait_status("cgself.verify", "cgns="))
}

fn cgns_of(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/cgroup"))
        .unwrap()
        .display()
        .to_string()
}

/// A tree in cgroups with a memory limit and pids.max (v1 memory and pids, and a v2 cgroup),
/// dumped, killed, its cgroups removed: restored (default mode soft), it is back in cgroups of
/// the same paths, made again with their limits, as it reads from inside; Python crit decodes
/// the cgroup.img, which holds the limits.
#[test]
fn a_tree_comes_back_in_its_cgroups_with_their_limits() {
    let cg = Cgroups::new("back");
    let ns = run(&cg, false, "", &cg.rmdir("t"), "", "");
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let want = format!(
        "mem={} limit={LIMIT} pids={} max={PIDS_MAX} v2={}",
        cg.path(0, "t"),
        cg.path(1, "t"),
        cg.path(2, "t")
    );
    assert!(
        read(&ns, "before.verify").starts_with(&want),
        "{}",
        read(&ns, "before.verify")
    );
    let (outer, v) = report(&ns);
    assert!(v.starts_with(&want), "restored: {v}\nwanted: {want}");
    assert_eq!(cgns_of(&outer.to_string()), cgns_of("self"));
    let img = ns.anchor("img");
    let out = Command::new("/usr/bin/crit")
        .args(["decode", "-i"])
        .arg(img.join("cgroup.img"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crit decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("memory.limit_in_bytes") && text.contains(&LIMIT.to_string()),
        "{text}"
    );
    assert!(
        text.contains("\"pids.max\"") && text.contains(&format!("\"{PIDS_MAX}\"")),
        "{text}"
    );
}

/// --cgroup-root (per hierarchy, "" is v2) moves the restored tree into other cgroups, made with
/// the dumped limits; the original ones are left alone.
#[test]
fn cgroup_root_moves_the_tree() {
    let cg = Cgroups::new("root");
    let roots: String = [("memory", 0), ("pids", 1), ("", 2)]
        .iter()
        .map(|(c, i)| format!("--cgroup-root {c}:{} ", cg.path(*i, "moved")))
        .collect();
    let ns = run(&cg, false, "", "true", "", &roots);
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    let (_, v) = report(&ns);
    let want = format!(
        "mem={} limit={LIMIT} pids={} max={PIDS_MAX} v2={}",
        cg.path(0, "moved"),
        cg.path(1, "moved"),
        cg.path(2, "moved")
    );
    assert!(v.starts_with(&want), "restored: {v}\nwanted: {want}");
}

/// A restore that fails after it made the cgroups and the tasks joined them (CRYO_FAULT) removes
/// every cgroup it made and leaves no task; strict refuses existing cgroups and props refuses
/// missing ones before any task exists.
#[test]
fn a_failed_restore_removes_the_cgroups_it_made() {
    let cg = Cgroups::new("fail");
    let between = format!(
        "{}; {CRYO} restore -d -D img --manage-cgroups=props 2>.props-err; echo $? > .props-rc",
        cg.rmdir("t")
    );
    let ns = run(&cg, false, "", &between, "CRYO_FAULT=after-cgroups", "");
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_ne!(read(&ns, ".props-rc").trim(), "0");
    assert!(
        read(&ns, ".props-err").contains("does not exist")
            && read(&ns, ".props-err").contains("before creating any task"),
        "{}",
        read(&ns, ".props-err")
    );
    assert_ne!(read(&ns, ".cryo-rc").trim(), "0");
    assert!(
        read(&ns, ".cryo-err").contains("injected fault"),
        "{}",
        read(&ns, ".cryo-err")
    );
    assert_eq!(cg.exists("t"), [false, false, false], "cgroups left behind");
    assert_eq!(ns.tasks().len(), 1, "tasks left: {:?}", ns.tasks());
    // strict: existing cgroups are refused.
    for i in 0..3 {
        std::fs::create_dir_all(cg.dir(i, "t")).unwrap();
    }
    let out = Command::new("nsenter")
        .args(["-t", &ns.pid1.to_string(), "-m", "-p", "--wd=/tmp/anchor"])
        .arg(CRYO)
        .args(["restore", "-d", "-D", "img", "--manage-cgroups=strict"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("exists already") && err.contains("strict"), "{err}");
    assert_eq!(ns.tasks().len(), 1);
}

/// A tree in a cgroup namespace of its own (rooted at its cgroup `t`): restored, it is in a new
/// cgroup namespace whose root is `t` again (it sees "/"), and from outside it is in `t` with
/// the limits.
#[test]
fn a_cgroup_namespace_comes_back_with_its_root() {
    let cg = Cgroups::new("cgns");
    let ns = run(&cg, true, "", &cg.rmdir("t"), "", "");
    assert_eq!(read(&ns, ".dump-rc").trim(), "0", "dump: {}", read(&ns, ".dump-err"));
    assert_eq!(read(&ns, ".cryo-rc").trim(), "0", "restore: {}", read(&ns, ".cryo-err"));
    assert!(
        read(&ns, "before.verify").starts_with("mem=/ "),
        "{}",
        read(&ns, "before.verify")
    );
    let (outer, v) = report(&ns);
    assert!(
        v.starts_with("mem=/ ") && v.contains(" pids=/ ") && v.contains(" v2=/ "),
        "{v}"
    );
    assert_ne!(
        cgns_of(&outer.to_string()),
        cgns_of("self"),
        "no cgroup namespace of its own"
    );
    let outside = std::fs::read_to_string(format!("/proc/{outer}/cgroup")).unwrap();
    for i in 0..3 {
        assert!(outside.contains(&format!(":{}\n", cg.path(i, "t"))), "{outside}");
    }
    assert_eq!(
        std::fs::read_to_string(format!("{}/memory.limit_in_bytes", cg.dir(0, "t")))
            .unwrap()
            .trim(),
        LIMIT.to_string()
    );
    assert_eq!(
        std::fs::read_to_string(format!("{}/pids.max", cg.dir(1, "t")))
            .unwrap()
            .trim(),
        PIDS_MAX.to_string()
    );
}
