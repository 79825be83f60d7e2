/* The AVX-512 key kernels of the mixed cache against each other: dotn512t
 * (tokens in lanes) must give the same bits as dotn512 (per-token trees)
 * for every shape, width and head count it takes, since kvq_avx512_dotn
 * picks between them by shape (dotn_t_ok) and the quality figures must not
 * depend on the pick. Includes the kernel file to reach both. */
#include "../../cache/kv_quant_avx512.c"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "kv_kblk.h"
#include "kv_layout.h"
#include "../test_rand.h"

AVX512 static void both(const uint8_t *rec, size_t stride, int n, const kvq_qprep *qp, int gq, int d,
                        int group, int bits, int sz8, float *s0, float *s1, size_t scs) {
#define PAIR(B)                                                                                   \
    do {                                                                                          \
        dotn512(rec, stride, n, qp, gq, d, group, s0, scs, B, sz8);                               \
        dotn512t(rec, stride, n, qp, gq, d, group, s1, scs, B, sz8);                              \
    } while (0)
    if (bits == 4) PAIR(4);
    else if (bits == 3) PAIR(3);
    else PAIR(2);
#undef PAIR
}

/* A record as real keys make them (an outlier channel, an offset every
 * seventh token) of d channels at `bits`, format fmt (kv_side.h). */
static void real_record(float *x, int d, int bits, int fmt, int t, unsigned *r, uint8_t *rec) {
    for (int i = 0; i < d; i++) x[i] = 2 * frand(r) + (i == 3 ? 9 : 0) + (t % 7 == 0 ? 5 : 0);
    kvq_encode(x, d, bits, fmt, rec);
}

/* gq random query heads (channel 5 an outlier) prepared into qp (qmem). */
static void random_query(float *q, int gq, int d, int G, unsigned *r, void *qmem, kvq_qprep *qp) {
    for (int i = 0; i < gq * d; i++) q[i] = frand(r) * (i % d == 5 ? 30.0f : 1.0f);
    kvq_qprep_init(qp, qmem, gq, d, G);
    kvq_prep(q, gq, d, G, qp);
}

Test(kv_quant_avx512, transposed_key_kernel_is_bit_identical) {
    if (!cpu_ok()) cr_skip_test("no AVX-512 VNNI here");
    enum { NT = 41, MD = 512, MQ = TMAXQ };
    static uint8_t recs[NT * 512];
    static float x[MD], q[MQ * MD], s0[MQ * NT], s1[MQ * NT];
    static char qmem[MQ * MD * 8] __attribute__((aligned(64)));
    const int shapes[][2] = {{64, 32}, {64, 64}, {128, 32}, {128, 64}, {128, 128}, {256, 64}, {512, 64}};
    const int bits[] = {4, 3, 2}, heads[] = {1, 2, 3, 4, 8, MQ}, runs[] = {1, 15, 16, 17, NT};
    unsigned r = 5;
    int checked = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int bi = 0; bi < 6; bi++) { /* both side formats: fp16 pairs, then KVQ_SZ8 */
            const int d = shapes[si][0], G = shapes[si][1], b = bits[bi % 3], sz8 = bi >= 3 ? KVQ_SZ8 : 0;
            cr_assert(axpy_int_ok(b, d, G), "d %d group %d bits %d", d, G, b);
            const size_t rec = kvl_rec_bytes(b, d, G | sz8);
            for (int t = 0; t < NT; t++) real_record(x, d, b, G | sz8, t, &r, recs + t * rec);
            for (int hi = 0; hi < 6; hi++)
                for (int ri = 0; ri < 5; ri++) {
                    const int gq = heads[hi], n = runs[ri];
                    kvq_qprep qp;
                    random_query(q, gq, d, G, &r, qmem, &qp);
                    for (int i = 0; i < MQ * NT; i++) s0[i] = 1.0f, s1[i] = 2.0f;
                    both(recs, rec, n, &qp, gq, d, G, b, sz8, s0, s1, NT);
                    for (int g = 0; g < gq; g++)
                        for (int t = 0; t < NT; t++) {
                            const float *a = &s0[g * NT + t], *c = &s1[g * NT + t];
                            if (t < n)
                                cr_assert(memcmp(c, a, 4) == 0,
                                          "d %d group %d bits %d heads %d run %d: head %d token %d %.9g vs %.9g",
                                          d, G, b, gq, n, g, t, *c, *a);
                            else /* past the run both leave the scores alone */
                                cr_assert(*a == 1.0f && *c == 2.0f, "d %d bits %d run %d: token %d written", d, b, n, t);
                        }
                    /* and through the cache's entry point (the shape-constant copies, the pick) */
                    kvq_dotn_fn dn = kvq_avx512_dotn(b, d, G | sz8);
                    cr_assert_not_null(dn);
                    dn(recs, rec, n, NULL, &qp, gq, d, G | sz8, s1, NT);
                    for (int i = 0; i < gq; i++)
                        cr_assert(memcmp(&s1[i * NT], &s0[i * NT], sizeof(float) * (size_t)n) == 0,
                                  "kvq_avx512_dotn d %d group %d bits %d heads %d run %d", d, G, b, gq, n);
                    checked++;
                }
        }
    cr_assert_eq(checked, 7 * 6 * 6 * 5);
}

/* The key kernel over blocked records (kv_kblk.h) against dotn512t over
 * the same records as they are: the same bits for every shape the blocks
 * take, both side formats, 1 to 16 heads, runs of part of a block, one
 * block and more; slots of a block past the run hold garbage and must
 * change nothing. A block whose words come in another nibble order or
 * whose scales sit elsewhere fails it. */
AVX512 static void ref_t(const uint8_t *rec, size_t stride, int n, const kvq_qprep *qp, int gq, int d, int group,
                         int sz8, float *sc, size_t scs) {
    dotn512t(rec, stride, n, qp, gq, d, group, sc, scs, 4, sz8);
}

Test(kv_quant_avx512, blocked_key_kernel_is_bit_identical) {
    if (!cpu_ok()) cr_skip_test("no AVX-512 VNNI here");
    enum { NT = 41, NB = 48, MD = 512, MQ = TMAXQ };
    static uint8_t recs[NT * KVKB_REC_MAX], blks[NB * KVKB_REC_MAX];
    static float x[MD], q[MQ * MD], s0[MQ * NT], s1[MQ * NT];
    static char qmem[MQ * MD * 8] __attribute__((aligned(64)));
    const int shapes[][2] = {{64, 32}, {64, 64}, {128, 32}, {128, 64}, {256, 64}, {512, 64}};
    const int heads[] = {1, 3, 4, 8, MQ}, runs[] = {1, 15, 16, 17, 32, NT};
    unsigned r = 11;
    int checked = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int f = 0; f < 2; f++) {
            const int d = shapes[si][0], G = shapes[si][1], sz8 = f ? KVQ_SZ8 : 0;
            cr_assert(kvkb_ok(4, d, G | sz8), "d %d group %d", d, G);
            const size_t rec = kvl_rec_bytes(4, d, G | sz8);
            memset(blks, 0xA5, sizeof blks);
            for (int t = 0; t < NT; t++) {
                real_record(x, d, 4, G | sz8, t, &r, recs + t * rec);
                kvkb_put(blks + kvkb_block_off(t, rec), t % 16, recs + t * rec, d, G | sz8);
            }
            for (int hi = 0; hi < 5; hi++)
                for (int ri = 0; ri < 6; ri++) {
                    const int gq = heads[hi], n = runs[ri];
                    kvq_qprep qp;
                    random_query(q, gq, d, G, &r, qmem, &qp);
                    for (int i = 0; i < MQ * NT; i++) s0[i] = 1.0f, s1[i] = 2.0f;
                    ref_t(recs, rec, n, &qp, gq, d, G, sz8, s0, NT);
                    kvq_dotn_fn db = kvq_avx512_dotb(4, d, G | sz8, gq); /* the cache's entry point */
                    cr_assert_not_null(db, "d %d group %d heads %d", d, G, gq);
                    db(blks, rec, n, NULL, &qp, gq, d, G | sz8, s1, NT);
                    for (int g = 0; g < gq; g++)
                        for (int t = 0; t < NT; t++) {
                            const float *a = &s0[g * NT + t], *c = &s1[g * NT + t];
                            if (t < n)
                                cr_assert(memcmp(c, a, 4) == 0, "d %d group %d sz8 %d heads %d run %d: head %d token %d %.9g vs %.9g",
                                          d, G, sz8, gq, n, g, t, *c, *a);
                            else
                                cr_assert(*c == 2.0f, "d %d run %d: token %d written", d, n, t);
                        }
                    checked++;
                }
        }
    cr_assert_eq(checked, 6 * 2 * 5 * 6);
    /* 4-bit keys the transposed kernel takes, nothing else */
    cr_assert_not_null(kvq_avx512_dotb(4, 64, 64 | KVQ_SZ8, 3));
    cr_assert_null(kvq_avx512_dotb(3, 64, 64, 3), "3-bit keys are not blocked");
    cr_assert_null(kvq_avx512_dotb(4, 96, 32, 3), "head_dim not a multiple of 64");
    cr_assert_null(kvq_avx512_dotb(4, 128, 128, 4), "where dotn512 is the faster kernel, no blocks");
}

/* The pick: the transposed kernel where it is the faster (dotn_t_ok's
 * comment), never for 8-bit codes or more heads than its stack holds. */
Test(kv_quant_avx512, transposed_kernel_pick) {
    cr_assert(dotn_t_ok(4, 64, 32, 3));
    cr_assert(dotn_t_ok(3, 64, 64, 1));
    cr_assert(dotn_t_ok(4, 128, 64, 1));
    cr_assert_not(dotn_t_ok(4, 128, 128, 4), "one 128-channel group: the trees are faster");
    cr_assert_not(dotn_t_ok(8, 64, 32, 3), "8-bit codes do not fit vpdpbusd's signed operand");
    cr_assert_not(dotn_t_ok(4, 64, 32, TMAXQ + 1));
    cr_assert_not(dotn_t_ok(4, 96, 32, 3), "head_dim not a multiple of 64");
}

/* kvq_prep's rounding on AVX-512 (prep16) against lrintf's: exact ties
 * (k + 0.5 rounds to even), the ends of the int16 range, negatives (the
 * byte split's high byte is signed), and random rows at kvq_prep's own
 * scale; then kvq_prep as a whole (which takes prep16 here) against the
 * scalar formula. Truncating instead of rounding (vcvttps2dq) fails it. */
Test(kv_quant_avx512, prep_matches_scalar) {
    if (!cpu_ok()) cr_skip_test("no AVX-512 VNNI here");
    enum { D = 64 };
    float q[D];
    int16_t q16[D];
    int8_t qhi[D];
    uint8_t qlo[D];
    unsigned seed = 5;
    for (int rep = 0; rep < 200; rep++) {
        float inv = 1.0f;
        for (int c = 0; c < D; c++) {
            if (rep == 0) q[c] = (float)(c - 32) + 0.5f;                 /* ties */
            else if (rep == 1) q[c] = c % 2 ? 32767.0f : -32767.0f + c; /* the ends */
            else q[c] = frand(&seed) * 3.0f;
        }
        if (rep > 1) { /* kvq_prep's scale: the row's largest |q| at 32767 */
            float mx = 0.0f;
            for (int c = 0; c < D; c++) mx = fabsf(q[c]) > mx ? fabsf(q[c]) : mx;
            inv = 1.0f / (mx / 32767.0f);
        }
        prep16(q, D, inv, q16, qhi, qlo);
        for (int c = 0; c < D; c++) {
            const int v = (int)lrintf(q[c] * inv), lo = ((v % 256) + 256) % 256;
            cr_assert_eq(q16[c], v, "rep %d channel %d: %d want %d", rep, c, q16[c], v);
            cr_assert_eq(qlo[c], lo, "rep %d channel %d", rep, c);
            cr_assert_eq(qhi[c], (v - lo) / 256, "rep %d channel %d", rep, c);
        }
    }
    /* kvq_prep with 3 rows against the same formula */
    void *mem = aligned_alloc(64, (kvq_qprep_bytes(3, D, 32) + 63) / 64 * 64);
    kvq_qprep p;
    kvq_qprep_init(&p, mem, 3, D, 32);
    float rows[3 * D];
    for (int i = 0; i < 3 * D; i++) rows[i] = frand(&seed) * (i % 7 ? 1.0f : 20.0f);
    kvq_prep(rows, 3, D, 32, &p);
    for (int g = 0; g < 3; g++) {
        float mx = 0.0f;
        for (int c = 0; c < D; c++) mx = fabsf(rows[g * D + c]) > mx ? fabsf(rows[g * D + c]) : mx;
        const float inv = 1.0f / (mx / 32767.0f);
        for (int c = 0; c < D; c++) {
            const int v = (int)lrintf(rows[g * D + c] * inv);
            cr_assert_eq(p.q16[g * D + c], v, "row %d channel %d", g, c);
            cr_assert_eq(p.qlo[g * D + c] + 256 * p.qhi[g * D + c], v, "row %d channel %d", g, c);
        }
    }
    free(mem);
}

/* axpyn512i unpacks a block's codes once into int16 pairs when a call has
 * more than one pass of query heads (prompt blocks); every row must come
 * out bit-identical to the same row alone (one pass, unpacked per pass):
 * the weights are prepared per row and the products summed in the same
 * order either way. A wrong staged offset or a stale pair fails it. */
Test(kv_quant_avx512, staged_value_pairs_match_one_row_at_a_time) {
    if (!cpu_ok()) cr_skip_test("no AVX-512 VNNI here");
    enum { NT = 32, MD = 128, MQ = 16 };
    const int bits[] = {2, 3, 4, 8}, dims[] = {64, 128}, groups[] = {32, 64}, gqs[] = {16, 7, 5}, runs[] = {32, 23};
    static uint8_t recs[NT * 256];
    static float a[MQ * NT], out[MQ * MD], one[MQ * MD];
    unsigned seed = 3;
    int checked = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int di = 0; di < 2; di++)
            for (int gi = 0; gi < 2; gi++)
                for (int qi = 0; qi < 3; qi++)
                    for (int ri = 0; ri < 2; ri++) {
                        const int b = bits[bi], D = dims[di], G = groups[gi], GQ = gqs[qi], n = runs[ri];
                        kvq_axpyn_fn an = kvq_avx512_axpyn(b, D, G);
                        cr_assert(an, "bits %d d %d group %d: the AVX-512 kernel takes this shape", b, D, G);
                        const size_t rec = kvl_rec_bytes(b, D, G);
                        for (int t = 0; t < NT; t++) {
                            float x[MD];
                            for (int i = 0; i < D; i++) x[i] = 2 * frand(&seed);
                            kvq_encode(x, D, b, G, recs + t * rec);
                        }
                        for (int i = 0; i < MQ * NT; i++) a[i] = fabsf(frand(&seed)) * 0.1f;
                        for (int i = 0; i < MQ * MD; i++) out[i] = one[i] = frand(&seed);
                        an(recs, rec, n, a, NT, GQ, D, G, out);
                        for (int g = 0; g < GQ; g++) an(recs, rec, n, a + g * NT, NT, 1, D, G, one + g * D);
                        cr_assert(memcmp(out, one, sizeof(float) * GQ * D) == 0,
                                  "bits %d d %d group %d gq %d n %d: rows differ", b, D, G, GQ, n);
                        checked++;
                    }
    cr_assert_eq(checked, 4 * 2 * 2 * 3 * 2);
}
