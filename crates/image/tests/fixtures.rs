//! Every image of the CRIU 4.2 fixture sets: our JSON equals crit's golden JSON value for value (plain and
//! pretty), and JSON -> image gives back the original bytes exactly (crit-recode).

use std::fs;
use std::path::PathBuf;

use cryo_image::{codec, json, pyjson};

/// (image path, golden stem) for every protobuf image in every fixture set.
fn images() -> Vec<(PathBuf, PathBuf)> {
    let out: Vec<(PathBuf, PathBuf)> = cryo_testsupport::protobuf_images()
        .into_iter()
        .map(|img| {
            let set = img.parent().unwrap().parent().unwrap().to_path_buf();
            let stem = img
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".img")
                .to_string();
            (img, set.join("golden").join(stem))
        })
        .collect();
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
    // The fast path knows every architecture's fields.
    assert_eq!(cryo_image::fast::image_json(&bytes, true), Some(j));
    assert_eq!(cryo_image::fast::image_json(&bytes, false), Some(plain));
}

#[test]
fn fast_path_gives_the_golden_json_and_is_taken_for_every_image_kind_it_covers() {
    // The fast path (static tables, no descriptors) must give exactly the reflective path's JSON; it may
    // decline only images with payloads (pipes-data, ghost files, ...).
    let mut fast = 0;
    for (img, golden) in images() {
        let data = fs::read(&img).unwrap();
        let file = img.display().to_string();
        for pretty in [false, true] {
            let gpath = format!("{}{}", golden.display(), if pretty { ".pretty.json" } else { ".json" });
            let want: serde_json::Value = serde_json::from_slice(&fs::read(&gpath).unwrap()).unwrap();
            match cryo_image::fast::image_json(&data, pretty) {
                Some(j) => {
                    assert_eq!(j, want, "{file}: fast-path JSON differs from {gpath}");
                    fast += 1;
                }
                None => {
                    let magic = want["magic"].as_str().unwrap();
                    assert!(
                        !cryo_image::fast::covers(magic),
                        "{file}: the fast path declined a {magic} image"
                    );
                }
            }
            assert_eq!(json::decode_to_json(&file, &data, pretty).unwrap(), want, "{file}");
        }
    }
    assert!(fast > 300, "only {fast} fast-path decodes");
}

#[test]
fn fast_path_agrees_with_the_reflective_path_on_every_prefix() {
    // Cut every fixture image at every byte: where the fast path answers, the reflective decoder must
    // accept the same bytes and give the same JSON; where it declines, decode_to_json gives the
    // reflective answer (error or JSON).
    let mut answered = 0;
    for (img, _) in images() {
        let data = fs::read(&img).unwrap();
        for cut in 0..data.len() {
            let d = &data[..cut];
            if let Some(j) = cryo_image::fast::image_json(d, true) {
                let r = codec::decode("cut", d).unwrap_or_else(|e| panic!("{}: cut {cut}: {e}", img.display()));
                assert_eq!(j, json::image_to_json(&r, true), "{}: cut {cut}", img.display());
                answered += 1;
            }
        }
    }
    assert!(answered > 100, "{answered}");
}

#[test]
fn fast_path_declines_unknown_fields_and_the_reflective_path_keeps_them() {
    let (img, _) = images()
        .into_iter()
        .find(|(p, _)| p.ends_with("inventory.img"))
        .unwrap();
    let mut data = fs::read(&img).unwrap();
    // Append field 999 (varint 7) to the inventory entry and fix its length prefix.
    let extra = [0xb8, 0x3e, 0x07];
    let len = u32::from_le_bytes(data[4..8].try_into().unwrap()) + extra.len() as u32;
    data[4..8].copy_from_slice(&len.to_le_bytes());
    data.extend_from_slice(&extra);
    assert!(cryo_image::fast::image_json(&data, false).is_none());
    let j = json::decode_to_json("inventory.img", &data, false).unwrap();
    assert!(j["entries"][0]["_unknown"].is_string(), "{j}");
}
