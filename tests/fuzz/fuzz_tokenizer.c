/* libFuzzer target: tokenizers, bytes -> tok_encode -> streaming decode.
 *
 * Vocabularies: the default model's byte-level BPE (SmolLM2, when
 * PIVOT_FUZZ_BPE names it or models/ has it) and the SentencePiece fixture
 * tests/fixtures/tokenizer/spm-tiny.gguf. The first input byte picks the
 * vocabulary and parse_special; the rest is the text.
 *
 * Checked besides memory safety: every id is inside the vocabulary, the
 * size query agrees with the real call, the streaming decoder emits valid
 * UTF-8 only, and for byte-level BPE without special-token parsing the
 * decode of the encode of valid UTF-8 is the input again (that tokenizer
 * is lossless by construction, for the bytes its vocabulary covers). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

#ifndef PIVOT_SOURCE_ROOT
#define PIVOT_SOURCE_ROOT "."
#endif

typedef struct {
    gguf_file *g;
    tok_vocab *v;
    int lossless; /* decode(encode(x)) == x for valid UTF-8 ... */
    /* ... made of bytes the vocabulary has a token for: SmolLM2's lacks
     * some control bytes (0x16, ...), which are then dropped, as llama.cpp
     * does; probed once at start-up */
    unsigned char byte_ok[256];
} vocab;

static vocab vocabs[2];
static int n_vocabs;

static void load(const char *path, int lossless) {
    char err[256];
    vocab *x = &vocabs[n_vocabs];
    if (gguf_open(path, &x->g, err, sizeof err) || tok_load(x->g, &x->v, err, sizeof err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err);
        exit(1);
    }
    gguf_close(x->g); /* the vocabulary copies what it needs */
    x->g = NULL;
    x->lossless = lossless;
    for (int b = 0; b < 256; b++) {
        char in = (char)b, out[16];
        int32_t id[4];
        x->byte_ok[b] = tok_encode(x->v, &in, 1, 0, id, 4) == 1 &&
                        tok_piece(x->v, id[0], 0, out, sizeof out) == 1 && out[0] == in;
    }
    n_vocabs++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *bpe = getenv("PIVOT_FUZZ_BPE");
    static char def[512];
    snprintf(def, sizeof def, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", PIVOT_SOURCE_ROOT);
    load(bpe && *bpe ? bpe : def, 1);
    load(PIVOT_SOURCE_ROOT "/tests/fixtures/tokenizer/spm-tiny.gguf", 0);
    return 0;
}

/* Length of the valid UTF-8 prefix (no overlongs, surrogates or > U+10FFFF). */
static size_t utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07;
        else return i;
        if (i + k >= n) return i; /* truncated */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += k + 1;
    }
    return i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    const vocab *x = &vocabs[data[0] % n_vocabs];
    int special = (data[0] >> 1) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int need = tok_encode(x->v, text, len, special, NULL, 0);
    if (need < 0) abort(); /* any bytes are tokenizable */
    int32_t *ids = malloc(sizeof *ids * (size_t)(need + 1));
    if (!ids) return 0;
    if (tok_encode(x->v, text, len, special, ids, need) != need) abort();
    int nv = tok_n_vocab(x->v);
    for (int i = 0; i < need; i++)
        if (ids[i] < 0 || ids[i] >= nv) abort();

    /* streaming decode; specials rendered so that the round trip below also
     * holds when the text contains a special token's text */
    size_t cap = len * 4 + 64, got = 0;
    char *out = malloc(cap), piece[512];
    tok_stream *ts = tok_stream_new(x->v, 1);
    if (!out || !ts) abort();
    for (int i = 0; i <= need; i++) {
        int w = i < need ? tok_stream_push(ts, ids[i], piece, sizeof piece)
                         : tok_stream_flush(ts, piece, sizeof piece);
        if (w < 0) abort();
        if (got + (size_t)w > cap) abort(); /* more text out than 4x the bytes in */
        memcpy(out + got, piece, (size_t)w);
        got += (size_t)w;
    }
    tok_stream_free(ts);
    if (utf8_valid((const uint8_t *)out, got) != got) abort(); /* the stream promises UTF-8 */
    int representable = 1;
    for (size_t i = 0; i < len && representable; i++) representable = x->byte_ok[(uint8_t)text[i]];
    if (x->lossless && !special && representable && utf8_valid((const uint8_t *)text, len) == len &&
        (got != len || memcmp(out, text, len))) {
        fprintf(stderr, "fuzz_tokenizer: round trip changed the text (%zu -> %zu bytes)\n", len, got);
        abort();
    }
    free(out);
    free(ids);
    return 0;
}
