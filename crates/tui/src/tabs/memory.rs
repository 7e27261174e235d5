//! Memory: hex + ASCII of one mapping, read straight from the pages file a screenful at a time; `/` finds
//! bytes in all dumped pages of the process in small steps (the UI keeps running), `g` goes to an address.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::model::{Dump, ProcDetail};

/// Cursor and window over one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Index of the mapping shown (into `ProcDetail::vmas`).
    pub vma: Option<usize>,
    pub cursor: u64,
    /// Address of the first row shown.
    pub top: u64,
    /// Rows shown at the last draw.
    pub rows: usize,
    /// Bytes per row at the last draw (16, or 8 on narrow terminals).
    pub bpr: u64,
    /// The last match (address, length), highlighted.
    pub hit: Option<(u64, usize)>,
}

impl Default for State {
    fn default() -> Self {
        State {
            vma: None,
            cursor: 0,
            top: 0,
            rows: 16,
            bpr: 16,
            hit: None,
        }
    }
}

/// Cursor moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemMove {
    Left,
    Right,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Wheel: rows.
    Rows(i64),
}

impl State {
    /// The mapping to show first: the heap, else the first one with dumped pages.
    pub fn default_vma(det: &ProcDetail) -> Option<usize> {
        det.vmas
            .iter()
            .position(|v| v.kind == "heap" && v.dumped > 0)
            .or_else(|| det.vmas.iter().position(|v| v.dumped > 0))
            .or(if det.vmas.is_empty() { None } else { Some(0) })
    }

    /// Show mapping `i` from its start.
    pub fn open(&mut self, det: &ProcDetail, i: usize) {
        if let Some(v) = det.vmas.get(i) {
            self.vma = Some(i);
            self.cursor = v.start;
            self.top = v.start;
            self.hit = None;
        }
    }

    /// Make sure a mapping is shown (the default one if none yet).
    pub fn ensure(&mut self, det: &ProcDetail) {
        if self.vma.is_none_or(|i| i >= det.vmas.len()) {
            if let Some(i) = Self::default_vma(det) {
                self.open(det, i);
            }
        }
    }

    /// Put the cursor on `addr` (switching mapping if needed).
    pub fn goto(&mut self, det: &ProcDetail, addr: u64) -> Result<(), String> {
        let i = det
            .vma_at(addr)
            .ok_or_else(|| format!("{addr:#x} is in no mapping of pid {}", det.pid))?;
        self.vma = Some(i);
        self.cursor = addr;
        // Put the target mid-window, with context above it.
        let half = self.bpr.max(1) * (self.rows / 2) as u64;
        self.top = addr.saturating_sub(half);
        self.fit(det);
        Ok(())
    }

    /// Previous (-1) or next (+1) mapping.
    pub fn step_vma(&mut self, det: &ProcDetail, d: isize) {
        if let Some(i) = self.vma {
            let j = i as isize + d;
            if j >= 0 && (j as usize) < det.vmas.len() {
                self.open(det, j as usize);
            }
        }
    }

    pub fn apply(&mut self, det: &ProcDetail, m: MemMove) {
        let Some(v) = self.vma.and_then(|i| det.vmas.get(i)) else {
            return;
        };
        let bpr = self.bpr.max(1);
        let page = bpr * self.rows.max(1) as u64;
        let last = v.end.saturating_sub(1);
        let c = self.cursor;
        self.cursor = match m {
            MemMove::Left => c.saturating_sub(1),
            MemMove::Right => c.saturating_add(1),
            MemMove::Up => c.checked_sub(bpr).unwrap_or(c),
            MemMove::Down => c.checked_add(bpr).unwrap_or(c),
            MemMove::PageUp => c.saturating_sub(page),
            MemMove::PageDown => c.saturating_add(page),
            MemMove::Home => v.start,
            MemMove::End => last,
            MemMove::Rows(n) if n < 0 => c.saturating_sub(n.unsigned_abs() * bpr),
            MemMove::Rows(n) => c.saturating_add(n as u64 * bpr),
        }
        .clamp(v.start, last);
        self.fit(det);
    }

    /// Align the window to rows of the mapping and keep the cursor in view.
    pub fn fit(&mut self, det: &ProcDetail) {
        let Some(v) = self.vma.and_then(|i| det.vmas.get(i)) else {
            return;
        };
        let bpr = self.bpr.max(1);
        let rows = self.rows.max(1) as u64;
        self.cursor = self.cursor.clamp(v.start, v.end.saturating_sub(1).max(v.start));
        let row_of = |a: u64| (a - v.start) / bpr;
        let total_rows = (v.end - v.start).div_ceil(bpr);
        let mut top = row_of(self.top.clamp(v.start, v.end.saturating_sub(1).max(v.start)));
        let cur = row_of(self.cursor);
        if cur < top {
            top = cur;
        } else if cur >= top + rows {
            top = cur + 1 - rows;
        }
        top = top.min(total_rows.saturating_sub(rows));
        self.top = v.start + top * bpr;
    }
}

/// A query as bytes: text, with `\xNN` for any byte and `\\` for a backslash.
pub fn parse_needle(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                b'x' => {
                    let h = s.get(i + 2..i + 4).ok_or("\\x needs two hex digits")?;
                    out.push(u8::from_str_radix(h, 16).map_err(|_| format!("\\x{h} is not a hex byte"))?);
                    i += 4;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    if out.is_empty() {
        return Err("empty search".into());
    }
    Ok(out)
}

/// Where a step of a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Found(u64),
    NotFound,
    More,
}

/// A byte search over the dumped pages of one process, from an address on, wrapping once; it runs in
/// steps of a bounded number of bytes so the event loop keeps answering keys.
#[derive(Debug, Clone)]
pub struct SearchJob {
    pub pid: u32,
    pub needle: Vec<u8>,
    pub label: String,
    ranges: Vec<(u64, u64)>,
    idx: usize,
    pos: u64,
    pub scanned: u64,
    pub total: u64,
}

impl SearchJob {
    /// Search from `from` (inclusive) on.
    pub fn new(det: &ProcDetail, needle: Vec<u8>, label: String, from: u64) -> SearchJob {
        let all = det.dumped_ranges();
        let tail = needle.len() as u64 - 1;
        let mut ranges: Vec<(u64, u64)> = all
            .iter()
            .filter(|r| r.1 > from)
            .map(|r| (r.0.max(from), r.1))
            .collect();
        ranges.extend(
            all.iter()
                .filter(|r| r.0 < from)
                .map(|r| (r.0, r.1.min(from.saturating_add(tail)))),
        );
        ranges.retain(|r| r.0 < r.1);
        let total = ranges.iter().map(|r| r.1 - r.0).sum();
        let pos = ranges.first().map(|r| r.0).unwrap_or(0);
        SearchJob {
            pid: det.pid,
            needle,
            label,
            ranges,
            idx: 0,
            pos,
            scanned: 0,
            total,
        }
    }

    /// Scan at most `budget` more bytes.
    pub fn step(&mut self, dump: &Dump, budget: u64) -> Result<Step, String> {
        let Some(&(_, end)) = self.ranges.get(self.idx) else {
            return Ok(Step::NotFound);
        };
        let n = self.needle.len() as u64;
        let chunk_end = self.pos.saturating_add(budget.max(1)).min(end);
        let read_end = chunk_end.saturating_add(n - 1).min(end);
        let mut buf = vec![0u8; (read_end - self.pos) as usize];
        dump.read(&dump.detail(self.pid), self.pos, &mut buf)?;
        let limit = (chunk_end - self.pos) as usize;
        if let Some(i) = find(&buf, &self.needle).filter(|&i| i < limit) {
            return Ok(Step::Found(self.pos + i as u64));
        }
        self.scanned += chunk_end - self.pos;
        self.pos = chunk_end;
        if self.pos >= end {
            self.idx += 1;
            match self.ranges.get(self.idx) {
                Some(r) => self.pos = r.0,
                None => return Ok(Step::NotFound),
            }
        }
        Ok(Step::More)
    }

    /// Percent done.
    pub fn percent(&self) -> u64 {
        (self.scanned * 100).checked_div(self.total).unwrap_or(100)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let j = hay[i..=hay.len() - needle.len()].iter().position(|&b| b == first)?;
        i += j;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Bytes per row that fit in `width` columns (with a 12-digit address).
pub fn bytes_per_row(width: u16) -> u64 {
    if width >= 12 + 2 + 16 * 3 + 1 + 16 {
        16
    } else {
        8
    }
}

pub fn draw(f: &mut Frame, area: Rect, dump: &Dump, det: &ProcDetail, st: &mut State) {
    st.ensure(det);
    let Some(v) = st.vma.and_then(|i| det.vmas.get(i)).cloned() else {
        f.render_widget(Paragraph::new("no mappings (mm image missing?)"), area);
        return;
    };
    let bpr = bytes_per_row(area.width);
    if bpr != st.bpr {
        st.bpr = bpr;
    }
    st.rows = area.height.saturating_sub(2).max(1) as usize;
    st.fit(det);
    let aw = if v.end > 0x1_0000_0000_0000 { 16 } else { 12 };
    let dim = Style::default().fg(Color::DarkGray);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(
                format!("{:x}-{:x}", v.start, v.end),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" {} {} ", v.prot, v.kind)),
            Span::styled(v.file.clone(), dim),
        ]),
        Line::from(vec![
            Span::raw(format!("cursor {:#x} +{:#x}", st.cursor, st.cursor - v.start)),
            Span::styled(format!("  {}/{} pages dumped", v.dumped, v.pages), dim),
        ]),
    ];
    // One read for the whole window.
    let len = (st.rows as u64 * bpr).min(v.end - st.top) as usize;
    let mut buf = vec![0u8; len];
    if let Err(e) = dump.read(det, st.top, &mut buf) {
        lines.push(Line::styled(e, Style::default().fg(Color::Red)));
    }
    let hit = st.hit;
    let in_hit = |a: u64| hit.is_some_and(|(h, n)| a >= h && a < h + n as u64);
    for r in 0..st.rows {
        let row = st.top + r as u64 * bpr;
        if row >= v.end {
            break;
        }
        let mut spans = vec![Span::styled(format!("{row:0aw$x}  "), dim)];
        let mut ascii = Vec::with_capacity(bpr as usize);
        for k in 0..bpr {
            let a = row + k;
            let off = (a - st.top) as usize;
            let present = off < buf.len() && det.dumped(a);
            let mut style = Style::default();
            if in_hit(a) {
                style = style.bg(Color::Yellow).fg(Color::Black);
            }
            if a == st.cursor {
                style = style.add_modifier(Modifier::REVERSED);
            }
            let (h, c) = if a >= v.end {
                ("  ".to_string(), ' ')
            } else if present {
                let b = buf[off];
                let c = if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                };
                (format!("{b:02x}"), c)
            } else {
                style = style.fg(Color::DarkGray);
                ("··".to_string(), '·')
            };
            spans.push(Span::styled(h, style));
            spans.push(Span::raw(if k == 7 && bpr == 16 { "  " } else { " " }));
            ascii.push(Span::styled(c.to_string(), style));
        }
        spans.extend(ascii);
        lines.push(Line::from(spans));
    }
    f.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles() {
        assert_eq!(parse_needle("ab").unwrap(), b"ab");
        assert_eq!(parse_needle(r"a\x00\\").unwrap(), b"a\0\\");
        assert!(parse_needle(r"\xzz").is_err());
        assert!(parse_needle("").is_err());
    }

    #[test]
    fn find_bytes() {
        assert_eq!(find(b"hello world", b"world"), Some(6));
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
    }
}
