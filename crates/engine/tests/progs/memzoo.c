/* Memory that a restore must bring back exactly (run as root, in a fresh
 * namespace): VMAs with every madvise flag, mlock'ed, MAP_NORESERVE and
 * MAP_DROPPABLE ones (their VmFlags must come back unchanged, and droppable
 * contents dropped); data behind PROT_NONE and write-only protections;
 * a MADV_GUARD_INSTALL guard between two data pages; NMANY one-page VMAs
 * (more than the dumper's fd limit in the test allows pipes for); and pages a
 * parent and its child share copy-on-write (they must still share the same
 * physical pages after restore, while the pages either of them changed, or
 * the child dropped, must not be shared).
 *
 * Writes memzoo.status ("ready kid=PID") once set up; on SIGUSR1 the parent
 * writes memzoo.verify.status and the child memzoo.child.verify.status, each
 * a line of name=ok|BAD fields. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "usr1.h"
#include "pattern.h"
#include "status.h"

#define PS 4096
#define NCOW 16
#define NMANY 5000
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#define GUARD_INSTALL 102

struct flagged {
	const char *name;
	int flags, adv, lock;
	unsigned char *p;
	char vmflags[256];
};

static struct flagged fl[] = {
	{ "locked", MAP_PRIVATE, 0, 1 },
	{ "maplocked", MAP_PRIVATE | MAP_LOCKED, 0, 0 },
	{ "seq", MAP_PRIVATE, MADV_SEQUENTIAL, 0 },
	{ "rand", MAP_PRIVATE, MADV_RANDOM, 0 },
	{ "dontfork", MAP_PRIVATE, MADV_DONTFORK, 0 },
	{ "dontdump", MAP_PRIVATE, MADV_DONTDUMP, 0 },
	{ "mergeable", MAP_PRIVATE, MADV_MERGEABLE, 0 },
	{ "hugepage", MAP_PRIVATE, MADV_HUGEPAGE, 0 },
	{ "nohugepage", MAP_PRIVATE, MADV_NOHUGEPAGE, 0 },
	{ "wipeonfork", MAP_PRIVATE, MADV_WIPEONFORK, 0 },
	{ "noreserve", MAP_PRIVATE | MAP_NORESERVE, 0, 0 },
	{ "droppable", MAP_DROPPABLE, 0, 0 },
};
#define NFL (sizeof(fl) / sizeof(fl[0]))

static unsigned char *cow, *pnone, *wonly, *guard, *many;
static int have_guard;
static pid_t kid;

/* The VmFlags line of the VMA at p ("" if none). */
static void vmflags(void *p, char *out, size_t n)
{
	char line[512];
	unsigned long a = (unsigned long)p, s, e;
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	out[0] = 0;
	while (f && fgets(line, sizeof line, f)) {
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = s <= a && a < e;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, n, "%s", line + 8);
			break;
		}
	}
	if (f)
		fclose(f);
}

/* Physical frame of page p of process pid (0 if not present). */
static uint64_t pfn(pid_t pid, void *p)
{
	char path[64];
	uint64_t e = 0;
	snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, &e, 8, (unsigned long)p / PS * 8) != 8)
		e = 0;
	close(fd);
	return (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
}

static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }

/* Does writing to p fault? */
static int faults(volatile unsigned char *p)
{
	if (sigsetjmp(jb, 1))
		return 1;
	*p = 1;
	return 0;
}

static int zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

#define ADD(...) (n += snprintf(out + n, sizeof out - n, __VA_ARGS__))

static void check_parent(void)
{
	char out[4096], now[256];
	int n = 0, bad = 0;
	for (size_t i = 0; i < NFL; i++) {
		if (!fl[i].p)
			continue;
		vmflags(fl[i].p, now, sizeof now);
		int same = !strcmp(now, fl[i].vmflags);
		int data = !strcmp(fl[i].name, "droppable") ? zero(fl[i].p, 2 * PS) : !check(fl[i].p, 2 * PS, 100 + i);
		ADD("%s=%s ", fl[i].name, same && data ? "ok" : "BAD");
		if (!same)
			ADD("[%s != %s] ", now, fl[i].vmflags);
	}
	mprotect(pnone, 2 * PS, PROT_READ);
	ADD("protnone=%s ", check(pnone, 2 * PS, 21) ? "BAD" : "ok");
	mprotect(pnone, 2 * PS, PROT_NONE);
	mprotect(wonly, 2 * PS, PROT_READ);
	ADD("writeonly=%s ", check(wonly, 2 * PS, 22) ? "BAD" : "ok");
	mprotect(wonly, 2 * PS, PROT_WRITE);
	if (have_guard)
		ADD("guard=%s ", !check(guard, PS, 23) && !check(guard + 2 * PS, PS, 24) && faults(guard + PS) ? "ok" : "BAD");
	for (int i = 0; i < NMANY; i++)
		bad += *(int *)(many + (size_t)i * 2 * PS) != i;
	ADD("many=%s ", bad ? "BAD" : "ok");
	/* Contents: page 9 changed here, the rest is the pattern. */
	int data = 1, share = 1;
	for (int i = 0; i < NCOW; i++) {
		if (i == 9)
			data &= cow[i * PS] == 0x99 && !check(cow + i * PS + 8, PS - 8, 0);
		else
			data &= !check(cow + i * PS, PS, 1000 + i);
		uint64_t a = pfn(getpid(), cow + i * PS), b = pfn(kid, cow + i * PS);
		if (i == 3 || i == 5 || i == 9)
			share &= a != b;
		else
			share &= a && a == b;
	}
	ADD("cowdata=%s cow=%s\n", data ? "ok" : "BAD", share ? "ok" : "BAD");
	put_status(".", "memzoo.verify.status", out);
}

static void check_child(void)
{
	char out[512];
	int n = 0, data = 1;
	for (int i = 0; i < NCOW; i++) {
		if (i == 3)
			data &= cow[i * PS] == 0x33 && !check(cow + i * PS + 8, PS - 8, 0);
		else if (i == 5)
			data &= zero(cow + i * PS, PS);
		else
			data &= !check(cow + i * PS, PS, 1000 + i);
	}
	ADD("cowdata=%s ", data ? "ok" : "BAD");
	for (size_t i = 0; i < NFL; i++)
		if (!strcmp(fl[i].name, "wipeonfork") && fl[i].p)
			ADD("wiped=%s ", zero(fl[i].p, 2 * PS) ? "ok" : "BAD");
	ADD("done\n");
	put_status(".", "memzoo.child.verify.status", out);
}

static unsigned char *map(size_t len, int prot, int flags)
{
	unsigned char *p = mmap(NULL, len, prot, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

int main(void)
{
	signal(SIGUSR1, on_usr1);
	signal(SIGSEGV, on_segv);
	block_usr1();
	for (size_t i = 0; i < NFL; i++) {
		unsigned char *p = mmap(NULL, 2 * PS, PROT_READ | PROT_WRITE, fl[i].flags | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			continue; /* MAP_DROPPABLE before 6.11 */
		if (fl[i].adv && madvise(p, 2 * PS, fl[i].adv)) {
			munmap(p, 2 * PS); /* MADV_MERGEABLE without KSM */
			continue;
		}
		if (fl[i].lock && mlock(p, 2 * PS)) {
			perror("mlock");
			return 1;
		}
		fill(p, 2 * PS, 100 + i);
		fl[i].p = p;
		vmflags(p, fl[i].vmflags, sizeof fl[i].vmflags);
	}
	pnone = map(2 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(pnone, 2 * PS, 21);
	mprotect(pnone, 2 * PS, PROT_NONE);
	wonly = map(2 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(wonly, 2 * PS, 22);
	mprotect(wonly, 2 * PS, PROT_WRITE);
	guard = map(3 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	fill(guard, PS, 23);
	fill(guard + 2 * PS, PS, 24);
	have_guard = madvise(guard + PS, PS, GUARD_INSTALL) == 0;
	/* One-page VMAs that cannot merge: every other page of a reservation. */
	many = map((size_t)NMANY * 2 * PS, PROT_NONE, MAP_PRIVATE);
	for (int i = 0; i < NMANY; i++) {
		unsigned char *p = many + (size_t)i * 2 * PS;
		mprotect(p, PS, PROT_READ | PROT_WRITE);
		*(int *)p = i;
	}
	cow = map(NCOW * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	for (int i = 0; i < NCOW; i++)
		fill(cow + i * PS, PS, 1000 + i);
	int pfd[2];
	if (pipe(pfd))
		return 1;
	kid = fork();
	if (kid == 0) {
		cow[3 * PS] = 0x33;
		fill(cow + 3 * PS + 8, PS - 8, 0);
		madvise(cow + 5 * PS, PS, MADV_DONTNEED);
		write(pfd[1], "k", 1);
		for (;;) {
			wait_usr1();
			usr1 = 0;
			check_child();
		}
	}
	char c;
	if (read(pfd[0], &c, 1) != 1)
		return 1;
	cow[9 * PS] = 0x99;
	fill(cow + 9 * PS + 8, PS - 8, 0);
	char st[64];
	snprintf(st, sizeof st, "ready kid=%d\n", kid);
	put_status(".", "memzoo.status", st);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		check_parent();
	}
}
