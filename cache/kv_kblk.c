/* kv_kblk: blocked 4-bit keys (layout in kv_kblk.h). Portable byte loops:
 * they run once per stored or moved token, not per query. */
#include "kv_kblk.h"

#include <string.h>

#include "kv_side.h"

int kvkb_ok(int bits, int d, int group) {
    const int g = kvq_group(group);
    return bits == 4 && d > 0 && d <= 512 && d % 64 == 0 && g > 0 && g % 4 == 0 && d % g == 0;
}

/* Channel c's code in a 4-bit record: byte c % (d/2), nibble c / (d/2)
 * (kv_quant.h's planes). */
static int code_at(const uint8_t *rec, int d, int c) {
    const int np = d / 2;
    return (rec[c % np] >> (4 * (c / np))) & 15;
}

static void code_set(uint8_t *rec, int d, int c, int v) {
    const int np = d / 2, sh = 4 * (c / np);
    rec[c % np] = (uint8_t)((rec[c % np] & ~(15 << sh)) | (v << sh));
}

/* The nibble of word w that holds channel 4k + j (j = 0..3): 0, 2, 1, 3. */
static const int nib_of[4] = {0, 2, 1, 3};

void kvkb_put(uint8_t *blk, int u, const uint8_t *rec, int d, int group) {
    for (int k = 0; k < d / 4; k++) {
        unsigned w = 0;
        for (int j = 0; j < 4; j++) w |= (unsigned)code_at(rec, d, 4 * k + j) << (4 * nib_of[j]);
        blk[32 * k + 2 * u] = (uint8_t)w;
        blk[32 * k + 2 * u + 1] = (uint8_t)(w >> 8);
    }
    const int szb = kvq_sz_bytes(group), ng = d / kvq_group(group);
    for (int g = 0; g < ng; g++)
        memcpy(blk + 8 * d + (size_t)(g * KVKB_TOKENS + u) * szb, rec + d / 2 + g * szb, (size_t)szb);
}

void kvkb_get(const uint8_t *blk, int u, uint8_t *rec, int d, int group) {
    memset(rec, 0, (size_t)d / 2);
    for (int k = 0; k < d / 4; k++) {
        const unsigned w = blk[32 * k + 2 * u] | (unsigned)blk[32 * k + 2 * u + 1] << 8;
        for (int j = 0; j < 4; j++) code_set(rec, d, 4 * k + j, (int)(w >> (4 * nib_of[j])) & 15);
    }
    const int szb = kvq_sz_bytes(group), ng = d / kvq_group(group);
    for (int g = 0; g < ng; g++)
        memcpy(rec + d / 2 + g * szb, blk + 8 * d + (size_t)(g * KVKB_TOKENS + u) * szb, (size_t)szb);
}

void kvkb_move(uint8_t *dst, int du, const uint8_t *src, int su, int d, int group) {
    for (int k = 0; k < d / 4; k++) memcpy(dst + 32 * k + 2 * du, src + 32 * k + 2 * su, 2);
    const int szb = kvq_sz_bytes(group), ng = d / kvq_group(group);
    for (int g = 0; g < ng; g++)
        memcpy(dst + 8 * d + (size_t)(g * KVKB_TOKENS + du) * szb, src + 8 * d + (size_t)(g * KVKB_TOKENS + su) * szb,
               (size_t)szb);
}
