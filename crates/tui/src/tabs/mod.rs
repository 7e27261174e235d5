//! The tabs of the detail pane, one module each: its state, its keys and its drawing.

pub mod container;
pub mod creds;
pub mod files;
pub mod mappings;
pub mod memory;
pub mod raw;
pub mod regs;
pub mod sockets;

/// A tab of the detail pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Mappings,
    Files,
    Sockets,
    Memory,
    Regs,
    Creds,
    Container,
    Raw,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Mappings,
        Tab::Files,
        Tab::Sockets,
        Tab::Memory,
        Tab::Regs,
        Tab::Creds,
        Tab::Container,
        Tab::Raw,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Mappings => "Mappings",
            Tab::Files => "Files",
            Tab::Sockets => "Sockets",
            Tab::Memory => "Memory",
            Tab::Regs => "Regs/FPU",
            Tab::Creds => "Creds/Sig",
            Tab::Container => "NS/Mnt/IPC",
            Tab::Raw => "Raw",
        }
    }

    /// Shorter title for narrow terminals.
    pub fn short(self) -> &'static str {
        match self {
            Tab::Regs => "Regs",
            Tab::Creds => "Creds",
            Tab::Container => "NS",
            t => t.title(),
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn next(self) -> Option<Tab> {
        Tab::ALL.get(self.index() + 1).copied()
    }

    pub fn prev(self) -> Option<Tab> {
        self.index().checked_sub(1).map(|i| Tab::ALL[i])
    }
}

/// Selection in a list with a scroll offset kept so the selection stays visible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListNav {
    pub sel: usize,
    pub offset: usize,
    /// Rows visible at the last draw (for page moves).
    pub height: usize,
}

/// A movement in a list or a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Mouse wheel: n rows down (negative: up).
    By(isize),
}

impl ListNav {
    /// Apply a move to a list of `len` rows.
    pub fn apply(&mut self, m: Move, len: usize) {
        let page = self.height.max(1);
        let last = len.saturating_sub(1);
        self.sel = match m {
            Move::Up => self.sel.saturating_sub(1),
            Move::Down => (self.sel + 1).min(last),
            Move::PageUp => self.sel.saturating_sub(page),
            Move::PageDown => (self.sel + page).min(last),
            Move::Home => 0,
            Move::End => last,
            Move::By(n) => (self.sel as isize + n).clamp(0, last as isize) as usize,
        };
        self.fit(len, self.height);
    }

    /// Keep the selection in range and visible in `height` rows.
    pub fn fit(&mut self, len: usize, height: usize) {
        self.height = height;
        self.sel = self.sel.min(len.saturating_sub(1));
        if height == 0 {
            return;
        }
        if self.sel < self.offset {
            self.offset = self.sel;
        } else if self.sel >= self.offset + height {
            self.offset = self.sel + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }

    pub fn select(&mut self, i: usize, len: usize) {
        self.sel = i;
        self.fit(len, self.height);
    }
}

/// Scrolling text (registers, credentials, raw JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scroll {
    pub top: usize,
    pub height: usize,
}

impl Scroll {
    pub fn apply(&mut self, m: Move, lines: usize) {
        let page = self.height.max(1);
        let max = lines.saturating_sub(self.height.max(1));
        self.top = match m {
            Move::Up => self.top.saturating_sub(1),
            Move::Down => self.top + 1,
            Move::PageUp => self.top.saturating_sub(page),
            Move::PageDown => self.top + page,
            Move::Home => 0,
            Move::End => max,
            Move::By(n) => (self.top as isize + n).max(0) as usize,
        }
        .min(max);
    }

    /// Clamp for `lines` lines shown in `height` rows.
    pub fn fit(&mut self, lines: usize, height: usize) {
        self.height = height;
        self.top = self.top.min(lines.saturating_sub(height));
    }
}

/// Index of the first of `rows` after `from` (wrapping) that contains `needle`, case-insensitively.
pub fn find_row(rows: &[String], from: usize, needle: &str) -> Option<usize> {
    let n = needle.to_lowercase();
    if rows.is_empty() || n.is_empty() {
        return None;
    }
    (1..=rows.len())
        .map(|k| (from + k) % rows.len())
        .find(|&i| rows[i].to_lowercase().contains(&n))
}

/// Draw scrolled text; lines starting with `─` are headings.
pub fn draw_text(f: &mut ratatui::Frame, area: ratatui::layout::Rect, text: &[String], scroll: &mut Scroll) {
    use ratatui::style::{Color, Modifier, Style};
    use ratatui::text::Line;
    scroll.fit(text.len(), area.height as usize);
    let lines: Vec<Line> = text
        .iter()
        .skip(scroll.top)
        .take(area.height as usize)
        .map(|l| {
            if l.starts_with('─') {
                Line::styled(l.clone(), Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD))
            } else {
                Line::raw(l.clone())
            }
        })
        .collect();
    f.render_widget(ratatui::widgets::Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_nav_keeps_selection_visible() {
        let mut n = ListNav {
            height: 3,
            ..Default::default()
        };
        for _ in 0..5 {
            n.apply(Move::Down, 10);
        }
        assert_eq!((n.sel, n.offset), (5, 3));
        n.apply(Move::End, 10);
        assert_eq!((n.sel, n.offset), (9, 7));
        n.apply(Move::PageUp, 10);
        assert_eq!((n.sel, n.offset), (6, 6));
        n.apply(Move::Home, 10);
        assert_eq!((n.sel, n.offset), (0, 0));
        n.apply(Move::Up, 10);
        assert_eq!(n.sel, 0);
        n.apply(Move::Down, 0);
        assert_eq!(n.sel, 0);
    }

    #[test]
    fn find_row_wraps_and_ignores_case() {
        let rows: Vec<String> = ["a", "libc.so", "b", "LIBC"].iter().map(|s| s.to_string()).collect();
        assert_eq!(find_row(&rows, 1, "libc"), Some(3));
        assert_eq!(find_row(&rows, 3, "libc"), Some(1));
        assert_eq!(find_row(&rows, 0, "zzz"), None);
    }
}
