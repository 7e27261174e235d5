/* Unix sockets cryo must refuse to dump: argv[2] says which one this program holds.
 *   scm       a socket in flight (SCM_RIGHTS) in a socketpair's queue
 *   backlog   a listening socket with a connection not yet accepted whose client sent data
 *   closed    a listening socket with a connection not yet accepted whose client is closed
 *   peekoff   a socketpair end with SO_PEEK_OFF in use
 *   outside   a socketpair whose other end a child holds: the child is the one to dump
 * Prints "ready pid=PID" (the pid to dump). On SIGUSR1 the dumped process checks that its object
 * is intact (the fd still in flight, the connection still pending, SO_PEEK_OFF as set, ...) and
 * writes DIR/verify "ok" or "FAIL". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "usr1.h"

static int sv[2], lis, cl;
static const char *mode;

static int intact(void)
{
	char c;
	int v;
	socklen_t l = sizeof(v);
	if (!strcmp(mode, "scm")) {
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { &c, 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		return recvmsg(sv[1], &m, MSG_DONTWAIT) == 1 && CMSG_FIRSTHDR(&m) && CMSG_FIRSTHDR(&m)->cmsg_type == SCM_RIGHTS;
	}
	if (!strcmp(mode, "backlog") || !strcmp(mode, "closed")) {
		int s = accept4(lis, NULL, NULL, SOCK_NONBLOCK);
		return s >= 0 && (mode[0] == 'c' || (read(s, &c, 1) == 1 && c == 'd'));
	}
	if (!strcmp(mode, "peekoff"))
		return getsockopt(sv[0], SOL_SOCKET, SO_PEEK_OFF, &v, &l) == 0 && v == 1 && recv(sv[0], &c, 1, MSG_PEEK) == 1 && c == 'b';
	return write(sv[0], "x", 1) == 1;
}

int main(int argc, char **argv)
{
	if (argc < 3 || chdir(argv[1])) return 2;
	mode = argv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 2;
	if (!strcmp(mode, "scm")) {
		int pair[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair)) return 2;
		int fd = pair[0];
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov = { "s", 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
		if (sendmsg(sv[0], &m, 0) != 1) return 2;
		close(fd);
	} else if (!strcmp(mode, "backlog") || !strcmp(mode, "closed")) {
		struct sockaddr_un u = { .sun_family = AF_UNIX };
		snprintf(u.sun_path, sizeof(u.sun_path), "%s/%s", argv[1], "l.sock");
		unlink(u.sun_path);
		lis = socket(AF_UNIX, SOCK_STREAM, 0);
		cl = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(lis, (void *)&u, sizeof(u)) || listen(lis, 4) || connect(cl, (void *)&u, sizeof(u))) return 2;
		if (mode[0] == 'b' && write(cl, "d", 1) != 1) return 2;
		if (mode[0] == 'c') close(cl);
	} else if (!strcmp(mode, "peekoff")) {
		int v = 1;
		if (write(sv[1], "ab", 2) != 2 || setsockopt(sv[0], SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v))) return 2;
	}
	signal(SIGUSR1, on_usr1);
	block_usr1();
	pid_t me = getpid();
	if (!strcmp(mode, "outside")) {
		me = fork();
		if (me < 0) return 2;
		if (me > 0) {
			/* the parent keeps the other end and waits */
			close(sv[0]);
			printf("ready pid=%d\n", me);
			fflush(stdout);
			for (;;) pause();
		}
		close(sv[1]);
		me = getpid();
	} else {
		printf("ready pid=%d\n", me);
		fflush(stdout);
	}
	for (;;) {
		wait_usr1();
		usr1 = 0;
		FILE *f = fopen("verify", "w");
		if (f) { fputs(intact() ? "ok\n" : "FAIL\n", f); fclose(f); }
	}
}
