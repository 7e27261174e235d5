/* Benchmark target: N MiB (argv[1], default 1024) of non-zero anonymous
 * memory filled with a pattern, then a loop that rewrites a status file.
 * SIGUSR1: check the pattern and write "<dir>/bigmem.verify" ok/FAIL. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 0) : 1024, n = mib << 20, i;
	const char *dir = argc > 2 ? argv[2] : ".";
	char path[512];
	uint64_t *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct timespec ts = { 0, 20000000 };
	if (p == MAP_FAILED) return 1;
	for (i = 0; i < n / 8; i++) p[i] = i * 0x9e3779b97f4a7c15ull + 1;
	signal(SIGUSR1, on_usr1);
	snprintf(path, sizeof(path), "%s/bigmem.ready", dir);
	FILE *f = fopen(path, "w"); fprintf(f, "%d\n", getpid()); fclose(f);
	for (;;) {
		if (usr1) {
			int bad = 0;
			usr1 = 0;
			for (i = 0; i < n / 8; i++) if (p[i] != i * 0x9e3779b97f4a7c15ull + 1) { bad = 1; break; }
			snprintf(path, sizeof(path), "%s/bigmem.verify", dir);
			f = fopen(path, "w"); fprintf(f, "%s\n", bad ? "FAIL" : "ok"); fclose(f);
		}
		nanosleep(&ts, 0);
	}
}
