/* gguf: validating GGUF reader. See gguf.h for the contract.
 *
 * Design: one forward pass over the file with a bounds-checked cursor. Every
 * read goes through need(), so a truncated or hostile file can only ever make
 * us stop with an error. Counts are checked against the bytes left *before*
 * anything is allocated, which bounds every allocation by the file size.
 *
 * Error code policy (tests rely on it):
 *   PV_ETRUNCATED   the file ends before data it declares (a read, a count,
 *                   a string length or tensor data would go past EOF);
 *   PV_EUNSUPPORTED a well-formed thing we do not read (GGUF v1, big-endian
 *                   files, tensor types outside the supported set);
 *   PV_EFORMAT      everything else that is malformed;
 *   PV_EIO / PV_ENOMEM / PV_EINVAL for the usual. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_internal.h"
#include "pverr.h"

/* Values are read with memcpy straight into host integers. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

#define GGUF_DEFAULT_ALIGNMENT 32
/* Real files nest at most one level (none in practice); the limit only keeps
 * the recursive validator's stack bounded on hostile input. */
#define GGUF_MAX_ARRAY_NESTING 8
#define GGUF_MAX_DIMS 4
/* Smallest encodings, used to bound counts before allocating:
 * kv = key len (8) + type (4) + 1-byte value; tensor info = name len (8) +
 * n_dims (4) + one dim (8) + type (4) + offset (8); array = type + count. */
#define GGUF_MIN_KV_BYTES 13
#define GGUF_MIN_TINFO_BYTES 32
#define GGUF_MIN_ARRAY_BYTES 12

/* Block traits of the tensor types, by ggml type id. Kept private (rather
 * than calling kernels/quant.c) so the loader has no coupling to the kernel
 * module; bytes == 0 marks a type the loader rejects as unsupported. Names
 * are for error messages only. */
typedef struct {
    const char *name;
    uint16_t blk;
    uint16_t bytes;
} type_traits;

static const type_traits k_types[] = {
    [0] = {"F32", 1, 4},      [1] = {"F16", 1, 2},       [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},   [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},   [9] = {"Q8_1", 0, 0},      [10] = {"Q2_K", 0, 0},
    [11] = {"Q3_K", 0, 0},    [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 0, 0},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 0, 0},    [16] = {"IQ2_XXS", 0, 0},
    [17] = {"IQ2_XS", 0, 0},  [18] = {"IQ3_XXS", 0, 0},  [19] = {"IQ1_S", 0, 0},
    [20] = {"IQ4_NL", 0, 0},  [21] = {"IQ3_S", 0, 0},    [22] = {"IQ2_S", 0, 0},
    [23] = {"IQ4_XS", 0, 0},  [24] = {"I8", 0, 0},       [25] = {"I16", 0, 0},
    [26] = {"I32", 0, 0},     [27] = {"I64", 0, 0},      [28] = {"F64", 0, 0},
    [29] = {"IQ1_M", 0, 0},   [30] = {"BF16", 1, 2},     [34] = {"TQ1_0", 0, 0},
    [35] = {"TQ2_0", 0, 0},   [39] = {"MXFP4", 0, 0},
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static const char *vtype_name(uint32_t t) {
    static const char *const names[] = {"u8",  "i8",   "u16",    "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ---- parse cursor and errors ---------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t size;
    size_t pos;
    char *err;
    size_t errlen;
    char ctx[160]; /* what is being parsed, for messages: "key 'x'" */
} cursor;

/* Every message names the module; fmt is always a literal. */
#define fail(c, code, fmt, ...) pv_fail((c)->err, (c)->errlen, code, "gguf: " fmt, ##__VA_ARGS__)

/* Copy a file-supplied name into dst for a message: bounded, and with
 * control characters replaced so the message stays on one line. */
static void sanitize(char *dst, size_t cap, const char *s, uint64_t len) {
    size_t lim = cap - 4, o = 0;
    for (uint64_t i = 0; i < len && o < lim; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (len > lim) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n) {
    if (n > left(c))
        return fail(c, PV_ETRUNCATED,
                    "file truncated in %s: need %llu bytes at offset %zu, file has %zu", c->ctx,
                    (unsigned long long)n, c->pos, c->size);
    return PV_OK;
}

static int rd_u32(cursor *c, uint32_t *v) {
    int rc = need(c, 4);
    if (rc) return rc;
    memcpy(v, c->buf + c->pos, 4);
    c->pos += 4;
    return PV_OK;
}

static int rd_u64(cursor *c, uint64_t *v) {
    int rc = need(c, 8);
    if (rc) return rc;
    memcpy(v, c->buf + c->pos, 8);
    c->pos += 8;
    return PV_OK;
}

static int rd_str(cursor *c, gguf_str *s) {
    uint64_t len;
    int rc = rd_u64(c, &len);
    if (rc) return rc;
    if (len > left(c))
        return fail(c, PV_ETRUNCATED,
                    "%s: string length %llu at offset %zu exceeds the %zu bytes left in the file",
                    c->ctx, (unsigned long long)len, c->pos - 8, left(c));
    s->ptr = (const char *)c->buf + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return PV_OK;
}

/* ---- metadata -------------------------------------------------------------- */

static int skip_value(cursor *c, uint32_t type, int level);

/* Validates an array body (after its element type and count were read).
 * `off`, when non-NULL, receives the offset of each string element. */
static int skip_array_body(cursor *c, uint32_t et, uint64_t n, int level, uint64_t *off) {
    size_t es = ggi_vtype_size(et);
    if (es) {
        if (n > left(c) / es)
            return fail(c, PV_ETRUNCATED, "%s: array of %llu %s values exceeds the %zu bytes left",
                        c->ctx, (unsigned long long)n, vtype_name(et), left(c));
        c->pos += (size_t)(n * es);
        return PV_OK;
    }
    if (et == GGUF_TYPE_STRING) {
        if (n > left(c) / 8)
            return fail(c, PV_ETRUNCATED, "%s: array of %llu strings exceeds the %zu bytes left",
                        c->ctx, (unsigned long long)n, left(c));
        for (uint64_t i = 0; i < n; i++) {
            gguf_str s;
            if (off) off[i] = c->pos;
            int rc = rd_str(c, &s);
            if (rc) return rc;
        }
        return PV_OK;
    }
    if (et == GGUF_TYPE_ARRAY) {
        if (n > left(c) / GGUF_MIN_ARRAY_BYTES)
            return fail(c, PV_ETRUNCATED, "%s: array of %llu arrays exceeds the %zu bytes left",
                        c->ctx, (unsigned long long)n, left(c));
        for (uint64_t i = 0; i < n; i++) {
            int rc = skip_value(c, GGUF_TYPE_ARRAY, level + 1);
            if (rc) return rc;
        }
        return PV_OK;
    }
    return fail(c, PV_EFORMAT, "%s: unknown array element type %u", c->ctx, et);
}

/* Validates and skips one value; `level` is the array nesting of the value. */
static int skip_value(cursor *c, uint32_t type, int level) {
    size_t es = ggi_vtype_size(type);
    if (es) {
        int rc = need(c, es);
        if (!rc) c->pos += es;
        return rc;
    }
    if (type == GGUF_TYPE_STRING) {
        gguf_str s;
        return rd_str(c, &s);
    }
    if (type != GGUF_TYPE_ARRAY)
        return fail(c, PV_EFORMAT, "%s: unknown value type %u", c->ctx, type);
    if (level > GGUF_MAX_ARRAY_NESTING)
        return fail(c, PV_EFORMAT, "%s: arrays nested deeper than %d levels", c->ctx,
                    GGUF_MAX_ARRAY_NESTING);
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(c, &et);
    if (!rc) rc = rd_u64(c, &n);
    if (rc) return rc;
    return skip_array_body(c, et, n, level, NULL);
}

static int parse_kvs(cursor *c, gguf_file *g) {
    g->kvs = calloc((size_t)g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kvs);
    g->kv_sorted = calloc((size_t)g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv_sorted);
    if (!g->kvs || !g->kv_sorted) return fail(c, PV_ENOMEM, "out of memory for %lld keys", (long long)g->n_kv);
    for (int64_t i = 0; i < g->n_kv; i++) {
        kv_entry *kv = &g->kvs[i];
        snprintf(c->ctx, sizeof c->ctx, "key %lld", (long long)i);
        int rc = rd_str(c, &kv->key);
        if (!rc) {
            char nm[96];
            sanitize(nm, sizeof nm, kv->key.ptr, kv->key.len);
            snprintf(c->ctx, sizeof c->ctx, "key '%s'", nm);
            rc = rd_u32(c, &kv->type);
        }
        if (rc) return rc;
        if (kv->type == GGUF_TYPE_ARRAY) {
            rc = rd_u32(c, &kv->elem_type);
            if (!rc) rc = rd_u64(c, &kv->n);
            if (rc) return rc;
            kv->val = c->buf + c->pos;
            if (kv->elem_type == GGUF_TYPE_STRING) {
                /* Offset table so gguf_arr_str is O(1) (the vocab has ~50k
                 * strings); the count is checked against the bytes left
                 * first, which bounds this allocation by the file size. */
                if (kv->n > left(c) / 8)
                    return fail(c, PV_ETRUNCATED,
                                "%s: array of %llu strings exceeds the %zu bytes left", c->ctx,
                                (unsigned long long)kv->n, left(c));
                kv->str_off = malloc(kv->n ? (size_t)kv->n * sizeof *kv->str_off : 1);
                if (!kv->str_off) return fail(c, PV_ENOMEM, "%s: out of memory", c->ctx);
            }
            rc = skip_array_body(c, kv->elem_type, kv->n, 1, kv->str_off);
        } else {
            kv->val = c->buf + c->pos;
            rc = skip_value(c, kv->type, 0);
        }
        if (rc) return rc;
        g->kv_sorted[i] = (key_ix){kv->key.ptr, kv->key.len, (int)i};
    }
    /* Sorting gives O(n log n) duplicate detection and binary-search lookup,
     * so a hostile file with millions of keys cannot make open quadratic. */
    qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, ggi_cmp_key);
    for (int64_t i = 1; i < g->n_kv; i++) {
        if (ggi_cmp_key(&g->kv_sorted[i - 1], &g->kv_sorted[i]) == 0) {
            char nm[96];
            sanitize(nm, sizeof nm, g->kv_sorted[i].ptr, g->kv_sorted[i].len);
            return fail(c, PV_EFORMAT, "duplicate key '%s'", nm);
        }
    }
    return PV_OK;
}

static int read_alignment(cursor *c, gguf_file *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const kv_entry *kv = ggi_find_kv(g, "general.alignment");
    if (!kv) return PV_OK;
    int64_t v = 0;
    int re = 0;
    if (kv->type == GGUF_TYPE_BOOL || !ggi_load_int(kv->type, kv->val, &v, &re))
        return fail(c, PV_EFORMAT, "general.alignment has type %s, expected an integer",
                    vtype_name(kv->type));
    /* Cap far above any real value (32) so align-up arithmetic cannot overflow. */
    if (re || v <= 0 || (v & (v - 1)) != 0 || v > (1ll << 30))
        return fail(c, PV_EFORMAT, "general.alignment %lld is not a power of two in [1, 2^30]",
                    re ? -1ll : (long long)v);
    g->alignment = (size_t)v;
    return PV_OK;
}

/* ---- tensors --------------------------------------------------------------- */

typedef struct {
    uint64_t start, end;
    int64_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Reads one tensor info; names stay pointers into the file until the arena
 * is built. */
static int parse_tinfo(cursor *c, gguf_tensor *t, gguf_str *name, int64_t i) {
    snprintf(c->ctx, sizeof c->ctx, "tensor info %lld", (long long)i);
    int rc = rd_str(c, name);
    if (rc) return rc;
    char nm[96];
    sanitize(nm, sizeof nm, name->ptr, name->len);
    snprintf(c->ctx, sizeof c->ctx, "tensor '%s'", nm);
    if (memchr(name->ptr, '\0', (size_t)name->len))
        return fail(c, PV_EFORMAT, "tensor '%s': name contains a NUL byte", nm);
    uint32_t nd;
    if ((rc = rd_u32(c, &nd))) return rc;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return fail(c, PV_EFORMAT, "tensor '%s': n_dims %u outside 1..%d", nm, nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    int64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if ((rc = rd_u64(c, &v))) return rc;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return fail(c, PV_EFORMAT, "tensor '%s': dim %u is %llu (must be in 1..2^63-1)", nm,
                        d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        if (__builtin_mul_overflow(nel, t->ne[d], &nel))
            return fail(c, PV_EFORMAT, "tensor '%s': element count overflows", nm);
    }
    if ((rc = rd_u32(c, &t->type))) return rc;
    if ((rc = rd_u64(c, &t->offset))) return rc;

    const type_traits *tt = t->type < N_TYPES ? &k_types[t->type] : NULL;
    if (!tt || !tt->bytes) {
        /* Exact phrase required by callers/tests: see gguf.h. */
        if (tt && tt->name)
            return fail(c, PV_EUNSUPPORTED, "unsupported tensor type %s in tensor %s", tt->name, nm);
        return fail(c, PV_EUNSUPPORTED, "unsupported tensor type %u in tensor %s", t->type, nm);
    }
    /* Kernels work row by row, so each row (ne[0]) must be whole blocks. */
    if (t->ne[0] % tt->blk != 0)
        return fail(c, PV_EFORMAT, "tensor '%s' (%s): ne[0]=%lld is not a multiple of the block size %u",
                    nm, tt->name, (long long)t->ne[0], tt->blk);
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)(nel / tt->blk), (uint64_t)tt->bytes, &nbytes) ||
        nbytes > SIZE_MAX)
        return fail(c, PV_EFORMAT, "tensor '%s': byte size overflows", nm);
    t->nbytes = (size_t)nbytes;
    return PV_OK;
}

static int parse_tensors(cursor *c, gguf_file *g) {
    int64_t n = g->n_tensors;
    size_t cnt = n ? (size_t)n : 1;
    gguf_str *names = calloc(cnt, sizeof *names);
    span *sp = calloc(cnt, sizeof *sp);
    g->tensors = calloc(cnt, sizeof *g->tensors);
    g->t_sorted = calloc(cnt, sizeof *g->t_sorted);
    int rc = PV_OK;
    if (!names || !sp || !g->tensors || !g->t_sorted) {
        rc = fail(c, PV_ENOMEM, "out of memory for %lld tensors", (long long)n);
        goto out;
    }
    uint64_t name_bytes = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        rc = parse_tinfo(c, &g->tensors[i], &names[i], i);
        name_bytes += names[i].len + 1; /* bounded by the file size: no overflow */
    }
    if (rc) goto out;

    /* The data section starts at the first aligned offset after the infos. */
    g->data_start = (c->pos + g->alignment - 1) / g->alignment * g->alignment;

    g->names = malloc((size_t)name_bytes + 1);
    if (!g->names) {
        rc = fail(c, PV_ENOMEM, "out of memory for tensor names");
        goto out;
    }
    char *w = g->names;
    for (int64_t i = 0; i < n; i++) {
        gguf_tensor *t = &g->tensors[i];
        memcpy(w, names[i].ptr, (size_t)names[i].len);
        w[names[i].len] = '\0';
        t->name = w;
        w += names[i].len + 1;
        g->t_sorted[i] = (name_ix){t->name, i};

        char nm[96];
        sanitize(nm, sizeof nm, t->name, names[i].len);
        if (t->offset % g->alignment != 0) {
            rc = fail(c, PV_EFORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %zu",
                      nm, (unsigned long long)t->offset, g->alignment);
            goto out;
        }
        uint64_t start, end;
        if (__builtin_add_overflow((uint64_t)g->data_start, t->offset, &start) ||
            __builtin_add_overflow(start, (uint64_t)t->nbytes, &end) || end > g->size) {
            rc = fail(c, PV_ETRUNCATED,
                      "tensor '%s' data [%llu..%llu) extends past end of file (%zu bytes)",
                      nm, (unsigned long long)(g->data_start + t->offset),
                      (unsigned long long)(g->data_start + t->offset + t->nbytes), g->size);
            goto out;
        }
        t->data = g->buf + start;
        sp[i] = (span){start, end, i};
    }
    qsort(g->t_sorted, (size_t)n, sizeof *g->t_sorted, ggi_cmp_name);
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(g->t_sorted[i - 1].name, g->t_sorted[i].name) == 0) {
            char nm[96];
            sanitize(nm, sizeof nm, g->t_sorted[i].name, strlen(g->t_sorted[i].name));
            rc = fail(c, PV_EFORMAT, "duplicate tensor name '%s'", nm);
            goto out;
        }
    }
    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    for (int64_t i = 1; i < n; i++) {
        if (sp[i].start < sp[i - 1].end) {
            char a[96], b[96];
            const char *na = g->tensors[sp[i - 1].idx].name, *nb = g->tensors[sp[i].idx].name;
            sanitize(a, sizeof a, na, strlen(na));
            sanitize(b, sizeof b, nb, strlen(nb));
            rc = fail(c, PV_EFORMAT, "tensors '%s' and '%s' overlap in the data section", a, b);
            goto out;
        }
    }
out:
    free(names);
    free(sp);
    return rc;
}

/* ---- open / close ---------------------------------------------------------- */

static int parse(gguf_file *g, char *err, size_t errlen) {
    cursor c = {.buf = g->buf, .size = g->size, .err = err, .errlen = errlen};
    snprintf(c.ctx, sizeof c.ctx, "header");
    int rc = need(&c, 4);
    if (rc) return rc;
    if (memcmp(g->buf, "GGUF", 4) != 0)
        return fail(&c, PV_EFORMAT, "bad magic: not a GGUF file (first bytes %02x %02x %02x %02x)",
                    g->buf[0], g->buf[1], g->buf[2], g->buf[3]);
    c.pos = 4;
    if ((rc = rd_u32(&c, &g->version))) return rc;
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return fail(&c, PV_EUNSUPPORTED, "big-endian GGUF files are not supported");
    if (g->version == 1)
        return fail(&c, PV_EUNSUPPORTED, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (g->version != 2 && g->version != 3)
        return fail(&c, PV_EUNSUPPORTED, "unknown GGUF version %u (only versions 2 and 3)", g->version);
    uint64_t nt, nkv;
    if ((rc = rd_u64(&c, &nt)) || (rc = rd_u64(&c, &nkv))) return rc;
    /* Bound both counts by the smallest encoding of their items before any
     * allocation; written to avoid overflow for counts near 2^64. */
    if (nkv > left(&c) / GGUF_MIN_KV_BYTES)
        return fail(&c, PV_ETRUNCATED, "header key count %llu cannot fit in the %zu bytes left",
                    (unsigned long long)nkv, left(&c));
    if (nt > (left(&c) - nkv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TINFO_BYTES)
        return fail(&c, PV_ETRUNCATED, "header tensor count %llu cannot fit in the %zu bytes left",
                    (unsigned long long)nt, left(&c));
    /* gguf_find_key returns an int index. */
    if (nkv > INT32_MAX || nt > INT32_MAX)
        return fail(&c, PV_EFORMAT, "header counts (%llu keys, %llu tensors) too large",
                    (unsigned long long)nkv, (unsigned long long)nt);
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;
    if ((rc = parse_kvs(&c, g))) return rc;
    if ((rc = read_alignment(&c, g))) return rc;
    return parse_tensors(&c, g);
}

int gguf_open_memory(const void *data, size_t size, gguf_file **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return PV_EINVAL;
    *out = NULL;
    if (!data && size) {
        if (err && errlen) snprintf(err, errlen, "gguf: NULL buffer");
        return PV_EINVAL;
    }
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        if (err && errlen) snprintf(err, errlen, "gguf: out of memory");
        return PV_ENOMEM;
    }
    static const uint8_t empty[1] = {0};
    g->buf = data ? data : empty; /* size 0 then: parse fails on the magic */
    g->size = size;
    int rc = parse(g, err, errlen);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return PV_OK;
}

int gguf_open(const char *path, gguf_file **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) return PV_EINVAL;
    *out = NULL;
    if (!path) return PV_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (err && errlen) snprintf(err, errlen, "gguf: cannot open '%s': %s", path, strerror(e));
        return e == ENOENT ? PV_ENOTFOUND : PV_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        if (err && errlen) snprintf(err, errlen, "gguf: '%s' is not a regular file", path);
        return PV_EIO;
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            if (err && errlen) snprintf(err, errlen, "gguf: cannot mmap '%s': %s", path, strerror(e));
            return e == ENOMEM ? PV_ENOMEM : PV_EIO;
        }
    }
    close(fd); /* the mapping keeps the file alive */
    int rc = gguf_open_memory(map, size, out, err, errlen);
    if (rc) {
        if (map) munmap(map, size);
        return rc;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return PV_OK;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    if (g->kvs)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kvs[i].str_off);
    free(g->kvs);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->t_sorted);
    free(g->names);
    if (g->map) munmap(g->map, g->map_size);
    free(g);
}
