/* Reads the clocks through the vdso (glibc's clock_gettime/gettimeofday)
 * every 20 ms and writes DIR/clock.status "real=SECS mono=NS n=COUNT". */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char path[512];
	unsigned long n = 0;
	if (argc < 2) return 2;
	for (;;) {
		struct timespec r, m, d = { 0, 20000000 };
		struct timeval tv;
		clock_gettime(CLOCK_REALTIME, &r);
		clock_gettime(CLOCK_MONOTONIC, &m);
		gettimeofday(&tv, 0);
		snprintf(path, sizeof(path), "%s/clock.status", argv[1]);
		FILE *f = fopen(path, "w");
		if (f) {
			fprintf(f, "real=%ld tod=%ld mono=%ld n=%lu\n", (long)r.tv_sec, (long)tv.tv_sec,
				(long)(m.tv_sec * 1000000000L + m.tv_nsec), ++n);
			fclose(f);
		}
		nanosleep(&d, 0);
	}
}
