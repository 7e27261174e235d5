//! Engine integration tests: real programs (tests/progs/*.c) frozen, injected,
//! dumped and checked.

mod common;

use common::*;
use cryo_engine::parasite::{find_code_addr, Parasite};
use cryo_engine::ptrace;

/// Inject the parasite, ping it, remove it: registers, FPU state, signal mask
/// and maps are identical before and after, and the program keeps running.
#[test]
fn parasite_injection_leaves_no_trace() {
    let (t, _) = Target::start("spin", &[tmp_dir("inject").join("out").to_str().unwrap()]);
    let out = tmp_root().join("inject/out");
    let maps_before = maps(t.pid);
    let mut s = ptrace::seize(t.pid).unwrap().interrupt().unwrap();
    let regs_before = s.regs().unwrap();
    let xs_before = s.xstate().unwrap();
    let mask_before = s.sigmask().unwrap();
    {
        let code = find_code_addr(t.pid).unwrap();
        let mut p = Parasite::inject(&mut s, code).unwrap();
        assert_eq!(p.ping(41).unwrap(), 42);
        let during = maps(t.pid);
        assert_ne!(
            during, maps_before,
            "the blob should be mapped while it runs"
        );
        let sa = p.sigactions().unwrap();
        assert_ne!(
            sa[libc::SIGUSR1 as usize - 1].handler,
            0,
            "SIGUSR1 handler seen from inside"
        );
        assert_eq!(sa[libc::SIGUSR2 as usize - 1].handler, 0);
        let m = p.misc().unwrap();
        assert!(m.rlimits[libc::RLIMIT_NOFILE as usize][0] > 0);
        p.cure().unwrap();
    }
    let regs_after = s.regs().unwrap();
    assert_eq!(format!("{regs_before:?}"), format!("{regs_after:?}"));
    assert_eq!(xs_before, s.xstate().unwrap());
    assert_eq!(mask_before, s.sigmask().unwrap());
    assert_eq!(maps_before, maps(t.pid));
    s.detach().unwrap();
    // Still running and working: handle SIGUSR1 twice, the counter advances.
    // SAFETY-free std/libc call by pid.
    assert_eq!(unsafe_kill(t.pid, libc::SIGUSR1), 0);
    let a = wait_file(&out, "ok");
    std::fs::remove_file(&out).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(unsafe_kill(t.pid, libc::SIGUSR1), 0);
    let b = wait_file(&out, "ok");
    assert_ne!(a, b, "counter must advance after the injection");
    assert!(t.alive());
}

fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::try_from(sig).unwrap(),
    )
    .map(|_| 0)
    .unwrap_or(-1)
}
