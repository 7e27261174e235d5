//! `crit core`: an ELF core file that gdb loads with every thread and the dumped registers.

use std::process::Command;

use goblin::elf::{program_header::PT_LOAD, program_header::PT_NOTE, Elf};

use super::common::*;

fn gpregs(tid: u32) -> serde_json::Value {
    let core = json(&ok(&[
        "decode",
        "-i",
        &format!("{}/core-{tid}.img", images("threads4")),
    ]));
    core["entries"][0]["thread_info"]["gpregs"].clone()
}

#[test]
fn core_of_threads4_is_a_valid_elf_core() {
    let d = scratch("core-elf");
    let out = d.join("core.9304");
    ok(&[
        "core",
        &images("threads4"),
        "--pid",
        "9304",
        "-o",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    let elf = Elf::parse(&bytes).expect("goblin parses the core");
    assert_eq!(elf.header.e_type, goblin::elf::header::ET_CORE);
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_X86_64);
    assert_eq!(elf.program_headers[0].p_type, PT_NOTE);

    // Every VMA is covered by PT_LOAD segments with its protection.
    let mm = json(&ok(&["decode", "-i", &format!("{}/mm-9304.img", images("threads4"))]));
    let loads: Vec<_> = elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD).collect();
    for v in mm["entries"][0]["vmas"].as_array().unwrap() {
        let (start, end) = (v["start"].as_u64().unwrap(), v["end"].as_u64().unwrap());
        let covered: u64 = loads
            .iter()
            .filter(|p| p.p_vaddr >= start && p.p_vaddr + p.p_memsz <= end)
            .map(|p| p.p_memsz)
            .sum();
        assert_eq!(covered, end - start, "vma {start:#x}-{end:#x}");
    }
    // Dumped memory is in the segments: the heap pattern of worker 0 read through the core equals the
    // bytes crit mem reads from the pages.
    let heap_run = 0x7fccf4000000u64;
    let seg = loads.iter().find(|p| p.p_vaddr == heap_run).unwrap();
    let from_core = &bytes[seg.p_offset as usize..seg.p_offset as usize + 4096];
    let from_pages = run(&[
        "mem",
        &images("threads4"),
        "--pid",
        "9304",
        "--addr",
        "0x7fccf4000000",
        "--len",
        "4096",
        "--raw",
    ]);
    assert!(from_pages.status.success());
    assert_eq!(from_core, &from_pages.stdout[..]);

    // Notes: PRSTATUS per thread, main thread first, with the dumped rip and rsp.
    let mut prstatus = Vec::new();
    let mut kinds = Vec::new();
    for n in elf.iter_note_headers(&bytes).unwrap() {
        let n = n.unwrap();
        kinds.push(n.n_type);
        if n.n_type == 1 {
            let d = n.desc;
            let pid = u32::from_le_bytes(d[32..36].try_into().unwrap());
            let reg = |i: usize| u64::from_le_bytes(d[112 + 8 * i..120 + 8 * i].try_into().unwrap());
            prstatus.push((pid, reg(16), reg(19)));
        }
    }
    assert_eq!(
        prstatus.iter().map(|p| p.0).collect::<Vec<_>>(),
        [9304, 9306, 9307, 9308]
    );
    for (tid, rip, rsp) in prstatus {
        let g = gpregs(tid);
        assert_eq!(rip, g["ip"].as_u64().unwrap());
        assert_eq!(rsp, g["sp"].as_u64().unwrap());
    }
    for k in [3u32, 6, 0x4649_4c45, 2, 0x202] {
        assert!(kinds.contains(&k), "note type {k:#x} missing: {kinds:x?}");
    }
    std::fs::remove_dir_all(d).unwrap();
}

/// The program of the fixture, rebuilt the way it was built (gcc -O2 gives the very same 16960-byte
/// file files.img records), so gdb finds its symbols.
fn build_threads4(dir: &std::path::Path) -> std::path::PathBuf {
    let exe = dir.join("threads4");
    let src = fixtures().join("threads4/src/threads4.c");
    let st = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc is installed");
    assert!(st.success());
    exe
}

/// A copy of threads4 whose main thread's xsave state also has AVX-512 registers (opmask, ZMM_Hi256,
/// Hi16_ZMM, xstate_bv bits 5-7) with distinct values: the fixture was dumped on a CPU without AVX-512,
/// and crit core must still carry such state to gdb (crit works on any machine's dumps).
fn threads4_with_avx512(tag: &str) -> std::path::PathBuf {
    let d = copy_images("threads4", tag);
    let core_img = d.join("core-9304.img");
    let mut core = json(&ok(&["decode", "-i", core_img.to_str().unwrap()]));
    let x = &mut core["entries"][0]["thread_info"]["fpregs"]["xsave"];
    let bv = x["xstate_bv"].as_u64().unwrap() | 0xe0;
    x["xstate_bv"] = bv.into();
    let words = |n: u64, base: u64| (0..n).map(|i| base + i).collect::<Vec<u64>>();
    x["opmask_reg"] = words(8, 0x0f0f_0000).into();
    x["zmm_upper"] = words(64, 0x2222_0000_0000).into();
    x["hi16_zmm"] = words(128, 0x3333_0000_0000).into();
    let jpath = d.join("core.json");
    std::fs::write(&jpath, serde_json::to_string(&core).unwrap()).unwrap();
    ok(&[
        "encode",
        "-i",
        jpath.to_str().unwrap(),
        "-o",
        core_img.to_str().unwrap(),
    ]);
    std::fs::remove_file(&jpath).unwrap();
    d
}

#[test]
fn gdb_loads_the_core_with_all_threads_and_registers() {
    let d = scratch("core-gdb");
    let exe = build_threads4(&d);
    let core = d.join("core.9304");
    let set = threads4_with_avx512("core-gdb-set");
    ok(&[
        "core",
        set.to_str().unwrap(),
        "--pid",
        "9304",
        "-o",
        core.to_str().unwrap(),
    ]);
    let o = cryo_testsupport::gdb(&[
        "info registers rip rsp",
        "info threads",
        "thread apply all bt",
        "x/s 0x7ffdd5126fc7",
        "p/x $fs_base",
        "p/x $xmm0.v2_int64",
        "p/x $k1",
        "p/x $pkru",
        "p/x $zmm17.v8_int64[0]",
        "p/x $mxcsr",
        "info auxv",
        "info proc mappings",
    ])
    .arg(&exe)
    .arg(&core)
    .output()
    .expect("gdb is installed");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    let g = gpregs(9304);
    let reg_line = |name: &str, v: u64| {
        out.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 2 && f[0] == name && f[1] == format!("{v:#x}")
        })
    };
    assert!(reg_line("rip", g["ip"].as_u64().unwrap()), "{out}");
    assert!(reg_line("rsp", g["sp"].as_u64().unwrap()), "{out}");
    for tid in [9304, 9306, 9307, 9308] {
        assert!(out.contains(&format!("LWP {tid}")), "thread {tid} missing: {out}");
    }
    // `info threads` lists each thread once ("* 1    LWP 9304 ..." or "  2    Thread ... (LWP 9306) ..."
    // depending on gdb's version).
    let threads = out
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with(|c: char| c == '*' || c.is_ascii_digit()) && l.contains("LWP "))
        .count();
    assert_eq!(threads, 4, "{out}");
    // Backtraces need the dumped program's libc (the fixture's may be another machine's): the engine's
    // gdb_unwinds_every_thread_of_a_crit_core_of_a_live_dump checks them on a dump taken here.
    // argv from memory through the core.
    assert!(out.contains("\"./bin/threads4\""), "{out}");
    // FPU and xsave state: values from the core image, read back through NT_FPREGSET / NT_X86_XSTATE.
    let core = json(&ok(&["decode", "-i", set.join("core-9304.img").to_str().unwrap()]));
    let fp = &core["entries"][0]["thread_info"]["fpregs"];
    let w = |v: &serde_json::Value, i: usize| v[i].as_u64().unwrap();
    let xmm0_hi = w(&fp["xmm_space"], 2) | w(&fp["xmm_space"], 3) << 32;
    let x = &fp["xsave"];
    let want = [
        format!("$1 = {:#x}", g["fs_base"].as_u64().unwrap()),
        format!(
            "$2 = {{{:#x}, {:#x}}}",
            w(&fp["xmm_space"], 0) | w(&fp["xmm_space"], 1) << 32,
            xmm0_hi
        ),
        format!("$3 = {:#x}", w(&x["opmask_reg"], 1)),
        format!("$4 = {:#x}", w(&x["pkru"], 0)),
        format!("$5 = {:#x}", w(&x["hi16_zmm"], 8)),
        format!("$6 = {:#x}", fp["mxcsr"].as_u64().unwrap()),
    ];
    for line in want {
        assert!(out.lines().any(|l| l == line), "{line} not in {out}");
    }
    // NT_AUXV and NT_FILE.
    let mm = json(&ok(&["decode", "-i", &format!("{}/mm-9304.img", images("threads4"))]));
    let auxv: Vec<u64> = mm["entries"][0]["mm_saved_auxv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let entry = auxv.chunks(2).find(|p| p[0] == 9).unwrap()[1];
    assert!(
        out.lines()
            .any(|l| l.starts_with("9 ") && l.contains("AT_ENTRY") && l.ends_with(&format!("{entry:#x}"))),
        "{out}"
    );
    assert!(out.contains("\"./bin/threads4\""), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("0x7fcd04518000") && l.ends_with("/usr/lib/x86_64-linux-gnu/libc.so.6")),
        "{out}"
    );
    std::fs::remove_dir_all(d).unwrap();
    std::fs::remove_dir_all(set).unwrap();
}

#[test]
fn core_bad_input() {
    let d = scratch("core-bad");
    let out = d.join("core.x");
    let e = fails(&["core", &images("threads4"), "--pid", "1", "-o", out.to_str().unwrap()]);
    assert!(e.contains("1 in pstree.img"), "{e}");
    assert!(!out.exists());
    let e = fails(&[
        "core",
        &images("threads4"),
        "--pid",
        "9304",
        "-o",
        "/nonexistent/dir/core",
    ]);
    assert!(e.contains("/nonexistent/dir/core"), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

/// Shared memory goes into the core too: memfd_shm's memfd mapping holds fill_pattern(.., 4242).
#[test]
fn core_carries_shared_memory() {
    let d = scratch("core-shm");
    let out = d.join("core.11327");
    ok(&[
        "core",
        &images("memfd_shm"),
        "--pid",
        "11327",
        "-o",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    let maps = json(&ok(&["mem", &images("memfd_shm"), "--pid", "11327", "--json"]));
    let start = maps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "memfd:anchor-memfd")
        .unwrap()["start"]
        .as_u64()
        .unwrap();
    let seg = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == PT_LOAD && p.p_vaddr == start)
        .unwrap();
    assert_eq!(seg.p_filesz, 128 << 10);
    let o = seg.p_offset as usize;
    assert!(bytes[o..o + (128 << 10)] == pattern(4242, 128 << 10)[..]);
    std::fs::remove_dir_all(d).unwrap();
}

/// A thread id exports its process with that thread current in gdb.
#[test]
fn core_for_a_thread_makes_it_current() {
    let d = scratch("core-thread");
    let core = d.join("core.9307");
    let s = json(&ok(&[
        "core",
        &images("threads4"),
        "--pid",
        "9307",
        "-o",
        core.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(s["pid"], 9304);
    assert_eq!(s["threads"][0], 9307);
    let o = cryo_testsupport::gdb(&["info registers rsp"])
        .arg("-c")
        .arg(&core)
        .output()
        .expect("gdb is installed");
    let out = String::from_utf8_lossy(&o.stdout);
    let sp = gpregs(9307)["sp"].as_u64().unwrap();
    assert!(out.contains(&format!("{sp:#x}")), "{out}");
    std::fs::remove_dir_all(d).unwrap();
}

/// A page of a file mapping that the dump left out (CRIU skips pages unchanged from the file) is read
/// from the mapped file when it is the one the dump saw: drop the first page of libc's relro run from a
/// copy of threads4 and find libc's bytes in its place.
#[test]
fn core_fills_undumped_file_pages_from_the_file() {
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    let d = copy_images("threads4", "core-filefill");
    let pm_path = d.join("pagemap-9304.img");
    let mut pm = json(&ok(&["decode", "-i", pm_path.to_str().unwrap()]));
    let mut off = 0u64;
    let mut cut = None;
    for e in pm["entries"].as_array_mut().unwrap()[1..].iter_mut() {
        let (vaddr, n, flags) = (
            e["vaddr"].as_u64().unwrap(),
            e["nr_pages"].as_u64().unwrap(),
            e["flags"].as_u64().unwrap(),
        );
        if vaddr == 0x7fcd04518000 {
            e["vaddr"] = (vaddr + 4096).into();
            e["nr_pages"] = (n - 1).into();
            cut = Some(off);
        }
        if flags & 4 != 0 {
            off += n * 4096;
        }
    }
    let cut = cut.expect("libc's relro run in threads4") as usize;
    let text = serde_json::to_string(&pm).unwrap();
    let jpath = d.join("pagemap.json");
    std::fs::write(&jpath, text).unwrap();
    ok(&["encode", "-i", jpath.to_str().unwrap(), "-o", pm_path.to_str().unwrap()]);
    std::fs::remove_file(&jpath).unwrap();
    let mut pages = std::fs::read(d.join("pages-1.img")).unwrap();
    pages.drain(cut..cut + 4096);
    std::fs::write(d.join("pages-1.img"), pages).unwrap();

    let out = d.join("core");
    let s = json(&ok(&[
        "core",
        d.to_str().unwrap(),
        "--pid",
        "9304",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]));
    let bytes = std::fs::read(&out).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    let seg = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == PT_LOAD && p.p_vaddr == 0x7fcd04518000)
        .unwrap();
    assert_eq!(seg.p_filesz, 4 * 4096);
    let page0 = &bytes[seg.p_offset as usize..seg.p_offset as usize + 4096];
    let recorded = json(&ok(&["decode", "-i", &format!("{}/files.img", images("threads4"))]));
    let size = recorded["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reg"]["name"] == libc)
        .unwrap()["reg"]["size"]
        .as_u64()
        .unwrap();
    match std::fs::read(libc) {
        Ok(lib) if lib.len() as u64 == size => {
            assert_eq!(s["pages_from_files"], 1);
            assert!(page0 == &lib[0x1cf000..0x1cf000 + 4096], "page from libc");
        }
        _ => {
            // Another libc than the dump's: the page stays zero rather than take foreign bytes.
            assert_eq!(s["pages_from_files"], 0);
            assert!(page0.iter().all(|&b| b == 0));
        }
    }
    // The pages that were dumped are still the dump's.
    let raw = run(&[
        "mem",
        d.to_str().unwrap(),
        "--pid",
        "9304",
        "--addr",
        "0x7fcd04519000",
        "--len",
        "12288",
        "--raw",
    ]);
    assert!(raw.status.success());
    assert!(bytes[seg.p_offset as usize + 4096..seg.p_offset as usize + 4 * 4096] == raw.stdout[..]);
    std::fs::remove_dir_all(d).unwrap();
}
