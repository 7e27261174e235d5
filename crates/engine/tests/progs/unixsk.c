/* Unix sockets for dump/restore: socketpairs (stream, dgram, seqpacket) with data queued both
 * ways, a read-shut-down pair, a pair whose peer is closed, options (SO_PASSCRED, SO_RCVBUF,
 * SO_RCVTIMEO, O_NONBLOCK), a child sharing a pair with its parent (and serving another pair,
 * asleep in read at dump), a listening socket bound to a path, one to an abstract name, an unbound
 * dgram socket, a bound dgram socket holding datagrams of a closed client and of a connected one, a dgram socket connected to itself, a dgram socket bound to a relative name, a connection accepted by the path listener with data queued both ways. Writes DIR/unixsk.ready once set up; on SIGUSR1 checks everything (queues byte for
 * byte with their message boundaries, states, options, new traffic both ways, a fresh connection
 * to each listener) and writes DIR/unixsk.verify "unixsk=ok" or "unixsk=FAIL <what>". */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static int st[2], dg[2], sp[2], sh[2], lone[2], ch[2], lis, abs_lis, udg, cli, acc, rel, srvd, dcli, selfc;
static char dpath[300];
static char dir[256], path[300], fail[256];
static struct timeval tmo; /* SO_RCVTIMEO as the kernel reports it (rounded to jiffies) */
static unsigned char a[70000], b[3000], d[2048];

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) { seed = seed * 1103515245 + 12345; p[i] = seed >> 16; }
}

#define CHECK(c, what) do { if (!(c) && !fail[0]) snprintf(fail, sizeof(fail), "%s (line %d, errno %d)", what, __LINE__, errno); } while (0)

static struct sockaddr_un addr(const char *name, int abstract, socklen_t *len)
{
	struct sockaddr_un u = { .sun_family = AF_UNIX };
	if (abstract) {
		memcpy(u.sun_path + 1, name, strlen(name));
		*len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
	} else {
		snprintf(u.sun_path, sizeof(u.sun_path), "%s", name);
		*len = sizeof(u);
	}
	return u;
}

static int listener(const char *name, int abstract)
{
	socklen_t len;
	struct sockaddr_un u = addr(name, abstract, &len);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (void *)&u, len) || listen(s, 7)) exit(2);
	return s;
}

static void try_connect(int l, const char *name, int abstract)
{
	socklen_t len;
	struct sockaddr_un u = addr(name, abstract, &len);
	int c = socket(AF_UNIX, SOCK_STREAM, 0), s;
	char buf[8];
	CHECK(c >= 0 && connect(c, (void *)&u, len) == 0, "connect to a listener");
	s = accept(l, NULL, NULL);
	CHECK(s >= 0, "accept");
	CHECK(write(c, "hi", 2) == 2 && read(s, buf, sizeof(buf)) == 2 && !memcmp(buf, "hi", 2), "talk over an accepted connection");
	close(c);
	close(s);
}

static void child(void)
{
	char c;
	close(ch[0]);
	for (;;) {
		if (read(ch[1], &c, 1) != 1) _exit(0);
		if (c == 's') { if (write(st[1], "fromchild", 9) != 9) _exit(3); }
		c = c + 1;
		if (write(ch[1], &c, 1) != 1) _exit(3);
	}
}

static void verify(void)
{
	static unsigned char r[80000];
	ssize_t n;
	int i, v;
	socklen_t l = sizeof(v);
	struct timeval tv;
	char c;
	fail[0] = 0;
	/* stream: 70000 bytes queued at st[1] (as several writes), 3000 at st[0] */
	size_t got = 0;
	while (got < sizeof(a) && (n = recv(st[1], r + got, sizeof(r) - got, MSG_DONTWAIT)) > 0) got += n;
	CHECK(got == sizeof(a) && !memcmp(r, a, got), "stream queue st[1]");
	n = recv(st[0], r, sizeof(r), MSG_DONTWAIT);
	CHECK(n == sizeof(b) && !memcmp(r, b, n), "stream queue st[0]");
	CHECK(recv(st[0], r, sizeof(r), MSG_DONTWAIT) < 0 && errno == EAGAIN, "stream queue st[0] is empty after");
	/* dgram: 5 datagrams at dg[1] (one empty), 1 at dg[0] */
	for (i = 0; i < 5; i++) {
		n = recv(dg[1], r, sizeof(r), MSG_DONTWAIT);
		CHECK(n == 100 * i && !memcmp(r, d, n), "dgram boundaries dg[1]");
	}
	n = recv(dg[0], r, sizeof(r), MSG_DONTWAIT);
	CHECK(n == 33 && !memcmp(r, d + 7, n), "dgram dg[0]");
	CHECK(recv(dg[1], r, sizeof(r), MSG_DONTWAIT) < 0 && errno == EAGAIN, "dgram queue empty after");
	/* seqpacket: 3 packets at sp[0], 2 at sp[1] */
	for (i = 0; i < 3; i++) {
		n = recv(sp[0], r, sizeof(r), MSG_DONTWAIT);
		CHECK(n == 300 + i && !memcmp(r, d + i, n), "seqpacket sp[0]");
	}
	for (i = 0; i < 2; i++) {
		n = recv(sp[1], r, sizeof(r), MSG_DONTWAIT);
		CHECK(n == 10 + i && !memcmp(r, d + 50 + i, n), "seqpacket sp[1]");
	}
	/* sh: sh[0] shut down for writing with 5 bytes in flight to sh[1] */
	n = recv(sh[1], r, sizeof(r), MSG_DONTWAIT);
	CHECK(n == 5 && !memcmp(r, "last!", 5), "data before a shutdown");
	CHECK(recv(sh[1], r, sizeof(r), MSG_DONTWAIT) == 0, "EOF after a shutdown");
	CHECK(send(sh[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "send after SHUT_WR fails");
	CHECK(send(sh[1], "y", 1, MSG_NOSIGNAL) == 1 && recv(sh[0], &c, 1, MSG_DONTWAIT) == 1 && c == 'y', "the other way still works");
	/* lone: its peer was closed with 4 bytes queued for it */
	n = recv(lone[0], r, sizeof(r), MSG_DONTWAIT);
	CHECK(n == 4 && !memcmp(r, "bye!", 4), "queue of a socket whose peer is gone");
	CHECK(recv(lone[0], r, sizeof(r), MSG_DONTWAIT) == 0, "EOF of a socket whose peer is gone");
	/* options */
	CHECK(getsockopt(dg[1], SOL_SOCKET, SO_PASSCRED, &v, &l) == 0 && v == 1, "SO_PASSCRED");
	l = sizeof(v);
	CHECK(getsockopt(st[1], SOL_SOCKET, SO_RCVBUF, &v, &l) == 0 && v == 2 * 150000, "SO_RCVBUF");
	l = sizeof(tv);
	CHECK(getsockopt(sp[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &l) == 0 && tv.tv_sec == tmo.tv_sec && tv.tv_usec == tmo.tv_usec && tv.tv_sec == 3, "SO_RCVTIMEO as before the dump");
	CHECK(fcntl(dg[0], F_GETFL) & O_NONBLOCK, "O_NONBLOCK");
	CHECK(!(fcntl(dg[1], F_GETFL) & O_NONBLOCK), "no O_NONBLOCK");
	/* traffic both ways on every pair */
	int *pairs[] = { st, dg, sp };
	for (i = 0; i < 3; i++) {
		CHECK(send(pairs[i][0], "ab", 2, 0) == 2 && recv(pairs[i][1], r, 10, 0) == 2 && !memcmp(r, "ab", 2), "send 0 -> 1");
		CHECK(send(pairs[i][1], "cde", 3, 0) == 3 && recv(pairs[i][0], r, 10, 0) == 3 && !memcmp(r, "cde", 3), "send 1 -> 0");
	}
	/* the child (asleep in read at dump) shares st and serves ch */
	CHECK(write(ch[0], "s", 1) == 1 && read(ch[0], &c, 1) == 1 && c == 't', "the child answers");
	n = recv(st[0], r, sizeof(r), 0);
	CHECK(n == 9 && !memcmp(r, "fromchild", 9), "the child writes into the shared socket");
	/* a connection accepted by lis, data queued both ways; names as before */
	n = recv(acc, r, sizeof(r), MSG_DONTWAIT);
	CHECK(n == 7 && !memcmp(r, "request", 7), "queue of an accepted socket");
	n = recv(cli, r, sizeof(r), MSG_DONTWAIT);
	CHECK(n == 8 && !memcmp(r, "response", 8), "queue of a connected client");
	{
		struct sockaddr_un u;
		socklen_t ul = sizeof(u);
		CHECK(getpeername(cli, (void *)&u, &ul) == 0 && !strcmp(u.sun_path, path), "the client's peer name");
		ul = sizeof(u);
		CHECK(getsockname(acc, (void *)&u, &ul) == 0 && !strcmp(u.sun_path, path), "the accepted socket's name");
	}
	CHECK(send(cli, "more", 4, 0) == 4 && recv(acc, r, 10, 0) == 4, "client -> accepted");
	CHECK(send(acc, "back", 4, 0) == 4 && recv(cli, r, 10, 0) == 4, "accepted -> client");
	/* a dgram socket bound to a relative name keeps it and gets what is sent to its file */
	{
		struct sockaddr_un u;
		socklen_t ul = sizeof(u);
		char rp[400];
		CHECK(getsockname(rel, (void *)&u, &ul) == 0 && !strcmp(u.sun_path, "unixsk-rel.sock"), "a relative name");
		snprintf(rp, sizeof(rp), "%s/unixsk-rel.sock", dir);
		u = addr(rp, 0, &ul);
		int t = socket(AF_UNIX, SOCK_DGRAM, 0);
		CHECK(sendto(t, "rel", 3, 0, (void *)&u, ul) == 3 && recv(rel, r, 10, MSG_DONTWAIT) == 3, "send to the relative-bound socket");
		close(t);
	}
	/* a bound dgram socket keeps what a gone client sent, and takes new clients */
	{
		socklen_t ul;
		struct sockaddr_un u = addr(dpath, 0, &ul);
		n = recv(srvd, r, sizeof(r), MSG_DONTWAIT);
		CHECK(n == 15 && !memcmp(r, "dgram-from-gone", 15), "queue of a bound dgram socket");
		n = recv(srvd, r, sizeof(r), MSG_DONTWAIT);
		CHECK(n == 6 && !memcmp(r, "client", 6), "queue of a bound dgram socket (2)");
		struct sockaddr_un pn;
		socklen_t pl = sizeof(pn);
		CHECK(getpeername(dcli, (void *)&pn, &pl) == 0 && !strcmp(pn.sun_path, dpath), "a dgram client's peer");
		n = recv(selfc, r, sizeof(r), MSG_DONTWAIT);
		CHECK(n == 4 && !memcmp(r, "self", 4), "queue of a socket connected to itself");
		CHECK(send(selfc, "me", 2, 0) == 2 && recv(selfc, r, 10, MSG_DONTWAIT) == 2, "a socket connected to itself talks to itself");
		CHECK(send(dcli, "again", 5, 0) == 5 && recv(srvd, r, 10, MSG_DONTWAIT) == 5, "a dgram client sends to its server");
		int t = socket(AF_UNIX, SOCK_DGRAM, 0);
		CHECK(connect(t, (void *)&u, ul) == 0 && send(t, "new", 3, 0) == 3 && recv(srvd, r, 10, MSG_DONTWAIT) == 3, "a new client of the bound dgram socket");
		close(t);
	}
	/* listeners accept new connections; the unbound dgram socket is one */
	try_connect(lis, path, 0);
	try_connect(abs_lis, "cryo-unixsk-abstract", 1);
	l = sizeof(v);
	CHECK(getsockopt(udg, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && v == SOCK_DGRAM, "unbound dgram socket");
	char out[300];
	snprintf(out, sizeof(out), "unixsk=%s%s\n", fail[0] ? "FAIL " : "ok", fail);
	put_status(dir, "unixsk.verify", out);
}

int main(int argc, char **argv)
{
	int i, v;
	struct timeval tv = { 3, 250000 };
	if (argc < 2 || chdir(argv[1])) return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	pattern(a, sizeof(a), 1);
	pattern(b, sizeof(b), 2);
	pattern(d, sizeof(d), 3);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) || socketpair(AF_UNIX, SOCK_STREAM, 0, sh) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, lone) || socketpair(AF_UNIX, SOCK_STREAM, 0, ch))
		return 2;
	v = 150000;
	setsockopt(st[1], SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	v = 200000;
	setsockopt(st[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	for (i = 0; i < 7; i++) {
		size_t n = i < 6 ? 10000 : sizeof(a) - 60000;
		if (write(st[0], a + i * 10000, n) != (ssize_t)n) return 3;
	}
	if (write(st[1], b, sizeof(b)) != sizeof(b)) return 3;
	v = 1;
	setsockopt(dg[1], SOL_SOCKET, SO_PASSCRED, &v, sizeof(v));
	for (i = 0; i < 5; i++) if (send(dg[0], d, 100 * i, 0) != 100 * i) return 3;
	if (send(dg[1], d + 7, 33, 0) != 33) return 3;
	fcntl(dg[0], F_SETFL, O_NONBLOCK);
	for (i = 0; i < 3; i++) if (send(sp[1], d + i, 300 + i, 0) != 300 + i) return 3;
	for (i = 0; i < 2; i++) if (send(sp[0], d + 50 + i, 10 + i, 0) != 10 + i) return 3;
	setsockopt(sp[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	socklen_t tl = sizeof(tmo);
	if (getsockopt(sp[1], SOL_SOCKET, SO_RCVTIMEO, &tmo, &tl)) return 3;
	if (write(sh[0], "last!", 5) != 5 || shutdown(sh[0], SHUT_WR)) return 3;
	if (write(lone[1], "bye!", 4) != 4) return 3;
	close(lone[1]);
	snprintf(path, sizeof(path), "%s/unixsk.sock", dir);
	unlink(path);
	lis = listener(path, 0);
	abs_lis = listener("cryo-unixsk-abstract", 1);
	{
		socklen_t ul;
		struct sockaddr_un u = addr(path, 0, &ul);
		cli = socket(AF_UNIX, SOCK_STREAM, 0);
		if (cli < 0 || connect(cli, (void *)&u, ul) || (acc = accept(lis, NULL, NULL)) < 0) return 3;
		if (write(cli, "request", 7) != 7 || write(acc, "response", 8) != 8) return 3;
	}
	udg = socket(AF_UNIX, SOCK_DGRAM, 0);
	{
		socklen_t ul;
		snprintf(dpath, sizeof(dpath), "%s/unixsk-dg.sock", dir);
		unlink(dpath);
		struct sockaddr_un u = addr(dpath, 0, &ul);
		srvd = socket(AF_UNIX, SOCK_DGRAM, 0);
		int t = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (srvd < 0 || bind(srvd, (void *)&u, ul) || connect(t, (void *)&u, ul) || send(t, "dgram-from-gone", 15, 0) != 15) return 3;
		close(t);
		dcli = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (dcli < 0 || connect(dcli, (void *)&u, ul) || send(dcli, "client", 6, 0) != 6) return 3;
		char sp2[320];
		snprintf(sp2, sizeof(sp2), "%s/unixsk-self.sock", dir);
		unlink(sp2);
		u = addr(sp2, 0, &ul);
		selfc = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (selfc < 0 || bind(selfc, (void *)&u, ul) || connect(selfc, (void *)&u, ul) || send(selfc, "self", 4, 0) != 4) return 3;
	}
	{
		socklen_t ul;
		struct sockaddr_un u = addr("unixsk-rel.sock", 0, &ul);
		unlink("unixsk-rel.sock");
		rel = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (rel < 0 || bind(rel, (void *)&u, offsetof(struct sockaddr_un, sun_path) + strlen(u.sun_path))) return 3;
	}
	signal(SIGUSR1, on_usr1);
	block_usr1();
	pid_t k = fork();
	if (k == 0) child();
	close(ch[1]);
	put_status(dir, "unixsk.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		verify();
	}
}
