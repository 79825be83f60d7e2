/* kvjson: KV snapshots as JSON. Tiers go out as one run-length string per
 * (layer, KV head) — a sequence's tiers are long runs (a high prefix of
 * sinks, mixed middle, a high recent window), so a 2,000-token map of 30
 * layers x 3 heads is a few kilobytes instead of 180,000 cells. */
#include "kvjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

int kvjson_rle(const uint8_t *tier, int n, char *buf, size_t cap) {
    static const char sym[4] = {'N', 'H', 'L', 'D'};
    size_t w = 0;
    for (int p = 0; p < n;) {
        int q = p;
        while (q < n && tier[q] == tier[p]) q++;
        if (cap - w < 13) return -1;
        w += (size_t)snprintf(buf + w, cap - w, "%c%d", sym[tier[p] & 3], q - p);
        p = q;
    }
    if (w >= cap) return -1;
    buf[w] = 0;
    return (int)w;
}

static void add_usage(cJSON *o, const kv_usage *u) {
    cJSON *k = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(k, "bytes_stored", (double)u->bytes_stored);
    cJSON_AddNumberToObject(k, "bytes_fp16", (double)u->bytes_fp16);
    cJSON_AddNumberToObject(k, "tokens_high", u->n_high);
    cJSON_AddNumberToObject(k, "tokens_low", u->n_low);
    cJSON_AddNumberToObject(k, "tokens_dropped", u->n_dropped);
}

/* One head: its runs, where its tokens were seen demoted, its scores. */
static cJSON *head_json(const eng_snap *s, size_t off, int h, int scores, char *rle, size_t cap) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "head", h);
    kvjson_rle(s->tier + off, s->n_pos, rle, cap);
    cJSON_AddStringToObject(o, "rle", rle);
    cJSON *d = cJSON_AddArrayToObject(o, "demoted_at");
    for (int p = 0; p < s->n_pos; p++)
        if (s->demoted_at[off + p] >= 0) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(p));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(s->demoted_at[off + p]));
            cJSON_AddItemToArray(d, pair);
        }
    if (scores && s->score) {
        cJSON *a = cJSON_AddArrayToObject(o, "score");
        for (int p = 0; p < s->n_pos; p++) {
            float v = s->score[off + p];
            cJSON_AddItemToArray(a, isnan(v) ? cJSON_CreateNull()
                                             : cJSON_CreateNumber(round(v * 1000) / 1000));
        }
    }
    return o;
}

static void add_layers(cJSON *o, const eng_snap *s, int scores) {
    size_t cap = (size_t)s->n_pos * 13 + 16;
    char *rle = malloc(cap);
    cJSON *layers = cJSON_AddArrayToObject(o, "layers");
    if (!rle) return;
    for (int l = 0; l < s->n_layers; l++) {
        cJSON *lo = cJSON_CreateObject();
        cJSON_AddNumberToObject(lo, "layer", l);
        const int8_t *wb = s->lo_head_bits + (size_t)2 * l * s->n_kv_heads;
        int same = 1; /* the layer's heads agree: its widths once, at the layer */
        for (int h = 1; h < s->n_kv_heads; h++) same &= wb[2 * h] == wb[0] && wb[2 * h + 1] == wb[1];
        if (same) {
            cJSON_AddNumberToObject(lo, "low_k", wb[0]);
            cJSON_AddNumberToObject(lo, "low_v", wb[1]);
        }
        cJSON *hs = cJSON_AddArrayToObject(lo, "heads");
        for (int h = 0; h < s->n_kv_heads; h++) {
            size_t off = ((size_t)l * s->n_kv_heads + h) * s->n_pos;
            cJSON *hj = head_json(s, off, h, scores, rle, cap);
            cJSON_AddNumberToObject(hj, "low_k", wb[2 * h]); /* layer-bits, per head */
            cJSON_AddNumberToObject(hj, "low_v", wb[2 * h + 1]);
            cJSON_AddItemToArray(hs, hj);
        }
        cJSON_AddItemToArray(layers, lo);
    }
    free(rle);
}

static void add_text(cJSON *o, const kvjson_args *a, int n_pos) {
    cJSON *t = cJSON_AddArrayToObject(o, "tokens");
    char piece[256];
    for (int p = 0; p < n_pos && p < a->n_ids; p++) {
        tok_piece_str(a->vocab, a->ids[p], 1, piece, sizeof piece); /* <|im_start|> shown */
        /* a piece may be part of a UTF-8 character: JSON wants whole ones */
        if (!uc_is_valid(piece, strlen(piece)))
            for (int i = 0; piece[i]; i++)
                if ((unsigned char)piece[i] >= 0x80) piece[i] = '?';
        cJSON_AddItemToArray(t, cJSON_CreateString(piece));
    }
}

cJSON *kvjson_sequence(const kvjson_args *a) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const eng_snap *s = a->snap;
    cJSON_AddStringToObject(o, "id", a->id);
    cJSON_AddStringToObject(o, "object", "kv.sequence");
    cJSON_AddStringToObject(o, "status", a->status);
    cJSON_AddStringToObject(o, "policy", a->policy ? a->policy : "");
    cJSON_AddStringToObject(o, "spec", a->spec ? a->spec : "");
    if (!s) {
        cJSON_AddNumberToObject(o, "n_tokens", 0);
        cJSON_AddArrayToObject(o, "layers");
        return o;
    }
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddNumberToObject(o, "n_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "n_kv_heads", s->n_kv_heads);
    cJSON_AddNumberToObject(o, "n_tokens", s->n_pos);
    cJSON_AddNumberToObject(o, "prompt_tokens", s->n_prompt);
    cJSON_AddNumberToObject(o, "completion_tokens", s->n_gen);
    cJSON *b = cJSON_AddObjectToObject(o, "bits");
    cJSON_AddNumberToObject(b, "high", s->hi_bits);
    cJSON_AddNumberToObject(b, "low_k", s->lo_bits);
    cJSON_AddNumberToObject(b, "low_v", s->lo_bits ? s->lo_v_bits : 0);
    add_usage(o, &s->usage);
    add_layers(o, s, a->scores);
    if (a->vocab && a->ids) add_text(o, a, s->n_pos);
    return o;
}
