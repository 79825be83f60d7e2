/* kvjson: a KV snapshot (engine/eng_snap.h) as the JSON the KV endpoints
 * answer (docs/API.md, "KV map"). Pure formatting; loop thread. */
#ifndef PIVOT_KVJSON_H
#define PIVOT_KVJSON_H

#include <cjson/cJSON.h>

#include "eng_snap.h"
#include "tokenizer.h"

typedef struct {
    const char *id, *status, *policy, *spec;
    const eng_snap *snap; /* NULL: nothing to show yet (waiting, or a cache that cannot say) */
    int scores;           /* add per-head scores (heavy) */
    /* text (--webui-show-text): the tokens' pieces, or NULL */
    const tok_vocab *vocab;
    const int32_t *ids;
    int n_ids;
} kvjson_args;

/* The object of GET /v1/kv/sequences/{id}; NULL when out of memory. */
cJSON *kvjson_sequence(const kvjson_args *a);
/* Appends a run-length encoding of tier[0..n) to buf: "H12L3D1" (H high, L
 * low, D dropped, N not stored). Returns the length written, or -1 when cap
 * is too small (cap must allow 13 bytes per run). */
int kvjson_rle(const uint8_t *tier, int n, char *buf, size_t cap);

#endif
