/* A thread that spends nearly all its time inside an rseq critical section
 * (glibc's registered rseq area, a long loop between start and commit).
 * Usage: rseqcs DIR. Each pass sets rseq_cs, loops, then reads rseq_cs back
 * before the commit point: a pass that reaches the end with rseq_cs cleared
 * ran part of its critical section unprotected (the kernel clears rseq_cs
 * when it finds the thread outside the section: a restore that put the
 * thread back inside without it). Aborted passes (the kernel sent the
 * thread to the abort handler) are fine. Writes DIR/rseq.ready "ready" after
 * a few passes; on SIGUSR1 waits for more passes and writes DIR/rseq.verify
 * "rseq=ok passes=N aborts=M" or "rseq=fail ...". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/rseq.h>
#include <unistd.h>
#include "usr1.h"
#include "status.h"

static volatile long passes, aborts, bad;

static struct rseq *area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* 1 if the pass completed with rseq_cs still set, 0 if rseq_cs was found
 * cleared, -1 if the kernel aborted it. */
static int pass(volatile uint64_t *cs_field)
{
	uint64_t seen = 0;
	__asm__ __volatile__ goto(
		".pushsection __rseq_cs, \"aw\"\n\t"
		".balign 32\n\t"
		"3:\n\t"
		".long 0, 0\n\t"
		".quad 1f, (2f - 1f), 4f\n\t"
		".popsection\n\t"
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %[cs]\n\t"
		"1:\n\t"
		"movq $50000000, %%rcx\n\t"
		"5:\n\t"
		"decq %%rcx\n\t"
		"jnz 5b\n\t"
		"movq %[cs], %%rcx\n\t"
		"movq %%rcx, %[seen]\n\t"
		"2:\n\t"
		".pushsection __rseq_failure, \"ax\"\n\t"
		".byte 0x0f, 0xb9, 0x3d\n\t"
		".long 0x53053053\n\t"
		"4:\n\t"
		"jmp %l[abort]\n\t"
		".popsection\n\t"
		:
		: [cs] "m"(*cs_field), [seen] "m"(seen)
		: "memory", "cc", "rax", "rcx"
		: abort);
	*cs_field = 0;
	return seen != 0;
abort:
	*cs_field = 0;
	return -1;
}

static void *worker(void *a)
{
	(void)a;
	if (__rseq_size == 0)
		return NULL;
	volatile uint64_t *cs = (volatile uint64_t *)&area()->rseq_cs;
	for (;;) {
		int r = pass(cs);
		if (r < 0)
			aborts++;
		else if (r == 0)
			bad++;
		passes++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	char out[256];
	pthread_t th;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (__rseq_size == 0) {
		put_status_raw(dir, "rseq.ready", "no rseq\n");
		return 1;
	}
	pthread_create(&th, NULL, worker, NULL);
	while (passes < 3)
		poll(NULL, 0, 5);
	put_status_raw(dir, "rseq.ready", "ready\n");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		long p0 = passes;
		for (int n = 0; n < 1000 && passes < p0 + 3; n++)
			poll(NULL, 0, 10);
		if (bad || passes < p0 + 3)
			snprintf(out, sizeof(out), "rseq=fail passes=%ld unprotected=%ld\n", passes - p0, bad);
		else
			snprintf(out, sizeof(out), "rseq=ok passes=%ld aborts=%ld\n", passes, aborts);
		put_status_raw(dir, "rseq.verify", out);
	}
}
