/* Shared by the GPU check driver's files (gpu_check.c: ops vs the CPU;
 * gpu_mixed.c: the mixed cache's ops; gpu_e2e.c: end-to-end logits and the
 * decode benchmark). */
#ifndef PIVOT_GPU_CHECK_H
#define PIVOT_GPU_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda/pvcuda.h"
#include "cuda/kv_mixed_cuda.h" /* the mixed cache's kernels (cache/cuda) */

extern int g_failed, g_passed;
extern FILE *g_tsv; /* key \t value lines for the report table (may be NULL) */

/* Records one check: prints "PASS|FAIL name  detail" and counts it. */
void check(int ok, const char *name, const char *fmt, ...);
void tsv(const char *key, const char *fmt, ...);
double now_s(void);
/* JUnit XML of every check so far (one testcase each, failures with their
 * detail) for scripts/test.sh's count; 0 or -1 when the file cannot be written. */
int gpu_junit_write(const char *path, const char *suite);
/* A device buffer of `bytes`, filled from h when h is not NULL (then
 * synchronised); NULL on failure. Free with pvc_free. */
void *gpu_up(pvc_ctx *pc, const void *h, size_t bytes);

/* Deterministic random numbers for inputs. */
typedef struct {
    uint64_t s;
} rng;
float rng_uniform(rng *r); /* [-1, 1) */
int rng_int(rng *r, int n);

int run_ops(pvc_ctx *pc);
int run_ops_mixed(pvc_ctx *pc, rng *r); /* gpu_mixed.c: the mixed cache's kernels */
/* gpu_mixed_layout.c: kv_mixed.cu's quantizer layout (encode in the demotion,
 * decode in the attention) vs cache/kv_quant.c, its victim choice and
 * compaction vs kvt_pick (run by run_ops_mixed) */
void run_ops_mixed_layout(pvc_ctx *pc, rng *r);
int run_e2e_synthetic(void);
int run_e2e_model(const char *path);
int run_bench(int quick);

#endif
