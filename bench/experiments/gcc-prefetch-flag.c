/* GCC 12 -O2 and a prefetch helper chosen by a flag (docs/PERFORMANCE.md,
 * "Issue 17, 2026-12-07 (12:00–14:00 UTC)"): `gcc -O2 -S -o - gcc-prefetch-flag.c | grep prefetch`
 * prints one prefetchnta for f (the prefetcht1 loop is gone) and both for g,
 * which calls two helpers; why cache/kv_mixed_attend.c has prefetch_bytes and prefetch_l2. */
#include <stddef.h>
#include <stdint.h>
static inline void pf_flag(const uint8_t *p, size_t n, int into_l2) {
    if (into_l2)
        for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 2);
    else
        for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 0);
}
static inline void pf_nta(const uint8_t *p, size_t n) { for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 0); }
static inline void pf_l2(const uint8_t *p, size_t n) { for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i, 0, 2); }
void f(const uint8_t *a, const uint8_t *b, size_t n, size_t m) { pf_flag(a, n, 0); pf_flag(b, m, 1); }
void g(const uint8_t *a, const uint8_t *b, size_t n, size_t m) { pf_nta(a, n); pf_l2(b, m); }
