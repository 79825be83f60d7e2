/* Memory read bandwidth of this machine, the ceiling for decode (which
 * streams every weight once per step). Not part of the test suite.
 *
 *   cc -O2 -march=native -std=gnu11 bench/membw.c -lpthread -o /tmp/membw
 *   /tmp/membw [MiB per thread (default 512)] [reps (default 5)]
 *
 * Each of 1..N threads (N = online CPUs) sums its own buffer of 64-bit words
 * (vectorized by the compiler; the sum is printed so it is not optimized
 * away). Buffers are far larger than the last-level cache, so every pass
 * comes from DRAM. Reports the best of `reps` passes in GB/s (10^9 bytes)
 * for each thread count. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
    pthread_barrier_t *bar;
} job;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *reader(void *arg)
{
    job *j = arg;
    pthread_barrier_wait(j->bar);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) {
        s0 += j->p[i];
        s1 += j->p[i + 1];
        s2 += j->p[i + 2];
        s3 += j->p[i + 3];
    }
    j->sum = s0 ^ s1 ^ s2 ^ s3;
    pthread_barrier_wait(j->bar);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 512;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int maxt = ncpu > 0 ? (int)ncpu : 1;
    size_t n = mib << 17; /* 64-bit words per thread */
    uint64_t **buf = calloc((size_t)maxt, sizeof *buf);
    for (int t = 0; t < maxt; t++) {
        buf[t] = malloc(n * sizeof(uint64_t));
        if (!buf[t]) {
            fprintf(stderr, "membw: cannot allocate %zu MiB\n", mib);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            buf[t][i] = i * 2654435761u + (uint64_t)t;
    }
    uint64_t check = 0;
    for (int nt = 1; nt <= maxt; nt++) {
        double best = 0;
        for (int r = 0; r < reps; r++) {
            pthread_barrier_t bar;
            pthread_barrier_init(&bar, NULL, (unsigned)nt + 1);
            pthread_t th[64];
            job jobs[64];
            for (int t = 0; t < nt && t < 64; t++) {
                jobs[t] = (job){buf[t], n, 0, &bar};
                pthread_create(&th[t], NULL, reader, &jobs[t]);
            }
            pthread_barrier_wait(&bar);
            double t0 = now();
            pthread_barrier_wait(&bar);
            double dt = now() - t0;
            for (int t = 0; t < nt && t < 64; t++) {
                pthread_join(th[t], NULL);
                check ^= jobs[t].sum;
            }
            pthread_barrier_destroy(&bar);
            double gbs = (double)nt * (double)n * 8 / dt / 1e9;
            if (gbs > best)
                best = gbs;
        }
        printf("threads %d: read %.1f GB/s (best of %d, %zu MiB each)\n", nt, best, reps, mib);
    }
    printf("(checksum %llx)\n", (unsigned long long)check);
    for (int t = 0; t < maxt; t++)
        free(buf[t]);
    free(buf);
    return 0;
}
