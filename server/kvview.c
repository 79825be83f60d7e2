/* kvview: the KV map endpoints (kvview.h).
 *
 * A request for a running sequence becomes a watch: it asks the engine for
 * a snapshot, and a 50 ms timer collects what the decoder left (one-shot
 * GET: the first snapshot answers; SSE: one event per snapshot, asked again
 * every interval). The decoder only copies tiers; JSON is made here. A
 * watch whose request finished sends the final snapshot from the ring. */
#include "kvview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvjson.h"
#include "pvtime.h"

#define KVV_TICK_MS 50
/* The finished ring's snapshots together: a long sequence of a large model
 * is megabytes (a byte, a score and a demotion step per position, layer and
 * KV head), so the oldest go first beyond this. */
#define KVV_RING_BYTES ((size_t)64 << 20)
#define KVV_ONESHOT_WAIT 2.0 /* s: a sequence that shows nothing by then is waiting */

typedef struct {
    char id[48], policy[24], spec[320];
    eng_snap *snap; /* NULL: the request never ran or the cache cannot say */
    int32_t *ids;   /* with show_text */
    int n_ids;
    double t_end;
} kvv_done;

typedef struct kvv_watch {
    struct kvv_watch *next;
    srv_kvview *v;
    srv_conn *c; /* NULL once the client went away */
    char id[48];
    int sse, scores, done;
    double interval, next_ask, deadline;
} kvv_watch;

struct srv_kvview {
    uv_timer_t timer;
    int timer_on, closed;
    eng_engine *eng;
    srv_cmpl *cmpl;
    int show_text;
    kvv_done ring[KVV_RING];
    int ring_next;
    kvv_watch *watches;
};

static size_t snap_bytes(const eng_snap *s) {
    return s ? (size_t)s->n_layers * s->n_kv_heads * s->n_pos * (1 + 4 + (s->score ? 4 : 0)) : 0;
}

/* Frees the oldest finished snapshots until the ring fits KVV_RING_BYTES
 * (their entries stay listed, with no layers). */
static void ring_fit(srv_kvview *v) {
    size_t total = 0;
    for (int i = 0; i < KVV_RING; i++) total += snap_bytes(v->ring[i].snap);
    for (int k = 1; k < KVV_RING && total > KVV_RING_BYTES; k++) { /* oldest first, not the newest */
        kvv_done *d = &v->ring[(v->ring_next + k - 1) % KVV_RING];
        total -= snap_bytes(d->snap);
        eng_snap_free(d->snap);
        d->snap = NULL;
    }
}

static void on_done(void *arg, const srv_cmpl_info *in, eng_snap *final) {
    srv_kvview *v = arg;
    kvv_done *d = &v->ring[v->ring_next];
    v->ring_next = (v->ring_next + 1) % KVV_RING;
    eng_snap_free(d->snap);
    free(d->ids);
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", in->id);
    snprintf(d->policy, sizeof d->policy, "%s", in->policy);
    snprintf(d->spec, sizeof d->spec, "%s", in->spec);
    d->snap = final;
    d->t_end = pv_now();
    if (v->show_text && in->n_ids && (d->ids = malloc(sizeof *d->ids * in->n_ids))) {
        memcpy(d->ids, in->ids, sizeof *d->ids * in->n_ids);
        d->n_ids = in->n_ids;
    }
    ring_fit(v);
}

srv_kvview *srv_kvview_new(uv_loop_t *loop, eng_engine *eng, srv_cmpl *cmpl, int show_text) {
    srv_kvview *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->eng = eng;
    v->cmpl = cmpl;
    v->show_text = show_text;
    uv_timer_init(loop, &v->timer);
    v->timer.data = v;
    srv_cmpl_on_done(cmpl, on_done, v);
    return v;
}

static const kvv_done *ring_find(const srv_kvview *v, const char *id) {
    for (int i = 0; i < KVV_RING; i++)
        if (v->ring[i].id[0] && !strcmp(v->ring[i].id, id)) return &v->ring[i];
    return NULL;
}

static cJSON *list_item(const char *id, const char *status, const char *policy, int n_prompt,
                        int n_gen, double age) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddStringToObject(o, "policy", policy);
    cJSON_AddNumberToObject(o, "prompt_tokens", n_prompt);
    cJSON_AddNumberToObject(o, "completion_tokens", n_gen);
    cJSON_AddNumberToObject(o, "age_s", (double)(long)(age * 10) / 10);
    return o;
}

void srv_kvview_list(srv_kvview *v, srv_conn *c) {
    enum { CAP = SRV_CMPL_LIST_MAX };
    srv_cmpl_info *live = malloc(sizeof *live * CAP);
    int n = live ? srv_cmpl_list(v->cmpl, live, CAP) : 0;
    double now = pv_now();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *a = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n && i < CAP; i++)
        cJSON_AddItemToArray(a, list_item(live[i].id, live[i].t_first ? "running" : "waiting",
                                          live[i].policy, live[i].n_prompt, live[i].n_gen,
                                          now - live[i].t_submit));
    for (int k = 1; k <= KVV_RING; k++) { /* newest first */
        const kvv_done *d = &v->ring[(v->ring_next - k + KVV_RING) % KVV_RING];
        if (!d->id[0]) continue;
        cJSON_AddItemToArray(a, list_item(d->id, "finished", d->policy,
                                          d->snap ? d->snap->n_prompt : 0,
                                          d->snap ? d->snap->n_gen : 0, now - d->t_end));
    }
    free(live);
    srv_conn_reply_json(c, 200, o);
}

static const tok_vocab *vocab_of(srv_kvview *v) {
    return v->show_text ? llm_get_vocab(eng_model(v->eng)) : NULL;
}

static cJSON *json_done(srv_kvview *v, const kvv_done *d, int scores) {
    kvjson_args a = {.id = d->id, .status = "finished", .policy = d->policy, .spec = d->spec,
                     .snap = d->snap, .scores = scores, .vocab = vocab_of(v), .ids = d->ids,
                     .n_ids = d->n_ids};
    return kvjson_sequence(&a);
}

static cJSON *json_live(srv_kvview *v, const srv_cmpl_info *in, const eng_snap *s, int scores) {
    /* one rule with the list (srv_kvview's list_item): running once its
     * first token is out, whether or not a snapshot came yet */
    kvjson_args a = {.id = in->id, .status = in->t_first ? "running" : "waiting", .policy = in->policy,
                     .spec = in->spec, .snap = s, .scores = scores, .vocab = vocab_of(v),
                     .ids = in->ids, .n_ids = in->n_ids};
    return kvjson_sequence(&a);
}

static void sse_send(srv_conn *c, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return;
    srv_conn_stream_write(c, "data: ", 6);
    srv_conn_stream_write(c, s, strlen(s));
    srv_conn_stream_write(c, "\n\n", 2);
    free(s);
}

static void sse_end(srv_conn *c) {
    srv_conn_stream_write(c, "data: [DONE]\n\n", 14);
    srv_conn_stream_end(c);
}

static void on_gone(void *arg) { ((kvv_watch *)arg)->c = NULL; }

/* A finished (or vanished) request ends its watch. */
static void finish_watch(srv_kvview *v, kvv_watch *w) {
    const kvv_done *d = ring_find(v, w->id);
    if (w->sse) {
        if (d) sse_send(w->c, json_done(v, d, w->scores));
        sse_end(w->c);
    } else if (d) {
        srv_conn_reply_json(w->c, 200, json_done(v, d, w->scores));
    } else {
        api_error e;
        api_err_set(&e, 404, NULL, "not_found", "no sequence '%.60s'", w->id);
        srv_conn_reply_error(w->c, &e, NULL);
    }
    w->done = 1;
}

/* One watch at one tick: what the decoder left, and the next ask. */
static void tick_watch(srv_kvview *v, kvv_watch *w, double now) {
    srv_cmpl_info in;
    if (srv_cmpl_find(v->cmpl, w->id, &in)) {
        finish_watch(v, w);
        return;
    }
    eng_snap *s = eng_snap_take(v->eng, in.job);
    if (s || (!w->sse && now >= w->deadline)) {
        cJSON *o = json_live(v, &in, s, w->scores);
        eng_snap_free(s);
        if (!w->sse) {
            srv_conn_reply_json(w->c, 200, o);
            w->done = 1;
            return;
        }
        sse_send(w->c, o);
    }
    if (now >= w->next_ask) {
        eng_snap_ask(v->eng, in.job);
        w->next_ask = now + w->interval;
    }
}

static void on_tick(uv_timer_t *t) {
    srv_kvview *v = t->data;
    double now = pv_now();
    for (kvv_watch **pp = &v->watches; *pp;) {
        kvv_watch *w = *pp;
        if (w->c && !w->done) tick_watch(v, w, now);
        if (w->c && !w->done) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        free(w);
    }
    if (!v->watches && v->timer_on) {
        uv_timer_stop(&v->timer);
        v->timer_on = 0;
    }
}

static int query_int(const char *url, const char *key, int def) {
    const char *q = strchr(url, '?');
    size_t kl = strlen(key);
    for (const char *p = q; p; p = strchr(p + 1, '&'))
        if (!strncmp(p + 1, key, kl) && p[1 + kl] == '=') return atoi(p + 2 + kl);
    return def;
}

static void start_watch(srv_kvview *v, srv_conn *c, const srv_cmpl_info *in, int sse) {
    const char *url = srv_conn_url(c);
    kvv_watch *w = calloc(1, sizeof *w);
    if (!w) {
        api_error e;
        api_err_set(&e, 500, NULL, NULL, "out of memory");
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    int ms = query_int(url, "interval_ms", 250);
    double now = pv_now();
    *w = (kvv_watch){.v = v, .c = c, .sse = sse, .scores = query_int(url, "scores", 0) != 0,
                     .interval = (ms < 100 ? 100 : ms > 10000 ? 10000 : ms) / 1000.0,
                     .next_ask = now, .deadline = now + KVV_ONESHOT_WAIT};
    snprintf(w->id, sizeof w->id, "%s", in->id);
    w->next = v->watches;
    v->watches = w;
    if (sse) srv_conn_stream_begin(c);
    srv_conn_watch(c, on_gone, w);
    tick_watch(v, w, now); /* the first ask now */
    if (!v->timer_on) {
        uv_timer_start(&v->timer, on_tick, KVV_TICK_MS, KVV_TICK_MS);
        v->timer_on = 1;
    }
}

void srv_kvview_get(srv_kvview *v, srv_conn *c, const char *rest) {
    char id[64];
    size_t n = strcspn(rest, "/");
    int sse = !strcmp(rest + n, "/events");
    api_error e;
    if (n >= sizeof id || (rest[n] && !sse)) {
        api_err_set(&e, 404, NULL, "not_found", "no route for GET /v1/kv/sequences/%.100s", rest);
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    memcpy(id, rest, n);
    id[n] = 0;
    srv_cmpl_info in;
    if (!srv_cmpl_find(v->cmpl, id, &in)) {
        start_watch(v, c, &in, sse);
        return;
    }
    const kvv_done *d = ring_find(v, id);
    if (!d) {
        api_err_set(&e, 404, NULL, "not_found",
                    "no sequence '%.60s': not running and not among the last %d finished", id,
                    KVV_RING);
        srv_conn_reply_error(c, &e, NULL);
        return;
    }
    int scores = query_int(srv_conn_url(c), "scores", 0) != 0;
    if (!sse) {
        srv_conn_reply_json(c, 200, json_done(v, d, scores));
        return;
    }
    srv_conn_stream_begin(c);
    sse_send(c, json_done(v, d, scores));
    sse_end(c);
}

void srv_kvview_drain(srv_kvview *v) {
    for (kvv_watch *w = v->watches; w; w = w->next)
        if (w->c && !w->done) {
            /* answering ends the connection's watch (srv_http.h) */
            if (w->sse) {
                sse_end(w->c);
            } else {
                api_error e;
                api_err_set(&e, 503, NULL, "unavailable", "the server is shutting down");
                srv_conn_reply_error(w->c, &e, NULL);
            }
            w->done = 1;
        }
}

static void on_closed(uv_handle_t *h) { (void)h; }

void srv_kvview_close(srv_kvview *v) {
    if (!v || v->closed) return;
    v->closed = 1;
    uv_timer_stop(&v->timer);
    uv_close((uv_handle_t *)&v->timer, on_closed);
}

void srv_kvview_free(srv_kvview *v) {
    if (!v) return;
    while (v->watches) {
        kvv_watch *w = v->watches;
        v->watches = w->next;
        free(w);
    }
    for (int i = 0; i < KVV_RING; i++) {
        eng_snap_free(v->ring[i].snap);
        free(v->ring[i].ids);
    }
    free(v);
}
