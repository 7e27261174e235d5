//! Address-space planning for a restored task (pure code).
//!
//! A task being restored still runs the engine's code, so the memory of the
//! dumped process is first built at temporary addresses ("premap") and the
//! restorer later moves each piece into place with mremap. Everything the
//! restorer needs while it unmaps the engine (its code, arguments, stacks,
//! the sigframes, the premapped memory) lives in one reservation that overlaps
//! neither the engine's current mappings nor any final VMA nor the final
//! vdso/vvar.

/// Page size on x86_64.
pub const PAGE: u64 = 4096;
/// Highest user address + 1 (47-bit address space).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// A half-open range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn new(start: u64, end: u64) -> Span {
        Span { start, end }
    }
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub fn overlaps(&self, o: &Span) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// One line of /proc/PID/maps, the fields the planner needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsLine {
    pub span: Span,
    pub name: String,
}

/// Parse /proc/PID/maps text (with [`crate::proc::parse_maps`]) into the
/// fields the planner needs.
pub fn parse_maps(text: &str) -> Result<Vec<MapsLine>, crate::proc::ParseError> {
    Ok(crate::proc::parse_maps(text)?
        .into_iter()
        .map(|v| MapsLine {
            span: Span::new(v.start, v.end),
            name: v.name,
        })
        .collect())
}

/// Is this mapping one of the kernel's vdso/vvar mappings?
pub fn is_kernel_map(name: &str) -> bool {
    name == "[vdso]" || name.starts_with("[vvar")
}

/// Find `len` bytes (plus a guard page each side) free of every span in
/// `busy`, as high as possible below `below`, at or above `min`.
pub fn find_hole(busy: &[Span], len: u64, min: u64, below: u64) -> Option<u64> {
    let mut spans: Vec<Span> = busy.iter().copied().filter(|s| !s.is_empty()).collect();
    spans.sort();
    // Merge.
    let mut merged: Vec<Span> = Vec::new();
    for s in spans {
        match merged.last_mut() {
            Some(m) if s.start <= m.end => m.end = m.end.max(s.end),
            _ => merged.push(s),
        }
    }
    let need = len + 2 * PAGE;
    let mut top = below;
    for s in merged.iter().rev() {
        if s.start >= top {
            top = top.min(s.start);
            continue;
        }
        if s.end < top && top - s.end >= need {
            let start = top - need + PAGE;
            if start >= min {
                return Some(start);
            }
            return None;
        }
        top = top.min(s.start);
    }
    if top >= min + need {
        return Some(top - need + PAGE);
    }
    None
}

/// Round up to a page.
pub fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse() {
        let t = "7f03119fa000-7f03119fe000 r--p 00000000 00:00 0                          [vvar]\n\
                 55fd4cf43000-55fd4cf44000 r--p 00000000 08:01 1234 /tmp/x y (deleted)\n\
                 7f0311a04000-7f0311a05000 rw-p 00000000 00:00 0 \n";
        let m = parse_maps(t).unwrap();
        assert_eq!(m[0].span, Span::new(0x7f03119fa000, 0x7f03119fe000));
        assert_eq!(m[0].name, "[vvar]");
        assert!(is_kernel_map(&m[0].name));
        assert_eq!(m[1].name, "/tmp/x y");
        assert_eq!(m[2].name, "");
        assert!(parse_maps("zz-1 r--p").is_err());
    }

    #[test]
    fn holes_avoid_everything_and_prefer_high() {
        let busy = [
            Span::new(0x1000, 0x5000),
            Span::new(0x9000, 0x10000),
            Span::new(0x20000, 0x30000),
        ];
        // Highest fit below 0x40000: between 0x30000 and 0x40000.
        assert_eq!(
            find_hole(&busy, 0x2000, 0x1000, 0x40000),
            Some(0x40000 - 0x4000 + 0x1000)
        );
        // Too big for anything above 0x10000 except... nothing: 0x10000..0x20000 is 64K.
        let h = find_hole(&busy, 0xe000, 0x1000, 0x20000).unwrap();
        assert!(Span::new(h - PAGE, h + 0xe000 + PAGE).start >= 0x10000);
        assert_eq!(find_hole(&busy, 0x100000, 0x1000, 0x40000), None);
    }
}
