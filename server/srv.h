/* srv: `pivot serve` internals shared by the server's files.
 *
 * Threads. One libuv loop thread does all I/O (accept, llhttp parsing,
 * routing, JSON, writes); one decoder thread (engine.c) owns the model's run
 * state (llm_ctx, KV cache, samplers) and runs the continuous-batching
 * scheduler. They meet only in srv_engine's two mutex-protected queues:
 *   loop -> engine   srv_engine_submit / srv_engine_cancel (engine->mu, condvar)
 *   engine -> loop   per-job output + a "dirty" list (engine->out_mu), with
 *                    uv_async_send as the wake-up only: sends coalesce, so the
 *                    loop drains the whole list every time it wakes.
 *
 * Ownership of a srv_job: created and freed by the loop thread only. After
 * submit the engine reads its request and writes its engine-only fields until
 * it marks it done (engine_done, under out_mu); the loop frees it after
 * draining that final output. A job cancelled while still waiting is unlinked
 * by srv_engine_cancel and freed by the loop at once.
 *
 * Connections (srv_http.c): handles are freed only in their close callbacks;
 * srv_conn_close is the one close path. */
#ifndef PIVOT_SRV_H
#define PIVOT_SRV_H

#include <llhttp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api_err.h"
#include "api_fmt.h"
#include "api_req.h"
#include "api_stop.h"
#include "kv_policy.h"
#include "llama.h"
#include "pvtime.h"
#include "sampler.h"
#include "tokenizer.h"

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
    double drain_timeout;  /* seconds */
    size_t max_body;
    int max_conns;
    double idle_timeout, request_timeout; /* seconds */
} srv_config;

/* ---- growable byte buffer ---- */
typedef struct {
    char *p;
    size_t len, cap;
} srv_buf;
int srv_buf_add(srv_buf *b, const void *d, size_t n);
void srv_buf_free(srv_buf *b);

/* ---- metrics (metrics.c): thread-safe ---- */
typedef struct srv_metrics srv_metrics;
srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, int prompt_tokens, int gen_tokens, double ttft,
                         double e2e, const char *finish);
typedef struct {
    int running, waiting;
    size_t kv_stored, kv_fp16, kv_reserved, kv_capacity;
    size_t pool_used, pool_peak, pool_limit; /* the KV page pool (kv_pool.h) */
    long kv_tokens;
} srv_gauges;
void srv_metrics_set_gauges(srv_metrics *m, const srv_gauges *g);
void srv_metrics_get_gauges(srv_metrics *m, srv_gauges *g);
char *srv_metrics_render(srv_metrics *m, const char *model); /* malloc'ed */

/* ---- jobs ---- */
typedef struct {
    /* set by the loop before submit, read-only afterwards */
    int32_t *prompt;
    int n_prompt;
    int max_new;
    int index; /* choice index in the response */
    /* engine thread only */
    int slot, n_fed, n_gen, finished;
    int32_t next_tok;
    smp_sampler *smp;
    tok_stream *ts;
    api_stop stop;
    kv_usage kv;
    /* engine -> loop, under engine out_mu */
    srv_buf out;
    api_logprob *lp;
    int n_lp, cap_lp, out_tokens;
    const char *finish;
    /* loop only: what it took from the fields above */
    srv_buf got;
    api_logprob *got_lp;
    int n_got_lp, cap_got_lp, got_tokens;
    const char *got_finish;
    int sent_finish;
    size_t text_offset;
} srv_choice;

typedef struct srv_conn srv_conn;
typedef struct srv_job srv_job;

struct srv_job {
    srv_job *next;       /* engine queues (under engine mu / engine thread) */
    srv_job *dirty_next; /* under out_mu */
    int in_dirty;        /* under out_mu */
    int where;           /* under engine mu: SRV_J_* */
    char id[48];
    api_request req;
    int n_choices;
    srv_choice *ch;
    size_t kv_reserve;
    atomic_int cancelled;
    double t_arrive;           /* loop, before submit */
    double t_first, t_end;     /* engine; read by the loop after engine_done */
    int engine_done;           /* under out_mu */
    int err_status;            /* engine failure (with engine_done) */
    char err_msg[200];
    int prompt_tokens;
    char policy_name[24];      /* KV policy preset, for usage.kv_cache */
    kv_policy policy;          /* the request's KV policy (loop sets it before submit) */
    char policy_spec[320];     /* kv_policy_describe(policy), for usage.kv_cache.spec */
    /* loop only */
    srv_conn *conn;
    int done_seen, started;
};
enum { SRV_J_NONE = 0, SRV_J_WAITING, SRV_J_ADMITTED, SRV_J_RUNNING };

void srv_job_free(srv_job *j);

/* ---- engine (engine.c) ---- */
typedef struct srv_engine srv_engine;
enum { SRV_LOADING = 0, SRV_READY = 1, SRV_FAILED = 2 };

/* Starts the decoder thread, which loads the model; `wake` (initialized on
 * the loop thread) is sent when the state changes or output is ready. */
int srv_engine_start(const srv_config *cfg, srv_metrics *met, uv_async_t *wake, srv_engine **out);
/* Tells the thread to finish and joins it; frees everything. Jobs must all
 * have been drained. */
void srv_engine_stop(srv_engine *e);
int srv_engine_state(srv_engine *e);
const char *srv_engine_error(srv_engine *e);
const llm_model *srv_engine_model(srv_engine *e); /* NULL until READY */
int srv_engine_max_ctx(srv_engine *e);
const kv_policy *srv_engine_policy(srv_engine *e); /* valid once READY */
/* Bytes the cache will hold for one sequence of n tokens under policy p
 * (kv_policy_seq_bytes: exact, page rounding included). */
size_t srv_engine_seq_bytes(srv_engine *e, const kv_policy *p, int n_tokens);
/* Whether this server can run a sequence under p (shape, device): 0, or
 * nonzero with the reason in err. Valid once READY. */
int srv_engine_check_policy(srv_engine *e, const kv_policy *p, char *err, size_t errlen);
/* Queues a job (kv_reserve and choices filled). 0 ok; 429 queue full; 400
 * the job can never fit (*msg explains). */
int srv_engine_submit(srv_engine *e, srv_job *j, char *msg, size_t msglen);
/* Cancels a job. Returns 1 when it was still waiting: it is unlinked and the
 * caller frees it; 0: the engine will finish it and report it done. */
int srv_engine_cancel(srv_engine *e, srv_job *j);
/* Cancels everything (drain timeout). */
void srv_engine_cancel_all(srv_engine *e);
/* Moves each dirty job's output into its loop-side fields and returns the
 * jobs as a list through dirty_next. */
srv_job *srv_engine_collect(srv_engine *e);

/* ---- the server (loop thread) ---- */
typedef struct srv_server {
    srv_config cfg;
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_signal_t sig_term, sig_int;
    uv_timer_t drain_timer;
    llhttp_settings_t settings;
    srv_engine *eng;
    srv_metrics *met;
    srv_conn *conns; /* all open connections */
    int n_conns;
    int n_jobs;      /* submitted, not yet drained */
    int draining, closed, listening, announced, failed;
    uint64_t next_id;
    char model_name[128];
} srv_server;

/* srv_http.c */
void srv_http_settings(llhttp_settings_t *st);
void srv_conn_set_job(srv_conn *c, srv_job *j); /* the job answering the current request */
void srv_on_connection(uv_stream_t *listener, int status);
void srv_conn_close(srv_conn *c);
void srv_close_idle_conns(srv_server *s);
void srv_close_all_conns(srv_server *s);
int srv_conn_busy_count(srv_server *s);
/* Request accessors (valid while the request is being handled). */
const char *srv_conn_url(srv_conn *c);
int srv_conn_method(srv_conn *c);
const char *srv_conn_body(srv_conn *c, size_t *len);
const char *srv_conn_header(srv_conn *c, const char *name); /* content-type, authorization */
srv_server *srv_conn_server(srv_conn *c);
/* Responses: exactly one of reply / reply_error / stream_begin..end per
 * request. extra_headers: "Name: value\r\n" lines or NULL. */
void srv_conn_reply(srv_conn *c, int status, const char *ctype, const char *body, size_t len,
                    const char *extra_headers);
/* The single place error replies are made (OpenAI envelope). */
void srv_conn_reply_error(srv_conn *c, const api_error *e, const char *extra_headers);
void srv_conn_stream_begin(srv_conn *c);
void srv_conn_stream_write(srv_conn *c, const char *data, size_t len);
void srv_conn_stream_end(srv_conn *c);
/* What the per-request log line reports besides status and duration. */
void srv_conn_log_info(srv_conn *c, const char *id, int tok_in, int tok_out, double ttft,
                       size_t kv_bytes);

/* router.c */
void srv_route(srv_conn *c);

/* completions.c */
void srv_handle_completions(srv_conn *c, api_kind kind);
void srv_on_engine_output(srv_server *s); /* wake callback body */
void srv_conn_detach_job(srv_conn *c, srv_job *j); /* the connection closed under the job */

/* cmd_serve.c */
void srv_maybe_finish(srv_server *s);

#endif
