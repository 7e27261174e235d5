/* EFD_SEMAPHORE must survive dump + restore (CRIU's format cannot say it; cryo's sidecar does).
 * The program makes a semaphore eventfd holding 3 and a plain one holding 5 (both non-blocking),
 * writes <dir>/efdsem.ready, and on SIGUSR1 reads both: the semaphore gives 1, 1, 1 and then
 * EAGAIN, the plain one 5 and then EAGAIN. It writes <dir>/efdsem.verify: "ok" or what differs,
 * and writes both counters back so that the next round finds them again. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	int plain = eventfd(5, EFD_NONBLOCK);
	char why[256];
	uint64_t v;

	if (sem < 0 || plain < 0)
		return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	put_status(dir, "efdsem.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		strcpy(why, "ok");
		for (int i = 0; i < 3; i++)
			if (read(sem, &v, 8) != 8 || v != 1)
				snprintf(why, sizeof(why), "semaphore read %d gave %llu", i, (unsigned long long)v);
		if (read(sem, &v, 8) != -1 || errno != EAGAIN)
			snprintf(why, sizeof(why), "semaphore not empty after 3 reads");
		if (read(plain, &v, 8) != 8 || v != 5)
			snprintf(why, sizeof(why), "plain read gave %llu", (unsigned long long)v);
		if (read(plain, &v, 8) != -1 || errno != EAGAIN)
			snprintf(why, sizeof(why), "plain not empty after one read");
		v = 3;
		write(sem, &v, 8);
		v = 5;
		write(plain, &v, 8);
		strcat(why, "\n");
		put_status(dir, "efdsem.verify", why);
	}
}
