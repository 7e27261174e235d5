//! Every image of the CRIU 4.2 fixture sets: our JSON equals crit's golden JSON value for value (plain and
//! pretty), and JSON -> image gives back the original bytes exactly (crit-recode).

use std::fs;
use std::path::{Path, PathBuf};

use cryo_image::{codec, json, pyjson};

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/criu-4.2")
}

/// (image path, golden stem) for every protobuf image in every fixture set.
fn images() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for set in fs::read_dir(fixture_root()).unwrap() {
        let set = set.unwrap().path();
        for img in fs::read_dir(set.join("images")).unwrap() {
            let img = img.unwrap().path();
            let name = img.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("pages-") {
                continue;
            }
            let stem = name.trim_end_matches(".img").to_string();
            out.push((img, set.join("golden").join(stem)));
        }
    }
    out.sort();
    assert!(out.len() > 100, "fixtures missing? found {}", out.len());
    out
}

#[test]
fn json_matches_golden_and_recodes_byte_for_byte() {
    let mut checked = 0;
    for (img, golden) in images() {
        let data = fs::read(&img).unwrap();
        let file = img.display().to_string();
        let decoded = codec::decode(&file, &data).unwrap_or_else(|e| panic!("{e}"));
        for pretty in [false, true] {
            let ours = json::image_to_json(&decoded, pretty);
            let gpath = PathBuf::from(format!(
                "{}{}",
                golden.display(),
                if pretty { ".pretty.json" } else { ".json" }
            ));
            let want: serde_json::Value = serde_json::from_slice(&fs::read(&gpath).unwrap()).unwrap();
            assert_eq!(ours, want, "{file}: JSON differs from {}", gpath.display());
            // Through text, as crit does it.
            let text = pyjson::to_string(&ours, pretty.then_some(4));
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            let img2 = json::image_from_json(&file, &back).unwrap_or_else(|e| panic!("{e}"));
            let bytes = codec::encode(&file, &img2).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                bytes == data,
                "{file}: re-encode from {} JSON differs",
                if pretty { "pretty" } else { "plain" }
            );
        }
        // And straight from the decoded form.
        assert!(
            codec::encode(&file, &decoded).unwrap() == data,
            "{file}: direct re-encode differs"
        );
        checked += 1;
    }
    eprintln!("{checked} images checked");
}

#[test]
fn golden_text_is_byte_identical_where_crit_wrote_it_plain() {
    // crit's plain output is json.dump without indent, as our pyjson writes it.
    for (img, golden) in images() {
        let data = fs::read(&img).unwrap();
        let decoded = codec::decode(&img.display().to_string(), &data).unwrap();
        let text = pyjson::to_string(&json::image_to_json(&decoded, false), None);
        let want = fs::read_to_string(format!("{}.json", golden.display())).unwrap();
        assert_eq!(text, want.trim_end(), "{}", img.display());
    }
}

#[test]
fn another_architectures_core_decodes_with_its_own_fields() {
    // Readers first use x86-only definitions; an aarch64 dump must still decode fully (forensics on
    // another machine's dump).
    let j: serde_json::Value = serde_json::json!({"magic": "CORE", "entries": [{
        "mtype": "AARCH64",
        "ti_aarch64": {
            "clear_tid_addr": "0xffff8000",
            "tls": 7,
            "gpregs": {"regs": ["0x1", "0x2"], "sp": "0xfffff000", "pc": "0x400000", "pstate": "0x60000000"},
            "fpsimd": {"vregs": [1, 2, 3, 4], "fpsr": 0, "fpcr": 0}
        }
    }]});
    let img = json::image_from_json("core-1.img", &j).unwrap();
    let bytes = codec::encode("core-1.img", &img).unwrap();
    let back = codec::decode("core-1.img", &bytes).unwrap();
    assert_eq!(json::image_to_json(&back, true), j);
    assert_eq!(codec::encode("core-1.img", &back).unwrap(), bytes);
    let plain = json::image_to_json(&back, false);
    assert_eq!(plain["entries"][0]["ti_aarch64"]["gpregs"]["pc"], 0x400000);
}
