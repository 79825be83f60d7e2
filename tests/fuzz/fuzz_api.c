/* libFuzzer target: the JSON request parsers (api/api_req.c) on arbitrary
 * bytes. The first byte picks the parser; the rest is the body. Every call
 * must either succeed or fill an api_error with a 4xx status, and whatever
 * it returns must be freeable (ASan/LSan check the rest). When a request
 * parses, its stop strings also drive the stop matcher over the body so
 * api_stop sees fuzzer-chosen strings too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_err.h"
#include "api_req.h"
#include "api_stop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] % 4;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    api_error e;
    memset(&e, 0, sizeof e);
    if (which < 2) {
        api_request r;
        if (api_parse_request(which ? API_CHAT : API_COMPLETIONS, body, len, &r, &e) == 0) {
            if (r.n_stop > 0) {
                /* the header's contract: out holds n_held + len bytes, and
                 * API_STOP_MAXLEN + len always suffices */
                api_stop st;
                api_stop_init(&st, r.stop, r.n_stop);
                char out[2 * API_STOP_MAXLEN + 8];
                for (size_t i = 0; i < len; i += 7) {
                    size_t n = len - i < 7 ? len - i : 7, n_out = 0;
                    if (api_stop_push(&st, body + i, n, out, &n_out)) break;
                }
                api_stop_flush(&st, out);
            }
            api_request_free(&r);
        } else if (e.status < 400 || e.status > 499) {
            abort(); /* a parse failure must be a client error */
        }
    } else {
        api_tok_request r;
        int rc = which == 2 ? api_parse_tokenize(body, len, &r, &e)
                            : api_parse_detokenize(body, len, &r, &e);
        if (rc == 0) api_tok_request_free(&r);
        else if (e.status < 400 || e.status > 499) abort();
    }
    return 0;
}
