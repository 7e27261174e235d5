/* A shell job on a terminal: `ttyjob /dev/pts/N [PIDFILE]`.
 * The first process plays the shell: it starts a session, takes the pty
 * slave as its controlling terminal and as stdin/stdout/stderr, and forks
 * the job into its own process group, made the terminal's foreground group.
 * The job prints "ready <pid>" on the terminal, then echoes every line it
 * reads as "echo:<line>", and as "tty:<line>" through /dev/tty, which it
 * holds open at fd 5 (and "bye" on end of file). With PIDFILE, the job
 * also writes its pid there (after printing "ready"). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		return 2;
	if (setsid() < 0)
		return 3;
	int t = open(argv[1], O_RDWR); /* a session leader without a tty: it becomes the ctty */
	if (t < 0)
		return 4;
	dup2(t, 0);
	dup2(t, 1);
	dup2(t, 2);
	if (t > 2)
		close(t);
	pid_t job = fork();
	if (job < 0)
		return 5;
	if (job == 0) {
		setpgid(0, 0);
		signal(SIGTTOU, SIG_IGN);
		tcsetpgrp(0, getpid());
		signal(SIGTTOU, SIG_DFL);
		char line[256];
		int tty = open("/dev/tty", O_RDWR);
		if (tty < 0 || dup2(tty, 5) != 5)
			return 7;
		if (tty != 5)
			close(tty);
		printf("ready %d\n", getpid());
		fflush(stdout);
		if (argc == 3) {
			char tmp[4096];
			snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
			FILE *f = fopen(tmp, "w");
			if (!f)
				return 6;
			fprintf(f, "%d\n", getpid());
			fclose(f);
			rename(tmp, argv[2]);
		}
		while (fgets(line, sizeof(line), stdin)) {
			line[strcspn(line, "\n")] = 0;
			printf("echo:%s\n", line);
			fflush(stdout);
			dprintf(5, "tty:%s\n", line);
		}
		printf("bye\n");
		return 0;
	}
	setpgid(job, job);
	int st;
	while (waitpid(job, &st, 0) < 0)
		;
	return 0;
}
