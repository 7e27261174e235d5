/* Huge-page memory of three kinds, in a parent and the child it forks:
 *  - private anonymous (MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB), two 2 MiB
 *    pages with a pattern; the child rewrites the second (its own
 *    copy-on-write copy), the parent keeps the pattern;
 *  - shared anonymous (MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB), one page;
 *  - a MFD_HUGETLB memfd mapped MAP_SHARED, one page (its fd stays open).
 * A shared page holds in its first 8 bytes the seed of the pattern after it.
 * Writes hugemem.status "priv=0x... shared=0x... memfd=0x... kid=PID"
 * ("nohuge" when the kernel has no huge page to give). On SIGUSR1 each task
 * checks its memory and reports to hugemem.verify.status (parent) /
 * hugemem.child.verify.status (child): "mem=ok|BAD seeds=S1,S2"; the child
 * then rewrites its first private page (its copy only) and both shared
 * pages with the next seeds (the parent must see those). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "usr1.h"
#include "pattern.h"
#include "status.h"

#define HP (2ul << 20)

/* A shared page: seed, then the pattern of that seed. */
static void sfill(unsigned char *p, uint64_t seed)
{
	fill(p + 8, HP - 8, seed);
	memcpy(p, &seed, 8);
}

static int scheck(const unsigned char *p, uint64_t *seed)
{
	memcpy(seed, p, 8);
	return !check(p + 8, HP - 8, *seed);
}

/* first/second: the seeds of the private pages; `child`: rewrite after the check. */
static void serve(unsigned char *m, unsigned char *s, unsigned char *f, uint64_t first, uint64_t second, int child,
		  const char *file)
{
	for (;;) {
		wait_usr1();
		usr1 = 0;
		uint64_t s1, s2;
		int ok = !check(m, HP, first) && !check(m + HP, HP, second);
		ok = scheck(s, &s1) && ok;
		ok = scheck(f, &s2) && ok;
		if (child) {
			first += 100;
			fill(m, HP, first);
			sfill(s, s1 + 1);
			sfill(f, s2 + 1);
		}
		char st[96];
		snprintf(st, sizeof st, "mem=%s seeds=%llu,%llu\n", ok ? "ok" : "BAD", (unsigned long long)s1,
			 (unsigned long long)s2);
		put_status(".", file, st);
	}
}

int main(void)
{
	signal(SIGUSR1, on_usr1);
	block_usr1();
	unsigned char *m = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	unsigned char *s = mmap(NULL, HP, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	int fd = memfd_create("cryo-huge", MFD_HUGETLB);
	if (m == MAP_FAILED || s == MAP_FAILED || fd < 0 || ftruncate(fd, HP)) {
		put_status(".", "hugemem.status", "nohuge\n");
		return 0;
	}
	unsigned char *f = mmap(NULL, HP, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (f == MAP_FAILED) {
		put_status(".", "hugemem.status", "nohuge\n");
		return 0;
	}
	fill(m, HP, 11);
	fill(m + HP, HP, 12);
	sfill(s, 1000);
	sfill(f, 2000);
	pid_t kid = fork();
	if (kid < 0)
		return 1;
	if (kid == 0) {
		fill(m + HP, HP, 13);
		put_status(".", "hugemem.child.status", "ready\n");
		serve(m, s, f, 11, 13, 1, "hugemem.child.verify.status");
	}
	while (access("hugemem.child.status", F_OK))
		usleep(10000);
	char st[128];
	snprintf(st, sizeof st, "priv=%p shared=%p memfd=%p kid=%d\n", (void *)m, (void *)s, (void *)f, kid);
	put_status(".", "hugemem.status", st);
	serve(m, s, f, 11, 12, 0, "hugemem.verify.status");
}
