//! Timings of check, diff and rewrite on a large synthetic set: the loop_heap fixture plus one anonymous
//! mapping of `CRYO_BENCH_MIB` MiB (default 256) of pseudo-random pages; B is a copy with 1000 pages
//! changed. Prints the median of 5 runs of each. `cargo bench -p cryo-crit --bench set_ops`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use cryo_crit::{diff, rewrite};
use cryo_image::{check, pb, read_entries, write_entries, ImageSet, ImageWriter};
use prost::Message;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(what: &str, mut f: impl FnMut()) {
    let runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    println!("{what}: median {:.1} ms (5 runs)", median(runs).as_secs_f64() * 1e3);
}

fn main() {
    let mib: u64 = std::env::var("CRYO_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let pages = mib * 256;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2/loop_heap/images");
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    copy_dir(&fixture, &a);
    let pid = read_entries::<pb::PstreeEntry>(a.join("pstree.img"), "PSTREE").unwrap()[0].pid;
    // One big anonymous mapping above the stack, its pages at the end of the pagemap and pages file.
    let start = 0x7ffe_0000_0000u64;
    let mmp = a.join(format!("mm-{pid}.img"));
    let mut mm = read_entries::<pb::MmEntry>(&mmp, "MM").unwrap();
    let at = mm[0]
        .vmas
        .iter()
        .position(|v| v.start > start)
        .unwrap_or(mm[0].vmas.len());
    mm[0].vmas.insert(
        at,
        pb::VmaEntry {
            start,
            end: start + pages * 4096,
            pgoff: 0,
            shmid: 0,
            prot: 3,
            flags: 0x22,
            status: 0x201,
            fd: -1,
            madv: None,
            fdflags: None,
        },
    );
    write_entries(&mmp, "MM", &mm).unwrap();
    let pmp = a.join(format!("pagemap-{pid}.img"));
    let img = cryo_image::decode("pagemap", &fs::read(&pmp).unwrap()).unwrap();
    let mut w = ImageWriter::create(&pmp, Some("PAGEMAP")).unwrap();
    for e in &img.entries {
        w.raw(&(e.msg.encoded_len() as u32).to_le_bytes()).unwrap();
        w.raw(&e.msg.encode_to_vec()).unwrap();
    }
    w.entry(&pb::PagemapEntry {
        vaddr: start,
        compat_nr_pages: 0,
        flags: Some(cryo_image::PE_PRESENT),
        nr_pages: Some(pages),
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(a.join("pages-1.img")).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for c in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    drop(f);
    let b = t.path().join("b");
    copy_dir(&a, &b);
    let bp = b.join("pages-1.img");
    let len = fs::metadata(&bp).unwrap().len();
    let mut data = fs::read(&bp).unwrap();
    let base = len - pages * 4096;
    for k in 0..1000u64 {
        data[(base + (k * (pages / 1000)) * 4096 + 17) as usize] ^= 1;
    }
    fs::write(&bp, data).unwrap();

    let sa = ImageSet::open(&a).unwrap();
    assert!(check::check_set(&sa).is_ok(), "{}", check::check_set(&sa));
    println!("set: {} MiB of pages in one mapping + loop_heap", mib);
    time("check_set", || {
        assert!(check::check_set(&ImageSet::open(&a).unwrap()).is_ok())
    });
    time("diff_sets (1000 pages changed)", || {
        let d = diff::diff_sets(&ImageSet::open(&a).unwrap(), &ImageSet::open(&b).unwrap()).unwrap();
        assert_eq!(d.processes_changed[0].memory.changed, 1000);
    });
    let mut n = 0;
    time("rewrite --pid-map (copy + check)", || {
        n += 1;
        let out = t.path().join(format!("out{n}"));
        let mut rw = rewrite::Rewrite::load(&a).unwrap();
        rw.map_pids(&rewrite::parse_pid_map(&format!("{pid}:600")).unwrap())
            .unwrap();
        rw.write(&out).unwrap();
        fs::remove_dir_all(&out).unwrap();
    });
}
