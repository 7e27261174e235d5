/* Scheduling policies per task and thread. Usage: sched DIR
 * A child runs SCHED_RR priority 3 with SCHED_RESET_ON_FORK; thread t1 runs
 * SCHED_BATCH at nice 5, t2 SCHED_IDLE, t3 SCHED_FIFO priority 7, the main
 * thread SCHED_OTHER at nice 2. Writes DIR/sched.ready "ready child=PID" once
 * set. On SIGUSR1 the main thread reads every policy and priority back
 * (sched_getscheduler/sched_getparam/getpriority by tid, the child's by its
 * pid) and writes DIR/sched.verify "sched=ok" or "sched=fail what". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

static volatile int tids[4];
static const int pol[4] = { SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_FIFO };
static const int prio[4] = { 0, 0, 0, 7 };
static const int nice_[4] = { 2, 5, 0, 0 };

static void *worker(void *arg)
{
	long i = (long)arg;
	struct sched_param p = { .sched_priority = prio[i] };
	if (setpriority(PRIO_PROCESS, 0, nice_[i]) || sched_setscheduler(0, pol[i], &p)) {
		perror("sched");
		_exit(4);
	}
	tids[i] = syscall(SYS_gettid);
	for (;;)
		poll(NULL, 0, 1000);
	return NULL;
}

static int check(int tid, int want_pol, int want_prio, int want_nice, char *why, size_t n)
{
	struct sched_param p;
	int got = sched_getscheduler(tid);
	if (got != want_pol) {
		snprintf(why, n, "sched=fail %d: policy %#x, not %#x\n", tid, got, want_pol);
		return 1;
	}
	if (sched_getparam(tid, &p) || p.sched_priority != want_prio) {
		snprintf(why, n, "sched=fail %d: priority %d, not %d\n", tid, p.sched_priority, want_prio);
		return 1;
	}
	int nv = getpriority(PRIO_PROCESS, tid);
	if (want_nice >= -20 && nv != want_nice) {
		snprintf(why, n, "sched=fail %d: nice %d, not %d\n", tid, nv, want_nice);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char line[256];
	pthread_t th;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	pid_t kid = fork();
	if (kid == 0) {
		for (;;)
			poll(NULL, 0, 1000);
	}
	struct sched_param p = { .sched_priority = 3 };
	if (sched_setscheduler(kid, SCHED_RR | SCHED_RESET_ON_FORK, &p))
		return 5;
	for (long i = 1; i < 4; i++) {
		if (pthread_create(&th, NULL, worker, (void *)i))
			return 6;
		while (!tids[i])
			poll(NULL, 0, 1);
	}
	if (setpriority(PRIO_PROCESS, 0, nice_[0]))
		return 7;
	tids[0] = getpid();
	snprintf(line, sizeof(line), "ready child=%d\n", kid);
	put_status_raw(dir, "sched.ready", line);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		char why[256] = "sched=ok\n";
		int bad = check(kid, SCHED_RR | SCHED_RESET_ON_FORK, 3, -100, why, sizeof(why));
		for (int i = 0; i < 4 && !bad; i++)
			bad = check(tids[i], pol[i], prio[i], pol[i] == SCHED_FIFO ? -100 : nice_[i], why, sizeof(why));
		put_status_raw(dir, "sched.verify", why);
	}
}
