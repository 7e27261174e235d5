//! x86_64 register names of a thread's `UserX86RegsEntry` (core-TID.img), one table for every tool
//! that shows or searches them (`crit x regs`, `crit rewrite`, the TUI's Regs/FPU tab).

use crate::pb::UserX86RegsEntry;

/// One general register: its name as gdb and `crit x regs` show it, its field in the image (CRIU's
/// `user_x86_regs_entry`, the name crit's JSON uses) and how to read it.
#[derive(Clone, Copy)]
pub struct GpReg {
    /// gdb's name (`rip`, `orig_rax`, `fs_base`).
    pub name: &'static str,
    /// The image field (`ip`, `orig_ax`, `fs_base`).
    pub field: &'static str,
    /// Place in gdb's order (`info registers`), which `crit x regs` follows.
    pub gdb: u8,
    /// The register may hold an address a program uses (the instruction, stack and frame pointers, the
    /// general registers, the segment bases); flags, `orig_rax` and the selectors never do.
    pub addr: bool,
    /// Its value.
    pub get: fn(&UserX86RegsEntry) -> u64,
}

impl std::fmt::Debug for GpReg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

macro_rules! gp {
    ($name:literal, $field:ident, $gdb:literal, $addr:literal) => {
        GpReg {
            name: $name,
            field: stringify!($field),
            gdb: $gdb,
            addr: $addr,
            get: |g| g.$field,
        }
    };
}

/// The 27 general registers, the instruction, stack and frame pointers first (the TUI's order and
/// `crit rewrite`'s); [`gdb_order`] gives gdb's.
pub const GP_REGS: [GpReg; 27] = [
    gp!("rip", ip, 16, true),
    gp!("rsp", sp, 7, true),
    gp!("rbp", bp, 6, true),
    gp!("rax", ax, 0, true),
    gp!("rbx", bx, 1, true),
    gp!("rcx", cx, 2, true),
    gp!("rdx", dx, 3, true),
    gp!("rsi", si, 4, true),
    gp!("rdi", di, 5, true),
    gp!("r8", r8, 8, true),
    gp!("r9", r9, 9, true),
    gp!("r10", r10, 10, true),
    gp!("r11", r11, 11, true),
    gp!("r12", r12, 12, true),
    gp!("r13", r13, 13, true),
    gp!("r14", r14, 14, true),
    gp!("r15", r15, 15, true),
    gp!("orig_rax", orig_ax, 18, false),
    gp!("eflags", flags, 17, false),
    gp!("cs", cs, 19, false),
    gp!("ss", ss, 20, false),
    gp!("ds", ds, 21, false),
    gp!("es", es, 22, false),
    gp!("fs", fs, 23, false),
    gp!("gs", gs, 24, false),
    gp!("fs_base", fs_base, 25, true),
    gp!("gs_base", gs_base, 26, true),
];

/// [`GP_REGS`] in gdb's order.
pub fn gdb_order() -> [&'static GpReg; 27] {
    let mut v: [&GpReg; 27] = std::array::from_fn(|i| &GP_REGS[i]);
    v.sort_by_key(|r| r.gdb);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_register_once_and_gdb_order_is_a_permutation() {
        let mut fields: Vec<&str> = GP_REGS.iter().map(|r| r.field).collect();
        fields.sort();
        fields.dedup();
        assert_eq!(fields.len(), 27);
        let gdb: Vec<u8> = gdb_order().iter().map(|r| r.gdb).collect();
        assert_eq!(gdb, (0..27).collect::<Vec<u8>>());
        // Every field is one of the entry's (its JSON names them alike).
        let d = crate::pool().get_message_by_name("user_x86_regs_entry").unwrap();
        for r in &GP_REGS {
            assert!(d.get_field_by_name(r.field).is_some(), "{}", r.field);
        }
    }

    #[test]
    fn accessors_read_their_own_field() {
        let g = UserX86RegsEntry {
            ip: 1,
            orig_ax: 2,
            gs_base: 3,
            ..Default::default()
        };
        let val = |n: &str| (GP_REGS.iter().find(|r| r.name == n).unwrap().get)(&g);
        assert_eq!((val("rip"), val("orig_rax"), val("gs_base"), val("rax")), (1, 2, 3, 0));
    }
}
