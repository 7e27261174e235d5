/* leasebreak DIR: leases being broken when the dump comes, and a task waiting for one of them.
 *  fds 10 and 13: DIR/lb-rd opened twice O_RDONLY, each with a read lease, that one non-blocking O_WRONLY
 *    open started to break (to no lease);
 *  fd 11: DIR/lb-dn open O_RDONLY with a write lease that a non-blocking O_RDONLY open started to break
 *    (down to a read lease);
 *  fd 12: DIR/lb-wr open O_RDWR with a write lease that a child's blocking O_RDONLY open is breaking (the
 *    child waits in open() and writes 'o' to a pipe once it returns).
 * Every break signals the holder with F_SETSIG's SIGRTMIN+1; the handler records si_fd. Ready
 * (DIR/leasebreak.ready holds the pid) once the four signals are in.
 * On each SIGUSR1 it checks that the leases are still being broken (fdinfo "BREAKING", F_GETLEASE
 * answering the target: UNLCK, RDLCK, RDLCK, UNLCK), that no other signal came, that the conflicting opens still
 * fail with EWOULDBLOCK while a read of lb-rd (a read lease) does not, and that the child still waits; then
 * it finishes every break: gives up the leases of fds 10 and 13 (a write open succeeds), downgrades fd 11's (fdinfo
 * "ACTIVE READ", a read open succeeds) and breaks that read lease with a write open (the signal comes with
 * si_fd 11), gives up fd 12's lease (the child's open returns, the child exits 0). The answer goes to
 * DIR/leasebreak.verify: "ok" or "bad: reason".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static const char *dir;
static char bad[400];
static char p_rd[512], p_dn[512], p_wr[512];
static volatile sig_atomic_t nsig;
static volatile int sig_fds[16];
static int kid_pipe = -1;
static pid_t kid;

static int BAD(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(bad, sizeof(bad), fmt, ap);
	va_end(ap);
	return -1;
}

static void on_break(int s, siginfo_t *si, void *uc)
{
	(void)s;
	(void)uc;
	if (nsig < 16)
		sig_fds[nsig] = si->si_fd;
	nsig++;
}

static int at(int fd, int n)
{
	if (fd < 0 || dup2(fd, n) != n)
		return -1;
	close(fd);
	return n;
}

/* Whether the fdinfo of fd shows a lease in state `state` with type `type`. */
static int lease_line(int fd, const char *state, const char *type)
{
	char p[64], buf[4096];
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	int f = open(p, O_RDONLY);
	if (f < 0)
		return 0;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *l = strstr(buf, "LEASE");
	if (!l)
		return 0;
	char st[32], ty[32];
	if (sscanf(l, "LEASE %31s %31s", st, ty) != 2)
		return 0;
	return !strcmp(st, state) && !strcmp(ty, type);
}

/* 0 if open(path, flags | O_NONBLOCK) succeeds, else errno. */
static int try_open(const char *path, int flags)
{
	int fd = open(path, flags | O_NONBLOCK);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int wait_sigs(int n)
{
	for (int i = 0; i < 300 && nsig < n; i++)
		usleep(10000);
	return nsig >= n;
}

static int setup(void)
{
	struct sigaction sa = { .sa_sigaction = on_break, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN + 1, &sa, NULL))
		return -1;
	snprintf(p_rd, sizeof(p_rd), "%s/lb-rd", dir);
	snprintf(p_dn, sizeof(p_dn), "%s/lb-dn", dir);
	snprintf(p_wr, sizeof(p_wr), "%s/lb-wr", dir);
	if (at(open(p_rd, O_RDONLY | O_CREAT, 0644), 10) != 10 || at(open(p_dn, O_RDONLY | O_CREAT, 0644), 11) != 11 ||
	    at(open(p_wr, O_RDWR | O_CREAT, 0644), 12) != 12 || at(open(p_rd, O_RDONLY), 13) != 13)
		return -1;
	for (int fd = 10; fd <= 13; fd++)
		if (fcntl(fd, F_SETSIG, SIGRTMIN + 1))
			return -1;
	if (fcntl(10, F_SETLEASE, F_RDLCK) || fcntl(13, F_SETLEASE, F_RDLCK) || fcntl(11, F_SETLEASE, F_WRLCK) ||
	    fcntl(12, F_SETLEASE, F_WRLCK))
		return -1;
	if (try_open(p_rd, O_WRONLY) != EWOULDBLOCK || try_open(p_dn, O_RDONLY) != EWOULDBLOCK)
		return -1;
	int pp[2];
	if (pipe(pp))
		return -1;
	kid = fork();
	if (kid < 0)
		return -1;
	if (kid == 0) {
		close(pp[0]);
		int fd = open(p_wr, O_RDONLY);
		char c = fd >= 0 ? 'o' : 'e';
		if (write(pp[1], &c, 1) != 1)
			_exit(2);
		_exit(fd >= 0 ? 0 : 1);
	}
	close(pp[1]);
	kid_pipe = pp[0];
	if (!wait_sigs(4))
		return BAD("only %d break signals", (int)nsig);
	return 0;
}

/* The state the dump saw, unchanged by the checks. */
static int check_breaking(void)
{
	if (nsig != 4)
		return BAD("%d break signals, not 4", (int)nsig);
	for (int fd = 10; fd <= 13; fd++) {
		int seen = 0;
		for (int i = 0; i < 4; i++)
			seen += sig_fds[i] == fd;
		if (seen != 1)
			return BAD("break signals for fds %d %d %d %d", sig_fds[0], sig_fds[1], sig_fds[2], sig_fds[3]);
	}
	if (fcntl(10, F_GETLEASE) != F_UNLCK || fcntl(11, F_GETLEASE) != F_RDLCK || fcntl(12, F_GETLEASE) != F_RDLCK ||
	    fcntl(13, F_GETLEASE) != F_UNLCK)
		return BAD("F_GETLEASE %d %d %d %d", fcntl(10, F_GETLEASE), fcntl(11, F_GETLEASE), fcntl(12, F_GETLEASE),
			   fcntl(13, F_GETLEASE));
	if (!lease_line(10, "BREAKING", "UNLCK") || !lease_line(11, "BREAKING", "READ") ||
	    !lease_line(12, "BREAKING", "READ") || !lease_line(13, "BREAKING", "UNLCK"))
		return BAD("the leases are not being broken (fdinfo)");
	int e;
	if ((e = try_open(p_rd, O_WRONLY)) != EWOULDBLOCK)
		return BAD("a write open of lb-rd: %s", e ? strerror(e) : "it succeeded");
	if ((e = try_open(p_rd, O_RDONLY)) != 0)
		return BAD("a read open of lb-rd (a read lease): %s", strerror(e));
	if ((e = try_open(p_dn, O_RDONLY)) != EWOULDBLOCK)
		return BAD("a read open of lb-dn (a write lease): %s", e ? strerror(e) : "it succeeded");
	if ((e = try_open(p_wr, O_RDONLY)) != EWOULDBLOCK)
		return BAD("a read open of lb-wr (a write lease): %s", e ? strerror(e) : "it succeeded");
	struct pollfd pf = { .fd = kid_pipe, .events = POLLIN };
	if (poll(&pf, 1, 0) != 0)
		return BAD("the child's open returned while the lease is still there");
	if (waitpid(kid, NULL, WNOHANG) != 0)
		return BAD("the child is gone");
	usleep(50000);
	if (nsig != 4)
		return BAD("a signal came from the checks or the restore: %d, si_fd %d", (int)nsig, sig_fds[nsig - 1]);
	return 0;
}

/* Every break goes through to its end. */
static int finish(void)
{
	int e;
	if (fcntl(10, F_SETLEASE, F_UNLCK))
		return BAD("giving up fd 10's lease: %s", strerror(errno));
	if ((e = try_open(p_rd, O_WRONLY)) != EWOULDBLOCK)
		return BAD("a write open of lb-rd with fd 13's lease left: %s", e ? strerror(e) : "it succeeded");
	if (fcntl(13, F_SETLEASE, F_UNLCK))
		return BAD("giving up fd 13's lease: %s", strerror(errno));
	if ((e = try_open(p_rd, O_WRONLY)) != 0)
		return BAD("a write open of lb-rd after its lease went: %s", strerror(e));
	if (fcntl(11, F_SETLEASE, F_RDLCK))
		return BAD("downgrading fd 11's lease: %s", strerror(errno));
	if (fcntl(11, F_GETLEASE) != F_RDLCK || !lease_line(11, "ACTIVE", "READ"))
		return BAD("fd 11 after the downgrade: %d", fcntl(11, F_GETLEASE));
	if ((e = try_open(p_dn, O_RDONLY)) != 0)
		return BAD("a read open of lb-dn after the downgrade: %s", strerror(e));
	if ((e = try_open(p_dn, O_WRONLY)) != EWOULDBLOCK)
		return BAD("a write open of lb-dn (a read lease): %s", e ? strerror(e) : "it succeeded");
	if (!wait_sigs(5) || nsig != 5 || sig_fds[4] != 11)
		return BAD("after a new break of fd 11: %d signals, last si_fd %d", (int)nsig, sig_fds[nsig - 1]);
	if (fcntl(11, F_GETLEASE) != F_UNLCK || fcntl(11, F_SETLEASE, F_UNLCK))
		return BAD("fd 11's lease at the end");
	if (fcntl(12, F_SETLEASE, F_UNLCK))
		return BAD("giving up fd 12's lease: %s", strerror(errno));
	struct pollfd pf = { .fd = kid_pipe, .events = POLLIN };
	char c = 0;
	if (poll(&pf, 1, 5000) != 1 || read(kid_pipe, &c, 1) != 1 || c != 'o')
		return BAD("the child's open did not complete (%c)", c ? c : '-');
	int st;
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st))
		return BAD("the child: status %#x", st);
	if (nsig != 5)
		return BAD("%d signals at the end", (int)nsig);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	dir = argv[1];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (setup()) {
		fprintf(stderr, "setup: %s %s\n", bad, strerror(errno));
		return 3;
	}
	if (check_breaking()) {
		fprintf(stderr, "before dump: %s\n", bad);
		return 4;
	}
	char msg[64];
	snprintf(msg, sizeof(msg), "%d\n", getpid());
	put_status(dir, "leasebreak.ready", msg);
	for (;;) {
		usr1 = 0;
		wait_usr1();
		char out[600];
		if (check_breaking() || finish())
			snprintf(out, sizeof(out), "bad: %s\n", bad);
		else
			snprintf(out, sizeof(out), "ok\n");
		put_status(dir, "leasebreak.verify", out);
	}
}
