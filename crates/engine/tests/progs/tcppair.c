/* Two ends of one TCP connection, in two processes (each in its own network namespace in the tests):
 *   tcppair server DIR ADDR PORT   listens, accepts one connection, closes the listener; fills its send
 *                                  queue with SENT bytes of pattern 'S' (as much as the peer's window and
 *                                  its send buffer take), waits until the peer's 5000 bytes are in its
 *                                  receive queue, unread, and writes DIR/srv.ready "sent=N".
 *                                  Then it waits for DIR/go; reads the 5000 bytes (pattern 'P'), writes
 *                                  the rest of its TOTAL bytes, answers "ping" with "pong", writes
 *                                  DIR/srv.result "ok" or what went wrong.
 *   tcppair peer DIR ADDR PORT     connects (small receive buffer), sends 5000 bytes of 'P', writes
 *                                  DIR/peer.sent; waits for DIR/go, reads TOTAL bytes of 'S' and checks
 *                                  them, sends "ping", expects "pong", writes DIR/peer.result. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"

#define TOTAL (400 * 1024)
#define PEER_BYTES 5000

static unsigned char pat(char who, size_t i)
{
	return (unsigned char)(who + i * 7 + (i >> 9));
}

static int exists(const char *dir, const char *name)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static void wait_file(const char *dir, const char *name)
{
	while (!exists(dir, name))
		usleep(20000);
}

static int read_all(int fd, unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got);
		if (k <= 0)
			return -1;
		got += k;
	}
	return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t k = write(fd, buf + off, n - off);
		if (k <= 0)
			return -1;
		off += k;
	}
	return 0;
}

static void result(const char *dir, const char *name, const char *what)
{
	char t[256];
	snprintf(t, sizeof(t), "%s (errno %d)\n", what, errno);
	put_status(dir, name, strcmp(what, "ok") ? t : "ok\n");
}

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	const char *dir = argv[2];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])) };
	inet_pton(AF_INET, argv[3], &a.sin_addr);
	static unsigned char buf[TOTAL];
	int one = 1;
	if (!strcmp(argv[1], "server")) {
		int l = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1))
			return 3;
		put_status(dir, "srv.listening", "1\n");
		int s = accept(l, NULL, NULL);
		if (s < 0)
			return 4;
		close(l);
		int sb = 64 * 1024;
		setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		for (size_t i = 0; i < TOTAL; i++)
			buf[i] = pat('S', i);
		fcntl(s, F_SETFL, O_NONBLOCK);
		size_t sent = 0;
		for (;;) {
			ssize_t k = write(s, buf + sent, TOTAL - sent);
			if (k <= 0)
				break;
			sent += k;
			usleep(1000);
		}
		fcntl(s, F_SETFL, 0);
		wait_file(dir, "peer.sent");
		int q = 0;
		while (ioctl(s, FIONREAD, &q) == 0 && q < PEER_BYTES)
			usleep(10000);
		char t[64];
		snprintf(t, sizeof(t), "sent=%zu inq=%d\n", sent, q);
		put_status(dir, "srv.ready", t);
		wait_file(dir, "go");
		unsigned char in[PEER_BYTES];
		if (read_all(s, in, PEER_BYTES))
			return result(dir, "srv.result", "reading the peer's bytes"), 0;
		for (size_t i = 0; i < PEER_BYTES; i++)
			if (in[i] != pat('P', i))
				return result(dir, "srv.result", "the peer's bytes differ"), 0;
		if (write_all(s, buf + sent, TOTAL - sent))
			return result(dir, "srv.result", "writing the rest"), 0;
		char ping[4];
		if (read_all(s, (unsigned char *)ping, 4) || memcmp(ping, "ping", 4))
			return result(dir, "srv.result", "no ping"), 0;
		if (write_all(s, (const unsigned char *)"pong", 4))
			return result(dir, "srv.result", "writing pong"), 0;
		result(dir, "srv.result", "ok");
		pause();
		return 0;
	}
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int rb = 4096;
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
	while (connect(s, (void *)&a, sizeof(a))) {
		close(s);
		usleep(20000);
		s = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
	}
	unsigned char out[PEER_BYTES];
	for (size_t i = 0; i < PEER_BYTES; i++)
		out[i] = pat('P', i);
	if (write_all(s, out, PEER_BYTES))
		return 5;
	put_status(dir, "peer.sent", "1\n");
	wait_file(dir, "go");
	if (read_all(s, buf, TOTAL))
		return result(dir, "peer.result", "reading the server's bytes"), 0;
	for (size_t i = 0; i < TOTAL; i++)
		if (buf[i] != pat('S', i)) {
			char t[80];
			snprintf(t, sizeof(t), "the server's bytes differ at %zu", i);
			return result(dir, "peer.result", t), 0;
		}
	if (write_all(s, (const unsigned char *)"ping", 4))
		return result(dir, "peer.result", "writing ping"), 0;
	char pong[4];
	if (read_all(s, (unsigned char *)pong, 4) || memcmp(pong, "pong", 4))
		return result(dir, "peer.result", "no pong"), 0;
	result(dir, "peer.result", "ok");
	return 0;
}
