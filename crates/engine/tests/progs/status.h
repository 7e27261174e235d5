/* Status files of the test programs: <dir>/<name> replaced atomically (written to <name>.tmp, then
 * renamed), so a test polling it never reads half a line. Use: put_status(dir, "x.verify", "ok\n"); */
#include <stdio.h>
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
