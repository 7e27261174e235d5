/* A small process tree: parent, two children, one grandchild (under child 1).
 * All share one pipe with 100 queued bytes. Each process has a 64 KiB heap
 * buffer with a pattern seeded by its index (0..3).
 * Usage: tree DIR. Prints "ready idx:pid:heap ..." (all four) when set up.
 * On SIGUSR1 every process writes DIR/verify-<pid> ("ok" if its heap is intact). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAP (64 << 10)
#include "usr1.h"
#include "pattern.h"

static int rep[2];
static const char *dir;

static void live(int idx)
{
	unsigned char *h = malloc(HEAP);
	char line[128];
	fill(h, HEAP, 1000 + idx);
	snprintf(line, sizeof(line), "%d:%d:%p\n", idx, getpid(), (void *)h);
	if (write(rep[1], line, strlen(line)) < 0) _exit(1);
	for (;;) {
		wait_usr1();
		if (usr1) {
			char p[256];
			FILE *f;
			usr1 = 0;
			snprintf(p, sizeof(p), "%s/verify-%d", dir, getpid());
			f = fopen(p, "w");
			if (f) { fprintf(f, "%s\n", check(h, HEAP, 1000 + idx) ? "FAIL" : "ok"); fclose(f); }
		}
	}
}

int main(int argc, char **argv)
{
	int data[2], got = 0;
	char buf[512], out[1024] = "ready";
	if (argc < 2) return 2;
	dir = argv[1];
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (pipe(data) || pipe(rep)) return 3;
	memset(buf, 'x', 100);
	if (write(data[1], buf, 100) != 100) return 4;
	if (fork() == 0) {
		if (fork() == 0) live(3);
		live(1);
	}
	if (fork() == 0) live(2);
	/* the parent reports too, then collects all four lines */
	{
		unsigned char *h = malloc(HEAP);
		fill(h, HEAP, 1000);
		snprintf(buf, sizeof(buf), "0:%d:%p\n", getpid(), (void *)h);
		if (write(rep[1], buf, strlen(buf)) < 0) return 5;
		while (got < 4) {
			char c;
			int n = 0;
			while (read(rep[0], &c, 1) == 1 && c != '\n') buf[n++] = c;
			buf[n] = 0;
			strcat(out, " ");
			strcat(out, buf);
			got++;
		}
		printf("%s\n", out);
		fflush(stdout);
		for (;;) {
			wait_usr1();
			if (usr1) {
				char p[256];
				FILE *f;
				usr1 = 0;
				snprintf(p, sizeof(p), "%s/verify-%d", dir, getpid());
				f = fopen(p, "w");
				if (f) { fprintf(f, "%s\n", check(h, HEAP, 1000) ? "FAIL" : "ok"); fclose(f); }
			}
		}
	}
}
