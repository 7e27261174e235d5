/* An AIO context (io_setup) whose ring holds completed events nobody has
 * read yet: 5 writes to /dev/null are submitted (aio_data 101..105) and the
 * first 2 events read. Writes aioring.status ("ready ctx=ADDR") and waits;
 * on SIGUSR1 it reads the 3 waiting events (they must be 103..105), submits
 * one more write and reads its event (aio_data 200), and writes
 * aioring.verify.status ("events=ok|BAD again=ok|BAD"). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

static aio_context_t ctx;
static int fd;
static char buf[16];

static int submit(unsigned long data)
{
	struct iocb cb, *p = &cb;
	memset(&cb, 0, sizeof cb);
	cb.aio_data = data;
	cb.aio_fildes = fd;
	cb.aio_lio_opcode = IOCB_CMD_PWRITE;
	cb.aio_buf = (unsigned long)buf;
	cb.aio_nbytes = sizeof buf;
	return syscall(SYS_io_submit, ctx, 1, &p) == 1 ? 0 : -1;
}

/* Read exactly n events; their aio_data go to out. */
static int get(int n, unsigned long *out)
{
	struct io_event ev[8];
	struct timespec ts = { 5, 0 };
	int got = syscall(SYS_io_getevents, ctx, n, n, ev, &ts);
	for (int i = 0; i < got; i++)
		out[i] = ev[i].data;
	return got;
}

int main(void)
{
	unsigned long d[8];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	fd = open("/dev/null", O_WRONLY);
	if (syscall(SYS_io_setup, 16, &ctx) < 0)
		return 1;
	for (int i = 1; i <= 5; i++)
		if (submit(100 + i))
			return 1;
	if (get(2, d) != 2 || d[0] != 101 || d[1] != 102)
		return 1;
	char st[64];
	snprintf(st, sizeof st, "ready ctx=%llx\n", (unsigned long long)ctx);
	put_status(".", "aioring.status", st);
	wait_usr1();
	int ev = get(3, d) == 3 && d[0] == 103 && d[1] == 104 && d[2] == 105;
	int again = !submit(200) && get(1, d) == 1 && d[0] == 200;
	snprintf(st, sizeof st, "events=%s again=%s\n", ev ? "ok" : "BAD", again ? "ok" : "BAD");
	put_status(".", "aioring.verify.status", st);
	for (;;)
		pause();
}
