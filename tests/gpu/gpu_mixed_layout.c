/* The layouts the mixed cache's kernels (kernels/cuda/kv_mixed.cu) share
 * with the CPU cache, run through the kernels themselves (on a GPU by
 * gpu_check, on the CPU by tests/gpu/emu):
 *   quantizer     for every head_dim 64/128/256, group 8..128 and 2/4 bits,
 *                 40 vectors (tiny, large and ordinary amplitudes, a
 *                 constant group: scale 0): the demotion's records (codes
 *                 and the scale | zero << 16 words) == kvq_encode of the
 *                 same values bit for bit; the attention over that one
 *                 low-tier record (mx_deq8) returns kvq_decode's values
 *                 (to the fp16 of its output), and its log-sum-exp is the
 *                 key's score through 1/b;
 *   victim choice 300 demotions of 1..300 high-tier tokens with many tied
 *                 scores, sinks 0..3, recent 0..8: the victims == kvt_pick's
 *                 (count and which), written to the low tier in slot order
 *                 after the existing records, the survivors compacted in
 *                 position order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "kv_layout.h"
#include "kv_quant.h"
#include "kv_tracker.h"
#include "pverr.h"
#include "quant.h"

#define QL_TRIALS 40 /* vectors per quantizer configuration: one sequence slot each */

static pvc_kv_mixed ql_kv(int max_seqs, int hd, int group, int kb, int vb, int sel, int hi_cap,
                          int lo_cap) {
    return (pvc_kv_mixed){.max_seqs = max_seqs, .n_layers = 1, .n_kv_heads = 1, .head_dim = hd,
                          .hi_cap = hi_cap, .lo_cap = lo_cap, .lo_kbits = kb, .lo_vbits = vb,
                          .group = group, .select = sel, .balance = 1, .window = 6};
}

/* Trial t's key and value (fp16) and balance factors: amplitudes 1e-3, 300
 * and 2 in turn, the first group constant (b = 1 there) every 7th. */
static void ql_inputs(rng *r, int t, int hd, int group, uint16_t *k, uint16_t *v, float *b) {
    float amp = t % 5 == 0 ? 1e-3f : t % 5 == 1 ? 300.f : 2.f;
    for (int c = 0; c < hd; c++) {
        k[c] = kq_fp32_to_fp16(amp * rng_uniform(r));
        v[c] = kq_fp32_to_fp16(amp * rng_uniform(r));
        b[c] = 0.5f + (rng_uniform(r) + 1.f) * 0.75f;
        if (t % 7 == 0 && c < group) k[c] = v[c] = kq_fp32_to_fp16(0.5f), b[c] = 1.f;
    }
}

/* What the demotion left in the low tier, and the attention's output and lse. */
typedef struct {
    uint8_t *lk, *lv;
    uint32_t *lks, *lvs;
    uint16_t *out;
    float *lse;
} ql_got;

/* Demotes every trial's single token (sinks 0, recent 0: all candidates),
 * then attends one query row per trial over a high-tier key far below the
 * low-tier one, so the output is the low-tier value alone. */
static int ql_run(pvc_ctx *pc, pvc_kv_mixed *kv, const uint16_t *hk, const uint16_t *hv,
                  const float *bal, ql_got *g) {
    const int n = kv->max_seqs, hd = kv->head_dim, ld = 3 * hd;
    const size_t nbk = (size_t)hd * kv->lo_kbits / 8, nbv = (size_t)hd * kv->lo_vbits / 8,
                 ng = (size_t)(hd / kv->group);
    int32_t dem[QL_TRIALS * PVC_MXD_STRIDE] = {0}, seq[QL_TRIALS], hslot[QL_TRIALS],
                                           nlo[QL_TRIALS], pos0[QL_TRIALS] = {0};
    uint32_t st0[2 * QL_TRIALS] = {0};
    for (int s = 0; s < n; s++) {
        int32_t *d = dem + s * PVC_MXD_STRIDE;
        d[PVC_MXD_SEQ] = s, d[PVC_MXD_K] = 1, d[PVC_MXD_LEN] = 1, d[PVC_MXD_STEPS] = 1;
        d[PVC_MXD_HI] = 1, d[PVC_MXD_LO] = 0;
        seq[s] = s, hslot[s] = 0, nlo[s] = 1;
    }
    int rc = pvc_h2d(pc, kv->hk, hk, 2 * (size_t)n * hd);
    if (!rc) rc = pvc_h2d(pc, kv->hv, hv, 2 * (size_t)n * hd);
    if (!rc) rc = pvc_h2d(pc, kv->hpos, pos0, 4 * (size_t)n);
    if (!rc) rc = pvc_h2d(pc, kv->hst, st0, 8 * (size_t)n);
    if (!rc) rc = pvc_h2d(pc, kv->bal, bal, sizeof(float) * 3 * hd * n);
    void *dd = rc ? NULL : gpu_up(pc, dem, sizeof(int32_t) * PVC_MXD_STRIDE * n);
    if (!rc && !dd) rc = PV_ENOMEM;
    if (!rc) rc = pvc_mixed_demote(pc, kv, dd, n);
    if (!rc) rc = pvc_sync(pc);
    if (!rc) rc = pvc_d2h(pc, g->lk, kv->lk, nbk * n);
    if (!rc) rc = pvc_d2h(pc, g->lv, kv->lv, nbv * n);
    if (!rc) rc = pvc_d2h(pc, g->lks, kv->lksz, 4 * ng * n);
    if (!rc) rc = pvc_d2h(pc, g->lvs, kv->lvsz, 4 * ng * n);
    pvc_free(pc, dd);
    if (rc) return rc;
    /* the high tier is empty now; slot 0 becomes the row's own key: q = 1,
     * k = -60000 puts its score >= 8 * 60000 below the low key's */
    uint16_t *far = malloc(2 * (size_t)n * hd);
    float *qkv = malloc(sizeof(float) * n * ld);
    for (int i = 0; i < n * hd; i++) far[i] = kq_fp32_to_fp16(-60000.f);
    for (int i = 0; i < n * ld; i++) qkv[i] = 1.f;
    rc = pvc_h2d(pc, kv->hk, far, 2 * (size_t)n * hd);
    if (!rc) rc = pvc_memset(pc, kv->hv, 0, 2 * (size_t)n * hd);
    pvc_attn_shape as = {.n_heads = 1, .n_kv_heads = 1, .head_dim = hd, .rope_dim = hd,
                         .rope_base = 10000.f};
    size_t part_floats = pvc_attention_part_floats(&as, n);
    void *dq = gpu_up(pc, qkv, sizeof(float) * n * ld), *ds = gpu_up(pc, seq, 4 * (size_t)n),
         *dh = gpu_up(pc, hslot, 4 * (size_t)n), *dn = gpu_up(pc, nlo, 4 * (size_t)n),
         *dpart = gpu_up(pc, NULL, 4 * part_floats), *dout = gpu_up(pc, NULL, 2 * (size_t)n * hd),
         *dlse = gpu_up(pc, NULL, 4 * (size_t)n);
    if (!rc && (!dq || !ds || !dh || !dn || !dpart || !dout || !dlse)) rc = PV_ENOMEM;
    if (!rc)
        rc = pvc_mixed_attention(pc, dq, ld, n, &as, ds, dh, dn, kv, 0, 2, dpart, part_floats, dout,
                                 dlse);
    if (!rc) rc = pvc_sync(pc);
    if (!rc) rc = pvc_d2h(pc, g->out, dout, 2 * (size_t)n * hd);
    if (!rc) rc = pvc_d2h(pc, g->lse, dlse, 4 * (size_t)n);
    void *dv[] = {dq, ds, dh, dn, dpart, dout, dlse};
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) pvc_free(pc, dv[i]);
    free(far), free(qkv);
    return rc;
}

static void quant_case(pvc_ctx *pc, rng *r, int hd, int group, int bits) {
    char nm[96];
    snprintf(nm, sizeof nm, "mixed quantizer layout d%d g%d %d-bit", hd, group, bits);
    const int n = QL_TRIALS, ng = hd / group, nb = hd * bits / 8;
    pvc_kv_mixed kv = ql_kv(n, hd, group, bits, bits, KV_SELECT_PERSISTENCE, 1, 1);
    uint16_t *hk = malloc(2 * (size_t)n * hd), *hv = malloc(2 * (size_t)n * hd);
    float *bal = calloc((size_t)n * 3 * hd, sizeof(float));
    for (int t = 0; t < n; t++)
        ql_inputs(r, t, hd, group, hk + (size_t)t * hd, hv + (size_t)t * hd, bal + (size_t)t * 3 * hd);
    ql_got g = {malloc((size_t)nb * n), malloc((size_t)nb * n), malloc(4 * (size_t)ng * n),
                malloc(4 * (size_t)ng * n), malloc(2 * (size_t)n * hd), malloc(4 * (size_t)n)};
    int rc = pvc_mixed_alloc(pc, &kv);
    if (!rc) rc = ql_run(pc, &kv, hk, hv, bal, &g);
    if (rc) {
        check(0, nm, "rc %d: %s", rc, pvc_last_error());
    } else {
        int rec_bad = 0, dec_bad = 0;
        double lse_worst = 0;
        uint8_t rec[1024];
        for (int t = 0; t < n; t++) {
            const float *b = bal + (size_t)t * 3 * hd;
            float x[256], dk[256], dv[256];
            /* the key as the demotion quantizes it: K * b */
            for (int c = 0; c < hd; c++) x[c] = kq_fp16_to_fp32(hk[(size_t)t * hd + c]) * b[c];
            kvq_encode(x, hd, bits, group, rec);
            rec_bad += memcmp(rec, g.lk + (size_t)t * nb, nb) || memcmp(rec + nb, g.lks + (size_t)t * ng, 4 * ng);
            kvq_decode(rec, hd, bits, group, dk);
            for (int c = 0; c < hd; c++) x[c] = kq_fp16_to_fp32(hv[(size_t)t * hd + c]);
            kvq_encode(x, hd, bits, group, rec);
            rec_bad += memcmp(rec, g.lv + (size_t)t * nb, nb) || memcmp(rec + nb, g.lvs + (size_t)t * ng, 4 * ng);
            kvq_decode(rec, hd, bits, group, dv);
            double sc = 0, mag = 0;
            for (int c = 0; c < hd; c++) {
                dec_bad += g.out[(size_t)t * hd + c] != kq_fp32_to_fp16(dv[c]);
                sc += (double)dk[c] * (1.0f / b[c]) / sqrt((double)hd);
                mag += fabs((double)dk[c] / b[c]) / sqrt((double)hd);
            }
            double e = fabs(g.lse[t] - sc) / (1e-6 + 1e-4 * mag);
            if (!(e == e)) e = INFINITY;
            if (e > lse_worst) lse_worst = e;
        }
        int size_ok = kvl_rec_bytes(bits, hd, group) == (size_t)nb + 4 * (size_t)ng;
        check(size_ok && !rec_bad && !dec_bad && lse_worst <= 1.0, nm,
              "%d vectors: %d records differ from kvq_encode (bit-exact), %d decoded values differ "
              "from kvq_decode (fp16 of the output), lse worst %.3g of tol, record size %s",
              n, rec_bad, dec_bad, lse_worst, size_ok ? "as kvl_rec_bytes" : "DIFFERS");
    }
    pvc_mixed_free(pc, &kv);
    free(hk), free(hv), free(bal), free(g.lk), free(g.lv), free(g.lks), free(g.lvs), free(g.out),
        free(g.lse);
}

/* ---- victim choice ---- */
#define VC_MAX 300
#define VC_LO0 5 /* low-tier records before the demotion */
#define VC_HD 64

typedef struct {
    int nhi, len, want, k;   /* high tokens, length, asked (clipped), kvt_pick's count */
    int32_t pos[VC_MAX];
    uint32_t st[2 * VC_MAX]; /* tracker states holding the scores */
    int vict[VC_MAX];        /* kvt_pick's victims, in slot order */
} vc_trial;

/* Trial t's inputs: sinks t % 4, recent t % 9, t + 1 tokens at distinct
 * increasing positions, few distinct scores; and kvt_pick's answer over the
 * unprotected ones at tracker clock `steps`. */
static void vc_make(rng *r, int t, pvc_kv_mixed *kv, int steps, vc_trial *v) {
    static unsigned char scratch[VC_MAX * 16];
    int cand[VC_MAX], nc = 0;
    float csc[VC_MAX];
    int32_t cpos[VC_MAX];
    v->nhi = 1 + t % VC_MAX;
    kv->sinks = t % 4, kv->recent = t % 9;
    kv->select = t % 2 ? KV_SELECT_ACCUMULATED : KV_SELECT_PERSISTENCE;
    for (int i = 0, p = 0; i < v->nhi; i++) {
        v->pos[i] = p;
        p += 1 + (rng_uniform(r) > 0.f);
    }
    v->len = v->pos[v->nhi - 1] + 1 + kv->recent;
    for (int i = 0; i < v->nhi; i++) {
        int s = (int)((rng_uniform(r) + 1) * (t % 3 ? 3 : 50));
        float sum = (float)s; /* accumulated: the sum over queries since step 0 */
        if (kv->select == KV_SELECT_PERSISTENCE) v->st[2 * i] = (uint32_t)s;
        else memcpy(&v->st[2 * i], &sum, 4);
        v->st[2 * i + 1] = 0;
        if (v->pos[i] < kv->sinks || v->pos[i] >= v->len - kv->recent) continue;
        kvt_persist ps = {(uint16_t)(v->st[2 * i] & 0xffff), (uint16_t)(v->st[2 * i] >> 16)};
        kvt_accum ac = {.sum = sum, .first = 0};
        uint8_t st[8];
        if (kv->select == KV_SELECT_PERSISTENCE) memcpy(st, &ps, 4);
        else memcpy(st, &ac, 8);
        cand[nc] = i, cpos[nc] = v->pos[i], csc[nc] = kvt_demote_score(kv->select, st, steps), nc++;
    }
    int want = (int)((rng_uniform(r) + 1) * 0.5f * (v->nhi + 2));
    v->k = kvt_pick(cand, csc, cpos, nc, want, v->vict, scratch);
    v->want = want < nc ? want : nc; /* the clipped count the host hands the kernel */
}

/* One demotion on the device; mismatches against the trial's answer. */
static int vc_run(pvc_ctx *pc, const pvc_kv_mixed *kv, const vc_trial *v, int steps,
                  const uint16_t *hk, const uint16_t *hv, int *bad) {
    const size_t hd = VC_HD, nb = hd * 2 / 8, ng = hd / 32;
    int32_t dem[PVC_MXD_STRIDE] = {0};
    dem[PVC_MXD_K] = v->want, dem[PVC_MXD_LEN] = v->len, dem[PVC_MXD_STEPS] = steps;
    dem[PVC_MXD_HI] = v->nhi, dem[PVC_MXD_LO] = VC_LO0;
    int rc = pvc_h2d(pc, kv->hk, hk, 2 * VC_MAX * hd);
    if (!rc) rc = pvc_h2d(pc, kv->hv, hv, 2 * VC_MAX * hd);
    if (!rc) rc = pvc_h2d(pc, kv->hpos, v->pos, 4 * (size_t)v->nhi);
    if (!rc) rc = pvc_h2d(pc, kv->hst, v->st, 8 * (size_t)v->nhi);
    void *dd = rc ? NULL : gpu_up(pc, dem, sizeof dem);
    if (!rc && !dd) rc = PV_ENOMEM;
    if (!rc) rc = pvc_mixed_demote(pc, kv, dd, 1);
    if (!rc) rc = pvc_sync(pc);
    pvc_free(pc, dd);
    int32_t gp[VC_MAX];
    static uint16_t gk[VC_MAX * VC_HD];
    static uint8_t lk[(VC_LO0 + VC_MAX) * VC_HD / 4], lv[(VC_LO0 + VC_MAX) * VC_HD / 4];
    static uint32_t lks[(VC_LO0 + VC_MAX) * 2], lvs[(VC_LO0 + VC_MAX) * 2];
    const size_t nlo = VC_LO0 + (size_t)v->k;
    if (!rc) rc = pvc_d2h(pc, gp, kv->hpos, 4 * (size_t)v->nhi);
    if (!rc) rc = pvc_d2h(pc, gk, kv->hk, 2 * hd * v->nhi);
    if (!rc && v->k) rc = pvc_d2h(pc, lk, kv->lk, nb * nlo);
    if (!rc && v->k) rc = pvc_d2h(pc, lv, kv->lv, nb * nlo);
    if (!rc && v->k) rc = pvc_d2h(pc, lks, kv->lksz, 4 * ng * nlo);
    if (!rc && v->k) rc = pvc_d2h(pc, lvs, kv->lvsz, 4 * ng * nlo);
    if (rc) return rc;
    *bad += v->k != v->want; /* kvt_pick takes exactly the clipped count */
    uint8_t rec[64];
    float x[VC_HD];
    for (int j = 0; j < v->k; j++) { /* victims in slot order after the old records */
        const size_t t = (size_t)v->vict[j], slot = VC_LO0 + (size_t)j;
        for (size_t c = 0; c < hd; c++) x[c] = kq_fp16_to_fp32(hk[t * hd + c]);
        kvq_encode(x, (int)hd, 2, 32, rec);
        *bad += memcmp(rec, lk + slot * nb, nb) || memcmp(rec + nb, lks + slot * ng, 4 * ng);
        for (size_t c = 0; c < hd; c++) x[c] = kq_fp16_to_fp32(hv[t * hd + c]);
        kvq_encode(x, (int)hd, 2, 32, rec);
        *bad += memcmp(rec, lv + slot * nb, nb) || memcmp(rec + nb, lvs + slot * ng, 4 * ng);
    }
    for (int t = 0, j = 0, w = 0; t < v->nhi; t++) { /* survivors in position order */
        if (j < v->k && v->vict[j] == t) {
            j++;
            continue;
        }
        *bad += gp[w] != v->pos[t] || memcmp(gk + (size_t)w * hd, hk + (size_t)t * hd, 2 * hd);
        w++;
    }
    return 0;
}

static void victim_cases(pvc_ctx *pc, rng *r) {
    const int steps = 1;
    pvc_kv_mixed kv = ql_kv(1, VC_HD, 32, 2, 2, KV_SELECT_PERSISTENCE, VC_MAX, VC_LO0 + VC_MAX);
    uint16_t *hk = malloc(2 * (size_t)VC_MAX * VC_HD), *hv = malloc(2 * (size_t)VC_MAX * VC_HD);
    vc_trial *v = malloc(sizeof *v);
    for (int i = 0; i < VC_MAX * VC_HD; i++) {
        hk[i] = kq_fp32_to_fp16(rng_uniform(r) * 2.f);
        hv[i] = kq_fp32_to_fp16(rng_uniform(r));
    }
    int rc = pvc_mixed_alloc(pc, &kv);
    if (!rc) rc = pvc_mixed_reset(pc, &kv, 0); /* b = 1: keys quantized as stored */
    int bad[2] = {0, 0}, trials[2] = {0, 0}, victims[2] = {0, 0};
    for (int t = 0; !rc && t < VC_MAX; t++) {
        vc_make(r, t, &kv, steps, v);
        int a = kv.select == KV_SELECT_ACCUMULATED;
        rc = vc_run(pc, &kv, v, steps, hk, hv, &bad[a]);
        trials[a]++, victims[a] += v->k;
    }
    for (int a = 0; a < 2; a++) {
        char nm[96];
        snprintf(nm, sizeof nm, "mixed victim choice vs kvt_pick %s",
                 a ? "accumulated" : "persistence");
        if (rc) check(0, nm, "rc %d: %s", rc, pvc_last_error());
        else
            check(!bad[a] && victims[a] > 0, nm,
                  "%d demotions, %d victims: %d mismatches (count, records in slot order, "
                  "survivors' positions and keys in order)",
                  trials[a], victims[a], bad[a]);
    }
    pvc_mixed_free(pc, &kv);
    free(hk), free(hv), free(v);
}

void run_ops_mixed_layout(pvc_ctx *pc, rng *r) {
    printf("\n== mixed cache layouts (kv_mixed.cu) vs cache/kv_quant.c and kvt_pick ==\n");
    const int hds[] = {64, 128, 256}, groups[] = {8, 32, 64, 128}, bitss[] = {2, 4};
    for (int hi = 0; hi < 3; hi++)
        for (int gi = 0; gi < 4; gi++)
            for (int bi = 0; bi < 2; bi++)
                if (groups[gi] <= hds[hi]) quant_case(pc, r, hds[hi], groups[gi], bitss[bi]);
    victim_cases(pc, r);
}
