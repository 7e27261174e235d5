//! Payload kinds and pagemap forms that the fixtures do not cover, built from crit JSON: each round-trips
//! JSON -> image -> JSON -> image, and (where Debian's Python crit is installed) decodes with CRIU's crit
//! to the same JSON.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use cryo_image::{codec, json, pyjson, ImageSet, PE_LAZY, PE_PARENT, PE_PRESENT};
use serde_json::{json, Value};

fn round_trip(j: &Value) -> Vec<u8> {
    let img = json::image_from_json("t.img", j).unwrap_or_else(|e| panic!("{e}"));
    let bytes = codec::encode("t.img", &img).unwrap();
    let back = codec::decode("t.img", &bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&json::image_to_json(&back, false), j);
    assert_eq!(codec::encode("t.img", &back).unwrap(), bytes);
    // The pretty form encodes to the same bytes.
    let pretty = json::image_to_json(&back, true);
    assert_eq!(
        codec::encode("t.img", &json::image_from_json("t", &pretty).unwrap()).unwrap(),
        bytes
    );
    if let Some(py) = python_crit(&bytes) {
        assert_eq!(&py, j, "Python crit reads our image differently");
    }
    bytes
}

/// Decode with CRIU's (Python) crit when it is installed.
fn python_crit(bytes: &[u8]) -> Option<Value> {
    if !std::path::Path::new("/usr/bin/crit").exists() {
        return None;
    }
    let p = std::env::temp_dir().join(format!(
        "payload-{}-{:x}.img",
        std::process::id(),
        bytes.len() * 31 + bytes[8] as usize
    ));
    fs::write(&p, bytes).unwrap();
    let out = Command::new("/usr/bin/crit")
        .args(["decode", "-i"])
        .arg(&p)
        .output()
        .unwrap();
    fs::remove_file(&p).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn b64(data: &[u8]) -> String {
    cryo_image::pretty::base64_lines(data)
}

#[test]
fn ghost_file_without_chunks_keeps_the_rest_of_the_file() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let j = json!({"magic": "GHOST_FILE", "entries": [
        {"uid": 0, "gid": 0, "mode": 33188, "size": 5000, "extra": b64(&data)}
    ]});
    let bytes = round_trip(&j);
    assert!(bytes.ends_with(&data));
}

#[test]
fn ghost_file_with_chunks() {
    let j = json!({"magic": "GHOST_FILE", "entries": [
        {"uid": 0, "gid": 0, "mode": 33188, "chunks": true, "size": 8192},
        {"len": 3, "off": 0, "extra": b64(b"abc")},
        {"len": 2, "off": 4096, "extra": b64(b"xy")}
    ]});
    round_trip(&j);
}

#[test]
fn inline_shm_sem_and_msg_queues_are_padded() {
    let desc = json!({"key": 1, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 384, "id": 0});
    let shm = round_trip(&json!({"magic": "IPCNS_SHM", "entries": [
        {"desc": desc, "size": 5, "extra": b64(b"hello")}
    ]}));
    assert_eq!(&shm[shm.len() - 8..], b"hello\0\0\0");
    let sem = round_trip(&json!({"magic": "IPCNS_SEM", "entries": [
        {"desc": desc, "nsems": 3, "extra": [1, 2, 65535]}
    ]}));
    assert_eq!(&sem[sem.len() - 8..], &[1, 0, 2, 0, 255, 255, 0, 0]);
    round_trip(&json!({"magic": "IPCNS_MSG", "entries": [
        {"desc": desc, "qbytes": 100, "qnum": 2, "extra": [
            {"mtype": 1, "msize": 3}, b64(b"one"), {"mtype": 2, "msize": 9}, b64(b"two three")
        ]}
    ]}));
}

#[test]
fn bpfmap_data_and_fifo_data() {
    round_trip(&json!({"magic": "BPFMAP_DATA", "entries": [
        {"map_id": 3, "keys_bytes": 4, "values_bytes": 8, "count": 1, "extra": b64(b"kkkkvvvvvvvv")}
    ]}));
    round_trip(&json!({"magic": "FIFO_DATA", "entries": [
        {"pipe_id": 9, "bytes": 4, "extra": b64(b"fifo")}
    ]}));
}

#[test]
fn payload_sizes_must_match_their_fields() {
    let j = json!({"magic": "PIPES_DATA", "entries": [{"pipe_id": 9, "bytes": 5, "extra": b64(b"fifo")}]});
    let img = json::image_from_json("t.img", &j).unwrap();
    let e = codec::encode("t.img", &img).unwrap_err().to_string();
    assert!(
        e.contains("entry 0") && e.contains("payload is 4 bytes but bytes says 5"),
        "{e}"
    );
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_json(dir: &std::path::Path, name: &str, j: Value) {
    let img = json::image_from_json(name, &j).unwrap();
    fs::write(dir.join(name), codec::encode(name, &img).unwrap()).unwrap();
}

#[test]
fn pagemap_flags_parent_lazy_and_compat_page_counts() {
    let root = std::env::temp_dir().join(format!("cryo-pm-{}", std::process::id()));
    let _t = TempDir(root.clone());
    let parent = root.join("parent-set");
    let child = root.join("child-set");
    fs::create_dir_all(&parent).unwrap();
    fs::create_dir_all(&child).unwrap();
    let inv = json!({"magic": "INVENTORY", "entries": [{"img_version": 2, "fdinfo_per_id": true}]});
    write_json(&parent, "inventory.img", inv.clone());
    write_json(&child, "inventory.img", inv);
    // Parent: one present page at 0x10000 (an old image: only compat_nr_pages, no flags).
    write_json(
        &parent,
        "pagemap-1.img",
        json!({"magic": "PAGEMAP", "entries": [
            {"pages_id": 1}, {"vaddr": 0x10000, "compat_nr_pages": 1}
        ]}),
    );
    fs::write(parent.join("pages-1.img"), vec![0xaa; 4096]).unwrap();
    // Child: 0x10000 in the parent, 0x11000-0x12fff present, 0x13000 lazy.
    write_json(
        &child,
        "pagemap-1.img",
        json!({"magic": "PAGEMAP", "entries": [
            {"pages_id": 2},
            {"vaddr": 0x10000, "compat_nr_pages": 0, "flags": PE_PARENT, "nr_pages": 1},
            {"vaddr": 0x11000, "compat_nr_pages": 0, "flags": PE_PRESENT, "nr_pages": 2},
            {"vaddr": 0x13000, "compat_nr_pages": 0, "flags": PE_LAZY, "nr_pages": 1}
        ]}),
    );
    let mut pages = vec![0x11; 4096];
    pages.extend(vec![0x22; 4096]);
    fs::write(child.join("pages-2.img"), pages).unwrap();
    std::os::unix::fs::symlink(&parent, child.join("parent")).unwrap();

    let set = ImageSet::open(&child).unwrap();
    let pm = set.pagemap(1).unwrap();
    assert_eq!(pm.runs.len(), 3);
    assert_eq!(pm.present_bytes(), 8192);
    assert_eq!(set.read_memory(1, 0x10ffe, 4).unwrap(), vec![0xaa, 0xaa, 0x11, 0x11]);
    assert_eq!(set.read_memory(1, 0x12fff, 1).unwrap(), vec![0x22]);
    let e = set.read_memory(1, 0x13000, 1).unwrap_err().to_string();
    assert!(e.contains("0x13000 is not in the dump"), "{e}");
    // The JSON text of a pagemap is what crit prints.
    let img = set.image("pagemap-1.img").unwrap();
    let text = pyjson::to_string(&json::image_to_json(&img, true), Some(4));
    assert!(text.contains("\"flags\": \"PE_PARENT\""), "{text}");
}

#[test]
fn a_big_sparse_dump_opens_without_reading_pages() {
    let root = std::env::temp_dir().join(format!("cryo-big-{}", std::process::id()));
    let _t = TempDir(root.clone());
    fs::create_dir_all(&root).unwrap();
    write_json(
        &root,
        "inventory.img",
        json!({"magic": "INVENTORY", "entries": [{"img_version": 2}]}),
    );
    let gib_pages = (1u64 << 30) / 4096;
    write_json(
        &root,
        "pagemap-7.img",
        json!({"magic": "PAGEMAP", "entries": [
            {"pages_id": 1}, {"vaddr": 0x7f00_0000_0000u64, "compat_nr_pages": 0, "flags": PE_PRESENT, "nr_pages": gib_pages}
        ]}),
    );
    // A 1 GiB sparse pages file with one marked byte at the end.
    let f = fs::File::create(root.join("pages-1.img")).unwrap();
    f.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(b"Z", (1 << 30) - 1).unwrap();
    let set = ImageSet::open(&root).unwrap();
    assert_eq!(set.read_memory(7, 0x7f00_0000_0000 + (1 << 30) - 2, 2).unwrap(), b"\0Z");
}
