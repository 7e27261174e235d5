//! Namespaces/Mounts/IPC: what the set holds of a container, for the whole tree (not the selected
//! process): the namespaces (each kind's id, the dumper's or the tree's own, its tasks, what its
//! images say: maps, clocks, hostname …), the mount trees, and the SysV IPC objects. The text is
//! crit's (`crit x DIR ns|mnt|ipc`), one section per entry of [`SECTIONS`]: a new listing (cgroups)
//! is one more line there.

use cryo_crit::explore::ns;
use cryo_image::ImageSet;
use ratatui::layout::Rect;
use ratatui::Frame;

use super::{draw_text, Scroll};

/// One section: its heading and its text from the image set.
pub struct Section {
    pub title: &'static str,
    pub build: fn(&ImageSet) -> Result<String, String>,
}

fn namespaces(set: &ImageSet) -> Result<String, String> {
    ns::build(set).map(|v| ns::render(&v)).map_err(|e| e.to_string())
}

fn mounts(set: &ImageSet) -> Result<String, String> {
    let m = ns::build_mnt(set).map_err(|e| e.to_string())?;
    Ok(if m.is_empty() {
        "no mount namespace of the tree's own (no mountpoints-*.img)".into()
    } else {
        ns::render_mnt(&m)
    })
}

fn ipc(set: &ImageSet) -> Result<String, String> {
    ns::build_ipc(set)
        .map(|v| ns::render_ipc(&v))
        .map_err(|e| e.to_string())
}

/// The sections, in order.
pub const SECTIONS: &[Section] = &[
    Section {
        title: "namespaces",
        build: namespaces,
    },
    Section {
        title: "mounts",
        build: mounts,
    },
    Section {
        title: "SysV IPC (contents: crit mem DIR --shm ID)",
        build: ipc,
    },
];

/// The text of the tab (headings start with `─`); a section that cannot be read says why.
pub fn lines(set: &ImageSet) -> Vec<String> {
    let mut out = Vec::new();
    for s in SECTIONS {
        out.push(format!("─ {}", s.title));
        match (s.build)(set) {
            Ok(t) => out.extend(t.lines().map(str::to_string)),
            Err(e) => out.push(format!("cannot read: {e}")),
        }
        out.push(String::new());
    }
    out
}

pub fn draw(f: &mut Frame, area: Rect, text: &[String], scroll: &mut Scroll) {
    draw_text(f, area, text, scroll);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysv_ipc_fixture_shows_its_namespaces_and_objects() {
        let dir = "../../fixtures/criu-4.2/sysv_ipc/images";
        let set = ImageSet::open(dir).unwrap();
        let l = lines(&set);
        let at = |h: &str| l.iter().position(|x| x.starts_with("─ ") && x.contains(h)).unwrap();
        assert!(at("namespaces") < at("mounts") && at("mounts") < at("SysV IPC"));
        assert!(
            l.iter()
                .any(|x| x.starts_with("ipc") && x.contains("tree") && x.contains("1 shm, 1 sem, 1 msg")),
            "{l:#?}"
        );
        assert!(
            l.iter().any(|x| x.contains("no mount namespace of the tree's own")),
            "{l:#?}"
        );
        assert!(
            l.iter().any(|x| x.contains("0x00001111") && x.contains("12036@0x7f")),
            "{l:#?}"
        );
    }
}
