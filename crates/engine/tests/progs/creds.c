/* Threads with credentials of their own. Usage: creds plain|mixed DIR
 * plain: three threads that keep the credentials the program was started
 *   with (run it under setpriv as a non-root user).
 * mixed (started as root): each thread changes its own credentials with raw
 *   syscalls (glibc would change every thread):
 *   t1: setresgid(2001,2002,2003), setresuid(1001,1002,1003): no capability left;
 *   t2: setgroups{5,6,7}, PR_SET_KEEPCAPS, setresuid(1000,1000,1000), then
 *       capset eff=prm={NET_BIND_SERVICE,KILL} inh={NET_BIND_SERVICE} and
 *       NET_BIND_SERVICE raised in the ambient set;
 *   t3: uid 0 but fsuid 4321 / fsgid 4322, CAP_SYS_BOOT dropped from the
 *       bounding set, SECBIT_NOROOT set;
 *   main: setresgid(100,100,100), no supplementary groups, capabilities
 *       reduced to what writing the answers needs (DAC_OVERRIDE, FOWNER...).
 * Every thread then records its own /proc/thread-self/status Uid/Gid/Groups/
 * Cap lines and counts in a loop. Writes DIR/creds.ready "ready" once all
 * are set up. On SIGUSR1 the main thread asks every thread to compare its
 * credentials again (getresuid/getresgid/getgroups/capget by itself and the
 * status lines) and to show that it still runs (its counter moves); writes
 * DIR/creds.verify "creds=ok" or "creds=fail tN: what". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

#define NT 4
struct slot {
	char status[1024];
	long ids[7];
	gid_t groups[64];
	int ngroups;
	struct __user_cap_data_struct caps[2];
	volatile int ready, ask, answer;
	volatile long count;
	char why[2200];
};
static struct slot slots[NT];
static const char *mode;

static void snap(struct slot *s, char *status, long *ids, gid_t *groups, int *ngroups,
		 struct __user_cap_data_struct *caps)
{
	char buf[4096];
	int fd = open("/proc/thread-self/status", O_RDONLY), n;
	n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	status[0] = 0;
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n"))
		if (!strncmp(l, "Uid:", 4) || !strncmp(l, "Gid:", 4) || !strncmp(l, "Groups:", 7) ||
		    !strncmp(l, "Cap", 3) || !strncmp(l, "NoNewPrivs:", 11)) {
			strcat(status, l);
			strcat(status, "\n");
		}
	uid_t r, e, sv;
	gid_t gr, ge, gs;
	syscall(SYS_getresuid, &r, &e, &sv);
	syscall(SYS_getresgid, &gr, &ge, &gs);
	ids[0] = r, ids[1] = e, ids[2] = sv, ids[3] = gr, ids[4] = ge, ids[5] = gs;
	ids[6] = syscall(SYS_setfsuid, -1) | (long)syscall(SYS_setfsgid, -1) << 32;
	*ngroups = syscall(SYS_getgroups, 64, groups);
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	syscall(SYS_capget, &h, caps);
	(void)s;
}

static int capset_raw(unsigned eff, unsigned prm, unsigned inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { eff, prm, inh }, { 0, 0, 0 } };
	return syscall(SYS_capset, &h, d);
}

static void setup(int i)
{
	if (strcmp(mode, "mixed"))
		return;
	int bad = 0;
	if (i == 1) {
		bad |= syscall(SYS_setresgid, 2001, 2002, 2003);
		bad |= syscall(SYS_setresuid, 1001, 1002, 1003);
	} else if (i == 2) {
		gid_t g[3] = { 5, 6, 7 };
		bad |= syscall(SYS_setgroups, 3, g);
		bad |= prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
		bad |= syscall(SYS_setresgid, 1000, 1000, 1000);
		bad |= syscall(SYS_setresuid, 1000, 1000, 1000);
		unsigned c = 1u << CAP_NET_BIND_SERVICE | 1u << CAP_KILL;
		bad |= capset_raw(c, c, 1u << CAP_NET_BIND_SERVICE);
		bad |= prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0);
	} else if (i == 3) {
		syscall(SYS_setfsgid, 4322);
		syscall(SYS_setfsuid, 4321);
		bad |= prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0);
		bad |= prctl(PR_SET_SECUREBITS, SECBIT_NOROOT, 0, 0, 0);
	} else {
		bad |= syscall(SYS_setgroups, 0, NULL);
		bad |= syscall(SYS_setresgid, 100, 100, 100);
		unsigned c = 1u << CAP_DAC_OVERRIDE | 1u << CAP_FOWNER | 1u << CAP_CHOWN | 1u << CAP_KILL;
		bad |= capset_raw(c, c, 0);
	}
	if (bad) {
		fprintf(stderr, "setup of thread %d failed\n", i);
		exit(4);
	}
}

static void check(struct slot *s, int i)
{
	char status[1024];
	long ids[7];
	gid_t groups[64];
	int ngroups;
	struct __user_cap_data_struct caps[2];
	snap(s, status, ids, groups, &ngroups, caps);
	s->why[0] = 0;
	if (strcmp(status, s->status))
		snprintf(s->why, sizeof(s->why), "t%d: status %s, was %s", i, status, s->status);
	else if (memcmp(ids, s->ids, sizeof(ids)))
		snprintf(s->why, sizeof(s->why), "t%d: ids uid %ld/%ld/%ld gid %ld/%ld/%ld fs %lx", i, ids[0], ids[1],
			 ids[2], ids[3], ids[4], ids[5], ids[6]);
	else if (ngroups != s->ngroups || memcmp(groups, s->groups, ngroups * sizeof(gid_t)))
		snprintf(s->why, sizeof(s->why), "t%d: %d groups", i, ngroups);
	else if (memcmp(caps, s->caps, sizeof(caps)))
		snprintf(s->why, sizeof(s->why), "t%d: capget", i);
}

static void *worker(void *arg)
{
	int i = (long)arg;
	struct slot *s = &slots[i];
	setup(i);
	snap(s, s->status, s->ids, s->groups, &s->ngroups, s->caps);
	s->ready = 1;
	for (;;) {
		s->count++;
		if (s->ask != s->answer) {
			int a = s->ask;
			check(s, i);
			s->answer = a;
		}
		poll(NULL, 0, 5);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	mode = argv[1];
	const char *dir = argv[2];
	pthread_t th;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	for (long i = 1; i < NT; i++) {
		if (pthread_create(&th, NULL, worker, (void *)i))
			return 5;
		while (!slots[i].ready)
			poll(NULL, 0, 1);
	}
	setup(0);
	snap(&slots[0], slots[0].status, slots[0].ids, slots[0].groups, &slots[0].ngroups, slots[0].caps);
	put_status_raw(dir, "creds.ready", "ready\n");
	int round = 0;
	for (;;) {
		wait_usr1();
		usr1 = 0;
		round++;
		char out[2400] = "creds=ok\n";
		check(&slots[0], 0);
		if (slots[0].why[0])
			snprintf(out, sizeof(out), "creds=fail %s\n", slots[0].why);
		for (int i = 1; i < NT; i++) {
			long c0 = slots[i].count;
			poll(NULL, 0, 50);
			if (slots[i].count == c0 && !strncmp(out, "creds=ok", 8))
				snprintf(out, sizeof(out), "creds=fail t%d: does not run\n", i);
			slots[i].ask = round;
			for (int n = 0; slots[i].answer != round; n++) {
				if (n > 500) {
					snprintf(slots[i].why, sizeof(slots[i].why), "t%d: no answer", i);
					break;
				}
				poll(NULL, 0, 10);
			}
			if (slots[i].why[0] && !strncmp(out, "creds=ok", 8))
				snprintf(out, sizeof(out), "creds=fail %s\n", slots[i].why);
		}
		put_status_raw(dir, "creds.verify", out);
	}
}
