//! Live checkpoints (`--leave-running`): the tree runs while its memory is
//! copied, and the copy is of one instant (copy-before-write).

use super::*;

/// What stamper's pair `i` must hold in a copy whose counter is `c`.
fn expected(i: u64, c: u64, half: u64) -> u64 {
    if c < i || c < 1 {
        return 0;
    }
    c - ((c - i) % half)
}

/// stamper writes two distant pages per step without pause; `cryo dump -R`
/// stops it for the collection only. In the image every pair holds the
/// last step that wrote it by the counter's value (but the one step that may
/// be half done), which a copy spread over time would not; the program
/// wrote on meanwhile (write faults served first); restored, it goes on and
/// its pairs are equal.
#[test]
fn live_checkpoint_is_a_copy_of_one_instant() {
    let prog = build_prog("stamper");
    let script = format!(
        "mkdir -p /tmp/anchor; mount -t tmpfs cryo-test /tmp/anchor; cd /tmp/anchor; \
         {} 64 /tmp/anchor >/dev/null 2>&1 </dev/null & P=$!; \
         while ! grep -qs ready stamper.status; do sleep 0.02; done; mkdir img; \
         CRYO_TRACE=1 {CRYO} dump -R -t $P -D img 2>.err; echo $? > .dump-rc; \
         echo $P > .root; kill -9 $P; wait $P; \
         {CRYO} restore -D img -d 2>.rst-err; echo $? > .rst-rc; exec sleep 100000",
        prog.display()
    );
    let ns = Ns::start(&script);
    let st = ns.wait_status("stamper.status", "ready");
    let rc = ns.wait_status(".dump-rc", "\n");
    let err = std::fs::read_to_string(ns.anchor(".err")).unwrap_or_default();
    assert_eq!(rc.trim(), "0", "{err}");
    assert!(err.contains("live copy:"), "not a live copy: {err}");
    let base = hex(&field(&st, "base"));
    let counter = hex(&field(&st, "counter"));
    let pages: u64 = field(&st, "pages").parse().unwrap();
    let half = pages / 2;
    let pid: u32 = field(&st, "pid").parse().unwrap();
    let set = cryo_image::ImageSet::open(ns.anchor("img")).unwrap();
    let word = |a: u64| u64::from_le_bytes(set.read_memory(pid, a, 8).unwrap().try_into().unwrap());
    let c = word(counter);
    assert!(c > 0, "the counter never moved");
    let flight = (c + 1) % half;
    for i in 0..half {
        let (a, b) = (word(base + i * 4096), word(base + (i + half) * 4096));
        let e = expected(i, c, half);
        if i == flight {
            assert!(
                [(e, e), (c + 1, e), (c + 1, c + 1)].contains(&(a, b)),
                "pair {i} (in flight at {c}): {a} {b}, expected {e}"
            );
        } else {
            assert_eq!((a, b), (e, e), "pair {i} at counter {c}");
        }
    }
    let rc = ns.wait_status(".rst-rc", "\n");
    assert_eq!(
        rc.trim(),
        "0",
        "{}",
        std::fs::read_to_string(ns.anchor(".rst-err")).unwrap_or_default()
    );
    let v = ns.ask(pid as i32, "stamper.verify", "\n");
    assert!(v.starts_with("ok c="), "{v}");
    let c2: u64 = v.trim().trim_start_matches("ok c=").parse().unwrap();
    assert!(c2 > c, "the restored program did not go on ({c2} <= {c})");
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}
