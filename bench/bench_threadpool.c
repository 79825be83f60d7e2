/* Cost of one tp_run hand-off (not part of the test suite): a decode step
 * issues ~240 pool runs, so this bounds what synchronization can cost.
 *
 *   cc -O2 -std=gnu11 -Ikernels bench/bench_threadpool.c build/libpivotcore.a -lpthread -lm \
 *      -o /tmp/bench_threadpool && /tmp/bench_threadpool [threads (2)] [tasks (16)]
 *
 * Runs 100,000 back-to-back tp_run calls of empty tasks, three times, and
 * prints microseconds per call (workers are still in their spin window
 * between calls, as during a forward pass). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "threadpool.h"

static void nop(void *ctx, int task, int thread)
{
    (void)ctx;
    (void)task;
    (void)thread;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, tasks = argc > 2 ? atoi(argv[2]) : 16;
    tp_pool *p = NULL;
    if (tp_create(threads, &p) != 0) {
        fprintf(stderr, "bench_threadpool: cannot create a pool of %d\n", threads);
        return 1;
    }
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        for (int i = 0; i < 100000; i++)
            tp_run(p, nop, NULL, tasks);
        printf("tp_run, %d empty tasks, %d threads: %.2f us per call\n", tasks, threads,
               (now() - t0) / 100000 * 1e6);
    }
    tp_destroy(p);
    return 0;
}
