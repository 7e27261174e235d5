//! Builds every bin of the no_std `parasite/` crate as a static-pie with the
//! same cargo, flattens each ELF (goblin) into a position-independent image
//! and embeds it: `OUT_DIR/<bin>.bin` (the image) and `OUT_DIR/blobs.rs`
//! (one `pub static <BIN>: Blob` per bin; `Blob` is defined in
//! `src/parasite/blob.rs`).
//!
//! The image starts at vaddr 0. Each R_X86_64_RELATIVE relocation has its
//! addend already written at its offset in the image; the loader adds the load
//! base to the u64 at each offset listed in `Blob::relocs`. Any other
//! relocation type, a PT_INTERP or a PT_TLS fails the build.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";
const R_X86_64_RELATIVE: u32 = 8;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let pdir = manifest
        .join("../../parasite")
        .canonicalize()
        .expect("parasite/ crate not found");
    for p in ["src", "Cargo.toml", "Cargo.lock", "parasite.ld"] {
        println!("cargo:rerun-if-changed={}", pdir.join(p).display());
    }
    // The blobs' path dependency: the host/blob interface (cryo-abi).
    let abi = manifest.join("../abi").canonicalize().expect("crates/abi not found");
    for p in ["src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", abi.join(p).display());
    }

    let mut bins: Vec<String> = fs::read_dir(pdir.join("src/bin"))
        .expect("parasite/src/bin")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    bins.sort();

    let target_dir = out.join("blob-target");
    let ld = pdir.join("parasite.ld");
    let flags = [
        "-Crelocation-model=pie".to_string(),
        "-Ctarget-feature=+crt-static".into(),
        "-Cpanic=abort".into(),
        "-Clink-arg=-nostartfiles".into(),
        "-Clink-arg=-nostdlib".into(),
        "-Clink-arg=-static-pie".into(),
        format!("-Clink-arg=-Wl,-T,{}", ld.display()),
        "-Clink-arg=-Wl,--build-id=none".into(),
        "-Clink-arg=-Wl,-z,norelro".into(),
    ];
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&pdir)
        .args([
            "build",
            "--release",
            "--bins",
            "--offline",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(pdir.join("Cargo.toml"))
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    for v in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(v);
    }
    let st = cmd.status().expect("running cargo for parasite/");
    assert!(st.success(), "building parasite/ failed");

    let mut rs = String::new();
    for bin in &bins {
        let elf_path = target_dir.join(TARGET).join("release").join(bin);
        let blob = flatten(&elf_path);
        let bin_path = out.join(format!("{bin}.bin"));
        fs::write(&bin_path, &blob.image).unwrap();
        let _ = writeln!(
            rs,
            "/// The `{bin}` blob (parasite/src/bin/{bin}.rs).\npub static {}: Blob = Blob {{ name: {bin:?}, \
             image: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{bin}.bin\")), mem_size: {:#x}, entry: {:#x}, \
             relocs: &{:?}, symbols: &{:?} }};",
            bin.to_uppercase(),
            blob.mem_size,
            blob.entry,
            blob.relocs,
            blob.symbols.iter().map(|(n, v)| (n.as_str(), *v)).collect::<Vec<_>>(),
        );
    }
    fs::write(out.join("blobs.rs"), rs).unwrap();
}

struct Flat {
    image: Vec<u8>,
    mem_size: u64,
    entry: u64,
    relocs: Vec<u64>,
    symbols: BTreeMap<String, u64>,
}

fn flatten(path: &Path) -> Flat {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = goblin::elf::Elf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        elf.is_64 && elf.little_endian,
        "{}: not a 64-bit LE ELF",
        path.display()
    );
    assert!(elf.interpreter.is_none(), "{}: has PT_INTERP", path.display());
    let (mut file_end, mut mem_end) = (0u64, 0u64);
    for ph in &elf.program_headers {
        assert!(
            ph.p_type != goblin::elf::program_header::PT_TLS,
            "{}: TLS is not supported",
            path.display()
        );
        if ph.p_type == goblin::elf::program_header::PT_LOAD {
            file_end = file_end.max(ph.p_vaddr + ph.p_filesz);
            mem_end = mem_end.max(ph.p_vaddr + ph.p_memsz);
        }
    }
    let mut image = vec![0u8; file_end as usize];
    for ph in &elf.program_headers {
        if ph.p_type == goblin::elf::program_header::PT_LOAD {
            let (o, n, v) = (ph.p_offset as usize, ph.p_filesz as usize, ph.p_vaddr as usize);
            image[v..v + n].copy_from_slice(&bytes[o..o + n]);
        }
    }
    let mut relocs = Vec::new();
    for r in elf.dynrelas.iter().chain(elf.dynrels.iter()) {
        assert!(
            r.r_type == R_X86_64_RELATIVE,
            "{}: unsupported relocation type {}",
            path.display(),
            r.r_type
        );
        let off = r.r_offset as usize;
        let addend = r.r_addend.unwrap_or(0) as u64;
        image[off..off + 8].copy_from_slice(&addend.to_le_bytes());
        relocs.push(r.r_offset);
    }
    let mut symbols = BTreeMap::new();
    for s in elf.syms.iter() {
        if s.st_bind() == goblin::elf::sym::STB_GLOBAL && s.st_shndx != 0 {
            if let Some(name) = elf.strtab.get_at(s.st_name) {
                if !name.is_empty() {
                    symbols.insert(name.to_string(), s.st_value);
                }
            }
        }
    }
    Flat {
        image,
        mem_size: mem_end.div_ceil(4096) * 4096,
        entry: elf.entry,
        relocs,
        symbols,
    }
}
