/* Inet sockets for tests/restore/inet.rs (run in a fresh network namespace with lo up):
 * - TCP listener on 127.0.0.1:7401 (SO_REUSEADDR, TCP_NODELAY, SO_KEEPALIVE with TCP_KEEPIDLE 77,
 *   TCP_KEEPINTVL 11, TCP_KEEPCNT 5, SO_RCVBUF 65536, SO_SNDBUF 32768, IP_TOS 0x10, backlog 7, O_NONBLOCK),
 * - TCP listener on [::1]:7402 (IPV6_V6ONLY, SO_REUSEPORT, SO_LINGER 3, backlog 3),
 * - a TCP socket bound to 127.0.0.1:7403, not listening; an unbound TCP socket (TCP_CORK off, TCP_NODELAY),
 * - UDP pairs 127.0.0.1:7410 <-> 127.0.0.1:7411 and [::1]:7412 <-> [::1]:7413, connected both ways, with
 *   datagrams queued both ways (sizes 1, 0, 1000, 65000: boundaries must be kept),
 * - an unconnected UDP socket bound to 0.0.0.0:7420 (SO_BROADCAST) with an empty queue.
 * With a second argument "plain" no datagram is queued (CRIU drops UDP queues: the cross-checks).
 * Writes DIR/inetsk.ready; on SIGUSR1 checks every option, address and queue, then that each listener
 * accepts a new connection and carries data, that each UDP pair still talks both ways and the
 * unconnected one receives, and writes DIR/inetsk.verify "inetsk=ok" or "inetsk=<first failure>". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static char dir[256], fail[512];
static int plain;
#define CHECK(c, ...) do { if (!fail[0] && !(c)) snprintf(fail, sizeof(fail), __VA_ARGS__); } while (0)

static int opt(int s, int l, int n) { int v = -1; socklen_t len = sizeof(v); if (getsockopt(s, l, n, &v, &len)) return -1000 - errno; return v; }
static void set(int s, int l, int n, int v) { if (setsockopt(s, l, n, &v, sizeof(v))) { perror("setsockopt"); exit(3); } }
static struct sockaddr_in a4(int port) { struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) }; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK); return a; }
static struct sockaddr_in6 a6(int port) { struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT }; return a; }
static int port_of(int s) { struct sockaddr_storage a; socklen_t l = sizeof(a); if (getsockname(s, (void *)&a, &l)) return -1; return ntohs(a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port : ((struct sockaddr_in6 *)&a)->sin6_port); }
static const int sizes[] = { 1, 0, 1000, 65000 };
static unsigned char pat(int i, int j, int k) { return (unsigned char)(i * 31 + j * 7 + k); }

static void queue(int from, int tag)
{
	static unsigned char b[65536];
	for (int j = 0; j < 4; j++) {
		for (int k = 0; k < sizes[j]; k++) b[k] = pat(tag, j, k);
		if (send(from, b, sizes[j], 0) != sizes[j]) { perror("send"); exit(4); }
	}
}

static void check_queue(int s, int tag, const char *what)
{
	static unsigned char b[65536];
	for (int j = 0; j < 4; j++) {
		ssize_t n = recv(s, b, sizeof(b), MSG_DONTWAIT);
		CHECK(n == sizes[j], "%s datagram %d: %zd bytes, want %d (errno %d)", what, j, n, sizes[j], errno);
		for (int k = 0; n == sizes[j] && k < n; k++) CHECK(b[k] == pat(tag, j, k), "%s datagram %d byte %d", what, j, k);
	}
	CHECK(recv(s, b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN, "%s: more datagrams than queued", what);
}

static void talk_udp(int a, int b, const char *what)
{
	char buf[16];
	CHECK(send(a, "ping", 4, 0) == 4, "%s send", what);
	usleep(10000);
	CHECK(recv(b, buf, sizeof(buf), MSG_DONTWAIT) == 4 && !memcmp(buf, "ping", 4), "%s: new datagram a->b", what);
	CHECK(send(b, "pong", 4, 0) == 4, "%s send back", what);
	usleep(10000);
	CHECK(recv(a, buf, sizeof(buf), MSG_DONTWAIT) == 4 && !memcmp(buf, "pong", 4), "%s: new datagram b->a", what);
}

static void connect_accept(int l, struct sockaddr *to, socklen_t tl, const char *what)
{
	int c = socket(to->sa_family, SOCK_STREAM, 0);
	CHECK(connect(c, to, tl) == 0, "%s: connect after restore: errno %d", what, errno);
	usleep(20000);
	int fl = fcntl(l, F_GETFL);
	fcntl(l, F_SETFL, fl | O_NONBLOCK);
	int a = accept(l, NULL, NULL);
	fcntl(l, F_SETFL, fl);
	CHECK(a >= 0, "%s: accept: errno %d", what, errno);
	char buf[8] = "";
	if (a >= 0) {
		CHECK(write(c, "hello", 5) == 5 && read(a, buf, 5) == 5 && !memcmp(buf, "hello", 5), "%s: data", what);
		close(a);
	}
	close(c);
}

int main(int argc, char **argv)
{
	if (argc < 2 || chdir(argv[1])) return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	plain = argc > 2 && !strcmp(argv[2], "plain");
	signal(SIGUSR1, on_usr1);
	block_usr1();

	int l4 = socket(AF_INET, SOCK_STREAM, 0);
	set(l4, SOL_SOCKET, SO_REUSEADDR, 1);
	set(l4, IPPROTO_TCP, TCP_NODELAY, 1);
	set(l4, SOL_SOCKET, SO_KEEPALIVE, 1);
	set(l4, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	set(l4, IPPROTO_TCP, TCP_KEEPINTVL, 11);
	set(l4, IPPROTO_TCP, TCP_KEEPCNT, 5);
	set(l4, SOL_SOCKET, SO_RCVBUF, 65536);
	set(l4, SOL_SOCKET, SO_SNDBUF, 32768);
	set(l4, IPPROTO_IP, IP_TOS, 0x10);
	struct sockaddr_in x4 = a4(7401);
	if (bind(l4, (void *)&x4, sizeof(x4)) || listen(l4, 7)) return 5;
	fcntl(l4, F_SETFL, O_NONBLOCK);
	int rcvbuf = opt(l4, SOL_SOCKET, SO_RCVBUF), sndbuf = opt(l4, SOL_SOCKET, SO_SNDBUF);

	int l6 = socket(AF_INET6, SOCK_STREAM, 0);
	set(l6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	set(l6, SOL_SOCKET, SO_REUSEPORT, 1);
	struct linger lg = { 1, 3 };
	setsockopt(l6, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	struct sockaddr_in6 x6 = a6(7402);
	if (bind(l6, (void *)&x6, sizeof(x6)) || listen(l6, 3)) return 6;

	int bound = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in xb = a4(7403);
	if (bind(bound, (void *)&xb, sizeof(xb))) return 7;
	int fresh = socket(AF_INET, SOCK_STREAM, 0);
	set(fresh, IPPROTO_TCP, TCP_NODELAY, 1);

	int u[4], uf[2] = { AF_INET, AF_INET6 };
	for (int p = 0; p < 2; p++) {
		for (int i = 0; i < 2; i++) {
			int s = u[2 * p + i] = socket(uf[p], SOCK_DGRAM, 0);
			if (uf[p] == AF_INET) { struct sockaddr_in a = a4(7410 + i); if (bind(s, (void *)&a, sizeof(a))) return 8; }
			else { struct sockaddr_in6 a = a6(7412 + i); if (bind(s, (void *)&a, sizeof(a))) return 8; }
		}
		for (int i = 0; i < 2; i++) {
			int s = u[2 * p + i];
			if (uf[p] == AF_INET) { struct sockaddr_in a = a4(7410 + 1 - i); if (connect(s, (void *)&a, sizeof(a))) return 9; }
			else { struct sockaddr_in6 a = a6(7412 + 1 - i); if (connect(s, (void *)&a, sizeof(a))) return 9; }
		}
		if (!plain) {
			queue(u[2 * p], 10 * p + 1);     /* to u[2p+1] */
			queue(u[2 * p + 1], 10 * p + 2); /* to u[2p] */
		}
	}
	int open_udp = socket(AF_INET, SOCK_DGRAM, 0);
	set(open_udp, SOL_SOCKET, SO_BROADCAST, 1);
	struct sockaddr_in xo = { .sin_family = AF_INET, .sin_port = htons(7420) };
	if (bind(open_udp, (void *)&xo, sizeof(xo))) return 10;
	usleep(50000);
	put_status(dir, "inetsk.ready", "ready\n");

	for (;;) {
		wait_usr1();
		usr1 = 0;
		fail[0] = 0;
		CHECK(opt(l4, SOL_SOCKET, SO_ACCEPTCONN) == 1, "l4 not listening");
		CHECK(opt(l4, SOL_SOCKET, SO_REUSEADDR) == 1, "l4 SO_REUSEADDR");
		CHECK(opt(l4, SOL_SOCKET, SO_REUSEPORT) == 0, "l4 SO_REUSEPORT %d", opt(l4, SOL_SOCKET, SO_REUSEPORT));
		CHECK(opt(l4, IPPROTO_TCP, TCP_NODELAY) == 1, "l4 TCP_NODELAY");
		CHECK(opt(l4, SOL_SOCKET, SO_KEEPALIVE) == 1, "l4 SO_KEEPALIVE");
		CHECK(opt(l4, IPPROTO_TCP, TCP_KEEPIDLE) == 77, "l4 TCP_KEEPIDLE %d", opt(l4, IPPROTO_TCP, TCP_KEEPIDLE));
		CHECK(opt(l4, IPPROTO_TCP, TCP_KEEPINTVL) == 11, "l4 TCP_KEEPINTVL");
		CHECK(opt(l4, IPPROTO_TCP, TCP_KEEPCNT) == 5, "l4 TCP_KEEPCNT");
		CHECK(opt(l4, SOL_SOCKET, SO_RCVBUF) == rcvbuf, "l4 SO_RCVBUF %d want %d", opt(l4, SOL_SOCKET, SO_RCVBUF), rcvbuf);
		CHECK(opt(l4, SOL_SOCKET, SO_SNDBUF) == sndbuf, "l4 SO_SNDBUF %d want %d", opt(l4, SOL_SOCKET, SO_SNDBUF), sndbuf);
		CHECK(opt(l4, IPPROTO_IP, IP_TOS) == 0x10, "l4 IP_TOS %d", opt(l4, IPPROTO_IP, IP_TOS));
		CHECK(fcntl(l4, F_GETFL) & O_NONBLOCK, "l4 O_NONBLOCK");
		CHECK(port_of(l4) == 7401, "l4 port %d", port_of(l4));
		struct tcp_info ti; socklen_t til = sizeof(ti);
		CHECK(getsockopt(l4, IPPROTO_TCP, TCP_INFO, &ti, &til) == 0 && ti.tcpi_sacked == 7, "l4 backlog %u", ti.tcpi_sacked);
		CHECK(opt(l6, SOL_SOCKET, SO_ACCEPTCONN) == 1, "l6 not listening");
		CHECK(opt(l6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "l6 IPV6_V6ONLY");
		CHECK(opt(l6, SOL_SOCKET, SO_REUSEPORT) == 1, "l6 SO_REUSEPORT");
		CHECK(opt(l6, SOL_SOCKET, SO_REUSEADDR) == 0, "l6 SO_REUSEADDR");
		CHECK(opt(l6, IPPROTO_TCP, TCP_NODELAY) == 0, "l6 TCP_NODELAY");
		struct linger g = { 0, 0 }; socklen_t gl = sizeof(g);
		CHECK(getsockopt(l6, SOL_SOCKET, SO_LINGER, &g, &gl) == 0 && g.l_onoff == 1 && g.l_linger == 3, "l6 SO_LINGER");
		til = sizeof(ti);
		CHECK(getsockopt(l6, IPPROTO_TCP, TCP_INFO, &ti, &til) == 0 && ti.tcpi_sacked == 3, "l6 backlog %u", ti.tcpi_sacked);
		CHECK(port_of(bound) == 7403 && opt(bound, SOL_SOCKET, SO_ACCEPTCONN) == 0, "bound socket");
		CHECK(port_of(fresh) == 0 && opt(fresh, IPPROTO_TCP, TCP_NODELAY) == 1, "unbound socket");
		for (int p = 0; p < 2; p++) {
			if (!plain) {
				check_queue(u[2 * p + 1], 10 * p + 1, p ? "v6 b" : "v4 b");
				check_queue(u[2 * p], 10 * p + 2, p ? "v6 a" : "v4 a");
			}
			talk_udp(u[2 * p], u[2 * p + 1], p ? "v6 pair" : "v4 pair");
		}
		CHECK(opt(open_udp, SOL_SOCKET, SO_BROADCAST) == 1 && port_of(open_udp) == 7420, "open udp");
		{
			int c = socket(AF_INET, SOCK_DGRAM, 0);
			struct sockaddr_in to = a4(7420);
			char b[8];
			sendto(c, "x", 1, 0, (void *)&to, sizeof(to));
			usleep(10000);
			CHECK(recv(open_udp, b, sizeof(b), MSG_DONTWAIT) == 1, "open udp receives");
			close(c);
		}
		connect_accept(l4, (void *)&x4, sizeof(x4), "l4");
		connect_accept(l6, (void *)&x6, sizeof(x6), "l6");
		/* The bound socket can still listen on its port. */
		CHECK(listen(bound, 1) == 0, "listen on the bound socket: errno %d", errno);
		char out[600];
		snprintf(out, sizeof(out), "inetsk=%s\n", fail[0] ? fail : "ok");
		put_status(dir, "inetsk.verify", out);
	}
}
