/* Status files of the test programs: <dir>/<name> replaced atomically (written to <name>.tmp, then
 * renamed), so a test polling it never reads half a line.
 *   put_status(dir, "x.verify", "ok\n"): through stdio; gives up quietly if the file cannot be made.
 *   put_status_raw(dir, "x.ready", "ready\n"): open/write/close only (no stdio, no malloc: for threads
 *     that change their credentials or must not allocate), mode 0666 (so that a thread of another uid
 *     can replace it), and _exit(3) if the write fails. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void put_status(const char *dir, const char *name, const char *text)
{
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

static __attribute__((unused)) void put_status_raw(const char *dir, const char *name, const char *text)
{
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		_exit(3);
	close(fd);
	rename(tmp, path);
}
