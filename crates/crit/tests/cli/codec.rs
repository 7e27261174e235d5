//! The `crit` binary: decode/encode/info/show on the CRIU 4.2 fixtures, errors and closed pipes.

use std::fs;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use cryo_testsupport::fixtures;

use super::common::crit;

fn run(cmd: &mut Command, stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut si = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = si.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn decode_encode_round_trip_through_pipes() {
    let mut n = 0;
    for img in cryo_testsupport::protobuf_images() {
        let set = img.parent().unwrap().parent().unwrap();
        let name = img.file_name().unwrap().to_string_lossy().into_owned();
        let data = fs::read(&img).unwrap();
        for pretty in [false, true] {
            let mut c = crit();
            c.arg("decode");
            if pretty {
                c.arg("--pretty");
            }
            let (code, json, err) = run(&mut c, &data);
            assert_eq!(code, 0, "{name}: {err}");
            let golden = set.join("golden").join(format!(
                "{}{}",
                name.trim_end_matches(".img"),
                if pretty { ".pretty.json" } else { ".json" }
            ));
            let want: serde_json::Value = serde_json::from_slice(&fs::read(golden).unwrap()).unwrap();
            let got: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(got, want, "{name}");
            let (code, back, err) = run(crit().arg("encode"), &json);
            assert_eq!(code, 0, "{name}: {err}");
            assert!(
                back == data,
                "{name}: encode(decode) differs ({} vs {} bytes)",
                back.len(),
                data.len()
            );
        }
        n += 1;
    }
    assert!(n > 100);
}

#[test]
fn in_and_out_files() {
    let dir = std::env::temp_dir().join(format!("crit-io-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let img = fixtures().join("pipe_unread/images/pipes-data.img");
    let j = dir.join("p.json");
    let o = dir.join("p.img");
    assert!(crit()
        .args(["decode", "--pretty", "-i"])
        .arg(&img)
        .arg("-o")
        .arg(&j)
        .status()
        .unwrap()
        .success());
    assert!(crit()
        .args(["encode", "-i"])
        .arg(&j)
        .arg("-o")
        .arg(&o)
        .status()
        .unwrap()
        .success());
    assert_eq!(fs::read(&o).unwrap(), fs::read(&img).unwrap());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn info_and_show() {
    let out = crit()
        .arg("info")
        .arg(fixtures().join("proctree/images/pstree.img"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\n    \"magic\": \"PSTREE\",\n    \"count\": 5\n}\n"
    );
    let out = crit()
        .arg("info")
        .arg(fixtures().join("proctree/images/pagemap-9406.img"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["magic"], "PAGEMAP");

    // A raw pages image is described, not refused.
    let pages = fixtures().join("loop_heap/images/pages-1.img");
    let out = crit().arg("show").arg(&pages).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = fs::metadata(&pages).unwrap().len();
    assert_eq!(v["magic"], "RAW");
    assert_eq!(v["size"], size);
    assert_eq!(v["pages"], size / 4096);
    assert_eq!(v["used_by"][0]["pid"], 9217);
    assert_eq!(v["used_by"][0]["present_pages"], size / 4096);

    // --nopl replaces payloads by their size.
    let out = crit()
        .args(["show", "--nopl"])
        .arg(fixtures().join("unix_pair/images/sk-queues.img"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"][0]["extra"], "... <4KB>");
}

#[test]
fn bad_input_fails_cleanly() {
    let data = fs::read(fixtures().join("loop_heap/images/core-9217.img")).unwrap();
    let (code, _, err) = run(crit().arg("decode"), &data[..data.len() - 7]);
    assert_eq!(code, 1);
    assert!(err.starts_with("crit: <stdin>: entry 0 at byte 8:"), "{err}");
    assert!(!err.contains("panicked"));
    let pages = fs::read(fixtures().join("loop_heap/images/pages-1.img")).unwrap();
    let (code, _, err) = run(crit().arg("decode"), &pages);
    assert_eq!(code, 1);
    assert!(err.contains("not a protobuf image"), "{err}");
    let (code, _, err) = run(crit().arg("encode"), b"{\"magic\": \"CORE\", \"entries\": [{}]}");
    assert_eq!(code, 1);
    assert!(err.contains("entry 0: mtype: required field missing"), "{err}");
    let (code, _, err) = run(crit().arg("encode"), b"\x00\x01garbage");
    assert_eq!(code, 1);
    assert!(err.contains("not JSON"), "{err}");
    let out = crit()
        .args(["decode", "-i", "/nonexistent/core-1.img"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/core-1.img"));
}

#[test]
fn closed_pipe_is_not_an_error() {
    let img = fixtures().join("proctree/images/core-9406.img");
    let mut child = crit()
        .args(["decode", "--pretty", "-i"])
        .arg(&img)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let st = child.wait_with_output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(!String::from_utf8_lossy(&st.stderr).contains("panicked"));
}
