/* kv_policy: presets, knob parsing and validation, and the memory a
 * sequence will need (kv_create.c picks the cache that implements one). */
#include "kv_policy.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kv_quant.h"
#include "pverr.h"

/* Every message names the module; fmt is always a literal. */
#define fail(err, errlen, rc, fmt, ...) pv_fail(err, errlen, rc, "kv policy: " fmt, ##__VA_ARGS__)

/* Defaults follow the papers: Scissorhands r = 10, w = 400, m = 0.4·B;
 * StreamingLLM 4 sinks; KIVI keeps a short FP16 residual (32) of recent
 * tokens. MiKV's paper uses INT2 for the low tier; measured on what only
 * the cache can answer (random-word copy, key-value lookup; docs/KV_CACHE.md)
 * INT2 values lose most of the copy and 3-bit keys too, while rotated INT4
 * keys with rotated INT3 values keep nearly all of it: so mikv is rotated
 * (kv_rot.h), balanced INT4 keys + INT3 values in groups of 64 (min-max
 * ranges: clip=1 lowered the squared error but lost accuracy on both tasks),
 * an INT8 high tier (half the bytes of FP16, so the same memory keeps twice
 * the important tokens, and one 32-token page of protected tokens costs
 * half as much), 8% of tokens high and 4 sinks + 16 recent: about 0.31 of
 * FP16 at 512 tokens. And the few KV heads that copy (the model's top five
 * by induction score, found at load: kv_policy_resolve_heads) keep INT8
 * low tokens: they hold most of what a copy or a lookup reads, for ~1.5% of
 * FP16's bytes (docs/KV_CACHE.md, "Bits per head"). Low groups keep their
 * scale and zero point in a byte each (scale-bits=8): the same copy and
 * text figures for 1.5 points less of FP16 (docs/KV_CACHE.md, "At 0.25
 * with two-byte scales"; GPU specs say scale-bits=16). The high tier keeps
 * the tokens with the most attention accumulated per query that saw them
 * (H2O's score, as MiKV's paper does): against Scissorhands' persistence
 * at equal bytes it lowered the KL to full on every text, at 0.33 and at
 * 0.25, for 4 more bytes of tracker state per high token, copy and lookup
 * unchanged (docs/KV_CACHE.md, "Persistence or accumulated attention").
 * The budgets are starting points: `pivot eval --kv-ratio` solves them for
 * an equal memory comparison. */
typedef struct {
    const char *name;
    kv_policy p;
} preset;

static const preset presets[] = {
    {"full", {.select = KV_SELECT_NONE, .hi_bits = 16, .lo_bits = 0, .budget = 0, .recent = 0,
              .sinks = 0, .window = 400, .chunk = 0.4, .group = 32, .key_balance = 0}},
    {"scissorhands", {.select = KV_SELECT_PERSISTENCE, .hi_bits = 16, .lo_bits = 0, .budget = 0.3,
                      .recent = 10, .sinks = 4, .window = 400, .chunk = 0.4, .group = 32,
                      .key_balance = 0}},
    {"mikv", {.select = KV_SELECT_ACCUMULATED, .hi_bits = 8, .lo_bits = 4, .lo_v_bits = 3,
              .budget = 0.08, .recent = 16, .sinks = 4, .window = 400, .chunk = 0.4, .group = 64,
              .key_balance = 1, .rotate = 1, .clip = 0, .heads = 5, .heads_k = 8, .heads_v = 8,
              .scale_bits = 8, .value_norm = 1}},
    {"h2o", {.select = KV_SELECT_ACCUMULATED, .hi_bits = 16, .lo_bits = 0, .budget = 0.3,
             .recent = 32, .sinks = 4, .window = 400, .chunk = 0.4, .group = 32,
             .key_balance = 0}},
    {"streaming", {.select = KV_SELECT_RECENT, .hi_bits = 16, .lo_bits = 0, .budget = 0.3,
                   .recent = 32, .sinks = 4, .window = 400, .chunk = 0.4, .group = 32,
                   .key_balance = 0}},
    {"quant4", {.select = KV_SELECT_RECENT, .hi_bits = 16, .lo_bits = 4, .budget = 0,
                .recent = 32, .sinks = 0, .window = 400, .chunk = 0, .group = 32,
                .key_balance = 1}},
    {"quant2", {.select = KV_SELECT_RECENT, .hi_bits = 16, .lo_bits = 2, .budget = 0,
                .recent = 32, .sinks = 0, .window = 400, .chunk = 0, .group = 32,
                .key_balance = 1}},
};

#define N_PRESETS (sizeof presets / sizeof presets[0])

int kv_policy_preset(const char *name, kv_policy *p) {
    if (!name || !p) return PV_EINVAL;
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcasecmp(name, presets[i].name)) continue;
        *p = presets[i].p;
        snprintf(p->preset, sizeof p->preset, "%s", presets[i].name);
        return PV_OK;
    }
    return PV_ENOTFOUND;
}

/* The low tier's code widths (kv_quant.h has a record format for each; 8
 * is the INT8 high tier's format, for layers that miss every bit). */
static int lo_width_ok(long b) { return b == 2 || b == 3 || b == 4 || b == 8; }

static const char *select_names[] = {"none", "persistence", "accumulated", "recent"};

const char *kv_clip_spec(int clip) {
    return clip == KV_CLIP_VALUES ? "clip=values" : clip ? "clip=1" : "clip=0";
}

static int parse_long(const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static int parse_double(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

/* Budgets and chunks are either whole token counts (>= 1) or fractions in
 * (0, 1); 2.5 tokens is a typo, not a request. */
static int count_or_fraction(double x) { return x == 0 || (x > 0 && x < 1) || (x >= 1 && x == floor(x) && x <= 1e9); }

/* "X" or "X<sep>Y" (non-negative integers): *y = *x for the first. -1 if
 * neither. One rule for a range's layers ("15-24", "7") and widths ("4/3", "2"). */
static int parse_pair(const char *t, char sep, int *x, int *y) {
    char *end;
    long a = strtol(t, &end, 10), b;
    if (end == t || a < 0 || a > 4095) return -1;
    if (*end == 0) b = a;
    else if (*end != sep || (b = strtol(end + 1, &end, 10), *end) || b < 0 || b > 4095) return -1;
    *x = (int)a, *y = (int)b;
    return 0;
}

/* A layer-bits entry's widths: the low tier's (lo_width_ok), or 0 for
 * both: those heads drop what they demote (DuoAttention's streaming heads
 * keep only their high tier, while the heads that copy keep a low tier). */
static int entry_widths_ok(long k, long v) { return (k == 0 && v == 0) || (lo_width_ok(k) && lo_width_ok(v)); }

/* Calls fn on each '+'-joined entry of value (a writable copy, so fn may cut
 * it). Returns the number of entries, 0 for "none" or "", -1 when value has
 * max bytes or more (no list of valid entries is that long), an empty list
 * or an entry fn refuses. One walker for layer-bits and clip-floor lists. */
static int each_entry(const char *value, size_t max, int (*fn)(char *entry, int i, void *out),
                      void *out) {
    if (!strcasecmp(value, "none") || !*value) return 0;
    char buf[KV_POLICY_DESC_MAX], *save = NULL;
    if (max > sizeof buf) max = sizeof buf;
    if (strlen(value) >= max) return -1;
    strcpy(buf, value);
    int n = 0;
    for (char *r = strtok_r(buf, "+", &save); r; r = strtok_r(NULL, "+", &save))
        if (fn(r, n++, out)) return -1;
    return n ? n : -1;
}

/* One layer-bits entry "A-B[.H]:K/V" into ((kv_layer_bits *)out)[i]. */
static int layer_bits_entry(char *r, int i, void *out) {
    char *colon = strchr(r, ':'), *dot = strchr(r, '.');
    int a, b, k, v, h = -1, h2;
    if (i == KV_LAYER_BITS_MAX || !colon || (dot && dot > colon)) return -1;
    *colon = 0;
    if (dot) { /* one KV head of the layers: "18.2", "15-24.1" */
        *dot = 0;
        if (parse_pair(dot + 1, 0, &h, &h2) || h > 127) return -1; /* a plain number */
    }
    if (parse_pair(r, '-', &a, &b) || parse_pair(colon + 1, '/', &k, &v) || b < a ||
        !entry_widths_ok(k, v))
        return -1;
    ((kv_layer_bits *)out)[i] =
        (kv_layer_bits){(short)a, (short)b, (signed char)h, (signed char)k, (signed char)v};
    return 0;
}

/* "A-B[.H]:K/V" entries joined by '+' into p->layer_bits ("none" clears). */
static int parse_layer_bits(kv_policy *p, const char *value, char *err, size_t errlen) {
    kv_layer_bits lb[KV_LAYER_BITS_MAX];
    int n = each_entry(value, 256, layer_bits_entry, lb);
    if (n < 0)
        return fail(err, errlen, PV_EINVAL,
                    "layer-bits must be up to %d ranges FIRST-LAST[.HEAD]:K/V of 2, 3, 4 or 8 bits "
                    "(0: drop) joined by '+' (e.g. 15-24:4/4+5-9:2, 18.2:8/8 for KV head 2 of layer "
                    "18), or none; got '%s'",
                    KV_LAYER_BITS_MAX, value);
    memcpy(p->layer_bits, lb, sizeof lb[0] * (size_t)n);
    p->n_layer_bits = n;
    return PV_OK;
}

void kv_policy_clip_floors(const kv_policy *p, int layer, float *kfloor, float *vfloor) {
    float f = KVQ_CLIP_FULL;
    for (int i = 0; i < p->n_clip_floor; i++)
        if (layer >= p->clip_floor[i].first && layer <= p->clip_floor[i].last) f = p->clip_floor[i].floor;
    *kfloor = p->clip == KV_CLIP_ALL ? f : 1.0f;
    *vfloor = p->clip != KV_CLIP_NONE ? f : 1.0f;
}

/* One clip-floor entry, "F" (every layer) or "FIRST-LAST:F" with F in
 * [0.5, 1], into ((kv_clip_floor *)out)[i]. */
static int clip_floor_entry(char *r, int i, void *out) {
    char *colon = strchr(r, ':');
    int a = 0, b = KV_CLIP_ALL_LAYERS;
    double f;
    if (i == KV_CLIP_FLOORS_MAX) return -1;
    if (colon) {
        *colon = 0;
        if (parse_pair(r, '-', &a, &b) || b < a || b >= KV_CLIP_ALL_LAYERS) return -1;
    }
    if (parse_double(colon ? colon + 1 : r, &f) || !(f >= KVQ_CLIP_FULL && f <= 1.0)) return -1;
    ((kv_clip_floor *)out)[i] = (kv_clip_floor){(short)a, (short)b, (float)f};
    return 0;
}

/* clip-floor entries joined by '+' into p->clip_floor ("none" clears). */
static int parse_clip_floor(kv_policy *p, const char *value, char *err, size_t errlen) {
    kv_clip_floor cf[KV_CLIP_FLOORS_MAX];
    int n = each_entry(value, 160, clip_floor_entry, cf);
    if (n < 0)
        return fail(err, errlen, PV_EINVAL,
                    "clip-floor must be a fraction in [0.5, 1] (the narrowest clipped range tried), "
                    "or up to %d ranges FIRST-LAST:F joined by '+' (e.g. 0-14:0.8+15-29:0.5), or "
                    "none; got '%s'",
                    KV_CLIP_FLOORS_MAX, value);
    memcpy(p->clip_floor, cf, sizeof cf[0] * (size_t)n);
    p->n_clip_floor = n;
    return PV_OK;
}

/* "N", "N:B" or "N:K/V" into heads / heads_k / heads_v (INT8 when no
 * widths are given: what "Bits per head" measured). */
static int parse_heads(kv_policy *p, const char *value, char *err, size_t errlen) {
    char buf[32], *colon;
    int k = 8, v = 8;
    long n;
    snprintf(buf, sizeof buf, "%s", value);
    if ((colon = strchr(buf, ':'))) *colon = 0;
    if (strlen(value) >= sizeof buf || parse_long(buf, 0, KV_LAYER_BITS_MAX, &n) ||
        (colon && (parse_pair(colon + 1, '/', &k, &v) || !lo_width_ok(k) || !lo_width_ok(v))))
        return fail(err, errlen, PV_EINVAL,
                    "heads must be N (0-%d: the top N KV heads by induction score at INT8), or "
                    "N:K/V with widths of 2, 3, 4 or 8 bits; got '%s'",
                    KV_LAYER_BITS_MAX, value);
    p->heads = (int)n;
    p->heads_k = (signed char)k, p->heads_v = (signed char)v;
    return PV_OK;
}

/* An explicit layer-bits entry names (layer, head) by the head's own index
 * ("18.2", "15-24.2"), not as one of a range's heads. */
static int names_head(const kv_policy *p, int layer, int head) {
    for (int i = 0; i < p->n_layer_bits; i++)
        if (kv_layer_bits_names(&p->layer_bits[i], layer, head, 1)) return 1;
    return 0;
}

int kv_policy_resolve_heads(kv_policy *p, const int *rank, int n_rank, int n_kv_heads, char *err,
                            size_t errlen) {
    if (!p || p->heads <= 0) return PV_OK;
    int n = p->heads < n_rank ? p->heads : n_rank;
    if (!p->lo_bits || !rank || n_kv_heads <= 0 || n < 0) n = 0; /* nothing to widen, or no ranking */
    if (n_kv_heads > 127) /* kv_layer_bits.head is a signed char */
        return fail(err, errlen, PV_EINVAL, "heads: %d KV heads per layer is more than 127", n_kv_heads);
    for (int i = 0; i < n; i++)
        if (rank[i] < 0 || rank[i] / n_kv_heads > 32767)
            return fail(err, errlen, PV_EINVAL, "heads: ranked head %d is not a KV head", rank[i]);
    /* After the explicit entries, so a ranked head keeps its widths inside
     * a layer range written for the others ("10-29:3/2" would otherwise
     * take a copying head's INT8 away unnoticed); a ranked head that an
     * explicit entry names by its own index is left to that entry. */
    kv_layer_bits add[KV_LAYER_BITS_MAX];
    int n_add = 0;
    for (int i = 0; i < n; i++) {
        short layer = (short)(rank[i] / n_kv_heads);
        signed char head = (signed char)(rank[i] % n_kv_heads);
        if (names_head(p, layer, head)) continue;
        if (p->n_layer_bits + n_add == KV_LAYER_BITS_MAX)
            return fail(err, errlen, PV_EINVAL,
                        "heads=%d and %d layer-bits ranges make more than %d entries", p->heads,
                        p->n_layer_bits, KV_LAYER_BITS_MAX);
        add[n_add++] = (kv_layer_bits){layer, layer, head, p->heads_k, p->heads_v};
    }
    memcpy(p->layer_bits + p->n_layer_bits, add, sizeof add[0] * (size_t)n_add);
    p->n_layer_bits += n_add;
    p->heads = 0;
    return PV_OK;
}

/* The knobs that take 16 or 8 (hi-bits, scale-bits). */
static int set_16_or_8(const char *knob, const char *value, int *dst, char *err, size_t errlen) {
    long l;
    if (parse_long(value, 0, 64, &l) || (l != 16 && l != 8))
        return fail(err, errlen, PV_EINVAL, "%s must be 16 or 8, got '%s'", knob, value);
    *dst = (int)l;
    return PV_OK;
}

/* The on/off knobs: key-balance, rotate, value-norm and clip (which also takes
 * "values", kv_clip). PV_ENOTFOUND when knob is none of them. */
static int set_flag(kv_policy *p, const char *knob, const char *value, char *err, size_t errlen) {
    int *flag = !strcmp(knob, "key-balance") ? &p->key_balance
                : !strcmp(knob, "rotate")      ? &p->rotate
                : !strcmp(knob, "value-norm")  ? &p->value_norm
                : !strcmp(knob, "clip")        ? &p->clip
                                               : NULL;
    if (!flag) return PV_ENOTFOUND;
    if (flag == &p->clip && !strcasecmp(value, "values"))
        *flag = KV_CLIP_VALUES;
    else if (!strcmp(value, "1") || !strcasecmp(value, "on") || !strcasecmp(value, "true"))
        *flag = 1;
    else if (!strcmp(value, "0") || !strcasecmp(value, "off") || !strcasecmp(value, "false"))
        *flag = 0;
    else
        return fail(err, errlen, PV_EINVAL, "%s must be 1 or 0%s, got '%s'", knob,
                    flag == &p->clip ? " (or values)" : "", value);
    return PV_OK;
}

int kv_policy_set(kv_policy *p, const char *knob, const char *value, char *err, size_t errlen) {
    if (!p || !knob || !value) return fail(err, errlen, PV_EINVAL, "missing knob or value");
    long l;
    double d;
    if (!strcmp(knob, "select")) {
        for (int i = 0; i < 4; i++)
            if (!strcasecmp(value, select_names[i])) {
                p->select = (kv_select)i;
                return PV_OK;
            }
        return fail(err, errlen, PV_EINVAL,
                    "select must be persistence, accumulated, recent or none, got '%s'", value);
    }
    if (!strcmp(knob, "hi-bits")) return set_16_or_8(knob, value, &p->hi_bits, err, errlen);
    if (!strcmp(knob, "scale-bits")) return set_16_or_8(knob, value, &p->scale_bits, err, errlen);
    if (!strcmp(knob, "lo-bits")) { /* "N" (keys and values) or "K/V" */
        char kb[16], *slash;
        long vb = 0;
        snprintf(kb, sizeof kb, "%s", value);
        if ((slash = strchr(kb, '/'))) *slash = 0;
        if (strlen(value) >= sizeof kb || parse_long(kb, 0, 64, &l) ||
            (l != 0 && !lo_width_ok(l)) ||
            (slash && (parse_long(slash + 1, 0, 64, &vb) || !lo_width_ok(vb) || l == 0)))
            return fail(err, errlen, PV_EINVAL,
                        "lo-bits must be 0, 2, 3, 4 or 8 (or K/V bits, e.g. 4/3), got '%s'",
                        value);
        p->lo_bits = (int)l;
        p->lo_v_bits = slash && vb != l ? (int)vb : 0;
        return PV_OK;
    }
    if (!strcmp(knob, "layer-bits")) return parse_layer_bits(p, value, err, errlen);
    if (!strcmp(knob, "clip-floor")) return parse_clip_floor(p, value, err, errlen);
    if (!strcmp(knob, "heads")) return parse_heads(p, value, err, errlen);
    if (!strcmp(knob, "lo-k-bits") || !strcmp(knob, "lo-v-bits")) {
        if (parse_long(value, 0, 64, &l) || !lo_width_ok(l))
            return fail(err, errlen, PV_EINVAL, "%s must be 2, 3, 4 or 8, got '%s'", knob, value);
        /* One side only: pin the other to what it is now. Turning a dropping
         * policy (lo-bits 0) into a quantizing one takes both. */
        if (!p->lo_bits && knob[3] == 'v')
            return fail(err, errlen, PV_EINVAL,
                        "lo-v-bits=%ld needs a low tier; set lo-bits or lo-k-bits first", l);
        int v = p->lo_bits ? kv_policy_lo_v_bits(p) : (int)l;
        if (knob[3] == 'k') p->lo_bits = (int)l;
        else v = (int)l;
        p->lo_v_bits = v == p->lo_bits ? 0 : v;
        return PV_OK;
    }
    if (!strcmp(knob, "budget") || !strcmp(knob, "chunk") || !strcmp(knob, "floor")) {
        if (parse_double(value, &d) || !count_or_fraction(d))
            return fail(err, errlen, PV_EINVAL,
                        "%s must be a whole number of tokens (>= 1), a fraction in (0,1) or 0, "
                        "got '%s'",
                        knob, value);
        if (knob[0] == 'b') p->budget = d;
        else if (knob[0] == 'f') p->floor = d;
        else p->chunk = d;
        return PV_OK;
    }
    struct {
        const char *name;
        long lo, hi;
        int *dst;
    } ints[] = {
        {"recent", 0, 1L << 24, &p->recent},
        {"sinks", 0, 1L << 24, &p->sinks},
        {"window", 2, 65535, &p->window},
        {"group", 8, 4096, &p->group},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(knob, ints[i].name)) continue;
        if (parse_long(value, ints[i].lo, ints[i].hi, &l))
            return fail(err, errlen, PV_EINVAL, "%s must be an integer in [%ld, %ld], got '%s'",
                        knob, ints[i].lo, ints[i].hi, value);
        if (!strcmp(knob, "group") && l % 8)
            return fail(err, errlen, PV_EINVAL, "group must be a multiple of 8, got %ld", l);
        *ints[i].dst = (int)l;
        return PV_OK;
    }
    int rc = set_flag(p, knob, value, err, errlen);
    if (rc != PV_ENOTFOUND) return rc;
    return fail(err, errlen, PV_EINVAL,
                "unknown knob '%s' (select, hi-bits, lo-bits, lo-k-bits, lo-v-bits, layer-bits, heads, "
                "budget, recent, sinks, window, chunk, group, key-balance, rotate, value-norm, clip, clip-floor, "
                "scale-bits, floor)",
                knob);
}

int kv_policy_parse(const char *spec, kv_policy *p, char *err, size_t errlen) {
    if (!spec || !p) return fail(err, errlen, PV_EINVAL, "empty policy");
    char buf[512];
    if (strlen(spec) >= sizeof buf) return fail(err, errlen, PV_EINVAL, "policy string too long");
    strcpy(buf, spec);
    /* ';' separates knobs too: lists of specs (pivot eval --policies) keep
     * ',' between specs, and a spec copied from one must work alone */
    char *save = NULL, *tok = strtok_r(buf, ",;", &save);
    if (!tok) return fail(err, errlen, PV_EINVAL, "empty policy");
    while (isspace((unsigned char)*tok)) tok++;
    if (kv_policy_preset(tok, p))
        return fail(err, errlen, PV_ENOTFOUND,
                    "unknown preset '%s' (full, scissorhands, mikv, h2o, streaming, quant4, quant2)",
                    tok);
    while ((tok = strtok_r(NULL, ",;", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) return fail(err, errlen, PV_EINVAL, "expected knob=value, got '%s'", tok);
        *eq = 0;
        int rc = kv_policy_set(p, tok, eq + 1, err, errlen);
        if (rc) return rc;
    }
    return kv_policy_validate(p, err, errlen);
}

int kv_policy_validate(const kv_policy *p, char *err, size_t errlen) {
    if (!p) return fail(err, errlen, PV_EINVAL, "no policy");
    if ((int)p->select < 0 || p->select > KV_SELECT_RECENT)
        return fail(err, errlen, PV_EINVAL, "unknown select %d", (int)p->select);
    if (p->hi_bits != 16 && p->hi_bits != 8)
        return fail(err, errlen, PV_EINVAL, "hi-bits must be 16 or 8, got %d", p->hi_bits);
    if (p->lo_bits != 0 && !lo_width_ok(p->lo_bits))
        return fail(err, errlen, PV_EINVAL, "lo-bits must be 0, 2, 3, 4 or 8, got %d", p->lo_bits);
    if (p->lo_v_bits != 0 && !lo_width_ok(p->lo_v_bits))
        return fail(err, errlen, PV_EINVAL, "lo-v-bits must be 2, 3, 4 or 8, got %d", p->lo_v_bits);
    if (p->lo_bits == 0 && p->lo_v_bits != 0)
        return fail(err, errlen, PV_EINVAL,
                    "lo-v-bits=%d with lo-bits=0: demoted tokens are dropped, so values cannot "
                    "be kept",
                    p->lo_v_bits);
    if (p->n_layer_bits < 0 || p->n_layer_bits > KV_LAYER_BITS_MAX)
        return fail(err, errlen, PV_EINVAL, "%d layer-bits ranges (at most %d)", p->n_layer_bits,
                    KV_LAYER_BITS_MAX);
    if (p->n_layer_bits && !p->lo_bits)
        return fail(err, errlen, PV_EINVAL,
                    "layer-bits sets low-tier widths, and lo-bits=0 has no low tier");
    for (int i = 0; i < p->n_layer_bits; i++) {
        const kv_layer_bits *r = &p->layer_bits[i];
        if (r->first < 0 || r->last < r->first || r->head < -1 || !entry_widths_ok(r->k, r->v))
            return fail(err, errlen, PV_EINVAL, "layer-bits range %d-%d:%d/%d is not valid",
                        r->first, r->last, r->k, r->v);
    }
    if (p->heads < 0 || p->heads > KV_LAYER_BITS_MAX ||
        (p->heads && (!lo_width_ok(p->heads_k) || !lo_width_ok(p->heads_v))))
        return fail(err, errlen, PV_EINVAL, "heads=%d:%d/%d is not valid", p->heads, p->heads_k,
                    p->heads_v);
    /* checked here, not only when a model resolves it (after loading) */
    if (p->lo_bits && p->heads + p->n_layer_bits > KV_LAYER_BITS_MAX)
        return fail(err, errlen, PV_EINVAL,
                    "heads=%d and %d layer-bits ranges make more than %d entries (set heads=0 "
                    "or fewer ranges)",
                    p->heads, p->n_layer_bits, KV_LAYER_BITS_MAX);
    if (!count_or_fraction(p->budget))
        return fail(err, errlen, PV_EINVAL, "budget %g is neither whole tokens nor a fraction",
                    p->budget);
    if (!count_or_fraction(p->floor))
        return fail(err, errlen, PV_EINVAL, "floor %g is neither whole tokens nor a fraction",
                    p->floor);
    if (!count_or_fraction(p->chunk))
        return fail(err, errlen, PV_EINVAL, "chunk %g is neither whole tokens nor a fraction",
                    p->chunk);
    if (p->recent < 0 || p->sinks < 0)
        return fail(err, errlen, PV_EINVAL, "recent and sinks must be >= 0");
    if (p->group < 8 || p->group % 8)
        return fail(err, errlen, PV_EINVAL, "group must be a positive multiple of 8, got %d",
                    p->group);
    if (p->scale_bits != 0 && p->scale_bits != 16 && p->scale_bits != 8)
        return fail(err, errlen, PV_EINVAL, "scale-bits must be 16 or 8, got %d", p->scale_bits);
    if (p->select == KV_SELECT_PERSISTENCE && (p->window < 2 || p->window > 65535))
        return fail(err, errlen, PV_EINVAL, "window must be in [2, 65535], got %d", p->window);
    if (p->select == KV_SELECT_NONE && p->budget != 0)
        return fail(err, errlen, PV_EINVAL,
                    "select=none never demotes, so budget=%g cannot be kept; choose select="
                    "persistence, accumulated or recent",
                    p->budget);
    if (p->select == KV_SELECT_NONE && p->lo_bits != 0)
        return fail(err, errlen, PV_EINVAL,
                    "select=none never demotes, so lo-bits=%d would never be used; choose a "
                    "select policy (quant2/quant4 use select=recent)",
                    p->lo_bits);
    if (p->hi_bits == 8 && !p->key_balance)
        return fail(err, errlen, PV_EINVAL,
                    "hi-bits=8 quantizes every key and needs key-balance=1 (outlier key channels "
                    "otherwise dominate the INT8 range)");
    if (p->select == KV_SELECT_RECENT && p->budget == 0 && p->sinks + p->recent == 0)
        return fail(err, errlen, PV_EINVAL,
                    "select=recent with budget=0 keeps sinks + recent tokens, and both are 0");
    return PV_OK;
}

void kv_policy_describe(const kv_policy *p, char *buf, size_t len) {
    if (!buf || !len) return;
    if (!p) {
        snprintf(buf, len, "(none)");
        return;
    }
    int sel = (int)p->select >= 0 && p->select <= KV_SELECT_RECENT ? (int)p->select : 0;
    char lo[16];
    if (p->lo_v_bits && p->lo_v_bits != p->lo_bits)
        snprintf(lo, sizeof lo, "%d/%d", p->lo_bits, p->lo_v_bits);
    else
        snprintf(lo, sizeof lo, "%d", p->lo_bits);
    char layers[40 + KV_LAYER_BITS_MAX * 28] = "";
    for (int i = 0; i < p->n_layer_bits && i < KV_LAYER_BITS_MAX; i++) {
        const kv_layer_bits *r = &p->layer_bits[i];
        size_t at = strlen(layers);
        char head[8] = "";
        if (r->head >= 0) snprintf(head, sizeof head, ".%d", r->head);
        snprintf(layers + at, sizeof layers - at, "%s%d-%d%s:%d/%d", i ? "+" : ",layer-bits=",
                 r->first, r->last, head, r->k, r->v);
    }
    /* knobs listed only when set: heads (unresolved: the request, not yet
     * the heads), two-byte scales, value norms where they rank and clip
     * floors */
    char tail[64 + KV_CLIP_FLOORS_MAX * 20] = ""; /* heads, scales, value norms: 39 */
    if (p->heads) snprintf(tail, sizeof tail, ",heads=%d:%d/%d", p->heads, p->heads_k, p->heads_v);
    if (p->scale_bits == 8) snprintf(tail + strlen(tail), sizeof tail - strlen(tail), ",scale-bits=8");
    if (kv_policy_value_norm(p)) snprintf(tail + strlen(tail), sizeof tail - strlen(tail), ",value-norm=1");
    for (int i = 0; i < p->n_clip_floor && i < KV_CLIP_FLOORS_MAX; i++) {
        const kv_clip_floor *f = &p->clip_floor[i];
        size_t at = strlen(tail);
        if (f->first == 0 && f->last == KV_CLIP_ALL_LAYERS)
            snprintf(tail + at, sizeof tail - at, "%s%g", i ? "+" : ",clip-floor=", f->floor);
        else
            snprintf(tail + at, sizeof tail - at, "%s%d-%d:%g", i ? "+" : ",clip-floor=", f->first, f->last,
                     f->floor);
    }
    snprintf(buf, len,
             "%s(select=%s,hi=%d,lo=%s%s,budget=%g,recent=%d,sinks=%d,window=%d,chunk=%g,group=%d,"
             "key-balance=%d,rotate=%d,%s%s)",
             p->preset[0] ? p->preset : "custom", select_names[sel], p->hi_bits, lo, layers,
             p->budget, p->recent, p->sinks, p->window, p->chunk, p->group, p->key_balance,
             p->rotate, kv_clip_spec(p->clip), tail);
}
