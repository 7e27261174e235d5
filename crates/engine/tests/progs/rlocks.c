/* Holds a POSIX write lock on bytes 0..9 of DIR/lock-a (fd 5), an exclusive
 * flock on DIR/lock-b (fd 6) and an OFD write lock on bytes 100..199 of
 * DIR/lock-c (fd 7); writes DIR/locks.ready. On SIGUSR1 a forked child opens
 * the three files afresh and checks that each lock is held by someone else
 * (and that bytes 0..99 of lock-c are free); the result goes to
 * DIR/locks.verify ("ok" or what is wrong). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }
static char a[512], b[512], c[512];

static int held(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fcntl(fd, cmd, &fl)) return -1;
	return fl.l_type != F_UNLCK;
}

static int check(void)
{
	int fa = open(a, O_RDWR), fb = open(b, O_RDWR), fc = open(c, O_RDWR);
	if (fa < 0 || fb < 0 || fc < 0) return 1;
	if (held(fa, F_GETLK, F_WRLCK, 0, 10) != 1) return 2;
	if (flock(fb, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) return 3;
	if (held(fc, F_OFD_GETLK, F_RDLCK, 100, 100) != 1) return 4;
	if (held(fc, F_OFD_GETLK, F_WRLCK, 0, 100) != 0) return 5;
	return 0;
}

int main(int argc, char **argv)
{
	char r[512];
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	struct flock ofd = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 100 };
	if (argc < 2) return 2;
	signal(SIGUSR1, on_usr1);
	snprintf(a, sizeof(a), "%s/lock-a", argv[1]);
	snprintf(b, sizeof(b), "%s/lock-b", argv[1]);
	snprintf(c, sizeof(c), "%s/lock-c", argv[1]);
	dup2(open(a, O_RDWR | O_CREAT, 0600), 5);
	dup2(open(b, O_RDWR | O_CREAT, 0600), 6);
	dup2(open(c, O_RDWR | O_CREAT, 0600), 7);
	if (fcntl(5, F_SETLK, &fl) || flock(6, LOCK_EX | LOCK_NB) || fcntl(7, F_OFD_SETLK, &ofd)) return 3;
	snprintf(r, sizeof(r), "%s/locks.ready", argv[1]);
	FILE *f = fopen(r, "w"); fprintf(f, "%d\n", getpid()); fclose(f);
	for (;;) {
		usleep(20000);
		if (!usr1) continue;
		usr1 = 0;
		int st = -1;
		pid_t k = fork();
		if (k == 0) _exit(check());
		if (k > 0) waitpid(k, &st, 0);
		snprintf(r, sizeof(r), "%s/locks.verify", argv[1]);
		f = fopen(r, "w");
		if (f) {
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0) fprintf(f, "ok\n");
			else fprintf(f, "lock check %d failed\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			fclose(f);
		}
	}
}
