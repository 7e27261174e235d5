//! The x86_64 `struct rt_sigframe` a restored thread returns through: general
//! registers in `uc_mcontext`, the signal mask, the alternate stack, and the
//! FPU/vector state as an XSAVE area (standard format) behind it. rt_sigreturn
//! loads all of it in one step (the kernel's `restore_sigcontext` +
//! `fpu__restore_sig`).
//!
//! Pure code: builds the bytes for a frame that will live at a given address.

use std::fmt;

/// General-purpose registers as dumped (CRIU's `user_x86_regs_entry`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub fs: u64,
    pub gs: u64,
}

/// Extended state beyond FXSAVE (CRIU's `user_x86_xsave_entry`), as raw
/// component contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Xsave {
    pub xstate_bv: u64,
    /// Component number -> its bytes (standard-format contents).
    pub components: Vec<(u32, Vec<u8>)>,
}

/// FXSAVE legacy area plus optional extended state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FpRegs {
    pub cwd: u16,
    pub swd: u16,
    pub twd: u16,
    pub fop: u16,
    pub rip: u64,
    pub rdp: u64,
    pub mxcsr: u32,
    pub mxcsr_mask: u32,
    pub st_space: [u32; 32],
    pub xmm_space: [u32; 64],
    pub xsave: Option<Xsave>,
}

impl Default for FpRegs {
    fn default() -> Self {
        FpRegs {
            cwd: 0x37f,
            swd: 0,
            twd: 0,
            fop: 0,
            rip: 0,
            rdp: 0,
            mxcsr: 0x1f80,
            mxcsr_mask: 0,
            st_space: [0; 32],
            xmm_space: [0; 64],
            xsave: None,
        }
    }
}

/// Where each XSAVE component lives in the standard format on this CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsaveLayout {
    /// Features enabled in XCR0.
    pub xcr0: u64,
    /// (offset, size) per component number; (0, 0) when unknown.
    pub comps: [(u32, u32); 64],
}

impl XsaveLayout {
    /// Read XCR0 and CPUID leaf 0xD.
    pub fn host() -> XsaveLayout {
        let mut comps = [(0u32, 0u32); 64];
        let leaf1 = std::arch::x86_64::__cpuid(1);
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        if !osxsave {
            return XsaveLayout { xcr0: 3, comps };
        }
        // OSXSAVE is set (checked above).
        let xcr0 = crate::sys::xcr0().unwrap_or(3);
        for (i, c) in comps.iter_mut().enumerate().skip(2) {
            if xcr0 & (1 << i) != 0 {
                let r = std::arch::x86_64::__cpuid_count(0xd, i as u32);
                *c = (r.ebx, r.eax);
            }
        }
        XsaveLayout { xcr0, comps }
    }
}

/// What the frame builder refuses.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A dumped component this CPU does not have.
    Component { comp: u32, len: usize, expected: u32 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Component { comp, len, expected } => write!(
                f,
                "xsave component {comp}: {len} bytes in the image, this CPU has {expected} (missing CPU feature?)"
            ),
        }
    }
}

/// Offsets inside `struct rt_sigframe` (x86_64).
pub const UC_OFF: usize = 8;
const UC_FLAGS: usize = UC_OFF;
const UC_STACK: usize = UC_OFF + 16;
const UC_MCONTEXT: usize = UC_OFF + 40;
const UC_SIGMASK: usize = UC_OFF + 40 + 256;
/// The frame proper (pretcode + ucontext + siginfo), rounded to 64 for the
/// XSAVE area that follows.
pub const FPSTATE_OFF: usize = 448;
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

/// The alternate signal stack of the thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

/// Registers as they should be after the restore: a task caught inside an
/// interrupted syscall that the kernel would restart is pointed back at the
/// syscall instruction (CRIU's dump normally did this already).
pub fn restart_adjust(r: &mut GpRegs) {
    const ERESTARTSYS: i64 = -512;
    const ERESTARTNOINTR: i64 = -513;
    const ERESTARTNOHAND: i64 = -514;
    const ERESTART_RESTARTBLOCK: i64 = -516;
    const EINTR: i64 = 4;
    if (r.orig_ax as i64) < 0 {
        return;
    }
    match r.ax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            r.ax = r.orig_ax;
            r.ip -= 2;
        }
        // The restart block stayed in the dumping kernel: the call fails
        // with EINTR, as CRIU's dump writes it.
        ERESTART_RESTARTBLOCK => r.ax = (-EINTR) as u64,
        _ => {}
    }
}

/// Total bytes of a frame for this layout (frame + xsave area + magic2).
pub fn frame_size(layout: &XsaveLayout) -> usize {
    FPSTATE_OFF + xstate_size(layout, u64::MAX) + 4
}

fn xstate_size(layout: &XsaveLayout, bv: u64) -> usize {
    let mut end = 512 + 64;
    for i in 2..64 {
        if bv & layout.xcr0 & (1 << i) != 0 {
            let (off, size) = layout.comps[i];
            end = end.max((off + size) as usize);
        }
    }
    end
}

/// Build the frame that will be placed at `addr` (64-byte aligned).
pub fn build(
    regs: &GpRegs,
    fp: &FpRegs,
    sigmask: u64,
    alt: AltStack,
    layout: &XsaveLayout,
    addr: u64,
) -> Result<Vec<u8>, FrameError> {
    assert_eq!(addr % 64, 0, "rt_sigframe must be 64-byte aligned");
    let bv = fp.xsave.as_ref().map_or(3, |x| x.xstate_bv) & layout.xcr0;
    let xsize = xstate_size(layout, bv);
    let mut f = vec![0u8; FPSTATE_OFF + xsize + 4];
    let put = |f: &mut Vec<u8>, off: usize, v: &[u8]| f[off..off + v.len()].copy_from_slice(v);

    put(
        &mut f,
        UC_FLAGS,
        &(UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS).to_le_bytes(),
    );
    put(&mut f, UC_STACK, &alt.sp.to_le_bytes());
    put(&mut f, UC_STACK + 8, &alt.flags.to_le_bytes());
    put(&mut f, UC_STACK + 16, &alt.size.to_le_bytes());

    // struct sigcontext (x86_64).
    let gp = [
        regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15, regs.di, regs.si, regs.bp,
        regs.bx, regs.dx, regs.ax, regs.cx, regs.sp, regs.ip, regs.flags,
    ];
    for (i, v) in gp.iter().enumerate() {
        put(&mut f, UC_MCONTEXT + i * 8, &v.to_le_bytes());
    }
    let seg = UC_MCONTEXT + 18 * 8;
    put(&mut f, seg, &(regs.cs as u16).to_le_bytes());
    put(&mut f, seg + 2, &(regs.gs as u16).to_le_bytes());
    put(&mut f, seg + 4, &(regs.fs as u16).to_le_bytes());
    put(&mut f, seg + 6, &(regs.ss as u16).to_le_bytes());
    // err, trapno, oldmask, cr2 stay 0; then the fpstate pointer.
    put(&mut f, UC_MCONTEXT + 23 * 8, &(addr + FPSTATE_OFF as u64).to_le_bytes());
    put(&mut f, UC_SIGMASK, &sigmask.to_le_bytes());

    // FXSAVE legacy area.
    let fx = FPSTATE_OFF;
    put(&mut f, fx, &fp.cwd.to_le_bytes());
    put(&mut f, fx + 2, &fp.swd.to_le_bytes());
    put(&mut f, fx + 4, &fp.twd.to_le_bytes());
    put(&mut f, fx + 6, &fp.fop.to_le_bytes());
    put(&mut f, fx + 8, &fp.rip.to_le_bytes());
    put(&mut f, fx + 16, &fp.rdp.to_le_bytes());
    put(&mut f, fx + 24, &fp.mxcsr.to_le_bytes());
    put(&mut f, fx + 28, &fp.mxcsr_mask.to_le_bytes());
    for (i, v) in fp.st_space.iter().enumerate() {
        put(&mut f, fx + 32 + i * 4, &v.to_le_bytes());
    }
    for (i, v) in fp.xmm_space.iter().enumerate() {
        put(&mut f, fx + 160 + i * 4, &v.to_le_bytes());
    }
    // sw_reserved: struct _fpx_sw_bytes.
    put(&mut f, fx + 464, &FP_XSTATE_MAGIC1.to_le_bytes());
    put(&mut f, fx + 468, &((xsize + 4) as u32).to_le_bytes());
    put(&mut f, fx + 472, &(bv | 3).to_le_bytes());
    put(&mut f, fx + 480, &(xsize as u32).to_le_bytes());
    // XSAVE header: xstate_bv, xcomp_bv = 0 (standard format).
    put(&mut f, fx + 512, &bv.to_le_bytes());
    if let Some(xs) = &fp.xsave {
        for (comp, bytes) in &xs.components {
            let c = *comp as usize;
            if c >= 64 || bv & (1 << c) == 0 {
                continue;
            }
            let (off, size) = layout.comps[c];
            if bytes.len() != size as usize {
                return Err(FrameError::Component {
                    comp: *comp,
                    len: bytes.len(),
                    expected: size,
                });
            }
            put(&mut f, fx + off as usize, bytes);
        }
    }
    put(&mut f, fx + xsize, &FP_XSTATE_MAGIC2.to_le_bytes());
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> XsaveLayout {
        let mut comps = [(0, 0); 64];
        comps[2] = (576, 256);
        comps[9] = (2688, 8);
        XsaveLayout { xcr0: 0x207, comps }
    }

    #[test]
    fn frame_fields_land_where_the_kernel_reads_them() {
        let regs = GpRegs {
            ip: 0x1234,
            sp: 0x7fff_0000,
            ax: 7,
            cs: 0x33,
            ss: 0x2b,
            ..Default::default()
        };
        let fp = FpRegs {
            mxcsr: 0x1f80,
            xsave: Some(Xsave {
                xstate_bv: 0x206,
                components: vec![(9, vec![0x54, 0x55, 0x55, 0x55, 0, 0, 0, 0])],
            }),
            ..Default::default()
        };
        let f = build(
            &regs,
            &fp,
            0x4000,
            AltStack {
                flags: 2,
                ..Default::default()
            },
            &layout(),
            0x10000,
        )
        .unwrap();
        let u64_at = |o: usize| u64::from_le_bytes(f[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(f[o..o + 4].try_into().unwrap());
        assert_eq!(u64_at(UC_MCONTEXT + 16 * 8), 0x1234);
        assert_eq!(u64_at(UC_MCONTEXT + 15 * 8), 0x7fff_0000);
        assert_eq!(u64_at(UC_MCONTEXT + 13 * 8), 7);
        assert_eq!(u64_at(UC_MCONTEXT + 23 * 8), 0x10000 + FPSTATE_OFF as u64);
        assert_eq!(u64_at(UC_SIGMASK), 0x4000);
        assert_eq!(u32_at(UC_STACK + 8), 2);
        assert_eq!(u32_at(FPSTATE_OFF + 24), 0x1f80);
        assert_eq!(u32_at(FPSTATE_OFF + 464), FP_XSTATE_MAGIC1);
        let xsize = u32_at(FPSTATE_OFF + 480) as usize;
        assert_eq!(xsize, 2696);
        assert_eq!(u32_at(FPSTATE_OFF + xsize), FP_XSTATE_MAGIC2);
        assert_eq!(u32_at(FPSTATE_OFF + 2688), 0x5555_5554);
        assert_eq!(u64_at(FPSTATE_OFF + 512), 0x206);
    }

    #[test]
    fn wrong_component_size_is_refused() {
        let fp = FpRegs {
            xsave: Some(Xsave {
                xstate_bv: 0x204,
                components: vec![(2, vec![0; 12])],
            }),
            ..Default::default()
        };
        let e = build(&GpRegs::default(), &fp, 0, AltStack::default(), &layout(), 0).unwrap_err();
        assert_eq!(
            e,
            FrameError::Component {
                comp: 2,
                len: 12,
                expected: 256
            }
        );
    }

    #[test]
    fn restartable_syscalls_go_back_to_the_syscall() {
        let mut r = GpRegs {
            ax: (-516i64) as u64,
            orig_ax: 230,
            ip: 0x1002,
            ..Default::default()
        };
        restart_adjust(&mut r);
        assert_eq!((r.ax, r.ip), ((-4i64) as u64, 0x1002));
        let mut r = GpRegs {
            ax: (-514i64) as u64,
            orig_ax: 130,
            ip: 0x1002,
            ..Default::default()
        };
        restart_adjust(&mut r);
        assert_eq!((r.ax, r.ip), (130, 0x1000));
        let mut r = GpRegs {
            ax: (-4i64) as u64,
            orig_ax: 230,
            ip: 0x1002,
            ..Default::default()
        };
        restart_adjust(&mut r);
        assert_eq!((r.ax, r.ip), ((-4i64) as u64, 0x1002));
    }
}
