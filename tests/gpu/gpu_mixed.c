/* The mixed cache's CUDA ops (kernels/cuda/kv_mixed.cu) against the CPU code
 * on fresh random inputs:
 *   demote     victims = kvt_pick's choice (persistence and accumulated
 *              scores with many ties), codes and scale/zero bytes ==
 *              kvq_encode of the (balanced) FP16 values, bit for bit; the
 *              frozen balance factors == sqrtf(max|q| / max|k|) bit for bit;
 *              the high tier compacted in position order;
 *   post_store positions, tracker init and the balance maxima (exact);
 *   attention  over both tiers vs a double reference over the values the CPU
 *              cache computes with (kvq_decode, keys divided by b), decode
 *              rows and a prefill chunk, GQA 1/4/7, head_dim 64/128;
 *              log-sum-exp vs the reference;
 *   tracker    accumulated sums == the reference's group-mean probabilities;
 *              persistence counters == the reference's below-threshold counts
 *              (tokens within 1e-4 of the threshold not counted either way). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "kv_layout.h"
#include "kv_quant.h"
#include "kv_tracker.h"
#include "pverr.h"
#include "quant.h"

static float h2f(uint16_t h) { return kq_fp16_to_fp32(h); }

typedef struct {
    pvc_kv_mixed kv;
    size_t heads;
    int nbk, nbv, ng;
} mx_t;

static int mx_make(pvc_ctx *pc, mx_t *m, int hd, int n_kv, int group, int kb, int vb, int sel,
                   int hi_cap, int lo_cap) {
    memset(m, 0, sizeof *m);
    m->kv = (pvc_kv_mixed){.max_seqs = 2, .n_layers = 2, .n_kv_heads = n_kv, .head_dim = hd,
                           .hi_cap = hi_cap, .lo_cap = lo_cap, .lo_kbits = kb, .lo_vbits = vb,
                           .group = group, .select = sel, .balance = 1, .sinks = 4,
                           .recent = 8, .window = 6};
    m->heads = (size_t)2 * 2 * n_kv;
    m->nbk = hd * kb / 8;
    m->nbv = hd * vb / 8;
    m->ng = hd / group;
    int rc = pvc_mixed_alloc(pc, &m->kv);
    for (int s = 0; !rc && s < 2; s++) rc = pvc_mixed_reset(pc, &m->kv, s);
    return rc ? rc : pvc_sync(pc);
}

/* ---- demotion ---- */
static void demote_case(pvc_ctx *pc, rng *r, int hd, int group, int kb, int vb, int sel, int freeze) {
    char nm[128];
    snprintf(nm, sizeof nm, "mixed demote d%d g%d %d/%d %s%s", hd, group, kb, vb,
             sel == KV_SELECT_PERSISTENCE ? "persistence" : "accumulated", freeze ? " +freeze" : "");
    const int n_kv = 2, hi_cap = 200, lo_cap = 300, seq = 1, layer = 1, kvh = 1;
    const int nhi = 150, nlo0 = 17, len = 400, steps = 420, k = 61;
    mx_t m;
    if (mx_make(pc, &m, hd, n_kv, group, kb, vb, sel, hi_cap, lo_cap)) {
        check(0, nm, "setup: %s", pvc_last_error());
        pvc_mixed_free(pc, &m.kv);
        return;
    }
    const size_t hh = ((size_t)seq * 2 + layer) * n_kv + kvh;
    /* high tier: random values, increasing positions (sinks 0..3 included,
     * the newest within the recent window), states with many ties */
    uint16_t *hk = malloc(2 * (size_t)hi_cap * hd), *hv = malloc(2 * (size_t)hi_cap * hd);
    int32_t *hp = malloc(4 * (size_t)hi_cap);
    uint32_t *hs = malloc(8 * (size_t)hi_cap);
    float *bal = malloc(sizeof(float) * 3 * hd);
    for (size_t i = 0; i < (size_t)hi_cap * hd; i++) {
        hk[i] = kq_fp32_to_fp16(rng_uniform(r) * ((i % hd) == 5 ? 9.f : 1.5f));
        hv[i] = kq_fp32_to_fp16(rng_uniform(r));
    }
    for (int t = 0, p = 0; t < hi_cap; t++) {
        hp[t] = t < 4 ? t : p;
        p = (t < 4 ? 4 : p) + 1 + rng_int(r, 3);
        if (t == nhi - 9) p = len - 8; /* the last 8 sit in the recent window */
        if (sel == KV_SELECT_PERSISTENCE) {
            hs[2 * t] = (uint32_t)rng_int(r, 4) | (uint32_t)rng_int(r, 3) << 16;
            hs[2 * t + 1] = 0;
        } else {
            float sum = (float)rng_int(r, 5) * 0.25f;
            memcpy(&hs[2 * t], &sum, 4);
            hs[2 * t + 1] = (uint32_t)rng_int(r, 400);
        }
    }
    for (int d = 0; d < hd; d++) {
        bal[d] = 0.5f + (rng_uniform(r) + 1.f);
        bal[hd + d] = d == 7 ? 0.f : fabsf(rng_uniform(r)) * 4; /* a channel never seen: b = 1 */
        bal[2 * hd + d] = fabsf(rng_uniform(r)) * 3 + 0.01f;
    }
    int rc = pvc_h2d(pc, m.kv.hk + hh * hi_cap * hd, hk, 2 * (size_t)hi_cap * hd);
    if (!rc) rc = pvc_h2d(pc, m.kv.hv + hh * hi_cap * hd, hv, 2 * (size_t)hi_cap * hd);
    if (!rc) rc = pvc_h2d(pc, m.kv.hpos + hh * hi_cap, hp, 4 * (size_t)hi_cap);
    if (!rc) rc = pvc_h2d(pc, m.kv.hst + hh * hi_cap * 2, hs, 8 * (size_t)hi_cap);
    if (!rc) rc = pvc_h2d(pc, m.kv.bal + hh * 3 * hd, bal, sizeof(float) * 3 * hd);
    int32_t dem[PVC_MXD_STRIDE] = {0};
    dem[PVC_MXD_SEQ] = seq;
    dem[PVC_MXD_K] = k;
    dem[PVC_MXD_LEN] = len;
    dem[PVC_MXD_STEPS] = steps;
    dem[PVC_MXD_HI] = nhi;
    dem[PVC_MXD_LO] = nlo0;
    dem[PVC_MXD_FREEZE] = freeze;
    void *dd = rc ? NULL : gpu_up(pc, dem, sizeof dem);
    if (!rc && !dd) rc = PV_ENOMEM;
    if (!rc) rc = pvc_mixed_demote(pc, &m.kv, dd, 1);
    if (!rc) rc = pvc_sync(pc);
    if (rc) {
        check(0, nm, "rc %d: %s", rc, pvc_last_error());
    } else {
        /* CPU reference: kvt_pick over the unprotected tokens */
        int cand[200], vict[200], nc = 0;
        float csc[200];
        int32_t cpos[200];
        static unsigned char scratch[200 * 16];
        for (int t = 0; t < nhi; t++) {
            if (hp[t] < 4 || hp[t] >= len - 8) continue;
            kvt_persist ps = {(uint16_t)(hs[2 * t] & 0xffff), (uint16_t)(hs[2 * t] >> 16)};
            kvt_accum ac;
            memcpy(&ac.sum, &hs[2 * t], 4);
            ac.first = (int32_t)hs[2 * t + 1];
            uint8_t st[8];
            if (sel == KV_SELECT_PERSISTENCE) memcpy(st, &ps, 4);
            else memcpy(st, &ac, 8);
            cand[nc] = t, cpos[nc] = hp[t], csc[nc] = kvt_demote_score(sel, st, steps), nc++;
        }
        int kk = kvt_pick(cand, csc, cpos, nc, k, vict, scratch);
        float b[256];
        for (int d = 0; d < hd; d++) {
            float qm = bal[hd + d], km = bal[2 * hd + d];
            float x = qm > 0 && km > 0 ? sqrtf(qm / km) : 1.0f;
            b[d] = freeze ? (isfinite(x) && x > 0 ? x : 1.0f) : bal[d];
        }
        float gb[256];
        rc = pvc_d2h(pc, gb, m.kv.bal + hh * 3 * hd, sizeof(float) * hd);
        int bal_ok = !rc && !memcmp(gb, b, sizeof(float) * hd);
        /* low tier records */
        size_t nbk = (size_t)m.nbk, nbv = (size_t)m.nbv, ng = (size_t)m.ng;
        uint8_t *lk = malloc(nbk * lo_cap), *lv = malloc(nbv * lo_cap), rec[1024];
        uint32_t *lks = malloc(4 * ng * lo_cap), *lvs = malloc(4 * ng * lo_cap);
        if (!rc) rc = pvc_d2h(pc, lk, m.kv.lk + hh * lo_cap * nbk, nbk * lo_cap);
        if (!rc) rc = pvc_d2h(pc, lv, m.kv.lv + hh * lo_cap * nbv, nbv * lo_cap);
        if (!rc) rc = pvc_d2h(pc, lks, m.kv.lksz + hh * lo_cap * ng, 4 * ng * lo_cap);
        if (!rc) rc = pvc_d2h(pc, lvs, m.kv.lvsz + hh * lo_cap * ng, 4 * ng * lo_cap);
        int code_bad = 0, n_bytes = 0;
        for (int i = 0; !rc && i < kk; i++) {
            int t = vict[i], slot = nlo0 + i;
            float x[256];
            for (int d = 0; d < hd; d++) x[d] = h2f(hk[(size_t)t * hd + d]) * b[d];
            kvq_encode(x, hd, kb, group, rec);
            code_bad += memcmp(rec, lk + slot * nbk, nbk) != 0;
            code_bad += memcmp(rec + nbk, lks + slot * ng, 4 * ng) != 0;
            for (int d = 0; d < hd; d++) x[d] = h2f(hv[(size_t)t * hd + d]);
            kvq_encode(x, hd, vb, group, rec);
            code_bad += memcmp(rec, lv + slot * nbv, nbv) != 0;
            code_bad += memcmp(rec + nbv, lvs + slot * ng, 4 * ng) != 0;
            n_bytes += (int)(nbk + nbv + 8 * ng);
        }
        /* high tier: survivors in order */
        uint16_t *gk = malloc(2 * (size_t)hi_cap * hd);
        int32_t *gp = malloc(4 * (size_t)hi_cap);
        if (!rc) rc = pvc_d2h(pc, gk, m.kv.hk + hh * hi_cap * hd, 2 * (size_t)hi_cap * hd);
        if (!rc) rc = pvc_d2h(pc, gp, m.kv.hpos + hh * hi_cap, 4 * (size_t)hi_cap);
        int hi_bad = 0, w = 0;
        for (int t = 0, vi = 0; !rc && t < nhi; t++) {
            if (vi < kk && vict[vi] == t) {
                vi++;
                continue;
            }
            hi_bad += gp[w] != hp[t] || memcmp(gk + (size_t)w * hd, hk + (size_t)t * hd, 2 * (size_t)hd);
            w++;
        }
        /* other heads untouched by this sequence's demotion: layer 0 of seq 0 */
        check(!rc && kk == k && !code_bad && !hi_bad && bal_ok && w == nhi - k, nm,
              "%d victims (want %d), %d record mismatches over %d bytes (bit-exact), %d high-tier "
              "mismatches, balance factors %s",
              kk, k, code_bad, n_bytes, hi_bad, bal_ok ? "bit-exact" : "DIFFER");
        free(lk), free(lv), free(lks), free(lvs), free(gk), free(gp);
    }
    pvc_free(pc, dd);
    free(hk), free(hv), free(hp), free(hs), free(bal);
    pvc_mixed_free(pc, &m.kv);
}

/* ---- post_store + attention + tracker ---- */
static void attn_case(pvc_ctx *pc, rng *r, int n_heads, int n_kv, int hd, int group, int kb, int vb,
                      int sel) {
    const int G = n_heads / n_kv, qd = n_heads * hd, kvd = n_kv * hd, ld = qd + 2 * kvd;
    const int hi_cap = 160, lo_cap = 700, layer = 1;
    /* seq 0: 40 high before the call + a prefill chunk of 24 rows, 650 low;
     * seq 1: one decode row over 100 high + 300 low */
    const int hi0[2] = {40, 99}, nlo[2] = {650, 300}, nrow[2] = {24, 1};
    const int T = nrow[0] + nrow[1];
    char tag[96];
    snprintf(tag, sizeof tag, "h%d/kv%d/d%d g%d %d/%d %s", n_heads, n_kv, hd, group, kb, vb,
             sel == KV_SELECT_PERSISTENCE ? "persist" : "accum");
    mx_t m;
    if (mx_make(pc, &m, hd, n_kv, group, kb, vb, sel, hi_cap, lo_cap)) {
        check(0, tag, "setup: %s", pvc_last_error());
        pvc_mixed_free(pc, &m.kv);
        return;
    }
    size_t nbk = (size_t)m.nbk, nbv = (size_t)m.nbv, ng = (size_t)m.ng;
    /* host images of both sequences' layer-1 heads */
    size_t hn = (size_t)2 * n_kv;
    uint16_t *hk = calloc(hn * hi_cap * hd, 2), *hv = calloc(hn * hi_cap * hd, 2);
    uint8_t *lk = calloc(hn * lo_cap, nbk), *lv = calloc(hn * lo_cap, nbv), rec[1024];
    uint32_t *lks = calloc(hn * lo_cap * ng, 4), *lvs = calloc(hn * lo_cap * ng, 4);
    float *b = malloc(sizeof(float) * hn * 3 * hd);
    float *lkf = malloc(sizeof(float) * hn * lo_cap * hd), *lvf = malloc(sizeof(float) * hn * lo_cap * hd);
    float *qkv = malloc(sizeof(float) * T * ld);
    int32_t pos[64], seqv[64], hslot[64], nlov[64], ent[2 * PVC_MXE_STRIDE] = {0};
    for (int s = 0, row = 0; s < 2; s++) {
        for (int h = 0; h < n_kv; h++) {
            size_t j = (size_t)s * n_kv + h;
            for (int d = 0; d < hd; d++) {
                b[j * 3 * hd + d] = 0.6f + (rng_uniform(r) + 1.f) * 0.7f;
                b[j * 3 * hd + hd + d] = b[j * 3 * hd + 2 * hd + d] = 0.f;
            }
            for (size_t i = 0; i < (size_t)hi0[s] * hd; i++) {
                hk[j * hi_cap * hd + i] = kq_fp32_to_fp16(rng_uniform(r) * 2.f);
                hv[j * hi_cap * hd + i] = kq_fp32_to_fp16(rng_uniform(r));
            }
            for (int t = 0; t < nlo[s]; t++) {
                float x[256];
                for (int d = 0; d < hd; d++) x[d] = rng_uniform(r) * 2.f * b[j * 3 * hd + d];
                kvq_encode(x, hd, kb, group, rec);
                memcpy(lk + (j * lo_cap + t) * nbk, rec, nbk);
                memcpy(lks + (j * lo_cap + t) * ng, rec + nbk, 4 * ng);
                kvq_decode(rec, hd, kb, group, lkf + (j * lo_cap + t) * hd);
                for (int d = 0; d < hd; d++) x[d] = rng_uniform(r);
                kvq_encode(x, hd, vb, group, rec);
                memcpy(lv + (j * lo_cap + t) * nbv, rec, nbv);
                memcpy(lvs + (j * lo_cap + t) * ng, rec + nbv, 4 * ng);
                kvq_decode(rec, hd, vb, group, lvf + (j * lo_cap + t) * hd);
            }
        }
        int32_t *e = ent + s * PVC_MXE_STRIDE;
        e[PVC_MXE_SEQ] = s, e[PVC_MXE_ROW0] = row, e[PVC_MXE_N] = nrow[s], e[PVC_MXE_HI0] = hi0[s];
        e[PVC_MXE_LO] = nlo[s], e[PVC_MXE_STEP0] = 3 + s, e[PVC_MXE_OBSERVE] = 1;
        for (int i = 0; i < nrow[s]; i++, row++) {
            pos[row] = 1000 + hi0[s] + nlo[s] + i;
            seqv[row] = s, hslot[row] = hi0[s] + i, nlov[row] = nlo[s];
        }
    }
    for (int i = 0; i < T * ld; i++) qkv[i] = rng_uniform(r) * 1.5f;
    /* tracker states start at zero (sum 0.0f, counters 0) */
    int rc = pvc_memset(pc, m.kv.hst, 0, m.heads * hi_cap * 8);
    for (int s = 0; s < 2 && !rc; s++)
        for (int h = 0; h < n_kv && !rc; h++) {
            size_t j = (size_t)s * n_kv + h, dh = ((size_t)s * 2 + layer) * n_kv + h;
            rc = pvc_h2d(pc, m.kv.hk + dh * hi_cap * hd, hk + j * hi_cap * hd, 2 * (size_t)hi_cap * hd);
            if (!rc) rc = pvc_h2d(pc, m.kv.hv + dh * hi_cap * hd, hv + j * hi_cap * hd, 2 * (size_t)hi_cap * hd);
            if (!rc) rc = pvc_h2d(pc, m.kv.lk + dh * lo_cap * nbk, lk + j * lo_cap * nbk, nbk * lo_cap);
            if (!rc) rc = pvc_h2d(pc, m.kv.lv + dh * lo_cap * nbv, lv + j * lo_cap * nbv, nbv * lo_cap);
            if (!rc) rc = pvc_h2d(pc, m.kv.lksz + dh * lo_cap * ng, lks + j * lo_cap * ng, 4 * ng * lo_cap);
            if (!rc) rc = pvc_h2d(pc, m.kv.lvsz + dh * lo_cap * ng, lvs + j * lo_cap * ng, 4 * ng * lo_cap);
            if (!rc) rc = pvc_h2d(pc, m.kv.bal + dh * 3 * hd, b + j * 3 * hd, sizeof(float) * 3 * hd);
            if (!rc) rc = pvc_sync(pc);
        }
    pvc_attn_shape as = {.n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd, .rope_dim = hd,
                         .rope_neox = 0, .rope_base = 10000.f};
    pvc_kv_fp16 view = {.k = m.kv.hk, .v = m.kv.hv, .max_seqs = 2, .n_layers = 2, .n_kv_heads = n_kv,
                        .head_dim = hd, .max_ctx = hi_cap};
    size_t part_floats = pvc_attention_part_floats(&as, T);
    void *dq = gpu_up(pc, qkv, sizeof(float) * T * ld), *dp = gpu_up(pc, pos, 4 * T), *ds = gpu_up(pc, seqv, 4 * T),
         *dh = gpu_up(pc, hslot, 4 * T), *dn = gpu_up(pc, nlov, 4 * T), *de = gpu_up(pc, ent, sizeof ent),
         *dpart = gpu_up(pc, NULL, 4 * part_floats), *dout = gpu_up(pc, NULL, 2 * (size_t)T * qd),
         *dlse = gpu_up(pc, NULL, 4 * (size_t)T * n_heads);
    if (!rc && (!dq || !dp || !ds || !dh || !dn || !de || !dpart || !dout || !dlse)) rc = PV_ENOMEM;
    int max_keys = 0;
    for (int t = 0; t < T; t++)
        if (hslot[t] + 1 + nlov[t] > max_keys) max_keys = hslot[t] + 1 + nlov[t];
    if (!rc) rc = pvc_rope_store_slots(pc, dq, ld, T, &as, dp, ds, dh, &view, layer);
    if (!rc) rc = pvc_mixed_post_store(pc, dq, ld, &as, dp, de, 2, &m.kv, layer);
    if (!rc)
        rc = pvc_mixed_attention(pc, dq, ld, T, &as, ds, dh, dn, &m.kv, layer, max_keys, dpart,
                                 part_floats, dout, dlse);
    if (!rc) rc = pvc_mixed_track(pc, dq, ld, &as, de, 2, dlse, &m.kv, layer);
    float *q = malloc(sizeof(float) * T * ld);
    uint16_t *oh = malloc(2 * (size_t)T * qd);
    float *got = malloc(sizeof(float) * T * qd), *ref = malloc(sizeof(float) * T * qd);
    float *lg = malloc(sizeof(float) * T * n_heads), *lr = malloc(sizeof(float) * T * n_heads);
    if (!rc) rc = pvc_d2h(pc, q, dq, sizeof(float) * T * ld); /* rotated q and k */
    if (!rc) rc = pvc_d2h(pc, oh, dout, 2 * (size_t)T * qd);
    if (!rc) rc = pvc_d2h(pc, lg, dlse, 4 * (size_t)T * n_heads);
    char nm[160];
    if (rc) {
        snprintf(nm, sizeof nm, "mixed attention %s", tag);
        check(0, nm, "rc %d: %s", rc, pvc_last_error());
        goto done;
    }
    /* the new tokens as stored (half of the rotated k, v) join the high tier */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_kv; h++) {
            size_t j = (size_t)seqv[t] * n_kv + h;
            for (int d = 0; d < hd; d++) {
                hk[(j * hi_cap + hslot[t]) * hd + d] = kq_fp32_to_fp16(q[(size_t)t * ld + qd + h * hd + d]);
                hv[(j * hi_cap + hslot[t]) * hd + d] = kq_fp32_to_fp16(q[(size_t)t * ld + qd + kvd + h * hd + d]);
            }
        }
    /* reference in double; p[t][h][token] group means for the tracker */
    const int maxk = hi_cap + lo_cap;
    double *sc = malloc(sizeof(double) * maxk), *pm = calloc((size_t)2 * n_kv * hi_cap, sizeof(double));
    /* persistence emulated from the reference probabilities (kvt_observe,
     * kvt_rotate every window/2 = 3 steps); border: p within 1e-4 of the
     * threshold in some row, where float rounding may decide either way */
    int *cur = calloc((size_t)2 * n_kv * hi_cap, sizeof(int)), *prev = calloc((size_t)2 * n_kv * hi_cap, sizeof(int));
    int *border = calloc((size_t)2 * n_kv * hi_cap, sizeof(int));
    for (int t = 0; t < T; t++) {
        for (int hq = 0; hq < n_heads; hq++) {
            int h = hq / G;
            size_t j = (size_t)seqv[t] * n_kv + h;
            const float *qv = q + (size_t)t * ld + (size_t)hq * hd;
            int nh = hslot[t] + 1, nl = nlov[t];
            double mx = -INFINITY;
            for (int i = 0; i < nh + nl; i++) {
                double d = 0;
                for (int c = 0; c < hd; c++) {
                    double kv = i < nh ? h2f(hk[(j * hi_cap + i) * hd + c])
                                       : (double)lkf[(j * lo_cap + i - nh) * hd + c] / b[j * 3 * hd + c];
                    d += (double)qv[c] * kv;
                }
                sc[i] = d / sqrt((double)hd);
                if (sc[i] > mx) mx = sc[i];
            }
            double sum = 0;
            for (int i = 0; i < nh + nl; i++) sum += exp(sc[i] - mx);
            lr[(size_t)t * n_heads + hq] = (float)(mx + log(sum));
            for (int c = 0; c < hd; c++) {
                double o = 0;
                for (int i = 0; i < nh + nl; i++) {
                    double vv = i < nh ? h2f(hv[(j * hi_cap + i) * hd + c]) : lvf[(j * lo_cap + i - nh) * hd + c];
                    o += exp(sc[i] - mx) / sum * vv;
                }
                ref[(size_t)t * qd + (size_t)hq * hd + c] = (float)o;
            }
            for (int i = 0; i < nh; i++) pm[j * hi_cap + i] += exp(sc[i] - mx) / sum / G;
            if (hq % G == G - 1) { /* the group is complete: persistence verdicts for this row */
                double thr = 1.0 / (nh + nl);
                for (int i = 0; i < nh; i++) {
                    double p = 0; /* this row's group mean, recomputed */
                    for (int g = 0; g < G; g++) {
                        const float *qg = q + (size_t)t * ld + (size_t)(h * G + g) * hd;
                        double d = 0, lse = lr[(size_t)t * n_heads + h * G + g];
                        for (int c = 0; c < hd; c++) d += (double)qg[c] * h2f(hk[(j * hi_cap + i) * hd + c]);
                        p += exp(d / sqrt((double)hd) - lse) / G;
                    }
                    cur[j * hi_cap + i] += p < thr;
                    border[j * hi_cap + i] |= fabs(p - thr) < 1e-4 * thr;
                }
            }
        }
        int s = seqv[t], i_row = t - ent[s * PVC_MXE_STRIDE + PVC_MXE_ROW0];
        if ((3 + s + i_row + 1) % 3 == 0)
            for (int h = 0; h < n_kv; h++)
                for (int i = 0; i < hi0[s] + nrow[s]; i++) {
                    size_t x = ((size_t)s * n_kv + h) * hi_cap + i;
                    prev[x] = cur[x];
                    cur[x] = 0;
                }
    }
    for (int i = 0; i < T * qd; i++) got[i] = h2f(oh[i]);
    double ma;
    snprintf(nm, sizeof nm, "mixed attention %s", tag);
    double w = 0;
    {
        double worst = 0;
        ma = 0;
        for (int i = 0; i < T * qd; i++) {
            double d = fabs((double)got[i] - ref[i]);
            if (!(d == d)) d = INFINITY;
            if (d / (2e-3 + 2e-3 * fabs(ref[i])) > worst) worst = d / (2e-3 + 2e-3 * fabs(ref[i]));
            if (d > ma) ma = d;
        }
        w = worst;
    }
    check(w <= 1.0, nm, "%d rows, max|err| %.3g (tol 2e-3 + 2e-3|ref|)", T, ma);
    double lw = 0;
    for (int i = 0; i < T * n_heads; i++) {
        double d = fabs((double)lg[i] - lr[i]);
        if (!(d == d)) d = INFINITY;
        if (d > lw) lw = d;
    }
    snprintf(nm, sizeof nm, "mixed lse %s", tag);
    check(lw <= 1e-3, nm, "max|err| %.3g (tol 1e-3)", lw);
    /* tracker state and balance maxima after the call */
    {
        int bad = 0, n = 0, skipped = 0;
        double pw = 0;
        for (int s = 0; s < 2; s++)
            for (int h = 0; h < n_kv; h++) {
                size_t j = (size_t)s * n_kv + h, dhh = ((size_t)s * 2 + layer) * n_kv + h;
                int nh = hi0[s] + nrow[s];
                uint32_t *st = malloc(8 * (size_t)nh);
                int32_t *gp = malloc(4 * (size_t)nh);
                float gb[3 * 256];
                rc = pvc_d2h(pc, st, m.kv.hst + dhh * hi_cap * 2, 8 * (size_t)nh);
                if (!rc) rc = pvc_d2h(pc, gp, m.kv.hpos + dhh * hi_cap, 4 * (size_t)nh);
                if (!rc) rc = pvc_d2h(pc, gb, m.kv.bal + dhh * 3 * hd, sizeof(float) * 3 * hd);
                /* positions of the new tokens; maxima over the call's |q|, |k| */
                for (int i = 0; i < nrow[s]; i++) bad += gp[hi0[s] + i] != pos[ent[s * PVC_MXE_STRIDE + PVC_MXE_ROW0] + i];
                for (int c = 0; c < hd; c++) {
                    float mq = 0, mk = 0;
                    for (int i = 0; i < nrow[s]; i++) {
                        int t = ent[s * PVC_MXE_STRIDE + PVC_MXE_ROW0] + i;
                        for (int g = 0; g < G; g++) mq = fmaxf(mq, fabsf(q[(size_t)t * ld + (size_t)(h * G + g) * hd + c]));
                        mk = fmaxf(mk, fabsf(q[(size_t)t * ld + qd + (size_t)h * hd + c]));
                    }
                    bad += gb[hd + c] != mq || gb[2 * hd + c] != mk;
                }
                for (int i = 0; i < nh; i++, n++) {
                    if (sel == KV_SELECT_ACCUMULATED) {
                        float sum;
                        memcpy(&sum, &st[2 * i], 4);
                        double d = fabs(sum - pm[j * hi_cap + i]) / (1e-6 + 1e-3 * pm[j * hi_cap + i]);
                        if (d > pw) pw = d;
                        if (i >= hi0[s]) bad += (int)st[2 * i + 1] != 3 + s + (i - hi0[s]);
                    } else if (border[j * hi_cap + i]) {
                        skipped++;
                    } else {
                        bad += (int)(st[2 * i] & 0xffff) != cur[j * hi_cap + i] ||
                               (int)(st[2 * i] >> 16) != prev[j * hi_cap + i];
                    }
                }
                free(st), free(gp);
            }
        snprintf(nm, sizeof nm, "mixed post_store + tracker %s", tag);
        if (sel == KV_SELECT_ACCUMULATED)
            check(!rc && !bad && pw <= 1.0, nm,
                  "positions, |q|/|k| maxima exact: %d mismatches; accumulated p vs reference: "
                  "worst %.3g of tol (1e-6 + 1e-3 p)",
                  bad, pw);
        else
            check(!rc && !bad, nm,
                  "positions, |q|/|k| maxima, persistence counters exact: %d mismatches (%d of %d "
                  "tokens within 1e-4 of the threshold not compared)",
                  bad, skipped, n);
    }
    free(sc), free(pm), free(cur), free(prev), free(border);
done:
    free(q), free(oh), free(got), free(ref), free(lg), free(lr);
    void *dv[] = {dq, dp, ds, dh, dn, de, dpart, dout, dlse};
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) pvc_free(pc, dv[i]);
    free(hk), free(hv), free(lk), free(lv), free(lks), free(lvs), free(b), free(lkf), free(lvf), free(qkv);
    pvc_mixed_free(pc, &m.kv);
}

int run_ops_mixed(pvc_ctx *pc, rng *r) {
    printf("\n== mixed cache ops (kv_mixed.cu) vs the CPU cache's code ==\n");
    demote_case(pc, r, 128, 64, 4, 2, KV_SELECT_PERSISTENCE, 1);
    demote_case(pc, r, 128, 32, 2, 2, KV_SELECT_ACCUMULATED, 0);
    demote_case(pc, r, 64, 32, 4, 4, KV_SELECT_PERSISTENCE, 0);
    demote_case(pc, r, 256, 64, 2, 4, KV_SELECT_ACCUMULATED, 1);
    attn_case(pc, r, 32, 8, 128, 64, 4, 2, KV_SELECT_ACCUMULATED);
    attn_case(pc, r, 9, 9, 64, 32, 2, 2, KV_SELECT_ACCUMULATED);
    attn_case(pc, r, 14, 2, 64, 64, 4, 4, KV_SELECT_PERSISTENCE);
    attn_case(pc, r, 8, 2, 256, 64, 4, 2, KV_SELECT_ACCUMULATED);
    run_ops_mixed_layout(pc, r);
    return 0;
}
