/* Memory cryo refuses to dump for now: `memrefuse hugetlb` holds a shared
 * mapping of a file on a hugetlbfs mount of its own (in the test's mount
 * namespace) with data. Writes memrefuse.status ("ready" or "nohuge" when the
 * kernel has no huge page to give), then waits; on SIGUSR1 it checks its
 * memory and writes memrefuse.verify.status ("ok" or "BAD"). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include "usr1.h"
#include "pattern.h"
#include "status.h"

int main(int argc, char **argv)
{
	unsigned char *huge = NULL;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (argc > 1 && !strcmp(argv[1], "hugetlb")) {
		mkdir("hugefs", 0700);
		if (mount("cryo-huge", "hugefs", "hugetlbfs", 0, NULL))
			return 3;
		int fd = open("hugefs/f", O_RDWR | O_CREAT, 0600);
		if (fd < 0 || ftruncate(fd, 2 << 20))
			return 4;
		huge = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (huge == MAP_FAILED) {
			put_status(".", "memrefuse.status", "nohuge\n");
			return 0;
		}
		fill(huge, 2 << 20, 5);
	} else {
		return 2;
	}
	put_status(".", "memrefuse.status", "ready\n");
	wait_usr1();
	int ok = !check(huge, 2 << 20, 5);
	put_status(".", "memrefuse.verify.status", ok ? "ok\n" : "BAD\n");
	return 0;
}
