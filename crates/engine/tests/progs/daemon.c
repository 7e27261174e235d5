/* A daemon the classic way: fork; the child calls setsid() and forks again;
 * the intermediate (leader of the new session and group) exits. With the
 * argument "group" the daemon also forks a leader L that makes a group of
 * its own, then a child C that joins L's group; L then exits (a group whose
 * leader is gone).
 * Writes DIR/daemon.status "pid=D sid=S pgid=G ppid=P kid=C kidpgid=L" once
 * everything is settled, DIR/daemon.kid.status "pid=C sid= pgid= ppid=".
 * On SIGUSR1 each checks its pid, sid, pgid (and C its parent) against what it
 * recorded and writes DIR/daemon[.kid].verify.status "ok" or "bad ...". */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "status.h"
#include "usr1.h"

/* Check our ids on every SIGUSR1, forever. parent = 0: not checked. */
static void serve(const char *tag, pid_t pid, pid_t sid, pid_t pgid, pid_t parent)
{
	char file[64], msg[160];
	snprintf(file, sizeof file, "daemon%s.verify.status", tag);
	for (;;) {
		wait_usr1();
		usr1 = 0;
		if (getpid() == pid && getsid(0) == sid && getpgid(0) == pgid && (!parent || getppid() == parent))
			snprintf(msg, sizeof msg, "ok\n");
		else
			snprintf(msg, sizeof msg, "bad pid=%d/%d sid=%d/%d pgid=%d/%d ppid=%d/%d\n", getpid(), pid,
				 getsid(0), sid, getpgid(0), pgid, getppid(), parent);
		put_status(".", file, msg);
	}
}

int main(int argc, char **argv)
{
	int group = argc > 2 && !strcmp(argv[2], "group");
	char buf[200];
	pid_t mid, leader = 0, kid = 0;
	int p[2];

	if (argc < 2 || chdir(argv[1])) return 2;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	mid = fork();
	if (mid < 0) return 3;
	if (mid > 0) { /* the original process: reap the intermediate, leave */
		waitpid(mid, NULL, 0);
		return 0;
	}
	if (setsid() < 0) _exit(4);
	if (fork() != 0) _exit(0); /* the intermediate goes: session and group lose their leader */
	if (group) {
		if (pipe(p)) _exit(5);
		leader = fork();
		if (leader == 0) { /* L: a group of its own, until told to go */
			char c;
			close(p[1]);
			setpgid(0, 0);
			while (read(p[0], &c, 1) > 0)
				;
			_exit(0);
		}
		setpgid(leader, leader);
		kid = fork();
		if (kid == 0) {
			pid_t me = getpid(), parent = getppid();
			close(p[0]);
			close(p[1]);
			setpgid(0, leader);
			snprintf(buf, sizeof buf, "pid=%d sid=%d pgid=%d ppid=%d\n", me, getsid(0), getpgid(0), parent);
			put_status(".", "daemon.kid.status", buf);
			serve(".kid", me, getsid(0), leader, parent);
		}
		setpgid(kid, leader);
		close(p[0]);
		close(p[1]);
		waitpid(leader, NULL, 0); /* the group keeps C only */
	}
	snprintf(buf, sizeof buf, "pid=%d sid=%d pgid=%d ppid=%d kid=%d kidpgid=%d\n", getpid(), getsid(0), getpgid(0),
		 getppid(), kid, leader);
	put_status(".", "daemon.status", buf);
	serve("", getpid(), getsid(0), getpgid(0), 0);
	return 0;
}
