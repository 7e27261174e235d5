//! Sockets: family, type, state, local and peer address, and bytes queued in the dump.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::ListNav;
use crate::model::ProcDetail;

pub fn rows(det: &ProcDetail) -> Vec<String> {
    det.socks
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {} {} {} {}",
                s.fd, s.family, s.ty, s.state, s.local, s.peer, s.queued
            )
        })
        .collect()
}

pub fn draw(f: &mut Frame, area: Rect, det: &ProcDetail, nav: &mut ListNav) {
    if det.socks.is_empty() {
        f.render_widget(Paragraph::new("none: this process holds no sockets"), area);
        return;
    }
    let wide = area.width >= 76;
    let header = if wide {
        Row::new(["FD", "FAMILY", "TYPE", "STATE", "LOCAL", "PEER", "QUEUED"])
    } else {
        Row::new(["FD", "FAM", "TYPE", "STATE", "LOCAL → PEER", "QUEUED"])
    }
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = det.socks.iter().map(|s| {
        let mut cells = vec![
            Line::from(s.fd.to_string()).right_aligned(),
            Line::from(s.family.clone()),
            Line::from(s.ty.clone()),
            Line::from(if wide { s.state.clone() } else { abbrev_state(&s.state) }),
        ];
        if wide {
            cells.push(Line::from(s.local.clone()));
            cells.push(Line::from(s.peer.clone()));
        } else {
            cells.push(Line::from(format!("{} → {}", s.local, s.peer)));
        }
        cells.push(Line::from(s.queued.to_string()).right_aligned());
        Row::new(cells)
    });
    let widths: Vec<Constraint> = if wide {
        vec![
            Constraint::Length(3),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(7),
        ]
    } else {
        vec![
            Constraint::Length(3),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(6),
        ]
    };
    nav.fit(det.socks.len(), area.height.saturating_sub(1) as usize);
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut ts = TableState::default()
        .with_selected(Some(nav.sel))
        .with_offset(nav.offset);
    f.render_stateful_widget(table, area, &mut ts);
}

/// Socket states in at most 6 columns.
fn abbrev_state(s: &str) -> String {
    match s {
        "ESTABLISHED" => "ESTAB".into(),
        "CLOSE_WAIT" => "CLWAIT".into(),
        "TIME_WAIT" => "TWAIT".into(),
        "FIN_WAIT1" => "FWAIT1".into(),
        "FIN_WAIT2" => "FWAIT2".into(),
        "SYN_SENT" => "SYNSNT".into(),
        "SYN_RECV" => "SYNRCV".into(),
        "LAST_ACK" => "LASTAK".into(),
        s => s.chars().take(6).collect(),
    }
}
