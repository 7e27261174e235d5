/* A parent with an unreaped child that exited with status 3 (a zombie).
 * Prints "ready zombie=PID" once the child is a zombie. On SIGUSR1 writes DIR/verify "ok". */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
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
	siginfo_t si;
	pid_t kid;
	if (argc < 2 || chdir(argv[1])) return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	kid = fork();
	if (kid == 0) _exit(3);
	if (waitid(P_PID, kid, &si, WEXITED | WNOWAIT)) return 3; /* now a zombie, not reaped */
	printf("ready zombie=%d\n", kid);
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) { FILE *f = fopen("verify", "w"); if (f) { fputs("ok\n", f); fclose(f); } usr1 = 0; }
	}
}
