//! Compiles CRIU's .proto files (../../proto) with protox (pure Rust, no system protoc), generates the
//! prost types, keeps the encoded descriptor set for prost-reflect, and turns proto/magics.tsv into a
//! static magic table.

use std::{env, fmt::Write as _, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let proto_dir = manifest.join("../../proto");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let mut files: Vec<String> = fs::read_dir(&proto_dir)
        .expect("proto/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", proto_dir.join(f).display());
    }

    let mut compiler = protox::Compiler::new([&proto_dir]).unwrap_or_else(|e| panic!("proto/: {e:?}"));
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_files(&files)
        .unwrap_or_else(|e| panic!("compiling proto/: {e:?}"));
    // The encoded set keeps the custom (criu) field options, which prost_types would drop.
    fs::write(out.join("descriptor.bin"), compiler.encode_file_descriptor_set()).unwrap();
    let fds = compiler.file_descriptor_set();

    let mut cfg = prost_build::Config::new();
    cfg.out_dir(&out);
    cfg.compile_fds(fds).expect("prost-build");

    // magics.tsv: NAME \t 0xHEX \t message|- \t extra|-
    let tsv_path = proto_dir.join("magics.tsv");
    println!("cargo:rerun-if-changed={}", tsv_path.display());
    let tsv = fs::read_to_string(&tsv_path).expect("proto/magics.tsv");
    let mut table = String::from("/// Generated from proto/magics.tsv.\npub static MAGICS: &[MagicDesc] = &[\n");
    for (n, line) in tsv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        assert!(
            cols.len() >= 3,
            "magics.tsv line {}: want NAME, MAGIC, MESSAGE[, EXTRA]",
            n + 1
        );
        let magic = u32::from_str_radix(cols[1].trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("magics.tsv line {}: bad magic {}", n + 1, cols[1]));
        let opt = |s: Option<&&str>| match s {
            Some(s) if *s != "-" && !s.is_empty() => format!("Some({s:?})"),
            _ => "None".to_string(),
        };
        writeln!(
            table,
            "    MagicDesc {{ name: {:?}, magic: {:#010x}, message: {}, extra: {} }},",
            cols[0],
            magic,
            opt(cols.get(2)),
            opt(cols.get(3))
        )
        .unwrap();
    }
    table.push_str("];\n");
    fs::write(out.join("magics.rs"), table).unwrap();
}
