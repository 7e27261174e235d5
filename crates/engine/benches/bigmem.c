/* Benchmark target: N MiB (argv[1], default 1024) of non-zero anonymous memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024, n = mib << 20;
	unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	for (size_t i = 0; i < n; i += 8) *(unsigned long *)(p + i) = i * 2654435761UL + 1;
	printf("ready %p\n", (void *)p);
	fflush(stdout);
	for (;;) pause();
}
