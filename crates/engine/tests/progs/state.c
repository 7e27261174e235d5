/* A process with a bit of every kind of state cryo dump must record.
 * Usage: state DIR   (DIR: a scratch directory; becomes the cwd)
 * Prints one line "ready key=value ..." once everything is set up, then
 * waits. On SIGUSR1 it checks its own state and writes DIR/verify. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "pattern.h"
#include "usr1.h"

#define HEAP (1 << 20)
#define SEED 0x1234abcdULL
#define PIPE_BYTES 5000
#define GHOST_BYTES 10000

static unsigned char *heap;
static int pfd[2], ghost_fd, data_fd;
static pthread_barrier_t bar;

/* A thread whose r12/r13/xmm5 hold known values while it sleeps in raw nanosleep syscalls. */
static void *regs_thread(void *a)
{
	static struct timespec ts = { 1000, 0 };
	uint64_t r12 = 0x1122334455667788ULL, r13 = 0x99aabbccddeeff00ULL;
	sigset_t m;
	(void)a;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &m, NULL); /* SIGUSR1 is for the main thread */
	pthread_setname_np(pthread_self(), "regs");
	pthread_barrier_wait(&bar);
	__asm__ volatile(
		"mov %0, %%r12\n\t"
		"mov %1, %%r13\n\t"
		"movq %0, %%xmm5\n\t"
		"1: mov $35, %%eax\n\t"
		"lea %2, %%rdi\n\t"
		"xor %%esi, %%esi\n\t"
		"syscall\n\t"
		"jmp 1b\n\t"
		:: "r"(r12), "r"(r13), "m"(ts) : "r12", "r13", "rax", "rdi", "rsi", "rcx", "r11", "xmm5", "memory");
	return NULL;
}

static void *idle_thread(void *a)
{
	char name[16];
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	snprintf(name, sizeof(name), "idle-%ld", (long)(intptr_t)a);
	pthread_setname_np(pthread_self(), name);
	pthread_barrier_wait(&bar);
	for (;;) pause();
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	sigset_t set;
	timer_t tid;
	struct sigevent sev;
	struct itimerspec its = { { 0, 0 }, { 1000, 0 } };
	struct itimerval itv = { { 0, 0 }, { 2000, 0 } };
	static unsigned char buf[GHOST_BYTES];
	pthread_t th[3];
	int dir_fd, path_fd, null_fd, rd_fd, fifo_fd;
	if (argc < 2) return 2;
	if (chdir(argv[1])) return 3;
	umask(027);

	heap = malloc(HEAP);
	fill(heap, HEAP, SEED);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGTERM, SIG_IGN);

	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	block_usr1(); /* before the threads: they inherit it */
	kill(getpid(), SIGHUP); /* shared pending */

	setitimer(ITIMER_REAL, &itv, NULL);
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 2;
	timer_create(CLOCK_MONOTONIC, &sev, &tid);
	timer_settime(tid, 0, &its, NULL);

	data_fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (write(data_fd, "hello, cryo\n", 12) != 12) return 4;
	lseek(data_fd, 7, SEEK_SET);
	rd_fd = open("data.txt", O_RDONLY | O_CLOEXEC);
	lseek(rd_fd, 3, SEEK_SET);
	dir_fd = open(".", O_RDONLY | O_DIRECTORY);
	path_fd = open("data.txt", O_PATH);
	null_fd = open("/dev/null", O_WRONLY | O_APPEND);

	if (pipe(pfd)) return 5;
	fill(buf, PIPE_BYTES, 77);
	if (write(pfd[1], buf, PIPE_BYTES) != PIPE_BYTES) return 6;

	unlink("fifo");
	if (mkfifo("fifo", 0600)) return 8;
	fifo_fd = open("fifo", O_RDWR | O_NONBLOCK);
	fill(buf, 300, 55);
	if (write(fifo_fd, buf, 300) != 300) return 9;

	ghost_fd = open("ghost.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	fill(buf, GHOST_BYTES, 99);
	if (write(ghost_fd, buf, GHOST_BYTES) != GHOST_BYTES) return 7;
	unlink("ghost.bin");
	lseek(ghost_fd, 1234, SEEK_SET);

	pthread_barrier_init(&bar, NULL, 4);
	pthread_create(&th[0], NULL, regs_thread, NULL);
	pthread_create(&th[1], NULL, idle_thread, (void *)1);
	pthread_create(&th[2], NULL, idle_thread, (void *)2);
	pthread_barrier_wait(&bar);

	printf("ready heap=%p seed=%llu heap_len=%d data_fd=%d rd_fd=%d dir_fd=%d path_fd=%d null_fd=%d "
	       "pipe_r=%d pipe_w=%d ghost_fd=%d fifo_fd=%d timer=%ld\n",
	       (void *)heap, (unsigned long long)SEED, HEAP, data_fd, rd_fd, dir_fd, path_fd, null_fd,
	       pfd[0], pfd[1], ghost_fd, fifo_fd, (long)(intptr_t)tid);
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) {
			FILE *f;
			unsigned char g[GHOST_BYTES], want[GHOST_BYTES];
			int ok;
			usr1 = 0;
			fill(want, GHOST_BYTES, 99);
			int heap_ok = !check(heap, HEAP, SEED);
			int ghost_ok = pread(ghost_fd, g, GHOST_BYTES, 0) == GHOST_BYTES && !memcmp(g, want, GHOST_BYTES);
			long gpos = lseek(ghost_fd, 0, SEEK_CUR), dpos = lseek(data_fd, 0, SEEK_CUR);
			ok = heap_ok && ghost_ok && gpos == 1234 && dpos == 7;
			f = fopen("verify", "w");
			if (f) {
				fprintf(f, "%s heap=%d ghost=%d ghost_pos=%ld data_pos=%ld\n", ok ? "ok" : "FAIL", heap_ok, ghost_ok, gpos, dpos);
				fclose(f);
			}
		}
	}
}
