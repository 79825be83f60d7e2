/* kv_side (internal): the per-group side bytes of a quantized record (its
 * scale and zero point) in their two formats. Header only, so that both
 * kv_quant.h (the kernels' contracts) and kv_simd.h (the SIMD readers,
 * which kv_quant.c includes) can share one definition. */
#ifndef PIVOT_KV_SIDE_H
#define PIVOT_KV_SIDE_H

#include <stdint.h>

/* A record format's `group` argument may carry KVQ_SZ8 (bit 0: groups are
 * multiples of 8, so the bit is free): each group's (scale, zero) is then
 * two bytes instead of two fp16 (the low tier's scale-bits=8; docs/
 * KV_CACHE.md, "Two-byte scales"). Byte 0 is the scale with 4 exponent and
 * 4 mantissa bits, s = 2^(e-11)·(1 + m/16) (2^-11 .. 31); byte 1 the zero
 * point below 0 in steps of s·2^(bits-8), z = -zc·s·2^(bits-8), so the
 * grid z + k·s always straddles 0 and zc fits a byte at every width. Every
 * kernel of kv_quant*.c and kv_mixed_blk*.c reads both formats (kvq_group
 * and kvq_sz_bytes strip and size the flag); one that did not know the flag
 * would see an odd group, which every SIMD shape check refuses, and fall
 * back to the portable kernels. */
#define KVQ_SZ8 1
static inline int kvq_group(int group) { return group & ~KVQ_SZ8; }
static inline int kvq_sz_bytes(int group) { return group & KVQ_SZ8 ? 2 : 4; }
/* Splits a format argument: strips KVQ_SZ8 from *group (what channel loops
 * and KVS_SHAPES want) and returns it (what the side-byte readers want). */
static inline int kvq_take_sz8(int *group) {
    const int f = *group & KVQ_SZ8;
    *group &= ~KVQ_SZ8;
    return f;
}
/* The scale byte's value: its 8 bits shifted into a float's exponent and
 * top mantissa bits, plus KVQ_S8_BASE (the float 2^-11): one shift and one
 * add in SIMD. */
#define KVQ_S8_BASE (116u << 23)
static inline float kvq_s8(unsigned sc) {
    union {
        uint32_t u;
        float f;
    } b = {.u = (sc << 19) + KVQ_S8_BASE};
    return b.f;
}
/* The zero byte's step in units of the scale: 2^(bits-8). */
static inline float kvq_z8_step(int bits) { return (float)(1 << bits) / 256.0f; }
/* The scale and zero of a KVQ_SZ8 group whose two bytes are at p. zc·s is
 * exact in float (8 + 5 significant bits) and the step a power of two, so
 * every reader that multiplies in this order gets the same floats. */
static inline void kvq_sz8_get(const uint8_t *p, int bits, float *s, float *z) {
    *s = kvq_s8(p[0]);
    *z = -(float)p[1] * *s * kvq_z8_step(bits);
}

#endif
