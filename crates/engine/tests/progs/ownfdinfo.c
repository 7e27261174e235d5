/* A task holding /proc/self/fdinfo/N and /proc/self/fd/N of its own fds (as fanotify and epoll users
 * and zdtm's fanotify00 do): after restore they must name the same fds of the same process. The
 * program makes an eventfd holding 7, opens /proc/self/fdinfo/<efd> and /proc/self/fd/<efd>
 * (O_PATH), writes <dir>/ownfdinfo.ready, and on SIGUSR1 checks that the fdinfo file (read again
 * from offset 0) shows the counter 7, and that both name /proc/<pid>/...; writes
 * <dir>/ownfdinfo.verify "ok" or what differs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char p[64], buf[512], want[128], got[256], why[300];
	int efd = eventfd(7, 0), info, link;

	if (efd < 0)
		return 2;
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", efd);
	info = open(p, O_RDONLY);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", efd);
	link = open(p, O_PATH | O_NOFOLLOW);
	if (info < 0 || link < 0)
		return 3;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	put_status(dir, "ownfdinfo.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		strcpy(why, "ok\n");
		ssize_t n = pread(info, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		if (!strstr(buf, "eventfd-count:"))
			snprintf(why, sizeof(why), "fdinfo does not describe the eventfd: %.100s\n", buf);
		else if (!strstr(buf, "eventfd-count:                7") && !strstr(buf, "eventfd-count: 7"))
			snprintf(why, sizeof(why), "fdinfo counter: %.100s\n", strstr(buf, "eventfd-count:"));
		for (int i = 0; i < 2; i++) {
			snprintf(p, sizeof(p), "/proc/self/fd/%d", i ? link : info);
			n = readlink(p, got, sizeof(got) - 1);
			got[n > 0 ? n : 0] = 0;
			snprintf(want, sizeof(want), "/proc/%d/%s/%d", getpid(), i ? "fd" : "fdinfo", efd);
			if (strcmp(got, want))
				snprintf(why, sizeof(why), "fd %d names %s, not %s\n", i ? link : info, got, want);
		}
		put_status(dir, "ownfdinfo.verify", why);
	}
}
