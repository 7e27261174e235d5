/* Files deleted while open, for dump/restore tests. Started in the test's
 * tmpfs (cwd /tmp/anchor) with one mode:
 *   reg     regular ghosts: a small file and a sparse one (data 12 KiB apart
 *           of a 64 MiB hole), owner 1234:5678 and mode 0640 each, at their
 *           offsets; two fds on one inode through two names, both unlinked;
 *           a MAP_SHARED mapping of an unlinked file (no fd left); an
 *           O_TMPFILE file.
 *   kinds   cwd in a removed directory, an fd on another removed directory,
 *           an unlinked FIFO with queued bytes (a reader and a writer fd), an
 *           unlinked character device node (1:3, /dev/null's), an O_PATH fd
 *           on an unlinked symlink, shared anonymous memory opened through
 *           /proc/self/map_files, truncated to 5 bytes and unmapped.
 *   linked  a file opened as "lnk.a", linked as "lnk.b", "lnk.a" unlinked
 *           (dumped with --link-remap).
 *   chroot  root in ./jail (holding /marker), cwd in ./jail/inner, and a
 *           child opened as /proc/<child>/status plus its own /proc/<pid>/stat.
 *   deadproc  cwd in /proc/<child> and /proc/<child>/comm open, the child
 *           killed and reaped; an fd on /proc/self/ns/net.
 * It writes ghosts.status "ready" and, on each SIGUSR1, checks everything
 * and writes ghosts.verify.status "ok" or the first difference.
 * (chroot mode: the status files are in /, the jail's root.) */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include "usr1.h"
#include "pattern.h"

static char bad[512];
#define FAIL(...) do { if (!bad[0]) snprintf(bad, sizeof bad, __VA_ARGS__); } while (0)

static void status(const char *f, const char *s)
{
	char tmp[256];
	snprintf(tmp, sizeof tmp, "%s.tmp", f);
	FILE *o = fopen(tmp, "w");
	if (!o) exit(3);
	fprintf(o, "%s\n", s);
	fclose(o);
	rename(tmp, f);
}

static void must(int ok, const char *what)
{
	if (!ok) { perror(what); exit(2); }
}

/* No leftover of the restore (ghosts, fake links, link remaps) in dir. */
static void no_leftovers(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d) { FAIL("opendir %s: %s", dir, strerror(errno)); return; }
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".ghost") || strstr(e->d_name, "cr_link") || strstr(e->d_name, "link_remap"))
			FAIL("leftover %s/%s", dir, e->d_name);
	closedir(d);
}

static void check_meta(int fd, const char *what, mode_t mode, uid_t uid, gid_t gid, off_t size, nlink_t nlink)
{
	struct stat st;
	if (fstat(fd, &st)) { FAIL("fstat %s: %s", what, strerror(errno)); return; }
	if (st.st_mode != mode) FAIL("%s: mode %o, want %o", what, st.st_mode, mode);
	if (st.st_uid != uid || st.st_gid != gid) FAIL("%s: owner %d:%d, want %d:%d", what, st.st_uid, st.st_gid, uid, gid);
	if (size >= 0 && st.st_size != size) FAIL("%s: size %lld, want %lld", what, (long long)st.st_size, (long long)size);
	if (st.st_nlink != nlink) FAIL("%s: %lu links, want %lu", what, (unsigned long)st.st_nlink, (unsigned long)nlink);
}

static void check_pos(int fd, const char *what, off_t pos)
{
	off_t p = lseek(fd, 0, SEEK_CUR);
	if (p != pos) FAIL("%s: offset %lld, want %lld", what, (long long)p, (long long)pos);
}

static void check_bytes(int fd, const char *what, off_t off, const unsigned char *want, size_t n)
{
	unsigned char buf[65536];
	if (n > sizeof buf) n = sizeof buf;
	if (pread(fd, buf, n, off) != (ssize_t)n) { FAIL("%s: short read at %lld", what, (long long)off); return; }
	if (memcmp(buf, want, n)) FAIL("%s: data differs at %lld", what, (long long)off);
}

/* ---- reg ---- */
#define SPARSE_HOLE (64 << 20)
static int small_fd, sparse_fd, two_a, two_b, tmp_fd, ino_fd, ino_wd;
static unsigned char *map;
static unsigned char small_data[100], sparse_data[16384], map_data[8192];

static void reg_setup(void)
{
	fill(small_data, sizeof small_data, 1);
	fill(sparse_data, sizeof sparse_data, 2);
	fill(map_data, sizeof map_data, 3);
	small_fd = open("small.dat", O_RDWR | O_CREAT | O_EXCL, 0600);
	must(small_fd >= 0, "small");
	must(write(small_fd, small_data, sizeof small_data) == sizeof small_data, "write small");
	must(fchown(small_fd, 1234, 5678) == 0 && fchmod(small_fd, 0640) == 0, "meta small");
	lseek(small_fd, 42, SEEK_SET);
	/* A watch on the file, which is then deleted (the fd holds it). */
	ino_fd = inotify_init1(IN_NONBLOCK);
	ino_wd = inotify_add_watch(ino_fd, "small.dat", IN_CLOSE_WRITE);
	must(ino_fd >= 0 && ino_wd >= 0, "inotify");
	unlink("small.dat");

	sparse_fd = open("sparse.dat", O_RDWR | O_CREAT | O_EXCL, 0600);
	must(sparse_fd >= 0, "sparse");
	must(pwrite(sparse_fd, sparse_data, sizeof sparse_data, 0) == sizeof sparse_data, "w1");
	must(pwrite(sparse_fd, sparse_data, sizeof sparse_data, SPARSE_HOLE) == sizeof sparse_data, "w2");
	must(fchown(sparse_fd, 1234, 5678) == 0 && fchmod(sparse_fd, 0604) == 0, "meta sparse");
	lseek(sparse_fd, 7777, SEEK_SET);
	unlink("sparse.dat");

	two_a = open("two.a", O_RDWR | O_CREAT | O_EXCL, 0644);
	must(two_a >= 0 && link("two.a", "two.b") == 0, "two");
	two_b = open("two.b", O_RDONLY);
	must(two_b >= 0 && write(two_a, "shared", 6) == 6, "two write");
	unlink("two.a");
	unlink("two.b");

	int m = open("mapped.dat", O_RDWR | O_CREAT | O_EXCL, 0644);
	must(m >= 0 && ftruncate(m, sizeof map_data) == 0, "mapped");
	map = mmap(NULL, sizeof map_data, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	must(map != MAP_FAILED, "mmap");
	memcpy(map, map_data, sizeof map_data);
	close(m);
	unlink("mapped.dat");

	tmp_fd = open(".", O_TMPFILE | O_RDWR, 0600);
	must(tmp_fd >= 0 && write(tmp_fd, "tmpfile", 7) == 7, "tmpfile");
}

static void reg_check(void)
{
	check_meta(small_fd, "small", S_IFREG | 0640, 1234, 5678, sizeof small_data, 0);
	check_pos(small_fd, "small", 42);
	check_bytes(small_fd, "small", 0, small_data, sizeof small_data);
	/* The watch is on the restored inode: closing a writable fd on it is seen. */
	char p[64], ev[4096];
	snprintf(p, sizeof p, "/proc/self/fd/%d", small_fd);
	char name[256] = { 0 };
	if (readlink(p, name, sizeof name - 1) < 0 || strcmp(name, "/tmp/anchor/small.dat (deleted)"))
		FAIL("small: named %s", name);
	while (read(ino_fd, ev, sizeof ev) > 0)
		;
	int w = open(p, O_WRONLY);
	if (w < 0) FAIL("reopen small: %s", strerror(errno));
	else close(w);
	int seen = 0;
	ssize_t n = read(ino_fd, ev, sizeof ev);
	for (char *q = ev; n > 0 && q < ev + n; q += sizeof(struct inotify_event) + ((struct inotify_event *)q)->len) {
		struct inotify_event *e = (struct inotify_event *)q;
		if (e->wd == ino_wd && (e->mask & IN_CLOSE_WRITE)) seen = 1;
	}
	if (!seen) FAIL("inotify: no IN_CLOSE_WRITE on the deleted file's watch");
	check_meta(sparse_fd, "sparse", S_IFREG | 0604, 1234, 5678, SPARSE_HOLE + sizeof sparse_data, 0);
	check_pos(sparse_fd, "sparse", 7777);
	check_bytes(sparse_fd, "sparse", 0, sparse_data, sizeof sparse_data);
	check_bytes(sparse_fd, "sparse", SPARSE_HOLE, sparse_data, sizeof sparse_data);
	struct stat st;
	if (fstat(sparse_fd, &st) == 0 && st.st_blocks * 512 > 4 * (off_t)sizeof sparse_data)
		FAIL("sparse: the hole was filled (%lld blocks)", (long long)st.st_blocks);
	static const unsigned char zero[4096];
	check_bytes(sparse_fd, "sparse hole", SPARSE_HOLE / 2, zero, sizeof zero);

	struct stat a, b;
	if (fstat(two_a, &a) || fstat(two_b, &b) || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		FAIL("two names of one inode came back as two files");
	check_bytes(two_b, "two", 0, (const unsigned char *)"shared", 6);
	/* Still one inode: a write through one fd shows through the other. */
	if (pwrite(two_a, "SH", 2, 0) != 2) FAIL("two: write");
	check_bytes(two_b, "two after write", 0, (const unsigned char *)"SHared", 6);
	if (pwrite(two_a, "sh", 2, 0) != 2) FAIL("two: write back");

	if (memcmp(map, map_data, sizeof map_data)) FAIL("mapping of the unlinked file differs");
	check_meta(tmp_fd, "tmpfile", S_IFREG | 0600, 0, 0, 7, 0);
	check_bytes(tmp_fd, "tmpfile", 0, (const unsigned char *)"tmpfile", 7);
	check_pos(tmp_fd, "tmpfile", 7);
	no_leftovers(".");
}

/* ---- kinds ---- */
static int dir_fd, fifo_r, fifo_w, dev_fd, lnk_fd, shm_fd;

static void kinds_setup(void)
{
	must(mkdir("gone", 0751) == 0 && mkdir("gone2", 0700) == 0, "mkdir");
	dir_fd = open("gone2", O_RDONLY | O_DIRECTORY);
	must(dir_fd >= 0, "gone2");
	must(rmdir("gone2") == 0, "rmdir gone2");

	must(mkfifo("fifo", 0620) == 0 && chmod("fifo", 0620) == 0, "mkfifo");
	fifo_r = open("fifo", O_RDONLY | O_NONBLOCK);
	fifo_w = open("fifo", O_WRONLY);
	must(fifo_r >= 0 && fifo_w >= 0 && write(fifo_w, "queued", 6) == 6, "fifo");
	unlink("fifo");

	must(mknod("null", S_IFCHR | 0666, makedev(1, 3)) == 0, "mknod");
	dev_fd = open("null", O_WRONLY);
	must(dev_fd >= 0, "null");
	unlink("null");

	must(symlink("somewhere/else", "lnk") == 0, "symlink");
	lnk_fd = open("lnk", O_PATH | O_NOFOLLOW);
	must(lnk_fd >= 0, "lnk");
	unlink("lnk");

	/* Shared anonymous memory opened through map_files, truncated, unmapped. */
	void *a = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char mf[128];
	snprintf(mf, sizeof mf, "/proc/self/map_files/%lx-%lx", (long)a, (long)a + 8192);
	shm_fd = open(mf, O_RDWR);
	must(a != MAP_FAILED && shm_fd >= 0 && ftruncate(shm_fd, 0) == 0 && write(shm_fd, "hello", 5) == 5, "shmem");
	munmap(a, 8192);

	must(chdir("gone") == 0 && rmdir("/tmp/anchor/gone") == 0, "cwd gone");
}

static void kinds_check(void)
{
	struct stat st;
	if (stat(".", &st) || !S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0751)
		FAIL("cwd: not a removed directory of mode 0751 (mode %o, %lu links)", st.st_mode,
		     (unsigned long)st.st_nlink);
	if (fstat(dir_fd, &st) || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
		FAIL("dir fd: not a removed directory");
	/* The FIFO's queued bytes, and it still works both ways. */
	char buf[16] = { 0 };
	check_meta(fifo_r, "fifo", S_IFIFO | 0620, 0, 0, -1, 0);
	if (read(fifo_r, buf, sizeof buf) != 6 || memcmp(buf, "queued", 6)) FAIL("fifo: queued bytes lost (%s)", buf);
	if (write(fifo_w, "again", 5) != 5 || read(fifo_r, buf, sizeof buf) != 5 || memcmp(buf, "again", 5))
		FAIL("fifo: the two ends are not one pipe");
	if (write(fifo_w, "queued", 6) != 6) FAIL("fifo: refill");
	if (fstat(dev_fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3) || st.st_nlink != 0)
		FAIL("device: not an unlinked 1:3 node");
	if (write(dev_fd, "x", 1) != 1) FAIL("device: write");
	struct stat sst;
	if (fstat(shm_fd, &sst) || sst.st_size != 5) FAIL("shmem fd: size %lld, want 5", (long long)sst.st_size);
	check_bytes(shm_fd, "shmem fd", 0, (const unsigned char *)"hello", 5);
	char *sm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
	if (sm == MAP_FAILED) FAIL("shmem fd: mmap: %s", strerror(errno));
	else {
		sm[0] = 'H';
		check_bytes(shm_fd, "shmem fd through a mapping", 0, (const unsigned char *)"Hello", 5);
		sm[0] = 'h';
		munmap(sm, 4096);
	}
	char t[64] = { 0 };
	if (readlinkat(lnk_fd, "", t, sizeof t - 1) < 0 || strcmp(t, "somewhere/else"))
		FAIL("symlink: target %s", t);
	no_leftovers("/tmp/anchor");
}

/* ---- linked ---- */
static int lnk_a;

static void linked_setup(void)
{
	lnk_a = open("lnk.a", O_RDWR | O_CREAT | O_EXCL, 0640);
	must(lnk_a >= 0 && write(lnk_a, "linked data", 11) == 11, "lnk.a");
	must(link("lnk.a", "lnk.b") == 0 && unlink("lnk.a") == 0, "link");
	lseek(lnk_a, 3, SEEK_SET);
}

static void linked_check(void)
{
	struct stat a, b;
	if (fstat(lnk_a, &a) || stat("lnk.b", &b) || a.st_ino != b.st_ino)
		FAIL("the fd is not on lnk.b's inode any more");
	check_meta(lnk_a, "linked", S_IFREG | 0640, 0, 0, 11, 1);
	check_pos(lnk_a, "linked", 3);
	check_bytes(lnk_a, "linked", 0, (const unsigned char *)"linked data", 11);
	if (access("lnk.a", F_OK) == 0) FAIL("lnk.a exists again");
	no_leftovers(".");
}

/* ---- chroot ---- */
static int self_stat, child_status;
static pid_t child;

static void chroot_setup(void)
{
	must(mkdir("jail", 0755) == 0 && mkdir("jail/inner", 0755) == 0 && mkdir("jail/proc", 0755) == 0, "jail");
	int m = open("jail/marker", O_CREAT | O_WRONLY, 0644);
	must(m >= 0, "marker");
	close(m);
	child = fork();
	if (child == 0) {
		for (;;) pause();
	}
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/stat", getpid());
	self_stat = open(p, O_RDONLY);
	snprintf(p, sizeof p, "/proc/%d/status", child);
	child_status = open(p, O_RDONLY);
	must(self_stat >= 0 && child_status >= 0, "proc files");
	must(chroot("jail") == 0 && chdir("/inner") == 0, "chroot");
}

static void chroot_check(void)
{
	char cwd[256], buf[4096];
	if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/inner")) FAIL("cwd %s, want /inner", cwd);
	if (access("/marker", F_OK)) FAIL("/marker not found: root is not the jail");
	ssize_t n = pread(self_stat, buf, sizeof buf - 1, 0);
	char want[64];
	snprintf(want, sizeof want, "%d (", getpid());
	if (n <= 0 || strncmp(buf, want, strlen(want))) FAIL("own /proc stat: %.40s", n > 0 ? buf : "");
	n = pread(child_status, buf, sizeof buf - 1, 0);
	if (n > 0) buf[n] = 0;
	snprintf(want, sizeof want, "\nPid:\t%d\n", child);
	if (n <= 0 || !strstr(buf, want)) FAIL("child's /proc status does not name pid %d", child);
}

/* ---- deadproc ---- */
static char dead_cwd[256];
static int dead_fd, ns_fd;

static void deadproc_setup(void)
{
	ns_fd = open("/proc/self/ns/net", O_RDONLY);
	must(ns_fd >= 0, "ns fd");
	pid_t c = fork();
	if (c == 0) {
		for (;;) pause();
	}
	char p[64];
	snprintf(p, sizeof p, "/proc/%d", c);
	must(chdir(p) == 0, "chdir /proc/child");
	snprintf(p, sizeof p, "/proc/%d/comm", c);
	dead_fd = open(p, O_RDONLY);
	must(dead_fd >= 0, "open /proc/child/comm");
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	ssize_t n = readlink("/proc/self/cwd", dead_cwd, sizeof dead_cwd - 1);
	must(n > 0, "readlink cwd");
}

static void deadproc_check(void)
{
	char buf[256] = { 0 };
	if (getcwd(buf, sizeof buf) || errno != ENOENT) FAIL("getcwd works (%s) in a dead process's /proc dir", buf);
	ssize_t n = readlink("/proc/self/cwd", buf, sizeof buf - 1);
	if (n <= 0 || strcmp(buf, dead_cwd)) FAIL("cwd %s, want %s", buf, dead_cwd);
	if (read(dead_fd, buf, sizeof buf) >= 0 || errno != ESRCH) FAIL("reading a dead process's comm: %s", strerror(errno));
	struct stat a, b;
	if (fstat(ns_fd, &a) || stat("/proc/self/ns/net", &b) || a.st_ino != b.st_ino) FAIL("ns fd: not our net namespace");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "reg";
	void (*check)(void);
	signal(SIGUSR1, on_usr1);
	block_usr1();
	if (!strcmp(mode, "reg")) reg_setup(), check = reg_check;
	else if (!strcmp(mode, "kinds")) kinds_setup(), check = kinds_check;
	else if (!strcmp(mode, "linked")) linked_setup(), check = linked_check;
	else if (!strcmp(mode, "chroot")) chroot_setup(), check = chroot_check;
	else if (!strcmp(mode, "deadproc")) deadproc_setup(), check = deadproc_check;
	else return 1;
	/* Status files: next to the program (the jail's root in chroot mode). */
	const char *dir = !strcmp(mode, "chroot") ? "/" : "/tmp/anchor/";
	char st[128], vst[128];
	snprintf(st, sizeof st, "%sghosts.status", dir);
	snprintf(vst, sizeof vst, "%sghosts.verify.status", dir);
	status(st, "ready");
	for (;;) {
		wait_usr1();
		usr1 = 0;
		bad[0] = 0;
		check();
		status(vst, bad[0] ? bad : "ok");
	}
}
