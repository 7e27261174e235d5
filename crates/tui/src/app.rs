//! App state and what keys and the mouse do to it. Nothing here draws: `ui` reads this state and draws
//! it (recording where things landed, for the mouse).

use std::rc::Rc;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use crate::model::{Dump, ProcDetail, RawTarget};
use crate::tabs::memory::{self, MemMove, SearchJob, Step};
use crate::tabs::{self, find_row, regs, ListNav, Move, Tab};

/// Which pane has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Tree,
    Detail,
}

/// What the one-line prompt at the bottom is asking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Search,
    Goto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: String,
}

/// Where the panes were drawn last (for mouse hits).
#[derive(Debug, Clone, Default)]
pub struct Areas {
    pub tree: Rect,
    /// First row of tree entries (below the header).
    pub tree_rows: Rect,
    pub detail: Rect,
    /// Tab titles: x range and tab.
    pub tabs: Vec<(u16, u16, u16, Tab)>,
}

/// Bytes scanned per step of a memory search.
pub const SEARCH_STEP: u64 = 1 << 20;

pub struct App {
    pub dump: Dump,
    pub focus: Focus,
    pub tab: Tab,
    /// Selected process (index into `dump.procs`).
    pub tree: ListNav,
    /// Show session and group ids in the tree.
    pub show_ids: bool,
    pub maps: ListNav,
    pub files: ListNav,
    pub socks: ListNav,
    pub mem: memory::State,
    pub regs: regs::State,
    pub creds: regs::State,
    /// The namespaces/mounts/IPC tab (set-wide: kept across processes).
    pub container: tabs::Scroll,
    pub raw: tabs::raw::State,
    pub prompt: Option<Prompt>,
    pub help: bool,
    /// One-line message for the footer (cleared by the next key).
    pub status: Option<String>,
    pub last_search: Option<String>,
    pub search: Option<SearchJob>,
    pub quit: bool,
    pub areas: Areas,
}

impl App {
    pub fn new(dump: Dump) -> App {
        let status = dump.errors.first().cloned();
        App {
            dump,
            focus: Focus::Tree,
            tab: Tab::Mappings,
            tree: ListNav::default(),
            show_ids: false,
            maps: ListNav::default(),
            files: ListNav::default(),
            socks: ListNav::default(),
            mem: memory::State::default(),
            regs: regs::State::default(),
            creds: regs::State::default(),
            container: tabs::Scroll::default(),
            raw: tabs::raw::State::default(),
            prompt: None,
            help: false,
            status,
            last_search: None,
            search: None,
            quit: false,
            areas: Areas::default(),
        }
    }

    /// Pid of the selected process.
    pub fn pid(&self) -> u32 {
        self.dump.procs.get(self.tree.sel).map_or(0, |p| p.pid)
    }

    /// Details of the selected process (loaded on first use).
    pub fn detail(&self) -> Rc<ProcDetail> {
        self.dump.detail(self.pid())
    }

    /// Whether background work (a memory search) is pending.
    pub fn busy(&self) -> bool {
        self.search.is_some()
    }

    fn select_proc(&mut self, i: usize) {
        let n = self.dump.procs.len();
        let old = self.tree.sel;
        self.tree.select(i, n);
        if self.tree.sel != old {
            self.reset_tabs();
        }
    }

    fn move_tree(&mut self, m: Move) {
        let old = self.tree.sel;
        self.tree.apply(m, self.dump.procs.len());
        if self.tree.sel != old {
            self.reset_tabs();
        }
    }

    fn reset_tabs(&mut self) {
        self.maps = ListNav::default();
        self.files = ListNav::default();
        self.socks = ListNav::default();
        self.mem = memory::State {
            rows: self.mem.rows,
            bpr: self.mem.bpr,
            ..Default::default()
        };
        self.regs = regs::State::default();
        self.creds = regs::State::default();
        self.search = None;
        if self.tab == Tab::Raw {
            let t = RawTarget::Pstree { pid: self.pid() };
            self.raw.set(&self.dump, t);
        }
    }

    /// The image entry behind what is selected in the current tab (for Raw).
    pub fn context_target(&self) -> RawTarget {
        let pid = self.pid();
        let det = self.detail();
        let file = |fi: Option<usize>, id: Option<u32>| RawTarget::File {
            files_id: det.files_id.unwrap_or(0),
            fdinfo_index: fi,
            file_id: id,
        };
        if self.focus == Focus::Tree {
            return RawTarget::Pstree { pid };
        }
        match self.tab {
            Tab::Mappings if !det.vmas.is_empty() => RawTarget::Vma {
                pid,
                index: self.maps.sel.min(det.vmas.len() - 1),
            },
            Tab::Mappings => RawTarget::Mm { pid },
            Tab::Files => match det.fds.get(self.files.sel) {
                Some(d) => file(d.fdinfo_index, d.file_id),
                None => RawTarget::Pstree { pid },
            },
            Tab::Sockets => match det.socks.get(self.socks.sel) {
                Some(s) => file(Some(s.fdinfo_index), Some(s.file_id)),
                None => RawTarget::Pstree { pid },
            },
            Tab::Memory if det.dumped(self.mem.cursor) => RawTarget::PageRun {
                pid,
                addr: self.mem.cursor,
            },
            Tab::Memory => match self.mem.vma {
                Some(index) => RawTarget::Vma { pid, index },
                None => RawTarget::Mm { pid },
            },
            Tab::Regs | Tab::Creds => {
                let th = if self.tab == Tab::Regs {
                    self.regs.thread
                } else {
                    self.creds.thread
                };
                RawTarget::Core {
                    tid: det.threads.get(th).map_or(pid, |t| t.tid),
                }
            }
            Tab::Container => RawTarget::Pstree { pid },
            Tab::Raw => self.raw.target.clone().unwrap_or(RawTarget::Pstree { pid }),
        }
    }

    /// Switch to tab `t` (focus goes to the detail pane).
    pub fn set_tab(&mut self, t: Tab) {
        if t == Tab::Raw && (self.tab != Tab::Raw || self.focus == Focus::Tree) {
            let target = self.context_target();
            self.raw.set(&self.dump, target);
        }
        if t == Tab::Memory {
            let det = self.detail();
            self.mem.ensure(&det);
        }
        self.tab = t;
        self.focus = Focus::Detail;
    }

    /// Tab / Shift-Tab: the tree, then each tab, round.
    fn cycle(&mut self, forward: bool) {
        match (self.focus, forward) {
            (Focus::Tree, true) => self.set_tab(self.tab),
            (Focus::Tree, false) => self.set_tab(Tab::Raw),
            (Focus::Detail, true) => match self.tab.next() {
                Some(t) => self.set_tab(t),
                None => self.focus = Focus::Tree,
            },
            (Focus::Detail, false) => match self.tab.prev() {
                Some(t) => self.set_tab(t),
                None => self.focus = Focus::Tree,
            },
        }
    }

    /// Handle one key.
    pub fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c')) {
            self.quit = true;
            return;
        }
        if self.help {
            self.help = false;
            if k.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return;
        }
        if self.prompt.is_some() {
            self.prompt_key(k);
            return;
        }
        self.status = None;
        if self.search.is_some() && k.code == KeyCode::Esc {
            self.search = None;
            self.status = Some("search cancelled".into());
            return;
        }
        match k.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Tab => self.cycle(true),
            KeyCode::BackTab => self.cycle(false),
            KeyCode::Char(c @ '1'..='8') => self.set_tab(Tab::ALL[c as usize - '1' as usize]),
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Search,
                    input: String::new(),
                })
            }
            KeyCode::Char('n') => match self.last_search.clone() {
                Some(q) => self.run_search(&q),
                None => self.status = Some("no search yet: / to search".into()),
            },
            KeyCode::Char('g') if self.tab == Tab::Memory && self.focus == Focus::Detail => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Goto,
                    input: String::new(),
                })
            }
            KeyCode::Char('s') => self.show_ids = !self.show_ids,
            KeyCode::Esc => self.focus = Focus::Tree,
            _ => match self.focus {
                Focus::Tree => self.tree_key(k.code),
                Focus::Detail => self.detail_key(k.code),
            },
        }
    }

    fn list_move(code: KeyCode) -> Option<Move> {
        Some(match code {
            KeyCode::Up | KeyCode::Char('k') => Move::Up,
            KeyCode::Down | KeyCode::Char('j') => Move::Down,
            KeyCode::PageUp => Move::PageUp,
            KeyCode::PageDown | KeyCode::Char(' ') => Move::PageDown,
            KeyCode::Home => Move::Home,
            KeyCode::End | KeyCode::Char('G') => Move::End,
            _ => return None,
        })
    }

    fn tree_key(&mut self, code: KeyCode) {
        if let Some(m) = Self::list_move(code) {
            self.move_tree(m);
            return;
        }
        if matches!(code, KeyCode::Enter | KeyCode::Right | KeyCode::Char('l')) {
            self.set_tab(self.tab);
        }
    }

    fn detail_key(&mut self, code: KeyCode) {
        let det = self.detail();
        if self.tab == Tab::Memory {
            let m = match code {
                KeyCode::Left | KeyCode::Char('h') => Some(MemMove::Left),
                KeyCode::Right | KeyCode::Char('l') => Some(MemMove::Right),
                KeyCode::Up | KeyCode::Char('k') => Some(MemMove::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(MemMove::Down),
                KeyCode::PageUp => Some(MemMove::PageUp),
                KeyCode::PageDown | KeyCode::Char(' ') => Some(MemMove::PageDown),
                KeyCode::Home => Some(MemMove::Home),
                KeyCode::End | KeyCode::Char('G') => Some(MemMove::End),
                _ => None,
            };
            if let Some(m) = m {
                self.mem.apply(&det, m);
                return;
            }
            match code {
                KeyCode::Char('[') => self.mem.step_vma(&det, -1),
                KeyCode::Char(']') => self.mem.step_vma(&det, 1),
                KeyCode::Enter => self.set_tab(Tab::Raw),
                _ => {}
            }
            return;
        }
        match code {
            KeyCode::Left | KeyCode::Char('h') => {
                match self.tab.prev() {
                    Some(t) => self.set_tab(t),
                    None => self.focus = Focus::Tree,
                }
                return;
            }
            KeyCode::Right | KeyCode::Char('l') => {
                if let Some(t) = self.tab.next() {
                    self.set_tab(t);
                }
                return;
            }
            KeyCode::Char('t') if matches!(self.tab, Tab::Regs | Tab::Creds) => {
                let st = if self.tab == Tab::Regs {
                    &mut self.regs
                } else {
                    &mut self.creds
                };
                st.thread = (st.thread + 1) % det.threads.len().max(1);
                st.scroll = Default::default();
                return;
            }
            _ => {}
        }
        if let Some(m) = Self::list_move(code) {
            self.detail_move(m);
            return;
        }
        if code == KeyCode::Enter {
            match self.tab {
                Tab::Mappings if !det.vmas.is_empty() => {
                    self.mem.open(&det, self.maps.sel.min(det.vmas.len() - 1));
                    self.set_tab(Tab::Memory);
                }
                Tab::Files | Tab::Sockets | Tab::Regs | Tab::Creds => self.set_tab(Tab::Raw),
                _ => {}
            }
        }
    }

    /// Move in the current tab (keys and wheel).
    fn detail_move(&mut self, m: Move) {
        let det = self.detail();
        match self.tab {
            Tab::Mappings => self.maps.apply(m, det.vmas.len()),
            Tab::Files => self.files.apply(m, det.fds.len()),
            Tab::Sockets => self.socks.apply(m, det.socks.len()),
            Tab::Memory => {
                let mm = match m {
                    Move::Up => MemMove::Up,
                    Move::Down => MemMove::Down,
                    Move::PageUp => MemMove::PageUp,
                    Move::PageDown => MemMove::PageDown,
                    Move::Home => MemMove::Home,
                    Move::End => MemMove::End,
                    Move::By(n) => MemMove::Rows(n as i64),
                };
                self.mem.apply(&det, mm);
            }
            Tab::Regs => {
                let n = regs::lines(&det, self.regs.thread, self.areas.detail.width).len();
                self.regs.scroll.apply(m, n)
            }
            Tab::Creds => {
                let n = tabs::creds::lines(&det, self.creds.thread).len();
                self.creds.scroll.apply(m, n)
            }
            Tab::Container => {
                let n = self.dump.container_lines().len();
                self.container.apply(m, n)
            }
            Tab::Raw => self.raw.scroll.apply(m, self.raw.lines.len() + 1),
        }
    }

    fn prompt_key(&mut self, k: KeyEvent) {
        let Some(p) = self.prompt.as_mut() else { return };
        match k.code {
            KeyCode::Esc => self.prompt = None,
            // Backspace deletes a character; on an empty prompt it closes the prompt.
            KeyCode::Backspace if p.input.pop().is_none() => self.prompt = None,
            KeyCode::Char(c) => p.input.push(c),
            KeyCode::Enter => {
                let p = self.prompt.take().unwrap_or(Prompt {
                    kind: PromptKind::Search,
                    input: String::new(),
                });
                match p.kind {
                    PromptKind::Search if !p.input.is_empty() => {
                        self.last_search = Some(p.input.clone());
                        self.run_search(&p.input);
                    }
                    PromptKind::Search => {}
                    PromptKind::Goto => self.goto(&p.input),
                }
            }
            _ => {}
        }
    }

    fn goto(&mut self, s: &str) {
        let t = s.trim();
        let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        match u64::from_str_radix(t, 16) {
            Ok(a) => {
                let det = self.detail();
                match self.mem.goto(&det, a) {
                    Ok(()) => self.status = Some(format!("at {a:#x}")),
                    Err(e) => self.status = Some(e),
                }
            }
            Err(_) => self.status = Some(format!("{s:?} is not a hex address")),
        }
    }

    /// `/` and `n`: find in whatever has the focus.
    fn run_search(&mut self, q: &str) {
        let det = self.detail();
        let not_found = |what: &str| Some(format!("{q:?} not found in {what}"));
        if self.focus == Focus::Tree {
            let rows: Vec<String> = self
                .dump
                .procs
                .iter()
                .map(|p| format!("{} {}", p.pid, p.comm))
                .collect();
            match find_row(&rows, self.tree.sel, q) {
                Some(i) => self.select_proc(i),
                None => self.status = not_found("the process tree"),
            }
            return;
        }
        let (rows, nav) = match self.tab {
            Tab::Mappings => (tabs::mappings::rows(&det), &mut self.maps),
            Tab::Files => (tabs::files::rows(&det), &mut self.files),
            Tab::Sockets => (tabs::sockets::rows(&det), &mut self.socks),
            Tab::Memory => {
                match memory::parse_needle(q) {
                    Ok(needle) => {
                        let from = self.mem.cursor + 1;
                        let job = SearchJob::new(&det, needle, q.to_string(), from);
                        self.search = Some(job);
                        self.status = Some(format!("searching {q:?}…"));
                    }
                    Err(e) => self.status = Some(e),
                }
                return;
            }
            Tab::Regs | Tab::Creds | Tab::Container | Tab::Raw => {
                let (text, scroll) = match self.tab {
                    Tab::Container => (self.dump.container_lines().to_vec(), &mut self.container),
                    Tab::Regs => (
                        regs::lines(&det, self.regs.thread, self.areas.detail.width),
                        &mut self.regs.scroll,
                    ),
                    Tab::Creds => (tabs::creds::lines(&det, self.creds.thread), &mut self.creds.scroll),
                    _ => {
                        let mut t = vec![self.raw.title.clone()];
                        t.extend(self.raw.lines.iter().cloned());
                        (t, &mut self.raw.scroll)
                    }
                };
                match find_row(&text, scroll.top, q) {
                    Some(i) => scroll.top = i,
                    None => self.status = not_found("this tab"),
                }
                return;
            }
        };
        match find_row(&rows, nav.sel, q) {
            Some(i) => nav.select(i, rows.len()),
            None => self.status = not_found("this tab"),
        }
    }

    /// Advance background work by one bounded step (called by the event loop when idle).
    pub fn tick(&mut self) {
        let Some(job) = self.search.as_mut() else { return };
        match job.step(&self.dump, SEARCH_STEP) {
            Ok(Step::More) => {
                self.status = Some(format!("searching {:?}… {}%  (Esc cancels)", job.label, job.percent()))
            }
            Ok(Step::Found(a)) => {
                let n = job.needle.len();
                let label = job.label.clone();
                self.search = None;
                let det = self.detail();
                match self.mem.goto(&det, a) {
                    Ok(()) => {
                        self.mem.hit = Some((a, n));
                        self.status = Some(format!("{label:?} at {a:#x}  (n: next)"));
                    }
                    Err(e) => self.status = Some(e),
                }
            }
            Ok(Step::NotFound) => {
                self.status = Some(format!(
                    "{:?} not found in the dumped memory of pid {}",
                    job.label, job.pid
                ));
                self.search = None;
            }
            Err(e) => {
                self.status = Some(e);
                self.search = None;
            }
        }
    }

    /// Run background work to the end (tests).
    pub fn finish_work(&mut self) {
        while self.busy() {
            self.tick();
        }
    }

    /// Mouse: the wheel scrolls the pane under the pointer; a click selects a process or a tab.
    pub fn on_mouse(&mut self, m: MouseEvent) {
        let p = Position::new(m.column, m.row);
        let d = match m.kind {
            MouseEventKind::ScrollDown => 3,
            MouseEventKind::ScrollUp => -3,
            MouseEventKind::Down(_) => 0,
            _ => return,
        };
        if self.areas.tree.contains(p) {
            self.focus = Focus::Tree;
            if d != 0 {
                self.move_tree(Move::By(d));
            } else if self.areas.tree_rows.contains(p) {
                let i = self.tree.offset + (m.row - self.areas.tree_rows.y) as usize;
                if i < self.dump.procs.len() {
                    self.select_proc(i);
                }
            }
        } else if self.areas.detail.contains(p) {
            if d != 0 {
                self.focus = Focus::Detail;
                self.detail_move(Move::By(d));
            } else if let Some(&(_, _, _, t)) = self
                .areas
                .tabs
                .iter()
                .find(|(x0, x1, y, _)| m.row == *y && m.column >= *x0 && m.column < *x1)
            {
                self.set_tab(t);
            } else {
                self.focus = Focus::Detail;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::{KeyEventState, MouseButton};

    fn app(name: &str) -> App {
        App::new(Dump::open(format!("../../fixtures/criu-4.2/{name}/images")).unwrap())
    }

    fn key(a: &mut App, code: KeyCode) {
        a.on_key(KeyEvent {
            code,
            modifiers: if code == KeyCode::BackTab {
                KeyModifiers::SHIFT
            } else {
                KeyModifiers::NONE
            },
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        });
    }

    fn typ(a: &mut App, s: &str) {
        for c in s.chars() {
            key(a, KeyCode::Char(c));
        }
    }

    #[test]
    fn arrows_and_hjkl_walk_the_tree() {
        let mut a = app("proctree");
        assert_eq!(a.pid(), 9406);
        key(&mut a, KeyCode::Down);
        key(&mut a, KeyCode::Char('j'));
        assert_eq!(a.pid(), 9409);
        key(&mut a, KeyCode::Char('k'));
        assert_eq!(a.pid(), 9408);
        key(&mut a, KeyCode::End);
        assert_eq!(a.pid(), 9411);
        key(&mut a, KeyCode::Down);
        assert_eq!(a.pid(), 9411, "stays on the last process");
        key(&mut a, KeyCode::Home);
        key(&mut a, KeyCode::Up);
        assert_eq!(a.pid(), 9406);
    }

    #[test]
    fn container_tab_shows_the_sets_namespaces_and_ipc() {
        let mut a = app("sysv_ipc");
        key(&mut a, KeyCode::Char('7'));
        assert_eq!(a.tab, Tab::Container);
        let l = a.dump.container_lines().to_vec();
        assert!(l.iter().any(|x| x.contains("1 shm, 1 sem, 1 msg")), "{l:#?}");
        // Find moves the view to the line.
        a.prompt = Some(Prompt {
            kind: PromptKind::Search,
            input: "0x00003333".into(),
        });
        key(&mut a, KeyCode::Enter);
        assert!(l[a.container.top].contains("0x00003333"), "{:?}", l[a.container.top]);
    }

    #[test]
    fn tab_cycles_tree_then_every_tab() {
        let mut a = app("proctree");
        assert_eq!(a.focus, Focus::Tree);
        let mut seen = vec![];
        for _ in 0..Tab::ALL.len() {
            key(&mut a, KeyCode::Tab);
            assert_eq!(a.focus, Focus::Detail);
            seen.push(a.tab);
        }
        assert_eq!(seen, Tab::ALL.to_vec());
        key(&mut a, KeyCode::Tab);
        assert_eq!(a.focus, Focus::Tree);
        key(&mut a, KeyCode::BackTab);
        assert_eq!((a.focus, a.tab), (Focus::Detail, Tab::Raw));
        key(&mut a, KeyCode::Char('3'));
        assert_eq!(a.tab, Tab::Sockets);
        key(&mut a, KeyCode::Char('h'));
        assert_eq!(a.tab, Tab::Files);
        key(&mut a, KeyCode::Right);
        assert_eq!(a.tab, Tab::Sockets);
        key(&mut a, KeyCode::Esc);
        assert_eq!(a.focus, Focus::Tree);
    }

    #[test]
    fn enter_on_a_mapping_opens_its_memory() {
        let mut a = app("proctree");
        key(&mut a, KeyCode::Down); // 9408
        key(&mut a, KeyCode::Enter);
        assert_eq!((a.focus, a.tab), (Focus::Detail, Tab::Mappings));
        for _ in 0..5 {
            key(&mut a, KeyCode::Char('j'));
        }
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.tab, Tab::Memory);
        assert_eq!(a.mem.vma, Some(5));
        assert_eq!(a.mem.cursor, 0x55d9a9a4d000);
        key(&mut a, KeyCode::Char('l'));
        key(&mut a, KeyCode::Char('j'));
        assert_eq!(a.mem.cursor, 0x55d9a9a4d011);
        key(&mut a, KeyCode::Char('h'));
        key(&mut a, KeyCode::Char('h'));
        key(&mut a, KeyCode::Char('k'));
        key(&mut a, KeyCode::Char('k'));
        assert_eq!(a.mem.cursor, 0x55d9a9a4d000, "clamped to the mapping start");
        key(&mut a, KeyCode::End);
        assert_eq!(a.mem.cursor, 0x55d9a9a6dfff);
        key(&mut a, KeyCode::Char(']'));
        assert_eq!(a.mem.vma, Some(6));
    }

    #[test]
    fn goto_address_and_bad_address() {
        let mut a = app("proctree");
        key(&mut a, KeyCode::Char('4'));
        assert_eq!(a.tab, Tab::Memory);
        key(&mut a, KeyCode::Char('g'));
        typ(&mut a, "0x7ffc0ead6e80");
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.mem.cursor, 0x7ffc0ead6e80);
        let det = a.detail();
        assert_eq!(det.vmas[a.mem.vma.unwrap()].kind, "stack");
        key(&mut a, KeyCode::Char('g'));
        typ(&mut a, "12");
        key(&mut a, KeyCode::Enter);
        assert!(a.status.as_deref().unwrap().contains("in no mapping"), "{:?}", a.status);
        assert_eq!(a.mem.cursor, 0x7ffc0ead6e80);
        key(&mut a, KeyCode::Char('g'));
        typ(&mut a, "zz");
        key(&mut a, KeyCode::Enter);
        assert!(a.status.as_deref().unwrap().contains("not a hex address"));
    }

    #[test]
    fn memory_search_finds_text_and_wraps() {
        let mut a = app("proctree");
        key(&mut a, KeyCode::Down); // 9408, child0
        key(&mut a, KeyCode::Char('4'));
        key(&mut a, KeyCode::Char('/'));
        typ(&mut a, "proctree.child0");
        key(&mut a, KeyCode::Enter);
        assert!(a.busy());
        a.finish_work();
        let first = a.mem.cursor;
        let bytes = a.dump.set().read_memory(9408, first, 15).unwrap();
        assert_eq!(&bytes, b"proctree.child0");
        assert_eq!(a.mem.hit, Some((first, 15)));
        // n finds the next one, and after the last it wraps back to the first.
        let mut seen = vec![first];
        for _ in 0..5 {
            key(&mut a, KeyCode::Char('n'));
            a.finish_work();
            seen.push(a.mem.cursor);
        }
        assert!(seen[1..].contains(&first), "wraps: {seen:x?}");
        key(&mut a, KeyCode::Char('/'));
        typ(&mut a, "no such bytes in here");
        key(&mut a, KeyCode::Enter);
        a.finish_work();
        assert!(a.status.as_deref().unwrap().contains("not found"));
    }

    #[test]
    fn search_in_tree_and_lists() {
        let mut a = app("proctree");
        key(&mut a, KeyCode::Char('/'));
        typ(&mut a, "9410");
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.pid(), 9410);
        key(&mut a, KeyCode::Char('1'));
        key(&mut a, KeyCode::Char('/'));
        typ(&mut a, "ld-linux");
        key(&mut a, KeyCode::Enter);
        let det = a.detail();
        assert!(det.vmas[a.maps.sel].file.contains("ld-linux"));
        key(&mut a, KeyCode::Char('/'));
        key(&mut a, KeyCode::Esc);
        assert!(a.prompt.is_none());
    }

    #[test]
    fn enter_on_a_socket_shows_its_raw_entries() {
        let mut a = app("tcp_est");
        key(&mut a, KeyCode::Char('3'));
        key(&mut a, KeyCode::Down);
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.tab, Tab::Raw);
        assert!(a.raw.title.contains("files.img"), "{}", a.raw.title);
        assert!(a.raw.lines.iter().any(|l| l.contains("\"isk\"")));
    }

    #[test]
    fn threads_cycle_with_t() {
        let mut a = app("threads4");
        key(&mut a, KeyCode::Char('5'));
        let tids: Vec<u32> = (0..5)
            .map(|_| {
                let t = a.detail().threads[a.regs.thread].tid;
                key(&mut a, KeyCode::Char('t'));
                t
            })
            .collect();
        assert_eq!(tids, vec![9304, 9306, 9307, 9308, 9304]);
    }

    #[test]
    fn help_quit_and_ids() {
        let mut a = app("proctree");
        key(&mut a, KeyCode::Char('?'));
        assert!(a.help);
        key(&mut a, KeyCode::Char('x'));
        assert!(!a.help && !a.quit);
        key(&mut a, KeyCode::Char('s'));
        assert!(a.show_ids);
        key(&mut a, KeyCode::Char('q'));
        assert!(a.quit);
    }

    #[test]
    fn wheel_scrolls_the_pane_under_the_pointer() {
        let mut a = app("proctree");
        a.areas.tree = Rect::new(0, 1, 24, 20);
        a.areas.tree_rows = Rect::new(1, 3, 22, 17);
        a.areas.detail = Rect::new(24, 1, 56, 20);
        let ev = |kind, column, row| MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        };
        a.on_mouse(ev(MouseEventKind::ScrollDown, 5, 5));
        assert_eq!(a.pid(), 9410);
        a.on_mouse(ev(MouseEventKind::Down(MouseButton::Left), 5, 4));
        assert_eq!(a.pid(), 9408);
        a.on_mouse(ev(MouseEventKind::ScrollDown, 40, 10));
        assert_eq!((a.focus, a.maps.sel), (Focus::Detail, 3));
    }
}
