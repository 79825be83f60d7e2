/* bench_sse: the incremental SSE parser gives the same result however the
 * stream is split into reads, reads line endings, comments, [DONE], usage and
 * error events as servers send them, and turns malformed input into a failure
 * reason, never a crash. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_sse.h"

/* What a parse produced, comparable as a whole. */
typedef struct {
    int rc;
    char err[160];
    int n_chunks, n_text_chunks;
    long prompt_tokens, completion_tokens;
    size_t text_len, n_itl;
    double ttft;
} outcome;

/* Parses `s` fed in pieces of the given sizes (the rest in one last piece),
 * every piece at clock t = 1 (t_send = 0). */
static outcome parse_split(const char *s, size_t len, const size_t *cuts, int n_cuts, int chat) {
    bench_result res;
    bench_result_init(&res);
    bench_sse *p = bench_sse_new(&res, chat, 0);
    cr_assert(p);
    outcome o = {0};
    size_t at = 0;
    for (int i = 0; i <= n_cuts && !o.rc; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        o.rc = bench_sse_feed(p, s + at, end - at, 1.0);
        at = end;
    }
    if (!o.rc) o.rc = bench_sse_finish(p);
    snprintf(o.err, sizeof o.err, "%s", bench_sse_error(p));
    o.n_chunks = res.n_chunks;
    o.n_text_chunks = res.n_text_chunks;
    o.prompt_tokens = res.prompt_tokens;
    o.completion_tokens = res.completion_tokens;
    o.text_len = res.text_len;
    o.n_itl = res.n_itl;
    o.ttft = res.ttft;
    bench_sse_free(p);
    bench_result_release(&res);
    return o;
}

static outcome parse(const char *s, int chat) { return parse_split(s, strlen(s), NULL, 0, chat); }

static void expect_same(outcome a, outcome b, const char *what) {
    cr_expect_eq(a.rc, b.rc, "%s: rc", what);
    cr_expect_str_eq(a.err, b.err, "%s: err", what);
    cr_expect_eq(a.n_chunks, b.n_chunks, "%s: chunks", what);
    cr_expect_eq(a.n_text_chunks, b.n_text_chunks, "%s: text chunks", what);
    cr_expect_eq(a.prompt_tokens, b.prompt_tokens, "%s: prompt tokens", what);
    cr_expect_eq(a.completion_tokens, b.completion_tokens, "%s: completion tokens", what);
    cr_expect_eq(a.text_len, b.text_len, "%s: text", what);
    cr_expect_eq(a.n_itl, b.n_itl, "%s: itl", what);
    cr_expect_eq(a.ttft, b.ttft, "%s: ttft", what);
}

/* A stream with everything in it: a comment, event/id fields, a role-only
 * chat-style chunk, text chunks, a finish chunk without text, the usage
 * chunk, [DONE]; and CRLF on some lines. */
static const char STREAM[] =
    ": keep-alive comment\n"
    "event: message\nid: 1\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"\"}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"Hello\"}]}\r\n\r\n"
    "data:{\"choices\":[{\"index\":0,\"text\":\" wor\"}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"ld\"}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4}}\n\n"
    "data: [DONE]\n\n";

Test(bench_sse, one_shot) {
    outcome o = parse(STREAM, 0);
    cr_expect_eq(o.rc, 0, "%s", o.err);
    cr_expect_str_eq(o.err, "");
    cr_expect_eq(o.n_chunks, 5);      /* every chunk with non-empty choices */
    cr_expect_eq(o.n_text_chunks, 3); /* of those, with text */
    cr_expect_eq(o.text_len, strlen("Hello world"));
    cr_expect_eq(o.n_itl, 4);
    cr_expect_eq(o.prompt_tokens, 7);
    cr_expect_eq(o.completion_tokens, 4);
    cr_expect_eq(o.ttft, 1.0);
}

Test(bench_sse, every_split_gives_the_same_result) {
    size_t len = strlen(STREAM);
    outcome whole = parse(STREAM, 0);
    for (size_t cut = 0; cut <= len; cut++) {
        char what[32];
        snprintf(what, sizeof what, "split at %zu", cut);
        expect_same(parse_split(STREAM, len, &cut, 1, 0), whole, what);
    }
    /* byte by byte */
    size_t *cuts = malloc(len * sizeof *cuts);
    cr_assert(cuts);
    for (size_t i = 0; i < len; i++) cuts[i] = i + 1;
    expect_same(parse_split(STREAM, len, cuts, (int)len, 0), whole, "byte by byte");
    /* every pair of cuts: three reads */
    for (size_t a = 0; a <= len; a += 3)
        for (size_t b = a; b <= len; b += 5) {
            size_t two[2] = {a, b};
            expect_same(parse_split(STREAM, len, two, 2, 0), whole, "three reads");
        }
    free(cuts);
}

Test(bench_sse, line_endings_lf_crlf_cr) {
    const char *lf = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n";
    const char *crlf =
        "data: {\"choices\":[{\"text\":\"a\"}]}\r\n\r\ndata: {\"choices\":[{\"text\":\"b\"}]}\r\n\r\n";
    const char *cr = "data: {\"choices\":[{\"text\":\"a\"}]}\r\rdata: {\"choices\":[{\"text\":\"b\"}]}\r\r";
    outcome a = parse(lf, 0);
    cr_expect_eq(a.rc, 0);
    cr_expect_eq(a.n_text_chunks, 2);
    expect_same(parse(crlf, 0), a, "CRLF");
    expect_same(parse(cr, 0), a, "CR");
    /* a CRLF split between reads */
    size_t cut = strlen("data: {\"choices\":[{\"text\":\"a\"}]}\r");
    expect_same(parse_split(crlf, strlen(crlf), &cut, 1, 0), a, "CR|LF");
}

Test(bench_sse, several_events_in_one_read_share_its_clock) {
    bench_result res;
    bench_result_init(&res);
    res.t_send = 10.0;
    bench_sse *p = bench_sse_new(&res, 0, 0);
    const char *c = "data: {\"choices\":[{\"text\":\"x\"}]}\n\n";
    cr_assert_eq(bench_sse_feed(p, c, strlen(c), 10.5), 0);
    cr_assert_eq(bench_sse_feed(p, c, strlen(c), 10.625), 0);
    char two[256];
    snprintf(two, sizeof two, "%s%s", c, c);
    cr_assert_eq(bench_sse_feed(p, two, strlen(two), 11.0), 0);
    /* a chunk completed by a later read gets that read's clock */
    cr_assert_eq(bench_sse_feed(p, c, 10, 11.5), 0);
    cr_assert_eq(bench_sse_feed(p, c + 10, strlen(c) - 10, 11.75), 0);
    cr_assert_eq(bench_sse_finish(p), 0);
    cr_expect_eq(res.ttft, 0.5);
    cr_assert_eq(res.n_itl, 4);
    cr_expect_eq(res.itl[0], 0.125);
    cr_expect_eq(res.itl[1], 0.375);
    cr_expect_eq(res.itl[2], 0.0);
    cr_expect_eq(res.itl[3], 0.75);
    cr_expect_eq(res.n_chunks, 5);
    bench_sse_free(p);
    bench_result_release(&res);
}

Test(bench_sse, chat_deltas) {
    const char *s =
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        "data: [DONE]\n\n";
    outcome o = parse(s, 1);
    cr_expect_eq(o.rc, 0);
    cr_expect_eq(o.n_chunks, 4); /* the role-only chunk is the first token's time, as in vLLM */
    cr_expect_eq(o.n_text_chunks, 2);
    cr_expect_eq(o.text_len, 8);
    cr_expect_eq(o.completion_tokens, -1); /* no usage: the report counts text chunks */
    /* read as completions, the same stream has no text */
    cr_expect_eq(parse(s, 0).n_text_chunks, 0);
}

Test(bench_sse, done_and_last_line_without_newline) {
    outcome o = parse("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]", 0);
    cr_expect_eq(o.rc, 0);
    cr_expect_eq(o.n_chunks, 1);
    o = parse("data: {\"choices\":[{\"text\":\"a\"}]}", 0); /* parsed by finish */
    cr_expect_eq(o.rc, 0);
    cr_expect_eq(o.n_chunks, 1);
}

Test(bench_sse, usage_counts) {
    outcome o = parse("data: {\"choices\":[{\"text\":\"a\"}],\"usage\":{\"prompt_tokens\":3,"
                      "\"completion_tokens\":9}}\n\n", 0);
    cr_expect_eq(o.prompt_tokens, 3);
    cr_expect_eq(o.completion_tokens, 9);
    /* nonsense counts are ignored, not converted (a double out of long's range
     * is undefined behaviour) */
    o = parse("data: {\"choices\":[{\"text\":\"a\"}]}\n\n"
              "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-4,\"completion_tokens\":1e300}}\n\n"
              "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":\"7\",\"completion_tokens\":null}}\n\n"
              "data: {\"choices\":[],\"usage\":[1,2]}\n\n", 0);
    cr_expect_eq(o.rc, 0);
    cr_expect_eq(o.prompt_tokens, -1);
    cr_expect_eq(o.completion_tokens, -1);
}

Test(bench_sse, malformed_chunks_fail_with_a_reason) {
    outcome o = parse("data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {not json\n\n", 0);
    cr_expect_eq(o.rc, -1);
    cr_expect_str_eq(o.err, "malformed SSE chunk: {not json");
    cr_expect_eq(o.n_chunks, 1);
    const char *bad[] = {"data: 5\n", "data: [1,2]\n", "data: \"str\"\n", "data:\n", "data: \n",
                         "data: {\"choices\":[{\"text\":\"a\"}]\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o = parse(bad[i], 0);
        cr_expect_eq(o.rc, -1, "%s", bad[i]);
        cr_expect(!strncmp(o.err, "malformed SSE chunk: ", 21), "%s -> %s", bad[i], o.err);
    }
    /* the snippet is cut at 40 bytes */
    char longbad[200];
    memset(longbad, 'x', sizeof longbad);
    memcpy(longbad, "data: ", 6);
    longbad[198] = '\n';
    longbad[199] = 0;
    o = parse(longbad, 0);
    cr_expect_eq(strlen(o.err), strlen("malformed SSE chunk: ") + 40);
}

Test(bench_sse, missing_data_prefix_is_ignored) {
    /* per the SSE spec a line without "data:" is another field (or none):
     * nothing with choices arrives, so the stream fails at its end */
    outcome o = parse("{\"choices\":[{\"text\":\"a\"}]}\n\nDATA: {\"choices\":[{\"text\":\"a\"}]}\n\n", 0);
    cr_expect_eq(o.rc, -1);
    cr_expect_str_eq(o.err, "stream ended without any chunk with choices");
    o = parse("", 0);
    cr_expect_str_eq(o.err, "stream ended without any chunk with choices");
    o = parse("data: {\"choices\":[],\"usage\":{\"completion_tokens\":3}}\n\ndata: [DONE]\n\n", 0);
    cr_expect_str_eq(o.err, "stream ended without any chunk with choices");
}

Test(bench_sse, error_events) {
    outcome o = parse("data: {\"choices\":[{\"text\":\"a\"}]}\n\n"
                      "event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n", 0);
    cr_expect_eq(o.rc, -1);
    cr_expect_str_eq(o.err, "error in stream: overloaded");
    o = parse("data: {\"error\":\"plain string\"}\n\n", 0);
    cr_expect_str_eq(o.err, "error in stream: plain string");
    o = parse("data: {\"error\":{\"code\":1}}\n\n", 0);
    cr_expect_str_eq(o.err, "error in stream: error object");
}

Test(bench_sse, after_a_failure_nothing_more) {
    bench_result res;
    bench_result_init(&res);
    bench_sse *p = bench_sse_new(&res, 0, 0);
    cr_assert_eq(bench_sse_feed(p, "data: {\n", 8, 1), -1);
    const char *ok = "data: {\"choices\":[{\"text\":\"a\"}]}\n";
    cr_expect_eq(bench_sse_feed(p, ok, strlen(ok), 2), -1);
    cr_expect_eq(bench_sse_finish(p), -1);
    cr_expect_eq(res.n_chunks, 0);
    cr_expect_str_eq(bench_sse_error(p), "malformed SSE chunk: {");
    bench_sse_free(p);
    bench_sse_free(NULL);
}

Test(bench_sse, line_limit) {
    bench_result res;
    bench_result_init(&res);
    bench_sse *p = bench_sse_new(&res, 0, 32);
    const char *fits = "data: {\"choices\":[{\"text\":\"a\"}]}\n"; /* 32 bytes before LF */
    cr_assert_eq(strlen(fits), 33);
    cr_expect_eq(bench_sse_feed(p, fits, strlen(fits), 1), 0);
    cr_expect_eq(res.n_chunks, 1);
    const char *over = "data: {\"choices\":[{\"text\":\"ab\"}]}\n";
    cr_expect_eq(bench_sse_feed(p, over, strlen(over), 1), -1);
    cr_expect_str_eq(bench_sse_error(p), "SSE line too long");
    bench_sse_free(p);
    bench_result_release(&res);
}

/* Random bytes and random mixes of valid pieces: always 0 or -1 with a
 * reason, and the split never matters. */
Test(bench_sse, garbage_never_crashes) {
    static const char *pieces[] = {"data: ", "data:", "{", "}", "\"choices\":", "[", "]", ",",
                                   "{\"text\":\"x\"}", "\n", "\r", "\r\n", ": c\n", "[DONE]",
                                   "\"error\":", "\"usage\":{\"completion_tokens\":2}", "\xff",
                                   "event: e\n", "\"", "\\", "null", "1e999"};
    uint64_t s = 12345;
    char buf[600];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        while (len < 500) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            if (iter % 3 == 0) {
                buf[len++] = (char)(s >> 56);
            } else {
                const char *pc = pieces[(s >> 33) % (sizeof pieces / sizeof *pieces)];
                memcpy(buf + len, pc, strlen(pc));
                len += strlen(pc);
            }
        }
        size_t cut = (size_t)(s >> 20) % (len + 1);
        outcome a = parse_split(buf, len, NULL, 0, iter & 1);
        outcome b = parse_split(buf, len, &cut, 1, iter & 1);
        cr_assert(a.rc == 0 || (a.rc == -1 && a.err[0]), "iteration %d", iter);
        expect_same(a, b, "garbage split");
    }
}

/* ---- whole bodies ---- */

Test(bench_sse, http_error_reasons) {
    char err[160];
    bench_http_error_reason(500, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", err,
                            sizeof err);
    cr_expect_str_eq(err, "HTTP 500 boom");
    bench_http_error_reason(400, "{\"error\":\"bad kv_policy\"}", err, sizeof err);
    cr_expect_str_eq(err, "HTTP 400 bad kv_policy");
    bench_http_error_reason(502, "<html>Bad Gateway</html>", err, sizeof err);
    cr_expect_str_eq(err, "HTTP 502 <html>Bad Gateway</html>");
    bench_http_error_reason(503, NULL, err, sizeof err);
    cr_expect_str_eq(err, "HTTP 503 ");
    char big[300];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = 0;
    bench_http_error_reason(500, big, err, sizeof err);
    cr_expect_eq(strlen(err), strlen("HTTP 500 ") + 60);
    char tiny[8];
    bench_http_error_reason(500, "{\"error\":{\"message\":\"long message\"}}", tiny, sizeof tiny);
    cr_expect_str_eq(tiny, "HTTP 50"); /* truncated, terminated */
}

Test(bench_sse, whole_bodies) {
    bench_result r;
    char err[160];
    bench_result_init(&r);
    cr_expect_eq(bench_parse_body(&r, "{\"choices\":[{\"text\":\"xxxxx\"}],\"usage\":"
                                      "{\"prompt_tokens\":7,\"completion_tokens\":5}}", 0, err,
                                  sizeof err), 0);
    cr_expect(r.n_chunks == 1 && r.n_text_chunks == 1 && r.text_len == 5);
    cr_expect(r.prompt_tokens == 7 && r.completion_tokens == 5);
    bench_result_init(&r);
    cr_expect_eq(bench_parse_body(&r, "{\"choices\":[{\"message\":{\"role\":\"assistant\","
                                      "\"content\":\"abc\"}}]}", 1, err, sizeof err), 0);
    cr_expect_eq(r.text_len, 3);
    const char *bad[] = {"", "[]", "{", "null", "42", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bench_result_init(&r);
        err[0] = 0;
        cr_expect_eq(bench_parse_body(&r, bad[i], 0, err, sizeof err), -1);
        cr_expect_str_eq(err, "malformed JSON response");
    }
}
