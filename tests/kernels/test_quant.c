/* kq tests: the traits table, fp16/bf16 conversions and hand-built blocks
 * with values worked out by hand. Activation quantizers and randomized dot
 * products against a float reference are in test_quant_dot.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "quant.h"

/* fp16 bit patterns of scales that are exact in fp16 */
#define H_0_125 0x3000
#define H_0_25 0x3400
#define H_0_5 0x3800
#define H_1 0x3C00
#define H_2 0x4000
#define H_M1 0xBC00

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* ---- type traits ------------------------------------------------------------ */

Test(quant, traits)
{
    static const struct {
        uint32_t t;
        size_t blk, bytes;
        const char *name;
    } k[] = {
        {KQ_F32, 1, 4, "F32"},      {KQ_F16, 1, 2, "F16"},      {KQ_BF16, 1, 2, "BF16"},
        {KQ_Q4_0, 32, 18, "Q4_0"},  {KQ_Q4_1, 32, 20, "Q4_1"},  {KQ_Q5_0, 32, 22, "Q5_0"},
        {KQ_Q5_1, 32, 24, "Q5_1"},  {KQ_Q8_0, 32, 34, "Q8_0"},  {KQ_Q8_1, 32, 40, "Q8_1"},
        {KQ_Q4_K, 256, 144, "Q4_K"}, {KQ_Q6_K, 256, 210, "Q6_K"}, {KQ_Q8_K, 256, 292, "Q8_K"},
        {KQ_Q16_1, 32, 72, "Q16_1"}, {KQ_Q16_K, 256, 548, "Q16_K"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        cr_assert_eq(kq_block_elems(k[i].t), k[i].blk, "%s", k[i].name);
        cr_assert_eq(kq_block_bytes(k[i].t), k[i].bytes, "%s", k[i].name);
        cr_assert_str_eq(kq_type_name(k[i].t), k[i].name);
        cr_assert(kq_known(k[i].t));
    }
    cr_assert(kq_weight_supported(KQ_Q4_1));
    cr_assert_not(kq_weight_supported(KQ_Q8_K));
    cr_assert_not(kq_weight_supported(KQ_Q8_1));
    cr_assert_not(kq_known(13)); /* Q5_K: not supported */
    cr_assert_not(kq_known(1000));
    cr_assert_null(kq_type_name(10));
    cr_assert_eq(kq_row_bytes(KQ_Q4_1, 576), 18 * 20);
    cr_assert_eq(kq_row_bytes(KQ_Q4_1, 33), 0);
    cr_assert_eq(kq_row_bytes(KQ_Q4_K, 576), 0);
    cr_assert_eq(kq_row_bytes(KQ_Q6_K, 512), 420);
    cr_assert_eq(kq_vec_dot_type(KQ_Q4_0), KQ_Q8_0);
    cr_assert_eq(kq_vec_dot_type(KQ_Q5_0), KQ_Q8_0);
    cr_assert_eq(kq_vec_dot_type(KQ_Q8_0), KQ_Q8_0);
    cr_assert_eq(kq_vec_dot_type(KQ_Q4_1), KQ_Q8_1);
    cr_assert_eq(kq_vec_dot_type(KQ_Q5_1), KQ_Q8_1);
    cr_assert_eq(kq_vec_dot_type(KQ_Q4_K), KQ_Q8_K);
    cr_assert_eq(kq_vec_dot_type(KQ_Q6_K), KQ_Q8_K);
    cr_assert_eq(kq_vec_dot_type(KQ_F16), KQ_F32);
    cr_assert_eq(kq_vec_dot_type(KQ_BF16), KQ_F32);
    /* 16-bit activations: one 32-wide format for all 32-wide weights */
    static const uint32_t w32[] = {KQ_Q4_0, KQ_Q4_1, KQ_Q5_0, KQ_Q5_1, KQ_Q8_0};
    for (size_t i = 0; i < sizeof w32 / sizeof w32[0]; i++) {
        cr_assert_eq(kq_vec_dot_type_bits(w32[i], 16), KQ_Q16_1);
        cr_assert_eq(kq_vec_dot_type_bits(w32[i], 8), kq_vec_dot_type(w32[i]));
    }
    cr_assert_eq(kq_vec_dot_type_bits(KQ_Q4_K, 16), KQ_Q16_K);
    cr_assert_eq(kq_vec_dot_type_bits(KQ_Q6_K, 16), KQ_Q16_K);
    cr_assert_eq(kq_vec_dot_type_bits(KQ_F16, 16), KQ_F32);
    cr_assert_eq(kq_vec_dot_type_bits(KQ_Q16_1, 16), KQ_F32); /* not a weight */
    cr_assert_eq(kq_vec_dot_type_bits(KQ_Q4_1, 12), UINT32_MAX);
    cr_assert_not(kq_known(UINT32_MAX));
    cr_assert_not(kq_weight_supported(KQ_Q16_1));
    cr_assert_not(kq_weight_supported(KQ_Q16_K));
    cr_assert_eq(kq_row_bytes(KQ_Q16_1, 576), 18 * 72);
}

Test(quant, bad_arguments)
{
    uint8_t buf[64] = {0};
    float out[64];
    cr_assert_eq(kq_dequantize_row(1000, buf, out, 32), PV_EINVAL);
    cr_assert_eq(kq_dequantize_row(KQ_Q4_0, buf, out, 31), PV_EINVAL);
    cr_assert_eq(kq_dequantize_row(KQ_Q4_0, NULL, out, 32), PV_EINVAL);
    cr_assert_eq(kq_quantize_row(KQ_Q4_0, out, buf, 32), PV_EINVAL); /* not an activation type */
    cr_assert_eq(kq_quantize_row(KQ_Q8_0, out, buf, 20), PV_EINVAL);
    cr_assert(isnan(kq_vec_dot(KQ_Q4_0, 20, buf, buf)));
    cr_assert(isnan(kq_vec_dot(KQ_Q8_K, 256, buf, buf)));
    cr_assert(isnan(kq_vec_dot_bits(KQ_Q4_0, 12, 32, buf, buf)));
    cr_assert(isnan(kq_vec_dot_bits(KQ_Q16_1, 16, 32, buf, buf)));
    cr_assert_eq(kq_quantize_row(KQ_Q16_1, out, buf, 20), PV_EINVAL);
    cr_assert_eq(kq_quantize_row(KQ_Q16_K, out, buf, 32), PV_EINVAL);
}

/* ---- fp16 / bf16 -------------------------------------------------------------- */

Test(quant, fp16_known_values)
{
    cr_assert_eq(kq_fp16_to_fp32(0x3C00), 1.0f);
    cr_assert_eq(kq_fp16_to_fp32(0xC000), -2.0f);
    cr_assert_eq(kq_fp16_to_fp32(0x7BFF), 65504.0f);
    cr_assert_eq(kq_fp16_to_fp32(0x0001), ldexpf(1.0f, -24)); /* smallest subnormal */
    cr_assert_eq(kq_fp16_to_fp32(0x03FF), 1023.0f * ldexpf(1.0f, -24));
    cr_assert_eq(kq_fp16_to_fp32(0x0400), ldexpf(1.0f, -14)); /* smallest normal */
    cr_assert(isinf(kq_fp16_to_fp32(0x7C00)) && kq_fp16_to_fp32(0x7C00) > 0);
    cr_assert(isinf(kq_fp16_to_fp32(0xFC00)) && kq_fp16_to_fp32(0xFC00) < 0);
    cr_assert(isnan(kq_fp16_to_fp32(0x7E00)));
    cr_assert(signbit(kq_fp16_to_fp32(0x8000)) && kq_fp16_to_fp32(0x8000) == 0.0f);

    cr_assert_eq(kq_fp32_to_fp16(1.0f), 0x3C00);
    cr_assert_eq(kq_fp32_to_fp16(-0.0f), 0x8000);
    cr_assert_eq(kq_fp32_to_fp16(0.333251953125f), 0x3555); /* exact in fp16 */
    /* round to nearest even: 1 + 2^-11 is halfway between 0x3C00 and 0x3C01 */
    cr_assert_eq(kq_fp32_to_fp16(1.0f + ldexpf(1.0f, -11)), 0x3C00);
    cr_assert_eq(kq_fp32_to_fp16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3C02);
    cr_assert_eq(kq_fp32_to_fp16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3C01);
    /* overflow: 65519 rounds down to 65504, 65520 (the halfway point) to inf */
    cr_assert_eq(kq_fp32_to_fp16(65519.0f), 0x7BFF);
    cr_assert_eq(kq_fp32_to_fp16(65520.0f), 0x7C00);
    cr_assert_eq(kq_fp32_to_fp16(-1e10f), 0xFC00);
    cr_assert_eq(kq_fp32_to_fp16(INFINITY), 0x7C00);
    uint16_t nan = kq_fp32_to_fp16(NAN);
    cr_assert((nan & 0x7C00) == 0x7C00 && (nan & 0x3FF) != 0, "NaN must stay NaN: %04x", nan);
    /* subnormals: 2^-25 is halfway between 0 and 2^-24 -> 0 (even);
     * 1.5 * 2^-24 is halfway between 1 and 2 units -> 2 (even) */
    cr_assert_eq(kq_fp32_to_fp16(ldexpf(1.0f, -25)), 0x0000);
    cr_assert_eq(kq_fp32_to_fp16(ldexpf(1.0f, -25) * 1.01f), 0x0001);
    cr_assert_eq(kq_fp32_to_fp16(1.5f * ldexpf(1.0f, -24)), 0x0002);
    cr_assert_eq(kq_fp32_to_fp16(2.5f * ldexpf(1.0f, -24)), 0x0002);
    cr_assert_eq(kq_fp32_to_fp16(-3.0f * ldexpf(1.0f, -24)), 0x8003);
    cr_assert_eq(kq_fp32_to_fp16(1e-30f), 0x0000);
    /* largest subnormal + half a unit rounds up into the smallest normal */
    cr_assert_eq(kq_fp32_to_fp16(1023.5f * ldexpf(1.0f, -24)), 0x0400);

    cr_assert_eq(kq_bf16_to_fp32(0x3F80), 1.0f);
    cr_assert_eq(kq_bf16_to_fp32(0xC040), -3.0f);
}

Test(quant, fp16_round_trip_all)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = kq_fp16_to_fp32((uint16_t)h);
        uint16_t back = kq_fp32_to_fp16(f);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) {
            cr_assert(isnan(f), "%04x", h);
            cr_assert((back & 0x7C00) == 0x7C00 && (back & 0x3FF), "%04x", h);
        } else {
            cr_assert_eq(back, h, "%04x -> %g -> %04x", h, f, back);
        }
        /* the midpoint to the next half up must round to the even one */
        if ((h & 0x7FFF) < 0x7BFF) {
            float next = kq_fp16_to_fp32((uint16_t)(h + 1));
            float mid = (float)(((double)f + next) / 2);
            uint16_t r = kq_fp32_to_fp16(mid);
            cr_assert_eq(r, (h & 1) ? h + 1 : h, "midpoint above %04x -> %04x", h, r);
        }
    }
}

/* ---- hand-built blocks ----------------------------------------------------------- */

Test(quant, q4_0_block)
{
    uint8_t b[18];
    put16(b, H_0_5);
    for (int j = 0; j < 16; j++)
        b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    cr_assert_eq(kq_dequantize_row(KQ_Q4_0, b, y, 32), PV_OK);
    /* element j (low nibble j) = (j-8)/2; element 16+j (high nibble 15-j) = (7-j)/2 */
    cr_assert_eq(y[0], -4.0f);
    cr_assert_eq(y[8], 0.0f);
    cr_assert_eq(y[15], 3.5f);
    cr_assert_eq(y[16], 3.5f);
    cr_assert_eq(y[31], -4.0f);
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], (j - 8) * 0.5f);
        cr_assert_eq(y[16 + j], (7 - j) * 0.5f);
    }
}

Test(quant, q4_1_block)
{
    uint8_t b[20];
    put16(b, H_0_5);
    put16(b + 2, H_M1); /* m = -1 */
    for (int j = 0; j < 16; j++)
        b[4 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    cr_assert_eq(kq_dequantize_row(KQ_Q4_1, b, y, 32), PV_OK);
    cr_assert_eq(y[0], -1.0f);   /* 0*0.5 - 1 */
    cr_assert_eq(y[3], 0.5f);    /* 3*0.5 - 1 */
    cr_assert_eq(y[15], 6.5f);   /* 15*0.5 - 1 */
    cr_assert_eq(y[16], 6.5f);   /* high nibble of byte 0 = 15 */
    cr_assert_eq(y[31], -1.0f);  /* high nibble of byte 15 = 0 */
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], j * 0.5f - 1.0f);
        cr_assert_eq(y[16 + j], (15 - j) * 0.5f - 1.0f);
    }
}

Test(quant, q5_blocks)
{
    /* qh = 0x80010001: bit 0 (element 0), bit 16 (element 16), bit 31 (element 31) */
    uint8_t b0[22], b1[24];
    put16(b0, H_0_25);
    put16(b1, H_0_5);
    put16(b1 + 2, H_2);
    const uint8_t qh[4] = {0x01, 0x00, 0x01, 0x80};
    memcpy(b0 + 2, qh, 4);
    memcpy(b1 + 4, qh, 4);
    for (int j = 0; j < 16; j++)
        b0[6 + j] = b1[8 + j] = (uint8_t)(j | (15 - j) << 4);
    float y0[32], y1[32];
    cr_assert_eq(kq_dequantize_row(KQ_Q5_0, b0, y0, 32), PV_OK);
    cr_assert_eq(kq_dequantize_row(KQ_Q5_1, b1, y1, 32), PV_OK);
    /* Q5_0: (q-16)*0.25 with q = nibble | 16*bit */
    cr_assert_eq(y0[0], 0.0f);            /* q = 0+16 */
    cr_assert_eq(y0[1], -3.75f);          /* q = 1 */
    cr_assert_eq(y0[15], -0.25f);         /* q = 15 */
    cr_assert_eq(y0[16], (31 - 16) * 0.25f); /* q = 15+16 */
    cr_assert_eq(y0[17], (14 - 16) * 0.25f);
    cr_assert_eq(y0[31], 0.0f);           /* q = 0+16 */
    /* Q5_1: q*0.5 + 2 */
    cr_assert_eq(y1[0], 10.0f);  /* 16*0.5+2 */
    cr_assert_eq(y1[1], 2.5f);
    cr_assert_eq(y1[16], 17.5f); /* 31*0.5+2 */
    cr_assert_eq(y1[30], 2.5f);  /* q = 1 */
    cr_assert_eq(y1[31], 10.0f);
}

Test(quant, q8_blocks)
{
    uint8_t b[34];
    put16(b, H_0_125);
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    float y[32];
    cr_assert_eq(kq_dequantize_row(KQ_Q8_0, b, y, 32), PV_OK);
    cr_assert_eq(y[0], -16.0f);
    cr_assert_eq(y[16], 0.0f);
    cr_assert_eq(y[31], 15.0f);

    uint8_t c[40] = {0}; /* Q8_1 (ours, activation-only): f32 d, f32 s, 32 x int8 */
    float two = 2.0f;
    memcpy(c, &two, 4); /* s (bytes 4-7) is not used by dequantization */
    for (int j = 0; j < 32; j++)
        c[8 + j] = (uint8_t)(int8_t)(j - 16);
    cr_assert_eq(kq_dequantize_row(KQ_Q8_1, c, y, 32), PV_OK);
    cr_assert_eq(y[0], -32.0f);
    cr_assert_eq(y[31], 30.0f);

    uint8_t k[292] = {0};
    float d = 0.25f;
    memcpy(k, &d, 4);
    k[4 + 0] = (uint8_t)(int8_t)-7;
    k[4 + 255] = 100;
    float z[256];
    cr_assert_eq(kq_dequantize_row(KQ_Q8_K, k, z, 256), PV_OK);
    cr_assert_eq(z[0], -1.75f);
    cr_assert_eq(z[1], 0.0f);
    cr_assert_eq(z[255], 25.0f);
}

Test(quant, f16_bf16_rows)
{
    uint16_t h[4] = {0x3C00, 0xC000, 0x3555, 0x0001};
    uint16_t bf[4] = {0x3F80, 0xC040, 0x4049, 0x0000};
    float y[4];
    cr_assert_eq(kq_dequantize_row(KQ_F16, h, y, 4), PV_OK);
    cr_assert_eq(y[0], 1.0f);
    cr_assert_eq(y[1], -2.0f);
    cr_assert_eq(y[2], 0.333251953125f);
    cr_assert_eq(y[3], ldexpf(1.0f, -24));
    cr_assert_eq(kq_dequantize_row(KQ_BF16, bf, y, 4), PV_OK);
    cr_assert_eq(y[0], 1.0f);
    cr_assert_eq(y[1], -3.0f);
    cr_assert_eq(y[2], 3.140625f);
    cr_assert_eq(y[3], 0.0f);
}

/* Q4_K: pack 8 scales and 8 mins (6 bits each) the way the format defines:
 * bytes 0-3: low 6 bits of sc[0..3], top 2 bits = sc[4..7] >> 4;
 * bytes 4-7: low 6 bits of m[0..3], top 2 bits = m[4..7] >> 4;
 * bytes 8-11: low nibble = sc[4..7] & 15, high nibble = m[4..7] & 15. */
static void pack_q4k_scales(uint8_t s[12], const uint8_t sc[8], const uint8_t m[8])
{
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

Test(quant, q4_K_block)
{
    uint8_t b[144] = {0};
    put16(b, H_1);      /* d */
    put16(b + 2, H_0_5); /* dmin */
    const uint8_t sc[8] = {1, 2, 3, 63, 17, 33, 50, 5};
    const uint8_t mn[8] = {0, 1, 2, 40, 63, 20, 16, 9};
    pack_q4k_scales(b + 4, sc, mn);
    /* qs: chunk c (32 bytes) holds sub-block 2c in the low nibbles and 2c+1
     * in the high nibbles */
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b[16 + 32 * c + l] = (uint8_t)((l & 15) | (15 - (l & 15)) << 4);
    float y[256];
    cr_assert_eq(kq_dequantize_row(KQ_Q4_K, b, y, 256), PV_OK);
    /* element = d*sc[j]*q - dmin*m[j], j = element/32 */
    cr_assert_eq(y[0], 1 * 0 - 0.5f * 0);      /* sub-block 0, q = 0 */
    cr_assert_eq(y[5], 1 * 5 - 0.0f);
    cr_assert_eq(y[32], 2 * 15 - 0.5f * 1);    /* sub-block 1, high nibble 15 */
    cr_assert_eq(y[64 + 3], 3 * 3 - 0.5f * 2); /* sub-block 2 */
    cr_assert_eq(y[96 + 1], 63 * 14 - 0.5f * 40);
    cr_assert_eq(y[128 + 15], 17 * 15 - 0.5f * 63); /* sub-block 4: packed scale */
    cr_assert_eq(y[160 + 0], 33 * 15 - 0.5f * 20);
    cr_assert_eq(y[192 + 7], 50 * 7 - 0.5f * 16);
    cr_assert_eq(y[224 + 2], 5 * 13 - 0.5f * 9);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, l = e % 32, q = (j & 1) ? 15 - (l & 15) : (l & 15);
        cr_assert_eq(y[e], (float)(sc[j] * q) - 0.5f * mn[j], "element %d", e);
    }
}

/* Q6_K: element e of the super-block (half h = e/128, r = e%128, group
 * g = r/32, l = r%32) keeps its low 4 bits in ql[64h + l + 32*(g&1)] (low
 * nibble for g < 2, high nibble otherwise) and its top 2 bits in
 * qh[32h + l] at bit 2g. */
static void q6k_set(uint8_t *ql, uint8_t *qh, int e, int q)
{
    int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
    uint8_t *p = &ql[64 * h + l + 32 * (g & 1)];
    if (g < 2)
        *p = (uint8_t)((*p & 0xF0) | (q & 15));
    else
        *p = (uint8_t)((*p & 0x0F) | (q & 15) << 4);
    uint8_t *hp = &qh[32 * h + l];
    *hp = (uint8_t)((*hp & ~(3 << (2 * g))) | ((q >> 4) & 3) << (2 * g));
}

Test(quant, q6_K_block)
{
    uint8_t b[210] = {0};
    uint8_t *ql = b, *qh = b + 128;
    int8_t *sc = (int8_t *)(b + 192);
    put16(b + 208, H_0_5);
    for (int i = 0; i < 16; i++)
        sc[i] = (int8_t)(i - 8);
    for (int e = 0; e < 256; e++)
        q6k_set(ql, qh, e, (e * 7) % 64);
    float y[256];
    cr_assert_eq(kq_dequantize_row(KQ_Q6_K, b, y, 256), PV_OK);
    /* element = d * sc[e/16] * (q - 32) */
    cr_assert_eq(y[0], 0.5f * -8 * (0 - 32));
    cr_assert_eq(y[1], 0.5f * -8 * (7 - 32));
    cr_assert_eq(y[40], 0.5f * -6 * (24 - 32));   /* 280 % 64 = 24, scale 2 */
    cr_assert_eq(y[200], 0.5f * 4 * (56 - 32));   /* 1400 % 64 = 56, scale 12 */
    cr_assert_eq(y[255], 0.5f * 7 * (57 - 32));   /* 1785 % 64 = 57 */
    for (int e = 0; e < 256; e++)
        cr_assert_eq(y[e], 0.5f * (e / 16 - 8) * ((e * 7) % 64 - 32), "element %d", e);
}

/* kq_fp32_to_fp16_row (F16C where the CPU has it) writes kq_fp32_to_fp16's
 * bits: every half's value and the midpoints around it (the rounding
 * cases), the overflow edge, NaNs with payloads and odd lengths (the
 * scalar tail) */
Test(quant, fp16_row_matches_scalar)
{
    enum { N = 3 * 65536 + 7 };
    static float x[N];
    static uint16_t got[N];
    int64_t n = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = kq_fp16_to_fp32((uint16_t)h);
        x[n++] = f;
        x[n++] = nextafterf(f, INFINITY);
        x[n++] = (h & 0x7FFF) < 0x7BFF ? (float)(((double)f + kq_fp16_to_fp32((uint16_t)(h + 1))) / 2) : f;
    }
    x[n++] = 65519.0f;
    x[n++] = 65520.0f;
    x[n++] = -1e10f;
    x[n++] = NAN;
    x[n++] = 1e-30f;
    x[n++] = -0.0f;
    x[n++] = 1.0f + ldexpf(1.0f, -11);
    cr_assert_eq(n, N);
    /* NaNs with payloads, quiet and signalling, both signs: the same bits
     * too (both quiet them and keep the payload's top bits) */
    static const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xffa5a5a5u, 0x7fffffffu, 0x7f802000u};
    for (int k = 0; k < 5; k++)
        memcpy(&x[1000 + 7 * k], &nans[k], 4);
    for (int64_t len = N; len > N - 9; len--) {
        memset(got, 0, sizeof got);
        kq_fp32_to_fp16_row(x, got, len);
        for (int64_t i = 0; i < len; i++) {
            uint16_t want = kq_fp32_to_fp16(x[i]);
            cr_assert_eq(got[i], want, "len %lld i %lld: %.9g -> %04x, scalar %04x", (long long)len,
                         (long long)i, x[i], got[i], want);
        }
    }
}
