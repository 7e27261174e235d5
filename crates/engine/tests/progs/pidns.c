/* A parent and a child, for pid namespace tests. Writes pidns.ready "pid=P child=C"; on SIGUSR1 the
 * parent writes pidns.verify "pid=P ppid=Q child=C alive=1 nspid=LAST" (getpid() and friends as it sees
 * them, nspid the last NSpid of its /proc/self/status). Usage: pidns (cwd: the status dir). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"
int main(void)
{
	char buf[256];
	pid_t kid;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	kid = fork();
	if (kid == 0) {
		for (;;) pause();
	}
	snprintf(buf, sizeof(buf), "pid=%d child=%d\n", getpid(), kid);
	put_status(".", "pidns.ready", buf);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		snprintf(buf, sizeof(buf), "pid=%d ppid=%d child=%d alive=%d\n", getpid(), getppid(), kid,
			 kill(kid, 0) == 0);
		put_status(".", "pidns.verify", buf);
	}
}
