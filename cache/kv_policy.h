/* kv_policy: what a sequence's KV cache keeps, at which precision — the
 * importance-aware cache's configuration, its presets, and the exact memory
 * it will need (the server admits requests by that number).
 *
 * Tiers per (sequence, layer, KV head): *high* (FP16, or INT8 with key
 * balancing when hi_bits == 8), *low* (INT4/INT2 per-token asymmetric in
 * groups of `group` channels with fp16 scale and zero), or *dropped*
 * (lo_bits == 0). Keys and values of the low tier can have different
 * widths (lo_bits for keys, lo_v_bits for values): values quantize far more
 * easily than keys, so "4/2" (INT4 balanced keys, INT2 values) buys most of
 * INT4's quality at little more than INT2's memory. Which tokens stay high
 * is decided by `select`:
 *   persistence  Scissorhands: tokens whose attention stayed below the
 *                threshold (1/n_visible) most often over the last `window`
 *                steps are demoted first
 *   accumulated  H2O: accumulated attention normalized by the number of
 *                queries that saw the token; lowest first
 *   recent       StreamingLLM: only `sinks` + the `recent` window stay high
 *   none         nothing is ever demoted (full) or everything outside the
 *                recent window is (uniform quantization baselines)
 * The first `sinks` tokens and the last `recent` tokens are never demoted.
 * When the high tier exceeds `budget`, `chunk` tokens are demoted at once.
 *
 * Presets (kv_policy_preset): full, scissorhands, mikv, h2o, streaming,
 * quant4, quant2. Every knob can then be set on its own (kv_policy_set). */
#ifndef PIVOT_KV_POLICY_H
#define PIVOT_KV_POLICY_H

#include <stddef.h>

#include "kv.h"

typedef enum {
    KV_SELECT_NONE = 0,
    KV_SELECT_PERSISTENCE,
    KV_SELECT_ACCUMULATED,
    KV_SELECT_RECENT,
} kv_select;

/* Which low-tier records take clipped ranges (the `clip` knob): none
 * (min-max, "0"), keys and values ("1"), or values only ("values"; keys
 * keep min-max, whose extremes are what make a key stand out). */
typedef enum { KV_CLIP_NONE = 0, KV_CLIP_ALL = 1, KV_CLIP_VALUES = 2 } kv_clip;

/* Low-tier widths for a range of layers, or one KV head of them (the
 * `layer-bits` knob): layers first..last (their KV head `head`, or all
 * when head < 0) store keys at k bits and values at v bits instead of
 * lo_bits / lo_v_bits. Layers differ: on SmolLM2-135M two bits in layers
 * 5-9 cost the random-word copy little, the same in layers 15-24 most of it
 * (docs/KV_CACHE.md, "Bits per layer"); and heads differ more: a handful of
 * induction ("retrieval") heads do the copying ("Bits per head"), so bytes
 * go where they are missed. */
typedef struct {
    short first, last;
    signed char head; /* KV head, or -1 for every head of the layers */
    signed char k, v;
} kv_layer_bits;

#define KV_LAYER_BITS_MAX 12

/* How far clipped ranges may shrink in a range of layers (the `clip-floor`
 * knob): the narrowest range kvq_encode_clip tries there, as a fraction of
 * the group's min-max range, in [KVQ_CLIP_FULL, 1]. Layers differ: on SmolLM2-135M at
 * 0.25 of FP16, value ranges clipped in layers 0-14 hold the random-word
 * copy but cost text, in layers 15-29 they help both (docs/KV_CACHE.md,
 * "How far to clip, and where"). */
typedef struct {
    short first, last; /* 0 and KV_CLIP_ALL_LAYERS: every layer ("0.8") */
    float floor;
} kv_clip_floor;
#define KV_CLIP_FLOORS_MAX 6
#define KV_CLIP_ALL_LAYERS 32767
/* Room for kv_policy_describe with every knob and KV_LAYER_BITS_MAX entries:
 * the size of every buffer that holds a description (descriptions are also
 * compared as keys, so one cut short could make two policies equal). */
#define KV_POLICY_DESC_MAX 640

typedef struct kv_policy {
    char preset[24];  /* preset it started from ("full", "mikv", ...) */
    kv_select select;
    int hi_bits;      /* 16 or 8 */
    int lo_bits;      /* low-tier keys: 8, 4, 3 or 2; 0 = demoted tokens are dropped */
    int lo_v_bits;    /* low-tier values: 8, 4, 3 or 2; 0 = same as lo_bits (presets
                         leave it 0, so one knob sets both) */
    double budget;    /* high-tier tokens per head: >= 1 absolute, (0,1) fraction of
                         the sequence length, 0 = unlimited */
    int recent;       /* most recent tokens never demoted */
    int sinks;        /* first tokens never demoted */
    int window;       /* persistence window (steps) */
    double chunk;     /* tokens demoted at once: >= 1 absolute, (0,1) fraction of budget */
    int group;        /* channels per low-precision quantization group */
    int key_balance;  /* MiKV per-channel key balancing (1/0) */
    int value_norm;   /* with select=accumulated: a token's importance is its
                         normalized accumulated attention times the L2 norm
                         of its value (1/0; kv_policy_value_norm). What a
                         token adds to the output is p * v, so a small value
                         matters little however often it is attended (VATP,
                         Guo et al. 2024, uses the L1 norm; L2 does not change
                         under rotate=1). No effect with another select, so
                         the preset's value-norm survives select=persistence */
    int rotate;       /* randomized Hadamard rotation of keys, values and
                         queries before quantizing (kv_rot.h; 1/0); no effect
                         when nothing is quantized (FP16 high tier, no low
                         tier), so a preset's rotate=1 survives lo-bits=0 */
    int clip;         /* low tier: each group's range chosen for the least
                         squared error instead of min-max (kvq_encode_clip)
                         on the records kv_clip names; no effect without a
                         low tier */
    kv_clip_floor clip_floor[KV_CLIP_FLOORS_MAX]; /* where clip is on: per-layer
                         floors of the range search; a later entry wins */
    int n_clip_floor;
    int scale_bits;   /* low tier: each group's (scale, zero) as two fp16
                         (16; 0 reads as 16) or two bytes (8: KVQ_SZ8 in
                         kv_quant.h, 2 bytes a group less) */
    kv_layer_bits layer_bits[KV_LAYER_BITS_MAX]; /* per-layer widths; a later
                         entry wins where ranges overlap */
    int n_layer_bits;
    /* The `heads` knob: the model's top `heads` KV heads by induction score
     * (the heads that copy; `pivot heads`) get low-tier widths heads_k /
     * heads_v. A request until kv_policy_resolve_heads turns it into
     * layer-bits entries with the model's ranking (0 afterwards); a cache
     * built from an unresolved policy leaves those heads uniform. */
    int heads;
    signed char heads_k, heads_v;
    double floor;     /* elastic compression (kv_seq_set_budget): the lowest
                         budget the server may lower this policy to under
                         memory pressure, same units as budget; 0 = the
                         protected tokens (sinks + recent) only. Not part of
                         what the cache builds, so not in kv_policy_describe */
} kv_policy;

/* Fills *p with a preset. PV_ENOTFOUND for an unknown name. */
int kv_policy_preset(const char *name, kv_policy *p);
/* Sets one knob by its CLI/API name: select, hi-bits, lo-bits, lo-k-bits,
 * lo-v-bits, layer-bits, heads, budget, recent, sinks, window, chunk, group,
 * key-balance, rotate, value-norm, clip (1, 0 or "values": kv_clip), clip-floor ("0.8", or
 * ranges "0-14:0.8+15-29:0.5"; "none"), scale-bits (16 or 8), floor. heads is "N" (the top N heads at INT8
 * keys and values), "N:K/V" or "N:B", 0 for none. layer-bits is "A-B:K/V" ranges joined by
 * '+' ("15-24:4/4+5-9:2", a single layer "7:4/4", one KV head of layers
 * "18.2:8/8" or "15-24.1:4"; "none" clears them). Values
 * are validated; err says what is wrong ("kv policy: lo-bits must be 0, 2 or
 * 4, got 3"). lo-bits sets keys and values ("4", or "4/2" for K/V);
 * lo-k-bits and lo-v-bits set one side only. */
int kv_policy_set(kv_policy *p, const char *knob, const char *value, char *err, size_t errlen);
/* The clip knob as a spec spells it: "clip=0", "clip=1" or "clip=values". */
const char *kv_clip_spec(int clip);
/* The floors of layer L's low key and value records for kvq_encode_clip:
 * 1 (min-max) where clip leaves them alone, else the last clip-floor entry
 * that names L, KVQ_CLIP_FULL (the full search) without one. */
void kv_policy_clip_floors(const kv_policy *p, int layer, float *kfloor, float *vfloor);
/* "PRESET[,knob=value...]" in one string, e.g. "mikv,budget=0.25,lo-bits=4";
 * ';' separates knobs as ',' does ("mikv;budget=0.25", the form of a spec
 * inside pivot eval's comma-separated --policies list). */
int kv_policy_parse(const char *spec, kv_policy *p, char *err, size_t errlen);
/* Resolves the `heads` knob with a model's ranking: rank[0..n_rank) are KV
 * heads (layer * n_kv_heads + head), best first. The top p->heads become
 * layer-bits entries placed after the explicit ones, so they win over a
 * layer range that covers them, while an explicit entry that names one of
 * them by its index ("18.2:4/4") keeps it (no entry is added for that
 * head), and p->heads becomes 0. Without a low tier
 * (lo-bits=0), or without a ranking (n_rank 0: a model the probe cannot
 * run), the knob is cleared and the low tier stays uniform. PV_EINVAL when
 * the entries would exceed KV_LAYER_BITS_MAX. */
int kv_policy_resolve_heads(kv_policy *p, const int *rank, int n_rank, int n_kv_heads, char *err,
                            size_t errlen);
/* Cross-knob checks (impossible combinations), e.g. hi_bits 8 without
 * key balancing, group not dividing head_dim (checked in kv_create). */
int kv_policy_validate(const kv_policy *p, char *err, size_t errlen);
/* One-line description: "mikv(select=persistence,hi=16,lo=4/2,budget=0.2,...)"
 * (lo=N when keys and values have the same width). */
void kv_policy_describe(const kv_policy *p, char *buf, size_t len);

/* Checks that a policy can be served with this shape (kv_create's checks,
 * without creating anything): 0, or a PV_* code with the reason in err. */
int kv_policy_check_shape(const kv_policy *p, const kv_shape *s, char *err, size_t errlen);

/* Bits of the low tier's values (lo_v_bits, or lo_bits when that is 0). */
static inline int kv_policy_lo_v_bits(const kv_policy *p) {
    return p->lo_v_bits ? p->lo_v_bits : p->lo_bits;
}

/* The low tier's key and value widths of one (layer, KV head): lo_bits /
 * lo_v_bits unless a layer-bits entry names it (both 0 without a low tier;
 * the last entry that names it wins). The one rule the cache, its byte
 * counts and admission all apply. */
/* Entry r names (layer, head): by the head's own index when exact, or also
 * as one of every head of its layers (head -1) when not. */
static inline int kv_layer_bits_names(const kv_layer_bits *r, int layer, int head, int exact) {
    return layer >= r->first && layer <= r->last && (r->head == head || (!exact && r->head < 0));
}

static inline void kv_policy_head_widths(const kv_policy *p, int layer, int head, int *kb, int *vb) {
    *kb = p->lo_bits;
    *vb = p->lo_bits ? kv_policy_lo_v_bits(p) : 0;
    for (int i = 0; p->lo_bits && i < p->n_layer_bits; i++)
        if (kv_layer_bits_names(&p->layer_bits[i], layer, head, 0)) {
            *kb = p->layer_bits[i].k;
            *vb = p->layer_bits[i].v;
        }
}

/* The cache rotates (kv_rot.h): rotate=1 and something is quantized (a low
 * tier or an INT8 high tier); rotating FP16-only caches would buy nothing. */
static inline int kv_policy_rotates(const kv_policy *p) {
    return p->rotate && (p->lo_bits || p->hi_bits == 8);
}

/* Demotion ranks by attention x ||v|| (the value-norm knob in effect). */
static inline int kv_policy_value_norm(const kv_policy *p) {
    return p->value_norm && p->select == KV_SELECT_ACCUMULATED;
}

/* Elastic compression may apply: the policy demotes to a low tier (nothing
 * it demotes is lost: no layer-bits entry of width 0 makes heads drop) and
 * has a budget to lower. */
static inline int kv_policy_elastic(const kv_policy *p) {
    for (int i = 0; i < p->n_layer_bits; i++)
        if (!p->layer_bits[i].k) return 0;
    return p->lo_bits > 0 && p->select != KV_SELECT_NONE && p->budget > 0;
}

/* kv_policy_seq_bytes (the bytes admission reserves) is in kv_tier.h: it
 * applies the tier rule. */

/* The policy is served by the plain FP16 cache (kv_fp16.c): nothing is ever
 * demoted and the high tier is FP16 — `full`, or any policy equal to it in
 * effect. The one test for "is this the plain cache?" everywhere. */
static inline int kv_policy_is_plain(const kv_policy *p) {
    return p->select == KV_SELECT_NONE && p->hi_bits == 16;
}

#endif
