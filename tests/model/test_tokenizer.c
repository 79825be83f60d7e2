/* Tokenizer tests. Expected ids come from the fixtures in
 * tests/fixtures/tokenizer/, produced by scripts/gen_tokenizer_fixtures.py
 * from independent references: llama.cpp (byte-level BPE, SmolLM2's vocab
 * under four pre-tokenizers) and the sentencepiece package (spm-tiny.gguf). */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "pverr.h"
#include "tok_internal.h" /* tok_pretokenize: checked against the regexes */
#include "tokenizer.h"
#include "unicode.h"

#define FIX PIVOT_SOURCE_ROOT "/tests/fixtures/tokenizer/"
#define MODEL PIVOT_SOURCE_ROOT "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

static cJSON *load_json(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    cr_assert_not_null(j, "bad JSON in %s", path);
    return j;
}

typedef struct {
    gguf_file *g;
    tok_vocab *v;
} loaded;

static loaded open_vocab(const char *path) {
    loaded l = {0};
    char err[256];
    cr_assert_eq(gguf_open(path, &l.g, err, sizeof err), PV_OK, "%s", err);
    cr_assert_eq(tok_load(l.g, &l.v, err, sizeof err), PV_OK, "%s", err);
    gguf_close(l.g); /* the vocabulary must not depend on the file */
    l.g = NULL;
    return l;
}

static loaded open_smollm(void) {
    if (access(MODEL, R_OK) != 0)
        cr_skip_test("model file %s absent", MODEL);
    return open_vocab(MODEL);
}

/* Encode s and return a malloc'ed id array; *n receives the count. */
static int32_t *encode(const tok_vocab *v, const char *s, size_t len, int special, int *n) {
    int need = tok_encode(v, s, len, special, NULL, 0);
    cr_assert_geq(need, 0, "tok_encode failed: %d", need);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(need + 1));
    cr_assert_eq(tok_encode(v, s, len, special, ids, need), need);
    *n = need;
    return ids;
}

/* Compare our ids to a JSON array; returns 1 when equal. */
static int same_ids(const int32_t *ids, int n, const cJSON *ref) {
    if (cJSON_GetArraySize(ref) != n)
        return 0;
    for (int i = 0; i < n; i++)
        if (cJSON_GetArrayItem(ref, i)->valueint != ids[i])
            return 0;
    return 1;
}

static void check_fixture(const tok_vocab *v, const cJSON *strings, const cJSON *ids,
                          const char *label) {
    int total = cJSON_GetArraySize(strings), agree = 0;
    cr_assert_eq(cJSON_GetArraySize(ids), total);
    for (int i = 0; i < total; i++) {
        const char *s = cJSON_GetArrayItem(strings, i)->valuestring;
        int n;
        int32_t *got = encode(v, s, strlen(s), 0, &n);
        if (same_ids(got, n, cJSON_GetArrayItem(ids, i))) {
            agree++;
        } else {
            char *want = cJSON_PrintUnformatted(cJSON_GetArrayItem(ids, i));
            fprintf(stderr, "[%s] mismatch on %d \"%s\": want %s, got", label, i, s, want);
            for (int k = 0; k < n; k++)
                fprintf(stderr, " %d", got[k]);
            fprintf(stderr, "\n");
            free(want);
        }
        free(got);
    }
    fprintf(stderr, "[%s] %d/%d fixture strings match the reference\n", label, agree, total);
    cr_expect_eq(agree, total, "[%s] %d/%d strings match", label, agree, total);
}

static void bpe_fixture(const char *pre) {
    loaded l = open_smollm();
    cJSON *j = load_json(FIX "bpe.json");
    if (strcmp(pre, "smollm") != 0)
        cr_assert_eq(tok_set_pretokenizer(l.v, pre), PV_OK);
    cJSON *ids = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ids"), pre);
    cr_assert_not_null(ids);
    cr_assert_geq(cJSON_GetArraySize(ids), 50);
    check_fixture(l.v, cJSON_GetObjectItem(j, "strings"), ids, pre);
    cJSON_Delete(j);
    tok_free(l.v);
}

Test(bpe, smollm_matches_llama_cpp) { bpe_fixture("smollm"); }
Test(bpe, llama3_matches_llama_cpp) { bpe_fixture("llama-bpe"); }
Test(bpe, qwen2_matches_llama_cpp) { bpe_fixture("qwen2"); }
Test(bpe, gpt2_matches_llama_cpp) { bpe_fixture("gpt-2"); }

/* Pre-tokenizer pieces against the `regex` package running the original
 * patterns; needs no model file. */
static void split_fixture(const char *pre) {
    cJSON *j = load_json(FIX "bpe.json");
    cJSON *strs = cJSON_GetObjectItem(j, "strings");
    cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "splits"), pre);
    cr_assert_not_null(want);
    int total = cJSON_GetArraySize(strs), agree = 0;
    for (int i = 0; i < total; i++) {
        const char *s = cJSON_GetArrayItem(strs, i)->valuestring;
        cJSON *w = cJSON_GetArrayItem(want, i);
        tok_spans sp = {0};
        cr_assert_eq(tok_pretokenize(tok_pre_from_name(pre, strlen(pre)), s, strlen(s), &sp),
                     PV_OK);
        int ok = (int)sp.n == cJSON_GetArraySize(w);
        size_t start = 0;
        for (size_t k = 0; ok && k < sp.n; k++) {
            const char *piece = cJSON_GetArrayItem(w, (int)k)->valuestring;
            ok = sp.end[k] - start == strlen(piece) && !memcmp(s + start, piece, strlen(piece));
            start = sp.end[k];
        }
        if (ok)
            agree++;
        else
            fprintf(stderr, "[%s split] mismatch on %d \"%s\"\n", pre, i, s);
        free(sp.end);
    }
    fprintf(stderr, "[%s split] %d/%d strings split as the regex does\n", pre, agree, total);
    cr_expect_eq(agree, total);
    cJSON_Delete(j);
}

Test(pretok, smollm_matches_regex) { split_fixture("smollm"); }
Test(pretok, llama3_matches_regex) { split_fixture("llama-bpe"); }
Test(pretok, qwen2_matches_regex) { split_fixture("qwen2"); }
Test(pretok, gpt2_matches_regex) { split_fixture("gpt-2"); }

Test(bpe, special_tokens_only_with_parse_special) {
    loaded l = open_smollm();
    cJSON *j = load_json(FIX "bpe.json");
    cJSON *sp = cJSON_GetObjectItem(j, "special");
    cJSON *strs = cJSON_GetObjectItem(sp, "strings"), *ids = cJSON_GetObjectItem(sp, "ids");
    for (int i = 0; i < cJSON_GetArraySize(strs); i++) {
        const char *s = cJSON_GetArrayItem(strs, i)->valuestring;
        int n;
        int32_t *got = encode(l.v, s, strlen(s), 1, &n);
        cr_expect(same_ids(got, n, cJSON_GetArrayItem(ids, i)), "parse_special on \"%s\"", s);
        free(got);
        /* Without parse_special no control token may appear. */
        got = encode(l.v, s, strlen(s), 0, &n);
        for (int k = 0; k < n; k++)
            cr_expect_gt(got[k], 16, "control token %d from plain text \"%s\"", got[k], s);
        free(got);
    }
    int32_t im_start = tok_lookup(l.v, "<|im_start|>", 12);
    cr_assert_eq(im_start, 1);
    cJSON_Delete(j);
    tok_free(l.v);
}

static char *decode_all(const tok_vocab *v, const int32_t *ids, int n, int special, size_t *len) {
    size_t cap = 16, o = 0;
    char *out = malloc(cap);
    for (int i = 0; i < n; i++) {
        int k = tok_piece(v, ids[i], special, NULL, 0);
        cr_assert_geq(k, 0);
        while (o + (size_t)k + 1 > cap)
            out = realloc(out, cap *= 2);
        cr_assert_eq(tok_piece(v, ids[i], special, out + o, k), k);
        o += (size_t)k;
    }
    out[o] = 0;
    *len = o;
    return out;
}

Test(bpe, round_trip) {
    loaded l = open_smollm();
    cJSON *j = load_json(FIX "bpe.json");
    cJSON *strs = cJSON_GetObjectItem(j, "strings");
    /* Invalid UTF-8 is tokenized bytewise and must survive too. */
    const char *extra[] = {"\xc3( invalid \xc3 bytes \xe2\x82", "\x80\x80\x80", "a\0b"};
    size_t extra_len[] = {strlen(extra[0]), 3, 3};
    int total = cJSON_GetArraySize(strs);
    for (int i = 0; i < total + 3; i++) {
        const char *s = i < total ? cJSON_GetArrayItem(strs, i)->valuestring : extra[i - total];
        size_t len = i < total ? strlen(s) : extra_len[i - total], dl;
        int n;
        int32_t *ids = encode(l.v, s, len, 0, &n);
        char *d = decode_all(l.v, ids, n, 0, &dl);
        cr_expect(dl == len && memcmp(d, s, len) == 0, "round trip of string %d", i);
        free(ids), free(d);
    }
    cJSON_Delete(j);
    tok_free(l.v);
}

Test(bpe, encode_capacity_and_errors) {
    loaded l = open_smollm();
    const char *s = "Hello world, this is a test";
    int full = tok_encode(l.v, s, strlen(s), 0, NULL, 0);
    cr_assert_gt(full, 3);
    int32_t all[64], part[3];
    cr_assert_eq(tok_encode(l.v, s, strlen(s), 0, all, 64), full);
    cr_assert_eq(tok_encode(l.v, s, strlen(s), 0, part, 3), full, "returns the total needed");
    cr_assert_arr_eq(part, all, sizeof part);
    cr_assert_eq(tok_encode(l.v, NULL, 5, 0, NULL, 0), PV_EINVAL);
    cr_assert_eq(tok_encode(l.v, "", 0, 0, NULL, 0), 0);
    char b[8];
    cr_assert_eq(tok_piece(l.v, -1, 0, b, 8), PV_EINVAL);
    cr_assert_eq(tok_piece(l.v, tok_n_vocab(l.v), 0, b, 8), PV_EINVAL);
    /* Control tokens: text only when render_special. */
    cr_assert_eq(tok_piece(l.v, 2, 0, b, 8), 0);
    cr_assert_eq(tok_piece(l.v, 2, 1, NULL, 0), 10); /* "<|im_end|>" */
    /* tok_piece_str cuts to the buffer and terminates (review: a 256-byte
     * piece overran a caller's 256-byte buffer) */
    char s4[4] = "xxx";
    cr_assert_eq(tok_piece_str(l.v, 2, 1, s4, sizeof s4), 3);
    cr_assert_str_eq(s4, "<|i");
    cr_assert_eq(tok_piece_str(l.v, -1, 1, s4, sizeof s4), 0);
    cr_assert_str_eq(s4, "");
    char one[1] = "";
    cr_assert_eq(tok_piece_str(l.v, 2, 1, one, 1), 0);
    tok_free(l.v);
}

Test(bpe, metadata_and_eog) {
    loaded l = open_smollm();
    cr_assert_eq(tok_n_vocab(l.v), 49152);
    cr_assert_eq(tok_bos(l.v), 1);
    cr_assert_eq(tok_eos(l.v), 2);
    cr_assert_eq(tok_add_bos(l.v), 0);
    int32_t im_end = tok_lookup(l.v, "<|im_end|>", 10);
    cr_assert_eq(im_end, 2);
    cr_assert(tok_is_eog(l.v, im_end));
    cr_assert(tok_is_eog(l.v, tok_eos(l.v)));
    cr_assert(tok_is_eog(l.v, tok_lookup(l.v, "<|endoftext|>", 13)));
    cr_assert_not(tok_is_eog(l.v, tok_lookup(l.v, "<|im_start|>", 12)));
    cr_assert_not(tok_is_eog(l.v, tok_lookup(l.v, "Hello", 5)));
    cr_assert_not(tok_is_eog(l.v, -1));
    tok_free(l.v);
}

/* Streams ids through the decoder; every chunk must be valid UTF-8 and the
 * chunks must add up to want. Returns how many pushes emitted nothing. */
static int stream_check(const tok_vocab *v, const int32_t *ids, int n, const char *want,
                        size_t want_len) {
    tok_stream *st = tok_stream_new(v, 0);
    cr_assert_not_null(st);
    char acc[1024], chunk[64];
    size_t o = 0;
    int held = 0;
    for (int i = 0; i <= n; i++) {
        int k = i < n ? tok_stream_push(st, ids[i], chunk, sizeof chunk)
                      : tok_stream_flush(st, chunk, sizeof chunk);
        cr_assert_geq(k, 0);
        cr_assert_eq(chunk[k], 0, "NUL-terminated");
        cr_assert(uc_is_valid(chunk, (size_t)k), "chunk %d is not valid UTF-8", i);
        held += k == 0;
        cr_assert_lt(o + (size_t)k, sizeof acc);
        memcpy(acc + o, chunk, (size_t)k);
        o += (size_t)k;
    }
    tok_stream_free(st);
    cr_assert_eq(o, want_len);
    cr_assert_arr_eq(acc, want, want_len);
    return held;
}

Test(stream, emoji_split_across_tokens) {
    loaded l = open_smollm();
    const char *s = "Family: \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 and \xF0\x9F\xA4\x97!";
    int n;
    int32_t *ids = encode(l.v, s, strlen(s), 0, &n);
    /* The test is only meaningful if some token ends inside a character. */
    int split = 0;
    for (int i = 0; i < n; i++) {
        char b[64];
        int k = tok_piece(l.v, ids[i], 0, b, sizeof b);
        split += !uc_is_valid(b, (size_t)k);
    }
    cr_assert_gt(split, 0, "no token splits a character; pick another string");
    int held = stream_check(l.v, ids, n, s, strlen(s));
    cr_assert_gt(held, 0, "the decoder must hold back partial characters");
    free(ids);
    tok_free(l.v);
}

Test(stream, invalid_bytes_become_replacement) {
    loaded l = open_smollm();
    /* byte-level tokens for a lone continuation byte, 'a', and a truncated
     * 3-byte lead. */
    char t1[4], t2[4], t3[4];
    t1[uc_encode(uc_byte_to_cp(0x80), t1)] = 0;
    t2[uc_encode(uc_byte_to_cp('a'), t2)] = 0;
    t3[uc_encode(uc_byte_to_cp(0xE2), t3)] = 0;
    int32_t ids[3] = {tok_lookup(l.v, t1, strlen(t1)), tok_lookup(l.v, t2, strlen(t2)),
                      tok_lookup(l.v, t3, strlen(t3))};
    for (int i = 0; i < 3; i++)
        cr_assert_geq(ids[i], 0);
    const char *want = "\xEF\xBF\xBD" "a" "\xEF\xBF\xBD";
    stream_check(l.v, ids, 3, want, strlen(want));
    /* A too-small buffer reports PV_ESPACE and loses nothing. */
    tok_stream *st = tok_stream_new(l.v, 1);
    char small[2], big[32];
    int32_t im_end = 2;
    cr_assert_eq(tok_stream_push(st, im_end, small, sizeof small), PV_ESPACE);
    cr_assert_eq(tok_stream_push(st, im_end, big, sizeof big), 10);
    cr_assert_str_eq(big, "<|im_end|>");
    tok_stream_free(st);
    tok_free(l.v);
}

Test(spm, matches_sentencepiece) {
    loaded l = open_vocab(FIX "spm-tiny.gguf");
    cJSON *j = load_json(FIX "spm.json");
    cJSON *strs = cJSON_GetObjectItem(j, "strings");
    check_fixture(l.v, strs, cJSON_GetObjectItem(j, "ids"), "sentencepiece");
    /* Decoding gives the text back with the space prefix SentencePiece adds. */
    for (int i = 0; i < cJSON_GetArraySize(strs); i++) {
        const char *s = cJSON_GetArrayItem(strs, i)->valuestring;
        int n;
        size_t dl;
        int32_t *ids = encode(l.v, s, strlen(s), 0, &n);
        char *d = decode_all(l.v, ids, n, 0, &dl);
        if (*s)
            cr_expect(dl == strlen(s) + 1 && d[0] == ' ' && memcmp(d + 1, s, dl - 1) == 0,
                      "round trip of \"%s\" gave \"%s\"", s, d);
        free(ids), free(d);
    }
    cr_assert_eq(tok_add_bos(l.v), 1);
    cr_assert_eq(tok_bos(l.v), 1);
    cr_assert(tok_is_eog(l.v, 2));
    cr_assert_eq(tok_set_pretokenizer(l.v, "qwen2"), PV_EINVAL);
    /* Characters outside the vocabulary fall back to <0xXX> byte tokens. */
    int n;
    int32_t *ids = encode(l.v, "\xE2\x82\xAC", 3, 0, &n); /* the euro sign */
    cr_assert_eq(n, 4, "▁ + three byte tokens");
    cr_assert_eq(ids[1], tok_lookup(l.v, "<0xE2>", 6));
    cr_assert_eq(ids[2], tok_lookup(l.v, "<0x82>", 6));
    cr_assert_eq(ids[3], tok_lookup(l.v, "<0xAC>", 6));
    free(ids);
    cJSON_Delete(j);
    tok_free(l.v);
}

Test(spm, control_token_with_parse_special) {
    loaded l = open_vocab(FIX "spm-tiny.gguf");
    int n;
    int32_t *ids = encode(l.v, "<s>", 3, 1, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], tok_bos(l.v));
    free(ids);
    ids = encode(l.v, "<s>", 3, 0, &n);
    cr_assert_gt(n, 1);
    for (int k = 0; k < n; k++)
        cr_assert_neq(ids[k], tok_bos(l.v));
    free(ids);
    tok_free(l.v);
}

/* Unicode facts (UnicodeData.txt, GPT-2's bytes_to_unicode). */
Test(unicode, categories_and_byte_alphabet) {
    cr_assert_eq(uc_flags('a'), UC_LETTER);
    cr_assert_eq(uc_flags(0x00E9), UC_LETTER);  /* é */
    cr_assert_eq(uc_flags(0x65E5), UC_LETTER);  /* 日 */
    cr_assert_eq(uc_flags(0x0301), 0u);         /* combining acute: Mn */
    cr_assert_eq(uc_flags(0x00B2), UC_NUMBER);  /* ² : No */
    cr_assert_eq(uc_flags(0x0663), UC_NUMBER);  /* Arabic-Indic three: Nd */
    cr_assert_eq(uc_flags(0x2167), UC_NUMBER);  /* Roman numeral eight: Nl */
    cr_assert_eq(uc_flags(0x3000), UC_SPACE);
    cr_assert_eq(uc_flags(0x00A0), UC_SPACE);
    cr_assert_eq(uc_flags(0x200B), 0u); /* zero width space is Cf, not White_Space */
    cr_assert_eq(uc_flags(0x1F600), 0u);
    cr_assert_eq(uc_byte_to_cp(' '), 0x120u);  /* 'Ġ' */
    cr_assert_eq(uc_byte_to_cp('\n'), 0x10Au); /* 'Ċ' */
    cr_assert_eq(uc_byte_to_cp(0xAD), 0x143u);
    cr_assert_eq(uc_byte_to_cp('A'), (uint32_t)'A');
    for (int b = 0; b < 256; b++)
        cr_assert_eq(uc_cp_to_byte(uc_byte_to_cp((uint8_t)b)), b);
    uint32_t cp;
    cr_assert_eq(uc_decode("\xC0\xAF", 2, &cp), 1); /* overlong '/' */
    cr_assert_eq(cp, UC_INVALID);
    cr_assert_eq(uc_decode("\xED\xA0\x80", 3, &cp), 1); /* surrogate */
    cr_assert_eq(cp, UC_INVALID);
    cr_assert_eq(uc_decode("\xF0\x9F\x98\x80", 4, &cp), 4);
    cr_assert_eq(cp, 0x1F600u);
}

/* Deterministic random strings built from pieces that stress the scanners
 * (multi-byte characters, digits, spaces, newlines, apostrophes, stray
 * continuation bytes and truncated leads): encoding must not fail and
 * decoding must give the bytes back, under every pre-tokenizer. */
Test(bpe, random_round_trips) {
    loaded l = open_smollm();
    static const char *const atoms[] = {"a", "Z", " ", "  ", "\t", "\n", "\r\n", "'", "'s",
                                        "'LL", "7", "42", "\xC3\xA9", "e\xCC\x81", "\xE6\x97\xA5",
                                        "\xF0\x9F\x98\x80", "\xE2\x80\x8D", "!", "<|im_start|>",
                                        "\x80", "\xE2\x82", "\xC3", "\xE3\x80\x80", "\xD9\xA3"};
    const char *pres[] = {"smollm", "llama-bpe", "qwen2", "gpt-2"};
    uint32_t x = 12345;
    char s[256];
    for (int p = 0; p < 4; p++) {
        cr_assert_eq(tok_set_pretokenizer(l.v, pres[p]), PV_OK);
        for (int it = 0; it < 300; it++) {
            size_t len = 0;
            int k = (int)((x = x * 1664525u + 1013904223u) >> 28);
            for (int a = 0; a < k; a++) {
                x = x * 1664525u + 1013904223u;
                const char *t = atoms[(x >> 16) % (sizeof atoms / sizeof *atoms)];
                memcpy(s + len, t, strlen(t));
                len += strlen(t);
            }
            int n;
            size_t dl;
            int32_t *ids = encode(l.v, s, len, 0, &n);
            char *d = decode_all(l.v, ids, n, 0, &dl);
            cr_assert(dl == len && memcmp(d, s, len) == 0, "[%s] round trip %d", pres[p], it);
            free(ids), free(d);
        }
    }
    tok_free(l.v);
}
