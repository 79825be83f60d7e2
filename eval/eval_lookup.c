/* eval lookup: key-value lookup, the task only the cache can answer.
 *
 * A sample is a list of records "KEY: VALUE" (KEY one random plain word
 * token, VALUE a random number of --digits digits), then the same keys
 * again in another random order, each followed by its value. The list is
 * the prefix (prefilled, so the cache has compressed it before the first
 * question); the questions are fed token by token and only the value
 * (digit) tokens of the questions are scored: the model cannot guess a random
 * number from its prior, it can only read it back from the cache. Records
 * are added until the sample reaches --length tokens.
 *
 * Built from token pieces rather than one encoded string, so the value
 * tokens' positions are known exactly; each piece is encoded on its own
 * (" 417" then "\n"), which is also how the text would tokenize, since a
 * BPE merge never crosses the space before a word or a newline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_internal.h"

typedef struct {
    int32_t *t;
    uint8_t *m;
    int n, cap;
} tokbuf;

static int put(tokbuf *b, const int32_t *ids, int n, int scored) {
    if (b->n + n > b->cap) return -1;
    memcpy(b->t + b->n, ids, sizeof(int32_t) * n);
    memset(b->m + b->n, scored, n);
    b->n += n;
    return 0;
}

/* A token is scored only when it carries a digit: the tokenizer may split
 * " 417" into a bare space and the digits, and the space after ':' is
 * predictable without any cache. */
static int has_digit(const tok_vocab *v, int32_t id) {
    char buf[32];
    int len = tok_piece(v, id, 0, buf, sizeof buf);
    for (int i = 0; i < len && i < (int)sizeof buf; i++)
        if (buf[i] >= '0' && buf[i] <= '9') return 1;
    return 0;
}

static int put_text(tokbuf *b, const tok_vocab *v, const char *text, int scored) {
    int n = 0;
    int32_t *ids = ev_encode(v, text, strlen(text), &n, 0);
    if (!ids) return -1;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = put(b, ids + i, 1, scored && has_digit(v, ids[i]));
    free(ids);
    return rc;
}

/* One record: key token, ":", " VALUE" (scored when asked), "\n". */
static int put_record(tokbuf *b, const tok_vocab *v, int32_t key, int val, int scored) {
    char num[24];
    snprintf(num, sizeof num, " %d", val);
    if (put(b, &key, 1, 0) || put_text(b, v, ":", 0) || put_text(b, v, num, scored) ||
        put_text(b, v, "\n", 0))
        return -1;
    return 0;
}

/* Tokens of one record (the same for every key: one key token, digits of a
 * fixed width). */
static int record_tokens(const tok_vocab *v, int32_t key, int lo_val, int *n) {
    tokbuf b = {malloc(sizeof(int32_t) * 64), malloc(64), 0, 64};
    int rc = b.t && b.m ? put_record(&b, v, key, lo_val, 0) : -1;
    *n = b.n;
    free(b.t);
    free(b.m);
    return rc;
}

static int build_one(const tok_vocab *v, const ev_task_opts *o, const int32_t *w, int nw,
                     int lo_val, int per, ev_sample *s, uint64_t st) {
    const char *head = "Each word has a number. Remember them.\n";
    int bos = tok_add_bos(v) && tok_bos(v) >= 0, nh = 0;
    int32_t *hid = ev_encode(v, head, strlen(head), &nh, 0);
    if (!hid) return -1;
    int n_rec = (o->length - bos - nh) / (2 * per);
    if (n_rec < 2 || n_rec > nw) {
        free(hid);
        return -2;
    }
    tokbuf b = {malloc(sizeof(int32_t) * o->length), malloc((size_t)o->length), 0, o->length};
    int32_t *key = malloc(sizeof(int32_t) * n_rec);
    int *val = malloc(sizeof(int) * n_rec), *ord = malloc(sizeof(int) * n_rec);
    int rc = b.t && b.m && key && val && ord ? 0 : -1;
    for (int j = 0; !rc && j < n_rec; j++) { /* distinct keys */
        int dup;
        do {
            key[j] = w[ev_rng_below(&st, nw)];
            dup = 0;
            for (int i = 0; i < j; i++) dup |= key[i] == key[j];
        } while (dup);
        val[j] = lo_val + ev_rng_below(&st, 9 * lo_val);
        ord[j] = j;
    }
    for (int j = n_rec - 1; !rc && j > 0; j--) { /* questions in another order */
        int k = ev_rng_below(&st, j + 1), t = ord[j];
        ord[j] = ord[k];
        ord[k] = t;
    }
    if (!rc && bos) rc = put(&b, (int32_t[]){tok_bos(v)}, 1, 0);
    if (!rc) rc = put(&b, hid, nh, 0);
    for (int j = 0; !rc && j < n_rec; j++) rc = put_record(&b, v, key[j], val[j], 0);
    s->prefix = b.n;
    for (int j = 0; !rc && j < n_rec; j++) rc = put_record(&b, v, key[ord[j]], val[ord[j]], 1);
    free(hid), free(key), free(val), free(ord);
    if (rc) {
        free(b.t), free(b.m);
        return -1;
    }
    s->tokens = b.t;
    s->mask = b.m;
    s->n = b.n;
    s->score = 1;
    return 0;
}

int ev_build_lookup(const llm_model *m, const ev_task_opts *o, ev_sample *s, char *err,
                    size_t errlen) {
    const tok_vocab *v = llm_get_vocab(m);
    if (o->digits < 1 || o->digits > 9)
        return ev_set_err(err, errlen, "%s--digits must be in [1, 9], got %ld", "", o->digits, 0);
    int nw = 0, per = 0, lo_val = 1;
    for (int d = 1; d < o->digits; d++) lo_val *= 10;
    int32_t *w = ev_word_tokens(v, &nw);
    if (!w || nw < 100) {
        free(w);
        return ev_set_err(err, errlen, "%sthe vocabulary has only %ld plain word tokens", "", nw, 0);
    }
    if (record_tokens(v, w[0], lo_val, &per)) {
        free(w);
        return ev_set_err(err, errlen, "%s", "cannot tokenize a lookup record", 0, 0);
    }
    for (int i = 0; i < o->samples; i++) {
        int rc = build_one(v, o, w, nw, lo_val, per, &s[i], o->seed * 1000003u + (uint64_t)i + 991);
        if (rc) {
            free(w);
            return rc == -2 ? ev_set_err(err, errlen,
                                         "%s--length %ld leaves room for fewer than 2 records "
                                         "(%ld tokens each, asked twice)",
                                         "", o->length, per)
                            : ev_set_err(err, errlen, "%s", "out of memory", 0, 0);
        }
    }
    free(w);
    return 0;
}
