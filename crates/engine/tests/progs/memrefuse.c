/* Memory cryo refuses to dump for now: `memrefuse hugetlb` holds a shared
 * MAP_HUGETLB mapping with data. Writes memrefuse.status ("ready" or "nohuge" when the
 * kernel has no huge page to give), then waits; on SIGUSR1 it checks its
 * memory and writes memrefuse.verify.status ("ok" or "BAD"). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "usr1.h"
#include "pattern.h"

static void put(const char *file, const char *text)
{
	char tmp[128];
	snprintf(tmp, sizeof tmp, "%s.tmp", file);
	FILE *f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	rename(tmp, file);
}

int main(int argc, char **argv)
{
	unsigned char *huge = NULL;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (argc > 1 && !strcmp(argv[1], "hugetlb")) {
		huge = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (huge == MAP_FAILED) {
			put("memrefuse.status", "nohuge\n");
			return 0;
		}
		fill(huge, 2 << 20, 5);
	} else {
		return 2;
	}
	put("memrefuse.status", "ready\n");
	wait_usr1();
	int ok = !check(huge, 2 << 20, 5);
	put("memrefuse.verify.status", ok ? "ok\n" : "BAD\n");
	return 0;
}
