//! Checkpoint archives: podman's `--export` tarball (plain, gzip, zstd) and the kubelet's, built
//! here from a fixture's images with the metadata files podman and CRI-O write beside them; every
//! explorer, `show ARCHIVE:IMAGE`, `mem`, `diff` and `inspect` read them directly; bad archives give
//! clear errors.

use super::common::*;
use std::path::{Path, PathBuf};

const CONFIG: &str = r#"{"id":"f11d11844af0a1b2c3d4e5f60718293a4b5c6d7e8f9012345678901234567890","name":"magical_murdock","rootfsImage":"sha256:9a0b1c2d3e4f","rootfsImageName":"docker.io/library/busybox:latest","runtime":"crun","createdTime":"2026-12-01T09:43:52.123Z","checkpointedTime":"2026-12-02T07:00:00Z","restoredTime":"0001-01-01T00:00:00Z","restored":false}"#;

const NETWORK: &str = r#"{"podman":{"interfaces":{"eth0":{"subnets":[{"ipnet":"10.88.0.5/16","gateway":"10.88.0.1"}],"mac_address":"5e:aa:01:02:03:04"}}}}"#;

fn spec(manager: &str, extra: &str) -> String {
    format!(
        r#"{{"ociVersion":"1.0.2","process":{{"args":["/bin/sh"]}},"mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},{{"destination":"/data","type":"bind","source":"/srv/data","options":["rbind"]}}],"annotations":{{"io.container.manager":"{manager}"{extra}}}}}"#
    )
}

/// A tar as podman writes it: `checkpoint/` (a directory entry, then the images), then the
/// metadata files; `meta` are (name, bytes) of the top level.
fn tarball(images: &Path, meta: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "checkpoint/", std::io::empty()).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for n in names {
        let data = std::fs::read(images.join(&n)).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, format!("checkpoint/{n}"), data.as_slice())
            .unwrap();
    }
    for (n, data) in meta {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, n, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn podman_meta() -> Vec<(&'static str, Vec<u8>)> {
    let rootfs = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    };
    vec![
        ("config.dump", CONFIG.as_bytes().to_vec()),
        ("spec.dump", spec("libpod", "").into_bytes()),
        ("network.status", NETWORK.as_bytes().to_vec()),
        ("stats-dump", vec![0u8; 64]),
        ("rootfs-diff.tar", rootfs),
        ("deleted.files", b"[]".to_vec()),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A scratch dir with the archive written as `name`, and a TMPDIR for crit.
fn write(tag: &str, name: &str, data: &[u8]) -> (PathBuf, PathBuf) {
    let d = scratch(tag);
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let p = d.join(name);
    std::fs::write(&p, data).unwrap();
    (p, tmp)
}

/// crit with TMPDIR set; demands success.
fn ok_in(tmp: &Path, args: &[&str]) -> String {
    let o = crit().env("TMPDIR", tmp).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "crit {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails_in(tmp: &Path, args: &[&str]) -> String {
    let o = crit().env("TMPDIR", tmp).args(args).output().unwrap();
    assert!(!o.status.success(), "crit {args:?} should fail");
    assert_eq!(
        o.status.code(),
        Some(1),
        "crit {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "crit left {left:?} in its TMPDIR");
}

/// podman's export in each of its compressions: every explorer, `show`, `mem` and `diff` give what
/// they give on the image directory itself; nothing is left in TMPDIR.
#[test]
fn podman_export_archives_read_like_their_directory() {
    let dir = images("unix_pair");
    let tar = tarball(Path::new(&dir), &podman_meta());
    for (comp, data, name) in [
        ("none", tar.clone(), "dump.tar"),
        ("gzip", gzip(&tar), "dump.tar.gz"),
        ("zstd", zstd(&tar), "dump.tar.zst"),
    ] {
        let (ar, tmp) = write(&format!("archive-{comp}"), name, &data);
        let a = ar.to_str().unwrap();
        for what in ["ps", "fds", "mems", "sk", "tree", "rss"] {
            assert_eq!(ok_in(&tmp, &["x", a, what]), ok(&["x", &dir, what]), "{comp}: x {what}");
        }
        assert_eq!(
            ok_in(&tmp, &["x", a, "sk", "--json"]),
            ok(&["x", &dir, "sk", "--json"]),
            "{comp}"
        );
        assert_eq!(
            ok_in(&tmp, &["show", &format!("{a}:pstree.img")]),
            ok(&["show", &format!("{dir}/pstree.img")]),
            "{comp}: show"
        );
        assert_eq!(
            ok_in(&tmp, &["decode", "-i", &format!("{a}:checkpoint/files.img")]),
            ok(&["decode", "-i", &format!("{dir}/files.img")]),
            "{comp}: decode"
        );
        let pid = json(&ok(&["x", &dir, "ps", "--json"]))[0]["pid"]
            .as_u64()
            .unwrap()
            .to_string();
        assert_eq!(
            ok_in(&tmp, &["mem", a, "--pid", &pid]),
            ok(&["mem", &dir, "--pid", &pid]),
            "{comp}: mem"
        );
        ok_in(&tmp, &["diff", a, &dir]);
        ok_in(&tmp, &["check", a]);
        assert_clean(&tmp);
    }
}

/// `crit inspect` of podman's export: engine, container, id, image, runtime, times, sizes, the
/// processes, the spec's mounts and the network address; the same in JSON.
#[test]
fn inspect_summarizes_a_podman_export() {
    let dir = images("unix_pair");
    let tar = tarball(Path::new(&dir), &podman_meta());
    let (ar, tmp) = write("inspect-podman", "dump.tar.zst", &zstd(&tar));
    let a = ar.to_str().unwrap();
    let text = ok_in(&tmp, &["inspect", a]);
    for want in [
        "engine:       Podman",
        "container:    magical_murdock",
        "id:           f11d11844af0",
        "image:        docker.io/library/busybox:latest (sha256:9a0b1c2d3e4f)",
        "runtime:      crun",
        "checkpointed: 2026-12-02T07:00:00Z",
        "(zstd, ",
        "root fs diff: ",
        "/data  bind      /srv/data",
        "podman  eth0  10.88.0.5/16  mac 5e:aa:01:02:03:04",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    for l in ok(&["x", &dir, "ps"]).lines() {
        assert!(
            text.contains(&format!("  {l}\n")),
            "process line {l:?} missing:\n{text}"
        );
    }
    let v = json(&ok_in(&tmp, &["inspect", a, "--json"]));
    assert_eq!(v["engine"], "Podman");
    assert_eq!(v["compression"], "zstd");
    assert_eq!(v["runtime"], "crun");
    assert_eq!(v["processes"], json(&ok(&["x", &dir, "ps", "--json"])));
    assert_eq!(v["mounts"].as_array().unwrap().len(), 2);
    assert_eq!(v["network"][0]["address"], "10.88.0.5/16");
    let n_images = std::fs::read_dir(&dir).unwrap().count() as u64;
    assert_eq!(v["images"], n_images);
    assert!(v["rootfs_diff_size"].as_u64().unwrap() > 0);
    assert_clean(&tmp);
}

/// The kubelet's checkpoint (CRI-O: an uncompressed tar named with colons, annotations of the pod):
/// inspect names the engine, pod and container; `x` and `show` read it.
#[test]
fn kubelet_checkpoint_tarball_is_read() {
    let dir = images("tcp_est");
    let spec = spec(
        "cri-o",
        r#","io.kubernetes.pod.name":"counters","io.kubernetes.pod.namespace":"default","io.kubernetes.container.name":"counter""#,
    );
    let config = r#"{"id":"6c4e1b0d","name":"k8s_counter_counters_default","rootfsImageName":"quay.io/adrianreber/counter:latest","runtime":"runc","createdTime":"2026-12-01T10:00:00Z","checkpointedTime":"2026-12-02T07:01:00Z"}"#;
    let tar = tarball(
        Path::new(&dir),
        &[
            ("config.dump", config.as_bytes().to_vec()),
            ("spec.dump", spec.into_bytes()),
        ],
    );
    let (ar, tmp) = write(
        "archive-kubelet",
        "checkpoint-counters_default-counter-2026-12-02T07:01:00Z.tar",
        &tar,
    );
    let a = ar.to_str().unwrap();
    let v = json(&ok_in(&tmp, &["inspect", a, "--json"]));
    assert_eq!(v["engine"], "CRI-O");
    assert_eq!(v["pod"], "counters");
    assert_eq!(v["namespace"], "default");
    assert_eq!(v["container"], "k8s_counter_counters_default");
    assert_eq!(v["compression"], "none");
    assert!(v["rootfs_diff_size"].is_null());
    assert_eq!(ok_in(&tmp, &["x", a, "sk"]), ok(&["x", &dir, "sk"]));
    assert_eq!(ok_in(&tmp, &["x", a, "ps"]), ok(&["x", &dir, "ps"]));
    // The archive's own name has colons: the member is after the last one.
    assert_eq!(
        ok_in(&tmp, &["show", &format!("{a}:inventory.img")]),
        ok(&["show", &format!("{dir}/inventory.img")])
    );
    assert!(ok_in(&tmp, &["inspect", a]).contains("pod:          counters (namespace default)"));
    assert_clean(&tmp);
}

/// Bad archives: truncated (each compression), without images, not an archive at all, a member
/// path leaving the archive, a member that is not there: a clear error naming the archive, exit 1,
/// nothing left behind.
#[test]
fn bad_archives_give_clear_errors() {
    let dir = images("unix_pair");
    let tar = tarball(Path::new(&dir), &podman_meta());
    for (comp, data) in [("none", tar.clone()), ("gzip", gzip(&tar)), ("zstd", zstd(&tar))] {
        let cut = &data[..data.len() / 2];
        let (ar, tmp) = write(&format!("bad-trunc-{comp}"), "cut.tar", cut);
        let a = ar.to_str().unwrap();
        let err = fails_in(&tmp, &["x", a, "ps"]);
        assert!(
            err.contains(a) && (err.contains("truncated or corrupt") || err.contains("no checkpoint images")),
            "{comp}: {err}"
        );
        let err = fails_in(&tmp, &["inspect", a]);
        assert!(err.contains(a), "{comp}: {err}");
        assert_clean(&tmp);
    }
    // Metadata only.
    let empty = scratch("bad-noimg-src");
    let t = tarball(&empty, &[("config.dump", CONFIG.as_bytes().to_vec())]);
    let (ar, tmp) = write("bad-noimg", "meta.tar.gz", &gzip(&t));
    let a = ar.to_str().unwrap();
    let err = fails_in(&tmp, &["inspect", a]);
    assert!(err.contains(&format!("{a}: no checkpoint images")), "{err}");
    let err = fails_in(&tmp, &["x", a, "ps"]);
    assert!(err.contains("no checkpoint images"), "{err}");
    assert_clean(&tmp);
    // Not an archive.
    let (ar, tmp) = write("bad-notar", "junk.tar", b"this is not a tar file at all\n");
    let a = ar.to_str().unwrap();
    let err = fails_in(&tmp, &["x", a, "ps"]);
    assert!(err.contains(&format!("{a}: not a checkpoint archive")), "{err}");
    // A member escaping the archive.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"bad"[..]).unwrap();
    let (ar, tmp) = write("bad-escape", "escape.tar", &b.into_inner().unwrap());
    let a = ar.to_str().unwrap();
    let err = fails_in(&tmp, &["x", a, "ps"]);
    assert!(err.contains("member ../escape") && err.contains(".."), "{err}");
    assert!(!ar.parent().unwrap().parent().unwrap().join("escape").exists());
    assert_clean(&tmp);
    // A member that is not there.
    let (ar, tmp) = write("bad-member", "dump.tar", &tar);
    let a = ar.to_str().unwrap();
    let err = fails_in(&tmp, &["show", &format!("{a}:nope.img")]);
    assert!(err.contains(&format!("{a}: no member nope.img")), "{err}");
}
