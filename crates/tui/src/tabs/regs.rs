//! Registers/FPU: general registers, FPU/SSE state and xsave summary of one thread (`t`: next thread).

use ratatui::layout::Rect;
use ratatui::Frame;

use super::Scroll;
use crate::model::ProcDetail;

/// Which thread and where the text is scrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    pub thread: usize,
    pub scroll: Scroll,
}

/// The text of the tab. Lines starting with `─` are section headings.
pub fn lines(det: &ProcDetail, thread: usize, width: u16) -> Vec<String> {
    let mut out = Vec::new();
    let Some(t) = det.threads.get(thread) else {
        out.push("no threads".into());
        return out;
    };
    out.push(format!(
        "thread {} ({}/{})   t: next thread",
        t.tid,
        thread + 1,
        det.threads.len()
    ));
    let Some(core) = &t.core else {
        out.push(t.error.clone().unwrap_or_default());
        return out;
    };
    let Some(ti) = &core.thread_info else {
        out.push(format!("no x86_64 thread_info (arch {})", core.mtype));
        return out;
    };
    let g = &ti.gpregs;
    let regs: Vec<(&str, u64)> = cryo_image::x86::GP_REGS.iter().map(|r| (r.name, (r.get)(g))).collect();
    out.push("─ general registers".into());
    let cols = if width >= 84 { 3 } else { 2 };
    for chunk in regs.chunks(cols) {
        let cells: Vec<String> = chunk.iter().map(|(n, v)| format!("{n:>8} {v:016x}")).collect();
        out.push(cells.join("  "));
    }
    out.push(format!(
        "{:>8} {:016x}  mode {}",
        "tid_addr",
        ti.clear_tid_addr,
        if g.mode == Some(2) { "compat" } else { "native" }
    ));
    let fp = &ti.fpregs;
    out.push("─ FPU / SSE".into());
    out.push(format!(
        "     cwd {:04x}  swd {:04x}  twd {:04x}  fop {:04x}",
        fp.cwd, fp.swd, fp.twd, fp.fop
    ));
    out.push(format!("   mxcsr {:08x}  mask {:08x}", fp.mxcsr, fp.mxcsr_mask));
    out.push(format!("     rip {:016x}  rdp {:016x}", fp.rip, fp.rdp));
    for (i, st) in fp.st_space.chunks(4).enumerate().take(8) {
        // 80-bit value: the low 10 bytes of each 16-byte slot.
        let hi = st.get(2).copied().unwrap_or(0) & 0xffff;
        out.push(format!(
            "     st{i} {hi:04x}{:08x}{:08x}",
            st.get(1).copied().unwrap_or(0),
            st.first().copied().unwrap_or(0)
        ));
    }
    for (i, x) in fp.xmm_space.chunks(4).enumerate().take(16) {
        let w: Vec<String> = x.iter().rev().map(|w| format!("{w:08x}")).collect();
        out.push(format!("{:>8} {}", format!("xmm{i}"), w.join(" ")));
    }
    if let Some(x) = &fp.xsave {
        out.push("─ xsave".into());
        out.push(format!("xstate_bv {:#x}", x.xstate_bv));
        out.push(format!(
            "ymmh {} words, opmask {}, zmm_upper {}, hi16_zmm {}, pkru {}",
            x.ymmh_space.len(),
            x.opmask_reg.len(),
            x.zmm_upper.len(),
            x.hi16_zmm.len(),
            x.pkru.iter().map(|p| format!("{p:#x}")).collect::<Vec<_>>().join(",")
        ));
        if let Some(c) = &x.cet {
            out.push(format!("cet {:#x} ssp {:#x}", c.cet, c.ssp));
        }
    }
    if !ti.tls.is_empty() {
        out.push("─ TLS descriptors".into());
        for d in &ti.tls {
            out.push(format!(
                "entry {} base {:#x} limit {:#x}{}",
                d.entry_number,
                d.base_addr,
                d.limit,
                if d.seg_not_present { " (not present)" } else { "" }
            ));
        }
    }
    out
}

pub fn draw(f: &mut Frame, area: Rect, det: &ProcDetail, st: &mut State) {
    let text = lines(det, st.thread, area.width);
    super::draw_text(f, area, &text, &mut st.scroll);
}
