//! The network lock: while established TCP connections are dumped, and
//! until they are restored, no packet of theirs may reach the kernel's TCP
//! stack (a segment for a socket that no longer exists is answered with a
//! reset, and the peer drops the connection). As CRIU 4.2 does it when the
//! tree shares cryo's network namespace, the lock covers exactly the dumped
//! connections, both directions, and lets packets marked [`SOCCR_MARK`]
//! through (the segments cryo itself sends at restore):
//!
//! * **nftables** (the default; `--network-lock nftables`): a table `inet
//!   CRIU-<run id>` (the run id of the dump as inventory.img records it, cut
//!   where CRIU's 32-byte buffer cuts it, so CRIU's restore removes a
//!   table cryo made and the other way round) with an input and an output
//!   chain: `meta mark 0xC114 accept`, then a drop for the addresses and
//!   ports in the sets `conns4` / `conns6`, one element per direction of
//!   each connection. Unlocking deletes the table.
//! * **iptables** (`--network-lock iptables`): per connection one rule in
//!   INPUT and one in OUTPUT of the filter table, spelled as CRIU spells
//!   them (`-m mark ! --mark 0xC114 … -j DROP`; ip6tables for IPv6),
//!   deleted one by one on unlock.
//! * **skip**: nothing (the caller locks the network itself).
//!
//! A [`Lock`] removes its rules when dropped unless [`Lock::keep`] says they
//! must outlive the dump (the tree was killed: the rules stay until the
//! restore, which calls [`unlock`] with what the images say). No rule is
//! left behind by a failed dump or restore.
#![forbid(unsafe_code)]

use crate::files::tcp::{Conn, SOCCR_MARK};
use std::io::Write;
use std::process::{Command, Stdio};

/// `--network-lock` as criu spells it; the numbers are inventory.img's
/// `network_lock_method` (CRIU's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    Iptables = 0,
    #[default]
    Nftables = 1,
    Skip = 2,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "iptables" => Some(Method::Iptables),
            "nftables" => Some(Method::Nftables),
            "skip" => Some(Method::Skip),
            _ => None,
        }
    }
    /// From inventory.img (CRIU: no field means iptables).
    pub fn from_inventory(v: Option<u32>) -> Option<Method> {
        match v.unwrap_or(0) {
            0 => Some(Method::Iptables),
            1 => Some(Method::Nftables),
            2 => Some(Method::Skip),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Method::Iptables => "iptables",
            Method::Nftables => "nftables",
            Method::Skip => "skip",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("network lock ({method}): running {cmd}: {source}")]
    Spawn {
        method: &'static str,
        cmd: String,
        source: std::io::Error,
    },
    #[error("network lock ({method}): {cmd} failed: {stderr}")]
    Failed {
        method: &'static str,
        cmd: String,
        stderr: String,
    },
}

/// The nftables table of a dump's run id: `CRIU-` and as much of the id as
/// CRIU's `char table[32]` holds after `inet ` (21 characters of a uuid).
pub fn nft_table(run_id: &str) -> String {
    let id: String = run_id.chars().take(31 - "inet CRIU-".len()).collect();
    format!("CRIU-{id}")
}

fn run(method: Method, prog: &str, args: &[&str], stdin: Option<&str>) -> Result<(), LockError> {
    let cmd = format!("{prog} {}", args.join(" "));
    let mut c = Command::new(prog);
    c.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|source| LockError::Spawn {
        method: method.name(),
        cmd: cmd.clone(),
        source,
    })?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        let _ = w.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| LockError::Spawn {
        method: method.name(),
        cmd: cmd.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(LockError::Failed {
            method: method.name(),
            cmd: match stdin {
                Some(t) => format!("{cmd} <<< {:?}", t.trim()),
                None => cmd,
            },
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The nft script that creates the lock table with `conns` in its sets.
fn nft_lock_script(table: &str, conns: &[Conn]) -> String {
    let mark = format!("{SOCCR_MARK:#X}").replace("0X", "0x");
    let mut s = format!(
        "add table inet {table}\n\
         add chain inet {table} output {{ type filter hook output priority 0; }}\n\
         add rule inet {table} output meta mark {mark} accept\n\
         add chain inet {table} input {{ type filter hook input priority 0; }}\n\
         add rule inet {table} input meta mark {mark} accept\n\
         add set inet {table} conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n\
         add rule inet {table} output ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
         add rule inet {table} input ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
         add set inet {table} conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n\
         add rule inet {table} output ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n\
         add rule inet {table} input ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
    );
    for c in conns {
        let c = c.unmapped();
        let set = if c.local.family == libc::AF_INET { 4 } else { 6 };
        let (l, p) = (c.local.ip(), c.peer.ip());
        // Both directions: packets to us (peer -> local) and from us.
        s.push_str(&format!(
            "add element inet {table} conns{set} {{ {p} . {} . {l} . {} }}\n",
            c.peer.port, c.local.port
        ));
        s.push_str(&format!(
            "add element inet {table} conns{set} {{ {l} . {} . {p} . {} }}\n",
            c.local.port, c.peer.port
        ));
    }
    s
}

/// The two iptables rules of a connection (INPUT, OUTPUT) as CRIU writes
/// them, after `-I` or `-D`: (program, chain, args).
fn ipt_rules(c: &Conn) -> Vec<(&'static str, Vec<String>)> {
    let c = c.unmapped();
    let prog = if c.local.family == libc::AF_INET {
        "iptables"
    } else {
        "ip6tables"
    };
    let rule = |chain: &str, src: &crate::sys::tcp::InetAddr, dst: &crate::sys::tcp::InetAddr| {
        vec![
            "-t".into(),
            "filter".into(),
            chain.to_string(),
            "--protocol".into(),
            "tcp".into(),
            "-m".into(),
            "mark".into(),
            "!".into(),
            "--mark".into(),
            "0xC114".into(),
            "--source".into(),
            src.ip().to_string(),
            "--sport".into(),
            src.port.to_string(),
            "--destination".into(),
            dst.ip().to_string(),
            "--dport".into(),
            dst.port.to_string(),
            "-j".into(),
            "DROP".into(),
        ]
    };
    vec![
        (prog, rule("INPUT", &c.peer, &c.local)),
        (prog, rule("OUTPUT", &c.local, &c.peer)),
    ]
}

fn ipt(method: Method, prog: &str, op: &str, rule: &[String]) -> Result<(), LockError> {
    let mut args: Vec<&str> = vec!["-w"];
    // `-t filter -I INPUT ...`: the operation goes before the chain.
    args.extend(rule[..2].iter().map(String::as_str));
    args.push(op);
    args.extend(rule[2..].iter().map(String::as_str));
    run(method, prog, &args, None)
}

/// Connections locked by this process.
#[derive(Debug)]
pub struct Lock {
    method: Method,
    table: String,
    /// iptables rules inserted so far (program, rule), to delete.
    ipt_done: Vec<(&'static str, Vec<String>)>,
    nft_made: bool,
    armed: bool,
}

impl Lock {
    /// Lock `conns` (no rule at all when there are none or with `skip`).
    pub fn take(method: Method, run_id: &str, conns: &[Conn]) -> Result<Lock, LockError> {
        let mut l = Lock {
            method,
            table: nft_table(run_id),
            ipt_done: Vec::new(),
            nft_made: false,
            armed: true,
        };
        if conns.is_empty() {
            return Ok(l);
        }
        match method {
            Method::Skip => {}
            Method::Nftables => {
                // One transaction: the whole table or nothing.
                run(method, "nft", &["-f", "-"], Some(&nft_lock_script(&l.table, conns)))?;
                l.nft_made = true;
            }
            Method::Iptables => {
                for c in conns {
                    for (prog, rule) in ipt_rules(c) {
                        ipt(method, prog, "-I", &rule)?;
                        l.ipt_done.push((prog, rule));
                    }
                }
            }
        }
        Ok(l)
    }

    /// The rules stay after this process (the dump succeeded and the tree
    /// is gone: the restore unlocks).
    pub fn keep(mut self) {
        self.armed = false;
    }

    /// Remove the rules now.
    pub fn release(mut self) -> Result<(), LockError> {
        self.armed = false;
        self.remove()
    }

    fn remove(&mut self) -> Result<(), LockError> {
        let mut first = None;
        if std::mem::take(&mut self.nft_made) {
            if let Err(e) = run(self.method, "nft", &["delete", "table", "inet", &self.table], None) {
                first.get_or_insert(e);
            }
        }
        for (prog, rule) in std::mem::take(&mut self.ipt_done).into_iter().rev() {
            if let Err(e) = ipt(self.method, prog, "-D", &rule) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.remove() {
                eprintln!("cryo: {e}");
            }
        }
    }
}

/// At restore: remove what a dump left for `conns` (with the method and
/// run id of its inventory.img). Everything is tried; the first error is returned.
pub fn unlock(method: Method, run_id: &str, conns: &[Conn]) -> Result<(), LockError> {
    if conns.is_empty() {
        return Ok(());
    }
    match method {
        Method::Skip => Ok(()),
        Method::Nftables => {
            let table = nft_table(run_id);
            // A missing table is no error here (a CRIU dump always makes
            // one; a dump without connections to lock makes none).
            match run(method, "nft", &["list", "table", "inet", &table], None) {
                Ok(()) => run(method, "nft", &["delete", "table", "inet", &table], None),
                Err(_) => Ok(()),
            }
        }
        Method::Iptables => {
            // Only the rules that are there (-C): a set restored in another
            // network namespace than its dump's finds none.
            let mut first = None;
            for c in conns {
                for (prog, rule) in ipt_rules(c) {
                    if ipt(method, prog, "-C", &rule).is_ok() {
                        if let Err(e) = ipt(method, prog, "-D", &rule) {
                            first.get_or_insert(e);
                        }
                    }
                }
            }
            first.map_or(Ok(()), Err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tcp::InetAddr;

    fn conn() -> Conn {
        let v4 = |a: [u8; 4], port| InetAddr {
            family: libc::AF_INET,
            addr: [u32::from_ne_bytes(a), 0, 0, 0],
            port,
        };
        Conn {
            local: v4([10, 1, 0, 1], 5000),
            peer: v4([10, 1, 0, 2], 41000),
        }
    }

    #[test]
    fn the_table_is_named_as_criu_cuts_it() {
        let id = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        assert_eq!(nft_table(id), "CRIU-0a1b2c3d-4e5f-6071-82");
        assert_eq!(("inet ".len() + nft_table(id).len()), 31);
    }

    #[test]
    fn both_directions_are_in_the_set_and_rules_read_as_criu_writes_them() {
        let s = nft_lock_script("CRIU-x", &[conn()]);
        assert!(s.contains("meta mark 0xC114 accept"), "{s}");
        assert!(s.contains("conns4 { 10.1.0.2 . 41000 . 10.1.0.1 . 5000 }"), "{s}");
        assert!(s.contains("conns4 { 10.1.0.1 . 5000 . 10.1.0.2 . 41000 }"), "{s}");
        let r = ipt_rules(&conn());
        assert_eq!(
            r[0].1.join(" "),
            "-t filter INPUT --protocol tcp -m mark ! --mark 0xC114 --source 10.1.0.2 --sport 41000 \
             --destination 10.1.0.1 --dport 5000 -j DROP"
        );
        assert!(r[1]
            .1
            .join(" ")
            .contains("OUTPUT --protocol tcp -m mark ! --mark 0xC114 --source 10.1.0.1"));
        assert_eq!(Method::from_inventory(None), Some(Method::Iptables));
        assert_eq!(Method::Nftables as u32, 1);
    }
}
