/* kv_kblk: blocked 4-bit keys. A record put into a block comes back the
 * same (every slot, both side formats, the shapes the blocks take), a move
 * carries a token between blocks without touching the others, and the
 * words follow the documented nibble order. */
#include <criterion/criterion.h>
#include <string.h>

#include "kv_kblk.h"
#include "kv_layout.h"
#include "kv_quant.h"
#include "../test_rand.h"

Test(kv_kblk, which_formats) {
    cr_assert(kvkb_ok(4, 64, 64));
    cr_assert(kvkb_ok(4, 128, 32 | KVQ_SZ8));
    cr_assert(kvkb_ok(4, 512, 4));
    cr_assert_not(kvkb_ok(3, 64, 64), "only 4-bit codes");
    cr_assert_not(kvkb_ok(8, 64, 64));
    cr_assert_not(kvkb_ok(4, 96, 32), "head_dim a multiple of 64");
    cr_assert_not(kvkb_ok(4, 1024, 64), "at most 512 channels");
    cr_assert_not(kvkb_ok(4, 64, 2), "groups of whole dwords");
}

Test(kv_kblk, put_get_round_trip_and_move) {
    const int shapes[][2] = {{64, 64}, {64, 32}, {128, 64}, {256, 128}, {512, 64}, {64, 4}};
    static uint8_t recs[16][KVKB_REC_MAX], blk[2][16 * KVKB_REC_MAX], back[KVKB_REC_MAX];
    static float x[512];
    unsigned r = 3;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int f = 0; f < 2; f++) {
            const int d = shapes[si][0], G = shapes[si][1] | (f ? KVQ_SZ8 : 0);
            const size_t rec = kvl_rec_bytes(4, d, G);
            cr_assert_leq(rec, KVKB_REC_MAX);
            memset(blk, 0x5A, sizeof blk);
            for (int u = 0; u < 16; u++) {
                for (int i = 0; i < d; i++) x[i] = 4 * frand(&r) - 2 + (i == 7 ? 6 : 0);
                kvq_encode(x, d, 4, G, recs[u]);
                kvkb_put(blk[0], (u * 5) % 16, recs[u], d, G); /* slots out of order */
            }
            for (int u = 0; u < 16; u++) {
                kvkb_get(blk[0], (u * 5) % 16, back, d, G);
                cr_assert(memcmp(back, recs[u], rec) == 0, "d %d group %d: slot %d", d, G, (u * 5) % 16);
            }
            /* a move: token 3 of block 0 to token 9 of block 1; block 0 unchanged */
            uint8_t before[16 * KVKB_REC_MAX];
            memcpy(before, blk[0], 16 * rec);
            kvkb_move(blk[1], 9, blk[0], 3, d, G);
            cr_assert(memcmp(before, blk[0], 16 * rec) == 0);
            kvkb_get(blk[1], 9, back, d, G);
            kvkb_get(blk[0], 3, recs[0], d, G);
            cr_assert(memcmp(back, recs[0], rec) == 0, "d %d group %d: moved token", d, G);
            /* the other slots of block 1 still hold the filler (a move writes one token) */
            static uint8_t filler[16 * KVKB_REC_MAX];
            memset(filler, 0x5A, sizeof filler);
            kvkb_get(blk[1], 8, back, d, G);
            kvkb_get(filler, 0, recs[1], d, G); /* a block of filler read the same way */
            cr_assert(memcmp(back, recs[1], rec) == 0);
        }
}

/* The layout itself (kv_kblk.h): token u's word k holds channels 4k, 4k+2,
 * 4k+1, 4k+3 in its nibbles 0..3, at byte 32k + 2u; scales after 8d bytes. */
Test(kv_kblk, word_layout) {
    enum { D = 64, G = 64 };
    uint8_t rec[D / 2 + 4] = {0}, blk[16 * (D / 2 + 4)];
    memset(blk, 0, sizeof blk);
    /* channel c's code (c + 1) % 16: byte c % 32, nibble c / 32 */
    for (int c = 0; c < D; c++) rec[c % 32] |= (uint8_t)(((c + 1) % 16) << (4 * (c / 32)));
    rec[D / 2] = 0x11, rec[D / 2 + 1] = 0x22, rec[D / 2 + 2] = 0x33, rec[D / 2 + 3] = 0x44;
    kvkb_put(blk, 5, rec, D, G);
    for (int k = 0; k < D / 4; k++) {
        const unsigned w = blk[32 * k + 10] | (unsigned)blk[32 * k + 11] << 8;
        const unsigned want = (unsigned)((4 * k + 1) % 16) | (unsigned)((4 * k + 3) % 16) << 4 |
                              (unsigned)((4 * k + 2) % 16) << 8 | (unsigned)((4 * k + 4) % 16) << 12;
        cr_assert_eq(w, want, "word %d: %04x, want %04x", k, w, want);
        /* what the kernel makes of it: (w | w << 12) & 0x0F0F0F0F = the four codes as bytes */
        const unsigned dw = (w | w << 12) & 0x0F0F0F0Fu;
        for (int j = 0; j < 4; j++) cr_assert_eq((dw >> (8 * j)) & 15, (unsigned)((4 * k + j + 1) % 16));
    }
    cr_assert_eq(blk[8 * D + 4 * 5], 0x11);
    cr_assert_eq(blk[8 * D + 4 * 5 + 3], 0x44);
}
