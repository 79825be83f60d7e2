/* cli_gram: structured output for `pivot generate` (contract in cli.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "pverr.h"
#include "tokenizer.h"

static int piece(void *v, int32_t id, char *buf, int cap) { return tok_piece(v, id, 0, buf, cap); }

/* The whole file as a NUL-terminated string, or NULL. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    if (n >= 0 && !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = 0;
        }
    }
    fclose(f);
    return buf;
}

static int compile(const char *cmd, const char *path, gram **g) {
    char *text = slurp(path);
    int readable = text != NULL;
    cJSON *schema = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!schema) {
        fprintf(stderr, "pivot %s: --json-schema %s: %s\n", cmd, path,
                readable ? "not valid JSON" : "cannot read the file");
        return 2;
    }
    char err[320] = "";
    int rc = gram_from_schema(schema, 0, g, err, sizeof err);
    cJSON_Delete(schema);
    if (rc)
        fprintf(stderr, "pivot %s: --json-schema %s: %s\n", cmd, path,
                rc == PV_ENOMEM ? pv_strerror(rc) : err);
    return rc == PV_ENOMEM ? 1 : rc ? 2 : 0;
}

int cli_gram_open(const char *cmd, int json, const char *schema_path, const llm_model *m,
                  cli_gram *out) {
    *out = (cli_gram){0};
    if (!json && !schema_path) return 0;
    const tok_vocab *v = llm_get_vocab(m);
    int n = tok_n_vocab(v), n_eog = 0, rc;
    if (schema_path) {
        if ((rc = compile(cmd, schema_path, &out->g))) return rc;
    } else if (gram_json_object(&out->g)) {
        return fprintf(stderr, "pivot %s: out of memory\n", cmd), 1;
    }
    int32_t *eog = malloc(sizeof *eog * (size_t)n);
    for (int32_t id = 0; eog && id < n; id++)
        if (tok_is_eog(v, id)) eog[n_eog++] = id;
    rc = !eog || gram_vocab_create(n, piece, (void *)v, eog, n_eog, &out->v) ||
         gram_state_new(out->g, &out->s);
    free(eog);
    if (rc) {
        cli_gram_close(out);
        return fprintf(stderr, "pivot %s: out of memory\n", cmd), 1;
    }
    return 0;
}

void cli_gram_close(cli_gram *cg) {
    gram_state_free(cg->s);
    gram_vocab_free(cg->v);
    gram_free(cg->g);
    *cg = (cli_gram){0};
}
