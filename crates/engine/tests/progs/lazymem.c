/* Lazy restore: lazymem MIB DIR MODE.
 * MIB MiB of anonymous memory, page i stamped with words of (i, seed) before the dump, and the sum of
 * every word kept aside. Writes "<DIR>/lazymem.status" "ready pid=P". After SIGUSR1 (sent once
 * restored), before touching that memory, it counts its resident pages with mincore and writes
 * "<DIR>/lazymem.first" "resident=R of N"; then, by MODE:
 *   read   every page is checked;
 *   fork   a child checks every page (and exits 0 or 1), then the parent checks every page too;
 *   remap  the 2nd eighth is unmapped, the 3rd moved (mremap) to a new address, the 4th discarded
 *          (MADV_DONTNEED); then the moved pages are checked at their new address, the discarded ones
 *          must read as zero, and the rest is checked;
 * and writes "<DIR>/lazymem.verify": "ok sum=S" or "FAIL page=N ...". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "status.h"

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

static uint64_t seed, stamped_sum;

static uint64_t word(uint64_t page, uint64_t w) { return (page << 21) ^ (seed * 0x9e3779b97f4a7c15ull) ^ (w * 0x2545f4914f6cdd1dull); }

/* First bad page of [from, to) at p (page numbers of the stamping), or -1; adds to *sum. */
static int64_t check(uint64_t *p, uint64_t from, uint64_t to, uint64_t *sum)
{
	for (uint64_t i = from; i < to; i++) {
		uint64_t *q = p + (i - from) * 512;
		for (uint64_t w = 0; w < 512; w++) {
			if (q[w] != word(i, w))
				return (int64_t)i;
			*sum += q[w];
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], 0, 0) : 64, pages = mib * 256, i;
	const char *dir = argc > 2 ? argv[2] : ".";
	const char *mode = argc > 3 ? argv[3] : "read";
	char buf[256];
	struct timespec ts = { 0, 1000000 };
	uint64_t *p = mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	seed = (uint64_t)getpid() * 7919 + (uint64_t)time(0);
	for (i = 0; i < pages; i++)
		for (uint64_t w = 0; w < 512; w++) {
			p[i * 512 + w] = word(i, w);
			stamped_sum += word(i, w);
		}
	signal(SIGUSR1, on_usr1);
	snprintf(buf, sizeof(buf), "ready pid=%d\n", getpid());
	put_status(dir, "lazymem.status", buf);
	while (!go)
		nanosleep(&ts, 0);

	/* Restored: how much of the memory is in, before touching it. */
	unsigned char *vec = mmap(0, pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t resident = 0;
	if (vec != MAP_FAILED && mincore(p, pages * 4096, vec) == 0)
		for (i = 0; i < pages; i++)
			resident += vec[i] & 1;
	snprintf(buf, sizeof(buf), "resident=%llu of %llu\n", (unsigned long long)resident, (unsigned long long)pages);
	put_status(dir, "lazymem.first", buf);

	uint64_t sum = 0;
	int64_t bad = -1;
	const char *what = "";
	if (!strcmp(mode, "fork")) {
		pid_t c = fork();
		if (c == 0) {
			uint64_t s = 0;
			int64_t b = check(p, 0, pages, &s);
			_exit(b < 0 && s == stamped_sum ? 0 : 1);
		}
		int st = 0;
		waitpid(c, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			snprintf(buf, sizeof(buf), "FAIL child status=%d\n", st);
			put_status(dir, "lazymem.verify", buf);
			return 0;
		}
		bad = check(p, 0, pages, &sum);
	} else if (!strcmp(mode, "remap")) {
		uint64_t e = pages / 8, *moved;
		munmap(p + e * 512, e * 4096);
		moved = mremap(p + 2 * e * 512, e * 4096, e * 4096, 0);
		if (moved == MAP_FAILED) {
			/* Not in place: ask for any address. */
			moved = mremap(p + 2 * e * 512, e * 4096, e * 4096, MREMAP_MAYMOVE);
		}
		madvise(p + 3 * e * 512, e * 4096, MADV_DONTNEED);
		if (moved == MAP_FAILED) {
			put_status(dir, "lazymem.verify", "FAIL mremap\n");
			return 0;
		}
		bad = check(p, 0, e, &sum);
		if (bad < 0 && (bad = check(moved, 2 * e, 3 * e, &sum)) >= 0)
			what = " (moved)";
		for (i = 0; bad < 0 && i < e * 512; i++)
			if (p[3 * e * 512 + i] != 0) {
				bad = (int64_t)(3 * e + i / 512);
				what = " (discarded, not zero)";
			}
		if (bad < 0)
			bad = check(p + 4 * e * 512, 4 * e, pages, &sum);
		/* The sum of what is left: everything but the unmapped and discarded eighths. */
		uint64_t want = 0;
		for (i = 0; i < pages; i++)
			if (i / e != 1 && i / e != 3)
				for (uint64_t w = 0; w < 512; w++)
					want += word(i, w);
		stamped_sum = want;
	} else {
		bad = check(p, 0, pages, &sum);
	}
	if (bad < 0 && sum == stamped_sum)
		snprintf(buf, sizeof(buf), "ok sum=%llu\n", (unsigned long long)sum);
	else
		snprintf(buf, sizeof(buf), "FAIL page=%lld%s sum=%llu want=%llu\n", (long long)bad, what,
			 (unsigned long long)sum, (unsigned long long)stamped_sum);
	put_status(dir, "lazymem.verify", buf);
	for (;;)
		pause();
}
