/* A FIFO shared by two tasks, with queued bytes, for dump + restore.
 * <dir>/fifo is opened O_RDWR (fd rw) and O_RDONLY|O_NONBLOCK (fd ro) by the
 * parent and O_WRONLY by a child; "hello " (parent) and "world" (child) stay
 * queued. Ready: <dir>/fifo.ready. On SIGUSR1 the parent checks the node, the
 * fds' flags and inodes, reads the queued bytes back, has the child write
 * "ping" through its own fd, and writes <dir>/fifo.verify: "fifo=ok" or the
 * first thing that differs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "status.h"

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char path[512], why[256] = "", buf[300];
	int rw, ro, sync[2];
	pid_t child;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, 0);
	/* SIGUSR1 is only taken inside sigsuspend(), so a signal that arrives between the check of
	 * `usr1` and the wait is never lost (a pause() loop would hang then). */
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	umask(0);
	if (mkfifo(path, 0640) != 0)
		return 1;
	rw = open(path, O_RDWR);
	ro = open(path, O_RDONLY | O_NONBLOCK);
	if (rw < 0 || ro < 0 || write(rw, "hello ", 6) != 6 || pipe(sync) != 0)
		return 1;
	child = fork();
	if (child == 0) {
		int wo = open(path, O_WRONLY);
		close(rw);
		close(ro);
		if (wo < 0 || write(wo, "world", 5) != 5)
			_exit(1);
		write(sync[1], "x", 1);
		close(sync[0]);
		close(sync[1]);
		for (;;) {
			sigsuspend(&waitmask);
			if (usr1) {
				usr1 = 0;
				write(wo, "ping", 4);
			}
		}
	}
	close(sync[1]);
	if (read(sync[0], buf, 1) != 1)
		return 1;
	close(sync[0]);
	put_status(dir, "fifo.ready", "ready\n");

	for (;;) {
		struct stat sp, s1, s2;
		int fl;
		ssize_t n;

		while (!usr1)
			sigsuspend(&waitmask);
		usr1 = 0;
		why[0] = 0;
		if (stat(path, &sp) != 0 || !S_ISFIFO(sp.st_mode))
			snprintf(why, sizeof(why), "the path is not a FIFO");
		else if ((sp.st_mode & 0777) != 0640)
			snprintf(why, sizeof(why), "mode %o", sp.st_mode & 0777);
		else if (fstat(rw, &s1) || fstat(ro, &s2) || s1.st_ino != sp.st_ino || s2.st_ino != sp.st_ino)
			snprintf(why, sizeof(why), "fds not on the FIFO at the path");
		else if ((fl = fcntl(rw, F_GETFL)) < 0 || (fl & (O_ACCMODE | O_NONBLOCK)) != O_RDWR)
			snprintf(why, sizeof(why), "rw flags %o", fl);
		else if ((fl = fcntl(ro, F_GETFL)) < 0 || (fl & (O_ACCMODE | O_NONBLOCK)) != (O_RDONLY | O_NONBLOCK))
			snprintf(why, sizeof(why), "ro flags %o", fl);
		else if ((n = read(ro, buf, sizeof(buf))) != 11 || memcmp(buf, "hello world", 11))
			snprintf(why, sizeof(why), "queued: %zd bytes", n);
		else if (read(ro, buf, sizeof(buf)) != -1 || errno != EAGAIN)
			snprintf(why, sizeof(why), "more than the queued bytes");
		else if (kill(child, SIGUSR1) != 0)
			snprintf(why, sizeof(why), "no child");
		else if ((n = read(rw, buf, 4)) != 4 || memcmp(buf, "ping", 4))
			snprintf(why, sizeof(why), "child's write: %zd bytes", n);
		/* Queue the same bytes again for the next check. */
		if (!why[0] && write(rw, "hello world", 11) != 11)
			snprintf(why, sizeof(why), "requeue");
		snprintf(buf, sizeof(buf), "fifo=%s\n", why[0] ? why : "ok");
		put_status(dir, "fifo.verify", buf);
	}
}
