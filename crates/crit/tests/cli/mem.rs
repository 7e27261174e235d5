//! `crit mem`: reading and searching process memory from the pages.

use std::process::{Command, Stdio};

use super::common::*;

const T4: &str = "9304";

#[test]
fn mem_read_formats() {
    let dir = images("threads4");
    // argv of threads4 sits at mm_arg_start.
    let raw = run(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--addr",
        "0x7ffdd5126fc7",
        "--len",
        "15",
        "--raw",
    ]);
    assert!(raw.status.success());
    assert_eq!(raw.stdout, b"./bin/threads4\0");
    let hex = ok(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--addr",
        "0x7ffdd5126fc7",
        "--len",
        "15",
        "--hex",
    ]);
    assert_eq!(hex, "2e2f62696e2f7468726561647334 00\n".replace(' ', ""));

    // The default is hexdump -C with absolute addresses: compare with hexdump -C of the raw bytes, whose
    // offsets start at 0, by shifting ours.
    let base = 0x7fccf4000000u64;
    let raw = run(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--addr",
        &format!("{base:#x}"),
        "--len",
        "8192",
        "--raw",
    ]);
    assert!(raw.status.success());
    assert_eq!(raw.stdout.len(), 8192);
    let ours = ok(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--addr",
        &format!("{base:#x}"),
        "--len",
        "8192",
    ]);
    // hexdump -C of these bytes, stored (made with util-linux's hexdump -C from the --raw output), and
    // compared live too where hexdump is installed.
    let stored = std::fs::read_to_string(fixtures().join("threads4/crit-x/hexdump-C-7fccf4000000-8192.txt")).unwrap();
    let mut theirs = vec![stored];
    if let Ok(mut hd) = Command::new("hexdump")
        .arg("-C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        std::io::Write::write_all(&mut hd.stdin.take().unwrap(), &raw.stdout).unwrap();
        theirs.push(String::from_utf8(hd.wait_with_output().unwrap().stdout).unwrap());
    }
    let shifted: String = ours
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((a, rest)) if u64::from_str_radix(a, 16).is_ok() => {
                format!("{:08x} {rest}\n", u64::from_str_radix(a, 16).unwrap() - base)
            }
            None if u64::from_str_radix(l, 16).is_ok() => {
                format!("{:08x}\n", u64::from_str_radix(l, 16).unwrap() - base)
            }
            _ => format!("{l}\n"),
        })
        .collect();
    for t in theirs {
        assert_eq!(shifted, t);
    }
}

#[test]
fn mem_read_agrees_with_pages_file() {
    // The first present run of the pagemap is the first page of pages-1.img.
    let dir = images("loop_heap");
    let pm = json(&ok(&["decode", "-i", &format!("{dir}/pagemap-9217.img")]));
    let first = pm["entries"].as_array().unwrap()[1..]
        .iter()
        .find(|e| e["flags"].as_u64().unwrap_or(4) & 4 != 0)
        .unwrap();
    let vaddr = first["vaddr"].as_u64().unwrap();
    let pages = std::fs::read(format!("{dir}/pages-1.img")).unwrap();
    let raw = run(&[
        "mem",
        &dir,
        "--pid",
        "9217",
        "--addr",
        &format!("{vaddr:#x}"),
        "--len",
        "4096",
        "--raw",
    ]);
    assert!(raw.status.success());
    assert_eq!(raw.stdout, &pages[..4096]);
}

#[test]
fn mem_search_text_regex_bytes_with_filters() {
    let dir = images("threads4");
    // argv[0] is on the stack: the stack filter finds it there, with its mapping.
    let out = ok(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--search",
        "./bin/threads4",
        "--kind",
        "stack",
    ]);
    assert!(out.lines().count() >= 1, "{out}");
    assert!(out.lines().all(|l| l.contains(" stack [stack]")), "{out}");
    assert!(
        out.contains("0x7ffdd5126fc7  7ffdd5106000-7ffdd5127000 rw- stack [stack]"),
        "{out}"
    );

    // JSON Lines: every match is really at its address (checked by reading it back).
    let lines = ok(&["mem", &dir, "--pid", T4, "--regex", r"PATH=[^\x00]+", "--json"]);
    let objs: Vec<serde_json::Value> = lines.lines().map(json).collect();
    let summary = objs.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let matches = &objs[..objs.len() - 1];
    assert_eq!(summary["matches"].as_u64().unwrap() as usize, matches.len());
    assert!(!matches.is_empty());
    for m in matches {
        let addr = m["addr"].as_u64().unwrap();
        let len = m["len"].as_u64().unwrap();
        let raw = run(&[
            "mem",
            &dir,
            "--pid",
            T4,
            "--addr",
            &addr.to_string(),
            "--len",
            &len.to_string(),
            "--raw",
        ]);
        assert!(raw.stdout.starts_with(b"PATH=/usr/bin"), "{m}");
        let map = &m["mapping"];
        assert!(map["start"].as_u64().unwrap() <= addr && addr < map["end"].as_u64().unwrap());
    }

    // Worker 0's heap block is filled by fill_pattern(.., 100): search its first bytes as hex.
    let block = run(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--addr",
        "0x7fccf40008c0",
        "--len",
        "8",
        "--raw",
    ]);
    assert!(block.status.success());
    let hex: String = block.stdout.iter().map(|b| format!("{b:02x}")).collect();
    let out = ok(&[
        "mem", &dir, "--pid", T4, "--bytes", &hex, "--kind", "anon", "--prot", "rw", "--json",
    ]);
    let hits: Vec<serde_json::Value> = out.lines().map(json).filter(|v| v["type"] == "match").collect();
    assert!(hits.iter().any(|h| h["addr"] == 0x7fccf40008c0u64), "{out}");

    // Filters exclude: nothing executable matches PATH=, and a range outside the stack has no argv.
    let o = run(&["mem", &dir, "--pid", T4, "--search", "PATH=", "--prot", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no match"));
    let out = ok(&[
        "mem",
        &dir,
        "--pid",
        T4,
        "--search",
        "./bin/threads4",
        "--range",
        "7ffdd5106000-7ffdd5127000",
    ]);
    assert!(out.lines().all(|l| l.contains("[stack]")), "{out}");
    let n = ok(&["mem", &dir, "--pid", T4, "--search", "threads4", "--max-count", "1"]);
    assert_eq!(n.lines().count(), 1);
}

/// A match across the boundary of two search windows is found, once: plant a needle over a window edge of
/// a 17-page run and search with 8 KiB windows (the default is 1 MiB; no fixture run is that long).
/// Also: small windows give exactly the matches of the default ones on every fixture.
#[test]
fn mem_search_finds_matches_across_windows() {
    let d = copy_images("threads4", "mem-window");
    let pm = json(&ok(&["decode", "-i", d.join("pagemap-9304.img").to_str().unwrap()]));
    let mut off = 0u64;
    let mut target = None;
    for e in &pm["entries"].as_array().unwrap()[1..] {
        let n = e["nr_pages"].as_u64().unwrap() * 4096;
        if e["flags"].as_u64().unwrap_or(4) & 4 != 0 {
            if n >= 16 * 4096 && target.is_none() {
                target = Some((e["vaddr"].as_u64().unwrap(), off));
            }
            off += n;
        }
    }
    let (vaddr, file_off) = target.expect("threads4 has a run of 16 pages or more");
    let needle = b"CRYO-NEEDLE-ACROSS-WINDOWS";
    // Windows of 8192 bytes overlapping by 2048 start at 0, 6144, 12288, ...: put the needle over 8192.
    let at = 8192 - 10;
    let mut pages = std::fs::read(d.join("pages-1.img")).unwrap();
    let i = (file_off + at) as usize;
    pages[i..i + needle.len()].copy_from_slice(needle);
    std::fs::write(d.join("pages-1.img"), pages).unwrap();
    let dir = d.to_str().unwrap();
    for window in ["8192", "4096", "1000"] {
        let out = ok(&[
            "mem",
            dir,
            "--pid",
            T4,
            "--search",
            "CRYO-NEEDLE-ACROSS-WINDOWS",
            "--window",
            window,
        ]);
        assert_eq!(out.lines().count(), 1, "window {window}: {out}");
        assert!(out.starts_with(&format!("{:#x} ", vaddr + at)), "{out}");
    }
    std::fs::remove_dir_all(d).unwrap();

    for name in fixture_names() {
        let pid = json(&ok(&["x", &images(&name), "ps", "--json"]))[0]["pid"].to_string();
        let big = run(&["mem", &images(&name), "--pid", &pid, "--regex", "[a-z]{4,}[0-9]"]);
        let small = run(&[
            "mem",
            &images(&name),
            "--pid",
            &pid,
            "--regex",
            "[a-z]{4,}[0-9]",
            "--window",
            "512",
        ]);
        assert_eq!(big.stdout, small.stdout, "{name}");
        assert!(!big.stdout.is_empty(), "{name}");
    }
}

#[test]
fn mem_bad_input() {
    let dir = images("threads4");
    let e = fails(&["mem", &dir, "--pid", "77", "--addr", "0x1000"]);
    assert!(e.contains("77"), "{e}");
    let e = fails(&["mem", &dir, "--pid", T4, "--addr", "0x10"]);
    assert!(e.contains("0x10 is not in any mapping"), "{e}");
    let e = fails(&["mem", &dir, "--pid", T4, "--addr", "0x7fccf4021000", "--len", "16"]);
    assert!(e.contains("0x7fccf4021000") && e.contains("not in the dump"), "{e}");
    let e = fails(&["mem", &dir, "--pid", T4, "--regex", "(unclosed"]);
    assert!(e.contains("--regex"), "{e}");
    let e = fails(&["mem", &dir, "--pid", T4, "--bytes", "abc"]);
    assert!(e.contains("--bytes"), "{e}");

    // A pages file cut short is named.
    let d = copy_images("threads4", "mem-corrupt");
    let p = d.join("pages-1.img");
    cryo_testsupport::cut_short(&p, std::fs::metadata(&p).unwrap().len() / 2);
    let e = fails(&["mem", d.to_str().unwrap(), "--pid", T4, "--search", "x"]);
    assert!(e.contains("pages-1.img"), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

/// `crit ... | head -c 1`: the reader goes away early; crit exits 0 without a panic message.
#[test]
fn closed_pipe_is_success() {
    for args in [
        vec![
            "mem",
            &*images("threads4"),
            "--pid",
            T4,
            "--addr",
            "0x7fccf4000000",
            "--len",
            "69632",
        ],
        vec!["mem", &*images("threads4"), "--pid", T4, "--regex", "(?s)."],
    ] {
        let mut child = crit()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut so = child.stdout.take().unwrap();
        let mut one = [0u8; 1];
        std::io::Read::read_exact(&mut so, &mut one).unwrap();
        drop(so);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
        assert!(!err.contains("panick"), "{err}");
    }
}

/// Shared memory is read from the objects' pagemaps: memfd_shm's memfd holds fill_pattern(.., 4242) and
/// its shared anonymous region fill_pattern(.., 4343) after the counter page, in both processes.
#[test]
fn mem_reads_memfd_and_shared_anon_from_shmem_pagemaps() {
    let dir = images("memfd_shm");
    for pid in ["11327", "11329"] {
        let maps = json(&ok(&["mem", &dir, "--pid", pid, "--json"]));
        let find = |name: &str| {
            maps.as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {maps}"))
                .clone()
        };
        let memfd = find("memfd:anchor-memfd");
        assert_eq!(memfd["kind"], "shared");
        assert_eq!(memfd["dumped"], 128 << 10);
        let start = memfd["start"].as_u64().unwrap();
        let raw = run(&[
            "mem",
            &dir,
            "--pid",
            pid,
            "--addr",
            &start.to_string(),
            "--len",
            "131072",
            "--raw",
        ]);
        assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
        assert!(raw.stdout == pattern(4242, 128 << 10), "memfd contents of {pid}");

        let anon = find("memfd:/dev/zero");
        let start = anon["start"].as_u64().unwrap() + 4096;
        let raw = run(&[
            "mem",
            &dir,
            "--pid",
            pid,
            "--addr",
            &start.to_string(),
            "--len",
            "61440",
            "--raw",
        ]);
        assert!(raw.status.success());
        assert!(raw.stdout == pattern(4343, 60 << 10), "shared anon contents of {pid}");
    }
    // SysV shm too: the segment is in pagemap-shmem-0.img.
    let maps = json(&ok(&["mem", &images("sysv_ipc"), "--pid", "12036", "--json"]));
    let shm = maps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "[sysv shm 0]")
        .unwrap();
    assert_eq!(shm["dumped"], 64 << 10);
    // --shm reads the segment itself, attached or not: the same bytes as its attachment.
    let run = |args: &[&str]| {
        let o = crit().args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    let seg = run(&["mem", &images("sysv_ipc"), "--shm", "0", "--raw"]);
    assert_eq!(seg.len(), 65536);
    let at = run(&[
        "mem",
        &images("sysv_ipc"),
        "--pid",
        "12036",
        "--addr",
        "0x7f8d882d1000",
        "--len",
        "65536",
        "--raw",
    ]);
    assert!(seg == at, "segment 0 differs from its attachment");
    let part = run(&[
        "mem",
        &images("sysv_ipc"),
        "--shm",
        "0",
        "--addr",
        "0x10",
        "--len",
        "16",
        "--hex",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&part).trim(),
        seg[16..32].iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let e = fails(&["mem", &images("sysv_ipc"), "--shm", "7"]);
    assert!(e.contains("no SysV shm segment 7"), "{e}");
    let e = fails(&[
        "mem",
        &images("sysv_ipc"),
        "--shm",
        "0",
        "--addr",
        "0xfff0",
        "--len",
        "32",
    ]);
    assert!(e.contains("past its end (65536 bytes)"), "{e}");
}

/// threads4's workers fill 64 KiB heap blocks with fill_pattern(.., 100 + id): search for the first
/// bytes of each pattern, then read the whole block back and compare. (Seeds are or-ed with 1, so
/// workers 0 and 1 share a pattern: three blocks, two patterns.)
#[test]
fn mem_search_finds_the_worker_blocks() {
    let dir = images("threads4");
    let mut blocks = std::collections::BTreeSet::new();
    for (id, n) in [(0u64, 2usize), (2, 1)] {
        let want = pattern(100 + id, 64 << 10);
        let hex: String = want[..16].iter().map(|b| format!("{b:02x}")).collect();
        let out = ok(&["mem", &dir, "--pid", T4, "--bytes", &hex, "--json"]);
        let hits: Vec<serde_json::Value> = out.lines().map(json).filter(|v| v["type"] == "match").collect();
        assert_eq!(hits.len(), n, "worker {id}: {out}");
        for h in hits {
            assert_eq!(h["mapping"]["kind"], "anon");
            let addr = h["addr"].as_u64().unwrap();
            let raw = run(&[
                "mem",
                &dir,
                "--pid",
                T4,
                "--addr",
                &addr.to_string(),
                "--len",
                "65536",
                "--raw",
            ]);
            assert!(raw.status.success());
            assert!(raw.stdout == want, "block of worker {id} at {addr:#x}");
            blocks.insert(addr);
        }
    }
    assert_eq!(blocks.len(), 3);
}

/// Incremental dumps: pages flagged PE_PARENT are read from `parent/` (the previous dump). Make a child
/// set whose heap run is "in the parent" and compare with the parent's bytes.
#[test]
fn mem_reads_pages_from_the_parent_dump() {
    let parent = copy_images("loop_heap", "mem-parent");
    let child = scratch("mem-parent-child");
    for e in std::fs::read_dir(&parent).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), child.join(e.file_name())).unwrap();
    }
    // The heap run: mark it PE_PARENT (flags 1) and take its bytes out of the child's pages file.
    let pm_path = child.join("pagemap-9217.img");
    let mut pm = json(&ok(&["decode", "-i", pm_path.to_str().unwrap()]));
    let heap_start = json(&ok(&["mem", parent.to_str().unwrap(), "--pid", "9217", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "heap")
        .unwrap()["start"]
        .as_u64()
        .unwrap();
    let (mut off, mut cut) = (0u64, None);
    for e in pm["entries"].as_array_mut().unwrap()[1..].iter_mut() {
        let n = e["nr_pages"].as_u64().unwrap() * 4096;
        let present = e["flags"].as_u64().unwrap() & 4 != 0;
        if e["vaddr"].as_u64().unwrap() == heap_start && present {
            e["flags"] = 1.into();
            cut = Some((off, n));
        } else if present {
            off += n;
        }
    }
    let (at, n) = cut.expect("a dumped heap run");
    std::fs::write(child.join("pm.json"), serde_json::to_string(&pm).unwrap()).unwrap();
    ok(&[
        "encode",
        "-i",
        child.join("pm.json").to_str().unwrap(),
        "-o",
        pm_path.to_str().unwrap(),
    ]);
    std::fs::remove_file(child.join("pm.json")).unwrap();
    let mut pages = std::fs::read(child.join("pages-1.img")).unwrap();
    pages.drain(at as usize..(at + n) as usize);
    std::fs::write(child.join("pages-1.img"), pages).unwrap();

    let addr = heap_start.to_string();
    let len = n.to_string();
    // Without the parent link the pages are missing...
    let e = fails(&[
        "mem",
        child.to_str().unwrap(),
        "--pid",
        "9217",
        "--addr",
        &addr,
        "--len",
        &len,
    ]);
    assert!(e.contains("not in the dump"), "{e}");
    // ...with it they are the parent's.
    std::fs::rename(&parent, child.join("parent")).unwrap();
    let from_child = run(&[
        "mem",
        child.to_str().unwrap(),
        "--pid",
        "9217",
        "--addr",
        &addr,
        "--len",
        &len,
        "--raw",
    ]);
    let from_parent = run(&[
        "mem",
        child.join("parent").to_str().unwrap(),
        "--pid",
        "9217",
        "--addr",
        &addr,
        "--len",
        &len,
        "--raw",
    ]);
    assert!(
        from_child.status.success(),
        "{}",
        String::from_utf8_lossy(&from_child.stderr)
    );
    assert_eq!(from_child.stdout, from_parent.stdout);
    let maps = json(&ok(&["mem", child.to_str().unwrap(), "--pid", "9217", "--json"]));
    let heap = maps.as_array().unwrap().iter().find(|r| r["kind"] == "heap").unwrap();
    assert_eq!(heap["dumped"], n);
    std::fs::remove_dir_all(child).unwrap();
}

/// Without --pid a search covers every process; lines start with the pid, JSON has it.
#[test]
fn mem_search_without_pid_covers_every_process() {
    let dir = images("proctree");
    let out = ok(&["mem", &dir, "--search", "./bin/proctree", "--kind", "stack"]);
    let pids: std::collections::BTreeSet<&str> = out.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(
        pids.into_iter().collect::<Vec<_>>(),
        ["9406", "9408", "9409", "9410", "9411"]
    );
    let lines = ok(&[
        "mem",
        &dir,
        "--search",
        "./bin/proctree",
        "--kind",
        "stack",
        "--json",
        "--max-count",
        "3",
    ]);
    let v: Vec<serde_json::Value> = lines.lines().map(json).collect();
    assert_eq!(v.len(), 4);
    assert_eq!(v[0]["pid"], 9406);
    assert_eq!(v[3]["matches"], 3);
    let e = fails(&["mem", &dir, "--addr", "0x1000"]);
    assert!(e.contains("--pid"), "{e}");
}
