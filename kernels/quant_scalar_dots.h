/* The portable dots of the 32-wide weight formats (Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0), written once for both activation precisions. A template: included
 * by quant_scalar.c (8-bit activations) and quant_q16.c (16-bit), each first
 * defining
 *   KQS_FN(name)  the exported name of kernel `name`
 *   KQS_X0        the activation block of the _0 weights (Q8_0 / Q16_1)
 *   KQS_X0_D(b)   its scale as float (the Q8_0 one is fp16)
 *   KQS_X1        the activation block of the _1 weights (Q8_1 / Q16_1),
 *                 with float d and s = d * sum(codes)
 *   KQS_Q         the name of the code array in both (int8 qs / int16 q)
 *   KQS_ELEM      its element type
 *   KQS_QMAX      the largest code (127 / 32767)
 *   KQS_QUANT_X1  the name of the quantizer to KQS_X1
 * Integer sums inside a block, one float multiply-add per block: the same
 * arithmetic the SIMD paths do, so both agree to float rounding. int32 sums
 * are exact at both precisions (bounds in quant_q16.c). */

static int32_t KQS_FN(q5_isum)(const uint8_t *qs, const uint8_t *qhp, const KQS_ELEM *x, int offset)
{
    uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 |
                  (uint32_t)qhp[3] << 24;
    int32_t s = 0;
    for (int j = 0; j < 16; j++) {
        int q0 = ((qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - offset;
        int q1 = ((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - offset;
        s += q0 * x[j] + q1 * x[j + 16];
    }
    return s;
}

float KQS_FN(dot_q4_0)(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_0 *a = w;
    const KQS_X0 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++)
            s += ((a[i].qs[j] & 0xF) - 8) * b[i].KQS_Q[j] + ((a[i].qs[j] >> 4) - 8) * b[i].KQS_Q[j + 16];
        sum += kq_fp16_to_fp32(a[i].d) * KQS_X0_D(b[i]) * (float)s;
    }
    return sum;
}

float KQS_FN(dot_q4_1)(int64_t n, const void *w, const void *x)
{
    const kq_block_q4_1 *a = w;
    const KQS_X1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++)
            s += (a[i].qs[j] & 0xF) * b[i].KQS_Q[j] + (a[i].qs[j] >> 4) * b[i].KQS_Q[j + 16];
        /* sum((q*dw + m) * qx*dx) = dw*dx*sum(q*qx) + m * (dx*sum(qx)) */
        sum += kq_fp16_to_fp32(a[i].d) * b[i].d * (float)s + kq_fp16_to_fp32(a[i].m) * b[i].s;
    }
    return sum;
}

float KQS_FN(dot_q5_0)(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_0 *a = w;
    const KQS_X0 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        sum += kq_fp16_to_fp32(a[i].d) * KQS_X0_D(b[i]) *
               (float)KQS_FN(q5_isum)(a[i].qs, a[i].qh, b[i].KQS_Q, 16);
    return sum;
}

float KQS_FN(dot_q5_1)(int64_t n, const void *w, const void *x)
{
    const kq_block_q5_1 *a = w;
    const KQS_X1 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        sum += kq_fp16_to_fp32(a[i].d) * b[i].d * (float)KQS_FN(q5_isum)(a[i].qs, a[i].qh, b[i].KQS_Q, 0) +
               kq_fp16_to_fp32(a[i].m) * b[i].s;
    return sum;
}

float KQS_FN(dot_q8_0)(int64_t n, const void *w, const void *x)
{
    const kq_block_q8_0 *a = w;
    const KQS_X0 *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int32_t s = 0;
        for (int j = 0; j < KQ_QK; j++)
            s += a[i].qs[j] * b[i].KQS_Q[j];
        sum += kq_fp16_to_fp32(a[i].d) * KQS_X0_D(b[i]) * (float)s;
    }
    return sum;
}

/* Quantizer to the _1 activation format: per block the codes, d and
 * s = d * sum(codes) (recipe in quant_scalar.c) */
void KQS_QUANT_X1(const float *src, void *dst, int64_t n)
{
    KQS_X1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float id, d = kq_block_scale(src, KQ_QK, KQS_QMAX, &id);
        int32_t sum = 0;
        for (int j = 0; j < KQ_QK; j++) {
            b[i].KQS_Q[j] = (KQS_ELEM)lrintf(src[j] * id);
            sum += b[i].KQS_Q[j];
        }
        b[i].d = d;
        b[i].s = d * (float)sum;
    }
}
