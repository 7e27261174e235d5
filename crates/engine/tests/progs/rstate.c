/* Per-process state that must survive dump + restore. The program sets it
 * up, reports "ready", and on SIGUSR1 checks every item and writes
 * <dir>/state.verify: "state=ok" or the first thing that differs (the audit
 * loginuid included: run it under a set one to check that it comes back). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }
static void on_usr2(int s) { (void)s; }
static char altstack[65536];

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char path[512], why[256] = "";
	struct sigaction sa;
	sigset_t set;
	timer_t tid;
	struct sigevent sev;
	struct itimerspec its = { { 500, 0 }, { 1000, 0 } };
	struct itimerval itv = { { 700, 0 }, { 900, 0 } };
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	struct rlimit rl = { 512, 4096 };
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigaction(SIGUSR1, &sa, 0);
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;
	sigaddset(&sa.sa_mask, SIGINT);
	sigaction(SIGUSR2, &sa, 0);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &set, 0);
	kill(getpid(), SIGUSR2); /* pending, process-wide */
	union sigval v = { .sival_int = 4242 };
	sigqueue(getpid(), SIGRTMIN + 3, v); /* queued realtime signal with a value */
	sigaltstack(&ss, 0);
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_NONE;
	timer_create(CLOCK_MONOTONIC, &sev, &tid);
	timer_create(CLOCK_MONOTONIC, &sev, &tid); /* the second one: id 1 */
	timer_settime(tid, 0, &its, 0);
	setitimer(ITIMER_VIRTUAL, &itv, 0);
	umask(027);
	setpriority(PRIO_PROCESS, 0, 7);
	{ FILE *o = fopen("/proc/self/oom_score_adj", "w"); if (o) { fputs("123", o); fclose(o); } }
	setrlimit(RLIMIT_NOFILE, &rl);
	snprintf(path, sizeof(path), "%s/state.data", dir);
	fd = open(path, O_RDWR | O_CREAT | O_APPEND, 0600);
	if (write(fd, "0123456789", 10) != 10) return 1;
	dup2(fd, 42);
	close(fd);
	lseek(42, 3, SEEK_SET);
	if (chdir(dir)) return 1;

	char luid0[32] = "", luid[32] = "";
	{ FILE *l = fopen("/proc/self/loginuid", "r"); if (l) { if (!fgets(luid0, sizeof(luid0), l)) luid0[0] = 0; fclose(l); } }
	snprintf(path, sizeof(path), "%s/state.ready", dir);
	FILE *f = fopen(path, "w"); fprintf(f, "%d\n", getpid()); fclose(f);
	while (!usr1) {
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, 0);
	}
	/* Check everything. */
	sigset_t pend;
	sigpending(&pend);
	struct itimerspec cur;
	struct itimerval icur;
	stack_t scur;
	struct rlimit rcur;
	struct sigaction scur2;
	char cwd[512];
	mode_t um = umask(0);
	siginfo_t si;
	struct timespec zero = { 0, 0 };
	if (!sigismember(&pend, SIGUSR2)) strcpy(why, "pending SIGUSR2 lost");
	else if (!sigismember(&pend, SIGRTMIN + 3)) strcpy(why, "queued SIGRTMIN+3 lost");
	else if (timer_gettime((timer_t)1, &cur) || cur.it_interval.tv_sec != 500 || cur.it_value.tv_sec > 1000 || cur.it_value.tv_sec < 900)
		snprintf(why, sizeof(why), "posix timer 1: %ld/%ld", (long)cur.it_interval.tv_sec, (long)cur.it_value.tv_sec);
	else if (getitimer(ITIMER_VIRTUAL, &icur) || icur.it_interval.tv_sec != 700 || icur.it_value.tv_sec < 800)
		snprintf(why, sizeof(why), "itimer virtual: %ld/%ld", (long)icur.it_interval.tv_sec, (long)icur.it_value.tv_sec);
	else if (sigaltstack(0, &scur) || scur.ss_sp != altstack || scur.ss_size != sizeof(altstack))
		strcpy(why, "sigaltstack");
	else if (um != 027) snprintf(why, sizeof(why), "umask %o", um);
	else if (({ int v = 0; FILE *o = fopen("/proc/self/oom_score_adj", "r"); if (o) { if (fscanf(o, "%d", &v) != 1) v = -1; fclose(o); } v; }) != 123)
		strcpy(why, "oom_score_adj");
	else if (getpriority(PRIO_PROCESS, 0) != 7) snprintf(why, sizeof(why), "nice %d", getpriority(PRIO_PROCESS, 0));
	else if (getrlimit(RLIMIT_NOFILE, &rcur) || rcur.rlim_cur != 512 || rcur.rlim_max != 4096)
		snprintf(why, sizeof(why), "rlimit nofile %ld/%ld", (long)rcur.rlim_cur, (long)rcur.rlim_max);
	else if (lseek(42, 0, SEEK_CUR) != 3 || !(fcntl(42, F_GETFL) & O_APPEND))
		strcpy(why, "fd 42 offset/flags");
	else if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, dir))
		snprintf(why, sizeof(why), "cwd %s", cwd);
	else if (sigaction(SIGUSR2, 0, &scur2) || scur2.sa_handler != on_usr2 || !sigismember(&scur2.sa_mask, SIGINT))
		strcpy(why, "SIGUSR2 action");
	else if (sigtimedwait(&set, &si, &zero) != SIGUSR2 && si.si_signo != SIGUSR2)
		strcpy(why, "SIGUSR2 not delivered");
	else if (sigtimedwait(&set, &si, &zero) != SIGRTMIN + 3 || si.si_value.sival_int != 4242)
		strcpy(why, "SIGRTMIN+3 value");
	{ FILE *l = fopen("/proc/self/loginuid", "r"); if (l) { if (!fgets(luid, sizeof(luid), l)) luid[0] = 0; fclose(l); } }
	if (!why[0] && strcmp(luid, luid0))
		snprintf(why, sizeof(why), "loginuid %s, before %s", luid, luid0);
	snprintf(path, sizeof(path), "%s/state.verify", dir);
	f = fopen(path, "w");
	fprintf(f, "%s\n", why[0] ? why : "state=ok");
	fclose(f);
	for (;;) pause();
}
