/* srv_config: what `pivot serve` is told (cli/cmd_serve.c fills it from
 * flags and PIVOT_* variables). Plain data, no behaviour. */
#ifndef PIVOT_SRV_CONFIG_H
#define PIVOT_SRV_CONFIG_H

#include <stddef.h>

#include "llama.h"

typedef struct {
    const char *model_path;
    const char *host;
    int port;
    const char *api_key;   /* NULL: no auth */
    const char *kv_policy; /* default policy name */
    const char *device;    /* --device auto|cpu|cuda (NULL: auto) */
    size_t kv_memory;      /* bytes the KV pool may reserve */
    int max_seqs;          /* --max-batch: sequences decoded together */
    int max_batch_tokens;  /* tokens per llm_decode step */
    int prefill_chunk;     /* prompt tokens one sequence adds per step */
    int max_queue;         /* waiting requests before 429 */
    int threads;
    int ctx;               /* tokens per sequence (0: the model's training context) */
    int kv_elastic;        /* --kv-elastic: requests may be compressed under pressure */
    int prefix_cache;      /* --prefix-cache on|off: automatic prefix caching */
    int attn_split;        /* --attn-split off|N (llm_ctx_params.attn_split) */
    double drain_timeout;  /* seconds */
    size_t max_body;
    int max_conns;
    double idle_timeout, request_timeout; /* seconds */
    int no_webui;          /* --no-webui: no page at "/" (the JSON endpoints stay) */
    int webui_show_text;   /* --webui-show-text: the KV map shows every request's text */
    /* eng_config.rank_heads: how the engine ranks the KV heads for the
     * policies' `heads` knob (cmd_serve passes ev_heads_rank; NULL: none) */
    int (*rank_heads)(const llm_model *m, int threads, int *rank, char *err, size_t errlen);
} srv_config;

#endif
