//! Raw: crit's JSON (as `crit show` prints it) of the image entry behind the selection.

use ratatui::layout::Rect;
use ratatui::Frame;

use super::Scroll;
use crate::model::{Dump, RawTarget};

/// The entry shown and its text (loaded when the target changes).
#[derive(Debug, Clone, Default)]
pub struct State {
    pub target: Option<RawTarget>,
    pub title: String,
    pub lines: Vec<String>,
    pub scroll: Scroll,
}

impl State {
    /// Show `t` (decoding its image now; nothing if it is already shown).
    pub fn set(&mut self, dump: &Dump, t: RawTarget) {
        if self.target.as_ref() == Some(&t) {
            return;
        }
        let (title, text) = dump.raw(&t);
        self.title = title;
        self.lines = text.lines().map(str::to_string).collect();
        self.target = Some(t);
        self.scroll = Scroll::default();
    }
}

pub fn draw(f: &mut Frame, area: Rect, st: &mut State) {
    let mut text = Vec::with_capacity(st.lines.len() + 1);
    text.push(format!("─ {}", st.title));
    text.extend(st.lines.iter().cloned());
    super::draw_text(f, area, &text, &mut st.scroll);
}
