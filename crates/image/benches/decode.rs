//! In-process decode throughput: every fixture image decoded and converted to crit's JSON (plain and
//! pretty), as `crit decode` does minus process start-up. Prints the median time of one sweep.
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
    let runs = 21;
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        for (name, data) in &imgs {
            let img = codec::decode(name, data).unwrap();
            for pretty in [false, true] {
                bytes += pyjson::to_string(&json::image_to_json(&img, pretty), pretty.then_some(4)).len();
            }
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = times[runs / 2];
    println!(
        "in-process: {} images x (plain + pretty): median {:.2} ms per sweep, {:.1} us per decode ({} bytes of JSON)",
        imgs.len(),
        med * 1e3,
        med * 1e6 / (2.0 * imgs.len() as f64),
        bytes / runs
    );
}
