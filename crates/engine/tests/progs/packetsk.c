/* Packet sockets for dump/restore (run in a network namespace of the test's, lo up): a SOCK_DGRAM
 * ETH_P_IP socket bound to lo with PACKET_AUXDATA, a promiscuous membership on lo and a classic BPF
 * filter passing UDP only; a SOCK_RAW ETH_P_ALL socket on every interface with TPACKET_V2,
 * PACKET_RESERVE 64 and a hash fanout group. Writes DIR/packetsk.ready; on SIGUSR1 checks the
 * options, makes TCP traffic on 127.0.0.1 (which the filter drops) and then a UDP datagram to
 * 127.0.0.1:7777, and checks that the first socket receives the datagram from lo with its aux data,
 * and the second sees traffic too. Writes DIR/packetsk.verify "packetsk=ok" or "packetsk=FAIL <what>". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static char dir[256], fail[256];
static int pk1, pk2, lo;

#define CHECK(c, what) do { if (!(c) && !fail[0]) snprintf(fail, sizeof(fail), "%s (line %d, errno %d)", what, __LINE__, errno); } while (0)

static int opt(int s, int o)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(s, SOL_PACKET, o, &v, &l))
		return -1;
	return v;
}

static void drain(int s)
{
	char b[70000];
	while (recv(s, b, sizeof(b), MSG_DONTWAIT) > 0)
		;
}

static void verify(void)
{
	CHECK(opt(pk1, PACKET_AUXDATA) == 1, "PACKET_AUXDATA");
	CHECK(opt(pk2, PACKET_VERSION) == TPACKET_V2, "PACKET_VERSION");
	CHECK(opt(pk2, PACKET_RESERVE) == 64, "PACKET_RESERVE");
	CHECK(opt(pk2, PACKET_FANOUT) == (42 | PACKET_FANOUT_HASH << 16), "PACKET_FANOUT");
	struct sockaddr_ll me = {0};
	socklen_t l = sizeof(me);
	CHECK(getsockname(pk1, (void *)&me, &l) == 0 && me.sll_ifindex == lo && me.sll_protocol == htons(ETH_P_IP),
	      "first socket's binding");
	l = 0;
	CHECK(getsockopt(pk1, SOL_SOCKET, SO_GET_FILTER, NULL, &l) == 0 && l == 4, "first socket's filter");
	/* TCP to a closed port: a SYN and a RST the filter drops. */
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(1), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int t = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(t >= 0 && connect(t, (void *)&to, sizeof(to)) < 0 && errno == ECONNREFUSED, "TCP to a closed port");
	close(t);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	to.sin_port = htons(7777);
	CHECK(sendto(u, "packet-after-restore", 20, 0, (void *)&to, sizeof(to)) == 20, "sendto");
	close(u);
	struct pollfd p = { .fd = pk1, .events = POLLIN };
	CHECK(poll(&p, 1, 5000) == 1, "nothing on the first socket");
	unsigned char b[2048];
	char ctl[256];
	struct sockaddr_ll from = {0};
	struct iovec iov = { b, sizeof(b) };
	struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	ssize_t n = recvmsg(pk1, &m, MSG_DONTWAIT);
	CHECK(n >= 28, "recvmsg");
	if (n >= 28) {
		CHECK(b[9] == IPPROTO_UDP, "the filter let a non-UDP packet through");
		CHECK(n >= 48 && !memcmp(b + 28, "packet-after-restore", 20), "the datagram's bytes");
	}
	CHECK(from.sll_ifindex == lo, "the packet did not come from lo");
	int aux = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA)
			aux = 1;
	CHECK(aux, "no PACKET_AUXDATA control message");
	p.fd = pk2;
	CHECK(poll(&p, 1, 5000) == 1, "nothing on the second socket");
	usleep(100000);
	drain(pk1);
	drain(pk2);
	char out[300];
	snprintf(out, sizeof(out), fail[0] ? "packetsk=FAIL %s\n" : "packetsk=ok%s\n", fail);
	put_status(dir, "packetsk.verify", out);
	fail[0] = 0;
}

int main(int argc, char **argv)
{
	snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : ".");
	signal(SIGUSR1, on_usr1);
	block_usr1();
	lo = if_nametoindex("lo");
	pk1 = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = lo };
	int one = 1;
	struct packet_mreq mr = { .mr_ifindex = lo, .mr_type = PACKET_MR_PROMISC };
	/* ldb [9]; jeq #17, accept, drop */
	struct sock_filter udp[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = { .len = 4, .filter = udp };
	if (lo <= 0 || pk1 < 0 || bind(pk1, (void *)&a, sizeof(a)) ||
	    setsockopt(pk1, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) ||
	    setsockopt(pk1, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) ||
	    setsockopt(pk1, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		return 2;
	pk2 = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	int v2 = TPACKET_V2, reserve = 64, fanout = 42 | PACKET_FANOUT_HASH << 16;
	if (pk2 < 0 || setsockopt(pk2, SOL_PACKET, PACKET_VERSION, &v2, sizeof(v2)) ||
	    setsockopt(pk2, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof(reserve)) ||
	    setsockopt(pk2, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)))
		return 3;
	put_status(dir, "packetsk.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		verify();
	}
}
