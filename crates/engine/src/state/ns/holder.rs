//! The namespaces a restore cannot make with the first task's clone3: a
//! user namespace (its uid/gid maps are written from outside, by cryo,
//! before anything is made in it) and the namespaces it owns, and a time
//! namespace (its offsets are written before any task enters it).
//!
//! A short-lived **holder** process is cloned with CLONE_NEWUSER and the
//! flags of the tree's own uts, ipc, net and mnt namespaces (the kernel
//! makes the user namespace first and the others owned by it), and there
//! unshares CLONE_NEWTIME. cryo writes
//! the maps and the time offsets, opens every namespace by its
//! /proc/HOLDER/ns file, and ends the holder: from then on the namespaces
//! are held only by those fds (closed on abort: nothing is left behind).
//!
//! With a pid namespace of the tree's own, the first task is forked by an
//! intermediate process of cryo's that entered the user namespace and
//! unshared CLONE_NEWPID (a pid namespace owned by it, whose pid 1 it forks
//! with CLONE_PARENT: cryo stays the parent), so every task is in the user
//! namespace from the start, as with CRIU (restore/task.rs `fork_in_ns`).
//! Without one, the tasks are forked by cryo and by each other outside the
//! user namespace (clone3 set_tid needs CAP_CHECKPOINT_RESTORE over the
//! host's pid namespace), enter the other namespaces with setns(), and each
//! enters the user namespace last, before the restorer applies its
//! credentials (the namespace's ids, as dumped).

use super::{Kind, NsPlan};
use std::fs::File;
use std::os::fd::AsRawFd;

/// The namespaces the holder made, each held by an fd.
#[derive(Debug, Default)]
pub struct Made {
    pub user: Option<File>,
    /// Given to the network and mount builders (state::netns, state::mnt).
    pub net: Option<File>,
    pub mnt: Option<File>,
    /// Entered by the first task (uts, ipc, time).
    pub enter: Vec<(Kind, File)>,
}

/// Whether the tasks enter the tree's user namespace from the start (a pid
/// namespace of the images, made in it: see the module doc).
pub fn user_from_start(plan: &NsPlan) -> bool {
    plan.user.is_some() && plan.ids.contains_key(&Kind::Pid)
}

/// Whether the plan needs a holder.
pub fn needed(plan: &NsPlan) -> bool {
    plan.user.is_some() || plan.time.is_some()
}

struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        let p = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(p, None);
    }
}

/// Make the namespaces of `plan` that need a holder (see the module doc).
pub fn make(plan: &NsPlan) -> Result<Made, String> {
    let user = plan.user.is_some();
    let mut flags = 0u64;
    if user {
        for k in [Kind::User, Kind::Uts, Kind::Ipc, Kind::Net, Kind::Mnt] {
            if plan.has(k) {
                flags |= k.clone_flag();
            }
        }
    }
    let mut unshare = 0;
    if plan.time.is_some() {
        unshare |= libc::CLONE_NEWTIME;
    }
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (ready_r, ready_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    let pid = crate::sys::restore::spawn_ns_holder(
        flags,
        unshare,
        ready_w.as_raw_fd(),
        hold_r.as_raw_fd(),
        [ready_r.as_raw_fd(), hold_w.as_raw_fd()],
    )
    .map_err(|e| format!("clone3 of the namespace holder (flags {flags:#x}): {e}"))?;
    let _reap = Reap(pid);
    drop((ready_w, hold_r));
    let mut b = [0u8; 1];
    let n = nix::unistd::read(&ready_r, &mut b).map_err(|e| format!("namespace holder: {e}"))?;
    if n != 1 {
        return Err("the namespace holder died".into());
    }
    if b[0] != 0 {
        return Err(format!(
            "namespace holder: unshare {unshare:#x}: {}",
            std::io::Error::from_raw_os_error(b[0] as i32)
        ));
    }
    if let Some(u) = &plan.user {
        u.write_maps(pid).map_err(|e| format!("user namespace: {e}"))?;
    }
    if let Some(c) = &plan.time {
        crate::state::timens::write_offsets(pid, &c.offsets_now()).map_err(|e| format!("time namespace: {e}"))?;
    }
    let open = |name: &str| {
        let path = format!("/proc/{pid}/ns/{name}");
        File::open(&path).map_err(|e| format!("{path}: {e}"))
    };
    let mut m = Made::default();
    if user {
        m.user = Some(open("user")?);
        if plan.has(Kind::Net) {
            m.net = Some(open("net")?);
        }
        if plan.has(Kind::Mnt) {
            m.mnt = Some(open("mnt")?);
        }
        for k in [Kind::Uts, Kind::Ipc] {
            if plan.has(k) {
                m.enter.push((k, open(k.name())?));
            }
        }
    }
    if plan.time.is_some() {
        m.enter.push((Kind::Time, open("time_for_children")?));
    }
    drop(hold_w);
    Ok(m)
}
