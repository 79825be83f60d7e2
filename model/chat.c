/* chat: template recognition by marker text, rendering in C.
 *
 * What each family renders (BOS never included; the caller adds it):
 *   ChatML:  [<|im_start|>system\n{default}<|im_end|>\n]   (default prompt,
 *            only when the first message is not a system message)
 *            <|im_start|>{role}\n{content}<|im_end|>\n ...
 *            [<|im_start|>assistant\n]                      (generation prompt)
 *   Llama-3: <|start_header_id|>{role}<|end_header_id|>\n\n{trim(content)}<|eot_id|> ...
 *            [<|start_header_id|>assistant<|end_header_id|>\n\n]
 *   Mistral: [INST] {system\n\n}{user} [/INST]{assistant}</s>[INST] {user} [/INST]...
 *   Llama-2 (template has <<SYS>>):
 *            [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
 * Templates that add more (Llama-3.1's "Cutting Knowledge Date" system
 * preamble, tool calls) are rendered without those extras. */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

#include "pverr.h"

struct chat_template {
    chat_kind kind;
    int llama2_sys; /* Llama-2 <<SYS>> block rather than Mistral's prefix */
    char *default_system; /* ChatML only; NULL when none */
    jj_template *jj;      /* NULL when absent or outside the subset */
    char *jj_err;         /* why jj is NULL, when there was a source */
};

static const char *find_n(const char *s, size_t len, const char *needle) {
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(s + i, needle, nl) == 0)
            return s + i;
    return NULL;
}

/* A default system prompt written literally in a ChatML template, e.g.
 * '<|im_start|>system\nYou are ...<|im_end|>\n' inside a Jinja string. The
 * "\n" may be a real newline or the two characters '\' 'n' (Jinja string
 * escape). Anything that looks like an expression (the message's own
 * content being spliced in) disqualifies the candidate. */
static int extract_default_system(const char *src, size_t len, char **out) {
    static const char marker[] = "<|im_start|>system";
    const char *p = src, *end = src + len;
    *out = NULL;
    while ((p = find_n(p, (size_t)(end - p), marker)) != NULL) {
        p += sizeof marker - 1;
        const char *body;
        if (p < end && *p == '\n')
            body = p + 1;
        else if (end - p >= 2 && p[0] == '\\' && p[1] == 'n')
            body = p + 2;
        else
            continue;
        const char *stop = find_n(body, (size_t)(end - body), "<|im_end|>");
        if (!stop || stop == body)
            continue;
        size_t bl = (size_t)(stop - body);
        if (find_n(body, bl, "{{") || find_n(body, bl, "{%") || find_n(body, bl, "' +") ||
            find_n(body, bl, "\" +") || find_n(body, bl, "+ '") || find_n(body, bl, "+ \"") ||
            find_n(body, bl, "message"))
            continue;
        char *s = malloc(bl + 1);
        if (!s)
            return PV_ENOMEM;
        /* Undo the Jinja string escapes a template may use in the literal. */
        size_t o = 0;
        for (size_t i = 0; i < bl; i++) {
            if (body[i] == '\\' && i + 1 < bl) {
                char c = body[++i];
                s[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c;
            } else {
                s[o++] = body[i];
            }
        }
        s[o] = 0;
        *out = s;
        return PV_OK;
    }
    return PV_OK;
}

int chat_template_parse(const char *src, size_t len, chat_template **out) {
    if (!out || (!src && len))
        return PV_EINVAL;
    chat_template *t = calloc(1, sizeof *t);
    if (!t)
        return PV_ENOMEM;
    if (!src) {
        t->kind = CHAT_CHATML;
    } else if (find_n(src, len, "<|im_start|>")) {
        t->kind = CHAT_CHATML;
        if (extract_default_system(src, len, &t->default_system) != PV_OK) {
            free(t);
            return PV_ENOMEM;
        }
    } else if (find_n(src, len, "<|start_header_id|>")) {
        t->kind = CHAT_LLAMA3;
    } else if (find_n(src, len, "[INST]")) {
        t->kind = CHAT_LLAMA2;
        t->llama2_sys = find_n(src, len, "<<SYS>>") != NULL;
    } else {
        t->kind = CHAT_UNKNOWN;
    }
    if (src) {
        char err[256] = "";
        int rc = jj_compile(src, len, &t->jj, err, sizeof err);
        if (rc == PV_ENOMEM || (rc && !(t->jj_err = strdup(err)))) {
            chat_template_free(t);
            return PV_ENOMEM;
        }
    }
    *out = t;
    return PV_OK;
}

const jj_template *chat_template_jinja(const chat_template *t) { return t ? t->jj : NULL; }
const char *chat_template_jinja_error(const chat_template *t) { return t ? t->jj_err : NULL; }

void chat_template_free(chat_template *t) {
    if (!t)
        return;
    jj_free(t->jj);
    free(t->jj_err);
    free(t->default_system);
    free(t);
}

chat_kind chat_template_kind(const chat_template *t) { return t ? t->kind : CHAT_UNKNOWN; }

/* For tests and diagnostics: the extracted default system prompt or NULL. */
const char *chat_template_default_system(const chat_template *t) {
    return t ? t->default_system : NULL;
}

const char *chat_kind_name(chat_kind k) {
    switch (k) {
    case CHAT_CHATML:
        return "chatml";
    case CHAT_LLAMA3:
        return "llama3";
    case CHAT_LLAMA2:
        return "llama2";
    default:
        return "unknown";
    }
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* Jinja's trim: strips leading and trailing whitespace. */
static void put_trimmed(sbuf *b, const char *s) {
    const char *e = s + strlen(s);
    while (s < e && strchr(" \t\n\r\v\f", *s))
        s++;
    while (e > s && strchr(" \t\n\r\v\f", e[-1]))
        e--;
    put_n(b, s, (size_t)(e - s));
}

enum { R_SYSTEM, R_USER, R_ASSISTANT };

static int role_of(const char *r) {
    if (!r)
        return -1;
    if (!strcmp(r, "system"))
        return R_SYSTEM;
    if (!strcmp(r, "user"))
        return R_USER;
    if (!strcmp(r, "assistant"))
        return R_ASSISTANT;
    return -1;
}

static int render_llama2(const chat_template *t, const chat_msg *m, int n, sbuf *b) {
    int i = 0;
    const char *sys = NULL;
    if (n > 0 && role_of(m[0].role) == R_SYSTEM)
        sys = m[0].content, i = 1;
    int first = 1;
    for (; i < n; i++) {
        int r = role_of(m[i].role);
        if (r == R_SYSTEM)
            return PV_EINVAL; /* these templates allow a system message only first */
        if (r == R_USER) {
            if (!first && t->llama2_sys)
                put(b, "<s>"); /* Llama-2 opens every later turn with BOS */
            put(b, "[INST] ");
            if (first && sys) {
                if (t->llama2_sys) {
                    put(b, "<<SYS>>\n");
                    put(b, sys);
                    put(b, "\n<</SYS>>\n\n");
                } else {
                    put(b, sys);
                    put(b, "\n\n");
                }
            }
            put(b, m[i].content);
            put(b, " [/INST]");
            first = 0;
        } else if (t->llama2_sys) {
            put(b, " ");
            put_trimmed(b, m[i].content);
            put(b, " </s>");
        } else {
            put(b, m[i].content);
            put(b, "</s>");
        }
    }
    return PV_OK;
}

int chat_render(const chat_template *t, const chat_msg *msgs, int n, int add_generation_prompt,
                char **out) {
    if (!t || !out || n < 0 || (n && !msgs))
        return PV_EINVAL;
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (role_of(msgs[i].role) < 0 || !msgs[i].content)
            return PV_EINVAL;
    sbuf b = {0};
    put(&b, ""); /* an empty conversation still yields "" */
    int rc = PV_OK;
    switch (t->kind) {
    case CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            if (i == 0 && t->default_system && role_of(msgs[0].role) != R_SYSTEM) {
                put(&b, "<|im_start|>system\n");
                put(&b, t->default_system);
                put(&b, "<|im_end|>\n");
            }
            put(&b, "<|im_start|>");
            put(&b, msgs[i].role);
            put(&b, "\n");
            put(&b, msgs[i].content);
            put(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt)
            put(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA3:
        for (int i = 0; i < n; i++) {
            put(&b, "<|start_header_id|>");
            put(&b, msgs[i].role);
            put(&b, "<|end_header_id|>\n\n");
            put_trimmed(&b, msgs[i].content);
            put(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_LLAMA2:
        rc = render_llama2(t, msgs, n, &b);
        break;
    default:
        rc = PV_EINVAL;
    }
    if (rc == PV_OK && b.oom)
        rc = PV_ENOMEM;
    if (rc != PV_OK) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    return PV_OK;
}
