/* Queues read with the program's own peek offsets, for tests/restore/inet.rs (a fresh network
 * namespace with lo up):
 * - an unconnected UDP socket bound to 0.0.0.0:7500 with three datagrams queued from three senders
 *   (127.0.0.1:7501, 127.0.0.2:7502, 127.0.0.1:7501 again), the senders closed since;
 * - an unconnected UDP socket bound to [::1]:7510 with two datagrams from [::1]:7511 and [::1]:7512
 *   (closed), SO_PEEK_OFF 1 set after one MSG_PEEK;
 * - a unix stream socketpair with "abcdefgh" queued at b and SO_PEEK_OFF 3 (the program peeked 3 bytes);
 * - a unix datagram socketpair with two datagrams queued at b and SO_PEEK_OFF 0;
 * - a UDP socket bound to 0.0.0.0:7520 that joined 239.7.7.7 on lo, and 239.7.7.8 on lo for source
 *   127.0.0.5 only (an include filter), with IP_MULTICAST_TTL 4 and IP_MULTICAST_LOOP 0
 *   (lo is made multicast with a 224.0.0.0/4 route first);
 * - a UDP socket bound to 127.0.0.1:7530 with a classic BPF filter that drops every datagram, one
 *   datagram queued before the filter was attached.
 * Writes DIR/udpq.ready; on SIGUSR1 checks (without consuming: the next round checks again) that
 * each queue holds the same datagrams from the same senders and that each MSG_PEEK goes on from the
 * dumped offset, and writes DIR/udpq.verify "udpq=ok" or "udpq=<first failure>". */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static char dir[256], fail[512];
#define CHECK(c, ...) do { if (!fail[0] && !(c)) snprintf(fail, sizeof(fail), __VA_ARGS__); } while (0)

static struct sockaddr_in a4(const char *ip, int port) { struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) }; inet_pton(AF_INET, ip, &a.sin_addr); return a; }
static struct sockaddr_in6 a6(int port) { struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_LOOPBACK_INIT }; return a; }
static int peekoff(int s) { int v = -5; socklen_t l = sizeof(v); getsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &v, &l); return v; }
static void set_peekoff(int s, int v) { if (setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v))) { perror("SO_PEEK_OFF"); exit(3); } }

static void send_from4(const char *ip, int port, const char *msg)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in me = a4(ip, port), to = a4("127.0.0.1", 7500);
	if (bind(s, (void *)&me, sizeof(me))) { perror("bind sender"); exit(2); }
	sendto(s, msg, strlen(msg), 0, (void *)&to, sizeof(to));
	close(s);
}

static void send_from6(int port, const char *msg)
{
	int s = socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_in6 me = a6(port), to = a6(7510);
	if (bind(s, (void *)&me, sizeof(me))) { perror("bind sender6"); exit(2); }
	sendto(s, msg, strlen(msg), 0, (void *)&to, sizeof(to));
	close(s);
}

/* The datagrams of an unconnected v4 socket, peeked one by one (SO_PEEK_OFF moves over them). */
static void check_v4(int s)
{
	static const char *msgs[] = { "one", "two", "three" };
	static const char *ips[] = { "127.0.0.1", "127.0.0.2", "127.0.0.1" };
	static const int ports[] = { 7501, 7502, 7501 };
	set_peekoff(s, 0);
	for (int i = 0; i < 3; i++) {
		char b[64] = { 0 }, ip[32] = { 0 };
		struct sockaddr_in from; socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT, (void *)&from, &fl);
		inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
		CHECK(n == (ssize_t)strlen(msgs[i]) && !memcmp(b, msgs[i], n), "v4 datagram %d: %zd bytes '%s' (errno %d)", i, n, b, errno);
		CHECK(!strcmp(ip, ips[i]) && ntohs(from.sin_port) == ports[i], "v4 datagram %d from %s:%d", i, ip, ntohs(from.sin_port));
	}
	char b[8];
	CHECK(recv(s, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN, "v4: more than 3 datagrams");
	set_peekoff(s, -1);
}

static int mc_filter(int s, const char *group, int *nsrc, char *src, size_t srclen)
{
	struct ip_msfilter f[4];
	memset(f, 0, sizeof(f));
	inet_pton(AF_INET, group, &f[0].imsf_multiaddr);
	inet_pton(AF_INET, "127.0.0.1", &f[0].imsf_interface);
	f[0].imsf_numsrc = 8;
	socklen_t l = sizeof(f);
	if (getsockopt(s, IPPROTO_IP, IP_MSFILTER, f, &l))
		return -errno;
	*nsrc = f[0].imsf_numsrc;
	if (*nsrc)
		inet_ntop(AF_INET, &f[0].imsf_slist[0], src, srclen);
	return f[0].imsf_fmode;
}

int main(int argc, char **argv)
{
	snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : ".");
	signal(SIGUSR1, on_usr1);
	block_usr1();
	int u4 = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(7500) };
	if (bind(u4, (void *)&any, sizeof(any))) return 10;
	send_from4("127.0.0.1", 7501, "one");
	send_from4("127.0.0.2", 7502, "two");
	send_from4("127.0.0.1", 7501, "three");
	int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_in6 m6 = a6(7510);
	if (bind(u6, (void *)&m6, sizeof(m6))) return 11;
	send_from6(7511, "six");
	send_from6(7512, "seven");
	usleep(20000);
	/* The program peeked the first datagram: its offset is 1 byte into the queue... */
	set_peekoff(u6, 0);
	char t[8];
	if (recv(u6, t, 1, MSG_PEEK) != 1) return 12;
	int sp[2], dp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dp)) return 13;
	write(sp[0], "abcdefgh", 8);
	set_peekoff(sp[1], 0);
	if (recv(sp[1], t, 3, MSG_PEEK) != 3) return 14;
	write(dp[0], "dg1", 3);
	write(dp[0], "dg-two", 6);
	set_peekoff(dp[1], 0);
	if (system("ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"))
		return 15;
	int mc = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in mca = { .sin_family = AF_INET, .sin_port = htons(7520) };
	int one = 1;
	setsockopt(mc, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(mc, (void *)&mca, sizeof(mca))) return 16;
	struct ip_mreqn mr = { .imr_ifindex = (int)if_nametoindex("lo") };
	inet_pton(AF_INET, "239.7.7.7", &mr.imr_multiaddr);
	if (setsockopt(mc, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr))) { perror("IP_ADD_MEMBERSHIP"); return 17; }
	struct ip_mreq_source ms = { 0 };
	inet_pton(AF_INET, "239.7.7.8", &ms.imr_multiaddr);
	inet_pton(AF_INET, "127.0.0.1", &ms.imr_interface);
	inet_pton(AF_INET, "127.0.0.5", &ms.imr_sourceaddr);
	if (setsockopt(mc, IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, &ms, sizeof(ms))) { perror("IP_ADD_SOURCE_MEMBERSHIP"); return 18; }
	int ttl = 4, loop = 0;
	setsockopt(mc, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
	setsockopt(mc, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop));
	int fl = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in fla = a4("127.0.0.1", 7530);
	if (bind(fl, (void *)&fla, sizeof(fla))) return 19;
	{
		int tx = socket(AF_INET, SOCK_DGRAM, 0);
		sendto(tx, "before", 6, 0, (void *)&fla, sizeof(fla));
		close(tx);
		usleep(10000);
	}
	struct sock_filter drop[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
	struct sock_fprog prog = { .len = 1, .filter = drop };
	if (setsockopt(fl, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog))) { perror("SO_ATTACH_FILTER"); return 20; }
	put_status(dir, "udpq.ready", "ready\n");
	int po6 = peekoff(u6), pos = peekoff(sp[1]), pod = peekoff(dp[1]);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		fail[0] = 0;
		check_v4(u4);
		CHECK(peekoff(u6) == po6, "v6 SO_PEEK_OFF %d, want %d", peekoff(u6), po6);
		CHECK(peekoff(sp[1]) == 3, "stream SO_PEEK_OFF %d", peekoff(sp[1]));
		CHECK(peekoff(dp[1]) == 0, "dgram SO_PEEK_OFF %d", peekoff(dp[1]));
		{
			/* The stream peek goes on after "abc"; then back to 3 for the next round. */
			char b[16] = { 0 };
			ssize_t n = recv(sp[1], b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
			CHECK(n == 5 && !memcmp(b, "defgh", 5), "stream peek: %zd '%s'", n, b);
			set_peekoff(sp[1], pos);
		}
		{
			/* v6: each datagram once, with its sender, from the dumped offset on. */
			char b[16] = { 0 };
			struct sockaddr_in6 from; socklen_t fl;
			set_peekoff(u6, 0);
			for (int i = 0; i < 2; i++) {
				memset(b, 0, sizeof(b));
				fl = sizeof(from);
				ssize_t n = recvfrom(u6, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT, (void *)&from, &fl);
				const char *want = i ? "seven" : "six";
				CHECK(n == (ssize_t)strlen(want) && !memcmp(b, want, n), "v6 datagram %d: %zd '%s'", i, n, b);
				CHECK(ntohs(from.sin6_port) == 7511 + i, "v6 datagram %d from port %d", i, ntohs(from.sin6_port));
			}
			set_peekoff(u6, po6);
		}
		{
			char b[16] = { 0 };
			ssize_t n = recv(dp[1], b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
			CHECK(n == 3 && !memcmp(b, "dg1", 3), "dgram peek 1: %zd '%s'", n, b);
			n = recv(dp[1], b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
			CHECK(n == 6 && !memcmp(b, "dg-two", 6), "dgram peek 2: %zd '%s'", n, b);
			set_peekoff(dp[1], pod);
		}
		{
			int v = -1; socklen_t l = sizeof(v);
			getsockopt(mc, IPPROTO_IP, IP_MULTICAST_TTL, &v, &l);
			CHECK(v == 4, "IP_MULTICAST_TTL %d", v);
			l = sizeof(v);
			getsockopt(mc, IPPROTO_IP, IP_MULTICAST_LOOP, &v, &l);
			CHECK(v == 0, "IP_MULTICAST_LOOP %d", v);
			int n = -1; char src[32] = "";
			int mode = mc_filter(mc, "239.7.7.7", &n, src, sizeof(src));
			CHECK(mode == MCAST_EXCLUDE && n == 0, "239.7.7.7: mode %d, %d sources", mode, n);
			mode = mc_filter(mc, "239.7.7.8", &n, src, sizeof(src));
			CHECK(mode == MCAST_INCLUDE && n == 1 && !strcmp(src, "127.0.0.5"), "239.7.7.8: mode %d, %d sources %s", mode, n, src);
			CHECK(mc_filter(mc, "239.7.7.9", &n, src, sizeof(src)) == -EADDRNOTAVAIL, "239.7.7.9 joined");
			/* A datagram to the group arrives (from a sender on lo, looping back). */
			int tx = socket(AF_INET, SOCK_DGRAM, 0);
			struct ip_mreqn ifr = { .imr_ifindex = (int)if_nametoindex("lo") };
			setsockopt(tx, IPPROTO_IP, IP_MULTICAST_IF, &ifr, sizeof(ifr));
			struct sockaddr_in g = { .sin_family = AF_INET, .sin_port = htons(7520) };
			inet_pton(AF_INET, "239.7.7.7", &g.sin_addr);
			sendto(tx, "mc", 2, 0, (void *)&g, sizeof(g));
			close(tx);
			char b[8];
			usleep(50000);
			ssize_t k = recv(mc, b, sizeof(b), MSG_DONTWAIT);
			CHECK(k == 2 && !memcmp(b, "mc", 2), "the group's datagram: %zd (errno %d)", k, errno);
		}
		{
			struct sock_filter got[4];
			socklen_t l = 4;
			CHECK(getsockopt(fl, SOL_SOCKET, SO_GET_FILTER, got, &l) == 0 && l == 1 && got[0].code == (BPF_RET | BPF_K) && got[0].k == 0,
			      "the filter: errno %d, %u instructions", errno, l);
			char b[16];
			int tx = socket(AF_INET, SOCK_DGRAM, 0);
			sendto(tx, "after", 5, 0, (void *)&fla, sizeof(fla));
			close(tx);
			usleep(10000);
			ssize_t n = recv(fl, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
			CHECK(n == 6 && !memcmp(b, "before", 6), "the filtered socket's queue: %zd", n);
			n = recv(fl, b, sizeof(b), MSG_DONTWAIT);
			n = recv(fl, b, sizeof(b), MSG_DONTWAIT);
			CHECK(n < 0 && errno == EAGAIN, "a datagram got through the filter: %zd", n);
			/* Put it back for the next round. */
			int tx2 = socket(AF_INET, SOCK_DGRAM, 0);
			setsockopt(fl, SOL_SOCKET, SO_DETACH_FILTER, NULL, 0);
			sendto(tx2, "before", 6, 0, (void *)&fla, sizeof(fla));
			close(tx2);
			usleep(10000);
			setsockopt(fl, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
		}
		char out[600];
		snprintf(out, sizeof(out), "udpq=%s\n", fail[0] ? fail : "ok");
		put_status(dir, "udpq.verify", out);
	}
}
