//! Compiles CRIU's .proto files (../../proto) with protox (pure Rust, no system protoc) and generates:
//! * the prost types (`_.rs`);
//! * `descriptor.bin`: the whole descriptor set for prost-reflect, without opts.proto and
//!   google/protobuf/descriptor.proto (they only carry CRIU's field options, which are extracted here);
//! * one small descriptor set per .proto file holding it and its imports (`fds-N.bin`), so a tool that
//!   decodes one image builds only the descriptors it needs (this keeps crit's start-up to a few hundred
//!   microseconds);
//! * `schema.rs`: every message, field and enum as static tables without pointers, with CRIU's custom field
//!   options (hex, flags, dev, ...), for the fast JSON path and the options of the reflective one;
//! * `magics.rs`: the magic table from proto/magics.tsv;
//! * `rpc/_.rs` and `rpc/fields.rs`: CRIU's RPC messages (proto/rpc/rpc.proto, compiled on their own: they
//!   are no image) and, for the strict decoding of a request, the field numbers and wire types of every
//!   RPC message.

use std::collections::{BTreeMap, BTreeSet};
use std::{env, fmt::Write as _, fs, path::PathBuf};

use prost::Message as _;

/// The files with only the top-level messages and enums reachable from `root` (files kept, maybe empty,
/// so that imports still resolve).
fn reachable(files: &[prost_types::FileDescriptorProto], root: &str) -> Vec<prost_types::FileDescriptorProto> {
    fn field_types(m: &prost_types::DescriptorProto, out: &mut Vec<String>) {
        for f in &m.field {
            if let Some(first) = f.type_name().trim_start_matches('.').split('.').next() {
                if !first.is_empty() {
                    out.push(first.to_string());
                }
            }
        }
        for n in &m.nested_type {
            field_types(n, out);
        }
    }
    let mut reach = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(t) = stack.pop() {
        if !reach.insert(t.clone()) {
            continue;
        }
        for f in files {
            for m in f.message_type.iter().filter(|m| m.name() == t) {
                field_types(m, &mut stack);
            }
        }
    }
    files
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f.message_type.retain(|m| reach.contains(m.name()));
            f.enum_type.retain(|e| reach.contains(e.name()));
            f
        })
        .collect()
}

fn strip_empty_options(m: &mut prost_types::DescriptorProto) {
    if m.options.as_ref().is_some_and(|o| *o == Default::default()) {
        m.options = None;
    }
    for f in &mut m.field {
        if f.options.as_ref().is_some_and(|o| *o == Default::default()) {
            f.options = None;
        }
    }
    for e in &mut m.enum_type {
        if e.options.as_ref().is_some_and(|o| *o == Default::default()) {
            e.options = None;
        }
    }
    m.nested_type.iter_mut().for_each(strip_empty_options);
}

/// `schema.rs`: every message as static tables (fields by number with their type, label and CRIU options;
/// enums as value -> name), for the fast image -> JSON path, which then needs no descriptor pool. The
/// tables hold no pointers (names are offsets into one string, options an index into a small table), so
/// they cost no relocations at start-up, and a decode touches only the pages it reads.
fn schema(pool: &prost_reflect::DescriptorPool, opts_of: &BTreeMap<(String, u32), String>) -> String {
    use prost_reflect::{Cardinality, Kind};
    let skip = |n: &str| n.starts_with("google.protobuf.") || n == "CRIU_Opts";
    let mut msgs: Vec<_> = pool.all_messages().filter(|m| !skip(m.full_name())).collect();
    msgs.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    let mut enums: Vec<_> = pool.all_enums().filter(|e| !skip(e.full_name())).collect();
    enums.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    let msg_idx: BTreeMap<String, usize> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| (m.full_name().to_string(), i))
        .collect();
    let enum_idx: BTreeMap<String, usize> = enums
        .iter()
        .enumerate()
        .map(|(i, e)| (e.full_name().to_string(), i))
        .collect();
    let mut names = String::new();
    let mut name_at: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut name = |n: &str| -> String {
        let (o, l) = *name_at.entry(n.to_string()).or_insert_with(|| {
            names.push_str(n);
            (names.len() - n.len(), n.len())
        });
        format!("Name({o}, {l})")
    };
    let mut opts_table: Vec<String> = vec!["NO_OPTS".into()];
    let mut fields_out = String::new();
    let mut msgs_out = String::new();
    let mut nfields = 0;
    for m in &msgs {
        let mut fields: Vec<_> = m.fields().collect();
        fields.sort_by_key(|f| f.number());
        writeln!(
            msgs_out,
            "    MsgSchema {{ name: {}, first: {nfields}, len: {} }},",
            name(m.full_name()),
            fields.len()
        )
        .unwrap();
        for f in fields {
            let ty = match f.kind() {
                Kind::Double => "Ty::Double".to_string(),
                Kind::Float => "Ty::Float".into(),
                Kind::Int32 => "Ty::Int32".into(),
                Kind::Int64 => "Ty::Int64".into(),
                Kind::Uint32 => "Ty::Uint32".into(),
                Kind::Uint64 => "Ty::Uint64".into(),
                Kind::Sint32 => "Ty::Sint32".into(),
                Kind::Sint64 => "Ty::Sint64".into(),
                Kind::Fixed32 => "Ty::Fixed32".into(),
                Kind::Fixed64 => "Ty::Fixed64".into(),
                Kind::Sfixed32 => "Ty::Sfixed32".into(),
                Kind::Sfixed64 => "Ty::Sfixed64".into(),
                Kind::Bool => "Ty::Bool".into(),
                Kind::String => "Ty::String".into(),
                Kind::Bytes => "Ty::Bytes".into(),
                Kind::Message(t) if f.is_group() => panic!("{}: groups are not used by CRIU", t.full_name()),
                Kind::Message(t) => format!("Ty::Message({})", msg_idx[t.full_name()]),
                Kind::Enum(e) => format!("Ty::Enum({})", enum_idx[e.full_name()]),
            };
            assert!(!f.is_map(), "{}: maps are not used by CRIU", f.full_name());
            let label = match f.cardinality() {
                Cardinality::Optional => "Label::Optional",
                Cardinality::Required => "Label::Required",
                Cardinality::Repeated => "Label::Repeated",
            };
            let o = opts_of
                .get(&(m.full_name().to_string(), f.number()))
                .cloned()
                .unwrap_or_else(|| "NO_OPTS".into());
            let oi = match opts_table.iter().position(|x| *x == o) {
                Some(i) => i,
                None => {
                    opts_table.push(o);
                    opts_table.len() - 1
                }
            };
            writeln!(
                fields_out,
                "    FieldSchema {{ number: {}, name: {}, ty: {ty}, label: {label}, opts: {oi} }},",
                f.number(),
                name(f.name())
            )
            .unwrap();
            nfields += 1;
        }
    }
    let mut values_out = String::new();
    let mut enums_out = String::new();
    let mut nvalues = 0;
    for e in &enums {
        let mut vals: Vec<(i32, String)> = Vec::new();
        for v in e.values() {
            if !vals.iter().any(|(n, _)| *n == v.number()) {
                vals.push((v.number(), v.name().to_string()));
            }
        }
        vals.sort();
        writeln!(enums_out, "    ({nvalues}, {}),", vals.len()).unwrap();
        for (n, v) in vals {
            writeln!(values_out, "    ({n}, {}),", name(&v)).unwrap();
            nvalues += 1;
        }
    }
    let mut s = String::new();
    writeln!(
        s,
        "/// Generated: every name the tables below refer to.\npub static NAMES: &str = {names:?};"
    )
    .unwrap();
    writeln!(
        s,
        "/// Generated: every message, sorted by full name.\npub static MESSAGES: &[MsgSchema] = &[\n{msgs_out}];"
    )
    .unwrap();
    writeln!(s, "/// Generated: the fields of every message, each message's sorted by number.\npub static FIELDS: &[FieldSchema] = &[\n{fields_out}];").unwrap();
    writeln!(
        s,
        "/// Generated: the distinct CRIU option sets of fields.\npub static OPTS: &[CriuOpts] = &[\n    {}\n];",
        opts_table.join(",\n    ")
    )
    .unwrap();
    writeln!(s, "/// Generated: every enum as (first value, count) in ENUM_VALUES.\npub static ENUMS: &[(u32, u32)] = &[\n{enums_out}];").unwrap();
    writeln!(s, "/// Generated: enum values, each enum's sorted by number (first name for a number).\npub static ENUM_VALUES: &[(i32, Name)] = &[\n{values_out}];").unwrap();
    s
}

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

    // CRIU's field options, read through the full pool (which knows the `criu` extension).
    let pool = compiler.descriptor_pool();
    let ext = pool
        .get_extension_by_name("criu")
        .expect("opts.proto defines the criu extension");
    let mut rows = Vec::new();
    for m in pool.all_messages() {
        for f in m.fields() {
            let o = f.options();
            if !o.has_extension(&ext) {
                continue;
            }
            let v = o.get_extension(&ext);
            let v = v.as_message().unwrap();
            let b = |n: &str| v.get_field_by_name(n).and_then(|x| x.as_bool()).unwrap_or(false);
            let s = |n: &str| match v.get_field_by_name(n).and_then(|x| x.as_str().map(str::to_owned)) {
                Some(s) if v.has_field_by_name(n) && !s.is_empty() => format!("Some({s:?})"),
                _ => "None".into(),
            };
            let row = format!(
                "CriuOpts {{ hex: {}, ipadd: {}, flags: {}, dev: {}, odev: {}, dict: {}, conv: {} }}",
                b("hex"),
                b("ipadd"),
                s("flags"),
                b("dev"),
                b("odev"),
                s("dict"),
                s("conv")
            );
            rows.push(((m.full_name().to_string(), f.number()), row));
        }
    }
    let opts_of: BTreeMap<(String, u32), String> = rows.into_iter().collect();
    fs::write(out.join("schema.rs"), schema(&pool, &opts_of)).unwrap();

    // The descriptor set without the option machinery (prost_types drops unknown extensions).
    let mut fds = compiler.file_descriptor_set();
    let drop_files = ["google/protobuf/descriptor.proto", "opts.proto"];
    fds.file.retain(|f| !drop_files.contains(&f.name()));
    for f in &mut fds.file {
        f.dependency.retain(|d| !drop_files.contains(&d.as_str()));
        f.public_dependency.clear();
        f.weak_dependency.clear();
        // Options left empty by the dropped extension would make prost-reflect build the whole set of
        // google's well-known types at start-up (a few million instructions) to interpret them.
        if f.options.as_ref().is_some_and(|o| *o == Default::default()) {
            f.options = None;
        }
        f.message_type.iter_mut().for_each(strip_empty_options);
        for e in &mut f.enum_type {
            if e.options.as_ref().is_some_and(|o| *o == Default::default()) {
                e.options = None;
            }
        }
    }
    fs::write(out.join("descriptor.bin"), fds.encode_to_vec()).unwrap();

    // One closed subset per file; where the closure holds other architectures' core files (core.proto
    // imports them all), also a lean x86-only variant without them and without the fields that use them.
    // Readers decode with the lean one and fall back to the full one when a message has fields the lean
    // one does not know.
    const ARCH_FILES: &[&str] = &[
        "core-aarch64.proto",
        "core-arm.proto",
        "core-ppc64.proto",
        "core-s390.proto",
        "core-mips.proto",
        "core-loongarch64.proto",
        "core-riscv64.proto",
    ];
    let arch_types: BTreeSet<String> = fds
        .file
        .iter()
        .filter(|f| ARCH_FILES.contains(&f.name()))
        .flat_map(|f| f.message_type.iter().map(|m| format!(".{}", m.name())))
        .collect();
    let by_name: BTreeMap<String, usize> = fds
        .file
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name().to_string(), i))
        .collect();
    let mut table = String::from(
        "/// Generated: message name -> (lean subset, full subset) holding it.\npub static MESSAGE_SUBSET: &[(&str, usize, usize)] = &[\n",
    );
    let mut subsets = String::from("/// Generated: descriptor subsets.\npub static SUBSETS: &[&[u8]] = &[\n");
    let mut msg_rows = Vec::new();
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut emit = |files: Vec<prost_types::FileDescriptorProto>, subsets: &mut String| -> usize {
        let bytes = prost_types::FileDescriptorSet { file: files }.encode_to_vec();
        if let Some(&i) = seen.get(&bytes) {
            return i;
        }
        let i = seen.len();
        let name = format!("fds-{i}.bin");
        fs::write(out.join(&name), &bytes).unwrap();
        writeln!(subsets, "    include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}\")),").unwrap();
        seen.insert(bytes, i);
        i
    };
    for f in &fds.file {
        let mut need = BTreeSet::new();
        let mut stack = vec![f.name().to_string()];
        while let Some(n) = stack.pop() {
            if need.insert(n.clone()) {
                stack.extend(fds.file[by_name[&n]].dependency.iter().cloned());
            }
        }
        // Dependencies first, as prost-reflect wants them (the set is already in that order).
        let full: Vec<_> = fds.file.iter().filter(|f2| need.contains(f2.name())).cloned().collect();
        let has_arch = full.iter().any(|f2| ARCH_FILES.contains(&f2.name()));
        let lean = if has_arch && !ARCH_FILES.contains(&f.name()) {
            let mut lean: Vec<_> = full
                .iter()
                .filter(|f2| !ARCH_FILES.contains(&f2.name()))
                .cloned()
                .collect();
            for f2 in &mut lean {
                f2.dependency.retain(|d| !ARCH_FILES.contains(&d.as_str()));
                for m in &mut f2.message_type {
                    m.field.retain(|fl| !arch_types.contains(fl.type_name()));
                }
            }
            Some(lean)
        } else {
            None
        };
        // Each message gets only the types it can reach (an image kind seldom needs its whole file closure:
        // inventory needs one message of core.proto, fdinfo none of the fd kinds).
        for m in &f.message_type {
            let full_idx = emit(reachable(&full, m.name()), &mut subsets);
            let lean_idx = match &lean {
                Some(l) => emit(reachable(l, m.name()), &mut subsets),
                None => full_idx,
            };
            msg_rows.push((m.name().to_string(), lean_idx, full_idx));
        }
    }
    msg_rows.sort();
    for (m, l, f) in msg_rows {
        writeln!(table, "    ({m:?}, {l}, {f}),").unwrap();
    }
    table.push_str("];\n");
    subsets.push_str("];\n");
    fs::write(out.join("subsets.rs"), table + &subsets).unwrap();

    let mut cfg = prost_build::Config::new();
    cfg.out_dir(&out);
    cfg.compile_fds(fds).expect("prost-build");

    rpc(&proto_dir.join("rpc"), &out.join("rpc"));

    // magics.tsv: NAME \t 0xHEX \t message|- \t extra|-
    let tsv_path = proto_dir.join("magics.tsv");
    println!("cargo:rerun-if-changed={}", tsv_path.display());
    let tsv = fs::read_to_string(&tsv_path).expect("proto/magics.tsv");
    let mut magics = String::from("/// Generated from proto/magics.tsv.\npub static MAGICS: &[MagicDesc] = &[\n");
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
            magics,
            "    MagicDesc {{ name: {:?}, magic: {:#010x}, message: {}, extra: {} }},",
            cols[0],
            magic,
            opt(cols.get(2)),
            opt(cols.get(3))
        )
        .unwrap();
    }
    magics.push_str("];\n");
    fs::write(out.join("magics.rs"), magics).unwrap();
}

/// proto/rpc/rpc.proto: prost types in `OUT/_.rs`, and `OUT/fields.rs`: for each message, its fields as
/// (number, wire type, name, message type or ""), so that a request can be checked for fields cryo does not know.
fn rpc(dir: &std::path::Path, out: &std::path::Path) {
    use prost_types::field_descriptor_proto::Type;
    println!("cargo:rerun-if-changed={}", dir.join("rpc.proto").display());
    fs::create_dir_all(out).unwrap();
    let fds = protox::compile(["rpc.proto"], [dir]).unwrap_or_else(|e| panic!("proto/rpc/rpc.proto: {e:?}"));
    let mut t = String::from(
        "/// Generated from proto/rpc/rpc.proto: (message, [(field number, wire type, field name, message\n\
         /// type or \"\")]).\n\
         pub static FIELDS: &[(&str, &[(u32, u8, &str, &str)])] = &[\n",
    );
    for m in fds.file.iter().flat_map(|f| &f.message_type) {
        write!(t, "    ({:?}, &[", m.name()).unwrap();
        for f in &m.field {
            let wire = match f.r#type() {
                Type::Double | Type::Fixed64 | Type::Sfixed64 => 1,
                Type::Float | Type::Fixed32 | Type::Sfixed32 => 5,
                Type::String | Type::Bytes | Type::Message => 2,
                Type::Group => 3,
                _ => 0,
            };
            let msg = if f.r#type() == Type::Message {
                f.type_name().trim_start_matches('.')
            } else {
                ""
            };
            write!(t, "({}, {wire}, {:?}, {msg:?}), ", f.number(), f.name()).unwrap();
        }
        t.push_str("]),\n");
    }
    t.push_str("];\n");
    fs::write(out.join("fields.rs"), t).unwrap();
    let mut cfg = prost_build::Config::new();
    cfg.out_dir(out);
    cfg.compile_fds(fds).expect("prost-build (rpc.proto)");
}
