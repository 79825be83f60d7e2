/* The unit tests' random numbers: one LCG (seeded per test, so every run
 * draws the same inputs and a failure reproduces), written once. Static
 * inline: each test file takes what it uses. */
#ifndef PIVOT_TEST_RAND_H
#define PIVOT_TEST_RAND_H

/* Uniform in [-1, 1), in steps of 2^-15. */
static inline float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

/* Uniform in [0, n), n > 0. */
static inline int irand(unsigned *s, int n) {
    *s = *s * 1103515245u + 12345u;
    return (int)((*s >> 8) % (unsigned)n);
}

#endif
