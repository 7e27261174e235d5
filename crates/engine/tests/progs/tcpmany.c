/* Many established TCP connections (scripts/bench-tcp.sh).
 *   tcpmany server DIR N PORT   accepts N connections on 127.0.0.1:PORT; once each has the peer's
 *                               QBYTES unread in its receive queue and QBYTES of its own in its send queue
 *                               (the peer does not read), writes DIR/many.ready. On SIGUSR1 reads QBYTES on
 *                               every connection, checks them, writes one byte back on each and writes
 *                               DIR/many.verify "ok N" (or what went wrong).
 *   tcpmany peer DIR N PORT     connects N times, sends QBYTES on each, then waits; on SIGUSR1 reads
 *                               every connection's QBYTES + 1 bytes and writes DIR/peer.verify. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include "status.h"

#define QBYTES 3000

static volatile sig_atomic_t usr1;
static void on_usr1(int s)
{
	(void)s;
	usr1 = 1;
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

int main(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	const char *dir = argv[2];
	int n = atoi(argv[3]);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[4])) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	struct rlimit rl = { n + 64, n + 64 };
	setrlimit(RLIMIT_NOFILE, &rl);
	int *s = calloc(n, sizeof(int));
	unsigned char buf[QBYTES + 1];
	signal(SIGUSR1, on_usr1);
	int server = !strcmp(argv[1], "server");
	if (server) {
		int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l, (void *)&a, sizeof(a)) || listen(l, 128))
			return 3;
		put_status(dir, "many.listening", "1\n");
		for (int i = 0; i < n; i++)
			if ((s[i] = accept(l, NULL, NULL)) < 0)
				return 4;
		close(l);
		memset(buf, 'S', QBYTES);
		for (int i = 0; i < n; i++)
			if (write(s[i], buf, QBYTES) != QBYTES)
				return 5;
		for (int i = 0; i < n; i++) {
			int q = 0;
			while (ioctl(s[i], FIONREAD, &q) == 0 && q < QBYTES)
				usleep(1000);
		}
		put_status(dir, "many.ready", "1\n");
	} else {
		for (int i = 0; i < n; i++) {
			s[i] = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(s[i], (void *)&a, sizeof(a)))
				return 6;
		}
		memset(buf, 'P', QBYTES);
		for (int i = 0; i < n; i++)
			if (write(s[i], buf, QBYTES) != QBYTES)
				return 7;
	}
	while (!usr1)
		pause();
	for (int i = 0; i < n; i++) {
		size_t want = server ? QBYTES : QBYTES + 1;
		if (read_all(s[i], buf, want)) {
			char t[80];
			snprintf(t, sizeof(t), "read failed on %d (errno %d)\n", i, errno);
			put_status(dir, server ? "many.verify" : "peer.verify", t);
			return 0;
		}
		for (size_t k = 0; k < QBYTES; k++)
			if (buf[k] != (server ? 'P' : 'S')) {
				put_status(dir, server ? "many.verify" : "peer.verify", "bad data\n");
				return 0;
			}
		if (server && write(s[i], "x", 1) != 1) {
			put_status(dir, "many.verify", "write failed\n");
			return 0;
		}
	}
	char t[64];
	snprintf(t, sizeof(t), "ok %d\n", n);
	put_status(dir, server ? "many.verify" : "peer.verify", t);
	for (;;)
		pause();
}
