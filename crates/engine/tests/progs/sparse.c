/* A 768 MiB anonymous mapping with only a few runs of pages touched, placed
 * across the 250 MiB steps in which dump scans and splices memory and across
 * 1 MiB pipe boundaries. Byte at offset o: (o * 31 + (o >> 12)) | 1.
 * Prints "ready addr=ADDR len=LEN runs=OFF:LEN,...". */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#define MIB (1UL << 20)
#define KIB (1UL << 10)

int main(void)
{
	const size_t len = 768 * MIB;
	const size_t runs[][2] = {
		{ 0, 12 * KIB },
		{ 3 * MIB - 8 * KIB, 16 * KIB },
		{ 250 * MIB - 12 * KIB, 2 * MIB + 20 * KIB },
		{ 500 * MIB - 4 * KIB, 8 * KIB },
		{ 700 * MIB + 4 * KIB, 2 * MIB + 512 * KIB },
		{ len - 4 * KIB, 4 * KIB },
	};
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct timespec ts = { 1, 0 };
	if (p == MAP_FAILED)
		return 1;
	madvise(p, len, MADV_NOHUGEPAGE);
	printf("ready addr=%p len=%zu runs=", (void *)p, len);
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		for (size_t o = runs[r][0]; o < runs[r][0] + runs[r][1]; o++)
			p[o] = (unsigned char)((o * 31 + (o >> 12)) | 1);
		printf("%s%zu:%zu", r ? "," : "", runs[r][0], runs[r][1]);
	}
	printf("\n");
	fflush(stdout);
	for (;;)
		nanosleep(&ts, NULL);
}
