//! Files: cwd, root, exe and every open fd with its type, path or peer, flags and position.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::ListNav;
use crate::model::ProcDetail;

pub fn rows(det: &ProcDetail) -> Vec<String> {
    det.fds
        .iter()
        .map(|d| format!("{} {} {} {} {}", d.fd, d.kind, d.what, d.flags, d.pos))
        .collect()
}

pub fn draw(f: &mut Frame, area: Rect, det: &ProcDetail, nav: &mut ListNav) {
    if det.fds.is_empty() {
        let msg = det.errors.first().cloned().unwrap_or_else(|| "no open files".into());
        f.render_widget(Paragraph::new(msg), area);
        return;
    }
    let header =
        Row::new(["FD", "TYPE", "PATH / PEER", "FLAGS", "POS"]).style(Style::default().add_modifier(Modifier::BOLD));
    let rows = det.fds.iter().map(|d| {
        Row::new(vec![
            Line::from(d.fd.clone()).right_aligned(),
            Line::from(d.kind.clone()),
            Line::from(d.what.clone()),
            Line::from(d.flags.clone()),
            Line::from(d.pos.clone()).right_aligned(),
        ])
    });
    let flags_w = det.fds.iter().map(|d| d.flags.len()).max().unwrap_or(5).clamp(5, 16) as u16;
    let pos_w = det.fds.iter().map(|d| d.pos.len()).max().unwrap_or(3).clamp(3, 12) as u16;
    let widths = [
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Fill(1),
        Constraint::Length(flags_w),
        Constraint::Length(pos_w),
    ];
    nav.fit(det.fds.len(), area.height.saturating_sub(1) as usize);
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut ts = TableState::default()
        .with_selected(Some(nav.sel))
        .with_offset(nav.offset);
    f.render_stateful_widget(table, area, &mut ts);
}
