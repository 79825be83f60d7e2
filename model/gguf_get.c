/* gguf_get: the accessors of a parsed GGUF file (contract in gguf.h). */
#include <stdlib.h>
#include <string.h>

#include "gguf_internal.h"
#include "pverr.h"

size_t ggi_vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

int ggi_cmp_key(const void *a, const void *b) {
    const key_ix *x = a, *y = b;
    uint64_t m = x->len < y->len ? x->len : y->len;
    int r = m ? memcmp(x->ptr, y->ptr, (size_t)m) : 0;
    if (r) return r;
    return (x->len > y->len) - (x->len < y->len);
}

int ggi_cmp_name(const void *a, const void *b) {
    return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

const kv_entry *ggi_find_kv(const gguf_file *g, const char *key) {
    if (!g || !key) return NULL;
    key_ix probe = {key, strlen(key), -1};
    const key_ix *hit = bsearch(&probe, g->kv_sorted, (size_t)g->n_kv, sizeof probe, ggi_cmp_key);
    return hit ? &g->kvs[hit->idx] : NULL;
}

int ggi_load_int(uint32_t type, const uint8_t *p, int64_t *out, int *range_err) {
    *range_err = 0;
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: *out = *p; return 1;
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *out = v; return 1; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 1; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) *range_err = 1;
        else *out = (int64_t)v;
        return 1;
    }
    default: return 0;
    }
}

int ggi_load_float(uint32_t type, const uint8_t *p, double *out) {
    if (type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return 1;
    }
    if (type == GGUF_TYPE_FLOAT64) {
        memcpy(out, p, 8);
        return 1;
    }
    if (type == GGUF_TYPE_UINT64) { /* keep full range: not via int64 */
        uint64_t v;
        memcpy(&v, p, 8);
        *out = (double)v;
        return 1;
    }
    int64_t iv = 0;
    int re;
    if (type != GGUF_TYPE_BOOL && ggi_load_int(type, p, &iv, &re)) {
        *out = (double)iv;
        return 1;
    }
    return 0;
}

/* ---- accessors ------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *g) { return g ? g->version : 0; }
int64_t gguf_n_kv(const gguf_file *g) { return g ? g->n_kv : 0; }
int64_t gguf_n_tensors(const gguf_file *g) { return g ? g->n_tensors : 0; }
size_t gguf_alignment(const gguf_file *g) { return g ? g->alignment : 0; }

int gguf_find_key(const gguf_file *g, const char *key) {
    const kv_entry *kv = ggi_find_kv(g, key);
    return kv ? (int)(kv - g->kvs) : -1;
}

gguf_str gguf_key_at(const gguf_file *g, int idx) {
    if (!g || idx < 0 || idx >= g->n_kv) return (gguf_str){NULL, 0};
    return g->kvs[idx].key;
}

/* Out-of-range indices give (gguf_vtype)-1, which matches no valid type. */
gguf_vtype gguf_kv_type(const gguf_file *g, int idx) {
    if (!g || idx < 0 || idx >= g->n_kv) return (gguf_vtype)-1;
    return (gguf_vtype)g->kvs[idx].type;
}

int gguf_get_int(const gguf_file *g, const char *key, int64_t *out) {
    const kv_entry *kv = ggi_find_kv(g, key);
    if (!kv) return PV_ENOTFOUND;
    int64_t v;
    int re;
    if (!ggi_load_int(kv->type, kv->val, &v, &re)) return PV_EINVAL;
    if (re) return PV_ERANGE;
    if (out) *out = v;
    return PV_OK;
}

int gguf_get_float(const gguf_file *g, const char *key, double *out) {
    const kv_entry *kv = ggi_find_kv(g, key);
    if (!kv) return PV_ENOTFOUND;
    double v;
    if (!ggi_load_float(kv->type, kv->val, &v)) return PV_EINVAL;
    if (out) *out = v;
    return PV_OK;
}

int gguf_get_bool(const gguf_file *g, const char *key, int *out) {
    const kv_entry *kv = ggi_find_kv(g, key);
    if (!kv) return PV_ENOTFOUND;
    int64_t v;
    int re;
    if (!ggi_load_int(kv->type, kv->val, &v, &re)) return PV_EINVAL;
    if (out) *out = re || v != 0; /* a u64 beyond int64 is still non-zero */
    return PV_OK;
}

int gguf_get_str(const gguf_file *g, const char *key, gguf_str *out) {
    const kv_entry *kv = ggi_find_kv(g, key);
    if (!kv) return PV_ENOTFOUND;
    if (kv->type != GGUF_TYPE_STRING) return PV_EINVAL;
    uint64_t len;
    memcpy(&len, kv->val, 8);
    if (out) *out = (gguf_str){(const char *)kv->val + 8, len};
    return PV_OK;
}

int gguf_get_arr(const gguf_file *g, const char *key, gguf_vtype *elem_type, uint64_t *n) {
    const kv_entry *kv = ggi_find_kv(g, key);
    if (!kv) return PV_ENOTFOUND;
    if (kv->type != GGUF_TYPE_ARRAY) return PV_EINVAL;
    if (elem_type) *elem_type = (gguf_vtype)kv->elem_type;
    if (n) *n = kv->n;
    return PV_OK;
}

/* Common checks of the element accessors: the key, array-ness and bounds. */
static int arr_elem(const gguf_file *g, const char *key, uint64_t i, const kv_entry **kv) {
    *kv = ggi_find_kv(g, key);
    if (!*kv) return PV_ENOTFOUND;
    if ((*kv)->type != GGUF_TYPE_ARRAY) return PV_EINVAL;
    if (i >= (*kv)->n) return PV_ERANGE;
    return PV_OK;
}

int gguf_arr_str(const gguf_file *g, const char *key, uint64_t i, gguf_str *out) {
    const kv_entry *kv;
    int rc = arr_elem(g, key, i, &kv);
    if (rc) return rc;
    if (kv->elem_type != GGUF_TYPE_STRING) return PV_EINVAL;
    const uint8_t *p = g->buf + kv->str_off[i];
    uint64_t len;
    memcpy(&len, p, 8);
    if (out) *out = (gguf_str){(const char *)p + 8, len};
    return PV_OK;
}

int gguf_arr_int(const gguf_file *g, const char *key, uint64_t i, int64_t *out) {
    const kv_entry *kv;
    int rc = arr_elem(g, key, i, &kv);
    if (rc) return rc;
    size_t es = ggi_vtype_size(kv->elem_type);
    int64_t v;
    int re;
    if (!es || !ggi_load_int(kv->elem_type, kv->val + i * es, &v, &re)) return PV_EINVAL;
    if (re) return PV_ERANGE;
    if (out) *out = v;
    return PV_OK;
}

int gguf_arr_float(const gguf_file *g, const char *key, uint64_t i, double *out) {
    const kv_entry *kv;
    int rc = arr_elem(g, key, i, &kv);
    if (rc) return rc;
    size_t es = ggi_vtype_size(kv->elem_type);
    double v;
    if (!es || !ggi_load_float(kv->elem_type, kv->val + i * es, &v)) return PV_EINVAL;
    if (out) *out = v;
    return PV_OK;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *g, int64_t i) {
    if (!g || i < 0 || i >= g->n_tensors) return NULL;
    return &g->tensors[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    if (!g || !name) return NULL;
    name_ix probe = {name, -1};
    const name_ix *hit = bsearch(&probe, g->t_sorted, (size_t)g->n_tensors, sizeof probe, ggi_cmp_name);
    return hit ? &g->tensors[hit->idx] : NULL;
}

int gguf_str_eq(gguf_str s, const char *c) {
    if (!c) return 0;
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}
