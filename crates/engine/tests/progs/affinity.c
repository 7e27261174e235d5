/* Threads pinned to different CPUs. Usage: affinity pin|none [dir]
 * pin: the main thread runs on {0}, thread 1 on {1}, thread 2 on {0,1};
 * none: nobody is pinned (all three keep the default).
 * Prints "ready main=TID t1=TID t2=TID" on stdout and writes the same line to
 * <dir>/affinity.ready. On each SIGUSR1 the main thread reads every thread's
 * affinity (sched_getaffinity by tid) and writes <dir>/affinity.verify:
 * "affinity=ok" or "affinity=fail <tid>: <what>". The main thread waits with a
 * short poll loop (no pause(): a signal between the test and pause would be
 * lost after a restart). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "status.h"

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

static volatile pid_t tids[3];
static cpu_set_t want[3];

static void *worker(void *arg)
{
	long i = (long)arg;
	tids[i] = syscall(SYS_gettid);
	for (;;)
		poll(NULL, 0, 1000);
	return NULL;
}

static void show(char *buf, size_t n, cpu_set_t *s)
{
	size_t off = 0;
	buf[0] = 0;
	for (int c = 0; c < CPU_SETSIZE && off + 8 < n; c++)
		if (CPU_ISSET(c, s))
			off += snprintf(buf + off, n - off, "%s%d", off ? "," : "", c);
}

int main(int argc, char **argv)
{
	int pin = argc > 1 && !strcmp(argv[1], "pin");
	const char *dir = argc > 2 ? argv[2] : ".";
	char line[256], why[256];
	struct sigaction sa;
	sigset_t set;
	pthread_t th;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, 0);
	/* Only the main thread takes SIGUSR1. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, 0);

	for (int i = 0; i < 3; i++) {
		CPU_ZERO(&want[i]);
		for (int c = 0; c < ncpu; c++)
			CPU_SET(c, &want[i]);
	}
	if (pin) {
		CPU_ZERO(&want[0]);
		CPU_SET(0, &want[0]);
		CPU_ZERO(&want[1]);
		CPU_SET(1, &want[1]);
		CPU_ZERO(&want[2]);
		CPU_SET(0, &want[2]);
		CPU_SET(1, &want[2]);
	}
	tids[0] = syscall(SYS_gettid);
	for (long i = 1; i < 3; i++)
		if (pthread_create(&th, 0, worker, (void *)i))
			return 1;
	while (!tids[1] || !tids[2])
		poll(NULL, 0, 1);
	if (pin)
		for (int i = 0; i < 3; i++)
			if (sched_setaffinity(tids[i], sizeof(cpu_set_t), &want[i]))
				return 2;
	pthread_sigmask(SIG_UNBLOCK, &set, 0);

	snprintf(line, sizeof(line), "ready main=%d t1=%d t2=%d\n", tids[0], tids[1], tids[2]);
	put_status_raw(dir, "affinity.ready", line);
	if (write(1, line, strlen(line)) < 0)
		return 1;

	for (;;) {
		while (!usr1)
			poll(NULL, 0, 20);
		usr1 = 0;
		why[0] = 0;
		for (int i = 0; i < 3 && !why[0]; i++) {
			cpu_set_t got;
			char a[128], b[128];
			if (sched_getaffinity(tids[i], sizeof(got), &got)) {
				snprintf(why, sizeof(why), "%d: sched_getaffinity failed", tids[i]);
			} else if (!CPU_EQUAL(&got, &want[i])) {
				show(a, sizeof(a), &want[i]);
				show(b, sizeof(b), &got);
				snprintf(why, sizeof(why), "%d: want %s got %s", tids[i], a, b);
			}
		}
		snprintf(line, sizeof(line), "affinity=%s%s\n", why[0] ? "fail " : "ok", why);
		put_status_raw(dir, "affinity.verify", line);
	}
}
