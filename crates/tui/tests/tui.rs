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

/// A real cryo dump (tests/fixtures/cryo-netsk: tests/progs/packetsk.c and netlinksk.c under a
/// shell, dumped by cryo in a network namespace): the packet sockets of the first, the netlink
/// sockets of the second, in the words of `crit x DIR sk`.
#[test]
fn sockets_packet_and_netlink_of_a_cryo_dump() {
    let mut a = App::new(Dump::open("tests/fixtures/cryo-netsk").unwrap());
    keys(&mut a, &[Down, Char('3')]);
    let packet = screen(&mut a, 120, 12);
    assert!(
        packet.contains("DGRAM/IP") && packet.contains("ifindex 1 auxdata mc 1"),
        "{packet}"
    );
    insta::assert_snapshot!("sockets_packet_cryo_dump", packet);
    keys(&mut a, &[KeyCode::Esc, Down, Char('3')]);
    let netlink = screen(&mut a, 120, 12);
    assert!(
        netlink.contains("portid 16 groups 1,5") && netlink.contains("kernel"),
        "{netlink}"
    );
    insta::assert_snapshot!("sockets_netlink_cryo_dump", netlink);
}

/// A checkpoint archive (a tar of `checkpoint/` as podman exports it) opened through crit's archive
/// module shows the same Sockets tab as its directory.
#[test]
fn sockets_tab_of_an_archive_equals_its_directory() {
    let dir = std::path::Path::new("../../fixtures/criu-4.2/unix_pair/images");
    let mut b = tar::Builder::new(Vec::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let data = std::fs::read(e.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        b.append_data(
            &mut h,
            format!("checkpoint/{}", e.file_name().to_string_lossy()),
            data.as_slice(),
        )
        .unwrap();
    }
    let tmp = std::env::temp_dir().join(format!("cryo-tui-archive-{}.tar", std::process::id()));
    std::fs::write(&tmp, b.into_inner().unwrap()).unwrap();
    let sd = cryo_crit::archive::SetDir::open(&tmp).unwrap();
    assert!(sd.archive().is_some());
    let mut d = Dump::open(sd.path()).unwrap();
    d.dir = dir.display().to_string();
    let mut from_archive = App::new(d);
    let mut from_dir = app("unix_pair");
    for a in [&mut from_archive, &mut from_dir] {
        keys(a, &[Char('3')]);
    }
    assert_eq!(screen(&mut from_archive, 100, 24), screen(&mut from_dir, 100, 24));
    let unpacked = sd.path().to_path_buf();
    drop(sd);
    assert!(!unpacked.exists(), "the unpacked images were not removed");
    std::fs::remove_file(&tmp).unwrap();
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

// ---------------------------------------------------------------------------------------------------
// A real run under tmux.

/// The bytes proctree's children write to their 64 KiB heap buffer (fixtures/criu-4.2/proctree/src:
/// `fill_pattern(b, 64 << 10, seed)`: xorshift64 from `seed | 1`, 8 bytes at a time, little endian).
fn heap_pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() + 8 <= n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// A tmux session of our own (unique name, on its own server socket so no one else's tmux is touched),
/// killed by name when dropped, and its socket removed.
struct Tmux {
    name: String,
}

/// tmux on the server socket of session `name` (a file in the temp dir, removed with the session).
fn tmux(name: &str) -> std::process::Command {
    let mut c = std::process::Command::new("tmux");
    c.arg("-S").arg(socket(name)).args(["-f", "/dev/null"]);
    c
}

fn socket(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}.sock"))
}

impl Tmux {
    fn start(cmd: &str, w: u16, h: u16) -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("cryo-tui-e2e-{}-{nanos}", std::process::id());
        // Keep the pane after the program ends, to see how it ended.
        let shell = format!("{cmd}; echo \"[exited $?]\"; sleep 600");
        let st = tmux(&name)
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
            ])
            .arg(shell)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs (apt-get install tmux)");
        assert!(st.success(), "tmux new-session failed");
        Tmux { name }
    }

    fn send(&self, keys: &[&str]) {
        let st = tmux(&self.name)
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn send_text(&self, text: &str) {
        let st = tmux(&self.name)
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn capture(&self) -> String {
        let out = tmux(&self.name)
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the screen shows `what` (a wait, not a timing check: the limit only stops a hung run).
    fn wait_for(&self, what: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let s = self.capture();
            if s.contains(what) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "screen never showed {what:?}:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&self.name).args(["kill-session", "-t", &self.name]).status();
        let _ = std::fs::remove_file(socket(&self.name));
    }
}

#[test]
fn tmux_find_a_heap_string_in_a_child() {
    // A string the child proctree.child0 (seed 10) has in its heap: the first run of 6 letters/digits of
    // its pattern.
    let pat = heap_pattern(10, 64 << 10);
    let at = (0..pat.len() - 6)
        .find(|&i| pat[i..i + 6].iter().all(u8::is_ascii_alphanumeric))
        .unwrap();
    let needle = String::from_utf8(pat[at..at + 6].to_vec()).unwrap();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2/proctree/images");
    let tui = std::path::PathBuf::from(env!("CARGO_BIN_EXE_crit-tui"));
    // Through `crit tui` when crit is built beside us (cargo test --workspace), else crit-tui itself.
    let crit = tui.with_file_name("crit");
    let cmd = if crit.is_file() {
        format!("{} tui {}", crit.display(), dir.display())
    } else {
        format!("{} {}", tui.display(), dir.display())
    };
    eprintln!("running {cmd}");
    let t = Tmux::start(&cmd, 120, 30);
    t.wait_for("Processes");
    t.send(&["Down"]); // 9406 → 9408, the first child
    t.wait_for("9408 proctree");
    t.send(&["4"]); // Memory: opens on the heap
    t.wait_for("[heap]");
    t.send(&["/"]);
    t.wait_for("find bytes");
    t.send_text(&needle);
    t.send(&["Enter"]);
    let screen = t.wait_for(&format!("\"{needle}\" at 0x"));
    eprintln!("{screen}");

    // The address the status line names is in the heap mapping and holds the string.
    let line = screen
        .lines()
        .find(|l| l.contains(&format!("\"{needle}\" at 0x")))
        .unwrap();
    let hex = line.split(" at 0x").nth(1).unwrap().split_whitespace().next().unwrap();
    let addr = u64::from_str_radix(hex, 16).unwrap();
    let dump = Dump::open(&dir).unwrap();
    let det = dump.detail(9408);
    let heap = det.vmas.iter().find(|v| v.kind == "heap").unwrap();
    assert!(heap.start <= addr && addr < heap.end, "{addr:#x} not in the heap");
    assert_eq!(dump.set().read_memory(9408, addr, 6).unwrap(), needle.as_bytes());
    // The cursor row is on screen: its address and the bytes' hex.
    let row = addr & !15;
    assert!(screen.contains(&format!("{row:012x}  ")), "row {row:x} not shown");
    assert!(screen.contains(&format!("{:02x}", needle.as_bytes()[0])));

    t.send(&["q"]);
    t.wait_for("[exited 0]");
}

/// A copy of a fixture set in a scratch directory of our own (removed on drop).
struct Copy(std::path::PathBuf);

impl Copy {
    fn of(name: &str, tag: &str) -> Copy {
        let src =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/criu-4.2/{name}/images"));
        let dir = std::env::temp_dir().join(format!("cryo-tui-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        Copy(dir)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn broken_images_show_errors_not_panics() {
    let c = Copy::of("proctree", "broken");
    let d = &c.0;
    std::fs::remove_file(d.join("mm-9408.img")).unwrap();
    let core = std::fs::read(d.join("core-9409.img")).unwrap();
    std::fs::write(d.join("core-9409.img"), &core[..core.len() / 2]).unwrap();
    std::fs::write(d.join("pagemap-9410.img"), b"garbage!").unwrap();
    std::fs::remove_file(d.join("pages-5.img")).unwrap(); // 9411's pages
    std::fs::write(d.join("fdinfo-2.img"), b"").unwrap();

    let mut a = App::new(Dump::open(d).unwrap());
    // The tree still lists every process; the truncated core shows up as unknown.
    let p9409 = a.dump.procs.iter().find(|p| p.pid == 9409).unwrap();
    assert_eq!((p9409.comm.as_str(), p9409.state), ("?", "?"));
    assert!(
        a.dump.errors.iter().any(|e| e.contains("core-9409.img")),
        "{:?}",
        a.dump.errors
    );
    let mut screens = String::new();
    for _ in 0..5 {
        for tab in '1'..='7' {
            keys(&mut a, &[Char(tab)]);
            if tab == '4' {
                keys(&mut a, &[Char('/')]);
                text(&mut a, "x");
                keys(&mut a, &[Enter]);
            }
            screens.push_str(&screen(&mut a, 100, 30));
        }
        keys(&mut a, &[KeyCode::Esc, Down]);
    }
    assert!(screens.contains("mm-9408.img"), "missing mm is named");
    assert!(screens.contains("pagemap-9410.img"), "bad pagemap is named");
    assert!(screens.contains("fdinfo-2.img"), "bad fdinfo is named");
}

#[test]
fn shared_mappings_read_from_their_shmem_pages() {
    // fixtures/criu-4.2/memfd_shm/src: a 128 KiB memfd filled with pattern 4242, and a 64 KiB shared
    // anonymous region filled with pattern 4343 from its second page on (CRIU 4.2 dumps it as a memfd
    // named /dev/zero); both live in pagemap-shmem-*.img, not in the process's pagemap.
    let dump = Dump::open("../../fixtures/criu-4.2/memfd_shm/images").unwrap();
    for p in &dump.procs {
        let det = dump.detail(p.pid);
        assert!(det.errors.is_empty(), "{:?}", det.errors);
        let memfd = det.vmas.iter().find(|v| v.file == "memfd:anchor-memfd").unwrap();
        assert_eq!((memfd.dumped, memfd.pages), (32, 32));
        let mut buf = vec![0u8; 128 << 10];
        dump.read(&det, memfd.start, &mut buf).unwrap();
        assert!(buf == heap_pattern(4242, 128 << 10), "memfd contents of pid {}", p.pid);
        let anon = det.vmas.iter().find(|v| v.file == "memfd:/dev/zero").unwrap();
        let mut buf = vec![0u8; (64 << 10) - 4096];
        dump.read(&det, anon.start + 4096, &mut buf).unwrap();
        assert!(
            buf == heap_pattern(4343, (64 << 10) - 4096),
            "shared anon contents of pid {}",
            p.pid
        );
        // Memory search scans shared mappings too.
        let ranges = det.dumped_ranges();
        assert!(
            ranges.iter().any(|r| r.0 <= memfd.start && memfd.end <= r.1),
            "{ranges:x?}"
        );
    }
    // SysV shm: VMA_ANON_SHARED with the segment's shmid.
    let dump = Dump::open("../../fixtures/criu-4.2/sysv_ipc/images").unwrap();
    let det = dump.detail(dump.procs[0].pid);
    let shm = det.vmas.iter().find(|v| v.kind == "sysvipc").unwrap();
    assert_eq!((shm.dumped, shm.pages), (16, 16));
}

#[test]
fn mappings_shared_memfd_wide() {
    let mut a = app("memfd_shm");
    keys(&mut a, &[Enter]);
    insta::assert_snapshot!(screen(&mut a, 140, 34));
}

#[test]
fn memory_of_a_memfd_mapping() {
    let mut a = app("memfd_shm");
    let det = a.detail();
    let i = det.vmas.iter().position(|v| v.file == "memfd:anchor-memfd").unwrap();
    a.mem.open(&det, i);
    keys(&mut a, &[Char('4')]);
    insta::assert_snapshot!(screen(&mut a, 120, 20));
}

#[test]
fn files_deleted_file_kept_as_ghost() {
    let mut a = app("ghost_file");
    keys(&mut a, &[Char('2')]);
    insta::assert_snapshot!(screen(&mut a, 120, 20));
}
