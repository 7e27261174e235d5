/* membarrier() registrations must survive dump + restore. The program
 * registers for private expedited barriers (and the RSEQ flavour when the
 * kernel has it), starts a second thread, writes <dir>/membarrier.ready with
 * its registration mask, and on SIGUSR1 checks that the mask is the same,
 * that the registered barriers work (an unregistered one fails with EPERM)
 * and that SYNC_CORE, never registered, still fails; it writes
 * <dir>/membarrier.verify: "ok mask=0x..." or what differs. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CMD_QUERY 0
#define CMD_PRIVATE_EXPEDITED (1 << 3)
#define CMD_REGISTER_PRIVATE_EXPEDITED (1 << 4)
#define CMD_PRIVATE_EXPEDITED_SYNC_CORE (1 << 5)
#define CMD_PRIVATE_EXPEDITED_RSEQ (1 << 7)
#define CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ (1 << 8)
#define CMD_GET_REGISTRATIONS (1 << 9)

static long mb(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

static void *spin(void *a)
{
	(void)a;
	for (;;) {
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, 0);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char path[512], why[256] = "";
	struct sigaction sa;
	pthread_t t;
	long q = mb(CMD_QUERY);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, 0);
	if (q < 0 || !(q & CMD_GET_REGISTRATIONS)) {
		fprintf(stderr, "membarrier: no GET_REGISTRATIONS (query %ld)\n", q);
		return 2;
	}
	/* Unregistered: the barrier is refused. */
	if (mb(CMD_PRIVATE_EXPEDITED) != -1 || errno != EPERM)
		return 3;
	if (mb(CMD_REGISTER_PRIVATE_EXPEDITED))
		return 4;
	if ((q & CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ) && mb(CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ))
		return 5;
	long mask = mb(CMD_GET_REGISTRATIONS);
	pthread_create(&t, 0, spin, 0);

	snprintf(path, sizeof(path), "%s/membarrier.ready", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "%d 0x%lx\n", getpid(), mask);
	fclose(f);
	while (!usr1) {
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, 0);
	}
	long now = mb(CMD_GET_REGISTRATIONS);
	if (now != mask)
		snprintf(why, sizeof(why), "registrations 0x%lx, before 0x%lx", now, mask);
	else if (mb(CMD_PRIVATE_EXPEDITED))
		snprintf(why, sizeof(why), "PRIVATE_EXPEDITED: %s", strerror(errno));
	else if ((mask & CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ) && mb(CMD_PRIVATE_EXPEDITED_RSEQ))
		snprintf(why, sizeof(why), "PRIVATE_EXPEDITED_RSEQ: %s", strerror(errno));
	else if (mb(CMD_PRIVATE_EXPEDITED_SYNC_CORE) != -1 || errno != EPERM)
		strcpy(why, "SYNC_CORE barrier works but was never registered");
	snprintf(path, sizeof(path), "%s/membarrier.verify", dir);
	f = fopen(path, "w");
	if (why[0])
		fprintf(f, "%s\n", why);
	else
		fprintf(f, "ok mask=0x%lx\n", mask);
	fclose(f);
	for (;;) {
		struct timespec ts = { 1, 0 };
		nanosleep(&ts, 0);
	}
}
