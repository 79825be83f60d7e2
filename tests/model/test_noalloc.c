/* The decode loop allocates nothing: once a sequence has been through one
 * prompt and decode of a given length (scratch buffers grown, KV pages in
 * the pool's free list), decoding it again performs zero heap allocations on
 * the decoding thread, for the plain and the mixed cache and through the
 * per-sequence router the server uses.
 *
 * Counted with jemalloc's per-thread counter (thread.allocated: every byte
 * malloc/calloc/realloc/aligned_alloc handed to this thread). With one
 * compute thread every kernel task runs on the calling thread, so the count
 * covers the forward pass, the cache and its tracker. Under a sanitizer
 * build the sanitizer's allocator replaces jemalloc; the test then says so
 * and skips rather than passing on a counter that never moves. */
#include <criterion/criterion.h>
#include <jemalloc/jemalloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "kv_policy.h"
#include "kv_pool.h"
#include "kv_router.h"
#include "llama.h"
#include "pverr.h"

#define MODEL PIVOT_SOURCE_ROOT "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

enum { PROMPT = 24, END = 170, CTX = 192 };

static uint64_t thread_allocated(void)
{
    uint64_t v = 0;
    size_t sz = sizeof v;
    if (mallctl("thread.allocated", &v, &sz, NULL, 0) != 0)
        return UINT64_MAX;
    return v;
}

/* Skips unless jemalloc really serves this thread's allocations. */
static void require_jemalloc(void)
{
    uint64_t a = thread_allocated();
    void *volatile p = malloc(4096);
    uint64_t b = thread_allocated();
    free(p);
    if (a == UINT64_MAX || b < a + 4096)
        cr_skip_test("jemalloc is not the allocator here (sanitizer build?): cannot count");
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Prompt, then greedy decode to END. Returns the bytes allocated on this
 * thread during the decode steps only. */
static uint64_t run_once(llm_ctx *ctx, int n_vocab, float *logits)
{
    kv_seq_reset(llm_ctx_kv(ctx), 0);
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        prompt[i] = 100 + 37 * i;
    llm_batch_entry e = {0, 0, PROMPT, prompt, LLM_LOGITS_LAST};
    cr_assert_eq(llm_decode(ctx, &e, 1, logits), PV_OK);
    int32_t tok = argmax(logits, n_vocab);
    uint64_t before = thread_allocated();
    for (int pos = PROMPT; pos < END; pos++) {
        llm_batch_entry d = {0, pos, 1, &tok, LLM_LOGITS_LAST};
        cr_assert_eq(llm_decode(ctx, &d, 1, logits), PV_OK, "decode at %d", pos);
        tok = argmax(logits, n_vocab);
    }
    return thread_allocated() - before;
}

static void check_policy_at(const char *spec, int router, int threads, int attn_split)
{
    if (access(MODEL, R_OK) != 0)
        cr_skip_test("default model not fetched");
    require_jemalloc();
    llm_model *m = NULL;
    char err[256] = "";
    cr_assert_eq(llm_load(MODEL, &m, err, sizeof err), 0, "%s", err);
    int V = llm_get_config(m)->n_vocab;
    llm_ctx_params cp = {.n_threads = threads, .max_seqs = 1, .max_ctx = CTX, .max_batch_tokens = 32,
                         .attn_split = attn_split};
    kv_pool *pool = NULL;
    cr_assert_eq(kv_pool_create(0, &pool), PV_OK);
    kv_shape ks = llm_kv_shape(m, &cp);
    ks.pool = pool;
    kv_policy pol;
    cr_assert_eq(kv_policy_parse(spec, &pol, err, sizeof err), 0, "%s", err);
    kv_cache *kv = NULL;
    if (router)
        cr_assert_eq(kv_create_router(&ks, &pol, &kv, err, sizeof err), 0, "%s", err);
    else
        cr_assert_eq(kv_create(&ks, &pol, &kv, err, sizeof err), 0, "%s", err);
    llm_ctx *ctx = NULL;
    cr_assert_eq(llm_ctx_create(m, &cp, kv, &ctx), PV_OK);
    float *logits = malloc(sizeof(float) * (size_t)V);
    cr_assert_not_null(logits);

    uint64_t first = run_once(ctx, V, logits); /* grows scratch, fills the pool */
    uint64_t second = run_once(ctx, V, logits);
    cr_assert_eq(second, 0,
                 "%s: %llu bytes allocated in %d decode steps (first pass: %llu)", spec,
                 (unsigned long long)second, END - PROMPT, (unsigned long long)first);
    kv_pool_stats st;
    kv_pool_get_stats(pool, &st);
    cr_assert_gt(st.n_reused, 0, "%s: the second pass reuses pooled pages", spec);

    free(logits);
    llm_ctx_free(ctx);
    kv_pool_destroy(pool);
    llm_free(m);
}

static void check_policy(const char *spec, int router) { check_policy_at(spec, router, 1, 0); }

Test(noalloc, full_cache, .timeout = 120) { check_policy("full", 0); }
/* Split-K decode attention (one sequence, 2 threads, split from 64 tokens
 * on: 2 key ranges per KV head past 128): its part buffers are the ctx's.
 * Only this thread is counted, which runs half the parts and every merge. */
Test(noalloc, full_cache_split_k, .timeout = 120) { check_policy_at("full", 1, 2, 64); }
/* mikv demotes (quantizes) chunks as the sequence outgrows its budget */
Test(noalloc, mikv_cache, .timeout = 120) { check_policy("mikv,budget=48,recent=8", 0); }
Test(noalloc, scissorhands_drops, .timeout = 120) { check_policy("scissorhands,budget=48", 0); }
/* rotated queries live in the output buffer, 3-bit codes and clipped ranges
 * are encode-side: still nothing allocated per step */
Test(noalloc, rotated_3bit_clipped, .timeout = 120) {
    check_policy("mikv,budget=48,recent=8,lo-bits=4/3,rotate=1,clip=1", 0);
}
Test(noalloc, router_as_served, .timeout = 120) { check_policy("mikv,budget=0.3", 1); }
