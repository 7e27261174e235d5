//! Search speed of `crit mem` (the library's `Memory::search`): a synthetic image set with one process
//! and 256 MiB of dumped anonymous memory (pseudo-random bytes with a few planted needles), searched
//! for a literal, a byte string and a regex; plus all fixtures. Prints the median of 5 runs.
//!
//! Run: `cargo bench -p cryo-crit --bench mem_search` (MEM_SEARCH_MIB=N changes the size).

use std::path::Path;
use std::time::{Duration, Instant};

use cryo_crit::memory::{bytes_regex, literal, Filter, Memory, SearchOpts};
use cryo_image::{pb, ImageSet, ImageWriter};

const PID: u32 = 4242;
const BASE: u64 = 0x7f00_0000_0000;

fn make_set(dir: &Path, mib: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let len = mib << 20;
    let mut w = ImageWriter::create(dir.join("inventory.img"), Some("INVENTORY")).unwrap();
    w.entry(&pb::InventoryEntry {
        img_version: 2,
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut w = ImageWriter::create(dir.join("pstree.img"), Some("PSTREE")).unwrap();
    w.entry(&pb::PstreeEntry {
        pid: PID,
        ppid: 0,
        pgid: PID,
        sid: PID,
        threads: vec![PID],
    })
    .unwrap();
    w.finish().unwrap();
    let mut w = ImageWriter::create(dir.join(format!("core-{PID}.img")), Some("CORE")).unwrap();
    w.entry(&pb::CoreEntry {
        mtype: 1,
        tc: Some(pb::TaskCoreEntry {
            task_state: 1,
            comm: "bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut w = ImageWriter::create(dir.join(format!("mm-{PID}.img")), Some("MM")).unwrap();
    w.entry(&pb::MmEntry {
        vmas: vec![pb::VmaEntry {
            start: BASE,
            end: BASE + len,
            prot: 3,
            flags: 0x22,
            status: 1 | 1 << 9,
            fd: -1,
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut w = ImageWriter::create(dir.join(format!("pagemap-{PID}.img")), Some("PAGEMAP")).unwrap();
    w.entry(&pb::PagemapHead { pages_id: 1 }).unwrap();
    w.entry(&pb::PagemapEntry {
        vaddr: BASE,
        compat_nr_pages: 0,
        flags: Some(4),
        nr_pages: Some(len / 4096),
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut w = ImageWriter::create(dir.join("pages-1.img"), None).unwrap();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for m in 0..mib {
        for c in chunk.chunks_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c.copy_from_slice(&s.to_le_bytes());
        }
        if m % 64 == 7 {
            chunk[4096..4096 + 24].copy_from_slice(b"SECRET-TOKEN=cryo-12345;");
        }
        w.raw(&chunk).unwrap();
    }
    w.finish().unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(name: &str, set: &ImageSet, pid: u32, re: &regex::bytes::Regex) -> (Duration, u64, u64) {
    let mut times = Vec::new();
    let (mut bytes, mut matches) = (0, 0);
    for _ in 0..5 {
        let mem = Memory::open(set, pid).unwrap();
        let t = Instant::now();
        let st = mem
            .search(re, &Filter::default(), &SearchOpts::default(), |_| Ok(true))
            .unwrap();
        times.push(t.elapsed());
        bytes = st.bytes;
        matches = st.matches;
    }
    let m = median(times);
    println!(
        "{name:<44} {:>8.1} MiB in {:>8.2} ms = {:>7.0} MiB/s, {matches} matches",
        bytes as f64 / (1 << 20) as f64,
        m.as_secs_f64() * 1e3,
        bytes as f64 / (1 << 20) as f64 / m.as_secs_f64()
    );
    (m, bytes, matches)
}

fn main() {
    let mib: u64 = std::env::var("MEM_SEARCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let dir = std::env::temp_dir().join(format!("crit-bench-{}", std::process::id()));
    make_set(&dir, mib);
    let set = ImageSet::open(&dir).unwrap();
    println!("synthetic set: {mib} MiB of dumped memory (page cache warm after the first run)");
    let (_, _, n) = bench("literal \"SECRET-TOKEN\"", &set, PID, &literal(b"SECRET-TOKEN"));
    assert_eq!(n, mib.div_ceil(64));
    bench("bytes de ad be ef", &set, PID, &literal(&[0xde, 0xad, 0xbe, 0xef]));
    bench(
        "regex SECRET-TOKEN=[a-z]+-[0-9]+",
        &set,
        PID,
        &bytes_regex("SECRET-TOKEN=[a-z]+-[0-9]+").unwrap(),
    );
    bench(
        "regex [A-Z]{6}-[A-Z]{5}",
        &set,
        PID,
        &bytes_regex("[A-Z]{6}-[A-Z]{5}").unwrap(),
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2");
    let mut names: Vec<_> = std::fs::read_dir(&fx).unwrap().filter_map(|e| e.ok()).collect();
    names.sort_by_key(|e| e.file_name());
    let re = bytes_regex("PATH=[^\\x00]+").unwrap();
    let (mut total_t, mut total_b) = (Duration::ZERO, 0);
    for e in names {
        let Ok(set) = ImageSet::open(e.path().join("images")) else {
            continue;
        };
        for p in set.pstree().unwrap() {
            let mem = Memory::open(&set, p.pid).unwrap();
            let t = Instant::now();
            let st = mem
                .search(&re, &Filter::default(), &SearchOpts::default(), |_| Ok(true))
                .unwrap();
            total_t += t.elapsed();
            total_b += st.bytes;
        }
    }
    println!(
        "all fixtures, regex PATH=[^\\x00]+: {:.1} MiB in {:.2} ms",
        total_b as f64 / (1 << 20) as f64,
        total_t.as_secs_f64() * 1e3
    );
}
