/* pidfddead DIR: pidfds of dead processes held by two processes.
 * Two children D and E are forked and will die; the root opens pidfds of D
 * (fd 20, then set O_NONBLOCK) and of E (fd 23), forks K, which inherits
 * both (one description each, shared with the root) and opens a pidfd of D
 * of its own (fd 21, a second description); then the root opens another of
 * D (fd 22), kills D and E and reaps them. It writes DIR/pidfddead.ready
 * (its pid and K's). On SIGUSR1 the root checks its fds and writes
 * DIR/pidfddead.verify, K checks its own and writes DIR/pidfddead.child
 * ("ok" or "bad: reason"). Checks (each as before the dump):
 *  - kcmp: the root's fd 20 and K's fd 20 are one description, as are the
 *    two fds 23; K's fd 21 and the root's fd 22 are descriptions of their
 *    own; F_SETFL on the root's fd 20 shows in /proc/K/fdinfo/20;
 *  - D's pidfds (20, 21, 22) are on one inode, E's (23) on another;
 *  - every one says Pid: -1 in fdinfo, O_NONBLOCK only on fd 20;
 *  - poll() finds each readable at once with the same revents as before;
 *    waitid(P_PIDFD) fails the same way (ECHILD), PIDFD_GET_INFO gives the
 *    same exit status (SIGKILL); pidfd_send_signal() fails with ESRCH. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
/* PIDFD_GET_INFO (Linux 6.13; the exit status since 6.15), older headers lack it. */
struct pidfd_info_v0 {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define INFO_EXIT (1u << 3)
#define GET_INFO _IOWR(0xFF, 11, struct pidfd_info_v0)

static const char *dir;
static char bad[512];
#define BAD(...) (snprintf(bad, sizeof(bad), __VA_ARGS__), -1)

static pid_t kid;
/* poll revents, waitid errno and PIDFD_GET_INFO exit status of each fd
 * before the dump (by fd number). */
static int revents0[32], wait_errno0[32], exit0[32];

static int at(int fd, int want)
{
	if (fd < 0) return -1;
	if (fd == want) return fd;
	int r = dup2(fd, want);
	close(fd);
	return r;
}

static int fdinfo_field(pid_t pid, int fd, const char *key, int base, long *out)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%d/fdinfo/%d", pid, fd);
	FILE *f = fopen(p, "r");
	if (!f) return -1;
	int found = -1;
	size_t n = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n)) {
			*out = strtol(line + n, NULL, base);
			found = 0;
			break;
		}
	fclose(f);
	return found;
}

static int revents(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n = poll(&p, 1, 0);
	return n == 1 ? p.revents : -1000 - n;
}

static int wait_errno(int fd)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, fd, &si, WEXITED | WNOHANG) == 0) return 0;
	return errno;
}

/* The exit status PIDFD_GET_INFO reports (D and E were SIGKILLed, as the
 * restore's stand-ins are), or -1000 - errno where the kernel has none. */
static int exit_status(int fd)
{
	struct pidfd_info_v0 i;
	memset(&i, 0, sizeof(i));
	i.mask = INFO_EXIT;
	if (ioctl(fd, GET_INFO, &i)) return -1000 - errno;
	return (i.mask & INFO_EXIT) ? i.exit_code : -999;
}

static void record(const int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		revents0[fds[i]] = revents(fds[i]);
		wait_errno0[fds[i]] = wait_errno(fds[i]);
		exit0[fds[i]] = exit_status(fds[i]);
	}
}

/* The checks of one process on its own fds `fds` (D's pidfds first, E's last). */
static int check_own(const int *fds, int n, int nonblock_fd)
{
	struct stat d, s;
	if (fstat(fds[0], &d)) return BAD("fstat %d: errno %d", fds[0], errno);
	for (int i = 0; i < n; i++) {
		int fd = fds[i];
		long pid = -100, flags = 0;
		if (fdinfo_field(getpid(), fd, "Pid:", 10, &pid) || pid != -1) return BAD("fd %d: Pid: %ld", fd, pid);
		if (fdinfo_field(getpid(), fd, "flags:", 8, &flags)) return BAD("fd %d: no flags in fdinfo", fd);
		if (!!(flags & O_NONBLOCK) != (fd == nonblock_fd)) return BAD("fd %d: flags %lo", fd, flags);
		if (fstat(fd, &s)) return BAD("fstat %d: errno %d", fd, errno);
		if ((i < n - 1) != (s.st_ino == d.st_ino))
			return BAD("fd %d: inode %lu, D's %lu", fd, (unsigned long)s.st_ino, (unsigned long)d.st_ino);
		int r = revents(fd);
		if (!(r & POLLIN) || r != revents0[fd]) return BAD("fd %d: poll revents %#x, before %#x", fd, r, revents0[fd]);
		int w = wait_errno(fd);
		if (w != wait_errno0[fd] || w != ECHILD) return BAD("fd %d: waitid errno %d, before %d", fd, w, wait_errno0[fd]);
		int x = exit_status(fd);
		if (x != exit0[fd]) return BAD("fd %d: exit status %d, before %d", fd, x, exit0[fd]);
		if (syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0 || errno != ESRCH)
			return BAD("fd %d: the dead process took a signal (errno %d)", fd, errno);
	}
	return 0;
}

static int kcmp_file(pid_t a, int fa, pid_t b, int fb)
{
	return syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb);
}

static int check_root(void)
{
	static const int fds[] = {20, 22, 23};
	if (check_own(fds, 3, 20)) return -1;
	pid_t me = getpid();
	if (kcmp_file(me, 20, kid, 20) != 0) return BAD("fd 20 is not one description with K's fd 20");
	if (kcmp_file(me, 23, kid, 23) != 0) return BAD("fd 23 is not one description with K's fd 23");
	if (kcmp_file(me, 22, kid, 21) == 0 || kcmp_file(me, 20, kid, 21) == 0 || kcmp_file(me, 20, me, 22) == 0)
		return BAD("descriptions of their own are shared");
	/* D's pidfd in K (its own description) is on D's inode. */
	struct stat s20, k21;
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/fd/21", kid);
	if (fstat(20, &s20) || stat(p, &k21)) return BAD("stat %s: errno %d", p, errno);
	if (s20.st_ino != k21.st_ino) return BAD("K's fd 21 on inode %lu, D's %lu", (unsigned long)k21.st_ino, (unsigned long)s20.st_ino);
	/* A status flag set through one fd shows through the other. */
	long kf = 0;
	int fl = fcntl(20, F_GETFL);
	if (fl < 0 || fcntl(20, F_SETFL, fl & ~O_NONBLOCK)) return BAD("F_SETFL: errno %d", errno);
	int r = fdinfo_field(kid, 20, "flags:", 8, &kf);
	fcntl(20, F_SETFL, fl);
	if (r || (kf & O_NONBLOCK)) return BAD("K's fd 20 kept O_NONBLOCK cleared here (flags %lo)", kf);
	if (fdinfo_field(kid, 20, "flags:", 8, &kf) || !(kf & O_NONBLOCK)) return BAD("K's fd 20 lacks O_NONBLOCK set here");
	return 0;
}

/* K: opens its own pidfd of D, waits until the root has reaped D and E,
 * records its state, then checks it on each SIGUSR1. */
static void kid_main(pid_t d, int up, int down)
{
	static const int fds[] = {20, 21, 23};
	char c = 'k';
	if (at(syscall(SYS_pidfd_open, d, 0), 21) != 21 || write(up, &c, 1) != 1) _exit(3);
	if (read(down, &c, 1) != 1) _exit(3);
	record(fds, 3);
	if (write(up, &c, 1) != 1) _exit(3);
	close(up);
	close(down);
	for (;;) {
		usr1 = 0;
		wait_usr1();
		char out[600];
		if (check_own(fds, 3, 20)) snprintf(out, sizeof(out), "bad: %s\n", bad);
		else snprintf(out, sizeof(out), "ok\n");
		put_status(dir, "pidfddead.child", out);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	dir = argv[1];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	int up[2], down[2];
	if (pipe(up) || pipe(down)) return 3;
	pid_t d = fork(), e;
	if (d == 0) for (;;) pause();
	e = fork();
	if (e == 0) for (;;) pause();
	if (d < 0 || e < 0) return 3;
	if (at(syscall(SYS_pidfd_open, d, 0), 20) != 20 || at(syscall(SYS_pidfd_open, e, 0), 23) != 23) return 3;
	if (fcntl(20, F_SETFL, fcntl(20, F_GETFL) | O_NONBLOCK)) return 3;
	kid = fork();
	if (kid == 0) {
		close(up[0]);
		close(down[1]);
		kid_main(d, up[1], down[0]);
	}
	close(up[1]);
	close(down[0]);
	char c = 'd';
	if (kid < 0 || read(up[0], &c, 1) != 1) return 3;
	if (at(syscall(SYS_pidfd_open, d, 0), 22) != 22) return 3;
	int st;
	kill(d, SIGKILL);
	kill(e, SIGKILL);
	if (waitpid(d, &st, 0) != d || waitpid(e, &st, 0) != e) return 3;
	static const int fds[] = {20, 22, 23};
	record(fds, 3);
	/* K records its state now that D and E are gone. */
	if (write(down[1], &c, 1) != 1 || read(up[0], &c, 1) != 1) return 3;
	close(up[0]);
	close(down[1]);
	if (check_root()) {
		fprintf(stderr, "before dump: %s\n", bad);
		return 4;
	}
	char msg[64];
	snprintf(msg, sizeof(msg), "%d %d\n", getpid(), kid);
	put_status(dir, "pidfddead.ready", msg);
	for (;;) {
		usr1 = 0;
		wait_usr1();
		char out[600];
		if (check_root()) snprintf(out, sizeof(out), "bad: %s\n", bad);
		else snprintf(out, sizeof(out), "ok\n");
		put_status(dir, "pidfddead.verify", out);
	}
}
