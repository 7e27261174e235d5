//! How the TUI copes with a big dump: a copy of the loop_heap fixture with one extra anonymous mapping of
//! `CRYO_BENCH_MIB` MiB (default 1024) whose pages are all in pages-1.img (a sparse file), and a 16-byte
//! marker in its last bytes. Measures (medians of 7 runs):
//! * open: `Dump::open` + the process's details + drawing the Mappings tab (nothing of the pages is read);
//! * window: drawing the Memory tab at the end of the big mapping (one screenful read from the pages file);
//! * search: finding the marker from the start of the mapping, in the UI's 1 MiB steps (MiB/s).
//!
//! Run: `cargo bench -p cryo-tui --bench browse`.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cryo_image::{pb, ImageSet, ImageWriter, PAGE_SIZE};
use cryo_tui::app::App;
use cryo_tui::tabs::Tab;
use cryo_tui::{ui, Dump};
use prost::Message;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use ratatui::Terminal;

const BIG: u64 = 0x6000_0000_0000;
const MARK: &[u8; 16] = b"cryo-bench-mark!";

fn make_set(mib: u64) -> (PathBuf, u32) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2/loop_heap/images");
    let dir = std::env::temp_dir().join(format!("cryo-tui-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let set = ImageSet::open(&dir).unwrap();
    let pid = set.pstree().unwrap()[0].pid;
    let pages = mib * 1024 * 1024 / PAGE_SIZE;
    // mm: one more mapping, in address order.
    let mut mm = set.mm(pid).unwrap();
    mm.vmas.push(pb::VmaEntry {
        start: BIG,
        end: BIG + pages * PAGE_SIZE,
        pgoff: 0,
        shmid: 0,
        prot: 3,
        flags: 0x22,
        status: 1 | (1 << 9),
        fd: -1,
        madv: None,
        fdflags: None,
    });
    mm.vmas.sort_by_key(|v| v.start);
    let mut w = ImageWriter::create(dir.join(format!("mm-{pid}.img")), Some("MM")).unwrap();
    w.entry(&mm).unwrap();
    w.finish().unwrap();
    // pagemap: the same runs, then the big one (its pages go at the end of the pages file).
    let img = set.image(&format!("pagemap-{pid}.img")).unwrap();
    let mut w = ImageWriter::create(dir.join(format!("pagemap-{pid}.img")), Some("PAGEMAP")).unwrap();
    let head = pb::PagemapHead::decode(img.entries[0].msg.encode_to_vec().as_slice()).unwrap();
    w.entry(&head).unwrap();
    for e in &img.entries[1..] {
        w.entry(&pb::PagemapEntry::decode(e.msg.encode_to_vec().as_slice()).unwrap())
            .unwrap();
    }
    w.entry(&pb::PagemapEntry {
        vaddr: BIG,
        compat_nr_pages: 0,
        in_parent: None,
        flags: Some(cryo_image::PE_PRESENT),
        nr_pages: Some(pages),
    })
    .unwrap();
    w.finish().unwrap();
    let pf = dir.join(format!("pages-{}.img", head.pages_id));
    let mut f = OpenOptions::new().write(true).open(&pf).unwrap();
    let old = f.metadata().unwrap().len();
    let end = old + pages * PAGE_SIZE;
    f.set_len(end).unwrap();
    f.seek(SeekFrom::Start(end - MARK.len() as u64)).unwrap();
    f.write_all(MARK).unwrap();
    (dir, pid)
}

fn key(a: &mut App, code: KeyCode) {
    a.on_key(KeyEvent {
        code,
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    });
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mib: u64 = std::env::var("CRYO_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let (dir, pid) = make_set(mib);
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let (mut open, mut window, mut search) = (vec![], vec![], vec![]);
    for _ in 0..7 {
        let t = Instant::now();
        let mut app = App::new(Dump::open(&dir).unwrap());
        app.set_tab(Tab::Mappings);
        term.draw(|f| ui::draw(f, &mut app)).unwrap();
        open.push(t.elapsed());

        let det = app.detail();
        let big = det.vma_at(BIG).unwrap();
        app.set_tab(Tab::Memory);
        let t = Instant::now();
        app.mem.goto(&det, BIG + mib * 1024 * 1024 - 1).unwrap();
        term.draw(|f| ui::draw(f, &mut app)).unwrap();
        window.push(t.elapsed());

        app.mem.open(&det, big);
        key(&mut app, KeyCode::Char('/'));
        for c in std::str::from_utf8(MARK).unwrap().chars() {
            key(&mut app, KeyCode::Char(c));
        }
        let t = Instant::now();
        key(&mut app, KeyCode::Enter);
        app.finish_work();
        search.push(t.elapsed());
        assert_eq!(
            app.mem.cursor,
            BIG + mib * 1024 * 1024 - MARK.len() as u64,
            "{:?}",
            app.status
        );
        assert_eq!(app.dump.procs[0].pid, pid);
    }
    let s = median(search);
    println!("dump with a {mib} MiB mapping, medians of 7:");
    println!("  open + details + Mappings draw: {:?}", median(open));
    println!("  Memory window at the end (read + draw): {:?}", median(window));
    println!(
        "  search to the last bytes: {:?} ({:.0} MiB/s, in 1 MiB steps)",
        s,
        mib as f64 / s.as_secs_f64()
    );
    let _ = fs::remove_dir_all(&dir);
}
