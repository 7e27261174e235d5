/* Maps 64 anonymous pages of a known pattern (its own mapping). On SIGUSR1 it changes one byte in
 * pages 5 and 40, then writes "changed" to the file named by argv[1]. Prints "ready ADDR". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }

int main(int argc, char **argv)
{
	const size_t n = 64 * 4096;
	unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct timespec ts = { 0, 2000000 };
	if (p == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + 1);
	signal(SIGUSR1, on_usr1);
	printf("ready %p\n", (void *)p);
	fflush(stdout);
	for (;;) {
		if (go) {
			go = 0;
			p[5 * 4096 + 100] ^= 0xff;
			p[40 * 4096] ^= 0xff;
			FILE *f = fopen(argv[1], "w");
			if (f) { fputs("changed\n", f); fclose(f); }
		}
		nanosleep(&ts, NULL);
	}
}
