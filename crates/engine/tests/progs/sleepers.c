/* Threads asleep in system calls. Usage: sleepers DIR
 * t1 clock_nanosleep(CLOCK_MONOTONIC, relative) and t2 nanosleep (the raw
 * system call: glibc calls clock_nanosleep), 300 ms at a
 *   time (an EINTR goes on with the remaining time), counting completed sleeps;
 * t3 waits on a condition variable (futex), t4 reads a pipe, t5 is in
 *   pthread_join of t6, t6 in clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME)
 *   until a deadline far away, then returns;
 * the main thread waits for SIGUSR1 in rt_sigsuspend.
 * Writes DIR/sleepers.ready "ready" once every thread is in its system call
 * (read from /proc/self/task/TID/syscall). On SIGUSR1: waits until t1 and t2
 * completed two more sleeps, signals the condition, writes the pipe, wakes
 * t6 (SIGUSR2, whose handler sets its stop flag), joins every thread and
 * checks each one's return value; writes DIR/sleepers.verify "sleepers=ok"
 * or "sleepers=fail what". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

static volatile long sleeps[3];
static volatile int stop, tids[7];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go, pfd[2];
static pthread_t th[7];
static volatile sig_atomic_t t6_stop;
static void on_usr2(int s) { (void)s; t6_stop = 1; }

static void *t1(void *a)
{
	(void)a;
	tids[1] = syscall(SYS_gettid);
	while (!stop) {
		struct timespec req = { 0, 300000000 }, rem;
		int r;
		while ((r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem)) == EINTR)
			req = rem;
		if (r)
			return (void *)-1L;
		sleeps[1]++;
	}
	return (void *)101L;
}

static void *t2(void *a)
{
	(void)a;
	tids[2] = syscall(SYS_gettid);
	while (!stop) {
		struct timespec req = { 0, 300000000 }, rem;
		int r;
		while ((r = syscall(SYS_nanosleep, &req, &rem)) && errno == EINTR)
			req = rem;
		if (r)
			return (void *)-1L;
		sleeps[2]++;
	}
	return (void *)202L;
}

static void *t3(void *a)
{
	(void)a;
	tids[3] = syscall(SYS_gettid);
	pthread_mutex_lock(&mu);
	while (!go)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return (void *)303L;
}

static void *t4(void *a)
{
	(void)a;
	long v = 0;
	tids[4] = syscall(SYS_gettid);
	ssize_t n;
	while ((n = read(pfd[0], &v, sizeof(v))) < 0 && errno == EINTR)
		;
	return n == sizeof(v) ? (void *)(v + 4) : (void *)-1L;
}

static void *t6(void *a)
{
	(void)a;
	tids[6] = syscall(SYS_gettid);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 100000;
	while (!t6_stop) {
		int r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, NULL);
		if (r && r != EINTR)
			return (void *)-1L;
	}
	return (void *)606L;
}

static void *t5(void *a)
{
	(void)a;
	void *v;
	tids[5] = syscall(SYS_gettid);
	if (pthread_join(th[6], &v))
		return (void *)-1L;
	return (void *)((long)v + 5);
}

static long in_syscall(int tid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -2;
	int n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -2;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	void *(*fn[7])(void *) = { 0, t1, t2, t3, t4, t5, t6 };
	long want_nr[7] = { 0, SYS_clock_nanosleep, SYS_nanosleep, SYS_futex, SYS_read, SYS_futex,
			    SYS_clock_nanosleep };
	long want_ret[7] = { 0, 101, 202, 303, 4242 + 4, 606 + 5, 0 };
	char out[256];
	struct sigaction sa;

	signal(SIGUSR1, on_usr1);
	block_usr1();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2; /* no SA_RESTART: t6's sleep returns EINTR */
	sigaction(SIGUSR2, &sa, NULL);
	if (pipe(pfd))
		return 2;
	/* t6 first: t5 joins it. */
	for (int i = 6; i >= 1; i--)
		if (pthread_create(&th[i], NULL, fn[i], NULL))
			return 4;
	for (int i = 1; i <= 6; i++)
		while (!tids[i] || in_syscall(tids[i]) != want_nr[i])
			poll(NULL, 0, 5);
	put_status_raw(dir, "sleepers.ready", "ready\n");
	wait_usr1();

	strcpy(out, "sleepers=ok\n");
	long s1 = sleeps[1], s2 = sleeps[2];
	for (int n = 0; sleeps[1] < s1 + 2 || sleeps[2] < s2 + 2; n++) {
		if (n > 1000) {
			snprintf(out, sizeof(out), "sleepers=fail t1/t2 no longer sleep (%ld %ld)\n", sleeps[1] - s1,
				 sleeps[2] - s2);
			put_status_raw(dir, "sleepers.verify", out);
			return 1;
		}
		poll(NULL, 0, 10);
	}
	stop = 1;
	pthread_mutex_lock(&mu);
	go = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	long v = 4242;
	if (write(pfd[1], &v, sizeof(v)) != sizeof(v))
		return 5;
	/* Until t5 is back from joining t6 (a signal just before t6 enters its
	 * sleep would be missed: send it again). */
	void *r5 = NULL;
	for (int n = 0; pthread_tryjoin_np(th[5], &r5); n++) {
		if (n > 1000) {
			put_status_raw(dir, "sleepers.verify", "sleepers=fail t6 does not wake up\n");
			return 1;
		}
		syscall(SYS_tgkill, getpid(), tids[6], SIGUSR2);
		poll(NULL, 0, 10);
	}
	for (int i = 1; i <= 5; i++) {
		void *r = r5;
		if (i < 5 && pthread_join(th[i], &r)) {
			snprintf(out, sizeof(out), "sleepers=fail join t%d\n", i);
			break;
		}
		if ((long)r != want_ret[i]) {
			snprintf(out, sizeof(out), "sleepers=fail t%d returned %ld, not %ld\n", i, (long)r,
				 want_ret[i]);
			break;
		}
	}
	put_status_raw(dir, "sleepers.verify", out);
	for (;;)
		pause();
}
