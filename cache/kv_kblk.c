/* kv_kblk: blocked 4-bit keys (layout in kv_kblk.h). Portable byte loops:
 * they run per demoted or moved token and per record the inspector reads,
 * never in attention (its kernels read the blocks themselves). */
#include "kv_kblk.h"

#include <string.h>

#include "kv_side.h"

/* A word per token: word k of the block at WB·k, token u's at 2u; the codes
 * take d/4 of them (CODES(d) = 8d bytes), the scales follow. */
#define WB (2 * KVKB_TOKENS)
#define CODES(d) ((size_t)(d) / 4 * WB)

int kvkb_ok(int bits, int d, int group) {
    const int g = kvq_group(group);
    return bits == 4 && d > 0 && d <= 512 && d % 64 == 0 && g > 0 && g % 4 == 0 && d % g == 0;
}

/* Channel c's code in a 4-bit record: byte c of the first d/2 (the low
 * nibble) for c < d/2, else the high nibble of byte c - d/2 (kv_quant.h's
 * two planes); np = d/2. */
static inline int code_at(const uint8_t *rec, int np, int c) {
    return c < np ? rec[c] & 15 : rec[c - np] >> 4;
}

/* The nibble of word w that holds channel 4k + j (j = 0..3): 0, 2, 1, 3. */
static const int nib_of[4] = {0, 2, 1, 3};

void kvkb_put(uint8_t *blk, int u, const uint8_t *rec, int d, int group) {
    for (int k = 0; k < d / 4; k++) {
        unsigned w = 0;
        for (int j = 0; j < 4; j++) w |= (unsigned)code_at(rec, d / 2, 4 * k + j) << (4 * nib_of[j]);
        blk[WB * k + 2 * u] = (uint8_t)w;
        blk[WB * k + 2 * u + 1] = (uint8_t)(w >> 8);
    }
    const int szb = kvq_sz_bytes(group), ng = d / kvq_group(group);
    for (int g = 0; g < ng; g++)
        memcpy(blk + CODES(d) + (size_t)(g * KVKB_TOKENS + u) * szb, rec + d / 2 + g * szb, (size_t)szb);
}

void kvkb_get(const uint8_t *blk, int u, uint8_t *rec, int d, int group) {
    const int np = d / 2;
    for (int k = 0; k < d / 4; k++) {
        const unsigned w = blk[WB * k + 2 * u] | (unsigned)blk[WB * k + 2 * u + 1] << 8;
        for (int j = 0; j < 4; j++) {
            const int c = 4 * k + j, v = (int)(w >> (4 * nib_of[j])) & 15;
            if (c < np) /* the low plane comes first: it starts the byte */
                rec[c] = (uint8_t)v;
            else
                rec[c - np] = (uint8_t)(rec[c - np] | v << 4);
        }
    }
    const int szb = kvq_sz_bytes(group), ng = d / kvq_group(group);
    for (int g = 0; g < ng; g++)
        memcpy(rec + np + g * szb, blk + CODES(d) + (size_t)(g * KVKB_TOKENS + u) * szb, (size_t)szb);
}

void kvkb_move(uint8_t *dst, int du, const uint8_t *src, int su, int d, int group) {
    for (int k = 0; k < d / 4; k++) memcpy(dst + WB * k + 2 * du, src + WB * k + 2 * su, 2);
    const int szb = kvq_sz_bytes(group), ng = d / kvq_group(group);
    for (int g = 0; g < ng; g++)
        memcpy(dst + CODES(d) + (size_t)(g * KVKB_TOKENS + du) * szb, src + CODES(d) + (size_t)(g * KVKB_TOKENS + su) * szb,
               (size_t)szb);
}
