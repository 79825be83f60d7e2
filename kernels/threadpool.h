/* tp: a fixed-size thread pool for data-parallel kernels.
 *
 * tp_run(pool, fn, ctx, n_tasks) calls fn(ctx, task, thread) for every task in
 * [0, n_tasks) and returns when all are done. The calling thread takes part
 * (thread index 0); workers are 1..n_threads-1, so per-thread scratch can be
 * indexed by `thread`. Tasks are handed out dynamically (atomic counter).
 * Idle workers block on a condition variable: an idle pool uses no CPU.
 * tp_run is not reentrant and must be called from one thread at a time. */
#ifndef PIVOT_TP_THREADPOOL_H
#define PIVOT_TP_THREADPOOL_H

typedef struct tp_pool tp_pool;
typedef void (*tp_fn)(void *ctx, int task, int thread);

/* One per online CPU (at least 1): what n_threads <= 0 means everywhere. */
int tp_default_threads(void);
/* n_threads <= 0 means tp_default_threads(). Returns 0 or PV_ENOMEM/PV_EINVAL. */
int tp_create(int n_threads, tp_pool **out);
/* Joins the workers. NULL is allowed. */
void tp_destroy(tp_pool *pool);
int tp_size(const tp_pool *pool);
void tp_run(tp_pool *pool, tp_fn fn, void *ctx, int n_tasks);

#endif
