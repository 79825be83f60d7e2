/* tp tests: every task runs exactly once, thread indices stay in range, the
 * caller takes part, edge sizes, and idle destroy. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pverr.h"
#include "threadpool.h"

enum { MAX_TASKS = 1000, MAX_THREADS = 4 };

typedef struct {
    atomic_int count[MAX_TASKS];
    atomic_int per_thread[MAX_THREADS];
    atomic_int bad_thread;
    int n_threads;
} counters;

static void count_task(void *vctx, int task, int thread)
{
    counters *c = vctx;
    if (thread < 0 || thread >= c->n_threads) {
        atomic_fetch_add(&c->bad_thread, 1);
        return;
    }
    atomic_fetch_add(&c->count[task], 1);
    atomic_fetch_add(&c->per_thread[thread], 1);
}

Test(threadpool, every_task_once_many_runs)
{
    static counters c;
    for (int n = 1; n <= 4; n++) {
        tp_pool *p = NULL;
        cr_assert_eq(tp_create(n, &p), PV_OK);
        cr_assert_eq(tp_size(p), n);
        for (int run = 0; run < 300; run++) {
            int n_tasks = (run * 37) % MAX_TASKS + 1; /* 1..1000, varied */
            memset(&c, 0, sizeof c);
            c.n_threads = n;
            tp_run(p, count_task, &c, n_tasks);
            /* tp_run returned: all tasks must be complete, none extra */
            for (int t = 0; t < MAX_TASKS; t++)
                cr_assert_eq(atomic_load(&c.count[t]), t < n_tasks ? 1 : 0,
                             "pool %d run %d task %d ran %d times", n, run, t, atomic_load(&c.count[t]));
            int total = 0;
            for (int t = 0; t < n; t++)
                total += atomic_load(&c.per_thread[t]);
            cr_assert_eq(total, n_tasks);
            cr_assert_eq(atomic_load(&c.bad_thread), 0);
        }
        tp_destroy(p);
    }
}

static void slow_task(void *vctx, int task, int thread)
{
    (void)task;
    counters *c = vctx;
    usleep(2000);
    atomic_fetch_add(&c->per_thread[thread], 1);
}

/* The caller is thread 0 and workers pick up tasks too: with slow tasks and
 * more tasks than threads both kinds of thread must have run some. */
Test(threadpool, caller_and_workers_participate)
{
    static counters c;
    tp_pool *p = NULL;
    cr_assert_eq(tp_create(2, &p), PV_OK);
    memset(&c, 0, sizeof c);
    c.n_threads = 2;
    tp_run(p, slow_task, &c, 50);
    cr_assert_gt(atomic_load(&c.per_thread[0]), 0, "caller did not take part");
    cr_assert_gt(atomic_load(&c.per_thread[1]), 0, "worker did not take part");
    cr_assert_eq(atomic_load(&c.per_thread[0]) + atomic_load(&c.per_thread[1]), 50);
    tp_destroy(p);
}

static void never(void *vctx, int task, int thread)
{
    (void)task;
    (void)thread;
    atomic_fetch_add((atomic_int *)vctx, 1);
}

Test(threadpool, zero_tasks_and_null_pool)
{
    atomic_int hits = 0;
    tp_pool *p = NULL;
    cr_assert_eq(tp_create(3, &p), PV_OK);
    tp_run(p, never, &hits, 0);
    tp_run(p, never, &hits, -5);
    cr_assert_eq(atomic_load(&hits), 0);
    tp_run(p, never, &hits, 1);
    cr_assert_eq(atomic_load(&hits), 1);
    tp_destroy(p);

    /* NULL pool runs inline on the caller, thread 0 */
    static counters c;
    memset(&c, 0, sizeof c);
    c.n_threads = 1;
    tp_run(NULL, count_task, &c, 10);
    cr_assert_eq(atomic_load(&c.per_thread[0]), 10);
    cr_assert_eq(tp_size(NULL), 1);
    tp_destroy(NULL);
}

/* Workers that went to sleep (idle longer than the spin window) must wake
 * for the next run; and a pool destroyed while idle must join cleanly. */
Test(threadpool, sleep_wake_and_idle_destroy, .timeout = 30)
{
    static counters c;
    tp_pool *p = NULL;
    cr_assert_eq(tp_create(4, &p), PV_OK);
    for (int run = 0; run < 5; run++) {
        usleep(20000); /* well past the spin window: workers are asleep */
        memset(&c, 0, sizeof c);
        c.n_threads = 4;
        tp_run(p, count_task, &c, 64);
        for (int t = 0; t < 64; t++)
            cr_assert_eq(atomic_load(&c.count[t]), 1);
    }
    usleep(20000);
    tp_destroy(p);

    /* destroy right after create (workers may not have started waiting) */
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(tp_create(3, &p), PV_OK);
        tp_destroy(p);
    }
}

Test(threadpool, default_size_and_errors)
{
    tp_pool *p = NULL;
    cr_assert_eq(tp_create(0, &p), PV_OK);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(tp_size(p), cpus > 0 ? (int)cpus : 1);
    tp_destroy(p);
    cr_assert_eq(tp_create(2, NULL), PV_EINVAL);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds this process gets while one thread spins for `wall` seconds:
 * the reference for "busy" on this machine now (a loaded machine gives less
 * than `wall`, and gives spinning workers less in the same proportion). */
static double busy_reference(double wall)
{
    double c0 = cpu_seconds(), t0 = wall_seconds();
    volatile unsigned long spin = 0;
    while (wall_seconds() - t0 < wall)
        spin++;
    return cpu_seconds() - c0;
}

/* An idle pool costs no CPU: after a run, workers spin only briefly before
 * sleeping. The bound is relative to a spinning thread measured in the same
 * run, not an absolute figure that a loaded or instrumented machine breaks:
 * over 300 ms of idleness 3 workers that kept spinning would use about 3x the
 * reference; sleeping ones use a few tens of microseconds, far under 1/10. */
Test(threadpool, idle_pool_uses_no_cpu, .timeout = 30)
{
    static counters c;
    tp_pool *p = NULL;
    cr_assert_eq(tp_create(4, &p), PV_OK);
    c.n_threads = 4;
    for (int run = 0; run < 3; run++)
        tp_run(p, count_task, &c, 64);
    usleep(50000); /* let the spin window pass */
    double t0 = cpu_seconds();
    usleep(300000);
    double used = cpu_seconds() - t0;
    double busy = busy_reference(0.3);
    cr_assert_gt(busy, 0.0, "the busy reference got no CPU time");
    cr_assert_lt(used, 0.1 * busy, "idle pool used %.4f s of CPU in 0.3 s; one spinning thread %.4f s",
                 used, busy);
    /* and it still works afterwards */
    memset(&c, 0, sizeof c);
    c.n_threads = 4;
    tp_run(p, count_task, &c, 64);
    for (int t = 0; t < 64; t++)
        cr_assert_eq(atomic_load(&c.count[t]), 1);
    tp_destroy(p);
}
