/* A tree in a user namespace of its own, for user namespace tests.
 * Usage: userns UID_MAP GID_MAP (e.g. "0 100000 65536" "0 200000 65536"; cwd: the status dir, writable
 * by the namespace's root): the program forks C, which unshares CLONE_NEWUSER; the parent writes C's
 * maps and exits. C becomes root of the namespace (setresgid/setgroups/setresuid 0), creates
 * userns.file and chowns it to 5:6 (inside), forks G, which becomes uid/gid 1000 inside, and writes
 * userns.ready "pid=C child=G". With "-" instead of the maps, the program is already in its namespace
 * (unshare --map-root-user): no unshare, G keeps its ids.
 * On SIGUSR1, C writes userns.verify "uid=R,E,S gid=R,E,S groups=N file=UID:GID child=ALIVE:UID
 * uid_map=FIRST,LOWER,COUNT gid_map=FIRST,LOWER,COUNT", every id as C sees it. */
#define _GNU_SOURCE
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

static void first_extent(const char *path, char *out, size_t n)
{
	unsigned a = 0, b = 0, c = 0;
	FILE *f = fopen(path, "r");
	if (!f || fscanf(f, "%u %u %u", &a, &b, &c) != 3)
		snprintf(out, n, "none");
	else
		snprintf(out, n, "%u,%u,%u", a, b, c);
	if (f)
		fclose(f);
}

static unsigned status_uid(pid_t pid)
{
	char path[64], line[256];
	unsigned uid = 4294967295u;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %u", &uid) == 1)
			break;
	if (f)
		fclose(f);
	return uid;
}

int main(int argc, char **argv)
{
	int own = argc == 3;
	int up[2], down[2];
	char buf[512], c;
	if (argc < 2 || pipe(up) || pipe(down))
		return 2;
	pid_t root = fork();
	if (root > 0) {
		if (!own)
			return 0;
		char path[64];
		if (read(up[0], &c, 1) != 1)
			return 3;
		snprintf(path, sizeof(path), "/proc/%d/uid_map", root);
		FILE *f = fopen(path, "w");
		if (!f || fprintf(f, "%s\n", argv[1]) < 0 || fclose(f))
			return 4;
		snprintf(path, sizeof(path), "/proc/%d/gid_map", root);
		f = fopen(path, "w");
		if (!f || fprintf(f, "%s\n", argv[2]) < 0 || fclose(f))
			return 5;
		return write(down[1], "g", 1) == 1 ? 0 : 6;
	}
	if (own) {
		if (unshare(CLONE_NEWUSER))
			return 7;
		if (write(up[1], "u", 1) != 1 || read(down[0], &c, 1) != 1)
			return 8;
		if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0))
			return 9;
	}
	setsid();
	int fd = open("userns.file", O_CREAT | O_WRONLY | O_TRUNC, 0640);
	if (fd < 0 || (own && fchown(fd, 5, 6)))
		return 10;
	close(fd);
	signal(SIGUSR1, on_usr1);
	block_usr1();
	pid_t kid = fork();
	if (kid == 0) {
		if (own && (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000)))
			_exit(11);
		for (;;)
			pause();
	}
	usleep(100000);
	snprintf(buf, sizeof(buf), "pid=%d child=%d\n", getpid(), kid);
	put_status(".", "userns.ready", buf);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		uid_t r, e, s;
		gid_t gr, ge, gs;
		struct stat st;
		char um[64], gm[64];
		getresuid(&r, &e, &s);
		getresgid(&gr, &ge, &gs);
		first_extent("/proc/self/uid_map", um, sizeof(um));
		first_extent("/proc/self/gid_map", gm, sizeof(gm));
		if (stat("userns.file", &st))
			st.st_uid = st.st_gid = 4294967295u;
		snprintf(buf, sizeof(buf), "uid=%u,%u,%u gid=%u,%u,%u groups=%d file=%u:%u child=%d:%u uid_map=%s gid_map=%s\n",
			 r, e, s, gr, ge, gs, getgroups(0, NULL), st.st_uid, st.st_gid, kill(kid, 0) == 0,
			 status_uid(kid), um, gm);
		put_status(".", "userns.verify", buf);
	}
}
