/* jinja_lex: template text -> tokens, with Jinja's whitespace control as
 * Hugging Face configures it:
 *   {%- / {{- / {#-   strip all whitespace before the tag;
 *   -%} / -}} / -#}   strip all whitespace after it;
 *   trim_blocks       the first newline after %} or #} is dropped;
 *   lstrip_blocks     spaces and tabs from the start of a line up to {% or
 *                     {# are dropped ({%+ keeps them);
 *   one trailing newline of the whole source is dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"
#include "pverr.h"

typedef struct {
    jj_arena *a;
    jj_tok *t;
    int n, cap;
    int line;
    char *err;
    size_t errlen;
} lexer;

static int push(lexer *L, jj_tok tk) {
    if (L->n == L->cap) {
        int nc = L->cap ? L->cap * 2 : 256;
        jj_tok *nt = jj_alloc(L->a, sizeof *nt * (size_t)nc);
        if (!nt) return PV_ENOMEM;
        if (L->n) memcpy(nt, L->t, sizeof *nt * (size_t)L->n);
        L->t = nt, L->cap = nc;
    }
    tk.line = tk.line ? tk.line : L->line;
    L->t[L->n++] = tk;
    return 0;
}

static int count_lines(const char *p, const char *e) {
    int n = 0;
    for (; p < e; p++) n += *p == '\n';
    return n;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_id(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Python-style escapes of a string literal; unknown ones stay as written. */
static int string_lit(lexer *L, const char **pp, const char *end) {
    const char *p = *pp;
    char q = *p++;
    jj_buf b = {0};
    while (p < end && *p != q) {
        char c = *p++;
        if (c != '\\' || p >= end) {
            jj_put(&b, &c, 1);
            continue;
        }
        char e = *p++, o = 0;
        switch (e) {
        case 'n': o = '\n'; break;
        case 't': o = '\t'; break;
        case 'r': o = '\r'; break;
        case '\\': case '\'': case '"': o = e; break;
        case '\n': continue; /* a backslash-newline continues the line */
        default: jj_put(&b, "\\", 1); o = e; break;
        }
        jj_put(&b, &o, 1);
    }
    if (p >= end) {
        free(b.p);
        return pv_fail(L->err, L->errlen, PV_EFORMAT, "jinja: line %d: unterminated string", L->line);
    }
    jj_tok tk = {.k = TK_STR, .s = jj_strndup(L->a, b.p ? b.p : "", b.n), .n = b.n};
    int oom = b.oom || !tk.s;
    free(b.p);
    *pp = p + 1;
    return oom ? PV_ENOMEM : push(L, tk);
}

static const char *const ops[] = {"//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}",
                                  ",", ".", ":", "|", "~", "+", "-", "*", "/", "%", "<", ">",
                                  "=", NULL};

/* Tokens of one tag's inside, up to its closer ("}}" or "%}", with '-' to
 * strip what follows). *pp ends after the closer; *strip_after is set. */
static int tag_body(lexer *L, const char **pp, const char *end, char closer, int *strip_after) {
    const char *p = *pp;
    int depth = 0; /* open brackets: a '}' inside {{ {'a': 1} }} is no closer */
    for (;;) {
        while (p < end && is_ws(*p)) L->line += *p++ == '\n';
        if (p >= end)
            return pv_fail(L->err, L->errlen, PV_EFORMAT, "jinja: line %d: unclosed tag", L->line);
        if (depth == 0 && end - p >= 3 && p[0] == '-' && p[1] == closer && p[2] == '}') {
            *strip_after = 1;
            *pp = p + 3;
            return 0;
        }
        if (depth == 0 && end - p >= 2 && p[0] == closer && p[1] == '}') {
            *strip_after = 0;
            *pp = p + 2;
            return 0;
        }
        int rc;
        if (*p == '\'' || *p == '"') {
            if ((rc = string_lit(L, &p, end))) return rc;
        } else if (*p >= '0' && *p <= '9') {
            char *e;
            const char *st = p;
            while (p < end && (is_id(*p) || *p == '.')) p++;
            char num[64];
            size_t n = (size_t)(p - st) < sizeof num - 1 ? (size_t)(p - st) : sizeof num - 1;
            memcpy(num, st, n);
            num[n] = 0;
            jj_tok tk = {.k = strchr(num, '.') || strchr(num, 'e') ? TK_FLOAT : TK_INT};
            if (tk.k == TK_INT) tk.i = strtoll(num, &e, 10);
            else tk.f = strtod(num, &e);
            if (*e)
                return pv_fail(L->err, L->errlen, PV_EFORMAT, "jinja: line %d: bad number '%s'",
                               L->line, num);
            if ((rc = push(L, tk))) return rc;
        } else if (is_id(*p)) {
            const char *st = p;
            while (p < end && is_id(*p)) p++;
            jj_tok tk = {.k = TK_NAME, .s = jj_strndup(L->a, st, (size_t)(p - st)), .n = (size_t)(p - st)};
            if (!tk.s || (rc = push(L, tk))) return PV_ENOMEM;
        } else {
            int k = 0;
            while (ops[k] && ((size_t)(end - p) < strlen(ops[k]) || strncmp(p, ops[k], strlen(ops[k]))))
                k++;
            if (!ops[k])
                return pv_fail(L->err, L->errlen, PV_EFORMAT, "jinja: line %d: unexpected '%c'",
                               L->line, *p);
            if (*p == '(' || *p == '[' || *p == '{') depth++;
            if (*p == ')' || *p == ']' || *p == '}') depth--;
            jj_tok tk = {.k = TK_OP, .s = ops[k], .n = strlen(ops[k])};
            p += tk.n;
            if ((rc = push(L, tk))) return rc;
        }
    }
}

/* Text before a tag, trimmed per the tag's left side. */
static int text(lexer *L, const char *s, size_t n, char kind, char mod, int line_starting) {
    if (mod == '-') {
        while (n && is_ws(s[n - 1])) n--;
    } else if (kind && kind != '{' && mod != '+') {
        size_t l = n;
        while (l && s[l - 1] != '\n') l--;
        int blank = 1;
        for (size_t i = l; i < n; i++) blank &= s[i] == ' ' || s[i] == '\t';
        if (blank && (l > 0 || line_starting)) n = l;
    }
    if (!n) return 0;
    jj_tok tk = {.k = TK_TEXT, .s = jj_strndup(L->a, s, n), .n = n};
    return tk.s ? push(L, tk) : PV_ENOMEM;
}

/* After a tag's closer: '-' strips all whitespace, trim_blocks one newline
 * after %} and #}. Returns the new position; *ls: a line starts there. */
static const char *after_tag(const char *p, const char *end, int strip, char kind, int *ls) {
    const char *st = p;
    if (strip)
        while (p < end && is_ws(*p)) p++;
    else if (kind != '{' && p < end && *p == '\n')
        p++;
    *ls = p > st && p[-1] == '\n';
    return p;
}

int jj_lex(jj_arena *a, const char *src, size_t len, jj_tok **toks, int *n, char *err,
           size_t errlen) {
    lexer L = {.a = a, .line = 1, .err = err, .errlen = errlen};
    if (len && src[len - 1] == '\n') len--;
    const char *p = src, *end = src + len;
    int ls = 1, rc;
    while (p < end) {
        const char *t = p;
        while (t + 1 < end && !(t[0] == '{' && (t[1] == '{' || t[1] == '%' || t[1] == '#'))) t++;
        if (t + 1 >= end) t = end;
        char kind = t < end ? t[1] : 0, mod = t + 2 < end ? t[2] : 0;
        if ((rc = text(&L, p, (size_t)(t - p), kind, mod, ls))) return rc;
        L.line += count_lines(p, t);
        if (t >= end) break;
        p = t + 2 + (mod == '-' || mod == '+');
        int strip = 0;
        if (kind == '#') {
            const char *c = p;
            while (c + 1 < end && !(c[0] == '#' && c[1] == '}')) c++;
            if (c + 1 >= end)
                return pv_fail(err, errlen, PV_EFORMAT, "jinja: line %d: unclosed comment", L.line);
            strip = c > p && c[-1] == '-';
            L.line += count_lines(p, c);
            p = c + 2;
        } else {
            int line = L.line;
            if ((rc = push(&L, (jj_tok){.k = kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, .line = line})))
                return rc;
            if ((rc = tag_body(&L, &p, end, kind == '{' ? '}' : '%', &strip))) return rc;
            if ((rc = push(&L, (jj_tok){.k = kind == '{' ? TK_VAR_END : TK_BLOCK_END}))) return rc;
        }
        const char *q = after_tag(p, end, strip, kind, &ls);
        L.line += count_lines(p, q);
        p = q;
    }
    if ((rc = push(&L, (jj_tok){.k = TK_EOF}))) return rc;
    *toks = L.t;
    *n = L.n;
    return 0;
}
