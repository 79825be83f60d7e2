/* Tests for the GGUF loader: valid files built in memory by gguf_writer.h
 * (corrupt ones: test_gguf_corrupt.c); the real model is checked when present. Expected values
 * for the model were confirmed independently with the `gguf` Python package. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "pverr.h"

#include "gguf_writer.h"

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
