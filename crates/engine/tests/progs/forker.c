/* A tree that forks and reaps all the time: children that exit at once, as fast as the parent can
 * make them (a shell loop, a pre-forking server). Prints "ready" and forks forever. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		for (int i = 0; i < 8; i++)
			if (fork() == 0)
				_exit(0);
		while (waitpid(-1, NULL, 0) > 0)
			;
	}
}
