//! Snapshots of every tab on CRIU 4.2 fixtures (ratatui `TestBackend` + insta), and one real run of the
//! binary under tmux.

use cryo_tui::{ui, App, Dump};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use ratatui::Terminal;

fn app(name: &str) -> App {
    // Relative, so the header (which shows the directory) is the same on every machine.
    App::new(Dump::open(format!("../../fixtures/criu-4.2/{name}/images")).unwrap())
}

fn keys(a: &mut App, ks: &[KeyCode]) {
    for &code in ks {
        a.on_key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        });
        a.finish_work();
    }
}

fn text(a: &mut App, s: &str) {
    for c in s.chars() {
        keys(a, &[KeyCode::Char(c)]);
    }
}

fn screen(a: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, a)).unwrap();
    t.backend().to_string()
}

use KeyCode::{Char, Down, Enter};

#[test]
fn tree_and_mappings_80x24() {
    let mut a = app("proctree");
    keys(&mut a, &[Down]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn mappings_wide_with_ids() {
    let mut a = app("proctree");
    keys(&mut a, &[Down, Char('s'), Enter]);
    insta::assert_snapshot!(screen(&mut a, 140, 34));
}

#[test]
fn files_80x24() {
    let mut a = app("fdzoo");
    keys(&mut a, &[Char('2')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn files_pipe_with_queued_bytes() {
    let mut a = app("pipe_unread");
    keys(&mut a, &[Char('2')]);
    insta::assert_snapshot!(screen(&mut a, 100, 24));
}

#[test]
fn sockets_unix_80x24() {
    let mut a = app("unix_pair");
    keys(&mut a, &[Char('3')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn sockets_tcp_wide() {
    let mut a = app("tcp_est");
    keys(&mut a, &[Char('3')]);
    insta::assert_snapshot!(screen(&mut a, 120, 24));
}

#[test]
fn sockets_none() {
    let mut a = app("proctree");
    keys(&mut a, &[Char('3')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn memory_heap_80x24() {
    let mut a = app("proctree");
    keys(&mut a, &[Down, Char('4')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn memory_search_hit_wide() {
    let mut a = app("proctree");
    keys(&mut a, &[Down, Char('4'), Char('/')]);
    text(&mut a, "proctree.child0");
    keys(&mut a, &[Enter]);
    insta::assert_snapshot!(screen(&mut a, 120, 30));
}

#[test]
fn memory_goto_prompt() {
    let mut a = app("proctree");
    keys(&mut a, &[Char('4'), Char('g')]);
    text(&mut a, "7ffe4e935fc0");
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn regs_80x24() {
    let mut a = app("threads4");
    keys(&mut a, &[Char('5'), Char('t')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn regs_fpu_scrolled_wide() {
    let mut a = app("proctree");
    keys(&mut a, &[Char('5'), KeyCode::PageDown]);
    insta::assert_snapshot!(screen(&mut a, 120, 30));
}

#[test]
fn creds_signals_timers_80x24() {
    let mut a = app("proctree");
    keys(&mut a, &[Char('6')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn creds_signals_timers_fdzoo_wide() {
    let mut a = app("fdzoo");
    keys(&mut a, &[Char('6')]);
    insta::assert_snapshot!(screen(&mut a, 120, 36));
}

#[test]
fn raw_of_a_mapping() {
    let mut a = app("proctree");
    keys(&mut a, &[Down, Enter, Down, Down, Down, Down, Down, Char('7')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn raw_of_the_tree_entry() {
    let mut a = app("proctree");
    keys(&mut a, &[KeyCode::End, KeyCode::BackTab]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn help_overlay() {
    let mut a = app("proctree");
    keys(&mut a, &[Char('?')]);
    insta::assert_snapshot!(screen(&mut a, 80, 24));
}

#[test]
fn tiny_terminal_does_not_panic() {
    let mut a = app("proctree");
    for tab in '1'..='7' {
        keys(&mut a, &[Char(tab)]);
        for (w, h) in [(1, 1), (10, 5), (30, 8), (80, 3)] {
            let s = screen(&mut a, w, h);
            assert_eq!(s.lines().count(), h as usize);
        }
    }
}
