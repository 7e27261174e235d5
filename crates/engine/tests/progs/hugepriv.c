/* Private anonymous huge-page memory (MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB):
 * two 2 MiB pages with a pattern, then a child forks; the child rewrites the
 * second page (its own copy-on-write copy), the parent keeps the pattern.
 * Writes hugepriv.status "addr=0x... kid=PID" ("nohuge" when the kernel has no
 * huge page to give). On SIGUSR1 each checks its memory and reports to
 * hugepriv.verify.status (parent) / hugepriv.child.verify.status (child):
 * "mem=ok|BAD"; the child then rewrites its first page (its copy only: the
 * parent's must keep the pattern). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "usr1.h"
#include "pattern.h"

#define HP (2ul << 20)

static void put(const char *file, const char *text)
{
	char tmp[128];
	snprintf(tmp, sizeof tmp, "%s.tmp", file);
	FILE *f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	rename(tmp, file);
}

/* first: the seed of the first page; `after` the one it is rewritten with
 * once checked (0: never), so later checks see what this task wrote. */
static void serve(unsigned char *m, uint64_t first, uint64_t second, uint64_t after, const char *file)
{
	for (;;) {
		wait_usr1();
		usr1 = 0;
		int ok = !check(m, HP, first) && !check(m + HP, HP, second);
		if (after) {
			fill(m, HP, after);
			first = after;
		}
		put(file, ok ? "mem=ok\n" : "mem=BAD\n");
	}
}

int main(void)
{
	signal(SIGUSR1, on_usr1);
	block_usr1();
	unsigned char *m = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (m == MAP_FAILED) {
		put("hugepriv.status", "nohuge\n");
		return 0;
	}
	fill(m, HP, 11);
	fill(m + HP, HP, 12);
	pid_t kid = fork();
	if (kid < 0)
		return 1;
	if (kid == 0) {
		fill(m + HP, HP, 13);
		put("hugepriv.child.status", "ready\n");
		serve(m, 11, 13, 21, "hugepriv.child.verify.status");
	}
	while (access("hugepriv.child.status", F_OK))
		usleep(10000);
	char st[64];
	snprintf(st, sizeof st, "addr=%p kid=%d\n", (void *)m, kid);
	put("hugepriv.status", st);
	serve(m, 11, 12, 0, "hugepriv.verify.status");
}
