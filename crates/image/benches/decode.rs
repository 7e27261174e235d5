//! In-process decode throughput: every fixture image decoded and converted to crit's JSON (plain and
//! pretty), as `crit decode` does minus process start-up (fast path where it applies), then again through
//! the reflective path only. Prints the median time of one sweep for each.
//! Run: `cargo bench -p cryo-image --bench decode` (scripts/bench-crit.sh compares with Python's pycriu).

use std::path::Path;
use std::time::Instant;

use cryo_image::{codec, json, pyjson};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2");
    let mut imgs = Vec::new();
    for set in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(set.unwrap().path().join("images")).unwrap() {
            let p = f.unwrap().path();
            if !p.file_name().unwrap().to_string_lossy().starts_with("pages-") {
                imgs.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    for reflective in [false, true] {
        sweep(&imgs, reflective);
    }
}

/// `reflective`: always the prost-reflect path, as before the fast path existed (for comparison).
fn sweep(imgs: &[(String, Vec<u8>)], reflective: bool) {
    let runs = 21;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        for (name, data) in imgs {
            for pretty in [false, true] {
                let j = if reflective {
                    json::image_to_json(&codec::decode(name, data).unwrap(), pretty)
                } else {
                    json::decode_to_json(name, data, pretty).unwrap()
                };
                bytes += pyjson::to_string(&j, pretty.then_some(4)).len();
            }
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = times[runs / 2];
    println!(
        "in-process{}: {} images x (plain + pretty): median {:.2} ms per sweep, {:.1} us per decode ({} bytes of JSON)",
        if reflective { " (reflective path only)" } else { "" },
        imgs.len(),
        med * 1e3,
        med * 1e6 / (2.0 * imgs.len() as f64),
        bytes / runs
    );
}
