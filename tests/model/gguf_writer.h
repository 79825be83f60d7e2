/* gguf_writer (tests only): a small in-memory GGUF writer for the loader's
 * tests (test_gguf.c: valid files and the real model; test_gguf_corrupt.c:
 * corrupt files). Static inline so each test file takes what it uses. */
#ifndef PIVOT_TEST_GGUF_WRITER_H
#define PIVOT_TEST_GGUF_WRITER_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "pverr.h"

/* ---- in-memory GGUF writer ------------------------------------------------ */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} wbuf;

static inline void w_bytes(wbuf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
        cr_assert_not_null(w->b);
    }
    if (n) memcpy(w->b + w->n, p, n);
    w->n += n;
}
static inline void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }
static inline void w_u16(wbuf *w, uint16_t v) { w_bytes(w, &v, 2); }
static inline void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); }
static inline void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }
static inline void w_f32(wbuf *w, float v) { w_bytes(w, &v, 4); }
static inline void w_f64(wbuf *w, double v) { w_bytes(w, &v, 8); }
static inline void w_str(wbuf *w, const char *s) {
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}
static inline void w_hdr(wbuf *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, n_tensors);
    w_u64(w, n_kv);
}
/* Key and value type; the caller writes the value. */
static inline void w_key(wbuf *w, const char *key, uint32_t type) {
    w_str(w, key);
    w_u32(w, type);
}
static inline void w_arr(wbuf *w, const char *key, uint32_t elem, uint64_t n) {
    w_key(w, key, GGUF_TYPE_ARRAY);
    w_u32(w, elem);
    w_u64(w, n);
}
static inline void w_tinfo(wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset) {
    w_str(w, name);
    w_u32(w, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) w_u64(w, ne[i]);
    w_u32(w, type);
    w_u64(w, offset);
}
/* Pads to `align` and appends n data bytes with a recognisable pattern
 * (byte k of the data section is (k * 7 + 3) & 0xff). Returns data start. */
static inline size_t w_data(wbuf *w, size_t align, size_t n) {
    while (w->n % align) w_u8(w, 0);
    size_t start = w->n;
    for (size_t k = 0; k < n; k++) w_u8(w, (uint8_t)(k * 7 + 3));
    return start;
}

static inline int open_buf(const wbuf *w, gguf_file **g, char *err, size_t errlen) {
    return gguf_open_memory(w->b, w->n, g, err, errlen);
}

/* The reference valid file: every scalar type, string arrays, a nested array,
 * an alignment of 64 written as u8, and three tensors of different types. */
#define VALID_NKV 20
static inline size_t make_valid(wbuf *w) {
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

#endif
