/* A memfd (128 KiB, pattern 4242, fd kept open, MAP_SHARED) and a shared
 * anonymous region (64 KiB, pattern 4343 from offset 4096) shared with a
 * forked child. Usage: shm DIR. Prints "ready child=PID fd=N".
 * On SIGUSR1 each process writes DIR/verify-<pid> ("ok" if both regions are intact). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define MSZ (128 << 10)
#define ASZ (64 << 10)
#include "usr1.h"
#include "pattern.h"
int main(int argc, char **argv)
{
	int mfd;
	unsigned char *mm, *an;
	pid_t kid;
	if (argc < 2 || chdir(argv[1])) return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	mfd = memfd_create("cryo-test-memfd", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, MSZ)) return 3;
	mm = mmap(NULL, MSZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	an = mmap(NULL, ASZ, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mm == MAP_FAILED || an == MAP_FAILED) return 4;
	fill(mm, MSZ, 4242);
	fill(an + 4096, ASZ - 4096, 4343);
	kid = fork();
	if (kid) { printf("ready child=%d fd=%d\n", kid, mfd); fflush(stdout); }
	for (;;) {
		wait_usr1();
		if (usr1) {
			char p[64];
			FILE *f;
			usr1 = 0;
			snprintf(p, sizeof(p), "verify-%d", getpid());
			f = fopen(p, "w");
			if (f) { fprintf(f, "%s\n", check(mm, MSZ, 4242) || check(an + 4096, ASZ - 4096, 4343) ? "FAIL" : "ok"); fclose(f); }
		}
	}
}
