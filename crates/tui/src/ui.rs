//! Drawing: header, process tree, detail pane with its tabs, footer, help. Reads the app state; writes back
//! only scroll positions and where things were drawn.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::app::{App, Focus, PromptKind};
use crate::tabs::{self, Tab};

fn pane(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(style)
        .title(Span::styled(title, Style::default().add_modifier(Modifier::BOLD)))
}

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    draw_header(f, header, app);
    // On narrow terminals the tree shrinks to its pid column while the detail pane has the keys.
    // (narrow: the detail pane would have less than the 81 columns a 16-byte hex row needs).
    let full_w = tree_width(app, body.width);
    let compact = app.focus == Focus::Detail && body.width.saturating_sub(full_w) < 81;
    let tree_w = if compact { 9 } else { full_w };
    let [left, right] = Layout::horizontal([Constraint::Length(tree_w), Constraint::Fill(1)]).areas(body);
    draw_tree(f, left, app, compact);
    draw_detail(f, right, app);
    draw_footer(f, footer, app);
    if app.help {
        draw_help(f, area);
    }
}

fn tree_width(app: &App, total: u16) -> u16 {
    let depth = app.dump.procs.iter().map(|p| p.depth).max().unwrap_or(0).min(6) as u16;
    let comm = app
        .dump
        .procs
        .iter()
        .map(|p| p.comm.chars().count())
        .max()
        .unwrap_or(4)
        .min(16) as u16;
    // borders + pid + S + T + comm with indentation.
    let want = 2 + 7 + 2 + 3 + 2 * depth + comm + 2 + if app.show_ids { 14 } else { 0 };
    want.clamp(20, (total / 2).max(20))
}

fn draw_header(f: &mut Frame, area: Rect, app: &App) {
    let n = app.dump.procs.len();
    let line = Line::from(vec![
        Span::styled(
            " crit tui ",
            Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" {} ", app.dump.dir)),
        Span::styled(
            format!(
                "· {n} process{} · image v{}",
                if n == 1 { "" } else { "es" },
                app.dump.img_version
            ),
            Style::default().fg(Color::DarkGray),
        ),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn draw_tree(f: &mut Frame, area: Rect, app: &mut App, compact: bool) {
    let block = pane(
        if compact { " Pid " } else { " Processes " }.into(),
        app.focus == Focus::Tree,
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    app.areas.tree = area;
    app.areas.tree_rows = Rect {
        y: inner.y + 1,
        height: inner.height.saturating_sub(1),
        ..inner
    };
    if compact {
        let rows = app
            .dump
            .procs
            .iter()
            .map(|p| Row::new([Line::from(p.pid.to_string()).right_aligned()]));
        app.tree.fit(app.dump.procs.len(), app.areas.tree_rows.height as usize);
        let table = Table::new(rows, [Constraint::Fill(1)])
            .header(Row::new(["PID"]).style(Style::default().add_modifier(Modifier::BOLD)))
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        let mut ts = TableState::default()
            .with_selected(Some(app.tree.sel))
            .with_offset(app.tree.offset);
        f.render_stateful_widget(table, inner, &mut ts);
        return;
    }
    let mut head = vec!["PID", "S", "T"];
    if app.show_ids {
        head.extend(["SID", "PGID"]);
    }
    head.push("COMM");
    let rows = app.dump.procs.iter().map(|p| {
        let mut cells = vec![
            Cell::from(Line::from(p.pid.to_string()).right_aligned()),
            Cell::from(p.state),
            Cell::from(Line::from(p.threads.len().to_string()).right_aligned()),
        ];
        if app.show_ids {
            cells.push(Cell::from(Line::from(p.sid.to_string()).right_aligned()));
            cells.push(Cell::from(Line::from(p.pgid.to_string()).right_aligned()));
        }
        let indent = if p.depth == 0 {
            String::new()
        } else {
            format!("{}└", " ".repeat(p.depth.min(6) - 1))
        };
        cells.push(Cell::from(format!("{indent}{}", p.comm)));
        Row::new(cells)
    });
    let mut widths = vec![Constraint::Length(7), Constraint::Length(1), Constraint::Length(2)];
    if app.show_ids {
        widths.extend([Constraint::Length(6), Constraint::Length(6)]);
    }
    widths.push(Constraint::Fill(1));
    app.tree.fit(app.dump.procs.len(), app.areas.tree_rows.height as usize);
    let hl = if app.focus == Focus::Tree {
        Style::default().bg(Color::Cyan).fg(Color::Black)
    } else {
        Style::default().add_modifier(Modifier::REVERSED)
    };
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(Style::default().add_modifier(Modifier::BOLD)))
        .column_spacing(1)
        .row_highlight_style(hl);
    let mut ts = TableState::default()
        .with_selected(Some(app.tree.sel))
        .with_offset(app.tree.offset);
    f.render_stateful_widget(table, inner, &mut ts);
}

fn draw_detail(f: &mut Frame, area: Rect, app: &mut App) {
    let det = app.detail();
    let title = match app.dump.procs.get(app.tree.sel) {
        Some(p) => format!(
            " {} {} · {} thread{} ",
            p.pid,
            p.comm,
            p.threads.len(),
            if p.threads.len() == 1 { "" } else { "s" }
        ),
        None => " no processes ".into(),
    };
    let block = pane(title, app.focus == Focus::Detail);
    let inner = block.inner(area);
    f.render_widget(block, area);
    app.areas.detail = area;
    let [bar, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    // Images of this process that did not load: the first one named on the last line.
    let body = match det.errors.first() {
        Some(e) if body.height > 2 => {
            let [b, err] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(body);
            let more = match det.errors.len() {
                1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            f.render_widget(
                Paragraph::new(Line::styled(format!("! {e}{more}"), Style::default().fg(Color::Red))),
                err,
            );
            b
        }
        _ => body,
    };
    // Tab bar: full titles if they fit, short ones otherwise.
    let full: usize = Tab::ALL.iter().map(|t| t.title().len() + 1).sum();
    let narrow = full > bar.width as usize;
    let mut spans = Vec::new();
    let mut x = bar.x;
    app.areas.tabs.clear();
    for (i, t) in Tab::ALL.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled("│", Style::default().fg(Color::DarkGray)));
            x += 1;
        }
        let name = if narrow { t.short() } else { t.title() };
        let style = if *t == app.tab {
            Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        let w = name.chars().count() as u16;
        app.areas.tabs.push((x, x + w, bar.y, *t));
        x += w;
        spans.push(Span::styled(name, style));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), bar);
    match app.tab {
        Tab::Mappings => tabs::mappings::draw(f, body, &det, &mut app.maps),
        Tab::Files => tabs::files::draw(f, body, &det, &mut app.files),
        Tab::Sockets => tabs::sockets::draw(f, body, &det, &mut app.socks),
        Tab::Memory => tabs::memory::draw(f, body, &app.dump, &det, &mut app.mem),
        Tab::Regs => tabs::regs::draw(f, body, &det, &mut app.regs),
        Tab::Creds => tabs::creds::draw(f, body, &det, &mut app.creds),
        Tab::Container => tabs::container::draw(f, body, app.dump.container_lines(), &mut app.container),
        Tab::Raw => {
            if app.raw.target.is_none() {
                let t = app.context_target();
                app.raw.set(&app.dump, t);
            }
            tabs::raw::draw(f, body, &mut app.raw)
        }
    }
}

/// Key hints for what has the focus.
fn hints(app: &App) -> &'static str {
    match (app.focus, app.tab) {
        (Focus::Tree, _) => "↑↓/jk process  Enter open  Tab next  1-8 tab  / find  s ids  ? help  q quit",
        (_, Tab::Mappings) => "↑↓ mapping  Enter memory  ←→ tab  / find  Esc tree  ? help  q quit",
        (_, Tab::Files) | (_, Tab::Sockets) => "↑↓ select  Enter raw entry  ←→ tab  / find  Esc tree  ? help",
        (_, Tab::Memory) => "hjkl move  [ ] mapping  g goto  / find  n next  Enter raw  Esc tree",
        (_, Tab::Regs) | (_, Tab::Creds) => "↑↓ scroll  t thread  Enter raw  ←→ tab  / find  Esc tree",
        (_, Tab::Raw) => "↑↓ PgUp PgDn scroll  ←→ tab  / find  Esc tree  ? help  q quit",
        (_, Tab::Container) => "↑↓ PgUp PgDn scroll (the whole tree's)  ←→ tab  / find  Esc tree  ? help",
    }
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App) {
    let line = if let Some(p) = &app.prompt {
        let label = match p.kind {
            PromptKind::Search if app.tab == Tab::Memory && app.focus == Focus::Detail => "find bytes (\\xNN ok): ",
            PromptKind::Search => "find: ",
            PromptKind::Goto => "go to address (hex): ",
        };
        Line::from(vec![
            Span::styled(label, Style::default().fg(Color::Yellow)),
            Span::raw(p.input.clone()),
            Span::styled(" ", Style::default().add_modifier(Modifier::REVERSED)),
        ])
    } else if let Some(s) = &app.status {
        Line::styled(s.clone(), Style::default().fg(Color::Yellow))
    } else {
        Line::styled(hints(app), Style::default().fg(Color::DarkGray))
    };
    f.render_widget(Paragraph::new(line), area);
}

const HELP: &[(&str, &str)] = &[
    ("↑↓ j k", "move: process, row, line (memory: row)"),
    ("←→ h l", "previous / next tab (memory: byte)"),
    ("Tab S-Tab", "tree → each tab → tree"),
    ("1 … 8", "Maps Files Sockets Memory Regs Creds NS Raw"),
    ("Enter", "drill in: process → tabs, mapping →"),
    ("", "memory; file, socket, page → raw entry"),
    ("Esc", "back to the tree; cancel a search"),
    ("PgUp PgDn", "page up / down (Home End: ends)"),
    ("/  n", "find (memory: bytes, \\xNN), next"),
    ("g", "memory: go to address"),
    ("[ ]", "memory: previous / next mapping"),
    ("t", "regs, creds: next thread"),
    ("s", "tree: session and group ids"),
    ("mouse", "wheel scrolls, click selects"),
    ("q", "quit"),
];

fn draw_help(f: &mut Frame, area: Rect) {
    let w = 56.min(area.width.saturating_sub(2));
    let h = (HELP.len() as u16 + 4).min(area.height.saturating_sub(2));
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), Style::default().fg(Color::Cyan)),
                Span::raw(*d),
            ])
        })
        .collect();
    lines.push(Line::styled(
        "S: A alive, Z zombie, T stopped · T: threads",
        Style::default().fg(Color::DarkGray),
    ));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(pane(" Keys (any key closes) ".into(), true)),
        r,
    );
}
