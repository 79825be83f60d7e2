/* tok_internal: the tokenizer's private types, shared by tokenizer.c
 * (loading, lookup, decoding), tok_encode.c (special-token partition and the
 * two merge algorithms) and tok_pretok.c (pre-tokenizer scanners). Not part
 * of the public contract. */
#ifndef PIVOT_TOK_INTERNAL_H
#define PIVOT_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

enum { TOK_KIND_BPE = 1, TOK_KIND_SPM = 2 };

/* Pre-tokenizer families (tokenizer.ggml.pre). */
enum { TOK_PRE_GPT2 = 0, TOK_PRE_SMOLLM, TOK_PRE_LLAMA3, TOK_PRE_QWEN2 };

/* tokenizer.ggml.token_type values. */
enum {
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

typedef struct {
    uint64_t key; /* (left id << 32) | right id; 0 marks an empty slot */
    int32_t rank;
    int32_t result;
} tok_merge;

struct tok_vocab {
    int kind, pre;
    int ignore_merges; /* Llama-3: a piece that is a whole token skips merging */
    int n;
    /* Token text as stored in the file, and the bytes it decodes to. */
    char *text;
    uint32_t *text_off; /* n + 1 offsets into text */
    char *bytes;
    uint32_t *bytes_off; /* n + 1 offsets into bytes */
    float *score;
    uint8_t *type;
    int32_t *hash; /* open addressing on token text, -1 = empty */
    uint32_t hash_mask;
    tok_merge *merges; /* open addressing on (left, right) */
    uint32_t merge_mask;
    int32_t byte_tok[256]; /* token for a single byte (BPE alphabet / <0xXX>), or -1 */
    int32_t bos, eos, eot, unk;
    int add_bos, add_space_prefix;
    int32_t *special; /* control/user-defined/unknown ids, longest text first */
    int n_special;
    int32_t *eog;
    int n_eog;
};

static inline const char *tok_text(const tok_vocab *v, int32_t id, size_t *len) {
    *len = v->text_off[id + 1] - v->text_off[id];
    return v->text + v->text_off[id];
}

/* Merge rule for the pair (l, r), or NULL. */
const tok_merge *tok_merge_find(const tok_vocab *v, int32_t l, int32_t r);

/* Growable list of piece end offsets (bytes) produced by the pre-tokenizer. */
typedef struct {
    size_t *end;
    size_t n, cap;
} tok_spans;

/* Split s[0..len) into pre-tokens; appends each piece's end offset
 * (relative to s) to out. Returns 0 or PV_ENOMEM. */
int tok_pretokenize(int pre, const char *s, size_t len, tok_spans *out);
/* Name -> TOK_PRE_* (unknown names give the GPT-2 default). */
int tok_pre_from_name(const char *name, size_t len);

#endif
