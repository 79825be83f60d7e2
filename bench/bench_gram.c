/* bench_gram: the grammar mask's cost on a real vocabulary, next to which
 * a decode step is measured in tok/s (bench/structured_speed.py). For a
 * few automaton states (structure, keys, numbers, string content): the
 * first mask (a miss: the vocabulary walk) and the cached one (a hit: the
 * lookup and the -INFINITY pass over the logits), the mask when max_tokens
 * is about to run out (a budget of the shortest completion plus one: the
 * walk narrowed by the budget, uncached), plus building the vocabulary's
 * byte table, which happens once per server.
 *
 *   ninja -C build bench/bench_gram && build/bench/bench_gram [MODEL.gguf] [REPS]
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gram.h"
#include "gram_mask.h"
#include "gram_match.h"
#include "pvtime.h"
#include "tokenizer.h"

static int piece(void *v, int32_t id, char *buf, int cap) { return tok_piece(v, id, 0, buf, cap); }

static const char *const SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
    "\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"kind\":{\"enum\":"
    "[\"person\",\"animal\"]}},\"required\":[\"name\",\"age\",\"tags\",\"kind\"]}";
static const char *const PREFIX[] = {"", "{", "{\"na", "{\"name\":", "{\"name\":\"Al",
                                     "{\"name\":\"Al\",\"age\":4", "{\"name\":\"Al\",\"age\":4,\"tags\":[",
                                     "{\"name\":\"Al\",\"age\":4,\"kind\":\"an", NULL};

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    int reps = argc > 2 ? atoi(argv[2]) : 200;
    char err[256];
    gguf_file *g = NULL;
    tok_vocab *v = NULL;
    if (gguf_open(path, &g, err, sizeof err) || tok_load(g, &v, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", path, err);
        return 1;
    }
    int32_t eos = tok_eos(v);
    int nv = tok_n_vocab(v);
    double t = pv_now();
    gram_vocab *gv = NULL;
    if (gram_vocab_create(nv, piece, v, &eos, 1, &gv)) return 1;
    printf("vocabulary byte table: %d tokens, %.1f ms (once per server)\n", nv, (pv_now() - t) * 1e3);
    cJSON *js = cJSON_Parse(SCHEMA);
    gram *gr = NULL;
    if (gram_from_schema(js, 0, &gr, err, sizeof err)) return 1;
    float *logits = malloc(sizeof *logits * nv);
    printf("%-40s %8s %10s %10s %8s %10s\n", "state after", "allowed", "miss ms", "hit ms",
           "closing", "closing ms");
    for (int i = 0; PREFIX[i]; i++) {
        gram_state *s = NULL;
        gram_state_new(gr, &s);
        gram_state_advance(s, PREFIX[i], strlen(PREFIX[i]));
        memset(logits, 0, sizeof *logits * nv);
        t = pv_now();
        int n = gram_mask(gv, s, INT_MAX, logits);
        double miss = pv_now() - t;
        t = pv_now();
        for (int r = 0; r < reps; r++) gram_mask(gv, s, INT_MAX, logits);
        double hit = (pv_now() - t) / reps;
        int left = gram_state_close_len(s) + 1, nt = 0; /* nothing to spare */
        t = pv_now();
        for (int r = 0; r < reps / 10 + 1; r++) nt = gram_mask(gv, s, left, logits);
        double tight = (pv_now() - t) / (reps / 10 + 1);
        printf("%-40s %8d %10.3f %10.4f %8d %10.3f\n", PREFIX[i], n, miss * 1e3, hit * 1e3, nt,
               tight * 1e3);
        gram_state_free(s);
    }
    free(logits);
    gram_free(gr);
    cJSON_Delete(js);
    gram_vocab_free(gv);
    tok_free(v);
    gguf_close(g);
    return 0;
}
