/* Sockets cryo refuses, one per run (argv[2]): "vsock" (AF_VSOCK), "mptcp" (an MPTCP socket),
 * "raw" (a raw IPv4 socket), "xdp" (AF_XDP), "nlqueue" (a NETLINK_ROUTE socket with the answer to a
 * link dump queued, unread), "ring" (an AF_PACKET socket with a PACKET_RX_RING mapped). Writes
 * DIR/skrefuse.ready; on SIGUSR1 checks the socket is as it was (same family; the netlink answer
 * still queued) and writes DIR/skrefuse.verify "ok" or "FAIL <what>". */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

int main(int argc, char **argv)
{
	if (argc < 3)
		return 1;
	const char *dir = argv[1], *mode = argv[2];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	int s = -1, family = 0;
	if (!strcmp(mode, "vsock"))
		s = socket(family = AF_VSOCK, SOCK_STREAM, 0);
	else if (!strcmp(mode, "mptcp"))
		s = socket(family = AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	else if (!strcmp(mode, "raw"))
		s = socket(family = AF_INET, SOCK_RAW, IPPROTO_ICMP);
	else if (!strcmp(mode, "raw6"))
		s = socket(family = AF_INET6, SOCK_RAW, IPPROTO_RAW);
	else if (!strcmp(mode, "icmp"))
		s = socket(family = AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	else if (!strcmp(mode, "icmp6"))
		s = socket(family = AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
	else if (!strcmp(mode, "mptcp6"))
		s = socket(family = AF_INET6, SOCK_STREAM, IPPROTO_MPTCP);
	else if (!strcmp(mode, "xdp"))
		s = socket(family = 44, SOCK_RAW, 0);
	else if (!strcmp(mode, "nlqueue")) {
		s = socket(family = AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		struct {
			struct nlmsghdr h;
			struct rtgenmsg g;
		} r = { { NLMSG_LENGTH(sizeof(struct rtgenmsg)), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0 }, { AF_UNSPEC } };
		if (s < 0 || send(s, &r, r.h.nlmsg_len, 0) < 0)
			return 3;
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			return 4;
	} else if (!strcmp(mode, "ring")) {
		s = socket(family = AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
		struct tpacket_req req = { .tp_block_size = 4096, .tp_block_nr = 4, .tp_frame_size = 2048, .tp_frame_nr = 8 };
		if (s < 0 || setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) ||
		    mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0) == MAP_FAILED)
			return 5;
	}
	if (s < 0)
		return 2;
	put_status(dir, "skrefuse.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		int d = -1;
		socklen_t l = sizeof(d);
		const char *fail = NULL;
		if (getsockopt(s, SOL_SOCKET, SO_DOMAIN, &d, &l) || d != family)
			fail = "the socket changed";
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (!strcmp(mode, "nlqueue") && poll(&p, 1, 0) != 1)
			fail = "the queued answer is gone";
		put_status(dir, "skrefuse.verify", fail ? "FAIL\n" : "ok\n");
	}
}
