/* fdstate DIR MODE: sets up the state of one class of fds, writes
 * DIR/fdstate.ready, and on each SIGUSR1 checks that state and writes
 * DIR/fdstate.verify: "ok" or "bad: reason". Modes:
 *  pipes: pipe A grown to 1 MiB with 200000 pattern bytes queued, its write
 *    end O_NONBLOCK (a dup shares it), its read end also reopened through
 *    /proc with O_NONBLOCK on the reopened description only; pipe B shrunk
 *    to one page, empty; pipe C empty at the default size. The check reads
 *    the data back (and puts it back for the next round).
 *  memfd: memfd M ("fdstate-m") chmod 0642 holding 9000 pattern bytes, read
 *    position 1234, O_APPEND; memfd S sealed F_SEAL_WRITE with "sealed";
 *    memfd X holding "#!/bin/true", mapped MAP_SHARED, which a child
 *    execveat()s (it must exit 0, not fail with ETXTBSY).
 *  flock: an exclusive flock on DIR/fdstate-lock taken, then the fd handed
 *    to a forked child and closed by the parent; the check finds the file
 *    still locked (and the child the holder, through /proc/CHILD/fdinfo).
 *  fown: a pipe whose read end is O_ASYNC, owned by this process with
 *    F_SETSIG SIGRTMIN+2; the check writes a byte and waits for that signal
 *    (with si_fd set), and compares F_GETOWN, F_GETSIG.
 *  lease: a read lease on DIR/fdstate-rd and a write lease on DIR/fdstate-wr
 *    (fds 10, 11), no lease on DIR/fdstate-no (fd 12).
 *  breaking: a write lease taken through a read-only fd on DIR/fdstate-br
 *    (fd 10) that an O_WRONLY | O_NONBLOCK open has started to break (SIGIO
 *    ignored): CRIU's image cannot tell it from a read lease.
 *  lease-deleted: a write lease on DIR/fdstate-ld (fd 10, O_RDWR), deleted
 *    (SIGIO ignored; the check finds the lease unbroken).
 *  fdt: a child made with clone(CLONE_FILES) shares the fd table, and so
 *    does its own child (clone(CLONE_FILES) again); both work in DIR/fdt-sub
 *    (their own cwd). DIR/fdstate-fdt is at fd 10; fds 11/12, 13/14 are the
 *    request pipes of the child and the grandchild, 15/16 their reply pipe.
 *    The check asks each to open DIR/fdt-sub/mark at fd 20 (21), reads it
 *    in the parent, closes it there and asks the other side whether it is
 *    gone; kcmp(KCMP_FILES) shows one table for the three.
 *  pidfd: pidfds of itself (fd 20, O_NONBLOCK), of a live child (fd 21)
 *    and two of a dead, reaped child (fds 22, 23); the check signals
 *    itself and the child through them (signal 0), finds the child's pid
 *    in fd 21's fdinfo, Pid: -1 in 22's, 22 and 23 on one inode and 21 on
 *    another, and O_NONBLOCK only on fd 20.
 *  pidfd-outside: a pidfd of its parent (fd 20).
 *  pidfd-shared: a pidfd of itself (fd 20) that a forked child inherits.
 *  fanotify: a fanotify group (fd 30, non-blocking) with an inode mark on
 *    DIR/fdstate-fan (FAN_OPEN | FAN_MODIFY), a mount mark on DIR's mount
 *    (FAN_CLOSE_WRITE) and an ignore mark surviving modify on it; the check
 *    finds the same fanotify lines in its fdinfo as before the dump and the
 *    events of an open+write of DIR/fdstate-fan in the queue.
 *  epoll: an epoll fd watching a pipe's read end added under a dup (fd
 *    700, data 0xabc, then closed: the item lives on under the original
 *    fd), and an eventfd under its own number (data 0xdef); the check makes
 *    both ready and expects exactly those two events.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pattern.h"
#include "usr1.h"

static const char *dir, *mode;
static char bad[512];
#define BAD(...) (snprintf(bad, sizeof(bad), __VA_ARGS__), -1)

/* ---- pipes ---- */
#define A_BYTES 200000
static int a[2], a_dup, a_rop, b[2], c[2];

static int setup_pipes(void)
{
	if (pipe(a) || pipe(b) || pipe(c)) return -1;
	if (fcntl(a[1], F_SETPIPE_SZ, 1 << 20) < 0) return -1;
	if (fcntl(b[1], F_SETPIPE_SZ, 4096) < 0) return -1;
	fcntl(a[1], F_SETFL, fcntl(a[1], F_GETFL) | O_NONBLOCK);
	a_dup = dup(a[1]);
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", a[0]);
	a_rop = open(p, O_RDONLY);
	if (a_rop < 0) return -1;
	fcntl(a_rop, F_SETFL, fcntl(a_rop, F_GETFL) | O_NONBLOCK);
	static unsigned char buf[A_BYTES];
	fill(buf, sizeof(buf), 31);
	if (write(a[1], buf, sizeof(buf)) != sizeof(buf)) return -1;
	return 0;
}

static int check_pipes(void)
{
	if (fcntl(a[1], F_GETPIPE_SZ) != 1 << 20) return BAD("pipe A size %d", fcntl(a[1], F_GETPIPE_SZ));
	if (fcntl(b[1], F_GETPIPE_SZ) != 4096) return BAD("pipe B size %d", fcntl(b[1], F_GETPIPE_SZ));
	if (fcntl(c[1], F_GETPIPE_SZ) != 65536) return BAD("pipe C size %d", fcntl(c[1], F_GETPIPE_SZ));
	if (!(fcntl(a[1], F_GETFL) & O_NONBLOCK) || !(fcntl(a_dup, F_GETFL) & O_NONBLOCK))
		return BAD("write end lost O_NONBLOCK");
	if (fcntl(a[0], F_GETFL) & O_NONBLOCK) return BAD("O_NONBLOCK appeared on the read end");
	if (!(fcntl(a_rop, F_GETFL) & O_NONBLOCK)) return BAD("reopened read end lost O_NONBLOCK");
	if (fcntl(a[0], F_GETFL) & 0100000) return BAD("O_LARGEFILE appeared on the read end");
	int q = 0;
	if (ioctl(b[0], FIONREAD, &q) || q) return BAD("pipe B holds %d bytes", q);
	static unsigned char buf[A_BYTES];
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t n = read(a_rop, buf + got, sizeof(buf) - got);
		if (n <= 0) return BAD("pipe A: read %zd after %zu bytes (errno %d)", n, got, errno);
		got += n;
	}
	if (check(buf, sizeof(buf), 31)) return BAD("pipe A data differs");
	if (read(a_rop, buf, 1) != -1 || errno != EAGAIN) return BAD("pipe A holds more");
	if (write(a[1], buf, sizeof(buf)) != sizeof(buf)) return BAD("pipe A: refill");
	return 0;
}

/* ---- memfd ---- */
#define M_BYTES 9000
static int mfd, sfd, xfd;
static char *xmap;

static int setup_memfd(void)
{
	static unsigned char buf[M_BYTES];
	mfd = memfd_create("fdstate-m", 0);
	sfd = memfd_create("fdstate-s", MFD_ALLOW_SEALING);
	xfd = memfd_create("fdstate-x", 0);
	if (mfd < 0 || sfd < 0 || xfd < 0) return -1;
	fill(buf, sizeof(buf), 44);
	if (write(mfd, buf, sizeof(buf)) != sizeof(buf)) return -1;
	if (fchmod(mfd, 0642) || lseek(mfd, 1234, SEEK_SET) != 1234) return -1;
	fcntl(mfd, F_SETFL, O_APPEND);
	if (write(sfd, "sealed", 6) != 6 || fcntl(sfd, F_ADD_SEALS, F_SEAL_WRITE)) return -1;
	if (write(xfd, "#!/bin/true\n", 12) != 12) return -1;
	xmap = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, xfd, 0);
	return xmap == MAP_FAILED ? -1 : 0;
}

static int exec_x(void)
{
	pid_t k = fork();
	if (k == 0) {
		char *argv[] = { "true", NULL }, *envp[] = { NULL };
		syscall(SYS_execveat, xfd, "", argv, envp, AT_EMPTY_PATH);
		_exit(100 + errno);
	}
	int st = -1;
	waitpid(k, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int check_memfd(void)
{
	struct stat st;
	static unsigned char buf[M_BYTES];
	if (fstat(mfd, &st) || (st.st_mode & 07777) != 0642) return BAD("memfd mode %o", st.st_mode);
	if (st.st_size != M_BYTES) return BAD("memfd size %ld", (long)st.st_size);
	if (lseek(mfd, 0, SEEK_CUR) != 1234) return BAD("memfd position %ld", (long)lseek(mfd, 0, SEEK_CUR));
	if (!(fcntl(mfd, F_GETFL) & O_APPEND)) return BAD("memfd lost O_APPEND");
	if (pread(mfd, buf, sizeof(buf), 0) != sizeof(buf) || check(buf, sizeof(buf), 44))
		return BAD("memfd data differs");
	if (fcntl(sfd, F_GET_SEALS) != F_SEAL_WRITE) return BAD("seals %#x", fcntl(sfd, F_GET_SEALS));
	char s[8] = { 0 };
	if (pread(sfd, s, 6, 0) != 6 || strcmp(s, "sealed")) return BAD("sealed memfd holds %s", s);
	if (pwrite(sfd, "x", 1, 0) != -1 || errno != EPERM) return BAD("a write-sealed memfd took a write");
	if (memcmp(xmap, "#!/bin/true\n", 12)) return BAD("mapping of memfd X differs");
	int rc = exec_x();
	if (rc) return BAD("execveat of the memfd: exit %d (100+errno)", rc);
	return 0;
}

/* ---- flock ---- */
static pid_t holder;
static char lockpath[600];

static int setup_flock(void)
{
	snprintf(lockpath, sizeof(lockpath), "%s/fdstate-lock", dir);
	int fd = open(lockpath, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || flock(fd, LOCK_EX)) return -1;
	if (dup2(fd, 9) != 9) return -1;
	close(fd);
	holder = fork();
	if (holder == 0) {
		for (;;) pause();
	}
	close(9);
	return holder < 0 ? -1 : 0;
}

static int check_flock(void)
{
	int fd = open(lockpath, O_RDWR);
	if (fd < 0) return BAD("open %s", lockpath);
	int r = flock(fd, LOCK_EX | LOCK_NB);
	int e = errno;
	close(fd);
	if (r == 0) return BAD("the flock is gone");
	if (e != EWOULDBLOCK) return BAD("flock: errno %d", e);
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%d/fdinfo/9", holder);
	FILE *f = fopen(p, "r");
	if (!f) return BAD("no fd 9 in the child");
	int found = 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "lock:", 5) && strstr(line, "FLOCK") && strstr(line, "WRITE")) found++;
	fclose(f);
	if (found != 1) return BAD("child fd 9 lists %d flocks", found);
	return 0;
}

/* ---- fown ---- */
static int f[2];
static volatile sig_atomic_t got_sig, got_fd;

static void on_rt(int s, siginfo_t *si, void *u)
{
	(void)s; (void)u;
	got_sig++;
	got_fd = si->si_fd;
}

static int setup_fown(void)
{
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN + 2, &sa, NULL);
	if (pipe(f)) return -1;
	if (fcntl(f[0], F_SETOWN, getpid()) || fcntl(f[0], F_SETSIG, SIGRTMIN + 2)) return -1;
	if (fcntl(f[0], F_SETFL, fcntl(f[0], F_GETFL) | O_ASYNC)) return -1;
	return 0;
}

static int check_fown(void)
{
	if (fcntl(f[0], F_GETOWN) != getpid()) return BAD("owner %d", fcntl(f[0], F_GETOWN));
	if (fcntl(f[0], F_GETSIG) != SIGRTMIN + 2) return BAD("signal %d", fcntl(f[0], F_GETSIG));
	if (!(fcntl(f[0], F_GETFL) & O_ASYNC)) return BAD("O_ASYNC lost");
	got_sig = 0;
	got_fd = -1;
	char c = 'x';
	if (write(f[1], &c, 1) != 1) return BAD("write");
	for (int i = 0; i < 200 && !got_sig; i++) usleep(10000);
	if (read(f[0], &c, 1) != 1) return BAD("read");
	if (!got_sig) return BAD("no SIGIO signal for the O_ASYNC pipe");
	if (got_fd != f[0]) return BAD("si_fd %d, not %d", (int)got_fd, f[0]);
	return 0;
}

/* ---- lease ---- */
/* fd moved to number n (the original closed). */
static int at(int fd, int n)
{
	if (fd < 0 || dup2(fd, n) != n) return -1;
	close(fd);
	return n;
}

static int setup_lease(void)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/fdstate-rd", dir);
	if (at(open(p, O_RDONLY | O_CREAT, 0644), 10) != 10) return -1;
	snprintf(p, sizeof(p), "%s/fdstate-wr", dir);
	if (at(open(p, O_WRONLY | O_CREAT, 0644), 11) != 11) return -1;
	snprintf(p, sizeof(p), "%s/fdstate-no", dir);
	if (at(open(p, O_RDONLY | O_CREAT, 0644), 12) != 12) return -1;
	if (fcntl(10, F_SETLEASE, F_RDLCK) || fcntl(11, F_SETLEASE, F_WRLCK)) return -1;
	return 0;
}

static int check_lease(void)
{
	if (fcntl(10, F_GETLEASE) != F_RDLCK) return BAD("read lease: %d", fcntl(10, F_GETLEASE));
	if (fcntl(11, F_GETLEASE) != F_WRLCK) return BAD("write lease: %d", fcntl(11, F_GETLEASE));
	if (fcntl(12, F_GETLEASE) != F_UNLCK) return BAD("a lease appeared: %d", fcntl(12, F_GETLEASE));
	return 0;
}

/* ---- epoll ---- */
#include <sys/epoll.h>
#include <sys/eventfd.h>
static int ep, ep_p[2], ep_e;

static int setup_epoll(void)
{
	ep = epoll_create1(0);
	ep_e = eventfd(0, EFD_NONBLOCK);
	if (ep < 0 || ep_e < 0 || pipe(ep_p)) return -1;
	if (dup2(ep_p[0], 700) != 700) return -1;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xabc };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 700, &ev)) return -1;
	close(700);
	ev.data.u64 = 0xdef;
	return epoll_ctl(ep, EPOLL_CTL_ADD, ep_e, &ev);
}

static int check_epoll(void)
{
	struct epoll_event evs[4];
	if (epoll_wait(ep, evs, 4, 0) != 0) return BAD("events before anything is ready");
	char c = 'x';
	uint64_t one = 1;
	if (write(ep_p[1], &c, 1) != 1 || write(ep_e, &one, 8) != 8) return BAD("write");
	int n = epoll_wait(ep, evs, 4, 1000);
	if (n != 2) return BAD("%d events, not 2", n);
	int seen = 0;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == 0xabc) seen |= 1;
		else if (evs[i].data.u64 == 0xdef) seen |= 2;
		else return BAD("event with data %#llx", (unsigned long long)evs[i].data.u64);
	}
	if (seen != 3) return BAD("events %d", seen);
	if (read(ep_p[0], &c, 1) != 1 || read(ep_e, &one, 8) != 8) return BAD("read back");
	return 0;
}

/* ---- a write lease on a read-only fd being broken, shared fd table (both refused at dump) ---- */
#include <sched.h>
static int setup_breaking(void)
{
	char p[600];
	signal(SIGIO, SIG_IGN);
	snprintf(p, sizeof(p), "%s/fdstate-br", dir);
	if (at(open(p, O_RDONLY | O_CREAT, 0644), 10) != 10) return -1;
	if (fcntl(10, F_SETLEASE, F_WRLCK)) return -1;
	int w = open(p, O_WRONLY | O_NONBLOCK);
	if (w >= 0 || errno != EWOULDBLOCK) return -1;
	errno = 0;
	return 0;
}

static int setup_lease_deleted(void)
{
	char p[600];
	signal(SIGIO, SIG_IGN);
	snprintf(p, sizeof(p), "%s/fdstate-ld", dir);
	if (at(open(p, O_RDWR | O_CREAT, 0644), 10) != 10 || unlink(p)) return -1;
	return fcntl(10, F_SETLEASE, F_WRLCK);
}

static char fdt_stack[65536], fdt_stack2[65536];
static pid_t fdt_kid, fdt_grandkid;

/* Serve requests on pipe fd req: 'o' opens mark at fd n, 'c' answers
 * whether fd n is closed. */
static void fdt_serve(int req, int n)
{
	for (;;) {
		char c, r = 'n';
		if (read(req, &c, 1) != 1) continue;
		if (c == 'o') {
			int fd = open("mark", O_RDONLY);
			r = (fd >= 0 && (fd == n || dup2(fd, n) == n)) ? 'y' : 'n';
			if (fd >= 0 && fd != n) close(fd);
		} else if (c == 'c') {
			r = (fcntl(n, F_GETFD) < 0 && errno == EBADF) ? 'y' : 'n';
		}
		if (write(16, &r, 1) != 1) _exit(1);
	}
}

static int fdt_grandchild(void *a)
{
	(void)a;
	fdt_serve(13, 21);
	return 0;
}

static int fdt_child(void *a)
{
	(void)a;
	if (chdir("fdt-sub")) _exit(1);
	pid_t g = clone(fdt_grandchild, fdt_stack2 + sizeof(fdt_stack2), CLONE_FILES | SIGCHLD, NULL);
	if (g < 0 || write(16, &g, sizeof(g)) != sizeof(g)) _exit(1);
	fdt_serve(11, 20);
	return 0;
}

static int setup_fdt(void)
{
	char p[512];
	int pp[2];
	snprintf(p, sizeof(p), "%s/fdstate-fdt", dir);
	if (at(open(p, O_RDWR | O_CREAT, 0644), 10) != 10) return -1;
	snprintf(p, sizeof(p), "%s/fdt-sub", dir);
	if (mkdir(p, 0755)) return -1;
	snprintf(p, sizeof(p), "%s/fdt-sub/mark", dir);
	int m = open(p, O_WRONLY | O_CREAT, 0644);
	if (m < 0 || write(m, "sub-mark", 8) != 8) return -1;
	close(m);
	for (int i = 0; i < 3; i++) {
		if (pipe(pp) || at(pp[0], 11 + 2 * i) < 0 || at(pp[1], 12 + 2 * i) < 0) return -1;
	}
	if (chdir(dir)) return -1;
	fdt_kid = clone(fdt_child, fdt_stack + sizeof(fdt_stack), CLONE_FILES | SIGCHLD, NULL);
	if (fdt_kid < 0 || read(15, &fdt_grandkid, sizeof(pid_t)) != sizeof(pid_t)) return -1;
	return 0;
}

/* fdt-sibling: a forked child clones (CLONE_FILES | CLONE_PARENT) a
 * sibling that shares its fd table but not the parent's. */
static int fdt_sib(void *a)
{
	(void)a;
	for (;;) pause();
	return 0;
}

static int setup_fdt_sibling(void)
{
	pid_t k = fork();
	if (k < 0) return -1;
	if (k == 0) {
		if (clone(fdt_sib, fdt_stack + sizeof(fdt_stack), CLONE_FILES | CLONE_PARENT | SIGCHLD, NULL) < 0) _exit(1);
		for (;;) pause();
	}
	while (access("fdt-wait-never", F_OK) && kill(k, 0) == 0) {
		/* Wait until the sibling exists: the parent then has two children. */
		char p[64], line[256];
		snprintf(p, sizeof(p), "/proc/%d/task/%d/children", getpid(), getpid());
		FILE *f = fopen(p, "r");
		int n = 0;
		if (f) {
			if (fgets(line, sizeof(line), f))
				for (char *c = line; *c; c++) n += *c == ' ';
			fclose(f);
		}
		if (n >= 2) break;
		usleep(10000);
	}
	return 0;
}

static int fdt_ask(int req, char c)
{
	char r = 0;
	if (write(req + 1, &c, 1) != 1 || read(15, &r, 1) != 1) return -1;
	return r == 'y' ? 0 : -1;
}

static int check_fdt(void)
{
	pid_t me = getpid();
	if (syscall(SYS_kcmp, me, fdt_kid, 2 /* KCMP_FILES */, 0, 0) != 0)
		return BAD("child %d has another fd table", fdt_kid);
	if (syscall(SYS_kcmp, me, fdt_grandkid, 2, 0, 0) != 0)
		return BAD("grandchild %d has another fd table", fdt_grandkid);
	if (syscall(SYS_kcmp, me, fdt_kid, 3 /* KCMP_FS */, 0, 0) == 0)
		return BAD("child %d shares the fs (cwd) struct", fdt_kid);
	struct stat st;
	if (fstat(10, &st) || !S_ISREG(st.st_mode)) return BAD("fd 10");
	char buf[16];
	for (int i = 0; i < 2; i++) {
		int req = i ? 13 : 11, n = 20 + i;
		if (fcntl(n, F_GETFD) >= 0) return BAD("fd %d open before the request", n);
		if (fdt_ask(req, 'o')) return BAD("%s could not open mark", i ? "grandchild" : "child");
		memset(buf, 0, sizeof(buf));
		if (pread(n, buf, sizeof(buf) - 1, 0) != 8 || strcmp(buf, "sub-mark"))
			return BAD("fd %d opened by the %s: '%s'", n, i ? "grandchild" : "child", buf);
		close(n);
		if (fdt_ask(req, 'c')) return BAD("fd %d closed here is open in the %s", n, i ? "grandchild" : "child");
	}
	return 0;
}

/* ---- pidfd ---- */
static pid_t pf_child;

static int pidfd_pid(int fd)
{
	char p[64], line[128];
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(p, "r");
	int pid = -100;
	if (!f) return pid;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid:\t%d", &pid) == 1) break;
	fclose(f);
	return pid;
}

static int setup_pidfd(void)
{
	/* (The live child inherits none of them: pidfds shared by two
	 * processes are refused at restore.) */
	pf_child = fork();
	if (pf_child == 0) {
		for (;;) pause();
	}
	if (at(syscall(SYS_pidfd_open, getpid(), O_NONBLOCK), 20) != 20) return -1;
	if (at(syscall(SYS_pidfd_open, pf_child, 0), 21) != 21) return -1;
	pid_t d = fork();
	if (d == 0) {
		pause();
		_exit(0);
	}
	if (at(syscall(SYS_pidfd_open, d, 0), 22) != 22 || at(syscall(SYS_pidfd_open, d, 0), 23) != 23) return -1;
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);
	return 0;
}

static int check_pidfd(void)
{
	struct stat s21, s22, s23;
	if (syscall(SYS_pidfd_send_signal, 20, 0, NULL, 0)) return BAD("signal 0 to itself: errno %d", errno);
	if (syscall(SYS_pidfd_send_signal, 21, 0, NULL, 0)) return BAD("signal 0 to the child: errno %d", errno);
	if (pidfd_pid(20) != getpid()) return BAD("fd 20 names pid %d", pidfd_pid(20));
	if (pidfd_pid(21) != pf_child) return BAD("fd 21 names pid %d, not %d", pidfd_pid(21), pf_child);
	if (pidfd_pid(22) != -1 || pidfd_pid(23) != -1) return BAD("dead pidfds name %d, %d", pidfd_pid(22), pidfd_pid(23));
	if (syscall(SYS_pidfd_send_signal, 22, 0, NULL, 0) == 0 || errno != ESRCH) return BAD("the dead process took a signal");
	if (fstat(21, &s21) || fstat(22, &s22) || fstat(23, &s23)) return BAD("fstat");
	if (s22.st_ino != s23.st_ino) return BAD("pidfds of one dead process on two inodes");
	if (s21.st_ino == s22.st_ino) return BAD("pidfds of two processes on one inode");
	if (!(fcntl(20, F_GETFL) & O_NONBLOCK) || (fcntl(21, F_GETFL) & O_NONBLOCK)) return BAD("O_NONBLOCK");
	return 0;
}

/* pidfd-shared: a pidfd of itself (fd 20) inherited by a child. */
static int setup_pidfd_shared(void)
{
	if (at(syscall(SYS_pidfd_open, getpid(), 0), 20) != 20) return -1;
	pid_t k = fork();
	if (k == 0) {
		for (;;) pause();
	}
	return k < 0 ? -1 : 0;
}

/* pidfd-outside: a pidfd of our parent (outside the dumped tree) at fd 20. */
static int setup_pidfd_outside(void)
{
	return at(syscall(SYS_pidfd_open, getppid(), 0), 20) == 20 ? 0 : -1;
}

/* ---- fanotify ---- */
#include <sys/fanotify.h>
#include "status.h"
static char fan_lines[4096], fan_path[600];

static void fan_read_lines(char *out, size_t n)
{
	char line[512];
	FILE *f = fopen("/proc/self/fdinfo/30", "r");
	out[0] = 0;
	if (!f) return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "fanotify", 8) && strlen(out) + strlen(line) < n) strcat(out, line);
	fclose(f);
}

static int setup_fanotify(void)
{
	snprintf(fan_path, sizeof(fan_path), "%s/fdstate-fan", dir);
	close(open(fan_path, O_CREAT | O_WRONLY, 0644));
	if (at(fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY), 30) != 30) return -1;
	if (fanotify_mark(30, FAN_MARK_ADD, FAN_OPEN | FAN_MODIFY, AT_FDCWD, fan_path)) return -1;
	if (fanotify_mark(30, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, dir)) return -1;
	if (fanotify_mark(30, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
			  FAN_ACCESS, AT_FDCWD, dir)) return -1;
	fan_read_lines(fan_lines, sizeof(fan_lines));
	return 0;
}

static int check_fanotify(void)
{
	static char now[4096], buf[8192];
	fan_read_lines(now, sizeof(now));
	if (strcmp(now, fan_lines)) return BAD("fanotify marks differ: %s vs %s", now, fan_lines);
	while (read(30, buf, sizeof(buf)) > 0) ; /* drain */
	int fd = open(fan_path, O_WRONLY);
	if (fd < 0 || write(fd, "x", 1) != 1) return BAD("open/write %s", fan_path);
	close(fd);
	unsigned long seen = 0;
	ssize_t n = read(30, buf, sizeof(buf));
	if (n <= 0) return BAD("no fanotify event (errno %d)", errno);
	for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
		seen |= m->mask;
		if (m->fd >= 0) close(m->fd);
	}
	if ((seen & (FAN_OPEN | FAN_MODIFY | FAN_CLOSE_WRITE)) != (FAN_OPEN | FAN_MODIFY | FAN_CLOSE_WRITE))
		return BAD("fanotify events %#lx", seen);
	return 0;
}

static int check_mode(void)
{
	if (!strcmp(mode, "pipes")) return check_pipes();
	if (!strcmp(mode, "memfd")) return check_memfd();
	if (!strcmp(mode, "flock")) return check_flock();
	if (!strcmp(mode, "fown")) return check_fown();
	if (!strcmp(mode, "lease")) return check_lease();
	if (!strcmp(mode, "epoll")) return check_epoll();
	if (!strcmp(mode, "pidfd")) return check_pidfd();
	if (!strcmp(mode, "fanotify")) return check_fanotify();
	if (!strcmp(mode, "pidfd-outside") || !strcmp(mode, "pidfd-shared")) return 0;
	if (!strcmp(mode, "breaking")) return fcntl(10, F_GETLEASE) == F_UNLCK ? 0 : BAD("lease %d", fcntl(10, F_GETLEASE));
	if (!strcmp(mode, "lease-deleted")) return fcntl(10, F_GETLEASE) == F_WRLCK ? 0 : BAD("lease %d", fcntl(10, F_GETLEASE));
	if (!strcmp(mode, "fdt")) return check_fdt();
	if (!strcmp(mode, "fdt-sibling")) return 0;
	return BAD("mode %s", mode);
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	dir = argv[1];
	mode = argv[2];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	int r = -1;
	if (!strcmp(mode, "pipes")) r = setup_pipes();
	else if (!strcmp(mode, "memfd")) r = setup_memfd();
	else if (!strcmp(mode, "flock")) r = setup_flock();
	else if (!strcmp(mode, "fown")) r = setup_fown();
	else if (!strcmp(mode, "lease")) r = setup_lease();
	else if (!strcmp(mode, "epoll")) r = setup_epoll();
	else if (!strcmp(mode, "pidfd")) r = setup_pidfd();
	else if (!strcmp(mode, "fanotify")) r = setup_fanotify();
	else if (!strcmp(mode, "pidfd-outside")) r = setup_pidfd_outside();
	else if (!strcmp(mode, "pidfd-shared")) r = setup_pidfd_shared();
	else if (!strcmp(mode, "breaking")) r = setup_breaking();
	else if (!strcmp(mode, "lease-deleted")) r = setup_lease_deleted();
	else if (!strcmp(mode, "fdt")) r = setup_fdt();
	else if (!strcmp(mode, "fdt-sibling")) r = setup_fdt_sibling();
	if (r) {
		fprintf(stderr, "setup %s: %s\n", mode, strerror(errno));
		return 3;
	}
	/* The state checks out before the dump too. */
	if (check_mode()) {
		put_status(dir, "fdstate.ready", "");
		fprintf(stderr, "before dump: %s\n", bad);
		return 4;
	}
	char msg[64];
	snprintf(msg, sizeof(msg), "%d\n", getpid());
	put_status(dir, "fdstate.ready", msg);
	for (;;) {
		usr1 = 0;
		wait_usr1();
		char out[600];
		if (check_mode()) snprintf(out, sizeof(out), "bad: %s\n", bad);
		else snprintf(out, sizeof(out), "ok\n");
		put_status(dir, "fdstate.verify", out);
	}
}
