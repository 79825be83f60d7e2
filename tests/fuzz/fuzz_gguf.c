/* libFuzzer target: the GGUF loader on mutated small model files.
 *
 * gguf_open_memory runs over libFuzzer's exactly-sized buffer, so any read
 * past the end is an ASan report. When the file opens, every metadata value
 * is read back through the typed getters (array elements at both ends),
 * every tensor's first and last byte is touched (they must lie inside the
 * buffer), the tokenizer is built from it, and then the whole model loader
 * (llm_load: architecture keys, shapes, tokenizer, chat template) runs on
 * the same bytes through a memfd, the path the server takes.
 * Seeds: tests/fuzz/make_seeds.py writes a tiny Llama model and the SPM
 * tokenizer fixture is copied in. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"
#include "tokenizer.h"

static volatile uint8_t sink;

static void walk_metadata(const gguf_file *g) {
    int64_t n = gguf_n_kv(g);
    for (int64_t i = 0; i < n; i++) {
        gguf_str k = gguf_key_at(g, (int)i);
        char key[256];
        /* callers look keys up by C string: longer keys or keys with a NUL
         * inside cannot be asked for */
        if (k.len >= sizeof key || memchr(k.ptr, 0, k.len)) continue;
        memcpy(key, k.ptr, k.len);
        key[k.len] = 0;
        if (gguf_find_key(g, key) < 0) abort(); /* a key that was parsed must be found */
        int64_t iv;
        double dv;
        int bv;
        gguf_str sv;
        gguf_vtype et;
        uint64_t an;
        gguf_get_int(g, key, &iv);
        gguf_get_float(g, key, &dv);
        gguf_get_bool(g, key, &bv);
        if (gguf_get_str(g, key, &sv) == 0 && sv.len) sink ^= (uint8_t)(sv.ptr[0] ^ sv.ptr[sv.len - 1]);
        if (gguf_get_arr(g, key, &et, &an) == 0 && an) {
            uint64_t idx[3] = {0, an / 2, an - 1};
            for (int j = 0; j < 3; j++) {
                if (gguf_arr_str(g, key, idx[j], &sv) == 0 && sv.len) sink ^= (uint8_t)sv.ptr[sv.len - 1];
                gguf_arr_int(g, key, idx[j], &iv);
                gguf_arr_float(g, key, idx[j], &dv);
            }
            gguf_arr_int(g, key, an, &iv); /* one past the end: must be refused, not read */
        }
    }
}

static void walk_tensors(const gguf_file *g) {
    int64_t n = gguf_n_tensors(g);
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (!t) abort();
        if (gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
        if (t->nbytes) {
            const uint8_t *d = t->data;
            sink ^= d[0] ^ d[t->nbytes - 1];
        }
    }
}

static void encode_some(const tok_vocab *v) {
    static const char text[] = "Hello, world! <|im_start|> caf\xc3\xa9 \xe2\x96\x81 12345\n\t  x";
    int32_t ids[256];
    for (int special = 0; special < 2; special++) {
        int n = tok_encode(v, text, sizeof text - 1, special, ids, 256);
        for (int i = 0; i < n && i < 256; i++) {
            char buf[64];
            if (ids[i] < 0 || ids[i] >= tok_n_vocab(v)) abort();
            tok_piece(v, ids[i], 1, buf, sizeof buf);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int memfd = -2;
    static char path[64];
    char err[256];
    gguf_file *g = NULL;
    if (gguf_open_memory(data, size, &g, err, sizeof err) != 0) {
        if (g) abort(); /* failure leaves *out NULL */
        return 0;
    }
    walk_metadata(g);
    walk_tensors(g);
    tok_vocab *v = NULL;
    if (tok_load(g, &v, err, sizeof err) == 0) {
        encode_some(v);
        tok_free(v);
    }
    gguf_close(g);

    /* The model loader takes a path (it mmaps the file): hand it a memfd. */
    if (memfd == -2) {
        memfd = memfd_create("fuzz_gguf", 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    if (memfd < 0 || ftruncate(memfd, 0) || pwrite(memfd, data, size, 0) != (ssize_t)size) return 0;
    llm_model *m = NULL;
    if (llm_load(path, &m, err, sizeof err) == 0) {
        const llm_config *c = llm_get_config(m);
        if (c->n_layers <= 0 || c->n_embd <= 0 || c->n_vocab <= 0) abort();
        llm_free(m);
    }
    return 0;
}
