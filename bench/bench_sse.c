/* bench_sse: see bench_sse.h. The parser keeps only the current partial
 * line between feeds, so where a read splits the stream never changes the
 * result — only the timestamps, which are the reads' by definition. */
#include "bench_sse.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_sse {
    bench_result *res; /* borrowed */
    int chat, failed;
    size_t max_line;
    char *line; /* the current line, NUL-terminated when dispatched */
    size_t line_len, line_cap;
    double t_read; /* clock of the feed being parsed */
    double t_last; /* clock of the last chunk with choices */
    char err[160];
};

bench_sse *bench_sse_new(bench_result *res, int chat, size_t max_line) {
    bench_sse *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->res = res;
    p->chat = chat;
    p->max_line = max_line ? max_line : BENCH_SSE_MAX_LINE;
    return p;
}

void bench_sse_free(bench_sse *p) {
    if (!p) return;
    free(p->line);
    free(p);
}

const char *bench_sse_error(const bench_sse *p) { return p->err; }

static int fail(bench_sse *p, const char *fmt, const char *detail) {
    p->failed = 1;
    snprintf(p->err, sizeof p->err, fmt, detail);
    return -1;
}

static int push_itl(bench_result *res, double v) {
    if (res->n_itl == res->cap_itl) {
        size_t cap = res->cap_itl ? res->cap_itl * 2 : 64;
        double *q = realloc(res->itl, cap * sizeof *q);
        if (!q) return -1;
        res->itl = q;
        res->cap_itl = cap;
    }
    res->itl[res->n_itl++] = v;
    return 0;
}

/* A token count from usage, or -1: a hostile or broken server may send any
 * number, and converting an out-of-range double to long is undefined. */
static long count_of(const cJSON *c) {
    if (!cJSON_IsNumber(c)) return -1;
    double v = c->valuedouble;
    return v >= 0 && v <= 1e15 ? (long)v : -1;
}

static void read_usage(bench_result *res, const cJSON *o) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
    if (!cJSON_IsObject(u)) return;
    long c = count_of(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens"));
    long p = count_of(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens"));
    if (c >= 0) res->completion_tokens = c;
    if (p >= 0) res->prompt_tokens = p;
}

static size_t choice_text_len(const cJSON *choice, int chat) {
    const cJSON *t;
    if (chat) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(choice, "delta");
        if (!d) d = cJSON_GetObjectItemCaseSensitive(choice, "message");
        t = cJSON_GetObjectItemCaseSensitive(d, "content");
    } else {
        t = cJSON_GetObjectItemCaseSensitive(choice, "text");
    }
    return cJSON_IsString(t) ? strlen(t->valuestring) : 0;
}

/* An error object's message, for failure reasons. */
static void error_message(const cJSON *o, char *buf, size_t len) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
    snprintf(buf, len, "%s", cJSON_IsString(m) ? m->valuestring : "error object");
}

/* One complete line (NUL-terminated). 0, or -1 after failing. */
static int sse_line(bench_sse *p, const char *s) {
    if (strncmp(s, "data:", 5) != 0) return 0; /* blank, comment, event:, id: */
    s += 5;
    if (*s == ' ') s++;
    if (!strcmp(s, "[DONE]")) return 0;
    cJSON *o = cJSON_Parse(s);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        char snip[48];
        snprintf(snip, sizeof snip, "%.40s", s);
        return fail(p, "malformed SSE chunk: %s", snip);
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "error")) {
        char m[120];
        error_message(o, m, sizeof m);
        cJSON_Delete(o);
        return fail(p, "error in stream: %s", m);
    }
    bench_result *res = p->res;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        /* vLLM: the first chunk with choices is TTFT, every later one an ITL gap */
        if (res->n_chunks == 0) res->ttft = p->t_read - res->t_send;
        else if (push_itl(res, p->t_read - p->t_last)) {
            cJSON_Delete(o);
            return fail(p, "%s", "out of memory");
        }
        p->t_last = p->t_read;
        res->n_chunks++;
        size_t tl = choice_text_len(cJSON_GetArrayItem(ch, 0), p->chat);
        res->text_len += tl;
        res->n_text_chunks += tl > 0; /* a final chunk may carry only finish_reason */
    }
    read_usage(res, o);
    cJSON_Delete(o);
    return 0;
}

static int dispatch(bench_sse *p) {
    if (!p->line_len) return 0; /* blank line: the event boundary; nothing to do */
    p->line[p->line_len] = 0;
    p->line_len = 0;
    return sse_line(p, p->line);
}

int bench_sse_feed(bench_sse *p, const char *data, size_t len, double t) {
    if (p->failed) return -1;
    p->t_read = t;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        /* CRLF ends a line at the CR; the LF then ends an empty line, which
         * is ignored, so a CRLF split across feeds needs no state */
        if (c == '\n' || c == '\r') {
            if (dispatch(p)) return -1;
            continue;
        }
        if (p->line_len >= p->max_line) return fail(p, "%s", "SSE line too long");
        if (p->line_len + 2 > p->line_cap) {
            size_t cap = p->line_cap ? p->line_cap * 2 : 1024;
            if (cap > p->max_line + 1) cap = p->max_line + 1;
            char *l = realloc(p->line, cap);
            if (!l) return fail(p, "%s", "out of memory");
            p->line = l;
            p->line_cap = cap;
        }
        p->line[p->line_len++] = c;
    }
    return 0;
}

int bench_sse_finish(bench_sse *p) {
    if (p->failed) return -1;
    if (dispatch(p)) return -1; /* a last line without its terminator */
    if (p->res->n_chunks == 0) return fail(p, "%s", "stream ended without any chunk with choices");
    return 0;
}

void bench_http_error_reason(int status, const char *body, char *err, size_t errlen) {
    cJSON *o = body ? cJSON_Parse(body) : NULL;
    char m[120];
    if (o) error_message(o, m, sizeof m);
    else snprintf(m, sizeof m, "%.60s", body ? body : "");
    cJSON_Delete(o);
    snprintf(err, errlen, "HTTP %d %s", status, m);
}

int bench_parse_body(bench_result *res, const char *body, int chat, char *err, size_t errlen) {
    cJSON *o = body ? cJSON_Parse(body) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(err, errlen, "%s", "malformed JSON response");
        return -1;
    }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        res->n_chunks = res->n_text_chunks = 1;
        res->text_len = choice_text_len(cJSON_GetArrayItem(ch, 0), chat);
    }
    read_usage(res, o);
    cJSON_Delete(o);
    return 0;
}
