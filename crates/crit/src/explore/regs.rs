//! `crit x DIR regs`: each thread's general registers, segment bases and a summary of its FPU/xsave state.

use serde::Serialize;

use cryo_image::{pb, x86, ImageSet};

use super::{threads_of, x86_info, Result};

/// General registers in gdb's order and names.
pub fn gp_list(g: &pb::UserX86RegsEntry) -> Vec<(&'static str, u64)> {
    x86::gdb_order().iter().map(|r| (r.name, (r.get)(g))).collect()
}

/// xsave state components by bit of XSTATE_BV.
const XFEATURES: &[&str] = &[
    "x87",
    "sse",
    "avx",
    "bndregs",
    "bndcsr",
    "opmask",
    "zmm_hi256",
    "hi16_zmm",
    "pt",
    "pkru",
    "pasid",
    "cet_u",
    "cet_s",
    "hdc",
    "uintr",
    "lbr",
    "hwp",
    "xtilecfg",
    "xtiledata",
];

/// Names of the components set in an XSTATE_BV.
pub fn xfeature_names(bv: u64) -> Vec<String> {
    (0..64)
        .filter(|b| bv & (1u64 << b) != 0)
        .map(|b| {
            XFEATURES
                .get(b)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("bit{b}"))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct FpuSummary {
    pub cwd: u32,
    pub swd: u32,
    pub mxcsr: u32,
    pub xsave: bool,
    pub xstate_bv: u64,
    pub xfeatures: Vec<String>,
    /// XMM registers that are not all zero.
    pub nonzero_xmm: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadRegs {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Name and value, in gdb's order.
    pub regs: Vec<(String, u64)>,
    /// 64-bit (NATIVE) or 32-bit (COMPAT) mode.
    pub mode: String,
    pub fpu: FpuSummary,
    pub clear_tid_addr: u64,
}

pub fn build(set: &ImageSet, procs: &[pb::PstreeEntry]) -> Result<Vec<ThreadRegs>> {
    let mut out = Vec::new();
    for p in procs {
        for tid in threads_of(p) {
            let core = set.core(tid)?;
            let ti = x86_info(set, tid, &core)?;
            let g = &ti.gpregs;
            let f = &ti.fpregs;
            let comm = core
                .thread_core
                .as_ref()
                .and_then(|t| t.comm.clone())
                .or_else(|| core.tc.as_ref().map(|t| t.comm.clone()))
                .unwrap_or_default();
            let nonzero_xmm = (0..16u32)
                .filter(|&i| {
                    f.xmm_space
                        .get(i as usize * 4..i as usize * 4 + 4)
                        .is_some_and(|w| w.iter().any(|&x| x != 0))
                })
                .collect();
            let bv = f.xsave.as_ref().map(|x| x.xstate_bv).unwrap_or(0);
            out.push(ThreadRegs {
                pid: p.pid,
                tid,
                comm,
                regs: gp_list(g).into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
                mode: match g.mode {
                    Some(2) => "COMPAT".into(),
                    _ => "NATIVE".into(),
                },
                fpu: FpuSummary {
                    cwd: f.cwd,
                    swd: f.swd,
                    mxcsr: f.mxcsr,
                    xsave: f.xsave.is_some(),
                    xstate_bv: bv,
                    xfeatures: xfeature_names(bv),
                    nonzero_xmm,
                },
                clear_tid_addr: ti.clear_tid_addr,
            });
        }
    }
    Ok(out)
}

pub fn render(threads: &[ThreadRegs]) -> String {
    let mut s = String::new();
    for t in threads {
        s.push_str(&format!("pid {} thread {} ({}), {}\n", t.pid, t.tid, t.comm, t.mode));
        for row in t.regs.chunks(3) {
            let cells: Vec<String> = row.iter().map(|(n, v)| format!("{n:<8} {v:#018x}")).collect();
            s.push_str(&format!("  {}\n", cells.join("   ")));
        }
        let f = &t.fpu;
        s.push_str(&format!(
            "  fpu: cwd {:#06x} swd {:#06x} mxcsr {:#010x}; xsave {}\n",
            f.cwd,
            f.swd,
            f.mxcsr,
            if f.xsave {
                format!("xstate_bv {:#x} ({})", f.xstate_bv, f.xfeatures.join(" "))
            } else {
                "none".into()
            }
        ));
        let xmm: Vec<String> = f.nonzero_xmm.iter().map(|i| format!("xmm{i}")).collect();
        s.push_str(&format!(
            "  non-zero: {}\n",
            if xmm.is_empty() { "none".into() } else { xmm.join(" ") }
        ));
    }
    s
}
