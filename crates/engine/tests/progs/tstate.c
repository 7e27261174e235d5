/* Thread state that only shows when it is used. Usage: tstate DIR
 * - a SIGEV_THREAD timer (glibc: a helper thread the kernel signals with
 *   SIGEV_THREAD_ID) writing to an eventfd every 10 ms;
 * - a SIGEV_THREAD_ID timer aimed at thread t3, which counts its signals in
 *   sigwaitinfo;
 * - thread t2 holds a robust mutex (its robust futex list names it);
 * - a SIGTRAP handler;
 * - a child P whose child C (uid 1000 by setresuid, then PR_SET_PDEATHSIG
 *   SIGUSR2) reports the parent-death signal in DIR/tstate.pdeath.
 * Writes DIR/tstate.ready "ready p=PID c=PID". On SIGUSR1 the main thread
 * checks: raise(SIGTRAP) reaches the handler; the eventfd and t3 get new
 * expirations; every thread's get_robust_list is what it was; t2 exits and
 * locking the mutex gives EOWNERDEAD; P is killed and C gets SIGUSR2.
 * Writes DIR/tstate.verify "tstate=ok" or "tstate=fail what". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

static int efd;
static volatile sig_atomic_t traps;
static volatile int t2_exit, t3_count, ready[4], tids[4];
static pthread_mutex_t robust;
static void *rl_head[4];
static size_t rl_len[4];
static volatile int rl_bad[4], rl_ask[4], rl_done[4];

static void on_trap(int s) { (void)s; traps++; }
static void on_usr2(int s) { (void)s; }

static void timer_func(union sigval v)
{
	(void)v;
	long long one = 1;
	if (write(efd, &one, sizeof(one)) != sizeof(one))
		_exit(9);
}

static void robust_self(int i)
{
	syscall(SYS_get_robust_list, 0, &rl_head[i], &rl_len[i]);
}

static void robust_check(int i)
{
	void *h;
	size_t l;
	syscall(SYS_get_robust_list, 0, &h, &l);
	rl_bad[i] = h != rl_head[i] || l != rl_len[i];
}

static void *t1(void *a)
{
	(void)a;
	robust_self(1);
	tids[1] = syscall(SYS_gettid);
	ready[1] = 1;
	for (;;) {
		if (rl_ask[1] != rl_done[1]) {
			robust_check(1);
			rl_done[1] = rl_ask[1];
		}
		poll(NULL, 0, 5);
	}
	return NULL;
}

static void *t2(void *a)
{
	(void)a;
	robust_self(2);
	tids[2] = syscall(SYS_gettid);
	pthread_mutex_lock(&robust);
	ready[2] = 1;
	while (!t2_exit) {
		if (rl_ask[2] != rl_done[2]) {
			robust_check(2);
			rl_done[2] = rl_ask[2];
		}
		poll(NULL, 0, 5);
	}
	return NULL; /* dies holding the mutex */
}

static void *t3(void *a)
{
	(void)a;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 1);
	robust_self(3);
	tids[3] = syscall(SYS_gettid);
	ready[3] = 1;
	for (;;) {
		siginfo_t si;
		if (sigwaitinfo(&s, &si) == SIGRTMIN + 1 && si.si_value.sival_int == 77)
			t3_count++;
		if (rl_ask[3] != rl_done[3]) {
			robust_check(3);
			rl_done[3] = rl_ask[3];
		}
	}
	return NULL;
}

static int new_events(void)
{
	long long v;
	for (int n = 0; n < 2; n++) {
		struct pollfd p = { efd, POLLIN, 0 };
		if (poll(&p, 1, 3000) != 1 || read(efd, &v, sizeof(v)) != sizeof(v))
			return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char out[256], line[128];
	pthread_t th[4];
	pthread_mutexattr_t ma;
	sigset_t s;

	signal(SIGUSR1, on_usr1);
	block_usr1();
	signal(SIGTRAP, on_trap);
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &s, NULL); /* t3 takes it with sigwaitinfo */

	pid_t p = fork();
	if (p == 0) {
		pid_t c = fork();
		if (c == 0) {
			signal(SIGUSR2, on_usr2);
			sigset_t w;
			sigemptyset(&w);
			sigaddset(&w, SIGUSR2);
			sigprocmask(SIG_BLOCK, &w, NULL);
			if (syscall(SYS_setresgid, 1000, 1000, 1000) || syscall(SYS_setresuid, 1000, 1000, 1000))
				_exit(5);
			/* After the ids: changing them clears the signal. */
			prctl(PR_SET_PDEATHSIG, SIGUSR2);
			put_status_raw(dir, "tstate.child", "c\n");
			siginfo_t si;
			while (sigwaitinfo(&w, &si) != SIGUSR2)
				;
			put_status_raw(dir, "tstate.pdeath", "pdeath=got\n");
			_exit(0);
		}
		for (;;)
			pause();
	}

	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&robust, &ma);
	efd = eventfd(0, 0);
	robust_self(0);
	void *(*fn[4])(void *) = { 0, t1, t2, t3 };
	for (int i = 1; i < 4; i++) {
		pthread_create(&th[i], NULL, fn[i], NULL);
		while (!ready[i])
			poll(NULL, 0, 1);
	}

	timer_t a, b;
	struct sigevent ev;
	struct itimerspec its = { { 0, 10000000 }, { 0, 10000000 } };
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD;
	ev.sigev_notify_function = timer_func;
	if (timer_create(CLOCK_MONOTONIC, &ev, &a) || timer_settime(a, 0, &its, NULL))
		return 6;
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev._sigev_un._tid = tids[3];
	ev.sigev_signo = SIGRTMIN + 1;
	ev.sigev_value.sival_int = 77;
	if (timer_create(CLOCK_MONOTONIC, &ev, &b) || timer_settime(b, 0, &its, NULL))
		return 7;
	if (!new_events())
		return 8;
	char cpath[512];
	snprintf(cpath, sizeof(cpath), "%s/tstate.child", dir);
	while (access(cpath, F_OK))
		poll(NULL, 0, 5);
	snprintf(line, sizeof(line), "ready p=%d\n", p);
	put_status_raw(dir, "tstate.ready", line);

	wait_usr1();
	strcpy(out, "tstate=ok\n");
	int c0 = t3_count;
	raise(SIGTRAP);
	if (traps != 1)
		snprintf(out, sizeof(out), "tstate=fail SIGTRAP handler ran %d times\n", (int)traps);
	else if (!new_events())
		strcpy(out, "tstate=fail no SIGEV_THREAD expirations\n");
	for (int n = 0; n < 300 && t3_count < c0 + 3; n++)
		poll(NULL, 0, 10);
	if (!strncmp(out, "tstate=ok", 9) && t3_count < c0 + 3)
		strcpy(out, "tstate=fail thread t3 gets no timer signal\n");
	robust_check(0);
	for (int i = 1; i < 4; i++) {
		rl_ask[i] = 1;
		for (int n = 0; n < 300 && rl_done[i] != 1; n++)
			poll(NULL, 0, 10);
		if (!strncmp(out, "tstate=ok", 9) && (rl_done[i] != 1 || rl_bad[i]))
			snprintf(out, sizeof(out), "tstate=fail robust list of t%d\n", i);
	}
	if (!strncmp(out, "tstate=ok", 9) && rl_bad[0])
		strcpy(out, "tstate=fail robust list of the main thread\n");
	t2_exit = 1;
	pthread_join(th[2], NULL);
	int r = pthread_mutex_lock(&robust);
	if (!strncmp(out, "tstate=ok", 9) && r != EOWNERDEAD)
		snprintf(out, sizeof(out), "tstate=fail mutex of the dead t2: %d, not EOWNERDEAD\n", r);
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/tstate.pdeath", dir);
	int n;
	for (n = 0; n < 300 && access(path, F_OK); n++)
		poll(NULL, 0, 10);
	if (!strncmp(out, "tstate=ok", 9) && access(path, F_OK))
		strcpy(out, "tstate=fail no parent-death signal\n");
	put_status_raw(dir, "tstate.verify", out);
	for (;;)
		pause();
}
