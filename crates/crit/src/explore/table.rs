//! Aligned text tables for people.

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header and rows of cells; columns are as wide as their widest cell, two spaces apart, and the
/// last left-aligned column is not padded (no trailing blanks).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(cols: &[(&str, Align)]) -> Self {
        Table {
            header: cols.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Render with each line prefixed by `indent`.
    pub fn render_indented(&self, indent: &str) -> String {
        let n = self.header.len();
        let mut width = vec![0usize; n];
        for (i, (h, _)) in self.header.iter().enumerate() {
            width[i] = h.chars().count();
        }
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|(h, _)| h.clone()).collect();
        for cells in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::from(indent);
            for (i, (w, (_, align))) in width.iter().zip(&self.header).enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(c.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(c);
                    }
                    Align::Left => {
                        line.push_str(c);
                        if i + 1 < n {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn render(&self) -> String {
        self.render_indented("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns() {
        let mut t = Table::new(&[("PID", Align::Right), ("COMM", Align::Left), ("X", Align::Left)]);
        t.row(vec!["1".into(), "init".into(), "a".into()]);
        t.row(vec!["12345".into(), "sh".into(), "".into()]);
        assert_eq!(t.render(), "  PID  COMM  X\n    1  init  a\n12345  sh\n");
    }
}
