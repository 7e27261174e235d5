//! The engine's shape, checked on its sources (docs/architecture.md):
//! the import graph of the top-level modules has no circle and no arrow
//! from a lower layer up, and `unsafe` appears only in the syscall seam.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of crates/engine/src by layer, lowest first. A module
/// may use modules of a lower layer, or of its own layer as long as the
/// graph stays free of circles; dump and restore never use each other.
const LAYERS: &[&[&str]] = &[
    &["sys"],
    &["proc", "ptrace", "parasite"],
    &["files", "state", "sidecar", "membarrier", "netlock"],
    &["dump", "restore"],
    &["cli"],
];

/// The module that may hold `unsafe`: the seam.
const SEAM: &[&str] = &["sys"];

/// The one module with a few items that must call the seam's `unsafe fn`s
/// which write a tracee's memory (`sys::ptrace::pokedata`,
/// `sys::process_vm_writev`): whether such a write is sound depends on what
/// lives at the address, which only the code choosing it knows (the parasite
/// loader: `poke`, `inject_syscall`, and the methods injecting the blob).
/// Each such item carries its own `#[allow(unsafe_code)]`; this is how many
/// there may be, and none may be module-wide (`#![allow]`).
const ITEMS: &[(&str, usize)] = &[("parasite", 6)];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to ("lib" and "main" for the roots).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_string()
}

fn layer(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

/// The code of a line without its `//` comment (good enough: the engine has
/// no `//` inside the string literals this looks at).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// `crate::X` and `cryo_engine::X` references in one file: X for each.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let c = code(line);
        for prefix in ["crate::", "cryo_engine::"] {
            let mut rest = c;
            while let Some(i) = rest.find(prefix) {
                let before = rest[..i].chars().last();
                rest = &rest[i + prefix.len()..];
                if before.is_some_and(|b| b.is_alphanumeric() || b == '_') {
                    continue; // e.g. `cryo_crate::`
                }
                let name: String = rest
                    .chars()
                    .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        // `use crate::{a, b::c}` at the top level.
        if let Some(i) = c.find("crate::{") {
            let inner = &c[i + "crate::{".len()..];
            for part in inner.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let m = module_of(&f);
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(m.clone()).or_default();
        for r in references(&text) {
            if r != m && layer(&r).is_some() {
                deps.insert(r);
            }
        }
    }
    g
}

#[test]
fn every_module_has_a_layer() {
    for m in graph().keys() {
        assert!(
            layer(m).is_some() || m == "lib" || m == "main",
            "crates/engine/src/{m}: not in LAYERS (tests/layers.rs); put it in the layer it belongs to"
        );
    }
}

#[test]
fn no_arrow_points_up() {
    let mut bad = Vec::new();
    for (m, deps) in graph() {
        let Some(lm) = layer(&m) else { continue };
        for d in deps {
            let ld = layer(&d).unwrap();
            if ld > lm || (ld == lm && matches!((m.as_str(), d.as_str()), ("dump", "restore") | ("restore", "dump"))) {
                bad.push(format!("{m} (layer {lm}) uses {d} (layer {ld})"));
            }
        }
    }
    assert!(bad.is_empty(), "arrows up the layers:\n{}", bad.join("\n"));
}

#[test]
fn no_circle() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(c) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn unsafe_only_in_the_seam() {
    let mut files = Vec::new();
    rs_files(&src(), &mut files);
    let mut bad = Vec::new();
    for f in files {
        let m = module_of(&f);
        if SEAM.contains(&m.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        if let Some(&(_, most)) = ITEMS.iter().find(|(x, _)| *x == m) {
            let items = text
                .lines()
                .filter(|l| code(l).contains("#[allow(unsafe_code)]"))
                .count();
            let wide = text.lines().any(|l| code(l).contains("#![allow(unsafe_code)]"));
            if items > most || wide {
                bad.push(format!(
                    "{}: {items} items allow unsafe_code (at most {most}){}",
                    f.strip_prefix(src()).unwrap().display(),
                    if wide { ", and module-wide" } else { "" }
                ));
            }
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let c = code(line);
            let hit = c
                .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .any(|w| w == "unsafe")
                || c.contains("allow(unsafe_code)");
            // The crate root denies unsafe_code: that line is the rule, not a use.
            if hit && !c.contains("deny(unsafe_code)") {
                bad.push(format!(
                    "{}:{}: {}",
                    f.strip_prefix(src()).unwrap().display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unsafe outside the seam ({SEAM:?}):\n{}",
        bad.join("\n")
    );
}

#[test]
fn reference_parsing() {
    let r = references("use crate::files::{reg, FdCtx};\nuse crate::{proc, sys::x}; // crate::restore\nlet a = cryo_engine::dump::dump(o);");
    assert_eq!(
        r,
        ["dump", "files", "proc", "sys"].iter().map(|s| s.to_string()).collect()
    );
}
