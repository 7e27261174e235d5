/* Netlink sockets for dump/restore (run in a network namespace of the test's): a NETLINK_ROUTE socket
 * bound (autobind port id) to the groups RTMGRP_LINK | RTMGRP_IPV4_IFADDR; a NETLINK_ROUTE socket
 * bound to an explicit port id, joined to RTNLGRP_IPV6_IFADDR by NETLINK_ADD_MEMBERSHIP, connected to
 * the kernel, O_NONBLOCK, with SO_RCVBUF set and a classic BPF filter (accept all) attached; an
 * unbound NETLINK_GENERIC socket. Writes DIR/netlinksk.ready; on SIGUSR1 checks the port ids, groups,
 * memberships, flags and options, asks the generic socket for the "nlctrl" family, adds an address
 * to lo through the second socket, and checks the first one gets the RTM_NEWADDR notification (then
 * removes the address). Writes DIR/netlinksk.verify "netlinksk=ok" or "netlinksk=FAIL <what>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#define PORT2 0x7a000001u

static char dir[256], fail[256];
static int mon, ctl, gen;
static unsigned mon_port, gen_port, rcvbuf;

#define CHECK(c, what) do { if (!(c) && !fail[0]) snprintf(fail, sizeof(fail), "%s (line %d, errno %d)", what, __LINE__, errno); } while (0)

static struct sockaddr_nl name_of(int s)
{
	struct sockaddr_nl a = {0};
	socklen_t l = sizeof(a);
	getsockname(s, (void *)&a, &l);
	return a;
}

/* RTM_NEWADDR / RTM_DELADDR of 10.77.0.1/32 on lo through ctl; returns the ack's error. */
static int addr_req(int type)
{
	struct {
		struct nlmsghdr h;
		struct ifaddrmsg a;
		char attrs[64];
	} r;
	memset(&r, 0, sizeof(r));
	r.h.nlmsg_type = type;
	r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0);
	r.h.nlmsg_seq = 7;
	r.a.ifa_family = AF_INET;
	r.a.ifa_prefixlen = 32;
	r.a.ifa_index = if_nametoindex("lo");
	struct rtattr *ra = (void *)r.attrs;
	ra->rta_type = IFA_LOCAL;
	ra->rta_len = RTA_LENGTH(4);
	inet_pton(AF_INET, "10.77.0.1", RTA_DATA(ra));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(r.a)) + RTA_ALIGN(ra->rta_len);
	if (send(ctl, &r, r.h.nlmsg_len, 0) < 0)
		return -errno;
	struct pollfd p = { .fd = ctl, .events = POLLIN };
	char buf[8192];
	for (;;) {
		if (poll(&p, 1, 5000) != 1)
			return -ETIMEDOUT;
		ssize_t n = recv(ctl, buf, sizeof(buf), 0);
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n))
			if (h->nlmsg_type == NLMSG_ERROR)
				return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
	}
}

static void verify(void)
{
	int v = 0;
	socklen_t l = sizeof(v);
	struct sockaddr_nl a = name_of(mon);
	CHECK(a.nl_pid == mon_port, "monitor socket lost its port id");
	CHECK(a.nl_groups == (RTMGRP_LINK | RTMGRP_IPV4_IFADDR), "monitor socket lost its groups");
	a = name_of(ctl);
	CHECK(a.nl_pid == PORT2, "control socket lost its port id");
	unsigned groups[4] = {0};
	l = sizeof(groups);
	CHECK(getsockopt(ctl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &l) == 0, "NETLINK_LIST_MEMBERSHIPS");
	CHECK(groups[0] & (1u << (RTNLGRP_IPV6_IFADDR - 1)), "control socket lost its membership");
	CHECK(fcntl(ctl, F_GETFL) & O_NONBLOCK, "control socket lost O_NONBLOCK");
	l = sizeof(v);
	CHECK(getsockopt(ctl, SOL_SOCKET, SO_RCVBUF, &v, &l) == 0 && (unsigned)v == rcvbuf, "SO_RCVBUF");
	struct sockaddr_nl peer = {0};
	l = sizeof(peer);
	CHECK(getpeername(ctl, (void *)&peer, &l) == 0 && peer.nl_pid == 0, "getpeername");
	l = 0;
	CHECK(getsockopt(ctl, SOL_SOCKET, SO_GET_FILTER, NULL, &l) == 0 && l == 1, "control socket lost its filter");
	l = sizeof(v);
	CHECK(getsockopt(gen, SOL_SOCKET, SO_PROTOCOL, &v, &l) == 0 && v == NETLINK_GENERIC, "generic socket protocol");
	CHECK(name_of(gen).nl_pid == gen_port, "generic socket's binding changed");
	/* CTRL_CMD_GETFAMILY "nlctrl" on the generic socket. */
	struct {
		struct nlmsghdr h;
		struct genlmsghdr g;
		char attrs[32];
	} q;
	memset(&q, 0, sizeof(q));
	q.h.nlmsg_type = GENL_ID_CTRL;
	q.h.nlmsg_flags = NLM_F_REQUEST;
	q.g.cmd = CTRL_CMD_GETFAMILY;
	q.g.version = 1;
	struct nlattr *na = (void *)q.attrs;
	na->nla_type = CTRL_ATTR_FAMILY_NAME;
	na->nla_len = NLA_HDRLEN + 7;
	memcpy((char *)na + NLA_HDRLEN, "nlctrl", 7);
	q.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(na->nla_len);
	CHECK(send(gen, &q, q.h.nlmsg_len, 0) == (ssize_t)q.h.nlmsg_len, "generic request");
	gen_port = name_of(gen).nl_pid; /* bound on the first send */
	struct pollfd p = { .fd = gen, .events = POLLIN };
	char buf[16384];
	CHECK(poll(&p, 1, 5000) == 1, "no answer on the generic socket");
	ssize_t n = recv(gen, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n > 0 && ((struct nlmsghdr *)buf)->nlmsg_type == GENL_ID_CTRL, "generic answer");
	/* A notification to the monitor. */
	CHECK(addr_req(RTM_NEWADDR) == 0, "adding 10.77.0.1 to lo");
	int got = 0;
	p.fd = mon;
	while (!got && poll(&p, 1, 5000) == 1) {
		n = recv(mon, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			break;
		for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n))
			if (h->nlmsg_type == RTM_NEWADDR)
				got = 1;
	}
	CHECK(got, "no RTM_NEWADDR notification on the monitor socket");
	CHECK(addr_req(RTM_DELADDR) == 0, "removing 10.77.0.1");
	/* Drain the RTM_DELADDR notification (the next dump must find the queue empty). */
	while (poll(&p, 1, 200) == 1 && recv(mon, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	char out[300];
	snprintf(out, sizeof(out), fail[0] ? "netlinksk=FAIL %s\n" : "netlinksk=ok%s\n", fail);
	put_status(dir, "netlinksk.verify", out);
	fail[0] = 0;
}

int main(int argc, char **argv)
{
	snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : ".");
	signal(SIGUSR1, on_usr1);
	block_usr1();
	mon = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR };
	if (mon < 0 || bind(mon, (void *)&a, sizeof(a)))
		return 2;
	mon_port = name_of(mon).nl_pid;
	ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK, NETLINK_ROUTE);
	struct sockaddr_nl b = { .nl_family = AF_NETLINK, .nl_pid = PORT2 };
	if (ctl < 0 || bind(ctl, (void *)&b, sizeof(b)))
		return 3;
	int g = RTNLGRP_IPV6_IFADDR, sz = 200000;
	socklen_t l = sizeof(rcvbuf);
	if (setsockopt(ctl, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)) ||
	    setsockopt(ctl, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)) ||
	    getsockopt(ctl, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &l))
		return 4;
	struct sock_filter all[] = { BPF_STMT(BPF_RET | BPF_K, 0xffff) };
	struct sock_fprog prog = { .len = 1, .filter = all };
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	if (setsockopt(ctl, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) ||
	    connect(ctl, (void *)&kernel, sizeof(kernel)))
		return 5;
	gen = socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
	if (gen < 0)
		return 6;
	char r[64];
	snprintf(r, sizeof(r), "ready port=%u\n", mon_port);
	put_status(dir, "netlinksk.ready", r);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		verify();
	}
}
