//! Mappings: every VMA with its protection, kind, file and how much of it the dump holds.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::ListNav;
use crate::model::{ProcDetail, Vma, BAR};

/// Text of each row, for `/`.
pub fn rows(det: &ProcDetail) -> Vec<String> {
    det.vmas
        .iter()
        .map(|v| format!("{:x}-{:x} {} {} {} {}", v.start, v.end, v.prot, v.kind, v.flags, v.file))
        .collect()
}

/// Size in K/M/G.
pub fn size(bytes: u64) -> String {
    let k = bytes / 1024;
    if k < 10 * 1024 {
        format!("{k}K")
    } else if k < 10 * 1024 * 1024 {
        format!("{}M", k / 1024)
    } else {
        format!("{}G", k / 1024 / 1024)
    }
}

/// The last part of a path (`…/libc.so.6`), for narrow terminals.
pub fn short_path(p: &str) -> String {
    match p.rsplit_once('/') {
        Some((dir, base)) if !dir.is_empty() && !base.is_empty() => format!("…/{base}"),
        _ => p.to_string(),
    }
}

/// The coverage bar: one cell per slice of the mapping, full / partly / not dumped.
pub fn bar(v: &Vma) -> Line<'static> {
    let spans: Vec<Span> = v
        .bar
        .iter()
        .map(|&c| {
            if c < 0.0 {
                Span::raw(" ")
            } else if c >= 1.0 {
                Span::styled("█", Style::default().fg(Color::Green))
            } else if c > 0.0 {
                Span::styled("▄", Style::default().fg(Color::Yellow))
            } else {
                Span::styled("·", Style::default().fg(Color::DarkGray))
            }
        })
        .collect();
    Line::from(spans)
}

pub fn draw(f: &mut Frame, area: Rect, det: &ProcDetail, nav: &mut ListNav) {
    if det.vmas.is_empty() {
        let msg = det.errors.first().cloned().unwrap_or_else(|| "no mappings".into());
        f.render_widget(Paragraph::new(msg), area);
        return;
    }
    let wide = area.width >= 76;
    // Columns fit user-space addresses; the vsyscall page (the one kernel address) shows what fits.
    let range = |v: &Vma| format!("{:012x}-{:012x}", v.start, v.end);
    let start = |v: &Vma| format!("{:012x}", v.start);
    let aw = det
        .vmas
        .iter()
        .filter(|v| v.kind != "vsyscall")
        .map(|v| if wide { range(v).len() } else { start(v).len() })
        .max()
        .unwrap_or(12);
    let range = |v: &Vma| if v.kind == "vsyscall" { start(v) } else { range(v) };
    let start = |v: &Vma| {
        let s = start(v);
        if s.len() > aw {
            format!("…{}", &s[s.len() + 1 - aw..])
        } else {
            s
        }
    };
    let header = if wide {
        Row::new(["RANGE", "PROT", "KIND", "PAGES", "DUMPED", "FILE"])
    } else {
        Row::new(["START", "SIZE", "PROT", "PAGES", "DUMPED", "FILE"])
    }
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = det.vmas.iter().map(|v| {
        let pages = format!("{}/{}", v.dumped, v.pages);
        let cells: Vec<Cell> = if wide {
            vec![
                Cell::from(range(v)),
                Cell::from(v.prot.clone()),
                Cell::from(v.kind),
                Cell::from(Line::from(pages).right_aligned()),
                Cell::from(bar(v)),
                Cell::from(v.file.clone()),
            ]
        } else {
            vec![
                Cell::from(start(v)),
                Cell::from(Line::from(size(v.end - v.start)).right_aligned()),
                Cell::from(v.prot.clone()),
                Cell::from(Line::from(pages).right_aligned()),
                Cell::from(bar(v)),
                Cell::from(if v.file.is_empty() {
                    v.kind.to_string()
                } else {
                    short_path(&v.file)
                }),
            ]
        };
        Row::new(cells)
    });
    let widths = if wide {
        vec![
            Constraint::Length(aw as u16),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(BAR as u16),
            Constraint::Fill(1),
        ]
    } else {
        vec![
            Constraint::Length(aw as u16),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(BAR as u16),
            Constraint::Fill(1),
        ]
    };
    // The last line: the selected mapping's flags in full.
    let (area, info) = if area.height > 3 {
        let [a, b] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(area);
        (a, Some(b))
    } else {
        (area, None)
    };
    nav.fit(det.vmas.len(), area.height.saturating_sub(1) as usize);
    if let (Some(b), Some(v)) = (info, det.vmas.get(nav.sel)) {
        let text = format!("{} · pgoff {:#x}", v.flags, v.pgoff);
        f.render_widget(
            Paragraph::new(Line::styled(text, Style::default().fg(Color::DarkGray))),
            b,
        );
    }
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut ts = TableState::default()
        .with_selected(Some(nav.sel))
        .with_offset(nav.offset);
    f.render_stateful_widget(table, area, &mut ts);
}
