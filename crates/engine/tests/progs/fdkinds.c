/* fdkinds DIR [closed-target|fork]: an eventfd (counter 0x100000007, nonblock,
 * cloexec), three timerfds (monotonic 100 ms periodic; realtime absolute
 * +1000 s with a 3.5 s interval, cloexec; boottime one-shot that has fired
 * once and was not read), a signalfd (SIGUSR2 + SIGRTMIN+1), an inotify fd
 * with watches wd 1 (DIR/fdk-w1, IN_CREATE), wd 3 (DIR/fdk-w3,
 * IN_CREATE|IN_MODIFY|IN_ONLYDIR) and wd 4 (DIR/fdk-w2, IN_DELETE; wd 2 was
 * removed), and an epoll fd watching eventfd (EPOLLET), the periodic timer,
 * the signalfd and inotify with distinct data.
 * With closed-target, a dup of the eventfd is added to the epoll and closed.
 * With fork, a child shares all of them and runs the same loop, writing
 * DIR/fdkinds.child.{status,verify} (it leaves the one-shot timer alone).
 * Prints "ready ..." with the fd numbers; writes DIR/fdkinds.status
 * (ticks=N sigs=N) as it runs; on SIGUSR1 checks everything and writes
 * DIR/fdkinds.verify: "ok" or "bad: reason". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "status.h"

#define D_EFD 0x1111000000000001ULL
#define D_TFD 0x2222000000000002ULL
#define D_SFD 0x3333000000000003ULL
#define D_IFD 0x4444000000000004ULL

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

static const char *dir;
static const char *tag = "fdkinds";
static int is_child;
static int efd, tfd, tabs, tick, sfd, ifd, ep, wd1, wd3, wd4;
static unsigned long ticks, sigs, nverify;

static void touch(const char *sub, const char *name, int unlink_it)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/%s/%s-%lu", dir, sub, name, nverify);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	if (fd >= 0)
		close(fd);
	if (unlink_it)
		unlink(p);
}

static const char *verify(void)
{
	static char why[256];
	uint64_t v = 0;
	struct itimerspec its;
	struct epoll_event ev;


	nverify++;
	/* eventfd: counter and flags. */
	if (read(efd, &v, 8) != 8 || v != 0x100000007ULL) {
		snprintf(why, sizeof(why), "eventfd counter %#llx", (unsigned long long)v);
		return why;
	}
	if (write(efd, &v, 8) != 8)
		return "eventfd write back";
	if (!(fcntl(efd, F_GETFD) & FD_CLOEXEC) || !(fcntl(efd, F_GETFL) & O_NONBLOCK))
		return "eventfd flags";
	/* The one-shot timer fired once before the dump; nobody read it. */
	if (nverify == 1 && !is_child) {
		v = 0;
		if (read(tick, &v, 8) != 8 || v != 1) {
			snprintf(why, sizeof(why), "one-shot ticks %llu (%s)", (unsigned long long)v, strerror(errno));
			return why;
		}
	}
	/* Absolute realtime timer: still ~1000 s away, 3.5 s interval. */
	if (timerfd_gettime(tabs, &its) || its.it_interval.tv_sec != 3 || its.it_interval.tv_nsec != 500000000 ||
	    its.it_value.tv_sec < 800 || its.it_value.tv_sec > 1000) {
		snprintf(why, sizeof(why), "absolute timer value %ld interval %ld.%09ld", (long)its.it_value.tv_sec,
			 (long)its.it_interval.tv_sec, its.it_interval.tv_nsec);
		return why;
	}
	if (!(fcntl(tabs, F_GETFD) & FD_CLOEXEC) || (fcntl(tabs, F_GETFL) & O_NONBLOCK))
		return "absolute timer flags";
	if (timerfd_gettime(tfd, &its) || its.it_interval.tv_sec != 0 || its.it_interval.tv_nsec != 100000000)
		return "periodic timer interval";
	/* epoll: the items are keyed by these fd numbers (MOD finds them). */
	ev.events = EPOLLIN | EPOLLET; ev.data.u64 = D_EFD;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, efd, &ev)) return "epoll MOD eventfd";
	ev.events = EPOLLIN; ev.data.u64 = D_TFD;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, tfd, &ev)) return "epoll MOD timerfd";
	ev.data.u64 = D_SFD;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, sfd, &ev)) return "epoll MOD signalfd";
	ev.data.u64 = D_IFD;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, ifd, &ev)) return "epoll MOD inotify";
	if (!(fcntl(ep, F_GETFD) & FD_CLOEXEC))
		return "epoll cloexec";
	/* signalfd: a queued SIGRTMIN+1 is read through it. */
	kill(getpid(), SIGRTMIN + 1);
	{
		struct signalfd_siginfo si;
		int got = 0;
		while (read(sfd, &si, sizeof(si)) == sizeof(si))
			if ((int)si.ssi_signo == SIGRTMIN + 1)
				got = 1;
		if (!got)
			return "signalfd did not deliver SIGRTMIN+1";
	}
	/* inotify: each watch reports under its wd. */
	{
		char buf[8192];
		int seen1 = 0, seen3 = 0, seen4 = 0;
		ssize_t r;
		/* Removed again so that a restored copy creates them anew. */
		touch("fdk-w1", "a", 1);
		touch("fdk-w3", "b", 1);
		touch("fdk-w2", "c", 1);
		while ((r = read(ifd, buf, sizeof(buf))) > 0) {
			char *p = buf;
			while (p < buf + r) {
				struct inotify_event *ie = (void *)p;
				if (ie->wd == wd1 && (ie->mask & IN_CREATE)) seen1 = 1;
				if (ie->wd == wd3 && (ie->mask & IN_CREATE)) seen3 = 1;
				if (ie->wd == wd4 && (ie->mask & IN_DELETE)) seen4 = 1;
				p += sizeof(*ie) + ie->len;
			}
		}
		if (!seen1 || !seen3 || !seen4) {
			snprintf(why, sizeof(why), "inotify events wd1 %d wd3 %d wd4 %d", seen1, seen3, seen4);
			return why;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char w1[512], w2[512], w3[512], line[512];
	sigset_t ss;
	struct timespec now;
	struct epoll_event ev, evs[8];
	struct sigaction sa;
	uint64_t big = 0x100000007ULL, v;
	int closed = argc > 2 && !strcmp(argv[2], "closed-target");
	int forks = argc > 2 && !strcmp(argv[2], "fork");
	char name[64];

	if (argc < 2)
		return 2;
	dir = argv[1];
	snprintf(w1, sizeof(w1), "%s/fdk-w1", dir);
	snprintf(w2, sizeof(w2), "%s/fdk-w2", dir);
	snprintf(w3, sizeof(w3), "%s/fdk-w3", dir);
	mkdir(w1, 0755); mkdir(w2, 0755); mkdir(w3, 0755);

	sigemptyset(&ss); sigaddset(&ss, SIGUSR2); sigaddset(&ss, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	sfd = signalfd(-1, &ss, SFD_NONBLOCK);

	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (write(efd, &big, 8) != 8)
		return 3;

	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec per = { { 0, 100000000 }, { 0, 100000000 } };
	timerfd_settime(tfd, 0, &per, NULL);

	tabs = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec abs = { { 3, 500000000 }, { now.tv_sec + 1000, now.tv_nsec } };
	timerfd_settime(tabs, TFD_TIMER_ABSTIME, &abs, NULL);

	tick = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
	struct itimerspec once = { { 0, 0 }, { 0, 1000000 } };
	timerfd_settime(tick, 0, &once, NULL);
	usleep(50000);

	ifd = inotify_init1(IN_NONBLOCK);
	wd1 = inotify_add_watch(ifd, w1, IN_CREATE);
	int wd2 = inotify_add_watch(ifd, w2, IN_DELETE);
	inotify_rm_watch(ifd, wd2);
	wd3 = inotify_add_watch(ifd, w3, IN_CREATE | IN_MODIFY | IN_ONLYDIR);
	wd4 = inotify_add_watch(ifd, w2, IN_DELETE);
	{
		char buf[4096];
		while (read(ifd, buf, sizeof(buf)) > 0)
			;
	}

	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN | EPOLLET; ev.data.u64 = D_EFD; epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	ev.events = EPOLLIN; ev.data.u64 = D_TFD; epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	ev.events = EPOLLIN; ev.data.u64 = D_SFD; epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.events = EPOLLIN; ev.data.u64 = D_IFD; epoll_ctl(ep, EPOLL_CTL_ADD, ifd, &ev);
	if (closed) {
		int d = dup(efd);
		ev.events = EPOLLIN; ev.data.u64 = 5; epoll_ctl(ep, EPOLL_CTL_ADD, d, &ev);
		close(d);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);

	printf("ready efd=%d tfd=%d tabs=%d tick=%d sfd=%d ifd=%d ep=%d wd1=%d wd3=%d wd4=%d\n", efd, tfd, tabs, tick,
	       sfd, ifd, ep, wd1, wd3, wd4);
	fflush(stdout);
	if (forks && fork() == 0) {
		tag = "fdkinds.child";
		is_child = 1;
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 8, 100);
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;
			if (d == D_TFD) {
				if (read(tfd, &v, 8) == 8)
					ticks += v;
			} else if (d == D_IFD && !forks) {
				/* (Shared with a child: only verify() reads, so that
				 * neither process steals the other's events.) */
				char buf[4096];
				while (read(ifd, buf, sizeof(buf)) > 0)
					;
			} else if (d == D_SFD) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == sizeof(si))
					sigs++;
			}
		}
		snprintf(line, sizeof(line), "pid=%d ticks=%lu sigs=%lu\n", getpid(), ticks, sigs);
		snprintf(name, sizeof(name), "%s.status", tag);
		put_status(dir, name, line);
		if (usr1) {
			const char *bad;
			usr1 = 0;
			bad = verify();
			if (bad)
				snprintf(line, sizeof(line), "bad: %s\n", bad);
			else
				snprintf(line, sizeof(line), "ok\n");
			snprintf(name, sizeof(name), "%s.verify", tag);
			put_status(dir, name, line);
		}
	}
}
