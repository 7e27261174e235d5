/* cgroups seen from inside: on start and on each SIGUSR1 writes <cwd>/cgself.verify with this
 * process's cgroups (/proc/self/cgroup: memory, pids, v2) and the limits it reads in them
 * (memory.limit_in_bytes of its v1 memory cgroup, pids.max of its pids cgroup, under
 * /sys/fs/cgroup/{memory,pids}) and its cgroup namespace inode; cgself.ready once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "status.h"

static volatile sig_atomic_t asked;
static void on_usr1(int s) { (void)s; asked = 1; }

static void first_line(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	out[0] = 0;
	if (!f) {
		snprintf(out, n, "?");
		return;
	}
	if (fgets(out, n, f))
		out[strcspn(out, "\n")] = 0;
	fclose(f);
}

static void report(const char *dir, const char *name)
{
	char line[512], mem[256] = "?", pids[256] = "?", v2[256] = "?";
	FILE *f = fopen("/proc/self/cgroup", "r");
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = 0;
		if (!strcmp(a + 1, "memory"))
			snprintf(mem, sizeof(mem), "%s", b + 1);
		else if (!strcmp(a + 1, "pids"))
			snprintf(pids, sizeof(pids), "%s", b + 1);
		else if (!strcmp(a + 1, ""))
			snprintf(v2, sizeof(v2), "%s", b + 1);
	}
	if (f)
		fclose(f);
	char p[600], lim[64], max[64];
	snprintf(p, sizeof(p), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", mem);
	first_line(p, lim, sizeof(lim));
	snprintf(p, sizeof(p), "/sys/fs/cgroup/pids%s/pids.max", pids);
	first_line(p, max, sizeof(max));
	struct stat st;
	unsigned long ino = stat("/proc/self/ns/cgroup", &st) ? 0 : (unsigned long)st.st_ino;
	char out[2048];
	snprintf(out, sizeof(out), "mem=%s limit=%s pids=%s max=%s v2=%s cgns=%lu\n", mem, lim, pids, max, v2, ino);
	put_status(dir, name, out);
}

int main(void)
{
	char dir[400];
	if (!getcwd(dir, sizeof(dir)))
		return 1;
	signal(SIGUSR1, on_usr1);
	report(dir, "cgself.verify");
	put_status(dir, "cgself.ready", "ready\n");
	for (;;) {
		pause();
		if (asked) {
			asked = 0;
			report(dir, "cgself.verify");
		}
	}
}
