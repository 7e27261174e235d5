/* Unix socket states for dump/restore, one per mode (argv[1]), in directory argv[2]:
 *   scm       files in flight (SCM_RIGHTS): a pipe's read end (with data in the pipe) alone in a
 *             datagram, a regular file (at offset 3) and the pipe's write end (which the program
 *             holds too) in the next one, an eventfd (count 5) in a stream queue between plain data
 *   backlog   a listener with one accepted connection (data queued) and two connections waiting
 *             in its backlog (not accepted yet), a seqpacket listener with one waiting
 *   unlinked  a listener whose path was unlinked, a datagram server whose path and directory were
 *             removed (holding datagrams of a gone client and of a connected one), a socket whose
 *             path is now a regular file, a relative name unlinked
 *   ext       a datagram client connected to a named server outside the dumped tree (a grandchild
 *             that left the tree) which echoes what it gets
 *   misc      shutdown states (SHUT_RD/SHUT_WR on the two ends of a stream pair with data queued,
 *             SHUT_RDWR on both ends of another, SHUT_WR on a datagram end), SO_PASSCRED,
 *             buffer sizes, timeouts, SO_RCVLOWAT, SO_PRIORITY, SO_MARK, SO_KEEPALIVE, O_NONBLOCK
 * Writes DIR/unixsk2.ready once set up; on SIGUSR1 checks the state, uses every socket again, and
 * writes DIR/unixsk2.verify "unixsk2=ok" or "unixsk2=FAIL <what>". */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static const char *mode, *dir;
static char fail[300];
#define CHECK(c, what) do { if (!(c) && !fail[0]) snprintf(fail, sizeof(fail), "%s (line %d, errno %d)", what, __LINE__, errno); } while (0)

static struct sockaddr_un addr(const char *p, socklen_t *len)
{
	struct sockaddr_un u = { .sun_family = AF_UNIX };
	snprintf(u.sun_path, sizeof(u.sun_path), "%s", p);
	*len = offsetof(struct sockaddr_un, sun_path) + strlen(u.sun_path) + 1;
	return u;
}

static int bound(int type, const char *p)
{
	socklen_t l;
	struct sockaddr_un u = addr(p, &l);
	int s = socket(AF_UNIX, type, 0);
	unlink(p);
	if (s < 0 || bind(s, (void *)&u, l)) exit(2);
	return s;
}

static int connected(int type, const char *p)
{
	socklen_t l;
	struct sockaddr_un u = addr(p, &l);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || connect(s, (void *)&u, l)) exit(2);
	return s;
}

static int send_fds(int s, const char *data, int *fds, int n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)] = { 0 };
	struct iovec iov = { (void *)data, strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (n) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	return sendmsg(s, &m, 0) == (ssize_t)strlen(data) ? 0 : -1;
}

/* One message: its bytes (NUL-terminated in buf), and up to 4 fds; returns the byte count. */
static int recv_fds(int s, char *buf, size_t len, int *fds, int *n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { buf, len - 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	ssize_t r = recvmsg(s, &m, MSG_DONTWAIT);
	*n = 0;
	if (r < 0) return -1;
	buf[r] = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			*n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds, CMSG_DATA(c), *n * sizeof(int));
		}
	return r;
}

static int same_file(int a, int b)
{
	pid_t p = getpid();
	return syscall(SYS_kcmp, p, p, KCMP_FILE, a, b) == 0;
}

static int is_name(int s, const char *want)
{
	struct sockaddr_un u;
	socklen_t l = sizeof(u);
	memset(&u, 0, sizeof(u));
	return getsockname(s, (void *)&u, &l) == 0 && !strcmp(u.sun_path, want);
}

static int gone(const char *p)
{
	struct stat st;
	return lstat(p, &st) < 0 && errno == ENOENT;
}

static int readable(int s, int ms)
{
	struct pollfd p = { s, POLLIN, 0 };
	return poll(&p, 1, ms) == 1;
}

/* ---- scm ---- */
static int dg[2], st[2], pw, pr_kept;
static char fpath[300];

static void scm_setup(void)
{
	int p[2], fds[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_STREAM, 0, st) || pipe(p)) exit(2);
	if (write(p[1], "pipe-data", 9) != 9) exit(2);
	snprintf(fpath, sizeof(fpath), "%s/scm.file", dir);
	int f = open(fpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || write(f, "0123456789", 10) != 10 || lseek(f, 3, SEEK_SET) != 3) exit(2);
	if (send_fds(dg[0], "m0", NULL, 0) || send_fds(dg[0], "m1", &p[0], 1)) exit(2);
	fds[0] = f;
	fds[1] = p[1];
	if (send_fds(dg[0], "m2", fds, 2)) exit(2);
	close(p[0]);
	close(f);
	pw = p[1];
	int e = eventfd(5, 0);
	if (e < 0 || write(st[0], "before", 6) != 6 || send_fds(st[0], "withfd", &e, 1) || write(st[0], "tail", 4) != 4) exit(2);
	close(e);
	pr_kept = -1;
}

static void scm_verify(void)
{
	char buf[100];
	int fds[4], n, pr = -1;
	struct stat a, b;
	CHECK(recv_fds(dg[1], buf, sizeof(buf), fds, &n) == 2 && !strcmp(buf, "m0") && n == 0, "m0 without fds");
	CHECK(recv_fds(dg[1], buf, sizeof(buf), fds, &n) == 2 && !strcmp(buf, "m1") && n == 1, "m1 with one fd");
	if (n == 1) {
		pr = fds[0];
		CHECK(read(pr, buf, 9) == 9 && !memcmp(buf, "pipe-data", 9), "the pipe passed in m1 holds its data");
	}
	CHECK(recv_fds(dg[1], buf, sizeof(buf), fds, &n) == 2 && !strcmp(buf, "m2") && n == 2, "m2 with two fds");
	if (n == 2) {
		CHECK(read(fds[0], buf, 20) == 7 && !memcmp(buf, "3456789", 7), "the file passed in m2 at its offset");
		CHECK(fstat(fds[0], &a) == 0 && stat(fpath, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev, "the file passed is scm.file");
		CHECK(pwrite(fds[0], "X", 1, 10) == 1 && pread(fds[0], buf, 11, 0) == 11 && !memcmp(buf, "0123456789X", 11) && ftruncate(fds[0], 10) == 0,
		      "writing through the passed file");
		CHECK(same_file(fds[1], pw), "the pipe end passed in m2 is the one the program holds (kcmp)");
		CHECK(pr >= 0 && write(fds[1], "zz", 2) == 2 && read(pr, buf, 2) == 2 && !memcmp(buf, "zz", 2), "the passed ends are one pipe");
		close(fds[0]);
		close(fds[1]);
	}
	CHECK(recv_fds(dg[1], buf, sizeof(buf), fds, &n) < 0 && errno == EAGAIN, "nothing more in the datagram queue");
	CHECK(recv_fds(st[1], buf, sizeof(buf), fds, &n) == 12 && !strcmp(buf, "beforewithfd") && n == 1, "stream data up to the fd");
	if (n == 1) {
		uint64_t v = 0;
		CHECK(read(fds[0], &v, 8) == 8 && v == 5, "the eventfd passed keeps its count");
		close(fds[0]);
	}
	CHECK(recv_fds(st[1], buf, sizeof(buf), fds, &n) == 4 && !strcmp(buf, "tail") && n == 0, "stream data after the fd");
	/* The sockets still pass fds. */
	CHECK(send_fds(dg[1], "back", &pw, 1) == 0 && recv_fds(dg[0], buf, sizeof(buf), fds, &n) == 4 && n == 1 && same_file(fds[0], pw), "new fds passed");
	if (pr >= 0) close(pr);
}

/* ---- backlog ---- */
static int lis, sq, acc0, c0, c1, c2, q1;
static char lpath[300], qpath[300];

static void backlog_setup(void)
{
	snprintf(lpath, sizeof(lpath), "%s/bl.sock", dir);
	snprintf(qpath, sizeof(qpath), "%s/blq.sock", dir);
	lis = bound(SOCK_STREAM, lpath);
	sq = bound(SOCK_SEQPACKET, qpath);
	if (listen(lis, 8) || listen(sq, 8)) exit(2);
	c0 = connected(SOCK_STREAM, lpath);
	acc0 = accept(lis, NULL, NULL);
	if (acc0 < 0 || write(c0, "q0", 2) != 2 || write(acc0, "r0", 2) != 2) exit(2);
	c1 = connected(SOCK_STREAM, lpath);
	c2 = connected(SOCK_STREAM, lpath);
	q1 = connected(SOCK_SEQPACKET, qpath);
}

static void backlog_verify(void)
{
	char buf[16];
	int x[2];
	CHECK(read(acc0, buf, sizeof(buf)) == 2 && !memcmp(buf, "q0", 2) && read(c0, buf, sizeof(buf)) == 2 && !memcmp(buf, "r0", 2), "the accepted connection keeps its queues");
	CHECK(write(c1, "p1", 2) == 2 && write(c2, "p2", 2) == 2, "the waiting clients write");
	fcntl(lis, F_SETFL, O_NONBLOCK);
	fcntl(sq, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < 2; i++) {
		x[i] = accept4(lis, NULL, NULL, SOCK_NONBLOCK);
		CHECK(x[i] >= 0, "accept returns a waiting connection");
	}
	CHECK(accept4(lis, NULL, NULL, SOCK_NONBLOCK) < 0 && errno == EAGAIN, "only two were waiting");
	for (int i = 0; i < 2 && x[0] >= 0 && x[1] >= 0; i++) {
		CHECK(readable(x[i], 2000) && read(x[i], buf, sizeof(buf)) == 2 && buf[0] == 'p', "the accepted connection reads its client's data");
		buf[0] = 'r';
		CHECK(write(x[i], buf, 2) == 2, "answer");
	}
	CHECK(read(c1, buf, sizeof(buf)) == 2 && !memcmp(buf, "r1", 2), "client 1 gets its own answer");
	CHECK(read(c2, buf, sizeof(buf)) == 2 && !memcmp(buf, "r2", 2), "client 2 gets its own answer");
	int y = accept4(sq, NULL, NULL, SOCK_NONBLOCK);
	CHECK(y >= 0 && write(q1, "seq", 3) == 3 && read(y, buf, sizeof(buf)) == 3, "the waiting seqpacket connection");
	int n = connected(SOCK_STREAM, lpath), z = accept(lis, NULL, NULL);
	CHECK(z >= 0 && write(n, "new", 3) == 3 && readable(z, 2000) && read(z, buf, sizeof(buf)) == 3, "a new connection");
}

/* ---- unlinked ---- */
static int ul, ud, uk, ur, urel;
static char upath[300], dpath[300], ddir[300], rpath[300], relpath[300];

static void unlinked_setup(void)
{
	snprintf(upath, sizeof(upath), "%s/gone.sock", dir);
	snprintf(ddir, sizeof(ddir), "%s/sub", dir);
	snprintf(dpath, sizeof(dpath), "%s/sub/d.sock", dir);
	snprintf(rpath, sizeof(rpath), "%s/repl.sock", dir);
	snprintf(relpath, sizeof(relpath), "%s/rel.sock", dir);
	ul = bound(SOCK_STREAM, upath);
	if (listen(ul, 4) || unlink(upath)) exit(2);
	mkdir(ddir, 0700);
	ud = bound(SOCK_DGRAM, dpath);
	int t = connected(SOCK_DGRAM, dpath);
	if (send(t, "from-gone", 9, 0) != 9) exit(2);
	close(t);
	uk = connected(SOCK_DGRAM, dpath);
	if (send(uk, "k1", 2, 0) != 2 || unlink(dpath) || rmdir(ddir)) exit(2);
	ur = bound(SOCK_DGRAM, rpath);
	if (unlink(rpath)) exit(2);
	int f = open(rpath, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (f < 0 || write(f, "other", 5) != 5) exit(2);
	close(f);
	if (chdir(dir)) exit(2);
	{
		struct sockaddr_un u = { .sun_family = AF_UNIX };
		strcpy(u.sun_path, "rel.sock");
		urel = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (urel < 0 || bind(urel, (void *)&u, offsetof(struct sockaddr_un, sun_path) + 9) || unlink("rel.sock")) exit(2);
	}
}

static void unlinked_verify(void)
{
	char buf[32];
	int v = 0;
	socklen_t l = sizeof(v);
	CHECK(is_name(ul, upath) && getsockopt(ul, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "the unlinked listener is bound and listening");
	CHECK(gone(upath), "the listener's path stays unlinked");
	CHECK(is_name(ud, dpath) && gone(dpath) && gone(ddir), "the datagram server is bound, its path and directory gone");
	CHECK(recv(ud, buf, sizeof(buf), MSG_DONTWAIT) == 9 && !memcmp(buf, "from-gone", 9), "the datagram of the gone client");
	CHECK(recv(ud, buf, sizeof(buf), MSG_DONTWAIT) == 2 && !memcmp(buf, "k1", 2), "the datagram of the connected client");
	CHECK(send(uk, "k2", 2, 0) == 2 && recv(ud, buf, sizeof(buf), MSG_DONTWAIT) == 2 && !memcmp(buf, "k2", 2), "the client still sends to the unlinked server");
	struct sockaddr_un peer;
	socklen_t pl = sizeof(peer);
	CHECK(getpeername(uk, (void *)&peer, &pl) == 0 && !strcmp(peer.sun_path, dpath), "the client's peer name");
	struct stat st;
	int f = open(rpath, O_RDONLY);
	CHECK(is_name(ur, rpath), "the socket whose path was replaced keeps its name");
	CHECK(f >= 0 && fstat(f, &st) == 0 && S_ISREG(st.st_mode) && read(f, buf, sizeof(buf)) == 5 && !memcmp(buf, "other", 5), "the file now at its path is untouched");
	if (f >= 0) close(f);
	CHECK(is_name(urel, "rel.sock") && gone(relpath), "the relative name is bound and unlinked");
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		CHECK(!strstr(e->d_name, "cryo-park"), "nothing left behind in the directory");
	if (d) closedir(d);
}

/* ---- ext ---- */
static int ec;
static char spath[300], cpath[300];

static void ext_setup(void)
{
	snprintf(spath, sizeof(spath), "%s/ext.sock", dir);
	snprintf(cpath, sizeof(cpath), "%s/extc.sock", dir);
	int srv = bound(SOCK_DGRAM, spath);
	pid_t k = fork();
	if (k == 0) {
		if (fork() != 0) _exit(0);
		/* The grandchild, outside the dumped tree: echoes every datagram to its sender. */
		for (;;) {
			char buf[64], out[80];
			struct sockaddr_un from;
			socklen_t fl = sizeof(from);
			ssize_t n = recvfrom(srv, buf, sizeof(buf) - 1, 0, (void *)&from, &fl);
			if (n < 0) continue;
			buf[n] = 0;
			int m = snprintf(out, sizeof(out), "echo:%s", buf);
			sendto(srv, out, m, 0, (void *)&from, fl);
		}
	}
	waitpid(k, NULL, 0);
	close(srv);
	ec = bound(SOCK_DGRAM, cpath);
	socklen_t l;
	struct sockaddr_un u = addr(spath, &l);
	char buf[64];
	if (connect(ec, (void *)&u, l) || send(ec, "e1", 2, 0) != 2 || !readable(ec, 5000) || recv(ec, buf, sizeof(buf), 0) != 7) exit(2);
}

static void ext_verify(void)
{
	char buf[64];
	struct sockaddr_un peer;
	socklen_t pl = sizeof(peer);
	CHECK(is_name(ec, cpath) && getpeername(ec, (void *)&peer, &pl) == 0 && !strcmp(peer.sun_path, spath), "the client keeps its names");
	CHECK(send(ec, "e2", 2, 0) == 2 && readable(ec, 5000) && recv(ec, buf, sizeof(buf), 0) == 7 && !memcmp(buf, "echo:e2", 7), "the external server answers");
}

/* ---- misc ---- */
static int h1[2], h2[2], hg[2], pc[2], op[2];
static struct timeval tmo;
static int sndbuf, rcvbuf;

static int geti(int s, int o)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(s, SOL_SOCKET, o, &v, &l);
	return v;
}

static void misc_setup(void)
{
	int one = 1, v;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, h1) || socketpair(AF_UNIX, SOCK_STREAM, 0, h2) || socketpair(AF_UNIX, SOCK_DGRAM, 0, hg) ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, pc) || socketpair(AF_UNIX, SOCK_STREAM, 0, op)) exit(2);
	if (write(h1[1], "q", 1) != 1 || shutdown(h1[1], SHUT_WR) || shutdown(h1[0], SHUT_RD)) exit(2);
	if (shutdown(h2[0], SHUT_RDWR) || shutdown(h2[1], SHUT_RDWR)) exit(2);
	if (send(hg[1], "to-shut", 7, 0) != 7 || shutdown(hg[0], SHUT_WR)) exit(2);
	if (setsockopt(pc[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one))) exit(2);
	v = 100000;
	setsockopt(op[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	v = 120000;
	setsockopt(op[0], SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	struct timeval tv = { 3, 500000 };
	setsockopt(op[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	socklen_t tl = sizeof(tmo);
	getsockopt(op[0], SOL_SOCKET, SO_SNDTIMEO, &tmo, &tl);
	v = 3;
	setsockopt(op[0], SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
	v = 5;
	setsockopt(op[0], SOL_SOCKET, SO_PRIORITY, &v, sizeof(v));
	v = 77;
	setsockopt(op[0], SOL_SOCKET, SO_MARK, &v, sizeof(v));
	setsockopt(op[0], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	fcntl(op[1], F_SETFL, O_NONBLOCK);
	sndbuf = geti(op[0], SO_SNDBUF);
	rcvbuf = geti(op[0], SO_RCVBUF);
}

static void misc_verify(void)
{
	char buf[16];
	signal(SIGPIPE, SIG_IGN);
	CHECK(read(h1[0], buf, sizeof(buf)) == 1 && buf[0] == 'q' && read(h1[0], buf, sizeof(buf)) == 0, "SHUT_WR peer: the queued byte, then end of file");
	CHECK(send(h1[1], "z", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "the SHUT_WR end cannot write");
	CHECK(write(h1[0], "up", 2) == 2 && read(h1[1], buf, sizeof(buf)) == 2, "the other direction still carries data");
	CHECK(read(h2[0], buf, 1) == 0 && read(h2[1], buf, 1) == 0, "SHUT_RDWR both ends read end of file");
	CHECK(send(h2[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE && send(h2[1], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "SHUT_RDWR both ends cannot write");
	CHECK(recv(hg[0], buf, sizeof(buf), MSG_DONTWAIT) == 7 && !memcmp(buf, "to-shut", 7), "the datagram queued for the SHUT_WR end");
	CHECK(send(hg[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "the SHUT_WR datagram end cannot send");
	CHECK(send(hg[1], "y", 1, 0) == 1 && recv(hg[0], buf, sizeof(buf), MSG_DONTWAIT) == 1, "but still receives");
	CHECK(geti(pc[1], SO_PASSCRED) == 1, "SO_PASSCRED");
	{
		char cbuf[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c;
		CHECK(send(pc[0], "cred", 4, 0) == 4 && recvmsg(pc[1], &m, 0) == 4 && (c = CMSG_FIRSTHDR(&m)) && c->cmsg_type == SCM_CREDENTIALS &&
		      ((struct ucred *)CMSG_DATA(c))->pid == getpid(), "credentials of a new message");
	}
	struct timeval tv;
	socklen_t tl = sizeof(tv);
	CHECK(geti(op[0], SO_SNDBUF) == sndbuf && geti(op[0], SO_RCVBUF) == rcvbuf, "buffer sizes");
	CHECK(getsockopt(op[0], SOL_SOCKET, SO_SNDTIMEO, &tv, &tl) == 0 && tv.tv_sec == tmo.tv_sec && tv.tv_usec == tmo.tv_usec, "SO_SNDTIMEO");
	CHECK(geti(op[0], SO_RCVLOWAT) == 3 && geti(op[0], SO_PRIORITY) == 5 && geti(op[0], SO_MARK) == 77 && geti(op[0], SO_KEEPALIVE) == 1, "SO_RCVLOWAT, SO_PRIORITY, SO_MARK, SO_KEEPALIVE");
	CHECK((fcntl(op[1], F_GETFL) & O_NONBLOCK) && read(op[1], buf, 1) < 0 && errno == EAGAIN, "O_NONBLOCK");
	CHECK(write(op[1], "abc", 3) == 3 && read(op[0], buf, sizeof(buf)) == 3, "the optioned pair carries data");
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	mode = argv[1];
	dir = argv[2];
	void (*verify)(void);
	if (!strcmp(mode, "scm")) { scm_setup(); verify = scm_verify; }
	else if (!strcmp(mode, "backlog")) { backlog_setup(); verify = backlog_verify; }
	else if (!strcmp(mode, "unlinked")) { unlinked_setup(); verify = unlinked_verify; }
	else if (!strcmp(mode, "ext")) { ext_setup(); verify = ext_verify; }
	else if (!strcmp(mode, "misc")) { misc_setup(); verify = misc_verify; }
	else return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	put_status(dir, "unixsk2.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		fail[0] = 0;
		verify();
		char out[400];
		snprintf(out, sizeof(out), "unixsk2=%s%s\n", fail[0] ? "FAIL " : "ok", fail);
		put_status(dir, "unixsk2.verify", out);
	}
}
