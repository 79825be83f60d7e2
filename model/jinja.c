/* jinja: compile (lex + parse into the template's arena), free, and the
 * variables a template reads. Rendering is jinja_eval.c's. */
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"
#include "pverr.h"

int jj_compile(const char *src, size_t len, jj_template **out, char *err, size_t errlen) {
    if (!out || (!src && len)) return PV_EINVAL;
    *out = NULL;
    jj_template *t = calloc(1, sizeof *t);
    if (!t) return PV_ENOMEM;
    jj_tok *toks = NULL;
    int n = 0;
    int rc = jj_lex(&t->arena, src ? src : "", len, &toks, &n, err, errlen);
    if (!rc) rc = jj_parse(t, toks, n, err, errlen);
    if (!rc && t->arena.oom) rc = pv_fail(err, errlen, PV_ENOMEM, "jinja: out of memory");
    if (rc) {
        jj_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void jj_free(jj_template *t) {
    if (!t) return;
    jj_arena_free(&t->arena);
    free(t);
}

int jj_uses(const jj_template *t, const char *name) {
    for (int i = 0; t && i < t->n_names; i++)
        if (!strcmp(t->names[i], name)) return 1;
    return 0;
}
