//! What an image set's FPU state needs of the CPU, read apart from the engine (which asks XCR0): the
//! xsave components each thread's core has in use (xstate_bv) against the CPU's flags in
//! /proc/cpuinfo. A set dumped on a CPU with more features must be refused by `cryo restore`, naming
//! them; the fixture tests check that refusal instead of the restore where this CPU lacks one. So is
//! a set dumped on a CPU with fewer (its XSAVE area smaller than this CPU's).

use std::collections::BTreeSet;
use std::path::Path;

use cryo_image::pb;

/// The XSAVE state components user code can have in use: (component number, the /proc/cpuinfo flag
/// that the CPU and the kernel enabling it show, the word cryo's refusal names it by).
pub const COMPONENTS: &[(u32, &str, &str)] = &[
    (2, "avx", "AVX"),
    (3, "mpx", "MPX"),
    (4, "mpx", "MPX"),
    (5, "avx512f", "AVX-512"),
    (6, "avx512f", "AVX-512"),
    (7, "avx512f", "AVX-512"),
    (9, "ospke", "PKRU"),
    (11, "user_shstk", "CET"),
    (17, "amx_tile", "AMX"),
    (18, "amx_tile", "AMX"),
];

/// PKRU as exec leaves it (every key but 0 write-disabled): a thread whose PKRU still holds it never
/// used protection keys, and needs none of the CPU.
pub const PKRU_AT_EXEC: u32 = 0x5555_5554;

/// The flags of this CPU (the first `flags` line of /proc/cpuinfo).
pub fn cpu_flags() -> BTreeSet<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let line = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("a flags line in /proc/cpuinfo");
    line.split_once(':')
        .map_or("", |(_, f)| f)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// What FPU state `xstate_bv` (with PKRU `pkru`) needs that a CPU with `flags` lacks, by name, each
/// once, in component order. x87 and SSE (components 0 and 1) every x86_64 CPU has; a component not
/// in [`COMPONENTS`] counts as lacking ("xsave component N").
pub fn lacking(xstate_bv: u64, pkru: Option<u32>, flags: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for bit in 2..64u32 {
        if xstate_bv & (1u64 << bit) == 0 {
            continue;
        }
        let name = match COMPONENTS.iter().find(|c| c.0 == bit) {
            Some(&(9, _, _)) if pkru.is_none_or(|v| v == PKRU_AT_EXEC) => continue,
            Some(&(_, flag, _)) if flags.contains(flag) => continue,
            Some(&(_, _, name)) => name.to_string(),
            None => format!("xsave component {bit}"),
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// What the threads of the image set in `dir` (every core-*.img) need of the FPU that this CPU lacks.
pub fn set_lacks(dir: &Path) -> Vec<String> {
    let flags = cpu_flags();
    let mut out: Vec<String> = Vec::new();
    let mut cores: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("core-") && n.ends_with(".img")
        })
        .collect();
    cores.sort();
    assert!(!cores.is_empty(), "no core-*.img in {}", dir.display());
    for path in cores {
        let entries = cryo_image::read_entries::<pb::CoreEntry>(&path, "CORE")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let xsave = entries
            .first()
            .and_then(|c| c.thread_info.as_ref())
            .and_then(|t| t.fpregs.xsave.as_ref());
        if let Some(x) = xsave {
            let mut names = lacking(x.xstate_bv, x.pkru.first().copied(), &flags);
            // The other direction: registers of a component this CPU has are missing from the image
            // (dumped on a CPU without it): the set's XSAVE area is smaller than this CPU's.
            if flags.contains("avx") && x.ymmh_space.is_empty() {
                names.push("AVX".into());
            }
            if flags.contains("avx512f") && x.opmask_reg.is_empty() && x.zmm_upper.is_empty() && x.hi16_zmm.is_empty() {
                names.push("AVX-512".into());
            }
            for name in names {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}
