/* Holds a POSIX write lock on bytes 0..9 of DIR/lock-a (fd 5) and an
 * exclusive flock on DIR/lock-b (fd 6); writes DIR/locks.ready. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char a[512], b[512];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	if (argc < 2) return 2;
	snprintf(a, sizeof(a), "%s/lock-a", argv[1]);
	snprintf(b, sizeof(b), "%s/lock-b", argv[1]);
	dup2(open(a, O_RDWR | O_CREAT, 0600), 5);
	dup2(open(b, O_RDWR | O_CREAT, 0600), 6);
	if (fcntl(5, F_SETLK, &fl) || flock(6, LOCK_EX | LOCK_NB)) return 3;
	snprintf(a, sizeof(a), "%s/locks.ready", argv[1]);
	FILE *f = fopen(a, "w"); fprintf(f, "%d\n", getpid()); fclose(f);
	for (;;) pause();
}
