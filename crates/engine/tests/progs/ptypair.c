/* Pty pairs inside the dumped tree, for dump + restore.
 * The program becomes a session leader; pair A (canonical, echo on, own
 * erase/intr characters, 41x123) is its controlling terminal (the slave is
 * opened without O_NOCTTY); /dev/tty is opened too. A child in a process
 * group of its own is made the terminal's foreground group and holds the
 * slave of pair B (raw, packet mode on B's master, 7x9, exclusive). Queued:
 * on A's slave input "line one\nline two\neofline^Dpartial" (typed on the master, so
 * A's master also holds their echo) and then "out1\n" written on the slave;
 * on B, "raw\003bytes" to the slave and "pkt-out" from it. Ready:
 * <dir>/pty.ready ("index=N child=C"). On SIGUSR1 the program checks the
 * session, foreground group, termios, window sizes, indexes, packet mode
 * and every queued byte, then talks through /dev/tty, and writes
 * <dir>/pty.verify: "pty=ok" or the first thing that differs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

static char why[512];

/* Read what is there within 1 s (one read after poll). */
static int get(int fd, char *buf, int len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 1000) != 1)
		return -1;
	return read(fd, buf, len);
}

/* Read until `want` bytes came (or nothing more within 1 s). */
static int get_all(int fd, char *buf, int want)
{
	int n = 0;
	while (n < want) {
		int r = get(fd, buf + n, want - n);
		if (r <= 0)
			break;
		n += r;
	}
	buf[n < 0 ? 0 : n] = 0;
	return n;
}

static int expect_n(int fd, const char *what, const char *want, int len)
{
	char buf[512];
	int n = get_all(fd, buf, len);
	if (n != len || memcmp(buf, want, n)) {
		snprintf(why, sizeof(why), "%s: read %d bytes \"%s\", expected \"%s\"", what, n, n > 0 ? buf : "",
			 want);
		return 0;
	}
	return 1;
}

static int expect(int fd, const char *what, const char *want)
{
	return expect_n(fd, what, want, strlen(want));
}

static int quiet(int fd, const char *what)
{
	char b[64];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 100) == 1) {
		int n = read(fd, b, sizeof(b) - 1);
		b[n > 0 ? n : 0] = 0;
		snprintf(why, sizeof(why), "%s: unexpected data \"%s\" (%d bytes)", what, b, n);
		return 0;
	}
	return 1;
}

static int wait_inq(int fd, int want)
{
	for (int i = 0; i < 200; i++) {
		int n = 0;
		ioctl(fd, FIONREAD, &n);
		if (n >= want)
			return 1;
		usleep(5000);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	struct termios ta, tb, got;
	struct winsize wa = { .ws_row = 41, .ws_col = 123 }, wb = { .ws_row = 7, .ws_col = 9 }, wg;
	int ma, sa, mb, sb, tty, ia, ib, one = 1, pfd[2];
	char txt[256];
	pid_t child;

	signal(SIGUSR1, on_usr1);
	block_usr1();
	signal(SIGHUP, SIG_IGN);
	signal(SIGTTOU, SIG_IGN);
	if (setsid() < 0)
		return 1;
	ma = posix_openpt(O_RDWR | O_NOCTTY);
	mb = posix_openpt(O_RDWR | O_NOCTTY);
	if (ma < 0 || mb < 0 || grantpt(ma) || unlockpt(ma) || grantpt(mb) || unlockpt(mb))
		return 2;
	sa = open(ptsname(ma), O_RDWR); /* no O_NOCTTY: our controlling terminal */
	sb = open(ptsname(mb), O_RDWR | O_NOCTTY);
	tty = open("/dev/tty", O_RDWR);
	if (sa < 0 || sb < 0 || tty < 0 || ioctl(ma, TIOCGPTN, &ia) || ioctl(mb, TIOCGPTN, &ib))
		return 3;
	tcgetattr(sa, &ta);
	ta.c_lflag |= ICANON | ECHO | ISIG;
	ta.c_oflag |= OPOST | ONLCR;
	ta.c_cc[VERASE] = 0x08;
	ta.c_cc[VINTR] = 0x07;
	if (tcsetattr(sa, TCSANOW, &ta) || ioctl(sa, TIOCSWINSZ, &wa))
		return 4;
	tcgetattr(sb, &tb);
	cfmakeraw(&tb);
	tb.c_cc[VMIN] = 1;
	if (tcsetattr(sb, TCSANOW, &tb) || ioctl(mb, TIOCSWINSZ, &wb) || ioctl(mb, TIOCPKT, &one) || ioctl(sb, TIOCEXCL))
		return 5;
	tcgetattr(sa, &ta);
	tcgetattr(sb, &tb);
	if (pipe(pfd))
		return 6;
	child = fork();
	if (child == 0) {
		close(ma);
		close(mb);
		close(tty);
		setpgid(0, 0);
		write(pfd[1], "x", 1);
		for (;;)
			sigsuspend(&waitmask);
	}
	close(pfd[1]);
	if (read(pfd[0], txt, 1) != 1 || (setpgid(child, child) < 0 && errno != EACCES))
		return 7;
	close(pfd[0]);
	if (tcsetpgrp(sa, child))
		return 8;
	/* Typed on A (with its echo), then written by the slave. */
	if (write(ma, "line one\nline two\neofline\004partial", 33) != 33 || !wait_inq(ma, 34))
		return 9;
	if (write(sa, "out1\n", 5) != 5 || !wait_inq(ma, 40))
		return 10;
	if (write(mb, "raw\003bytes", 9) != 9 || write(sb, "pkt-out", 7) != 7 || !wait_inq(sb, 9))
		return 11;
	usleep(20000);
	snprintf(txt, sizeof(txt), "index=%d child=%d indexb=%d\n", ia, child, ib);
	put_status(dir, "pty.ready", txt);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		why[0] = 0;
		int n = 0;
		pid_t sid = 0;
		if (ioctl(ma, TIOCGPTN, &n) || n != ia)
			snprintf(why, sizeof(why), "pair A has index %d, was %d", n, ia);
		else if (ioctl(mb, TIOCGPTN, &n) || n != ib)
			snprintf(why, sizeof(why), "pair B has index %d, was %d", n, ib);
		else if (ioctl(sa, TIOCGSID, &sid) || sid != getpid())
			snprintf(why, sizeof(why), "A's session is %d, not ours (%d): %m", sid, getpid());
		else if (tcgetpgrp(sa) != child)
			snprintf(why, sizeof(why), "A's foreground group is %d, not the child's %d", tcgetpgrp(sa), child);
		else if (ioctl(sb, TIOCGSID, &sid) == 0 || errno != ENOTTY)
			snprintf(why, sizeof(why), "B controls a session (%d)", sid);
		else if (tcgetattr(sa, &got) || got.c_lflag != ta.c_lflag || got.c_iflag != ta.c_iflag ||
			 got.c_oflag != ta.c_oflag || got.c_cflag != ta.c_cflag || memcmp(got.c_cc, ta.c_cc, NCCS))
			snprintf(why, sizeof(why), "A's termios: lflag %o iflag %o oflag %o erase %d intr %d", got.c_lflag,
				 got.c_iflag, got.c_oflag, got.c_cc[VERASE], got.c_cc[VINTR]);
		else if (tcgetattr(sb, &got) || got.c_lflag != tb.c_lflag || got.c_iflag != tb.c_iflag ||
			 got.c_oflag != tb.c_oflag || got.c_cc[VMIN] != tb.c_cc[VMIN])
			snprintf(why, sizeof(why), "B's termios: lflag %o iflag %o oflag %o", got.c_lflag, got.c_iflag,
				 got.c_oflag);
		else if (ioctl(ma, TIOCGWINSZ, &wg) || wg.ws_row != 41 || wg.ws_col != 123)
			snprintf(why, sizeof(why), "A's window %dx%d", wg.ws_row, wg.ws_col);
		else if (ioctl(sb, TIOCGWINSZ, &wg) || wg.ws_row != 7 || wg.ws_col != 9)
			snprintf(why, sizeof(why), "B's window %dx%d", wg.ws_row, wg.ws_col);
		else if (ioctl(mb, TIOCGPKT, &n) || n != 1)
			snprintf(why, sizeof(why), "B's master is not in packet mode");
		else if (ioctl(sb, TIOCGEXCL, &n) || n != 1)
			snprintf(why, sizeof(why), "B's slave is not exclusive");
		/* Reading needs the foreground: ours for the time of the check. */
		if (!why[0] && tcsetpgrp(sa, getpgrp()))
			snprintf(why, sizeof(why), "tcsetpgrp: %m");
		if (!why[0]) {
			/* Lines one at a time; the unfinished one once it is ended. */
			(void)(expect(sa, "A's first line", "line one\n") && expect(sa, "A's second line", "line two\n") &&
			       expect(sa, "A's line ended by EOF", "eofline") && quiet(sa, "A after the EOF line") &&
			       quiet(sa, "A before the end of the partial line") && write(ma, "\n", 1) == 1 &&
			       expect(sa, "A's third line", "partial\n") &&
			       expect(ma, "A's master", "line one\r\nline two\r\neoflinepartialout1\r\n\r\n") &&
			       quiet(ma, "A's master after its queue") &&
			       expect_n(mb, "B's master (packet)", "\0pkt-out", 8) && quiet(mb, "B's master after its queue") &&
			       expect(sb, "B's slave", "raw\003bytes") && write(tty, "via-tty\n", 8) == 8 &&
			       expect(ma, "A's master (from /dev/tty)", "via-tty\r\n") && write(ma, "back\n", 5) == 5 &&
			       expect(tty, "/dev/tty", "back\n"));
		}
		tcsetpgrp(sa, child);
		put_status(dir, "pty.verify", why[0] ? why : "pty=ok");
	}
}
