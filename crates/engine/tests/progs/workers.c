/* Three worker threads sleeping in worker(), the main thread in main() joining them: prints
 * "ready" once all are started. A crit core of its dump must unwind in gdb to these frames. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_barrier_t started;

__attribute__((noinline)) static void *worker(void *arg)
{
	pthread_barrier_wait(&started);
	for (;;)
		pause();
	return arg;
}

int main(void)
{
	pthread_t t[3];
	pthread_barrier_init(&started, NULL, 4);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	pthread_barrier_wait(&started);
	printf("ready\n");
	fflush(stdout);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	return 0;
}
