/* Seccomp restore: three threads with different seccomp state.
 *   leader: no_new_privs, filters [allow-all, getppid -> EXDEV]
 *   S:      strict mode (created before the filters; no no_new_privs)
 *   T:      inherits the leader's chain and adds [getpgid -> EILSEQ], installed
 *           with SECCOMP_FILTER_FLAG_LOG
 * Usage: rseccomp DIR. Writes DIR/seccomp.before (each thread's Seccomp,
 * Seccomp_filters and NoNewPrivs lines, in thread order) then DIR/seccomp.ready.
 * On SIGUSR1: DIR/seccomp.after (the same lines, read again) and DIR/seccomp.verify
 * ("ok" if every thread's filters behave as installed). On SIGUSR2: S makes a
 * syscall strict mode forbids, which kills that thread (SIGKILL).
 * A child process C (forked after the leader's filters) and its thread W
 * share the leader's chain; C writes its pid to DIR/seccomp.child and on
 * SIGUSR1 writes DIR/seccomp.child.verify ("ok" if both threads see getppid
 * fail with EXDEV and its /proc status shows 2 filters). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2;
static void on_usr1(int s) { (void)s; usr1 = 1; }
static void on_usr2(int s) { (void)s; usr2 = 1; }
static int to_s[2], from_s[2], to_t[2], from_t[2];
static volatile pid_t tids[3];

static int deny_flags(int nr, int err, unsigned flags)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog p = { 4, f };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &p);
}

static int deny(int nr, int err) { return deny_flags(nr, err, 0); }

static void *strict_thread(void *a)
{
	char c;
	(void)a;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	tids[1] = syscall(SYS_gettid);
	if (syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0))
		return NULL;
	for (;;) {
		if (syscall(SYS_read, to_s[0], &c, 1) != 1)
			continue;
		if (c == 'K')
			syscall(SYS_getpid); /* forbidden: the kernel kills this thread */
		syscall(SYS_write, from_s[1], "S", 1);
	}
}

static void *filter_thread(void *a)
{
	char c;
	(void)a;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	tids[2] = syscall(SYS_gettid);
	if (deny_flags(__NR_getpgid, EILSEQ, SECCOMP_FILTER_FLAG_LOG))
		return NULL;
	for (;;) {
		if (read(to_t[0], &c, 1) != 1)
			continue;
		long p = syscall(SYS_getppid);
		int e1 = errno;
		long g = syscall(SYS_getpgid, 0);
		int e2 = errno;
		c = (p == -1 && e1 == EXDEV && g == -1 && e2 == EILSEQ) ? 'T' : 'F';
		write(from_t[1], &c, 1);
	}
}

static int to_w[2], from_w[2];

static int getppid_denied(void)
{
	long p = syscall(SYS_getppid);
	return p == -1 && errno == EXDEV;
}

static void *child_thread(void *a)
{
	char c;
	(void)a;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		if (read(to_w[0], &c, 1) != 1)
			continue;
		c = getppid_denied() ? 'W' : 'F';
		write(from_w[1], &c, 1);
	}
}

static int child_filters_ok(void)
{
	char line[256];
	int n = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f) return 0;
	while (fgets(line, sizeof(line), f))
		if (!strcmp(line, "Seccomp_filters:\t2\n")) n++;
	fclose(f);
	return n == 1;
}

static void child_main(void)
{
	pthread_t w;
	char name[32];
	if (pipe(to_w) || pipe(from_w) || pthread_create(&w, NULL, child_thread, NULL)) _exit(9);
	snprintf(name, sizeof(name), "%d\n", getpid());
	FILE *f = fopen("seccomp.child.tmp", "w");
	if (!f) _exit(9);
	fputs(name, f);
	fclose(f);
	rename("seccomp.child.tmp", "seccomp.child");
	for (;;) {
		usleep(20000); /* polls: a signal that lands as the restored pause() restarts is not lost */
		if (usr1) {
			char c = 0;
			const char *why = "ok";
			if (!getppid_denied()) why = "child: getppid not EXDEV";
			else if (write(to_w[1], "x", 1) != 1 || read(from_w[0], &c, 1) != 1 || c != 'W')
				why = "child thread: getppid not EXDEV";
			else if (!child_filters_ok()) why = "child: not 2 filters";
			FILE *v = fopen("seccomp.child.verify", "w");
			if (v) { fprintf(v, "%s\n", why); fclose(v); }
			usr1 = 0;
		}
	}
}

static void report(const char *name)
{
	FILE *out = fopen(name, "w");
	for (int i = 0; i < 3 && out; i++) {
		char path[64], line[256];
		snprintf(path, sizeof(path), "/proc/self/task/%d/status", tids[i]);
		FILE *f = fopen(path, "r");
		if (!f) { fprintf(out, "thread %d: no status\n", i); continue; }
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "Seccomp", 7) || !strncmp(line, "NoNewPrivs", 10))
				fprintf(out, "thread %d: %s", i, line);
		fclose(f);
	}
	if (out) fclose(out);
}

int main(int argc, char **argv)
{
	struct sock_filter allow[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog p1 = { 1, allow };
	pthread_t s, t;
	if (argc < 2 || chdir(argv[1])) return 2;
	if (pipe(to_s) || pipe(from_s) || pipe(to_t) || pipe(from_t)) return 3;
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	tids[0] = getpid();
	if (pthread_create(&s, NULL, strict_thread, NULL)) return 4;
	while (!tids[1]) usleep(1000);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p1) ||
	    deny(__NR_getppid, EXDEV))
		return 5;
	pid_t c = fork();
	if (c < 0) return 8;
	if (c == 0) child_main();
	while (access("seccomp.child", F_OK)) usleep(1000);
	if (pthread_create(&t, NULL, filter_thread, NULL)) return 6;
	while (!tids[2]) usleep(1000);
	usleep(100000); /* let S reach its read */
	report("seccomp.before");
	FILE *r = fopen("seccomp.ready", "w");
	if (!r) return 7;
	fprintf(r, "ready\n");
	fclose(r);
	for (;;) {
		usleep(20000); /* polls: a signal that lands as the restored pause() restarts is not lost */
		if (usr2) {
			write(to_s[1], "K", 1);
			usr2 = 0;
		}
		if (usr1) {
			char c1 = 0, c2 = 0;
			const char *why = "ok";
			long p = syscall(SYS_getppid);
			int e = errno;
			if (!(p == -1 && e == EXDEV)) why = "leader: getppid not EXDEV";
			else if (syscall(SYS_getpgid, 0) < 0) why = "leader: getpgid filtered";
			else if (write(to_s[1], "x", 1) != 1 || read(from_s[0], &c1, 1) != 1 || c1 != 'S')
				why = "strict thread did not answer";
			else if (write(to_t[1], "x", 1) != 1 || read(from_t[0], &c2, 1) != 1 || c2 != 'T')
				why = "filter thread: its filters do not behave";
			report("seccomp.after");
			FILE *f = fopen("seccomp.verify", "w");
			if (f) { fprintf(f, "%s\n", why); fclose(f); }
			usr1 = 0;
		}
	}
}
