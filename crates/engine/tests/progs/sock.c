/* Holds a socketpair (dump must refuse it). On SIGUSR1 writes DIR/verify "ok". */
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }
/* SIGUSR1 stays blocked except inside sigsuspend(): one that arrives before the
 * wait, or just as a restored sigsuspend() restarts, is taken there and never
 * lost (with pause() it can land between the flag check and the wait). */
static sigset_t waitmask;
static void block_usr1(void)
{ sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigprocmask(SIG_BLOCK, &m, &waitmask); sigdelset(&waitmask, SIGUSR1); }
static void wait_usr1(void) { while (!usr1) sigsuspend(&waitmask); }
int main(int argc, char **argv)
{
	int sv[2];
	if (argc < 2 || chdir(argv[1]) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	printf("ready sock=%d\n", sv[0]);
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) { FILE *f = fopen("verify", "w"); if (f) { fputs("ok\n", f); fclose(f); } usr1 = 0; }
	}
}
