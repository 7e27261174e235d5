/* Memory dirtied in steps, for incremental dumps: dirty MIB DIR.
 * MIB MiB of anonymous memory, page i stamped with (i, generation) in every
 * word. SIGUSR1: the next generation G rewrites the pages with i % 100 ==
 * G % 100 (1% of them) and writes "<DIR>/dirty.status" "gen=G". SIGUSR2:
 * every page is checked against the generation that last wrote it and
 * "<DIR>/dirty.verify" gets "gen=G ok" or "gen=G FAIL page=N". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "status.h"

static volatile sig_atomic_t usr1, usr2;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2 = 1; }

static uint64_t word(uint64_t page, uint64_t gen, uint64_t w)
{
	return (page << 20) ^ (gen * 0x9e3779b97f4a7c15ull) ^ w ^ 0x5555;
}

static void stamp(uint64_t *p, uint64_t page, uint64_t gen)
{
	for (uint64_t w = 0; w < 512; w++)
		p[page * 512 + w] = word(page, gen, w);
}

/* The generation that last wrote page i by generation g. */
static uint64_t last(uint64_t i, uint64_t g)
{
	uint64_t r = i % 100;
	if (g < r || (r == 0 && g < 100))
		return 0;
	return g - ((g - r) % 100);
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], 0, 0) : 64, pages = mib * 256, gen = 0, i;
	const char *dir = argc > 2 ? argv[2] : ".";
	char buf[128];
	struct timespec ts = { 0, 5000000 };
	uint64_t *p = mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	for (i = 0; i < pages; i++)
		stamp(p, i, 0);
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	snprintf(buf, sizeof(buf), "ready pid=%d gen=0\n", getpid());
	put_status(dir, "dirty.status", buf);
	for (;;) {
		if (usr1) {
			usr1--;
			gen++;
			for (i = gen % 100; i < pages; i += 100)
				stamp(p, i, gen);
			snprintf(buf, sizeof(buf), "gen=%llu\n", (unsigned long long)gen);
			put_status(dir, "dirty.status", buf);
			continue;
		}
		if (usr2) {
			uint64_t bad = UINT64_MAX;
			usr2 = 0;
			for (i = 0; i < pages && bad == UINT64_MAX; i++) {
				uint64_t g = last(i, gen);
				for (uint64_t w = 0; w < 512; w++)
					if (p[i * 512 + w] != word(i, g, w)) {
						bad = i;
						break;
					}
			}
			if (bad == UINT64_MAX)
				snprintf(buf, sizeof(buf), "gen=%llu ok\n", (unsigned long long)gen);
			else
				snprintf(buf, sizeof(buf), "gen=%llu FAIL page=%llu\n", (unsigned long long)gen,
					 (unsigned long long)bad);
			put_status(dir, "dirty.verify", buf);
		}
		nanosleep(&ts, 0);
	}
}
