/* A private mapping of a memfd that also has a shared mapping and an fd:
 * page 1 of the private mapping is a private copy-on-write copy, pages 0
 * and 2 still read the memfd. Writes memfdpriv.status ("ready"); on SIGUSR1
 * it checks the contents, then writes to the memfd through the shared
 * mapping: the private mapping must see that in pages 0 and 2 (the same
 * memfd, not a copy of it) but keep its own page 1. The verdict goes to
 * memfdpriv.verify.status ("before=ok|BAD after=ok|BAD"). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

#define PS 4096

static int all(const unsigned char *p, int c)
{
	for (int i = 0; i < PS; i++)
		if (p[i] != c)
			return 0;
	return 1;
}

int main(void)
{
	signal(SIGUSR1, on_usr1);
	block_usr1();
	int fd = memfd_create("cryo-priv", 0);
	if (fd < 0 || ftruncate(fd, 3 * PS))
		return 1;
	unsigned char *sh = mmap(NULL, 3 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *pv = mmap(NULL, 3 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (sh == MAP_FAILED || pv == MAP_FAILED)
		return 1;
	memset(sh, 'a', 3 * PS);
	(void)*(volatile unsigned char *)pv; /* page 0 mapped from the memfd */
	memset(pv + PS, 'p', PS);            /* page 1: a private copy */
	put_status(".", "memfdpriv.status", "ready\n");
	wait_usr1();
	int before = all(pv, 'a') && all(pv + PS, 'p') && all(pv + 2 * PS, 'a') && all(sh + PS, 'a');
	memset(sh, 'b', 3 * PS);
	int after = all(pv, 'b') && all(pv + PS, 'p') && all(pv + 2 * PS, 'b');
	char st[64];
	snprintf(st, sizeof st, "before=%s after=%s\n", before ? "ok" : "BAD", after ? "ok" : "BAD");
	put_status(".", "memfdpriv.verify.status", st);
	for (;;)
		pause();
}
