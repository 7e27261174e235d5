/* A parent with an unreaped child that exited with status 3 (a zombie).
 * Prints "ready zombie=PID" once the child is a zombie. On SIGUSR1 writes DIR/verify "ok". */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include "usr1.h"
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
