/* kv_kblk: the low tier's 4-bit keys in blocks of 16 tokens, stored the way
 * the AVX-512 key kernel reads them (kvq_avx512_dotb).
 *
 * Why: the decode walk's key kernel (dotn512t, kv_quant_avx512.c) spends
 * most of its shuffles turning 16 records into "dword k of every token"
 * vectors (codes64 + a 4-stage transpose), and gathers the 16 records'
 * scale/zero bytes. Stored already transposed, a block's vector k is one
 * 32-byte load widened to dwords and two bit operations, and the scales
 * are one contiguous load. Same bytes per token as the records.
 *
 * Block of 16 tokens (16 x krec bytes, krec = kvl_rec_bytes(4, d, group)):
 *   codes: for k = 0 .. d/4 - 1, 16 little-endian uint16, token u's word
 *     w = c[4k] | c[4k+2] << 4 | c[4k+1] << 8 | c[4k+3] << 12
 *     (so (w | w << 12) & 0x0F0F0F0F is the dword c[4k..4k+3] as bytes);
 *   then per group g: 16 tokens' scale/zero bytes (kvq_sz_bytes each),
 *     token u's at u * kvq_sz_bytes, the record's own bytes unchanged.
 * A page of KVL_PAGE tokens holds KVL_PAGE / 16 blocks where the records
 * were. Only the key side of a low tier whose format kvkb_ok takes, and
 * only where decode and prompts both run the AVX-512 run kernels
 * (kv_mixed.c decides; kvmx_blocks_run_ok); every other reader goes
 * through kvkb_get. */
#ifndef PIVOT_KV_KBLK_H
#define PIVOT_KV_KBLK_H

#include <stddef.h>
#include <stdint.h>

#define KVKB_TOKENS 16
/* Bytes of a blockable record at most (kvkb_ok: head_dim <= 512, 4-bit
 * codes, fp16 scale and zero per group of >= 4 channels). */
#define KVKB_REC_MAX (512 / 2 + 512)

/* Where token i of a page lives: its block starts this many bytes after the
 * page's first key record (krec bytes a record), and it is slot
 * i % KVKB_TOKENS there. */
static inline size_t kvkb_block_off(int i, size_t krec) { return (size_t)(i - i % KVKB_TOKENS) * krec; }

/* Whether 4-bit keys of head_dim d and format group (kv_side.h) can be
 * blocked: d a multiple of 64 up to 512 (the kernel's passes), groups of
 * whole dwords. */
int kvkb_ok(int bits, int d, int group);

/* Token u (0..15) of a block <- a record (kvq_encode's layout); the other
 * tokens' bytes are left as they are. */
void kvkb_put(uint8_t *blk, int u, const uint8_t *rec, int d, int group);

/* A record (kvq_encode's layout) <- token u of a block. */
void kvkb_get(const uint8_t *blk, int u, uint8_t *rec, int d, int group);

/* Token su of block src to token du of block dst (words and scale bytes
 * copied as they are: a demotion's merge moves many records a step). */
void kvkb_move(uint8_t *dst, int du, const uint8_t *src, int su, int d, int group);

#endif
