/* gpu_check: every CUDA op against the CPU code on fresh random inputs, with
 * the tolerance stated next to each check; then (gpu_e2e.c) end-to-end logits
 * CUDA vs CPU and the decode benchmark.
 *
 *   gpu_check [--model PATH] [--tsv FILE] [--skip-bench] [--quick]
 *             [--only ops|e2e|bench]
 *
 * Exit status: 0 all checks passed, 1 a check failed, 3 no usable GPU (every
 * GPU step skipped, visibly). */
#include "gpu_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/synth_hash.h"
#include "device.h"
#include "kv.h"
#include "matmul.h"
#include "ops.h"
#include "pverr.h"
#include "quant.h"

/* check, tsv, now_s, rng_*: gpu_util.c (shared with the CPU emulator) */

/* ---- helpers (device buffers from host data: gpu_up, gpu_util.c) ---- */
static void fill(rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform(r) * scale;
}
static void to_half(const float *x, uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = kq_fp32_to_fp16(x[i]);
}
static void round_half(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = kq_fp16_to_fp32(kq_fp32_to_fp16(x[i]));
}
static void half_to_f(const uint16_t *h, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = kq_fp16_to_fp32(h[i]);
}

/* Worst |got - ref| / (atol + rtol |ref|); <= 1 passes. Also max abs err. */
static double cmp(const float *got, const float *ref, size_t n, double atol, double rtol,
                  double *maxabs) {
    double worst = 0, ma = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d == d)) d = INFINITY; /* NaN fails */
        double q = d / (atol + rtol * fabs(ref[i]));
        if (q > worst) worst = q;
        if (d > ma) ma = d;
    }
    *maxabs = ma;
    return worst;
}

#define REPORT(name, got, ref, n, atol, rtol)                                                     \
    do {                                                                                          \
        double ma_, w_ = cmp(got, ref, n, atol, rtol, &ma_);                                      \
        check(w_ <= 1.0, name, "max|err| %.3g (tol %.0e + %.0e|ref|)", ma_, (double)(atol),       \
              (double)(rtol));                                                                    \
    } while (0)

static int op_small(pvc_ctx *pc, rng *r) {
    /* embedding: exact */
    {
        int V = 1000, D = 576, T = 7, ids[7];
        float *t = malloc(sizeof(float) * V * D), *ref = malloc(sizeof(float) * T * D),
              *got = malloc(sizeof(float) * T * D);
        uint16_t *th = malloc(2 * (size_t)V * D);
        fill(r, t, (size_t)V * D, 2.f);
        to_half(t, th, (size_t)V * D);
        for (int i = 0; i < T; i++) {
            ids[i] = rng_int(r, V);
            half_to_f(th + (size_t)ids[i] * D, ref + (size_t)i * D, D);
        }
        void *dt = gpu_up(pc, th, 2 * (size_t)V * D), *di = gpu_up(pc, ids, sizeof ids), *dx = gpu_up(pc, NULL, 4 * T * D);
        int rc = pvc_embed(pc, dt, di, T, D, dx);
        if (!rc) rc = pvc_d2h(pc, got, dx, 4 * (size_t)T * D);
        if (rc) check(0, "embed", "rc %d: %s", rc, pvc_last_error());
        else REPORT("embed (exact)", got, ref, (size_t)T * D, 1e-30, 0.0);
        pvc_free(pc, dt), pvc_free(pc, di), pvc_free(pc, dx);
        free(t), free(ref), free(got), free(th);
    }
    /* RMSNorm, with and without a row list; output is half */
    int Ds[] = {576, 4096};
    for (int k = 0; k < 2; k++) {
        int D = Ds[k], T = 5, rows[3] = {3, 0, 4};
        float *x = malloc(sizeof(float) * T * D), *w = malloc(sizeof(float) * D),
              *ref = malloc(sizeof(float) * T * D), *got = malloc(sizeof(float) * T * D);
        uint16_t *h = malloc(2 * (size_t)T * D);
        fill(r, x, (size_t)T * D, 3.f);
        fill(r, w, D, 1.f);
        void *dx = gpu_up(pc, x, 4 * (size_t)T * D), *dw = gpu_up(pc, w, 4 * (size_t)D),
             *dr = gpu_up(pc, rows, sizeof rows), *dout = gpu_up(pc, NULL, 2 * (size_t)T * D);
        for (int variant = 0; variant < 2; variant++) {
            int n = variant ? 3 : T;
            for (int i = 0; i < n; i++)
                ko_rmsnorm(ref + (size_t)i * D, x + (size_t)(variant ? rows[i] : i) * D, w, D, 1e-5f);
            int rc = pvc_rmsnorm(pc, dx, variant ? dr : NULL, dw, n, D, 1e-5f, dout);
            if (!rc) rc = pvc_d2h(pc, h, dout, 2 * (size_t)n * D);
            char nm[64];
            snprintf(nm, sizeof nm, "rmsnorm D=%d%s (half out)", D, variant ? " rows" : "");
            if (rc) {
                check(0, nm, "rc %d: %s", rc, pvc_last_error());
                continue;
            }
            half_to_f(h, got, (size_t)n * D);
            REPORT(nm, got, ref, (size_t)n * D, 1e-3, 2e-3);
        }
        pvc_free(pc, dx), pvc_free(pc, dw), pvc_free(pc, dr), pvc_free(pc, dout);
        free(x), free(w), free(ref), free(got), free(h);
    }
    /* SwiGLU on the fused gate|up rows; bias add */
    {
        int T = 3, ff = 1536;
        float *gu = malloc(sizeof(float) * T * 2 * ff), *ref = malloc(sizeof(float) * T * ff),
              *got = malloc(sizeof(float) * T * ff);
        uint16_t *h = malloc(2 * (size_t)T * ff);
        fill(r, gu, (size_t)T * 2 * ff, 6.f);
        for (int t = 0; t < T; t++)
            ko_swiglu(ref + (size_t)t * ff, gu + (size_t)t * 2 * ff, gu + (size_t)t * 2 * ff + ff, ff);
        void *dg = gpu_up(pc, gu, 4 * (size_t)T * 2 * ff), *dout = gpu_up(pc, NULL, 2 * (size_t)T * ff);
        int rc = pvc_swiglu(pc, dg, T, ff, dout);
        if (!rc) rc = pvc_d2h(pc, h, dout, 2 * (size_t)T * ff);
        if (rc) check(0, "swiglu", "rc %d: %s", rc, pvc_last_error());
        else {
            half_to_f(h, got, (size_t)T * ff);
            REPORT("swiglu (half out)", got, ref, (size_t)T * ff, 1e-3, 2e-3);
        }
        /* bias: y rows of ld = 2ff, first ff get b */
        float *b = malloc(sizeof(float) * ff), *y = malloc(sizeof(float) * T * 2 * ff);
        fill(r, b, ff, 1.f);
        memcpy(y, gu, sizeof(float) * T * 2 * ff);
        for (int t = 0; t < T; t++) ko_add(y + (size_t)t * 2 * ff, b, ff);
        void *db = gpu_up(pc, b, 4 * (size_t)ff);
        rc = pvc_add_bias(pc, dg, 2 * ff, db, T, ff);
        float *yg = malloc(sizeof(float) * T * 2 * ff);
        if (!rc) rc = pvc_d2h(pc, yg, dg, 4 * (size_t)T * 2 * ff);
        if (rc) check(0, "add_bias", "rc %d: %s", rc, pvc_last_error());
        else REPORT("add_bias (strided rows)", yg, y, (size_t)T * 2 * ff, 1e-6, 1e-6);
        pvc_free(pc, dg), pvc_free(pc, dout), pvc_free(pc, db);
        free(gu), free(ref), free(got), free(h), free(b), free(y), free(yg);
    }
    /* argmax, with a planted tie (the lower index must win) */
    {
        int rows = 5, n = 128256;
        float *x = malloc(sizeof(float) * rows * n);
        fill(r, x, (size_t)rows * n, 10.f);
        x[2 * (size_t)n + 777] = 50.f;
        x[2 * (size_t)n + 90000] = 50.f;
        int32_t got[5], ref[5];
        for (int i = 0; i < rows; i++) {
            int b = 0;
            for (int j = 1; j < n; j++)
                if (x[(size_t)i * n + j] > x[(size_t)i * n + b]) b = j;
            ref[i] = b;
        }
        void *dx = gpu_up(pc, x, 4 * (size_t)rows * n), *dg = gpu_up(pc, NULL, sizeof got);
        int rc = pvc_argmax(pc, dx, rows, n, dg);
        if (!rc) rc = pvc_d2h(pc, got, dg, sizeof got);
        int ok = !rc && !memcmp(got, ref, sizeof got);
        check(ok, "argmax 5 x 128256 (exact, tie -> lowest)", "rc %d, row2 %d (want %d)", rc, got[2], ref[2]);
        pvc_free(pc, dx), pvc_free(pc, dg);
        free(x);
    }
    /* in-place synthetic weights == host generator, bit for bit */
    {
        size_t n = (size_t)1 << 20;
        uint16_t *h = malloc(2 * n), *g = malloc(2 * n);
        float sc = sqrtf(3.0f / 4096.0f);
        for (size_t i = 0; i < n; i++) h[i] = kq_fp32_to_fp16(pvsyn_value(42, pvsyn_tensor(3, PVSYN_UP), i, sc));
        void *d = gpu_up(pc, NULL, 2 * n);
        int rc = pvc_fill_synth(pc, d, n, 42, pvsyn_tensor(3, PVSYN_UP), sc);
        if (!rc) rc = pvc_d2h(pc, g, d, 2 * n);
        check(!rc && !memcmp(g, h, 2 * n), "synthetic fill == host (bit-exact)", "rc %d", rc);
        pvc_free(pc, d);
        free(h), free(g);
    }
    return 0;
}

static int op_matmul(pvc_ctx *pc, rng *r) {
    static const int shapes[][3] = {{1000, 576, 1}, {1000, 576, 3}, {4096, 4096, 1}, {1536, 576, 8},
                                    {1536, 576, 17}, {576, 1536, 64}, {333, 200, 5}};
    static const char *impl_name[] = {"auto", "matvec", "cublas"};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cols = shapes[s][1], T = shapes[s][2];
        float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * T * cols),
              *ref = malloc(sizeof(float) * T * rows), *got = malloc(sizeof(float) * T * rows),
              *y0 = malloc(sizeof(float) * T * rows);
        uint16_t *wh = malloc(2 * (size_t)rows * cols), *xh = malloc(2 * (size_t)T * cols);
        fill(r, w, (size_t)rows * cols, sqrtf(3.f / cols));
        fill(r, x, (size_t)T * cols, 2.f);
        fill(r, y0, (size_t)T * rows, 1.f);
        to_half(w, wh, (size_t)rows * cols);
        to_half(x, xh, (size_t)T * cols);
        round_half(x, (size_t)T * cols); /* the GPU sees half inputs: so does the reference */
        km_weight kw = {.type = KQ_F16, .cols = cols, .rows = rows, .data = wh};
        km_scratch *ks = km_scratch_new();
        km_matmul(NULL, ks, &kw, x, T, ref);
        km_scratch_free(ks);
        void *dw = gpu_up(pc, wh, 2 * (size_t)rows * cols), *dx = gpu_up(pc, xh, 2 * (size_t)T * cols),
             *dy = gpu_up(pc, NULL, 4 * (size_t)T * rows);
        for (int impl = 0; impl < 3; impl++) {
            if (impl == PVC_MM_MATVEC && (T > PVC_MATVEC_MAX_T || cols % 8)) continue;
            for (int acc = 0; acc < 2; acc++) {
                int rc = acc ? pvc_h2d(pc, dy, y0, 4 * (size_t)T * rows) : 0;
                if (!rc) rc = pvc_matmul(pc, dw, rows, cols, dx, T, dy, acc, (pvc_mm_impl)impl);
                if (!rc) rc = pvc_d2h(pc, got, dy, 4 * (size_t)T * rows);
                char nm[80];
                snprintf(nm, sizeof nm, "matmul %s %dx%d T=%d%s", impl_name[impl], rows, cols, T,
                         acc ? " +=" : "");
                if (rc) {
                    check(0, nm, "rc %d: %s", rc, pvc_last_error());
                    continue;
                }
                if (acc)
                    for (size_t i = 0; i < (size_t)T * rows; i++) got[i] -= y0[i];
                /* FP32 accumulation of exact FP16 products on both sides:
                 * only the summation order differs. */
                REPORT(nm, got, ref, (size_t)T * rows, 1e-3, 1e-3);
            }
        }
        pvc_free(pc, dw), pvc_free(pc, dx), pvc_free(pc, dy);
        free(w), free(x), free(ref), free(got), free(y0), free(wh), free(xh);
    }
    return 0;
}

/* RoPE + store and attention for one head shape against ko_rope and the CPU
 * FP16 cache (kv_attend_group). */
static int op_attention(pvc_ctx *pc, rng *r, int n_heads, int n_kv, int hd, int rope_dim, int neox) {
    const int G = n_heads / n_kv, qd = n_heads * hd, kvd = n_kv * hd, ld = qd + 2 * kvd;
    const int n_layers = 2, layer = 1, max_ctx = 2100, n_seqs = 4;
    const int lens[4] = {1, 37, 300, 2048};
    char tag[64];
    snprintf(tag, sizeof tag, "h%d/kv%d/d%d%s%s", n_heads, n_kv, hd, neox ? " neox" : "",
             rope_dim < hd ? " partial" : "");
    pvc_attn_shape as = {.n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd,
                         .rope_dim = rope_dim, .rope_neox = neox, .rope_base = 10000.f};
    size_t kvb = (size_t)n_seqs * n_layers * kvd * max_ctx * 2;
    pvc_kv_fp16 kv = {.max_seqs = n_seqs, .n_layers = n_layers, .n_kv_heads = n_kv, .head_dim = hd,
                      .max_ctx = max_ctx};
    kv.k = gpu_up(pc, NULL, kvb);
    kv.v = gpu_up(pc, NULL, kvb);
    kv_shape ks = {.n_layers = n_layers, .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd,
                   .max_seqs = n_seqs, .max_ctx = max_ctx, .n_threads = 1};
    kv_cache *cpu = NULL;
    if (!kv.k || !kv.v || kv_create_fp16(&ks, &cpu)) {
        check(0, tag, "setup failed: %s", pvc_last_error());
        return 1;
    }
    /* 1) rope_store on a few rows: rotated q in place, k/v into the cache. */
    {
        int T = 4, pos[4] = {0, 1, 777, 2047}, seq[4] = {0, 1, 2, 3};
        float *qkv = malloc(sizeof(float) * T * ld), *ref = malloc(sizeof(float) * T * ld),
              *got = malloc(sizeof(float) * T * ld);
        fill(r, qkv, (size_t)T * ld, 1.f);
        memcpy(ref, qkv, sizeof(float) * T * ld);
        for (int t = 0; t < T; t++) {
            ko_rope(ref + (size_t)t * ld, n_heads, hd, rope_dim, pos[t], 10000.f, neox);
            ko_rope(ref + (size_t)t * ld + qd, n_kv, hd, rope_dim, pos[t], 10000.f, neox);
        }
        void *dq = gpu_up(pc, qkv, 4 * (size_t)T * ld), *dp = gpu_up(pc, pos, sizeof pos), *ds = gpu_up(pc, seq, sizeof seq);
        int rc = pvc_rope_store(pc, dq, ld, T, &as, dp, ds, &kv, layer);
        if (!rc) rc = pvc_d2h(pc, got, dq, 4 * (size_t)T * ld);
        char nm[96];
        snprintf(nm, sizeof nm, "rope %s (q,k f32)", tag);
        if (rc) check(0, nm, "rc %d: %s", rc, pvc_last_error());
        else REPORT(nm, got, ref, (size_t)T * ld, 1e-5, 1e-5); /* v untouched */
        /* the cache holds half(rotated k) and half(v) at (seq, layer, pos) */
        uint16_t *h = malloc(2 * (size_t)hd);
        float *cg = malloc(sizeof(float) * T * 2 * kvd), *cr = malloc(sizeof(float) * T * 2 * kvd);
        for (int t = 0; !rc && t < T; t++)
            for (int kvsel = 0; kvsel < 2 && !rc; kvsel++)
                for (int hh = 0; hh < n_kv && !rc; hh++) {
                    size_t o = ((((size_t)seq[t] * n_layers + layer) * n_kv + hh) * max_ctx + pos[t]) * hd;
                    rc = pvc_d2h(pc, h, (kvsel ? kv.v : kv.k) + o, 2 * (size_t)hd);
                    float *dst = cg + ((size_t)t * 2 + kvsel) * kvd + (size_t)hh * hd;
                    half_to_f(h, dst, hd);
                    const float *src = ref + (size_t)t * ld + qd + (size_t)kvsel * kvd + (size_t)hh * hd;
                    memcpy(cr + ((size_t)t * 2 + kvsel) * kvd + (size_t)hh * hd, src, sizeof(float) * hd);
                }
        snprintf(nm, sizeof nm, "kv store %s (half)", tag);
        if (rc) check(0, nm, "rc %d: %s", rc, pvc_last_error());
        else REPORT(nm, cg, cr, (size_t)T * 2 * kvd, 1e-4, 1e-3);
        pvc_free(pc, dq), pvc_free(pc, dp), pvc_free(pc, ds);
        free(qkv), free(ref), free(got), free(h), free(cg), free(cr);
    }
    /* 2) attention: the same random K/V in both caches, decode rows for every
     *    sequence plus a 48-row prefill chunk at the end of the longest. */
    int rc = 0;
    for (int s = 0; s < n_seqs && !rc; s++) {
        size_t cnt = (size_t)lens[s] * kvd;
        float *k = malloc(sizeof(float) * cnt), *v = malloc(sizeof(float) * cnt);
        uint16_t *hk = malloc(2 * cnt), *hv = malloc(2 * cnt);
        for (int l = 0; l < n_layers && !rc; l++) {
            fill(r, k, cnt, 1.f);
            fill(r, v, cnt, 1.f);
            round_half(k, cnt);
            round_half(v, cnt);
            rc = kv_store(cpu, s, l, 0, lens[s], k, v);
            /* GPU layout: [seq][layer][head][pos][hd] */
            for (int hh = 0; hh < n_kv && !rc; hh++) {
                for (int t = 0; t < lens[s]; t++) {
                    to_half(k + (size_t)t * kvd + (size_t)hh * hd, hk + (size_t)t * hd, hd);
                    to_half(v + (size_t)t * kvd + (size_t)hh * hd, hv + (size_t)t * hd, hd);
                }
                size_t o = (((size_t)s * n_layers + l) * n_kv + hh) * max_ctx * hd;
                rc = pvc_h2d(pc, kv.k + o, hk, 2 * (size_t)lens[s] * hd);
                if (!rc) rc = pvc_h2d(pc, kv.v + o, hv, 2 * (size_t)lens[s] * hd);
                if (!rc) rc = pvc_sync(pc);
            }
        }
        free(k), free(v), free(hk), free(hv);
    }
    const int PF = 48, T = n_seqs + PF;
    int pos[4 + 48], seq[4 + 48];
    for (int s = 0; s < n_seqs; s++) pos[s] = lens[s] - 1, seq[s] = s;
    for (int i = 0; i < PF; i++) pos[n_seqs + i] = lens[3] - PF + i, seq[n_seqs + i] = 3;
    float *qkv = malloc(sizeof(float) * T * ld), *ref = malloc(sizeof(float) * T * qd),
          *got = malloc(sizeof(float) * T * qd), *lref = malloc(sizeof(float) * T * n_heads),
          *lgot = malloc(sizeof(float) * T * n_heads), *qrow = malloc(sizeof(float) * PF * qd);
    uint16_t *oh = malloc(2 * (size_t)T * qd);
    fill(r, qkv, (size_t)T * ld, 8.f); /* large enough that softmax is peaked */
    for (int t = 0; t < n_seqs && !rc; t++) /* decode rows: one query each */
        for (int hh = 0; hh < n_kv && !rc; hh++)
            rc = kv_attend_group(cpu, seq[t], layer, hh, pos[t], 1, qkv + (size_t)t * ld,
                                 ref + (size_t)t * qd, 0);
    for (int i = 0; i < PF; i++) memcpy(qrow + (size_t)i * qd, qkv + (size_t)(n_seqs + i) * ld, sizeof(float) * qd);
    for (int hh = 0; hh < n_kv && !rc; hh++)
        rc = kv_attend_group(cpu, 3, layer, hh, pos[n_seqs], PF, qrow, ref + (size_t)n_seqs * qd, 0);
    /* log-sum-exp reference in double over the half keys the GPU holds */
    uint16_t *kall = malloc(kvb);
    if (!rc) rc = pvc_d2h(pc, kall, kv.k, kvb);
    for (int t = 0; t < T && !rc; t++)
        for (int h = 0; h < n_heads && !rc; h++) {
            int hh = h / G;
            double mx = -INFINITY, sum = 0;
            double *sc = malloc(sizeof(double) * (pos[t] + 1));
            for (int j = 0; j <= pos[t]; j++) {
                size_t o = ((((size_t)seq[t] * n_layers + layer) * n_kv + hh) * max_ctx + j) * hd;
                const uint16_t *kr = kall + o;
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)qkv[(size_t)t * ld + (size_t)h * hd + i] * kq_fp16_to_fp32(kr[i]);
                sc[j] = d / sqrt((double)hd);
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = 0; j <= pos[t]; j++) sum += exp(sc[j] - mx);
            lref[(size_t)t * n_heads + h] = (float)(mx + log(sum));
            free(sc);
        }
    free(kall);
    void *dq = gpu_up(pc, qkv, 4 * (size_t)T * ld), *dp = gpu_up(pc, pos, sizeof(int) * T),
         *ds = gpu_up(pc, seq, sizeof(int) * T), *dout = gpu_up(pc, NULL, 2 * (size_t)T * qd),
         *dl = gpu_up(pc, NULL, 4 * (size_t)T * n_heads);
    size_t pf = pvc_attention_part_floats(&as, T);
    float *part = gpu_up(pc, NULL, 4 * pf);
    /* Two scratch sizes: the normal one (many splits) and one that forces a
     * single split, so one block walks all 2048 keys tile by tile. */
    size_t sizes[2] = {pf, (size_t)T * n_heads * (hd + 2)};
    for (int v = 0; v < 2; v++) {
        char nm[96];
        snprintf(nm, sizeof nm, "attention %s%s", tag, v ? " 1 split" : "");
        int arc = rc ? rc : pvc_attention(pc, dq, ld, T, &as, dp, ds, &kv, layer, lens[3], part, sizes[v], dout, dl);
        if (!arc) arc = pvc_d2h(pc, oh, dout, 2 * (size_t)T * qd);
        if (!arc) arc = pvc_d2h(pc, lgot, dl, 4 * (size_t)T * n_heads);
        if (arc) {
            check(0, nm, "rc %d: %s", arc, pvc_last_error());
            continue;
        }
        half_to_f(oh, got, (size_t)T * qd);
        REPORT(nm, got, ref, (size_t)T * qd, 2e-3, 2e-3);
        snprintf(nm, sizeof nm, "attention lse %s%s", tag, v ? " 1 split" : "");
        REPORT(nm, lgot, lref, (size_t)T * n_heads, 1e-3, 1e-4);
    }
    pvc_free(pc, dq), pvc_free(pc, dp), pvc_free(pc, ds), pvc_free(pc, dout), pvc_free(pc, dl);
    pvc_free(pc, part), pvc_free(pc, kv.k), pvc_free(pc, kv.v);
    free(qkv), free(ref), free(got), free(lref), free(lgot), free(qrow), free(oh);
    kv_destroy(cpu);
    return rc;
}

int run_ops(pvc_ctx *pc) {
    rng r = {.s = (uint64_t)time(NULL)}; /* fresh inputs every run */
    printf("\n== ops vs CPU (seed %llu) ==\n", (unsigned long long)r.s);
    op_small(pc, &r);
    op_matmul(pc, &r);
    op_attention(pc, &r, 9, 3, 64, 64, 0);     /* SmolLM2: GQA 3, normal RoPE */
    op_attention(pc, &r, 32, 8, 128, 128, 0);  /* Llama-3-8B */
    op_attention(pc, &r, 14, 2, 64, 64, 1);    /* qwen2-like: group 7, NEOX */
    op_attention(pc, &r, 8, 8, 128, 64, 1);    /* MHA, partial rotation */
    run_ops_mixed(pc, &r);                     /* gpu_mixed.c */
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *tsv_path = NULL, *only = NULL;
    int skip_bench = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--tsv") && i + 1 < argc) tsv_path = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--skip-bench")) skip_bench = 1;
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: gpu_check [--model PATH] [--tsv FILE] [--skip-bench] [--quick] [--only ops|e2e|bench]\n");
            return 2;
        }
    }
    if (tsv_path && !(g_tsv = fopen(tsv_path, "w"))) fprintf(stderr, "gpu_check: cannot write %s\n", tsv_path);
    char why[256] = "";
    int n = pvdev_cuda_count(why, sizeof why);
    if (n <= 0) {
        printf("SKIP  no usable CUDA device (%s): every GPU check skipped\n", why);
        tsv("gpu", "none (%s)", why);
        return 3;
    }
    char name[256] = "";
    pvdev_cuda_name(0, name, sizeof name);
    pvc_ctx *pc = NULL;
    if (pvc_create(0, &pc, why, sizeof why)) {
        printf("FAIL  cannot initialise GPU 0 (%s): %s\n", name, why);
        return 1;
    }
    size_t fr = 0, tot = 0;
    pvc_mem_info(pc, &fr, &tot);
    printf("gpu 0: %s, %d SMs, %.1f GiB (%.1f free)\n", name, pvc_sm_count(pc), tot / 1073741824.0, fr / 1073741824.0);
    tsv("gpu", "%s (%d SMs, %.0f GiB)", name, pvc_sm_count(pc), tot / 1073741824.0);
    double t0 = now_s();
    if (!only || !strcmp(only, "ops")) run_ops(pc);
    pvc_destroy(pc);
    printf("ops: %.1f s\n", now_s() - t0);
    if (!only || !strcmp(only, "e2e")) {
        run_e2e_synthetic();
        const char *p = model ? model : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
        FILE *f = fopen(p, "rb");
        if (f) {
            fclose(f);
            run_e2e_model(p);
        } else {
            printf("SKIP  end-to-end on the real model: %s not present\n", p);
        }
    }
    if (!skip_bench && (!only || !strcmp(only, "bench"))) run_bench(quick);
    printf("\ngpu_check: %d passed, %d failed\n", g_passed, g_failed);
    tsv("checks", "%d passed, %d failed", g_passed, g_failed);
    if (g_tsv) fclose(g_tsv);
    return g_failed ? 1 : 0;
}
