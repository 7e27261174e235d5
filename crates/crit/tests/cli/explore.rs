//! `crit x`: CRIU's four explorers byte for byte, and the new ones.

use super::common::*;

/// ps, fds, mems and rss print exactly what CRIU 4.2's crit prints. The expected text is stored under
/// fixtures/criu-4.2/NAME/crit-x/ (made by fixtures/tools/crit-x-golden.py: Debian's crit explorers run on
/// the JSON CRIU 4.2's crit decoded).
#[test]
fn x_text_equals_criu_crit_on_every_fixture() {
    let mut checked = 0;
    for name in fixture_names() {
        for what in ["ps", "fds", "mems", "rss"] {
            let want = std::fs::read_to_string(fixtures().join(&name).join("crit-x").join(format!("{what}.txt")))
                .unwrap_or_else(|e| panic!("{name}/crit-x/{what}.txt: {e}"));
            let got = ok(&["x", &images(&name), what]);
            assert_eq!(got, want, "crit x {name} {what}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * fixture_names().len());
}

/// Where Debian's Python crit is installed (CI installs the criu package), compare live as well: its ps,
/// fds and mems read the 4.2 images directly (its rss cannot: it predates pagemap's nr_pages).
#[test]
fn x_text_equals_installed_python_crit() {
    let py = std::path::Path::new("/usr/bin/crit");
    let is_python = std::fs::read(py).is_ok_and(|b| b.starts_with(b"#!") && b.windows(6).any(|w| w == b"python"));
    if !is_python {
        eprintln!("no Python crit at /usr/bin/crit: only the stored texts are compared");
        return;
    }
    for name in fixture_names() {
        for what in ["ps", "fds", "mems"] {
            let o = std::process::Command::new(py)
                .args(["x", &images(&name), what])
                .output()
                .unwrap();
            assert!(o.status.success(), "python crit x {name} {what}");
            assert_eq!(
                ok(&["x", &images(&name), what]),
                String::from_utf8(o.stdout).unwrap(),
                "{name} {what}"
            );
        }
    }
}

#[test]
fn x_json_for_every_explorer_and_fixture() {
    let all = [
        "ps", "fds", "mems", "rss", "tree", "sk", "creds", "sigacts", "timers", "regs", "env", "ns", "ipc", "cg",
    ];
    for name in fixture_names() {
        for what in all {
            let v = json(&ok(&["x", &images(&name), what, "--json"]));
            assert!(v.is_array() || v.is_object(), "{name} {what}");
            // and the text form works too
            ok(&["x", &images(&name), what]);
        }
    }
}

#[test]
fn tree_shows_threads_and_children() {
    let t = json(&ok(&["x", &images("threads4"), "tree", "--json"]));
    assert_eq!(t["pid"], 9304);
    assert_eq!(t["threads"].as_array().unwrap().len(), 4);
    assert_eq!(t["state"], "Alive");
    let text = ok(&["x", &images("threads4"), "tree"]);
    assert!(
        text.contains("9304 threads4 [Alive] pgid 9304 sid 9304, 4 threads"),
        "{text}"
    );
    for tid in [9306, 9307, 9308] {
        assert!(text.contains(&format!("thread {tid} threads4")), "{text}");
    }
    let p = json(&ok(&["x", &images("proctree"), "tree", "--json"]));
    let kids: Vec<u64> = p["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(kids, [9408, 9409, 9410]);
    assert_eq!(p["children"][2]["children"][0]["pid"], 9411);
}

#[test]
fn sk_shows_tcp_queues_and_addresses() {
    let v = json(&ok(&["x", &images("tcp_est"), "sk", "--json"]));
    let socks = v.as_array().unwrap();
    assert_eq!(socks.len(), 3);
    let listen = socks.iter().find(|s| s["state"] == "LISTEN").unwrap();
    assert_eq!(listen["local"], "127.0.0.1:34567");
    assert_eq!(listen["peer"], "-");
    // Queued bytes come from tcp-stream-INO.img: compare with its inq_len/outq_len.
    for s in socks.iter().filter(|s| s["state"] == "ESTABLISHED") {
        let ino = s["ino"].as_u64().unwrap();
        let ts = json(&ok(&[
            "decode",
            "-i",
            &format!("{}/tcp-stream-{ino:x}.img", images("tcp_est")),
        ]));
        let e = &ts["entries"][0];
        assert_eq!(s["recv_q"], e["inq_len"], "inq of {ino}");
        assert_eq!(s["send_q"], e["outq_len"], "outq of {ino}");
        assert_eq!(s["owners"][0]["pid"], 10706);
    }
    let recv: Vec<u64> = socks.iter().map(|s| s["recv_q"].as_u64().unwrap()).collect();
    assert!(recv.iter().sum::<u64>() > 0, "{recv:?}");
}

#[test]
fn sk_shows_unix_queues_from_sk_queues() {
    let v = json(&ok(&["x", &images("unix_pair"), "sk", "--json"]));
    let socks = v.as_array().unwrap();
    assert_eq!(socks.len(), 6);
    // Sum of queued bytes equals the payload sizes in sk-queues.img.
    let q = json(&ok(&[
        "decode",
        "-i",
        &format!("{}/sk-queues.img", images("unix_pair")),
    ]));
    let want: u64 = q["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    let got: u64 = socks.iter().map(|s| s["recv_q"].as_u64().unwrap()).sum();
    assert_eq!(got, want);
    for s in socks {
        assert_eq!(s["family"], "unix");
        assert_eq!(s["state"], "CONNECTED");
        assert!(s["peer"].as_str().unwrap().starts_with("ino "));
    }
}

#[test]
fn creds_sigacts_timers_regs_env() {
    let c = json(&ok(&["x", &images("threads4"), "creds", "--json"]));
    assert_eq!(c.as_array().unwrap().len(), 4);
    assert_eq!(c[0]["uid"], 0);
    assert_eq!(c[0]["cap_eff"], 0x1fffeffffffu64);

    // threads4 installs a SIGUSR1 handler (common.h): it must show, with its restorer.
    let s = json(&ok(&["x", &images("threads4"), "sigacts", "--json"]));
    let usr1 = s[0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["signal"] == 10)
        .unwrap();
    assert_ne!(usr1["handler"], "SIG_DFL");
    assert_eq!(s[0]["actions"].as_array().unwrap().len(), 62);
    assert!(ok(&["x", &images("threads4"), "sigacts"]).contains("SIGUSR1"));

    let t = json(&ok(&["x", &images("threads4"), "timers", "--json"]));
    assert_eq!(t[0]["itimers"].as_array().unwrap().len(), 3);

    let r = json(&ok(&["x", &images("threads4"), "regs", "--json"]));
    assert_eq!(r.as_array().unwrap().len(), 4);
    let core = json(&ok(&["decode", "-i", &format!("{}/core-9306.img", images("threads4"))]));
    let g = &core["entries"][0]["thread_info"]["gpregs"];
    let regs = r[1]["regs"].as_array().unwrap();
    let get = |n: &str| regs.iter().find(|x| x[0] == n).unwrap()[1].clone();
    assert_eq!(r[1]["tid"], 9306);
    assert_eq!(get("rip"), g["ip"]);
    assert_eq!(get("rsp"), g["sp"]);
    assert_eq!(get("fs_base"), g["fs_base"]);
    assert!(ok(&["x", &images("threads4"), "regs"]).contains("xstate_bv"));

    // argv and environment come from memory (the fixtures ran as ./bin/NAME with a clean env).
    for name in fixture_names() {
        let e = json(&ok(&["x", &images(&name), "env", "--json"]));
        for p in e.as_array().unwrap() {
            assert_eq!(p["argv"][0], format!("./bin/{name}"), "{name}");
            assert!(p["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v.as_str().unwrap().starts_with("PATH=")));
        }
    }
}

#[test]
fn x_bad_input_names_what_is_wrong() {
    let e = fails(&["x", "/nonexistent/dir", "ps"]);
    assert!(e.contains("/nonexistent/dir"), "{e}");

    let d = copy_images("proctree", "x-missing");
    std::fs::remove_file(d.join("core-9409.img")).unwrap();
    let e = fails(&["x", d.to_str().unwrap(), "ps"]);
    assert!(e.contains("core-9409.img"), "{e}");
    std::fs::remove_dir_all(d).unwrap();

    let d = copy_images("threads4", "x-corrupt");
    let mm = d.join("mm-9304.img");
    let data = std::fs::read(&mm).unwrap();
    std::fs::write(&mm, &data[..data.len() / 2]).unwrap();
    let e = fails(&["x", d.to_str().unwrap(), "mems"]);
    assert!(e.contains("mm-9304.img"), "{e}");

    // Like CRIU's crit, ps reads only each process's core; tree needs the threads' cores too.
    let d2 = copy_images("threads4", "x-thread-core");
    std::fs::remove_file(d2.join("core-9307.img")).unwrap();
    let want = std::fs::read_to_string(fixtures().join("threads4/crit-x/ps.txt")).unwrap();
    assert_eq!(ok(&["x", d2.to_str().unwrap(), "ps"]), want);
    let e = fails(&["x", d2.to_str().unwrap(), "tree"]);
    assert!(e.contains("core-9307.img"), "{e}");
    std::fs::remove_dir_all(d2).unwrap();

    let e = fails(&["x", &images("threads4"), "creds", "--pid", "4242"]);
    assert!(e.contains("4242"), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn x_pid_narrows_every_explorer() {
    let dir = images("proctree");
    let t = json(&ok(&["x", &dir, "tree", "--json", "--pid", "9410"]));
    assert_eq!(t["pid"], 9410);
    assert_eq!(t["children"][0]["pid"], 9411);
    let ps = ok(&["x", &dir, "ps", "--pid", "9410"]);
    assert_eq!(ps.lines().count(), 3, "{ps}");
    for what in ["fds", "mems", "rss", "creds", "sigacts", "timers", "regs", "env"] {
        let v = json(&ok(&["x", &dir, what, "--json", "--pid", "9409"]));
        let pids: Vec<u64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["pid"].as_u64().unwrap())
            .collect();
        assert!(!pids.is_empty() && pids.iter().all(|&p| p == 9409), "{what}: {pids:?}");
    }
    let sk = json(&ok(&["x", &images("unix_pair"), "sk", "--json", "--pid", "10451"]));
    assert_eq!(sk.as_array().unwrap().len(), 6);
    for what in ["ps", "tree", "sk", "fds"] {
        let e = fails(&["x", &dir, what, "--pid", "1"]);
        assert!(e.contains("no process or thread 1"), "{what}: {e}");
    }
}

/// A zombie has only a core (state and exit code): tree shows it, ps lists it, the other explorers
/// leave it out, and asking for it by pid says why. (Made from proctree: 9411 turned into a zombie the
/// way CRIU dumps one.)
#[test]
fn zombies_are_shown_in_the_tree_and_skipped_elsewhere() {
    let d = copy_images("proctree", "x-zombie");
    let core = d.join("core-9411.img");
    let mut c = json(&ok(&["decode", "-i", core.to_str().unwrap()]));
    let e = c["entries"][0].as_object_mut().unwrap();
    e.remove("thread_info");
    e.remove("thread_core");
    let tc = e.get_mut("tc").unwrap();
    tc["task_state"] = 2.into(); // CRIU's TASK_DEAD
    tc["exit_code"] = 7.into();
    std::fs::write(d.join("core.json"), serde_json::to_string(&c).unwrap()).unwrap();
    ok(&[
        "encode",
        "-i",
        d.join("core.json").to_str().unwrap(),
        "-o",
        core.to_str().unwrap(),
    ]);
    for f in [
        "core.json",
        "mm-9411.img",
        "ids-9411.img",
        "fs-9411.img",
        "pagemap-9411.img",
    ] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    let dir = d.to_str().unwrap();
    let tree = ok(&["x", dir, "tree"]);
    assert!(tree.contains("9411 proctree [Zombie, exit 7]"), "{tree}");
    assert!(ok(&["x", dir, "ps"]).contains("  9411   9406   9406           proctree"));
    for what in ["fds", "mems", "rss", "creds", "sigacts", "timers", "regs", "env", "sk"] {
        let v = json(&ok(&["x", dir, what, "--json"]));
        assert!(!v.to_string().contains("9411"), "{what}: {v}");
    }
    for args in [
        vec!["x", dir, "mems", "--pid", "9411"],
        vec!["mem", dir, "--pid", "9411", "--search", "x"],
        vec!["core", dir, "--pid", "9411", "-o", "/tmp/never-written-core"],
    ] {
        let e = fails(&args);
        assert!(e.contains("9411 is a zombie"), "{args:?}: {e}");
    }
    std::fs::remove_dir_all(d).unwrap();
}

/// Nonsense values in a well-formed image (a VMA ending before it starts, absurd timers) give errors or
/// odd numbers, never a panic.
#[test]
fn nonsense_values_do_not_panic() {
    let d = copy_images("loop_heap", "x-nonsense");
    let dir = d.to_str().unwrap();
    let mm = d.join("mm-9217.img");
    let mut m = json(&ok(&["decode", "-i", mm.to_str().unwrap()]));
    let v = &mut m["entries"][0]["vmas"][3];
    let start = v["start"].as_u64().unwrap();
    v["end"] = (start - 4096).into();
    std::fs::write(d.join("mm.json"), serde_json::to_string(&m).unwrap()).unwrap();
    ok(&[
        "encode",
        "-i",
        d.join("mm.json").to_str().unwrap(),
        "-o",
        mm.to_str().unwrap(),
    ]);
    let core = d.join("core-9217.img");
    let mut c = json(&ok(&["decode", "-i", core.to_str().unwrap()]));
    c["entries"][0]["tc"]["timers"]["real"]["vsec"] = u64::MAX.into();
    c["entries"][0]["tc"]["timers"]["real"]["isec"] = u64::MAX.into();
    std::fs::write(d.join("core.json"), serde_json::to_string(&c).unwrap()).unwrap();
    ok(&[
        "encode",
        "-i",
        d.join("core.json").to_str().unwrap(),
        "-o",
        core.to_str().unwrap(),
    ]);

    for what in [
        "ps", "fds", "mems", "rss", "tree", "sk", "creds", "sigacts", "timers", "regs", "env", "ns", "ipc",
    ] {
        let o = run(&["x", dir, what]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code().is_some() && !err.contains("panicked"), "{what}: {err}");
    }
    for args in [
        vec!["mem", dir, "--pid", "9217"],
        vec!["mem", dir, "--pid", "9217", "--search", "PATH"],
        vec!["core", dir, "--pid", "9217", "-o", d.join("core").to_str().unwrap()],
    ] {
        let e = fails(&args);
        assert!(e.contains("mm-9217.img") && e.contains("vma 3"), "{args:?}: {e}");
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn ns_and_ipc_show_the_tree_namespaces_and_sysv_objects() {
    // CRIU 4.2's sysv_ipc: a task in an IPC namespace of its own (id 9), the others the dumper's.
    let v = json(&ok(&["x", &images("sysv_ipc"), "ns", "--json"]));
    let ns = v.as_array().unwrap();
    assert_eq!(ns.len(), 8);
    let own: Vec<_> = ns.iter().filter(|n| n["dumper"] == false).collect();
    assert_eq!(own.len(), 1);
    assert_eq!((own[0]["kind"].as_str(), own[0]["id"].as_u64()), (Some("ipc"), Some(9)));
    assert_eq!(own[0]["info"], "1 shm, 1 sem, 1 msg");
    let v = json(&ok(&["x", &images("sysv_ipc"), "ipc", "--json"]));
    let objs = v.as_array().unwrap();
    let kinds: Vec<_> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["shm", "sem", "msg"]);
    assert_eq!(objs[0]["key"], 0x1111);
    assert_eq!(objs[0]["size"], 65536);
    assert_eq!(objs[0]["attached"][0][0], 12036);
    assert_eq!(objs[1]["detail"], "values 1,2,3");
    assert_eq!(objs[2]["detail"], "type:bytes 1:10 2:10 3:10");
    let text = ok(&["x", &images("sysv_ipc"), "ipc"]);
    assert!(
        text.contains("0x00002222") && text.contains("12036@0x7f8d882d1000"),
        "{text}"
    );
    // A set without namespaces of its own says so.
    assert!(ok(&["x", &images("loop_heap"), "ipc"]).contains("no SysV IPC objects"));
}
