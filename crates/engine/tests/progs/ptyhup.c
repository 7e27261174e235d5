/* Terminals without a slave fd, hung-up slaves and a console, for dump +
 * restore. The program (a session leader with no terminal) holds the master
 * of pair A; its child leads a session of its own whose controlling
 * terminal is A's slave, with no fd open on it. Pair B's master was closed:
 * the program holds two hung-up fds of B's slave. <dir>/console is a node
 * of /dev/console (5:1) it holds open. Ready: <dir>/hup.ready ("index=N
 * child=C"). On SIGUSR1 it checks B's slaves are hung up (read 0, write
 * EIO), the console's rdev, that A's master answers for the child's session
 * (TIOCGSID), then closes A's master: the child must get SIGHUP (it tells
 * through a pipe) and lose its terminal. Then <dir>/hup.verify: "hup=ok"
 * or the first thing that differs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

static volatile sig_atomic_t hups;
static void on_hup(int s) { (void)s; hups++; }

/* The child's terminal (0: none) if it leads its session and the
 * terminal's foreground group; its stat line in `st`. */
static unsigned long child_tty(pid_t child, char *st, int len)
{
	char sp[64];
	int sid = 0, tpgid = 0;
	unsigned long nr = 1;
	snprintf(sp, sizeof(sp), "/proc/%d/stat", child);
	FILE *f = fopen(sp, "r");
	st[0] = 0;
	if (!f)
		return 1;
	if (fgets(st, len, f)) {
		char *r = strrchr(st, ')');
		if (!r || sscanf(r + 2, "%*c %*d %*d %d %lu %d", &sid, &nr, &tpgid) != 3)
			nr = 1;
		else if (nr && (sid != child || tpgid != child))
			nr = 1;
	}
	fclose(f);
	return nr;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char path[512], why[512], txt[256], c;
	int ma, mb, sb1, sb2, con, ia, ib, pfd[2], rep[2];
	struct stat st;
	pid_t child;

	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (setsid() < 0)
		return 1;
	ma = posix_openpt(O_RDWR | O_NOCTTY);
	mb = posix_openpt(O_RDWR | O_NOCTTY);
	if (ma < 0 || mb < 0 || grantpt(ma) || unlockpt(ma) || grantpt(mb) || unlockpt(mb))
		return 2;
	if (ioctl(ma, TIOCGPTN, &ia) || ioctl(mb, TIOCGPTN, &ib))
		return 3;
	sb1 = open(ptsname(mb), O_RDWR | O_NOCTTY);
	sb2 = open(ptsname(mb), O_RDONLY | O_NOCTTY);
	if (sb1 < 0 || sb2 < 0)
		return 4;
	snprintf(path, sizeof(path), "%s/console", dir);
	if (mknod(path, S_IFCHR | 0600, makedev(5, 1)) || (con = open(path, O_RDONLY | O_NOCTTY)) < 0)
		return 5;
	if (pipe(pfd) || pipe(rep))
		return 6;
	child = fork();
	if (child == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_hup;
		sigaction(SIGHUP, &sa, 0);
		close(ma);
		close(mb);
		close(sb1);
		close(sb2);
		close(con);
		if (setsid() < 0)
			_exit(1);
		char name[64];
		snprintf(name, sizeof(name), "/dev/pts/%d", ia);
		int s = open(name, O_RDWR); /* no O_NOCTTY: our controlling terminal */
		if (s < 0)
			_exit(2);
		close(s);
		write(pfd[1], "x", 1);
		/* Tell the parent about each SIGHUP. SIGHUP is only taken inside
		 * sigsuspend() (as SIGUSR1 in usr1.h): one that comes as a
		 * restored sigsuspend() restarts is not lost. */
		sigset_t none, hup;
		sigemptyset(&none);
		sigemptyset(&hup);
		sigaddset(&hup, SIGHUP);
		sigprocmask(SIG_BLOCK, &hup, 0);
		for (;;) {
			sigsuspend(&none);
			while (hups > 0) {
				hups--;
				write(rep[1], "h", 1);
			}
		}
	}
	if (read(pfd[0], &c, 1) != 1)
		return 7;
	close(pfd[0]);
	close(pfd[1]);
	close(rep[1]);
	close(mb); /* B's slaves hang up */
	if (fstat(con, &st))
		return 8;
	snprintf(txt, sizeof(txt), "index=%d child=%d indexb=%d\n", ia, child, ib);
	put_status(dir, "hup.ready", txt);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		why[0] = 0;
		pid_t sid = 0;
		struct termios t;
		struct pollfd p = { .fd = rep[0], .events = POLLIN };
		if (read(sb1, txt, 1) != 0)
			snprintf(why, sizeof(why), "B's slave 1 reads data: not hung up");
		else if (write(sb1, "x", 1) != -1 || errno != EIO)
			snprintf(why, sizeof(why), "B's slave 1 takes writes: not hung up (%m)");
		else if (tcgetattr(sb2, &t) != -1 || errno != EIO)
			snprintf(why, sizeof(why), "B's slave 2 answers TCGETS: not hung up (%m)");
		else if (fcntl(sb2, F_GETFL) != (O_RDONLY | O_LARGEFILE) && (fcntl(sb2, F_GETFL) & O_ACCMODE) != O_RDONLY)
			snprintf(why, sizeof(why), "B's slave 2 flags %o", fcntl(sb2, F_GETFL));
		else if (fstat(con, &st) || st.st_rdev != makedev(5, 1))
			snprintf(why, sizeof(why), "the console is %x", (int)st.st_rdev);
		else if (ioctl(ma, TIOCGSID, &sid) || sid != child)
			snprintf(why, sizeof(why), "A controls session %d, not the child's %d (%m)", sid, child);
		else if (child_tty(child, txt, sizeof(txt)) != makedev(136, ia))
			snprintf(why, sizeof(why), "the child's terminal is not A: %s", txt);
		else if (poll(&p, 1, 0) != 0)
			snprintf(why, sizeof(why), "a SIGHUP came before the master was closed");
		else {
			int m2 = dup(ma);
			close(ma);
			close(m2);
			if (poll(&p, 1, 2000) != 1 || read(rep[0], &c, 1) != 1)
				snprintf(why, sizeof(why), "no SIGHUP after the master was closed");
			else if (child_tty(child, txt, sizeof(txt)) != 0)
				snprintf(why, sizeof(why), "the child keeps its terminal after the hangup: %s", txt);
		}
		put_status(dir, "hup.verify", why[0] ? why : "hup=ok");
	}
}
