/* Counts forever in a loop with a sleep; prints its counter on SIGUSR1 to the
 * file named by argv[1] (if any). Used by injection / leave-running tests. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static volatile unsigned long counter;
static const char *out;

static void on_usr1(int sig)
{
	(void)sig;
	if (out) {
		FILE *f = fopen(out, "w");
		if (f) { fprintf(f, "counter=%lu ok\n", counter); fclose(f); }
	}
}

int main(int argc, char **argv)
{
	struct timespec ts = { 0, 1000000 };
	if (argc > 1) out = argv[1];
	signal(SIGUSR1, on_usr1);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		counter++;
		nanosleep(&ts, NULL);
	}
}
