//! Pseudo-terminals for tests: a pty pair made with openpty() and a bounded
//! reader of what a program writes on it.
#![allow(dead_code)]

/// A pty pair made by the test: (master, slave path, slave fd).
pub fn open_pty(rows: u16, cols: u16) -> (std::fs::File, String, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (-1, -1);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds; name and termios may be null.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [m, s] {
        // SAFETY: plain fcntl on fds we own (never leak them into children).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{s}")).unwrap();
    // SAFETY: both fds were just opened and are owned here only.
    let master = unsafe { std::fs::File::from_raw_fd(m) };
    // SAFETY: as above.
    let slave = unsafe { std::fs::File::from_raw_fd(s) };
    (master, path.display().to_string(), slave)
}

/// Read from a pty master until the output contains `needle` (bounded).
pub fn read_until(m: &mut std::fs::File, needle: &str) -> String {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut out = String::new();
    for _ in 0..500 {
        let mut p = libc::pollfd {
            fd: m.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 20) } > 0 {
            let mut b = [0u8; 512];
            match m.read(&mut b) {
                Ok(n) => out.push_str(&String::from_utf8_lossy(&b[..n])),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        if out.contains(needle) {
            return out;
        }
    }
    panic!("the terminal never showed {needle:?}; it showed {out:?}");
}
