/* tp: fixed thread pool, caller participates as thread 0.
 *
 * A run is published by bumping `gen`; workers grab task indices from the
 * atomic `next` and each worker checks in once per run by decrementing
 * `pending`, so tp_run knows nobody still reads the run's fn/ctx before it
 * returns (the next run may overwrite them).
 *
 * Waking: after a run, workers spin briefly on `gen` (decode issues ~10 runs
 * per layer back to back, and a futex wake costs several microseconds),
 * then sleep on a condition variable. The run side only takes the mutex
 * when someone sleeps. The sleep/wake handshake is the classic Dekker
 * pattern with seq_cst atomics: the waker stores `gen` then loads
 * `n_sleeping`; a sleeper stores `n_sleeping` (under the mutex) then loads
 * `gen`; at least one of them sees the other, and the waker's broadcast
 * happens under the mutex, so no wake-up is lost. The same scheme is used
 * in reverse for the caller waiting on `pending`. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "pverr.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TP_PAUSE() _mm_pause()
#else
#define TP_PAUSE() ((void)0)
#endif

/* Spin iterations (each one pause, ~10-140 cycles depending on the core)
 * before blocking: some tens of microseconds, enough to bridge back-to-back
 * runs of a forward pass without burning a core when the pool goes idle. */
#define TP_SPIN 4000

struct tp_pool {
    int n_threads;
    pthread_t *threads;

    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers wait here for a new gen */
    pthread_cond_t cv_done; /* the caller waits here for pending == 0 */

    atomic_uint gen;
    atomic_int stop;
    atomic_int n_sleeping;
    atomic_int caller_waiting;

    /* the current run; written before gen is bumped */
    tp_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;
    atomic_int pending; /* workers that have not finished this run */
};

typedef struct {
    tp_pool *pool;
    int index;
} tp_worker_arg;

static void run_tasks(tp_pool *p, int thread)
{
    tp_fn fn = p->fn;
    void *ctx = p->ctx;
    int n = p->n_tasks;
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= n)
            break;
        fn(ctx, t, thread);
    }
}

static void *worker_main(void *argp)
{
    tp_worker_arg arg = *(tp_worker_arg *)argp;
    free(argp);
    tp_pool *p = arg.pool;
    /* gen starts at 0 in tp_create; reading it here instead would race with
     * a tp_run issued before this thread got scheduled */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop) && spins < TP_SPIN) {
            TP_PAUSE();
            spins++;
        }
        if (g == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv_work, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = g;
        run_tasks(p, arg.index);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int tp_default_threads(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

int tp_create(int n_threads, tp_pool **out)
{
    if (!out)
        return PV_EINVAL;
    *out = NULL;
    if (n_threads <= 0)
        n_threads = tp_default_threads();
    if (n_threads > 1024)
        return PV_EINVAL;
    tp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return PV_ENOMEM;
    p->n_threads = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return PV_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    for (int i = 1; i < n_threads; i++) {
        tp_worker_arg *a = malloc(sizeof *a);
        if (a) {
            a->pool = p;
            a->index = i;
        }
        if (!a || pthread_create(&p->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            p->n_threads = i; /* join only those started */
            tp_destroy(p);
            return PV_ENOMEM;
        }
    }
    *out = p;
    return PV_OK;
}

void tp_destroy(tp_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int tp_size(const tp_pool *p) { return p ? p->n_threads : 1; }

void tp_run(tp_pool *p, tp_fn fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0 || !fn)
        return;
    /* nothing to share: skip the hand-off entirely */
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes the fields above */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p, 0);
    for (int spins = 0; atomic_load(&p->pending) > 0 && spins < TP_SPIN; spins++)
        TP_PAUSE();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
}
