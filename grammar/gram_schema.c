/* gram_schema: JSON Schema (the subset in gram.h) -> gram nodes. One
 * function per construct; $refs are compiled once each and remembered, so a
 * recursive schema becomes a cycle in the node graph rather than an endless
 * compile. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gram_internal.h"
#include "pverr.h"

#define MAX_REFS 64
#define MAX_NEST 64 /* schema objects nested inside each other (not via $ref) */

typedef struct {
    gram *g;
    const cJSON *root;
    int strict, loose;
    int rc;
    char *err;
    size_t errlen;
    char path[256];
    const cJSON *ref_target[MAX_REFS];
    int ref_node[MAX_REFS];
    int n_refs, nest;
} ctx;

static int fail(ctx *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ctx *c, int rc, const char *fmt, ...) {
    if (c->rc) return -1; /* keep the first message */
    c->rc = rc;
    if (c->err && c->errlen) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(c->err, c->errlen, "%s: %s", c->path[0] ? c->path : "/", msg);
    }
    return -1;
}

/* A new node of kind k (zeroed, addl and max -1), or -1. */
static int new_node(gram *g, int kind) {
    if (g->n_nodes == GRAM_MAX_NODES) return -1;
    if (g->n_nodes == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        gram_node *n = realloc(g->nodes, sizeof *n * cap);
        if (!n) return -1;
        g->nodes = n;
        g->cap = cap;
    }
    g->nodes[g->n_nodes] = (gram_node){.kind = kind, .addl = -1, .elem = -1, .max = -1};
    return g->n_nodes++;
}

static int node(ctx *c, int kind) {
    int id = new_node(c->g, kind);
    if (id < 0)
        return fail(c, c->g->n_nodes == GRAM_MAX_NODES ? PV_EUNSUPPORTED : PV_ENOMEM,
                    "the schema needs more than %d nodes", GRAM_MAX_NODES);
    return id;
}

static int add_item(gram_node *n, const char *text, int len, int node_id) {
    gram_item *it = realloc(n->items, sizeof *it * (n->n_items + 1));
    if (!it) return PV_ENOMEM;
    n->items = it;
    char *t = malloc((size_t)len + 1);
    if (!t) return PV_ENOMEM;
    memcpy(t, text, (size_t)len);
    t[len] = 0;
    it[n->n_items++] = (gram_item){.text = t, .len = len, .node = node_id};
    return 0;
}

/* Appends "/seg" to the error path; returns the old length to restore. */
static size_t path_push(ctx *c, const char *seg) {
    size_t n = strlen(c->path);
    snprintf(c->path + n, sizeof c->path - n, "/%s", seg);
    return n;
}

static const char *const known_kw[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
    /* annotations: they constrain nothing */
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "format", NULL};

/* What GRAM_LOOSE lets through unenforced: keywords that only narrow values. */
static const char *const narrowing_kw[] = {
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "uniqueItems", "minProperties", "maxProperties", NULL};

static int check_keywords(ctx *c, const cJSON *s) {
    const cJSON *kv;
    cJSON_ArrayForEach(kv, s) {
        int ok = 0;
        for (int i = 0; known_kw[i] && !ok; i++) ok = !strcmp(kv->string, known_kw[i]);
        for (int i = 0; c->loose && narrowing_kw[i] && !ok; i++) ok = !strcmp(kv->string, narrowing_kw[i]);
        if (!ok) return fail(c, PV_EUNSUPPORTED, "unsupported keyword '%.64s'", kv->string);
    }
    return 0;
}

static int compile(ctx *c, const cJSON *s);

static int compile_lits(ctx *c, const cJSON *vals, int one) {
    int n = one ? 1 : cJSON_GetArraySize(vals);
    if (!one && (!cJSON_IsArray(vals) || n == 0))
        return fail(c, PV_EINVAL, "'enum' must be a non-empty array");
    if (n > GRAM_MAX_LITS) return fail(c, PV_EUNSUPPORTED, "'enum' holds more than %d values", GRAM_MAX_LITS);
    int id = node(c, G_LIT);
    for (int i = 0; id >= 0 && i < n; i++) {
        char *t = cJSON_PrintUnformatted(one ? vals : cJSON_GetArrayItem(vals, i));
        if (t && strlen(t) >= 0xFFF0) { /* the automaton's literal offsets are 16-bit */
            free(t);
            return fail(c, PV_EUNSUPPORTED, "an 'enum' or 'const' value of 64 KiB or more");
        }
        int rc = t ? add_item(&c->g->nodes[id], t, (int)strlen(t), -1) : PV_ENOMEM;
        free(t);
        if (rc) return fail(c, PV_ENOMEM, "out of memory");
    }
    return id;
}

static int compile_alts(ctx *c, const cJSON *alts, const char *kw) {
    int n = cJSON_GetArraySize(alts);
    if (!cJSON_IsArray(alts) || n == 0) return fail(c, PV_EINVAL, "'%s' must be a non-empty array", kw);
    int id = node(c, G_ANYOF);
    int *a = id >= 0 ? malloc(sizeof *a * n) : NULL;
    if (id < 0 || !a) return id < 0 ? -1 : fail(c, PV_ENOMEM, "out of memory");
    c->g->nodes[id].alts = a;
    for (int i = 0; i < n; i++) {
        char seg[80];
        snprintf(seg, sizeof seg, "%s/%d", kw, i);
        size_t back = path_push(c, seg);
        int alt = compile(c, cJSON_GetArrayItem(alts, i));
        c->path[back] = 0;
        if (alt < 0) return -1;
        c->g->nodes[id].alts[c->g->nodes[id].n_alts++] = alt;
    }
    return id;
}

/* The target of a local reference: "#" or "#/a/b" (JSON pointer, ~0 ~1). */
static const cJSON *resolve(ctx *c, const char *ref) {
    if (ref[0] != '#') return NULL;
    const cJSON *cur = c->root;
    const char *p = ref + 1;
    while (cur && *p == '/') {
        char seg[128];
        size_t n = 0;
        for (p++; *p && *p != '/' && n + 1 < sizeof seg; p++) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) seg[n++] = *++p == '0' ? '~' : '/';
            else seg[n++] = *p;
        }
        seg[n] = 0;
        cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
    }
    return *p ? NULL : cur;
}

static int compile_ref(ctx *c, const cJSON *ref) {
    if (!cJSON_IsString(ref)) return fail(c, PV_EINVAL, "'$ref' must be a string");
    const cJSON *t = resolve(c, ref->valuestring);
    if (!t) return fail(c, PV_EINVAL, "'$ref' %.100s does not resolve in this schema", ref->valuestring);
    for (int i = 0; i < c->n_refs; i++)
        if (c->ref_target[i] == t) return c->ref_node[i];
    if (c->n_refs == MAX_REFS) return fail(c, PV_EUNSUPPORTED, "more than %d distinct $refs", MAX_REFS);
    /* an anyOf of one alternative stands for the target until it is compiled,
     * so references to it from inside it resolve to this node */
    int id = node(c, G_ANYOF);
    int *a = id >= 0 ? malloc(sizeof *a) : NULL;
    if (id < 0 || !a) return id < 0 ? -1 : fail(c, PV_ENOMEM, "out of memory");
    c->g->nodes[id].alts = a;
    c->ref_target[c->n_refs] = t;
    c->ref_node[c->n_refs++] = id;
    char seg[140];
    snprintf(seg, sizeof seg, "$ref(%.120s)", ref->valuestring);
    size_t back = path_push(c, seg);
    int body = compile(c, t);
    c->path[back] = 0;
    if (body < 0) return -1;
    c->g->nodes[id].alts[0] = body;
    c->g->nodes[id].n_alts = 1;
    return id;
}

static int prop_name_ok(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\') return 0;
    return 1;
}

static int object_required(ctx *c, int id, const cJSON *req) {
    if (!req) return 0;
    if (!cJSON_IsArray(req)) return fail(c, PV_EINVAL, "'required' must be an array of strings");
    const cJSON *r;
    cJSON_ArrayForEach(r, req) {
        if (!cJSON_IsString(r)) return fail(c, PV_EINVAL, "'required' must be an array of strings");
        gram_node *n = &c->g->nodes[id];
        int k = -1;
        for (int i = 0; i < n->n_items; i++)
            if (!strcmp(n->items[i].text, r->valuestring)) k = i;
        if (k < 0)
            return fail(c, PV_EUNSUPPORTED, "required property '%.64s' is not in 'properties'",
                        r->valuestring);
        n->required |= 1u << k;
    }
    return 0;
}

static int compile_object(ctx *c, const cJSON *s) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return fail(c, PV_EINVAL, "'properties' must be an object");
    if (cJSON_GetArraySize(props) > GRAM_MAX_PROPS)
        return fail(c, PV_EUNSUPPORTED, "more than %d properties", GRAM_MAX_PROPS);
    int id = node(c, G_OBJ);
    if (id < 0) return -1;
    const cJSON *p;
    cJSON_ArrayForEach(p, props) {
        if (!prop_name_ok(p->string))
            return fail(c, PV_EUNSUPPORTED, "property names with quotes, backslashes or control "
                                            "characters are not supported");
        size_t back = path_push(c, "properties");
        path_push(c, p->string);
        int v = compile(c, p);
        c->path[back] = 0;
        if (v < 0) return -1;
        if (add_item(&c->g->nodes[id], p->string, (int)strlen(p->string), v))
            return fail(c, PV_ENOMEM, "out of memory");
    }
    if (object_required(c, id, cJSON_GetObjectItemCaseSensitive(s, "required"))) return -1;
    if (addl && !cJSON_IsFalse(addl)) {
        size_t back = path_push(c, "additionalProperties");
        int a = cJSON_IsTrue(addl) ? GN_ANY : compile(c, addl);
        c->path[back] = 0;
        if (a < 0) return -1;
        c->g->nodes[id].addl = a;
    }
    const gram_node *n = &c->g->nodes[id];
    uint32_t all = n->n_items >= 32 ? 0xFFFFFFFFu : (1u << n->n_items) - 1;
    if (c->strict && (n->required != all || !cJSON_IsFalse(addl)))
        return fail(c, PV_EINVAL, "strict mode needs every property in 'required' and "
                                  "'additionalProperties': false");
    return id;
}

static int get_count(ctx *c, const cJSON *s, const char *k, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, k);
    *out = dflt;
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != (int)v->valuedouble)
        return fail(c, PV_EINVAL, "'%s' must be a non-negative integer", k);
    if (v->valuedouble > 0xFFFF) return fail(c, PV_EUNSUPPORTED, "'%s' above 65535", k);
    *out = (int)v->valuedouble;
    return 0;
}

static int compile_array(ctx *c, const cJSON *s) {
    int mn, mx;
    if (get_count(c, s, "minItems", 0, &mn) || get_count(c, s, "maxItems", -1, &mx)) return -1;
    if (mx >= 0 && mn > mx) return fail(c, PV_EINVAL, "'minItems' exceeds 'maxItems'");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    int elem = GN_ANY;
    if (items) {
        size_t back = path_push(c, "items");
        elem = compile(c, items);
        c->path[back] = 0;
        if (elem < 0) return -1;
    }
    int id = node(c, G_ARR);
    if (id < 0) return -1;
    gram_node *n = &c->g->nodes[id];
    n->elem = elem;
    n->min = mn;
    n->max = mx;
    return id;
}

static int compile_typed(ctx *c, const cJSON *s, const cJSON *t) {
    if (!cJSON_IsString(t)) return fail(c, PV_EINVAL, "'type' must be a string or an array of strings");
    const char *n = t->valuestring;
    if (!strcmp(n, "object")) return compile_object(c, s);
    if (!strcmp(n, "array")) return compile_array(c, s);
    if (!strcmp(n, "string")) return GN_STR;
    if (!strcmp(n, "number")) return GN_NUM;
    if (!strcmp(n, "integer")) return node(c, G_INT);
    if (!strcmp(n, "boolean") || !strcmp(n, "null")) {
        cJSON *v = cJSON_Parse(!strcmp(n, "null") ? "[null]" : "[true,false]");
        int id = v ? compile_lits(c, v, 0) : fail(c, PV_ENOMEM, "out of memory");
        cJSON_Delete(v);
        return id;
    }
    return fail(c, PV_EINVAL, "unknown type '%.64s'", n);
}

/* Several types: an anyOf over the schema read as each of them. */
static int compile_types(ctx *c, const cJSON *s, const cJSON *types) {
    int n = cJSON_GetArraySize(types);
    if (n == 0) return fail(c, PV_EINVAL, "'type' must not be an empty array");
    int id = node(c, G_ANYOF);
    int *a = id >= 0 ? malloc(sizeof *a * n) : NULL;
    if (id < 0 || !a) return id < 0 ? -1 : fail(c, PV_ENOMEM, "out of memory");
    c->g->nodes[id].alts = a;
    for (int i = 0; i < n; i++) {
        int alt = compile_typed(c, s, cJSON_GetArrayItem(types, i));
        if (alt < 0) return -1;
        c->g->nodes[id].alts[c->g->nodes[id].n_alts++] = alt;
    }
    return id;
}

static int compile_body(ctx *c, const cJSON *s) {
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) return compile_ref(c, v);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "const"))) return compile_lits(c, v, 1);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "enum"))) return compile_lits(c, v, 0);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "anyOf"))) return compile_alts(c, v, "anyOf");
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "oneOf"))) return compile_alts(c, v, "oneOf");
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "allOf"))) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 1)
            return fail(c, PV_EUNSUPPORTED, "'allOf' is supported with exactly one schema");
        return compile(c, cJSON_GetArrayItem(v, 0));
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "type")))
        return cJSON_IsArray(v) ? compile_types(c, s, v) : compile_typed(c, s, v);
    if (cJSON_GetObjectItemCaseSensitive(s, "properties")) return compile_object(c, s);
    if (cJSON_GetObjectItemCaseSensitive(s, "items")) return compile_array(c, s);
    return GN_ANY;
}

static int compile(ctx *c, const cJSON *s) {
    if (cJSON_IsTrue(s)) return GN_ANY;
    if (!cJSON_IsObject(s)) return fail(c, PV_EINVAL, "a schema must be an object or true");
    if (check_keywords(c, s)) return -1;
    if (c->nest == MAX_NEST) return fail(c, PV_EUNSUPPORTED, "schema nested deeper than %d", MAX_NEST);
    c->nest++;
    int id = compile_body(c, s);
    c->nest--;
    return id;
}

static int builtins(gram *g) {
    static const char *const tfn[] = {"true", "false", "null"};
    if (new_node(g, G_ANY) != GN_ANY || new_node(g, G_OBJ) != GN_OBJ_ANY ||
        new_node(g, G_ARR) != GN_ARR_ANY || new_node(g, G_STR) != GN_STR ||
        new_node(g, G_NUM) != GN_NUM || new_node(g, G_LIT) != GN_TFN)
        return PV_ENOMEM;
    g->nodes[GN_OBJ_ANY].addl = GN_ANY;
    g->nodes[GN_ARR_ANY].elem = GN_ANY;
    g->nodes[GN_ARR_ANY].min = 0;
    for (int i = 0; i < 3; i++)
        if (add_item(&g->nodes[GN_TFN], tfn[i], (int)strlen(tfn[i]), -1)) return PV_ENOMEM;
    return 0;
}

/* A gram with the built-in nodes and nothing else, or NULL. */
static gram *gram_new(void) {
    gram *g = calloc(1, sizeof *g);
    if (g && builtins(g)) {
        gram_free(g);
        return NULL;
    }
    return g;
}

/* Sets the document's node and appends the root frame's node (last). */
static int finish(gram *g, int root, gram **out) {
    int r = new_node(g, G_ROOT);
    if (r < 0) {
        gram_free(g);
        return PV_ENOMEM;
    }
    g->root = root;
    gram_close_init(g);
    *out = g;
    return 0;
}

int gram_json_object(gram **out) {
    gram *g = gram_new();
    *out = NULL;
    return g ? finish(g, GN_OBJ_ANY, out) : PV_ENOMEM;
}

int gram_json_any(gram **out) {
    gram *g = gram_new();
    *out = NULL;
    return g ? finish(g, GN_ANY, out) : PV_ENOMEM;
}

/* 1 when anyOf / $ref nodes reach themselves without a value in between
 * ({"anyOf": [{"$ref": "#"}, ...]}): the matcher would expand such a cycle
 * on every byte (exponentially, with several of them). color: 0 new, 1 on
 * the path, 2 done. */
static int alt_cycle(const gram *g, int id, uint8_t *color) {
    if (g->nodes[id].kind != G_ANYOF || color[id] == 2) return 0;
    if (color[id] == 1) return 1;
    color[id] = 1;
    for (int i = 0; i < g->nodes[id].n_alts; i++)
        if (alt_cycle(g, g->nodes[id].alts[i], color)) return 1;
    color[id] = 2;
    return 0;
}

/* How many concrete nodes an anyOf expands to (nested anyOf multiply),
 * saturating at MAX_EXPANSION + 1; memo[id] 0: not known yet. */
#define MAX_EXPANSION 64
static int expansion(const gram *g, int id, int *memo) {
    if (g->nodes[id].kind != G_ANYOF) return 1;
    if (memo[id]) return memo[id];
    int n = 0;
    for (int i = 0; i < g->nodes[id].n_alts && n <= MAX_EXPANSION; i++)
        n += expansion(g, g->nodes[id].alts[i], memo);
    return memo[id] = n > MAX_EXPANSION ? MAX_EXPANSION + 1 : n;
}

/* The anyOf graph, checked once compiled: no cycle without a value in
 * between, and no alternatives that multiply past MAX_EXPANSION (the
 * matcher expands them on every value start). */
static int check_alts(ctx *c) {
    int n = c->g->n_nodes, bad = 0;
    uint8_t *color = calloc((size_t)n, 1);
    int *memo = calloc((size_t)n, sizeof *memo);
    if (!color || !memo) bad = fail(c, PV_ENOMEM, "out of memory");
    for (int i = 0; i < n && !bad; i++)
        if (alt_cycle(c->g, i, color))
            bad = fail(c, PV_EINVAL, "a $ref or anyOf leads back to itself without a value in between");
    for (int i = 0; i < n && !bad; i++)
        if (expansion(c->g, i, memo) > MAX_EXPANSION)
            bad = fail(c, PV_EUNSUPPORTED, "nested anyOf/oneOf expand to more than %d alternatives",
                       MAX_EXPANSION);
    free(color);
    free(memo);
    return bad;
}

int gram_from_schema(const cJSON *schema, int flags, gram **out, char *err, size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = 0;
    ctx c = {.g = gram_new(), .root = schema, .strict = !!(flags & GRAM_STRICT),
             .loose = !!(flags & GRAM_LOOSE), .err = err, .errlen = errlen};
    if (!c.g) return PV_ENOMEM;
    int root = compile(&c, schema);
    if (root >= 0 && check_alts(&c)) root = -1;
    if (root < 0) {
        gram_free(c.g);
        return c.rc ? c.rc : PV_ENOMEM;
    }
    return finish(c.g, root, out);
}

void gram_free(gram *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        gram_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_items; k++) free(n->items[k].text);
        free(n->items);
        free(n->alts);
    }
    free(g->nodes);
    gram_cache_free(g->cache);
    free(g);
}
