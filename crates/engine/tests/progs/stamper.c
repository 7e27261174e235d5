/* Writes without pause, for live checkpoints: stamper MIB DIR.
 * MIB MiB of pages in pairs (i, i + N/2); step c stamps c into the first
 * word of both pages of pair c % (N/2), in that order, then into the
 * counter (a page of its own). A copy of one instant has every pair equal
 * to the last step <= counter that wrote it, but the pair of step
 * counter + 1, which may be half done. "<DIR>/stamper.status" says
 * "ready pid=P base=0x.. counter=0x.. pages=N". SIGUSR1: every pair is
 * checked equal and "<DIR>/stamper.verify" gets "ok c=C" or "FAIL pair=I". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "status.h"

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], 0, 0) : 64, n = mib * 256, half = n / 2, c = 0;
	const char *dir = argc > 2 ? argv[2] : ".";
	char buf[256];
	volatile uint64_t *p = mmap(0, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile uint64_t *cnt = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || cnt == MAP_FAILED)
		return 1;
	for (uint64_t i = 0; i < n; i++)
		p[i * 512] = 0;
	*cnt = 0;
	signal(SIGUSR1, on_usr1);
	snprintf(buf, sizeof(buf), "ready pid=%d base=%p counter=%p pages=%llu\n", getpid(), (void *)p, (void *)cnt,
		 (unsigned long long)n);
	put_status(dir, "stamper.status", buf);
	for (;;) {
		if (usr1) {
			uint64_t bad = UINT64_MAX;
			usr1 = 0;
			for (uint64_t i = 0; i < half && bad == UINT64_MAX; i++)
				if (p[i * 512] != p[(i + half) * 512])
					bad = i;
			if (bad == UINT64_MAX)
				snprintf(buf, sizeof(buf), "ok c=%llu\n", (unsigned long long)c);
			else
				snprintf(buf, sizeof(buf), "FAIL pair=%llu\n", (unsigned long long)bad);
			put_status(dir, "stamper.verify", buf);
		}
		c++;
		uint64_t i = c % half;
		p[i * 512] = c;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		p[(i + half) * 512] = c;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		*cnt = c;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
	}
}
