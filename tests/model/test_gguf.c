/* Tests for the GGUF loader: a small in-test writer builds valid and corrupt
 * files in memory; the real model is checked when present. Expected values
 * for the model were confirmed independently with the `gguf` Python package. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "pverr.h"

/* ---- in-memory GGUF writer ------------------------------------------------ */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} wbuf;

static void w_bytes(wbuf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
        cr_assert_not_null(w->b);
    }
    if (n) memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u16(wbuf *w, uint16_t v) { w_bytes(w, &v, 2); }
static void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_f32(wbuf *w, float v) { w_bytes(w, &v, 4); }
static void w_f64(wbuf *w, double v) { w_bytes(w, &v, 8); }
static void w_str(wbuf *w, const char *s) {
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}
static void w_hdr(wbuf *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, n_tensors);
    w_u64(w, n_kv);
}
/* Key and value type; the caller writes the value. */
static void w_key(wbuf *w, const char *key, uint32_t type) {
    w_str(w, key);
    w_u32(w, type);
}
static void w_arr(wbuf *w, const char *key, uint32_t elem, uint64_t n) {
    w_key(w, key, GGUF_TYPE_ARRAY);
    w_u32(w, elem);
    w_u64(w, n);
}
static void w_tinfo(wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset) {
    w_str(w, name);
    w_u32(w, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) w_u64(w, ne[i]);
    w_u32(w, type);
    w_u64(w, offset);
}
/* Pads to `align` and appends n data bytes with a recognisable pattern
 * (byte k of the data section is (k * 7 + 3) & 0xff). Returns data start. */
static size_t w_data(wbuf *w, size_t align, size_t n) {
    while (w->n % align) w_u8(w, 0);
    size_t start = w->n;
    for (size_t k = 0; k < n; k++) w_u8(w, (uint8_t)(k * 7 + 3));
    return start;
}

static int open_buf(const wbuf *w, gguf_file **g, char *err, size_t errlen) {
    return gguf_open_memory(w->b, w->n, g, err, errlen);
}

/* The reference valid file: every scalar type, string arrays, a nested array,
 * an alignment of 64 written as u8, and three tensors of different types. */
#define VALID_NKV 20
static size_t make_valid(wbuf *w) {
    w_hdr(w, 3, 3, VALID_NKV);
    w_key(w, "general.architecture", GGUF_TYPE_STRING);
    w_str(w, "llama");
    w_key(w, "general.alignment", GGUF_TYPE_UINT8);
    w_u8(w, 64);
    w_key(w, "t.u8", GGUF_TYPE_UINT8);
    w_u8(w, 200);
    w_key(w, "t.i8", GGUF_TYPE_INT8);
    w_u8(w, (uint8_t)-5);
    w_key(w, "t.u16", GGUF_TYPE_UINT16);
    w_u16(w, 65000);
    w_key(w, "t.i16", GGUF_TYPE_INT16);
    w_u16(w, (uint16_t)-300);
    w_key(w, "t.u32", GGUF_TYPE_UINT32);
    w_u32(w, 4000000000u);
    w_key(w, "t.i32", GGUF_TYPE_INT32);
    w_u32(w, (uint32_t)-7);
    w_key(w, "t.u64", GGUF_TYPE_UINT64);
    w_u64(w, 1ull << 40);
    w_key(w, "t.u64big", GGUF_TYPE_UINT64);
    w_u64(w, UINT64_MAX);
    w_key(w, "t.i64", GGUF_TYPE_INT64);
    w_u64(w, (uint64_t)-(1ll << 41));
    w_key(w, "t.f32", GGUF_TYPE_FLOAT32);
    w_f32(w, 1.5f);
    w_key(w, "t.f64", GGUF_TYPE_FLOAT64);
    w_f64(w, -2.25);
    w_key(w, "t.bool", GGUF_TYPE_BOOL);
    w_u8(w, 1);
    w_key(w, "t.empty", GGUF_TYPE_STRING);
    w_str(w, "");
    w_arr(w, "t.tokens", GGUF_TYPE_STRING, 4);
    w_str(w, "a");
    w_str(w, "<|im_start|>");
    w_str(w, "");
    w_str(w, "\xc4\xa0t");
    w_arr(w, "t.ints", GGUF_TYPE_INT32, 3);
    w_u32(w, 1);
    w_u32(w, (uint32_t)-2);
    w_u32(w, 3);
    w_arr(w, "t.floats", GGUF_TYPE_FLOAT32, 2);
    w_f32(w, 0.5f);
    w_f32(w, -4.0f);
    w_arr(w, "t.nested", GGUF_TYPE_ARRAY, 2); /* [[1,2] as u8, ["x"]] */
    w_u32(w, GGUF_TYPE_UINT8);
    w_u64(w, 2);
    w_u8(w, 1);
    w_u8(w, 2);
    w_u32(w, GGUF_TYPE_STRING);
    w_u64(w, 1);
    w_str(w, "x");
    w_arr(w, "t.empty_arr", GGUF_TYPE_UINT64, 0);
    /* F32 [4,2] = 32 B at 0; Q8_0 [32,2] = 68 B at 64; Q4_1 [64] = 40 B at 192. */
    w_tinfo(w, "a.weight", 2, (uint64_t[]){4, 2}, 0, 0);
    w_tinfo(w, "blk.0.b", 2, (uint64_t[]){32, 2}, 8, 64);
    w_tinfo(w, "c", 1, (uint64_t[]){64}, 3, 192);
    return w_data(w, 64, 232);
}

/* ---- valid files ---------------------------------------------------------- */

static void check_valid(gguf_file *g, const uint8_t *data_section) {
    cr_assert_eq(gguf_version(g), 3);
    cr_assert_eq(gguf_n_kv(g), VALID_NKV);
    cr_assert_eq(gguf_n_tensors(g), 3);
    cr_assert_eq(gguf_alignment(g), 64);

    gguf_str s;
    cr_assert_eq(gguf_get_str(g, "general.architecture", &s), PV_OK);
    cr_assert(gguf_str_eq(s, "llama"));
    cr_assert(!gguf_str_eq(s, "llam"));
    cr_assert_eq(gguf_get_str(g, "t.empty", &s), PV_OK);
    cr_assert_eq(s.len, 0);

    int64_t v;
    struct { const char *k; int64_t want; } ints[] = {
        {"t.u8", 200},  {"t.i8", -5},          {"t.u16", 65000},        {"t.i16", -300},
        {"t.u32", 4000000000ll}, {"t.i32", -7}, {"t.u64", 1ll << 40}, {"t.i64", -(1ll << 41)},
        {"t.bool", 1},  {"general.alignment", 64},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        v = 12345;
        cr_assert_eq(gguf_get_int(g, ints[i].k, &v), PV_OK, "%s", ints[i].k);
        cr_assert_eq(v, ints[i].want, "%s: %lld", ints[i].k, (long long)v);
    }
    cr_assert_eq(gguf_get_int(g, "t.u64big", &v), PV_ERANGE);
    cr_assert_eq(gguf_get_int(g, "t.f32", &v), PV_EINVAL);
    cr_assert_eq(gguf_get_int(g, "general.architecture", &v), PV_EINVAL);
    cr_assert_eq(gguf_get_int(g, "no.such.key", &v), PV_ENOTFOUND);
    cr_assert_eq(gguf_get_int(g, "t.u", &v), PV_ENOTFOUND); /* prefix of real keys */

    double d;
    cr_assert_eq(gguf_get_float(g, "t.f32", &d), PV_OK);
    cr_assert_float_eq(d, 1.5, 0);
    cr_assert_eq(gguf_get_float(g, "t.f64", &d), PV_OK);
    cr_assert_float_eq(d, -2.25, 0);
    cr_assert_eq(gguf_get_float(g, "t.i16", &d), PV_OK);
    cr_assert_float_eq(d, -300.0, 0);
    cr_assert_eq(gguf_get_float(g, "t.tokens", &d), PV_EINVAL);

    int b = 0;
    cr_assert_eq(gguf_get_bool(g, "t.bool", &b), PV_OK);
    cr_assert_eq(b, 1);
    cr_assert_eq(gguf_get_bool(g, "t.f64", &b), PV_EINVAL);
    cr_assert_eq(gguf_get_str(g, "t.u8", &s), PV_EINVAL);

    gguf_vtype et;
    uint64_t n;
    cr_assert_eq(gguf_get_arr(g, "t.tokens", &et, &n), PV_OK);
    cr_assert_eq(et, GGUF_TYPE_STRING);
    cr_assert_eq(n, 4);
    const char *want[] = {"a", "<|im_start|>", "", "\xc4\xa0t"};
    for (uint64_t i = 0; i < 4; i++) {
        cr_assert_eq(gguf_arr_str(g, "t.tokens", i, &s), PV_OK);
        cr_assert(gguf_str_eq(s, want[i]), "token %llu", (unsigned long long)i);
    }
    cr_assert_eq(gguf_arr_str(g, "t.tokens", 4, &s), PV_ERANGE);
    cr_assert_eq(gguf_arr_str(g, "t.ints", 0, &s), PV_EINVAL);
    cr_assert_eq(gguf_arr_str(g, "t.u8", 0, &s), PV_EINVAL);
    cr_assert_eq(gguf_arr_str(g, "nope", 0, &s), PV_ENOTFOUND);

    cr_assert_eq(gguf_get_arr(g, "t.ints", &et, &n), PV_OK);
    cr_assert_eq(et, GGUF_TYPE_INT32);
    cr_assert_eq(n, 3);
    int64_t wi[] = {1, -2, 3};
    for (uint64_t i = 0; i < 3; i++) {
        cr_assert_eq(gguf_arr_int(g, "t.ints", i, &v), PV_OK);
        cr_assert_eq(v, wi[i]);
    }
    cr_assert_eq(gguf_arr_int(g, "t.ints", 3, &v), PV_ERANGE);
    cr_assert_eq(gguf_arr_int(g, "t.tokens", 0, &v), PV_EINVAL);
    cr_assert_eq(gguf_arr_float(g, "t.floats", 1, &d), PV_OK);
    cr_assert_float_eq(d, -4.0, 0);
    cr_assert_eq(gguf_arr_float(g, "t.ints", 1, &d), PV_OK);
    cr_assert_float_eq(d, -2.0, 0);
    cr_assert_eq(gguf_arr_float(g, "t.floats", 2, &d), PV_ERANGE);

    cr_assert_eq(gguf_get_arr(g, "t.nested", &et, &n), PV_OK);
    cr_assert_eq(et, GGUF_TYPE_ARRAY);
    cr_assert_eq(n, 2);
    cr_assert_eq(gguf_arr_int(g, "t.nested", 0, &v), PV_EINVAL);
    cr_assert_eq(gguf_get_arr(g, "t.empty_arr", &et, &n), PV_OK);
    cr_assert_eq(et, GGUF_TYPE_UINT64);
    cr_assert_eq(n, 0);
    cr_assert_eq(gguf_arr_int(g, "t.empty_arr", 0, &v), PV_ERANGE);

    /* Key enumeration keeps file order. */
    int idx = gguf_find_key(g, "t.u16");
    cr_assert_eq(idx, 4);
    cr_assert(gguf_str_eq(gguf_key_at(g, idx), "t.u16"));
    cr_assert_eq(gguf_kv_type(g, idx), GGUF_TYPE_UINT16);
    cr_assert_eq(gguf_find_key(g, "t.u1"), -1);
    cr_assert_null(gguf_key_at(g, VALID_NKV).ptr);
    cr_assert_null(gguf_key_at(g, -1).ptr);

    /* Tensors. */
    const gguf_tensor *t = gguf_tensor_at(g, 1);
    cr_assert_not_null(t);
    cr_assert_str_eq(t->name, "blk.0.b");
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->ne[0], 32);
    cr_assert_eq(t->ne[1], 2);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->ne[3], 1);
    cr_assert_eq(t->type, 8);
    cr_assert_eq(t->offset, 64);
    cr_assert_eq(t->nbytes, 68);
    cr_assert_eq((const uint8_t *)t->data, data_section + 64);
    cr_assert_eq(((const uint8_t *)t->data)[0], (uint8_t)(64 * 7 + 3));
    cr_assert_eq(gguf_find_tensor(g, "blk.0.b"), t);

    const gguf_tensor *a = gguf_find_tensor(g, "a.weight");
    cr_assert_eq(a, gguf_tensor_at(g, 0));
    cr_assert_eq(a->nbytes, 32);
    cr_assert_eq((const uint8_t *)a->data, data_section);
    const gguf_tensor *c = gguf_find_tensor(g, "c");
    cr_assert_not_null(c);
    cr_assert_eq(c->type, 3);
    cr_assert_eq(c->n_dims, 1);
    cr_assert_eq(c->ne[0], 64);
    cr_assert_eq(c->ne[1], 1);
    cr_assert_eq(c->nbytes, 40);
    cr_assert_eq((const uint8_t *)c->data, data_section + 192);
    cr_assert_null(gguf_find_tensor(g, "blk.0"));
    cr_assert_null(gguf_tensor_at(g, 3));
    cr_assert_null(gguf_tensor_at(g, -1));
}

Test(gguf, valid_memory) {
    wbuf w = {0};
    size_t ds = make_valid(&w);
    cr_assert_eq(ds % 64, 0);
    gguf_file *g = NULL;
    char err[256] = "x";
    int rc = open_buf(&w, &g, err, sizeof err);
    cr_assert_eq(rc, PV_OK, "rc %d: %s", rc, err);
    cr_assert_not_null(g);
    check_valid(g, w.b + ds);
    gguf_close(g);
    free(w.b);
}

Test(gguf, valid_file_mmap) {
    wbuf w = {0};
    size_t ds = make_valid(&w);
    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, w.b, w.n), (ssize_t)w.n);
    close(fd);
    gguf_file *g = NULL;
    char err[256];
    int rc = gguf_open(path, &g, err, sizeof err);
    unlink(path);
    cr_assert_eq(rc, PV_OK, "rc %d: %s", rc, err);
    /* Pointers go into the mapping, so compare contents, not addresses. */
    const gguf_tensor *t = gguf_find_tensor(g, "c");
    cr_assert_not_null(t);
    cr_assert_eq(memcmp(t->data, w.b + ds + 192, 40), 0);
    gguf_str s;
    cr_assert_eq(gguf_arr_str(g, "t.tokens", 1, &s), PV_OK);
    cr_assert(gguf_str_eq(s, "<|im_start|>"));
    gguf_close(g);
    free(w.b);
}

Test(gguf, open_errors) {
    gguf_file *g = (gguf_file *)1;
    char err[256] = "";
    cr_assert_eq(gguf_open("/nonexistent/dir/x.gguf", &g, err, sizeof err), PV_ENOTFOUND);
    cr_assert_null(g);
    cr_assert(strstr(err, "/nonexistent/dir/x.gguf"), "%s", err);
    cr_assert_eq(gguf_open("/tmp", &g, err, sizeof err), PV_EIO);
    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    int rc = gguf_open(path, &g, err, sizeof err);
    unlink(path);
    cr_assert_eq(rc, PV_ETRUNCATED, "rc %d %s", rc, err);
    cr_assert_eq(gguf_open_memory(NULL, 0, &g, err, sizeof err), PV_ETRUNCATED);
    cr_assert_eq(gguf_open_memory(NULL, 8, &g, err, sizeof err), PV_EINVAL);
    /* A NULL err buffer and a tiny one must be tolerated. */
    cr_assert_eq(gguf_open_memory("GGUF", 4, &g, NULL, 0), PV_ETRUNCATED);
    cr_assert_eq(gguf_open_memory("GGUF", 4, &g, err, 3), PV_ETRUNCATED);
    cr_assert_eq(strlen(err), 2);
    gguf_close(NULL);
}

/* Default alignment (no general.alignment key) is 32. */
Test(gguf, default_alignment) {
    wbuf w = {0};
    w_hdr(&w, 2, 1, 0);
    w_tinfo(&w, "t", 1, (uint64_t[]){8}, 1, 0);
    size_t ds = w_data(&w, 32, 16);
    gguf_file *g;
    char err[256];
    int rc = open_buf(&w, &g, err, sizeof err);
    cr_assert_eq(rc, PV_OK, "%s", err);
    cr_assert_eq(gguf_version(g), 2);
    cr_assert_eq(gguf_alignment(g), 32);
    cr_assert_eq((const uint8_t *)gguf_tensor_at(g, 0)->data, w.b + ds);
    cr_assert_eq(gguf_tensor_at(g, 0)->nbytes, 16);
    gguf_close(g);
    free(w.b);
}

/* ---- corrupt files -------------------------------------------------------- */

/* Opens w, expects `code` and a "gguf: " message containing every `needle`. */
static void expect_fail(const wbuf *w, int code, const char *n1, const char *n2) {
    gguf_file *g = (gguf_file *)1;
    char err[512] = "";
    int rc = open_buf(w, &g, err, sizeof err);
    cr_assert_eq(rc, code, "rc %d (%s), want %d; msg: %s", rc, pv_strerror(rc), code, err);
    cr_assert_null(g);
    cr_assert_eq(strncmp(err, "gguf: ", 6), 0, "%s", err);
    cr_assert_null(strchr(err, '\n'), "%s", err);
    if (n1) cr_assert(strstr(err, n1), "'%s' not in: %s", n1, err);
    if (n2) cr_assert(strstr(err, n2), "'%s' not in: %s", n2, err);
}

Test(gguf, truncated_at_every_prefix) {
    wbuf w = {0};
    make_valid(&w);
    for (size_t len = 0; len < w.n; len++) {
        /* An exact-size heap copy, so any over-read is a real out-of-bounds
         * access that valgrind/ASan would flag. */
        uint8_t *cp = malloc(len ? len : 1);
        memcpy(cp, w.b, len);
        gguf_file *g = (gguf_file *)1;
        char err[512] = "";
        int rc = gguf_open_memory(cp, len, &g, err, sizeof err);
        cr_assert(rc == PV_ETRUNCATED, "len %zu: rc %d: %s", len, rc, err);
        cr_assert_null(g);
        cr_assert_eq(strncmp(err, "gguf: ", 6), 0, "len %zu: %s", len, err);
        free(cp);
    }
    free(w.b);
}

/* Corrupting any single byte before the data section must give either a
 * clean error or a file whose tensors all lie inside the buffer. */
Test(gguf, single_byte_corruption) {
    wbuf w = {0};
    size_t ds = make_valid(&w);
    uint8_t *cp = malloc(w.n);
    int n_err = 0;
    for (size_t pos = 0; pos < ds; pos++) {
        uint8_t vals[] = {0x00, 0xff, (uint8_t)(w.b[pos] ^ 0x80), (uint8_t)(w.b[pos] + 1)};
        for (size_t k = 0; k < sizeof vals; k++) {
            memcpy(cp, w.b, w.n);
            cp[pos] = vals[k];
            gguf_file *g = NULL;
            char err[512] = "";
            int rc = gguf_open_memory(cp, w.n, &g, err, sizeof err);
            if (rc != PV_OK) {
                cr_assert_null(g);
                cr_assert(rc < 0 && strncmp(err, "gguf: ", 6) == 0, "pos %zu: rc %d %s", pos, rc, err);
                n_err++;
                continue;
            }
            for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
                const gguf_tensor *t = gguf_tensor_at(g, i);
                const uint8_t *d = t->data;
                cr_assert(d >= cp && d + t->nbytes <= cp + w.n, "pos %zu: tensor %lld outside", pos,
                          (long long)i);
            }
            gguf_close(g);
        }
    }
    cr_assert_gt(n_err, 0);
    free(cp);
    free(w.b);
}

Test(gguf, bad_magic) {
    wbuf w = {0};
    make_valid(&w);
    memcpy(w.b, "GGML", 4);
    expect_fail(&w, PV_EFORMAT, "magic", NULL);
    free(w.b);
}

Test(gguf, bad_versions) {
    uint32_t vs[] = {1, 99, 0};
    const char *needle[] = {"version 1", "version 99", "version 0"};
    for (int i = 0; i < 3; i++) {
        wbuf w = {0};
        make_valid(&w);
        memcpy(w.b + 4, &vs[i], 4);
        expect_fail(&w, PV_EUNSUPPORTED, needle[i], NULL);
        free(w.b);
    }
    wbuf w = {0};
    make_valid(&w);
    uint32_t be3 = 0x03000000u;
    memcpy(w.b + 4, &be3, 4);
    expect_fail(&w, PV_EUNSUPPORTED, "big-endian", NULL);
    free(w.b);
}

Test(gguf, absurd_counts) {
    wbuf w = {0};
    w_hdr(&w, 3, 0, 1ull << 62);
    w_data(&w, 1, 100);
    expect_fail(&w, PV_ETRUNCATED, "key count", NULL);
    free(w.b);
    w = (wbuf){0};
    w_hdr(&w, 3, UINT64_MAX, 0);
    w_data(&w, 1, 100);
    expect_fail(&w, PV_ETRUNCATED, "tensor count", NULL);
    free(w.b);
    w = (wbuf){0};
    make_valid(&w);
    uint64_t nt = 1ull << 40;
    memcpy(w.b + 8, &nt, 8);
    expect_fail(&w, PV_ETRUNCATED, "tensor count", NULL);
    free(w.b);
    /* An array count beyond the file: 2^61 u64s. */
    w = (wbuf){0};
    w_hdr(&w, 3, 0, 1);
    w_arr(&w, "big.arr", GGUF_TYPE_UINT64, 1ull << 61);
    w_data(&w, 1, 64);
    expect_fail(&w, PV_ETRUNCATED, "big.arr", "array");
    free(w.b);
    w = (wbuf){0};
    w_hdr(&w, 3, 0, 1);
    w_arr(&w, "big.strs", GGUF_TYPE_STRING, UINT64_MAX);
    w_data(&w, 1, 64);
    expect_fail(&w, PV_ETRUNCATED, "big.strs", "strings");
    free(w.b);
}

Test(gguf, string_length_past_end) {
    wbuf w = {0};
    w_hdr(&w, 3, 0, 1);
    w_u64(&w, 1000); /* key length */
    w_bytes(&w, "short.key", 9);
    w_data(&w, 1, 20);
    expect_fail(&w, PV_ETRUNCATED, "string length 1000", "key 0");
    free(w.b);
    w = (wbuf){0};
    w_hdr(&w, 3, 0, 1);
    w_key(&w, "general.name", GGUF_TYPE_STRING);
    w_u64(&w, UINT64_MAX);
    w_data(&w, 1, 20);
    expect_fail(&w, PV_ETRUNCATED, "string length", "general.name");
    free(w.b);
    w = (wbuf){0}; /* inside a string array */
    w_hdr(&w, 3, 0, 1);
    w_arr(&w, "tok", GGUF_TYPE_STRING, 2);
    w_str(&w, "ok");
    w_u64(&w, 1ull << 40);
    w_data(&w, 1, 20);
    expect_fail(&w, PV_ETRUNCATED, "string length", "tok");
    free(w.b);
}

Test(gguf, unknown_value_type) {
    wbuf w = {0};
    w_hdr(&w, 3, 0, 1);
    w_key(&w, "weird.key", 13);
    w_data(&w, 1, 16);
    expect_fail(&w, PV_EFORMAT, "unknown value type 13", "weird.key");
    free(w.b);
    w = (wbuf){0};
    w_hdr(&w, 3, 0, 1);
    w_arr(&w, "weird.arr", 77, 1);
    w_data(&w, 1, 16);
    expect_fail(&w, PV_EFORMAT, "element type 77", "weird.arr");
    free(w.b);
}

static void w_nested(wbuf *w, int levels) {
    w_arr(w, "deep", GGUF_TYPE_ARRAY, 1);
    for (int i = 1; i < levels - 1; i++) {
        w_u32(w, GGUF_TYPE_ARRAY);
        w_u64(w, 1);
    }
    w_u32(w, GGUF_TYPE_UINT8); /* innermost: one u8 */
    w_u64(w, 1);
    w_u8(w, 42);
}

Test(gguf, nesting_depth) {
    wbuf w = {0};
    w_hdr(&w, 3, 0, 1);
    w_nested(&w, 8); /* the limit: accepted */
    gguf_file *g;
    char err[256];
    cr_assert_eq(open_buf(&w, &g, err, sizeof err), PV_OK, "%s", err);
    gguf_close(g);
    free(w.b);
    w = (wbuf){0};
    w_hdr(&w, 3, 0, 1);
    w_nested(&w, 9);
    expect_fail(&w, PV_EFORMAT, "nested", "deep");
    free(w.b);
    w = (wbuf){0}; /* far deeper than the stack would like, if unchecked */
    w_hdr(&w, 3, 0, 1);
    w_nested(&w, 100000);
    expect_fail(&w, PV_EFORMAT, "nested", "deep");
    free(w.b);
}

/* One tensor info, then 64 data bytes at alignment 32. */
static void one_tensor(wbuf *w, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                       uint64_t off) {
    w_hdr(w, 3, 1, 0);
    w_tinfo(w, name, nd, ne, type, off);
    w_data(w, 32, 64);
}

Test(gguf, bad_n_dims) {
    wbuf w = {0};
    one_tensor(&w, "t0", 0, NULL, 0, 0);
    expect_fail(&w, PV_EFORMAT, "n_dims 0", "'t0'");
    free(w.b);
    w = (wbuf){0};
    one_tensor(&w, "t5", 5, (uint64_t[]){1, 1, 1, 1, 1}, 0, 0);
    expect_fail(&w, PV_EFORMAT, "n_dims 5", "'t5'");
    free(w.b);
}

Test(gguf, bad_dims) {
    wbuf w = {0};
    one_tensor(&w, "zero", 2, (uint64_t[]){4, 0}, 0, 0);
    expect_fail(&w, PV_EFORMAT, "dim 1 is 0", "'zero'");
    free(w.b);
    w = (wbuf){0};
    one_tensor(&w, "huge", 1, (uint64_t[]){1ull << 63}, 0, 0);
    expect_fail(&w, PV_EFORMAT, "dim 0", "'huge'");
    free(w.b);
    w = (wbuf){0};
    one_tensor(&w, "ovf", 3, (uint64_t[]){1ull << 32, 1ull << 32, 2}, 0, 0);
    expect_fail(&w, PV_EFORMAT, "element count overflows", "'ovf'");
    free(w.b);
    w = (wbuf){0}; /* elements fit int64, bytes (x4) do not */
    one_tensor(&w, "ovfb", 2, (uint64_t[]){1ull << 31, 1ull << 31}, 0, 0);
    expect_fail(&w, PV_EFORMAT, "byte size overflows", "'ovfb'");
    free(w.b);
    w = (wbuf){0};
    one_tensor(&w, "odd", 1, (uint64_t[]){33}, 8, 0);
    expect_fail(&w, PV_EFORMAT, "block size 32", "'odd'");
    free(w.b);
}

Test(gguf, unsupported_tensor_type) {
    wbuf w = {0};
    one_tensor(&w, "blk.0.ffn_up.weight", 1, (uint64_t[]){256}, 10, 0);
    expect_fail(&w, PV_EUNSUPPORTED, "unsupported tensor type Q2_K in tensor blk.0.ffn_up.weight",
                NULL);
    free(w.b);
    w = (wbuf){0};
    one_tensor(&w, "x", 1, (uint64_t[]){32}, 99, 0);
    expect_fail(&w, PV_EUNSUPPORTED, "unsupported tensor type 99 in tensor x", NULL);
    free(w.b);
    w = (wbuf){0}; /* activation-only formats are not weights */
    one_tensor(&w, "y", 1, (uint64_t[]){32}, 9, 0);
    expect_fail(&w, PV_EUNSUPPORTED, "unsupported tensor type Q8_1 in tensor y", NULL);
    free(w.b);
}

Test(gguf, unaligned_offset) {
    wbuf w = {0};
    one_tensor(&w, "mis", 1, (uint64_t[]){4}, 0, 4);
    expect_fail(&w, PV_EFORMAT, "offset 4", "alignment 32");
    free(w.b);
}

Test(gguf, data_past_eof) {
    wbuf w = {0};
    one_tensor(&w, "big", 1, (uint64_t[]){32}, 0, 0); /* 128 B, 64 present */
    expect_fail(&w, PV_ETRUNCATED, "'big'", "past end of file");
    free(w.b);
    w = (wbuf){0}; /* offset near 2^64: start+offset must not wrap */
    one_tensor(&w, "wrap", 1, (uint64_t[]){4}, 0, UINT64_MAX - 31);
    expect_fail(&w, PV_ETRUNCATED, "'wrap'", "past end of file");
    free(w.b);
}

Test(gguf, overlapping_tensors) {
    wbuf w = {0};
    w_hdr(&w, 3, 2, 0);
    w_tinfo(&w, "first", 1, (uint64_t[]){16}, 0, 0);   /* [0, 64) */
    w_tinfo(&w, "second", 1, (uint64_t[]){16}, 0, 32); /* [32, 96) */
    w_data(&w, 32, 128);
    expect_fail(&w, PV_EFORMAT, "overlap", "'first' and 'second'");
    free(w.b);
}

Test(gguf, duplicates) {
    wbuf w = {0};
    w_hdr(&w, 3, 0, 3);
    w_key(&w, "dup.key", GGUF_TYPE_UINT32);
    w_u32(&w, 1);
    w_key(&w, "other", GGUF_TYPE_UINT8);
    w_u8(&w, 1);
    w_key(&w, "dup.key", GGUF_TYPE_STRING);
    w_str(&w, "v");
    expect_fail(&w, PV_EFORMAT, "duplicate key", "dup.key");
    free(w.b);
    w = (wbuf){0};
    w_hdr(&w, 3, 2, 0);
    w_tinfo(&w, "same", 1, (uint64_t[]){8}, 0, 0);
    w_tinfo(&w, "same", 1, (uint64_t[]){8}, 0, 32);
    w_data(&w, 32, 64);
    expect_fail(&w, PV_EFORMAT, "duplicate tensor name", "same");
    free(w.b);
}

/* Returns the end of the tensor infos. */
static size_t alignment_file(wbuf *w, uint32_t type, uint64_t v) {
    w_hdr(w, 3, 1, 1);
    w_key(w, "general.alignment", type);
    if (type == GGUF_TYPE_STRING) w_str(w, "32");
    else w_bytes(w, &v, type == GGUF_TYPE_UINT64 || type == GGUF_TYPE_INT64 ? 8 : type == GGUF_TYPE_UINT16 ? 2 : 4);
    w_tinfo(w, "tensor.abcd", 1, (uint64_t[]){4}, 0, 0);
    size_t end = w->n;
    w_data(w, 32, 64);
    return end;
}

Test(gguf, alignment_values) {
    wbuf w = {0};
    alignment_file(&w, GGUF_TYPE_UINT32, 48);
    expect_fail(&w, PV_EFORMAT, "general.alignment 48", "power of two");
    free(w.b);
    w = (wbuf){0};
    alignment_file(&w, GGUF_TYPE_UINT32, 0);
    expect_fail(&w, PV_EFORMAT, "general.alignment 0", "power of two");
    free(w.b);
    w = (wbuf){0};
    alignment_file(&w, GGUF_TYPE_INT32, (uint32_t)-32);
    expect_fail(&w, PV_EFORMAT, "general.alignment", "power of two");
    free(w.b);
    w = (wbuf){0};
    alignment_file(&w, GGUF_TYPE_STRING, 0);
    expect_fail(&w, PV_EFORMAT, "general.alignment", "integer");
    free(w.b);
    /* Any integer width is accepted: u16 and u64 holding 16. */
    uint32_t types[] = {GGUF_TYPE_UINT16, GGUF_TYPE_UINT64};
    for (int i = 0; i < 2; i++) {
        w = (wbuf){0};
        size_t end = alignment_file(&w, types[i], 16);
        gguf_file *g;
        char err[256];
        cr_assert_eq(open_buf(&w, &g, err, sizeof err), PV_OK, "%s", err);
        cr_assert_eq(gguf_alignment(g), 16);
        /* The infos end 2 or 8 bytes past a multiple of 32 here, so the
         * 16-aligned data start differs from the 32-aligned one. */
        size_t want = (end + 15) / 16 * 16;
        cr_assert_neq(want, (end + 31) / 32 * 32);
        cr_assert_eq((const uint8_t *)gguf_tensor_at(g, 0)->data, w.b + want);
        gguf_close(g);
        free(w.b);
    }
}

Test(gguf, control_chars_in_names_stay_one_line) {
    wbuf w = {0};
    one_tensor(&w, "evil\nname", 1, (uint64_t[]){4}, 0, 4);
    expect_fail(&w, PV_EFORMAT, "evil?name", "offset 4");
    free(w.b);
}

/* ---- the real model -------------------------------------------------------- */

Test(gguf, real_model) {
    char path[1024];
    const char *root = getenv("PIVOT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             root ? root : PIVOT_SOURCE_ROOT);
    if (access(path, R_OK) != 0) cr_skip_test("model not present: %s", path);
    gguf_file *g = NULL;
    char err[512];
    int rc = gguf_open(path, &g, err, sizeof err);
    cr_assert_eq(rc, PV_OK, "%s", err);
    cr_assert_eq(gguf_version(g), 3);
    cr_assert_eq(gguf_n_tensors(g), 272);
    cr_assert_eq(gguf_n_kv(g), 33);
    cr_assert_eq(gguf_alignment(g), 32);
    gguf_str s;
    cr_assert_eq(gguf_get_str(g, "general.architecture", &s), PV_OK);
    cr_assert(gguf_str_eq(s, "llama"));
    int64_t v;
    cr_assert_eq(gguf_get_int(g, "llama.block_count", &v), PV_OK);
    cr_assert_eq(v, 30);
    double d;
    cr_assert_eq(gguf_get_float(g, "llama.rope.freq_base", &d), PV_OK);
    cr_assert_float_eq(d, 100000.0, 0);

    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->ne[0], 576);
    cr_assert_eq(t->ne[1], 49152);
    cr_assert_eq(t->type, 8);
    cr_assert_eq(t->nbytes, 30081024); /* 576*49152/32 blocks * 34 B */
    /* The gguf Python package puts this tensor's data at absolute offset
     * 1785664; read those bytes independently and compare. */
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t head[64];
    cr_assert_eq(fseek(f, 1785664, SEEK_SET), 0);
    cr_assert_eq(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    cr_assert_eq(memcmp(t->data, head, sizeof head), 0);

    const gguf_tensor *fd = gguf_find_tensor(g, "blk.29.ffn_down.weight");
    cr_assert_not_null(fd);
    cr_assert_eq(fd->ne[0], 1536);
    cr_assert_eq(fd->ne[1], 576);
    cr_assert_eq(fd->type, 3);
    cr_assert_null(gguf_find_tensor(g, "output.weight")); /* tied embeddings */

    gguf_vtype et;
    uint64_t n;
    cr_assert_eq(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n), PV_OK);
    cr_assert_eq(et, GGUF_TYPE_STRING);
    cr_assert_eq(n, 49152);
    cr_assert_eq(gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s), PV_OK);
    cr_assert(gguf_str_eq(s, "<|im_start|>"));
    cr_assert_eq(gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s), PV_OK);
    cr_assert(gguf_str_eq(s, "<|endoftext|>"));
    cr_assert_eq(gguf_arr_str(g, "tokenizer.ggml.tokens", 49152, &s), PV_ERANGE);
    cr_assert_eq(gguf_arr_str(g, "tokenizer.ggml.merges", 0, &s), PV_OK);
    cr_assert(gguf_str_eq(s, "\xc4\xa0 t"));
    cr_assert_eq(gguf_arr_int(g, "tokenizer.ggml.token_type", 0, &v), PV_OK);
    cr_assert_eq(v, 3);
    gguf_close(g);
}
