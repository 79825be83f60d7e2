/* Tests for the distance to a complete document (gram_state_close_len,
 * grammar/gram_close.c) and the budget-aware mask (gram_mask's `left`):
 * - the distance equals a breadth-first search over all 256 byte values
 *   through the automaton itself, at every prefix of a corpus of documents
 *   (plain JSON, required members, names that prefix each other, arrays
 *   with minItems, enums, anyOf, recursion, escapes and UTF-8), and is
 *   "none" exactly where the search finds no completion (the depth limit);
 * - the mask under a budget allows exactly the tokens the automaton
 *   accepts after which the distance fits, and EOG on a complete document;
 * - decoding with random preferences that favour opening structures ends
 *   in a complete document within every budget of at least the shortest
 *   document plus one token, and falls back to the grammar below that. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gram.h"
#include "gram_fixture.h"
#include "gram_internal.h"
#include "gram_mask.h"
#include "gram_match.h"
#include "pverr.h"

/* ---- the reference: breadth-first search over bytes ---- */

#define SEEN_SLOTS (1 << 16)
typedef struct {
    uint64_t h[SEEN_SLOTS];
    uint8_t used[SEEN_SLOTS];
} seen_set;

static uint64_t hash_set(const gram_set *s) {
    const uint8_t *p = (const uint8_t *)s;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < gram_set_bytes(s); i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* 1 when s was not seen before (a 64-bit hash stands for the state). */
static int visit(seen_set *t, const gram_set *s) {
    uint64_t h = hash_set(s);
    size_t i = h & (SEEN_SLOTS - 1);
    for (; t->used[i]; i = (i + 1) & (SEEN_SLOTS - 1))
        if (t->h[i] == h) return 0;
    cr_assert(i < SEEN_SLOTS);
    t->used[i] = 1;
    t->h[i] = h;
    return 1;
}

/* The fewest bytes that complete s (searched up to max_depth), or
 * GRAM_CLOSE_INF when none do. */
static int bfs(const gram *g, const gram_set *start, int max_depth) {
    if (gram_set_complete(g, start)) return 0;
    /* kept for the process: made once (fresh 16 MB per call is slow under
     * MALLOC_PERTURB_), reachable to the end */
    static gram_set *buf[2];
    enum { cap = 4096 };
    if (!buf[0]) buf[0] = malloc(sizeof **buf * cap), buf[1] = malloc(sizeof **buf * cap);
    seen_set *seen = calloc(1, sizeof *seen);
    gram_set *cur = buf[0], *next = buf[1];
    int n = 0;
    cr_assert(seen && cur && next);
    memcpy(&cur[n++], start, gram_set_bytes(start));
    visit(seen, start);
    int found = GRAM_CLOSE_INF;
    for (int d = 1; d <= max_depth && n && found == GRAM_CLOSE_INF; d++) {
        int m = 0;
        for (int i = 0; i < n && found == GRAM_CLOSE_INF; i++)
            for (int c = 1; c < 256; c++) {
                gram_set out;
                if (!gram_set_step(g, &cur[i], (uint8_t)c, &out) || !visit(seen, &out)) continue;
                if (gram_set_complete(g, &out)) {
                    found = d;
                    break;
                }
                cr_assert_lt(m, cap, "search frontier too wide");
                memcpy(&next[m++], &out, gram_set_bytes(&out));
            }
        gram_set *t = cur;
        cur = next;
        next = t;
        n = m;
    }
    free(seen);
    return found;
}

/* At every prefix of every document: the distance equals the search. */
static void check_docs(gram *g, const char *const *docs) {
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    for (int d = 0; docs[d]; d++) {
        gram_state_reset(s);
        size_t len = strlen(docs[d]);
        for (size_t i = 0; i <= len; i++) {
            if (i) cr_assert_eq(gram_state_advance(s, docs[d] + i - 1, 1), 0, "%s at %zu", docs[d], i);
            int want = bfs(g, &s->set, 48), got = gram_state_close_len(s);
            cr_expect_eq(got, want, "after '%.*s': distance %d, search %d", (int)i, docs[d], got, want);
        }
        cr_expect_eq(gram_state_close_len(s), 0, "%s is whole", docs[d]);
    }
    gram_state_free(s);
    gram_free(g);
}

Test(gram_close, plain_json) {
    gram *g = NULL;
    cr_assert_eq(gram_json_object(&g), 0);
    static const char *const docs[] = {
        "{\"a\": [1, -2.5e+3, {\"b\": \"x\\u00e9\\n\"}], \"c\": true, \"d\": null}",
        "{\"caf\xc3\xa9\": \"\xe2\x82\xac\xf0\x9f\x98\x80\", \"\": [[], {}], \"n\": -0.0E-1}",
        " { \"k\": false }", NULL};
    check_docs(g, docs);
}

Test(gram_close, required_members_and_prefix_names) {
    gram *g = fx_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                     "\"ab\":{\"type\":\"string\"},\"abc\":{\"type\":\"array\",\"items\":"
                     "{\"type\":\"number\"},\"minItems\":2},\"e\":{\"enum\":[\"xyz\",12,true]}},"
                     "\"required\":[\"ab\",\"abc\"],\"additionalProperties\":{\"type\":\"boolean\"}}");
    static const char *const docs[] = {
        "{\"a\":1,\"abx\":true,\"abc\":[1,2,3],\"ab\":\"s\",\"e\":\"xyz\"}",
        "{\"e\":12,\"abc\":[0.5,-1],\"ab\":\"\\\\\",\"a\":7}",
        "{\"ab\":\"\",\"abc\":[1,2],\"\":false}", NULL};
    check_docs(g, docs);
}

Test(gram_close, anyof_recursion_and_nested_required) {
    gram *g = fx_schema("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":"
                     "\"integer\"},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}},"
                     "\"required\":[\"id\"],\"additionalProperties\":false}},"
                     "\"anyOf\":[{\"$ref\":\"#/$defs/n\"},{\"type\":\"array\",\"items\":{\"type\":"
                     "\"object\",\"properties\":{\"deep\":{\"type\":\"object\",\"properties\":"
                     "{\"z\":{\"type\":\"null\"}},\"required\":[\"z\"]}},\"required\":[\"deep\"]},"
                     "\"minItems\":1,\"maxItems\":3}]}");
    static const char *const docs[] = {
        "{\"kids\":[{\"id\":1,\"kids\":[]},{\"kids\":[{\"id\":3}],\"id\":2}],\"id\":0}",
        "[{\"deep\":{\"z\":null}},{\"deep\":{\"z\":null}}]", NULL};
    check_docs(g, docs);
}

/* At the depth limit a key has no frame left for its value: the distance
 * says so, the search agrees, and the mask never lets the output in. */
Test(gram_close, depth_limit_dead_end) {
    gram *g = NULL;
    cr_assert_eq(gram_json_object(&g), 0);
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    for (int i = 0; i < GRAM_MAX_DEPTH - 2; i++) cr_assert_eq(gram_state_advance(s, "{\"a\":", 5), 0);
    cr_assert_eq(gram_state_advance(s, "{", 1), 0); /* the deepest object a frame is left for */
    cr_expect_eq(gram_state_close_len(s), GRAM_MAX_DEPTH - 1, "}} ... to the top");
    cr_expect_eq(gram_state_accepts(s, "}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}", GRAM_MAX_DEPTH - 1), 1);
    cr_assert_eq(gram_state_advance(s, "\"a\"", 3), 0, "the automaton alone takes a key");
    cr_expect_eq(gram_state_close_len(s), GRAM_CLOSE_INF);
    cr_expect_eq(bfs(g, &s->set, 48), GRAM_CLOSE_INF);
    gram_state_free(s);
    gram_free(g);
}

/* ---- the mask under a budget ---- */

/* Every printable byte alone, so any completion can be spelled, and
 * longer tokens that open structures or keep strings going. */
static char BYTES[200][8];
static const char *VOCAB[200];
static int NV;
#define EOS 0

static gram_vocab *vocab(void) {
    static const char *const multi[] = {"{\"", "\":", "\":{\"", "\",\"", "[[", "[{\"", ",\"",
                                        "true", "null", "abc", "word", "\xc3\xa9", "\xc3", "\xa9",
                                        "12", "\":[", "}}", "]}", "\\n", "\\u00", NULL};
    NV = 0;
    VOCAB[NV++] = ""; /* EOS, no bytes */
    for (int c = 0x20; c < 0x7F; c++, NV++) BYTES[NV][0] = (char)c, VOCAB[NV] = BYTES[NV];
    for (int i = 0; multi[i]; i++) VOCAB[NV++] = multi[i];
    return fx_vocab(VOCAB, NV, EOS);
}

/* The state after prefix + token id (NULL when the automaton refuses). */
static gram_state *after(gram *g, const char *prefix, int id) {
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    cr_assert_eq(gram_state_advance(s, prefix, strlen(prefix)), 0);
    if (gram_state_advance(s, VOCAB[id], strlen(VOCAB[id]))) {
        gram_state_free(s);
        return NULL;
    }
    return s;
}

/* The mask's rule written out token by token: every token the automaton
 * takes that leaves a completable document; once one of them would not
 * fit the budget, only those that fit and bring the end no further away;
 * if none, the grammar's. */
static void check_budget_mask(gram *g, gram_vocab *v, const char *prefix) {
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    cr_assert_eq(gram_state_advance(s, prefix, strlen(prefix)), 0);
    int here = gram_state_close_len(s), dist[200], most = 0;
    for (int id = 1; id < NV; id++) {
        gram_state *a = after(g, prefix, id);
        dist[id] = a ? gram_state_close_len(a) : GRAM_CLOSE_INF;
        if (dist[id] < GRAM_CLOSE_INF && dist[id] > most) most = dist[id];
        gram_state_free(a);
    }
    for (int left = here + 1; left <= here + 12; left++) {
        int closing = most > left - 2, lim = closing && here < left - 2 ? here : left - 2, any = 0;
        for (int id = 1; id < NV; id++) any |= dist[id] <= lim;
        if (!closing || (!any && !gram_state_complete(s))) lim = GRAM_CLOSE_INF - 1;
        float logits[200];
        for (int i = 0; i < NV; i++) logits[i] = 0;
        int n = gram_mask(v, s, left, logits), want = 0;
        for (int id = 0; id < NV; id++) {
            int ok = id == EOS ? gram_state_complete(s) : dist[id] <= lim;
            want += ok;
            cr_expect_eq(!isinf(logits[id]), ok, "after '%s', left %d, token '%s': allowed %d want %d",
                         prefix, left, VOCAB[id], !isinf(logits[id]), ok);
        }
        cr_expect_eq(n, want, "after '%s', left %d", prefix, left);
        cr_expect_gt(n, 0, "after '%s' with room for the shortest completion", prefix);
    }
    gram_state_free(s);
}

Test(gram_close, budget_mask_is_exact) {
    gram_vocab *v = vocab();
    gram *g = NULL;
    cr_assert_eq(gram_json_object(&g), 0);
    static const char *const plain[] = {"", "{", "{\"a", "{\"a\":", "{\"a\":\"wor", "{\"a\":[[1,",
                                        "{\"a\":{\"b\":tr", "{\"a\":\"\xc3", "{\"a\":1}", NULL};
    for (int i = 0; plain[i]; i++) check_budget_mask(g, v, plain[i]);
    gram_free(g);
    g = fx_schema("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"tags\":{"
               "\"type\":\"array\",\"items\":{\"enum\":[\"word\",\"abc\"]},\"minItems\":2}},"
               "\"required\":[\"name\",\"tags\"]}");
    static const char *const req[] = {"", "{", "{\"tags\":[", "{\"tags\":[\"word\",", "{\"na",
                                      "{\"name\":\"x", NULL};
    for (int i = 0; req[i]; i++) check_budget_mask(g, v, req[i]);
    gram_free(g);
    gram_vocab_free(v);
}

/* xorshift: the preferences of a model that likes to go on. */
static uint32_t rnd(uint32_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Decodes greedily under the mask within `budget` tokens; returns the
 * tokens used (EOS included) and the text in out, or -1 when the budget
 * ran out before EOS. */
static int decode(gram *g, gram_vocab *v, int budget, uint32_t seed, char *out) {
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    out[0] = 0;
    int used = 0, ended = 0;
    for (; used < budget && !ended; used++) {
        float logits[200];
        for (int i = 0; i < NV; i++) logits[i] = (float)(rnd(&seed) % 1000) / 100.0f;
        for (int i = 0; i < NV; i++) /* opening and going on is what the model likes best */
            if (strpbrk(VOCAB[i], "{[,\"") || !strcmp(VOCAB[i], "word")) logits[i] += 5;
        logits[EOS] -= 20;
        cr_assert_gt(gram_mask(v, s, budget - used, logits), 0, "stuck after '%s'", out);
        int best = 0;
        for (int i = 1; i < NV; i++)
            if (logits[i] > logits[best]) best = i;
        cr_assert_eq(gram_accept_token(v, s, best), best == EOS ? GRAM_END : 0);
        if (best == EOS) ended = 1;
        else strcat(out, VOCAB[best]);
    }
    gram_state_free(s);
    return ended ? used : -1;
}

static void check_decodes(gram *g, gram_vocab *v, int shortest) {
    char out[8 * 512];
    for (int budget = shortest + 1; budget <= shortest + 40; budget += 3)
        for (uint32_t seed = 1; seed <= 8; seed++) {
            int used = decode(g, v, budget, seed * 2654435761u, out);
            cr_expect(used > 0 && used <= budget, "budget %d seed %u: no end in '%s'", budget, seed, out);
            cJSON *j = cJSON_Parse(out);
            cr_expect_not_null(j, "budget %d: '%s' is not JSON", budget, out);
            cJSON_Delete(j);
        }
    /* where no document fits (one token and EOS) the grammar alone
     * decides: the output goes on as a prefix, never stuck */
    cr_expect_eq(decode(g, v, 1, 3, out), -1, "'%s' cannot end in 1 token", out);
}

Test(gram_close, decoding_always_fits_the_budget) {
    gram_vocab *v = vocab();
    gram *g = NULL;
    cr_assert_eq(gram_json_object(&g), 0);
    check_decodes(g, v, 2); /* {} */
    gram_free(g);
    g = fx_schema("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"kids\":{"
               "\"type\":\"array\",\"items\":{\"$ref\":\"#\"},\"minItems\":1}},"
               "\"required\":[\"name\"]}");
    check_decodes(g, v, (int)strlen("{\"name\":\"\"}"));
    gram_free(g);
    gram_vocab_free(v);
}
