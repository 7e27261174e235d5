//! Bad input never panics and is reported with the file, the entry index and the byte offset.

use std::fs;
use std::path::PathBuf;

use cryo_image::{codec, json, magic, ImageError, ImageSet};

use cryo_testsupport::{fixtures, protobuf_images as all_images};

#[test]
fn truncation_at_every_offset_is_an_error_or_a_shorter_image() {
    let mut cuts = 0u64;
    for p in all_images() {
        let data = fs::read(&p).unwrap();
        let full = codec::decode("x", &data).unwrap();
        for n in 0..data.len() {
            cuts += 1;
            match codec::decode("img", &data[..n]) {
                // A cut exactly between two entries leaves a valid, shorter image.
                Ok(img) => assert!(
                    img.entries.len() < full.entries.len() || img.magic.name == "GHOST_FILE",
                    "{}: cut at {n} decoded as complete",
                    p.display()
                ),
                Err(e) => {
                    let s = e.to_string();
                    assert!(s.starts_with("img: "), "{s}");
                    if n >= 8 {
                        assert!(
                            matches!(e, ImageError::Entry { .. } | ImageError::Decode { .. }),
                            "{}: cut at {n}: {s}",
                            p.display()
                        );
                        assert!(s.contains("entry ") && s.contains(" at byte "), "{s}");
                    }
                }
            }
        }
    }
    assert!(cuts > 100_000, "only {cuts} cuts");
}

fn core_image() -> Vec<u8> {
    fs::read(fixtures().join("loop_heap/images/core-9217.img")).unwrap()
}

fn with_entry(prefix_len: usize, len: u32, body: &[u8]) -> Vec<u8> {
    let mut d = core_image()[..prefix_len].to_vec();
    d.extend_from_slice(&len.to_le_bytes());
    d.extend_from_slice(body);
    d
}

#[test]
fn wrong_magics() {
    let mut d = core_image();
    d[4..8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    let e = codec::decode("core.img", &d).unwrap_err();
    assert!(matches!(e, ImageError::UnknownMagic { magic: 0x1234_5678, .. }), "{e}");
    d[0..4].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    assert!(codec::decode("core.img", &d)
        .unwrap_err()
        .to_string()
        .contains("0xdeadbeef"));
    assert!(matches!(
        codec::decode("e.img", &[1, 2]).unwrap_err(),
        ImageError::NoHead { len: 2, .. }
    ));
    assert!(matches!(
        codec::decode("e.img", &[]).unwrap_err(),
        ImageError::NoHead { len: 0, .. }
    ));
}

#[test]
fn length_prefixes() {
    // 0: an empty core_entry lacks its required fields.
    let e = codec::decode("c.img", &with_entry(8, 0, &[])).unwrap_err();
    assert!(e.to_string().contains("required field mtype is missing"), "{e}");
    assert!(e.to_string().contains("entry 0 at byte 8"), "{e}");
    // Huge lengths are refused before anything is allocated.
    for len in [1u32 << 31, u32::MAX, 1 << 20] {
        let e = codec::decode("c.img", &with_entry(8, len, &[0; 16])).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("length prefix {len} runs past the end")),
            "{e}"
        );
    }
    // A trailing length with no body, and a partial length.
    let mut d = core_image();
    d.extend_from_slice(&100u32.to_le_bytes());
    let e = codec::decode("c.img", &d).unwrap_err();
    assert!(e.to_string().contains("entry 1 at byte"), "{e}");
    let mut d = core_image();
    d.extend_from_slice(&[5, 0]);
    assert!(codec::decode("c.img", &d)
        .unwrap_err()
        .to_string()
        .contains("truncated length prefix"));
}

#[test]
fn invalid_utf8_in_a_string_field() {
    // inventory: img_version = 2, dump_criu_run_id (13, string) = ff fe
    let mut d = magic::by_name("INVENTORY").unwrap().magic.to_le_bytes().to_vec();
    let body = [0x08, 0x02, 0x6a, 0x02, 0xff, 0xfe];
    d.extend_from_slice(&(body.len() as u32).to_le_bytes());
    d.extend_from_slice(&body);
    let e = codec::decode("inventory.img", &d).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::Decode {
                index: 0,
                offset: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("inventory_entry"), "{e}");
}

#[test]
fn unknown_fields_survive_decode_json_encode() {
    // inventory with an extra field 99 (varint 7) that no proto knows.
    let mut d = magic::by_name("INVENTORY").unwrap().magic.to_le_bytes().to_vec();
    let body = [0x08, 0x02, 0x98, 0x06, 0x07];
    d.extend_from_slice(&(body.len() as u32).to_le_bytes());
    d.extend_from_slice(&body);
    let img = codec::decode("inventory.img", &d).unwrap();
    let j = json::image_to_json(&img, false);
    assert_eq!(j["entries"][0]["_unknown"], "mAYH\n");
    let back = json::image_from_json("j", &j).unwrap();
    assert_eq!(codec::encode("x", &back).unwrap(), d);
}

fn copy_set(name: &str) -> (tempdir::Dir, PathBuf) {
    let t = tempdir::Dir::new();
    let dst = t.path().join(name);
    cryo_testsupport::copy_dir(&cryo_testsupport::fixture_images(name), &dst);
    (t, dst)
}

#[test]
fn pagemap_past_the_pages_file_or_address_space() {
    let (_t, dir) = copy_set("loop_heap");
    let pages = dir.join("pages-1.img");
    cryo_testsupport::cut_short(&pages, 4096);
    let set = ImageSet::open(&dir).unwrap();
    let e = set.pagemap(9217).unwrap_err().to_string();
    assert!(e.contains("pagemap-9217.img") && e.contains("but that file is"), "{e}");

    // A run that wraps around the end of the address space.
    let pm = dir.join("pagemap-9217.img");
    let mut img = codec::decode("pm", &fs::read(&pm).unwrap()).unwrap();
    let mut j = json::image_to_json(&img, false);
    j["entries"][1]["vaddr"] = serde_json::json!(0xffff_ffff_ffff_f000u64);
    j["entries"][1]["nr_pages"] = serde_json::json!(2);
    img = json::image_from_json("pm", &j).unwrap();
    fs::write(&pm, codec::encode("pm", &img).unwrap()).unwrap();
    let set = ImageSet::open(&dir).unwrap();
    let e = set.pagemap(9217).unwrap_err().to_string();
    assert!(e.contains("overflow the address space"), "{e}");
}

#[test]
fn memory_reads_and_missing_pages() {
    let set = ImageSet::open(fixtures().join("loop_heap/images")).unwrap();
    let pm = set.pagemap(9217).unwrap();
    let run = pm.runs.iter().find(|r| r.offset.is_some()).unwrap();
    let pages = fs::read(fixtures().join("loop_heap/images/pages-1.img")).unwrap();
    let got = set.read_memory(9217, run.vaddr + 10, 100).unwrap();
    let off = run.offset.unwrap() as usize + 10;
    assert_eq!(got, &pages[off..off + 100]);
    let e = set.read_memory(9217, 0x1000, 16).unwrap_err().to_string();
    assert!(e.contains("page 0x1000 is not in the dump"), "{e}");
    assert!(ImageSet::open(fixtures().join("nonexistent")).is_err());
}

/// A tiny self-cleaning temporary directory (no extra dependency for one use).
mod tempdir {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "cryo-image-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
