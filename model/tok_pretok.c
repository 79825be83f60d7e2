/* tok_pretok: the byte-level BPE pre-tokenizers, written as hand scanners
 * over Unicode categories instead of a regex engine.
 *
 * Each scanner reproduces one regex (leftmost alternative wins, greedy):
 *   GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2:  Llama-3 with \p{N} instead of \p{N}{1,3}
 *   SmolLM: every \p{N} is first split off on its own, then GPT-2 runs on
 *           the pieces in between (HF's Digits(individual) + ByteLevel).
 * The scanners only see one segment [lo, hi): the regex's lookahead
 * (?!\S) treats the segment end as "no non-space follows", which is what
 * matching the regex on that segment alone does. */
#include <stdlib.h>
#include <string.h>

#include "pverr.h"
#include "tok_internal.h"
#include "unicode.h"

/* Flag bit meaning "position inside the segment": lets the scanners tell
 * punctuation (no category bits) from the segment end. */
enum { F_IN = 8 };
#define CP_NONE 0xFFFFFFFFu

typedef struct {
    const uint32_t *cp;
    const uint8_t *fl;
    size_t lo, hi;
    size_t prev; /* end of the last emitted piece */
    const size_t *boff; /* byte offset of each code point */
    tok_spans *out;
    int oom;
} scan;

static unsigned F(const scan *s, size_t pos) { return pos < s->hi ? s->fl[pos] : 0; }
static uint32_t C(const scan *s, size_t pos) { return pos < s->hi ? s->cp[pos] : CP_NONE; }
static uint32_t lower_ascii(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

static void emit(scan *s, size_t end) {
    if (end <= s->prev)
        return;
    s->prev = end;
    tok_spans *o = s->out;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        size_t *ne = realloc(o->end, nc * sizeof *ne);
        if (!ne) {
            s->oom = 1;
            return;
        }
        o->end = ne, o->cap = nc;
    }
    o->end[o->n++] = s->boff[end];
}

/* 's 't 're 've 'm 'll 'd at pos; returns the match length or 0. */
static size_t contraction(const scan *s, size_t pos, int fold) {
    if (C(s, pos) != '\'')
        return 0;
    uint32_t a = C(s, pos + 1), b = C(s, pos + 2);
    if (fold)
        a = lower_ascii(a), b = lower_ascii(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

static int is_other(unsigned f) { return (f & F_IN) && !(f & (UC_SPACE | UC_LETTER | UC_NUMBER)); }

/* Whitespace alternatives shared by all scanners: \s+(?!\S) then \s+. */
static size_t spaces(const scan *s, size_t pos) {
    size_t n = 0;
    while (F(s, pos + n) & UC_SPACE)
        n++;
    if (n > 1 && pos + n < s->hi)
        return n - 1; /* leave the last space to prefix the next word */
    return n;
}

static void scan_gpt2(scan *s) {
    size_t pos = s->lo;
    while (pos < s->hi && !s->oom) {
        uint32_t c = C(s, pos);
        size_t m = contraction(s, pos, 0);
        if (m) {
            pos += m;
            emit(s, pos);
            continue;
        }
        unsigned f2 = c == ' ' ? F(s, pos + 1) : F(s, pos);
        if (f2 & (UC_LETTER | UC_NUMBER)) {
            unsigned cat = f2 & (UC_LETTER | UC_NUMBER);
            pos += c == ' ';
            while (F(s, pos) & cat)
                pos++;
            emit(s, pos);
            continue;
        }
        if (is_other(f2)) {
            pos += c == ' ';
            while (is_other(F(s, pos)))
                pos++;
            emit(s, pos);
            continue;
        }
        m = spaces(s, pos);
        pos += m ? m : 1;
        emit(s, pos);
    }
}

/* Llama-3 (max_digits 3) and Qwen2 (max_digits 1). */
static void scan_llama3(scan *s, size_t max_digits) {
    size_t pos = s->lo;
    while (pos < s->hi && !s->oom) {
        uint32_t c = C(s, pos);
        unsigned f = F(s, pos);
        size_t m = contraction(s, pos, 1);
        if (m) {
            pos += m;
            emit(s, pos);
            continue;
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(c == '\r' || c == '\n' || (f & UC_NUMBER)) &&
            ((f & UC_LETTER) || (F(s, pos + 1) & UC_LETTER))) {
            pos++;
            while (F(s, pos) & UC_LETTER)
                pos++;
            emit(s, pos);
            continue;
        }
        if (f & UC_NUMBER) {
            size_t start = pos;
            while ((F(s, pos) & UC_NUMBER) && pos - start < max_digits)
                pos++;
            emit(s, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
        unsigned f2 = c == ' ' ? F(s, pos + 1) : f;
        if (is_other(f2)) {
            pos += c == ' ';
            while (is_other(F(s, pos)))
                pos++;
            while (C(s, pos) == '\r' || C(s, pos) == '\n')
                pos++;
            emit(s, pos);
            continue;
        }
        /* \s*[\r\n]+ : the run of spaces up to its last line break. */
        size_t n = 0, last_nl = 0;
        while (F(s, pos + n) & UC_SPACE) {
            uint32_t d = C(s, pos + n);
            n++;
            if (d == '\r' || d == '\n')
                last_nl = n;
        }
        if (last_nl) {
            pos += last_nl;
            emit(s, pos);
            continue;
        }
        m = spaces(s, pos);
        pos += m ? m : 1;
        emit(s, pos);
    }
}

int tok_pre_from_name(const char *name, size_t len) {
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(name, lit, len) == 0)
    if (!name)
        return TOK_PRE_GPT2;
    if (IS("smollm"))
        return TOK_PRE_SMOLLM;
    if (IS("llama-bpe") || IS("llama3") || IS("llama-v3"))
        return TOK_PRE_LLAMA3;
    if (IS("qwen2"))
        return TOK_PRE_QWEN2;
    return TOK_PRE_GPT2;
#undef IS
}

int tok_pretokenize(int pre, const char *str, size_t len, tok_spans *out) {
    if (len == 0)
        return PV_OK;
    uint32_t *cp = malloc(len * sizeof *cp);
    uint8_t *fl = malloc(len);
    size_t *boff = malloc((len + 1) * sizeof *boff);
    if (!cp || !fl || !boff) {
        free(cp), free(fl), free(boff);
        return PV_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        boff[n] = i;
        /* Invalid bytes come back as UC_INVALID with no category: they
         * group with punctuation, and stay bytes for the BPE. */
        i += (size_t)uc_decode(str + i, len - i, &cp[n]);
        fl[n] = (uint8_t)(uc_flags(cp[n]) | F_IN);
        n++;
    }
    boff[n] = len;
    scan s = {.cp = cp, .fl = fl, .lo = 0, .hi = n, .prev = 0, .boff = boff, .out = out};
    switch (pre) {
    case TOK_PRE_LLAMA3:
        scan_llama3(&s, 3);
        break;
    case TOK_PRE_QWEN2:
        scan_llama3(&s, 1);
        break;
    case TOK_PRE_SMOLLM:
        /* Digits are pieces of their own; GPT-2 runs between them. */
        for (size_t i = 0; i < n && !s.oom;) {
            size_t j = i;
            if (fl[i] & UC_NUMBER)
                j = i + 1;
            else
                while (j < n && !(fl[j] & UC_NUMBER))
                    j++;
            s.lo = i, s.hi = j;
            if (j == i + 1 && (fl[i] & UC_NUMBER))
                emit(&s, j);
            else
                scan_gpt2(&s);
            i = j;
        }
        break;
    default:
        scan_gpt2(&s);
        break;
    }
    free(cp), free(fl), free(boff);
    return s.oom ? PV_ENOMEM : PV_OK;
}
