/* Tests for gram_mask (gram_mask.h) on a tiny hand-made vocabulary: the
 * mask allows exactly the tokens whose bytes keep the output a valid prefix
 * (checked against gram_state_accepts token by token, so the flattened-trie
 * walk and its skipping are compared with the plain automaton), EOG only on
 * a complete document, cached masks equal fresh ones, a greedy decode
 * under the mask always yields a document, and the count returned is of the
 * logits left finite, so masks applied before (min_tokens) count too. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "gram.h"
#include "gram_fixture.h"
#include "gram_mask.h"
#include "gram_match.h"
#include "pverr.h"

/* Shares many prefixes on purpose ("{", "{\"", "{\"a", ...). */
static const char *const VOCAB[] = {
    "",      "{",     "}",     "{\"",   "\"",    "\":",   "a",   "ab",   "abc", "\"a\"",
    ":",     ",",     "1",     "12",    "-",     "0",     ".",   "5e",   "[",   "]",
    "[]",    "true",  "tr",    "ue",    "null",  " ",     "\n",  "  ",   "\xc3", "\xa9",
    "\xc3\xa9", "\\", "n",     "\"}",   "1}",    "},",    "\",\"", "x",  "}}",  "\":\"",
};
#define NV ((int)(sizeof VOCAB / sizeof *VOCAB))
#define EOS 0 /* the empty piece stands for the end-of-sequence token */

static gram_vocab *vocab(void) { return fx_vocab(VOCAB, NV, EOS); }

/* Masks at the state after `prefix` and compares with token-by-token checks. */
static void check_mask(gram *g, gram_vocab *v, const char *prefix) {
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    cr_assert_eq(gram_state_advance(s, prefix, strlen(prefix)), 0, "prefix %s", prefix);
    for (int round = 0; round < 2; round++) { /* the second round is served by the cache */
        float logits[NV];
        for (int i = 0; i < NV; i++) logits[i] = 1.0f;
        int n = gram_mask(v, s, INT_MAX, logits), want = 0;
        for (int id = 0; id < NV; id++) {
            int ok = id == EOS ? gram_state_complete(s)
                               : gram_state_accepts(s, VOCAB[id], strlen(VOCAB[id]));
            want += ok;
            cr_expect_eq(logits[id] == 1.0f, ok, "after '%s' token '%s': allowed %d, want %d",
                         prefix, VOCAB[id], logits[id] == 1.0f, ok);
            cr_expect(ok || isinf(logits[id]));
        }
        cr_expect_eq(n, want, "after '%s': %d allowed, want %d", prefix, n, want);
    }
    gram_state_free(s);
}

/* check_mask at every prefix (NULL-terminated), then frees g. */
static void check_masks(gram *g, const char *const *prefixes) {
    gram_vocab *v = vocab();
    for (int i = 0; prefixes[i]; i++) check_mask(g, v, prefixes[i]);
    gram_free(g);
    gram_vocab_free(v);
}

Test(gram_mask, equals_automaton_on_json) {
    gram *g = NULL;
    cr_assert_eq(gram_json_object(&g), 0);
    static const char *const prefixes[] = {"", "{", "{\"", "{\"a", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":12",
                              "{\"a\":-", "{\"a\":\"\xc3", "{\"a\":\"x\\", "{\"a\":[",
                              "{\"a\":[1", "{\"a\":t", "{\"a\":{}", "{\"a\":1}", " ",
                              /* inside text: plain tokens are taken without a walk */
                              "{\"a\":\"", "{\"a\":\"x", "{\"a\":\"\xc3\xa9", "{\"ab", NULL};
    check_masks(g, prefixes);
}

Test(gram_mask, equals_automaton_on_schema) {
    gram *g = fx_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                          "\"abc\":{\"enum\":[\"x\",null]}},\"required\":[\"a\"]}");
    static const char *const prefixes[] = {"", "{", "{\"a", "{\"ab", "{\"abc\":", "{\"abc\":\"x\"",
                                           "{\"abc\":\"x\",", "{\"abc\":null,\"a\":1", "{\"a\":1}",
                                           NULL};
    check_masks(g, prefixes);
}

/* Greedy decoding with a preference that fights the grammar (the highest
 * logit on tokens that are rarely valid) still ends in a document. */
Test(gram_mask, masked_greedy_decode_finishes) {
    gram_vocab *v = vocab();
    gram *g = fx_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\","
                          "\"items\":{\"type\":\"integer\"},\"maxItems\":2}},\"required\":[\"a\"]}");
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    char out[256] = "";
    int done = 0;
    for (int step = 0; step < 60 && !done; step++) {
        float logits[NV];
        for (int i = 0; i < NV; i++) logits[i] = (float)((i * 7) % NV); /* arbitrary */
        cr_assert_gt(gram_mask(v, s, INT_MAX, logits), 0, "stuck after '%s'", out);
        int best = 0;
        for (int i = 1; i < NV; i++)
            if (logits[i] > logits[best]) best = i;
        cr_assert_eq(gram_accept_token(v, s, best), best == EOS ? GRAM_END : 0);
        if (best == EOS) done = 1;
        else strcat(out, VOCAB[best]);
    }
    cr_expect(done, "no end after '%s'", out);
    cJSON *parsed = cJSON_Parse(out);
    cr_expect_not_null(parsed, "'%s' is not JSON", out);
    cJSON_Delete(parsed);
    cr_expect_eq(gram_accept_token(v, s, 1), PV_EINVAL, "nothing after the end");
    gram_state_free(s);
    gram_free(g);
    gram_vocab_free(v);
}

Test(gram_mask, vocab_pieces) {
    gram_vocab *v = vocab();
    int len = -1;
    const char *p = gram_vocab_piece(v, 8, &len);
    cr_expect_eq(len, 3);
    cr_expect(p && !memcmp(p, "abc", 3));
    cr_expect_null(gram_vocab_piece(v, EOS, &len));
    cr_expect_eq(len, 0);
    gram_vocab_free(v);
}

/* min_tokens sets end of generation to -INFINITY before the grammar's mask
 * (engine/eng_sample.c). On a complete document where the grammar allows
 * only end of generation, nothing is left: gram_mask must say 0 (the
 * caller ends the choice) rather than count the -INFINITY it allows, which
 * would send an all -INFINITY row to the sampler (argmax: token 0, never
 * allowed). Where more is allowed, each token masked before is one less. */
Test(gram_mask, counts_only_logits_left_finite) {
    gram_vocab *v = vocab();
    gram *g = fx_schema("{\"const\":true}");
    gram_state *s = NULL;
    cr_assert_eq(gram_state_new(g, &s), 0);
    cr_assert_eq(gram_state_advance(s, "true", 4), 0);
    float logits[NV];
    for (int i = 0; i < NV; i++) logits[i] = 1.0f;
    cr_assert_eq(gram_mask(v, s, INT_MAX, logits), 1, "only end of generation after 'true'");
    for (int i = 0; i < NV; i++) logits[i] = 1.0f;
    logits[EOS] = -INFINITY; /* min_tokens not reached */
    cr_expect_eq(gram_mask(v, s, INT_MAX, logits), 0, "a -INFINITY end of generation was counted");
    for (int i = 0; i < NV; i++) cr_expect(isinf(logits[i]) && logits[i] < 0, "token %d left", i);
    cr_expect_eq(gram_accept_token(v, s, EOS), GRAM_END, "the document is whole");
    gram_state_free(s);
    gram_free(g);

    /* an integer: after "1" the digits "1", "12", "0" and end of generation */
    g = fx_schema("{\"type\":\"integer\"}");
    cr_assert_eq(gram_state_new(g, &s), 0);
    cr_assert_eq(gram_state_advance(s, "1", 1), 0);
    for (int i = 0; i < NV; i++) logits[i] = 1.0f;
    int all = gram_mask(v, s, INT_MAX, logits), allowed[NV], want = 0;
    for (int i = 0; i < NV; i++) allowed[i] = logits[i] == 1.0f;
    cr_assert_geq(all, 2);
    cr_assert(allowed[EOS] && allowed[12], "'1' then EOS and '1' allowed");
    for (int i = 0; i < NV; i++) logits[i] = 1.0f;
    logits[EOS] = logits[12] = logits[2] = -INFINITY; /* '}' is not allowed anyway */
    for (int i = 0; i < NV; i++) want += allowed[i] && i != EOS && i != 12;
    cr_expect_eq(gram_mask(v, s, INT_MAX, logits), want, "%d allowed, 2 masked before", all);
    cr_expect_eq(want, all - 2);
    gram_state_free(s);
    gram_free(g);
    gram_vocab_free(v);
}
