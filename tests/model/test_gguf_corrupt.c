/* Tests for the GGUF loader on corrupt files: every prefix, single-byte
 * corruption, bad headers, counts, strings, types, nesting, dims, offsets,
 * alignments, duplicates; each a named error, never a crash (files built in
 * memory by gguf_writer.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "pverr.h"

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
