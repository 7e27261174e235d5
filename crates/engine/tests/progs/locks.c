/* Holds a POSIX write lock on bytes 10..109 of DIR/a and a shared flock on DIR/b.
 * On SIGUSR1 writes DIR/verify "ok". */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>
#include "usr1.h"
int main(int argc, char **argv)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 100 };
	int a, b;
	if (argc < 2 || chdir(argv[1])) return 2;
	a = open("a", O_RDWR | O_CREAT, 0600);
	b = open("b", O_RDWR | O_CREAT, 0600);
	if (fcntl(a, F_SETLK, &fl) || flock(b, LOCK_SH)) return 3;
	signal(SIGUSR1, on_usr1);
	block_usr1();
	printf("ready a=%d b=%d\n", a, b);
	fflush(stdout);
	for (;;) {
		wait_usr1();
		if (usr1) { FILE *f = fopen("verify", "w"); if (f) { fputs("ok\n", f); fclose(f); } usr1 = 0; }
	}
}
