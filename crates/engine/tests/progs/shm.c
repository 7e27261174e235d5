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
static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }
/* SIGUSR1 stays blocked except inside sigsuspend(): one that arrives before the
 * wait, or just as a restored sigsuspend() restarts, is taken there and never
 * lost (with pause() it can land between the flag check and the wait). */
static sigset_t waitmask;
static void block_usr1(void)
{ sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigprocmask(SIG_BLOCK, &m, &waitmask); sigdelset(&waitmask, SIGUSR1); }
static void wait_usr1(void) { while (!usr1) sigsuspend(&waitmask); }
static uint64_t next(uint64_t *s) { uint64_t x = *s; x ^= x << 13; x ^= x >> 7; x ^= x << 17; return *s = x; }
static void fill(unsigned char *p, size_t n, uint64_t seed)
{ uint64_t s = seed, v; for (size_t i = 0; i < n; i += 8) { v = next(&s); memcpy(p + i, &v, 8); } }
static int check(const unsigned char *p, size_t n, uint64_t seed)
{ uint64_t s = seed, v; for (size_t i = 0; i < n; i += 8) { v = next(&s); if (memcmp(p + i, &v, 8)) return 1; } return 0; }
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
