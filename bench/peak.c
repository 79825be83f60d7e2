/* Issue rate of one core for the instructions the CPU kernels are built on
 * (not part of the test suite): 512-bit vpdpwssd, vpdpbusd and vfmadd231ps
 * on 4, 8 and 16 independent register chains, no memory traffic. The
 * kernels' figures in docs/PERFORMANCE.md are read against these: the
 * 16-row Q4_1 kernel issues one vpdpwssd per 32 multiply-adds, the FP16
 * attention one FMA per 16.
 *
 *   cc -O2 -march=native -std=gnu11 bench/peak.c -o /tmp/peak && /tmp/peak
 *
 * Prints G instructions per second for each (instruction, chains); the
 * figure that stops growing with the chains is the core's throughput. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define ITERS 50000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One copy per (instruction, chain count): the chains stay in registers.
 * The empty asm makes the operands opaque so the loop cannot be folded.
 * T/SET/ADD/RED/S: the register type, its broadcast, add, reduction and
 * scalar type (int32 lanes for the dot products, floats for the FMA). */
#define LOOP(NAME, T, SET, ADD, RED, S, OP, K)                                                    \
    static double NAME(void) {                                                                    \
        T a[K], b = SET((S)3), c = SET((S)5);                                                     \
        for (int i = 0; i < K; i++) a[i] = SET((S)i);                                             \
        double t = now();                                                                         \
        for (long n = 0; n < ITERS; n++) {                                                        \
            _Pragma("GCC unroll 16") for (int i = 0; i < K; i++) a[i] = OP(a[i], b, c);           \
            __asm__ volatile("" : "+v"(b), "+v"(c));                                              \
        }                                                                                         \
        t = now() - t;                                                                            \
        T s = a[0];                                                                               \
        for (int i = 1; i < K; i++) s = ADD(s, a[i]);                                             \
        volatile S sink = RED(s);                                                                 \
        (void)sink;                                                                               \
        return (double)ITERS * K / t * 1e-9;                                                      \
    }
#define INT_LOOP(NAME, OP, K) LOOP(NAME, __m512i, _mm512_set1_epi32, _mm512_add_epi32, _mm512_reduce_add_epi32, int, OP, K)
/* (the FMA chains grow to infinity within a few hundred steps; x86 adds and
 * multiplies infinities at full speed, so the rate is the same) */
#define FMA_LOOP(NAME, K) LOOP(NAME, __m512, _mm512_set1_ps, _mm512_add_ps, _mm512_reduce_add_ps, float, _mm512_fmadd_ps, K)

INT_LOOP(wssd4, _mm512_dpwssd_epi32, 4)
INT_LOOP(wssd8, _mm512_dpwssd_epi32, 8)
INT_LOOP(wssd16, _mm512_dpwssd_epi32, 16)
INT_LOOP(busd4, _mm512_dpbusd_epi32, 4)
INT_LOOP(busd8, _mm512_dpbusd_epi32, 8)
INT_LOOP(busd16, _mm512_dpbusd_epi32, 16)
FMA_LOOP(fma4, 4)
FMA_LOOP(fma8, 8)
FMA_LOOP(fma16, 16)

int main(void) {
    printf("chains            4       8      16   (G instructions/s, one thread)\n");
    printf("vpdpwssd zmm  %6.2f  %6.2f  %6.2f\n", wssd4(), wssd8(), wssd16());
    printf("vpdpbusd zmm  %6.2f  %6.2f  %6.2f\n", busd4(), busd8(), busd16());
    printf("vfmadd   zmm  %6.2f  %6.2f  %6.2f\n", fma4(), fma8(), fma16());
    return 0;
}
