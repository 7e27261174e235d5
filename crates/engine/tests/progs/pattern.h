/* A reproducible memory pattern (xorshift64 from a seed) for test programs:
 * fill() writes it, check() returns non-zero where memory differs from it. */
#include <stdint.h>
#include <string.h>
static uint64_t next(uint64_t *s) { uint64_t x = *s; x ^= x << 13; x ^= x >> 7; x ^= x << 17; return *s = x; }
static void fill(unsigned char *p, size_t n, uint64_t seed)
{ uint64_t s = seed, v; for (size_t i = 0; i < n; i += 8) { v = next(&s); memcpy(p + i, &v, 8); } }
static int check(const unsigned char *p, size_t n, uint64_t seed)
{ uint64_t s = seed, v; for (size_t i = 0; i < n; i += 8) { v = next(&s); if (memcmp(p + i, &v, 8)) return 1; } return 0; }
