//! `cryo run --every`: periodic incremental live checkpoints.

use super::*;

/// stamper runs under `cryo run --every 300ms --keep 2`; checkpoint 3 is
/// made to fail before its inventory (CRYO_FAULT) and never becomes
/// "latest"; the one after it writes every page again. The program is then
/// killed between checkpoints, restored from DIR/latest, and goes on from
/// there (its counter grows past the checkpoint's, its pairs equal).
#[test]
fn run_every_keeps_complete_checkpoints_and_restores_from_latest() {
    let prog = build_prog("stamper");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         CRYO_FAULT=checkpoint-fail:3 {CRYO} run --every 300ms -D ck --keep 2 -- {} 16 /tmp/anchor \
           >/dev/null 2>/dev/null </dev/null & R=$!; \
         while [ ! -e .kill ]; do sleep 0.02; done; kill -9 $(sed -n 's/.*pid=\\([0-9]*\\).*/\\1/p' stamper.status); \
         wait $R; echo $? > .run-rc; \
         {CRYO} restore -D ck/latest -d 2>.rst-err; echo $? > .rst-rc; exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let st = ns.wait_status("stamper.status", "ready");
    let pid: i32 = field(&st, "pid").parse().unwrap();
    let log = ns.anchor("ck/cryo-run.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // "latest" names a complete set whenever it exists, never the failed one.
        if let Ok(l) = std::fs::read_link(ns.anchor("ck/latest")) {
            assert_ne!(l, PathBuf::from("ckpt-0003"), "the failed checkpoint became latest");
            assert!(
                ns.anchor("ck").join(&l).join("inventory.img").is_file(),
                "latest is {l:?}, incomplete"
            );
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ckpt-0006: downtime") {
            break;
        }
        assert!(Instant::now() < deadline, "no 6 checkpoints: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(ns.anchor(".kill"), "").unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ckpt-0003 failed"), "{text}");
    let pages = |n: u32| -> u64 {
        let l = text
            .lines()
            .find(|l| l.starts_with(&format!("ckpt-{n:04}: downtime")))
            .unwrap();
        l.split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // 16 MiB is 4096 pages: written whole at 1 and (tracking not committed) at 4.
    assert!(pages(1) >= 4096 && pages(4) >= 4096, "{text}");
    assert_eq!(ns.wait_status(".run-rc", "\n").trim(), "137");
    // Only the last 2 are kept; the oldest of them was merged (no parent link).
    let mut kept: Vec<String> = std::fs::read_dir(ns.anchor("ck"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    kept.sort();
    let latest = std::fs::read_link(ns.anchor("ck/latest")).unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(PathBuf::from(&kept[1]), latest);
    assert!(!ns.anchor("ck").join(&kept[0]).join("parent").exists());
    let r = cryo_image::check::check_dir(ns.anchor("ck/latest"));
    assert!(r.is_ok(), "{r}");
    let set = cryo_image::ImageSet::open(ns.anchor("ck/latest")).unwrap();
    let counter = u64::from_str_radix(field(&st, "counter").trim_start_matches("0x"), 16).unwrap();
    let c = u64::from_le_bytes(set.read_memory(pid as u32, counter, 8).unwrap().try_into().unwrap());
    let rc = ns.wait_status(".rst-rc", "\n");
    assert_eq!(
        rc.trim(),
        "0",
        "{}",
        std::fs::read_to_string(ns.anchor(".rst-err")).unwrap_or_default()
    );
    let v = ns.ask(pid, "stamper.verify", "\n");
    assert!(v.starts_with("ok c="), "{v}");
    let c2: u64 = v.trim().trim_start_matches("ok c=").parse().unwrap();
    assert!(c2 > c, "restored at {c}, now {c2}");
}
