/* Threads interrupted inside system calls by a dump: three threads sleep in clock_nanosleep (a
 * restart-block call), nanosleep and a blocking read of a pipe; the main thread waits in
 * pthread_join, then in sigsuspend. After a restore each thread must finish its own work and
 * return its own value. Writes <dir>/joiners.status: "ready", then "joined=100,101,102" once
 * every thread returned (the read thread gets its byte on SIGUSR1), "done" after a second SIGUSR1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "status.h"

static int p[2];
static const char *dir;

static void put(const char *text)
{
	put_status(dir, "joiners.status", text);
}

static void *clock_sleeper(void *a)
{
	struct timespec ts = { 1, 0 };
	for (int i = 0; i < 2; i++)
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
	return a;
}

static void *sleeper(void *a)
{
	struct timespec ts = { 1, 0 };
	for (int i = 0; i < 2; i++)
		nanosleep(&ts, NULL);
	return a;
}

static void *reader(void *a)
{
	char c;
	while (read(p[0], &c, 1) != 1)
		;
	return a;
}

static void on_usr1(int s)
{
	(void)s;
	if (write(p[1], "x", 1) != 1)
		_exit(3);
}

int main(int argc, char **argv)
{
	pthread_t t[3];
	void *(*fn[3])(void *) = { clock_sleeper, sleeper, reader };
	char line[128] = "joined=";
	sigset_t none;
	struct sigaction sa;

	dir = argc > 1 ? argv[1] : ".";
	if (pipe(p))
		return 2;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	for (long i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, fn[i], (void *)(100 + i));
	put("ready\n");
	for (int i = 0; i < 3; i++) {
		void *r = NULL;
		pthread_join(t[i], &r);
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%ld", i ? "," : "", (long)r);
	}
	strcat(line, "\n");
	put(line);
	sigemptyset(&none);
	sigsuspend(&none);
	put("done\n");
	return 0;
}
