/* tokenizer: loading a vocabulary from GGUF metadata, token lookup, and
 * decoding (tok_piece, the streaming decoder). Encoding lives in
 * tok_encode.c, the pre-tokenizer scanners in tok_pretok.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "tok_internal.h"
#include "unicode.h"

static uint32_t fnv1a(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

int32_t tok_lookup(const tok_vocab *v, const char *piece, size_t len) {
    if (!v || (!piece && len))
        return -1;
    for (uint32_t i = fnv1a(piece, len) & v->hash_mask;; i = (i + 1) & v->hash_mask) {
        int32_t id = v->hash[i];
        if (id < 0)
            return -1;
        size_t tl;
        const char *t = tok_text(v, id, &tl);
        if (tl == len && memcmp(t, piece, len) == 0)
            return id;
    }
}

static uint32_t table_size(size_t n) {
    uint32_t sz = 16;
    while (sz < 2 * n)
        sz <<= 1;
    return sz;
}

static int build_hash(tok_vocab *v) {
    uint32_t sz = table_size((size_t)v->n);
    v->hash = malloc(sz * sizeof *v->hash);
    if (!v->hash)
        return PV_ENOMEM;
    memset(v->hash, 0xFF, sz * sizeof *v->hash);
    v->hash_mask = sz - 1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const char *t = tok_text(v, id, &len);
        /* Duplicate texts: the first id wins, as a left-to-right scan would. */
        if (tok_lookup(v, t, len) >= 0)
            continue;
        uint32_t i = fnv1a(t, len) & v->hash_mask;
        while (v->hash[i] >= 0)
            i = (i + 1) & v->hash_mask;
        v->hash[i] = id;
    }
    return PV_OK;
}

const tok_merge *tok_merge_find(const tok_vocab *v, int32_t l, int32_t r) {
    if (!v->merges)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1; /* never 0 */
    for (uint32_t i = mix64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        if (v->merges[i].key == 0)
            return NULL;
        if (v->merges[i].key == key)
            return &v->merges[i];
    }
}

static int load_merges(tok_vocab *v, const gguf_file *g, char *err, size_t errlen) {
    gguf_vtype et;
    uint64_t n;
    if (gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n) != PV_OK || et != GGUF_TYPE_STRING) {
        snprintf(err, errlen, "tokenizer: gpt2 vocabulary without tokenizer.ggml.merges");
        return PV_EFORMAT;
    }
    if (n > (uint64_t)INT32_MAX / 2)
        return PV_ERANGE;
    uint32_t sz = table_size((size_t)n);
    v->merges = calloc(sz, sizeof *v->merges);
    if (!v->merges)
        return PV_ENOMEM;
    v->merge_mask = sz - 1;
    char buf[512];
    for (uint64_t k = 0; k < n; k++) {
        gguf_str m;
        int rc = gguf_arr_str(g, "tokenizer.ggml.merges", k, &m);
        if (rc != PV_OK)
            return rc;
        /* "left right": the separator is searched from index 1 so a left
         * part that is itself " " still parses. */
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            snprintf(err, errlen, "tokenizer: merge %llu has no space", (unsigned long long)k);
            return PV_EFORMAT;
        }
        size_t ll = (size_t)(sp - m.ptr), rl = m.len - ll - 1;
        int32_t l = tok_lookup(v, m.ptr, ll), r = tok_lookup(v, sp + 1, rl);
        if (l < 0 || r < 0 || ll + rl > sizeof buf)
            continue; /* can never fire: its operands are not tokens */
        memcpy(buf, m.ptr, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t res = tok_lookup(v, buf, ll + rl);
        if (res < 0)
            continue;
        uint64_t key = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1;
        uint32_t i = mix64(key) & v->merge_mask;
        while (v->merges[i].key != 0 && v->merges[i].key != key)
            i = (i + 1) & v->merge_mask;
        if (v->merges[i].key == key)
            continue; /* duplicate merge: the lower rank stays */
        v->merges[i] = (tok_merge){.key = key, .rank = (int32_t)k, .result = res};
    }
    return PV_OK;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* Bytes a token decodes to, appended to v->bytes at *pos. */
static size_t decode_text(const tok_vocab *v, int32_t id, char *dst) {
    size_t len;
    const char *t = tok_text(v, id, &len);
    int type = v->type[id];
    if (type == TOK_TYPE_UNUSED)
        return 0;
    if (type == TOK_TYPE_CONTROL || type == TOK_TYPE_USER_DEFINED) {
        memcpy(dst, t, len); /* added tokens are stored as plain text */
        return len;
    }
    if (v->kind == TOK_KIND_SPM) {
        if (type == TOK_TYPE_BYTE && len == 6 && memcmp(t, "<0x", 3) == 0 && t[5] == '>' &&
            hexval(t[3]) >= 0 && hexval(t[4]) >= 0) {
            dst[0] = (char)(hexval(t[3]) * 16 + hexval(t[4]));
            return 1;
        }
        if (type == TOK_TYPE_UNKNOWN) { /* sentencepiece decodes <unk> as " ⁇ " */
            memcpy(dst, " \xE2\x81\x87 ", 5);
            return 5;
        }
        size_t o = 0;
        for (size_t i = 0; i < len;) {
            if (len - i >= 3 && memcmp(t + i, "\xE2\x96\x81", 3) == 0) {
                dst[o++] = ' ', i += 3;
            } else {
                dst[o++] = t[i++];
            }
        }
        return o;
    }
    /* Byte-level: each code point stands for one byte; anything outside the
     * alphabet is passed through as its UTF-8. */
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = uc_decode(t + i, len - i, &cp);
        int b = cp == UC_INVALID ? -1 : uc_cp_to_byte(cp);
        if (b >= 0) {
            dst[o++] = (char)b;
        } else {
            memcpy(dst + o, t + i, (size_t)n);
            o += (size_t)n;
        }
        i += (size_t)n;
    }
    return o;
}

typedef struct {
    uint32_t len;
    int32_t id;
} len_id;

/* Longest text first (so "<|im_start|>" wins over a prefix of it), then by id. */
static int cmp_special(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t opt_id(const gguf_file *g, const char *key, int n) {
    int64_t x;
    if (gguf_get_int(g, key, &x) != PV_OK || x < 0 || x >= n)
        return -1;
    return (int32_t)x;
}

static int load_tokens(tok_vocab *v, const gguf_file *g, char *err, size_t errlen) {
    gguf_vtype et;
    uint64_t n;
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) != PV_OK || et != GGUF_TYPE_STRING ||
        n == 0) {
        snprintf(err, errlen, "tokenizer: missing or empty tokenizer.ggml.tokens");
        return PV_EFORMAT;
    }
    if (n > (uint64_t)INT32_MAX / 4) {
        snprintf(err, errlen, "tokenizer: %llu tokens is too many", (unsigned long long)n);
        return PV_ERANGE;
    }
    v->n = (int)n;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        int rc = gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s);
        if (rc != PV_OK)
            return rc;
        total += s.len;
        if (total > UINT32_MAX / 2) {
            snprintf(err, errlen, "tokenizer: token texts too large");
            return PV_ERANGE;
        }
    }
    v->text = malloc(total + 1);
    v->text_off = malloc((n + 1) * sizeof *v->text_off);
    v->score = calloc(n, sizeof *v->score);
    v->type = malloc(n);
    if (!v->text || !v->text_off || !v->score || !v->type)
        return PV_ENOMEM;
    size_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s);
        v->text_off[i] = (uint32_t)o;
        memcpy(v->text + o, s.ptr, s.len);
        o += s.len;
    }
    v->text_off[n] = (uint32_t)o;
    uint64_t m;
    int have_types = gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &m) == PV_OK && m == n;
    int have_scores = gguf_get_arr(g, "tokenizer.ggml.scores", &et, &m) == PV_OK && m == n;
    for (uint64_t i = 0; i < n; i++) {
        int64_t t = TOK_TYPE_NORMAL;
        double sc = 0;
        if (have_types && gguf_arr_int(g, "tokenizer.ggml.token_type", i, &t) != PV_OK)
            t = TOK_TYPE_NORMAL;
        if (t < TOK_TYPE_NORMAL || t > TOK_TYPE_BYTE)
            t = TOK_TYPE_NORMAL;
        if (have_scores)
            gguf_arr_float(g, "tokenizer.ggml.scores", i, &sc);
        v->type[i] = (uint8_t)t;
        v->score[i] = (float)sc;
    }
    return PV_OK;
}

static int load_derived(tok_vocab *v) {
    size_t n = (size_t)v->n;
    /* Decoded bytes are never longer than the text, except SPM's <unk>. */
    v->bytes = malloc(v->text_off[n] + 5 * n + 1);
    v->bytes_off = malloc((n + 1) * sizeof *v->bytes_off);
    v->special = malloc(n * sizeof *v->special);
    if (!v->bytes || !v->bytes_off || !v->special)
        return PV_ENOMEM;
    size_t o = 0;
    for (int32_t id = 0; id < v->n; id++) {
        v->bytes_off[id] = (uint32_t)o;
        o += decode_text(v, id, v->bytes + o);
    }
    v->bytes_off[n] = (uint32_t)o;

    for (int b = 0; b < 256; b++) {
        char s[8];
        int len;
        if (v->kind == TOK_KIND_BPE)
            len = uc_encode(uc_byte_to_cp((uint8_t)b), s);
        else
            len = snprintf(s, sizeof s, "<0x%02X>", b);
        v->byte_tok[b] = tok_lookup(v, s, (size_t)len);
    }

    len_id *sp = malloc(n * sizeof *sp);
    if (!sp)
        return PV_ENOMEM;
    v->n_special = 0;
    for (int32_t id = 0; id < v->n; id++) {
        int t = v->type[id];
        uint32_t len = v->text_off[id + 1] - v->text_off[id];
        if ((t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN) && len)
            sp[v->n_special++] = (len_id){len, id};
    }
    qsort(sp, (size_t)v->n_special, sizeof *sp, cmp_special);
    for (int i = 0; i < v->n_special; i++)
        v->special[i] = sp[i].id;
    free(sp);

    /* End-of-generation set: EOS, EOT and the end-of-turn markers of the
     * common chat formats, so a model that ends a turn with <|im_end|> while
     * its EOS is <|endoftext|> (or the reverse) still stops. */
    static const char *const eog_text[] = {"<|eot_id|>",     "<|im_end|>",  "<|end|>",
                                           "<|endoftext|>",  "<|eom_id|>",  "<end_of_turn>",
                                           "<|end_of_text|>"};
    v->eog = malloc((2 + sizeof eog_text / sizeof *eog_text) * sizeof *v->eog);
    if (!v->eog)
        return PV_ENOMEM;
    v->n_eog = 0;
    if (v->eos >= 0)
        v->eog[v->n_eog++] = v->eos;
    if (v->eot >= 0)
        v->eog[v->n_eog++] = v->eot;
    for (size_t i = 0; i < sizeof eog_text / sizeof *eog_text; i++) {
        int32_t id = tok_lookup(v, eog_text[i], strlen(eog_text[i]));
        if (id >= 0 && v->type[id] == TOK_TYPE_CONTROL)
            v->eog[v->n_eog++] = id;
    }
    return PV_OK;
}

int tok_load(const gguf_file *g, tok_vocab **out, char *err, size_t errlen) {
    char dummy[1];
    if (!err || !errlen)
        err = dummy, errlen = sizeof dummy;
    err[0] = 0;
    if (!g || !out)
        return PV_EINVAL;
    *out = NULL;
    gguf_str model;
    if (gguf_get_str(g, "tokenizer.ggml.model", &model) != PV_OK) {
        snprintf(err, errlen, "tokenizer: missing tokenizer.ggml.model");
        return PV_EFORMAT;
    }
    tok_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return PV_ENOMEM;
    if (gguf_str_eq(model, "gpt2")) {
        v->kind = TOK_KIND_BPE;
    } else if (gguf_str_eq(model, "llama")) {
        v->kind = TOK_KIND_SPM;
    } else {
        snprintf(err, errlen, "tokenizer: unsupported tokenizer.ggml.model '%.*s'",
                 (int)(model.len > 64 ? 64 : model.len), model.ptr);
        free(v);
        return PV_EUNSUPPORTED;
    }
    int rc = load_tokens(v, g, err, errlen);
    if (rc == PV_OK)
        rc = build_hash(v);
    if (rc == PV_OK && v->kind == TOK_KIND_BPE)
        rc = load_merges(v, g, err, errlen);
    if (rc == PV_OK) {
        gguf_str pre = {0};
        int has_pre = gguf_get_str(g, "tokenizer.ggml.pre", &pre) == PV_OK;
        v->pre = has_pre ? tok_pre_from_name(pre.ptr, pre.len) : TOK_PRE_GPT2;
        v->ignore_merges = v->pre == TOK_PRE_LLAMA3;
        v->bos = opt_id(g, "tokenizer.ggml.bos_token_id", v->n);
        v->eos = opt_id(g, "tokenizer.ggml.eos_token_id", v->n);
        v->eot = opt_id(g, "tokenizer.ggml.eot_token_id", v->n);
        v->unk = opt_id(g, "tokenizer.ggml.unknown_token_id", v->n);
        /* Defaults as llama.cpp: SentencePiece and Llama-3 add BOS. */
        int b = v->kind == TOK_KIND_SPM || v->pre == TOK_PRE_LLAMA3;
        gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b);
        v->add_bos = b;
        b = v->kind == TOK_KIND_SPM;
        gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b);
        v->add_space_prefix = b;
        rc = load_derived(v);
    }
    if (rc != PV_OK) {
        if (!err[0])
            snprintf(err, errlen, "tokenizer: %s", pv_strerror(rc));
        tok_free(v);
        return rc;
    }
    *out = v;
    return PV_OK;
}

void tok_free(tok_vocab *v) {
    if (!v)
        return;
    free(v->text), free(v->text_off), free(v->bytes), free(v->bytes_off);
    free(v->score), free(v->type), free(v->hash), free(v->merges);
    free(v->special), free(v->eog);
    free(v);
}

int tok_set_pretokenizer(tok_vocab *v, const char *name) {
    if (!v || !name || v->kind != TOK_KIND_BPE)
        return PV_EINVAL;
    v->pre = tok_pre_from_name(name, strlen(name));
    v->ignore_merges = v->pre == TOK_PRE_LLAMA3;
    return PV_OK;
}

int tok_n_vocab(const tok_vocab *v) { return v ? v->n : 0; }
int32_t tok_bos(const tok_vocab *v) { return v ? v->bos : -1; }
int32_t tok_eos(const tok_vocab *v) { return v ? v->eos : -1; }
int tok_add_bos(const tok_vocab *v) { return v ? v->add_bos : 0; }

int tok_is_eog(const tok_vocab *v, int32_t id) {
    if (!v || id < 0)
        return 0;
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id)
            return 1;
    return 0;
}

int tok_piece(const tok_vocab *v, int32_t id, int render_special, char *buf, int cap) {
    if (!v || id < 0 || id >= v->n || cap < 0 || (!buf && cap))
        return PV_EINVAL;
    if (v->type[id] == TOK_TYPE_CONTROL && !render_special)
        return 0;
    size_t len = v->bytes_off[id + 1] - v->bytes_off[id];
    if (cap > 0) /* buf may be NULL when only the length is wanted */
        memcpy(buf, v->bytes + v->bytes_off[id], len < (size_t)cap ? len : (size_t)cap);
    return (int)len;
}

int tok_piece_str(const tok_vocab *v, int32_t id, int render_special, char *buf, int cap) {
    int n = tok_piece(v, id, render_special, buf, cap - 1);
    if (n < 0) n = 0;
    if (n > cap - 1) n = cap - 1;
    buf[n] = 0;
    return n;
}

/* ---- streaming decoder ---- */

struct tok_stream {
    const tok_vocab *v;
    int render_special;
    size_t n;          /* pending bytes: the start of an incomplete character */
    char pending[16];  /* one token may leave at most 3 bytes pending */
};

tok_stream *tok_stream_new(const tok_vocab *v, int render_special) {
    if (!v)
        return NULL;
    tok_stream *s = calloc(1, sizeof *s);
    if (s)
        s->v = v, s->render_special = render_special;
    return s;
}

void tok_stream_free(tok_stream *s) { free(s); }

/* Length of a prefix of p[0..n) that could still become a valid character
 * when more bytes arrive (0 when p[0] cannot start one). */
static size_t incomplete_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (need == 0 || n >= need)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Convert src[0..n) to valid UTF-8 into out (room for at least 3*n bytes);
 * an incomplete tail is left unconverted unless final. Returns bytes
 * written; *used receives the number of source bytes consumed. */
static size_t sanitize(const char *src, size_t n, int final, char *out, size_t *used) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        int k = uc_decode(src + i, n - i, &cp);
        if (cp != UC_INVALID) {
            memcpy(out + o, src + i, (size_t)k);
            o += (size_t)k, i += (size_t)k;
            continue;
        }
        if (!final && incomplete_len((const unsigned char *)src + i, n - i))
            break;
        memcpy(out + o, "\xEF\xBF\xBD", 3); /* U+FFFD for one bad byte */
        o += 3, i++;
    }
    *used = i;
    return o;
}

static int stream_emit(tok_stream *s, const char *piece, size_t plen, int final, char *buf,
                       int cap) {
    if (!buf || cap < 1)
        return PV_EINVAL;
    size_t n = s->n + plen;
    char stackbuf[256];
    char *tmp = n <= sizeof stackbuf / 4 ? stackbuf : malloc(n * 4 + 1);
    if (!tmp)
        return PV_ENOMEM;
    char *in = tmp + 3 * n; /* input staged after the output area */
    memcpy(in, s->pending, s->n);
    memcpy(in + s->n, piece, plen);
    size_t used, o = sanitize(in, n, final, tmp, &used);
    int rc;
    if (o > (size_t)cap - 1) {
        rc = PV_ESPACE; /* state untouched: the caller may retry */
    } else {
        memcpy(buf, tmp, o);
        buf[o] = 0;
        s->n = n - used;
        memcpy(s->pending, in + used, s->n);
        rc = (int)o;
    }
    if (tmp != stackbuf)
        free(tmp);
    return rc;
}

int tok_stream_push(tok_stream *s, int32_t id, char *buf, int cap) {
    if (!s)
        return PV_EINVAL;
    const tok_vocab *v = s->v;
    if (id < 0 || id >= v->n)
        return PV_EINVAL;
    size_t len = 0;
    if (v->type[id] != TOK_TYPE_CONTROL || s->render_special)
        len = v->bytes_off[id + 1] - v->bytes_off[id];
    return stream_emit(s, v->bytes + v->bytes_off[id], len, 0, buf, cap);
}

int tok_stream_flush(tok_stream *s, char *buf, int cap) {
    if (!s)
        return PV_EINVAL;
    return stream_emit(s, "", 0, 1, buf, cap);
}
