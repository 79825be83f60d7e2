/* srv_stats: the server-wide view (srv_stats.h). The history is a ring of
 * one-second samples taken by a timer from the metrics' gauges (the
 * engine's last step) and the live requests' token counts: tokens/s is the
 * difference of generated tokens (finished + live) between samples. */
#include "srv_stats.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "pvtime.h"

typedef struct {
    double t;
    int running, waiting;
    double tok_s;
    size_t pool_used, kv_stored, kv_fp16;
} sample;

struct srv_stats {
    uv_timer_t timer;
    int closed;
    srv_metrics *met;
    srv_cmpl *cmpl;
    sample ring[SRV_STATS_HISTORY];
    int n, next;
    double last_t;
    unsigned long last_gen;
};

/* Generated tokens so far: finished requests' and the live ones'. */
static unsigned long gen_now(srv_stats *s) {
    enum { CAP = SRV_CMPL_LIST_MAX };
    srv_cmpl_info in[CAP];
    unsigned long g = srv_metrics_gen_tokens(s->met);
    int n = srv_cmpl_list(s->cmpl, in, CAP);
    for (int i = 0; i < n && i < CAP; i++) g += (unsigned long)in[i].n_gen_all;
    return g;
}

static void on_sample(uv_timer_t *t) {
    srv_stats *s = t->data;
    eng_gauges g;
    srv_metrics_get_gauges(s->met, &g);
    double now = pv_now();
    unsigned long gen = gen_now(s);
    /* a request moving from live to finished may count twice for a moment */
    double d = gen > s->last_gen ? (double)(gen - s->last_gen) : 0;
    sample *x = &s->ring[s->next];
    *x = (sample){.t = now, .running = g.running, .waiting = g.waiting,
                  .tok_s = s->last_t ? d / (now - s->last_t) : 0, .pool_used = g.pool_used,
                  .kv_stored = g.kv_stored, .kv_fp16 = g.kv_fp16};
    s->last_t = now;
    s->last_gen = gen;
    s->next = (s->next + 1) % SRV_STATS_HISTORY;
    if (s->n < SRV_STATS_HISTORY) s->n++;
}

srv_stats *srv_stats_new(uv_loop_t *loop, srv_metrics *met, srv_cmpl *cmpl) {
    srv_stats *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->met = met;
    s->cmpl = cmpl;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_sample, 1000, 1000);
    uv_unref((uv_handle_t *)&s->timer); /* sampling alone does not keep the loop alive */
    return s;
}

static void on_closed(uv_handle_t *h) { (void)h; }

void srv_stats_close(srv_stats *s) {
    if (!s || s->closed) return;
    s->closed = 1;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

void srv_stats_free(srv_stats *s) { free(s); }

/* The live requests' reservations per KV policy: who holds the pool. */
static void add_policies(srv_stats *s, cJSON *kv) {
    enum { CAP = SRV_CMPL_LIST_MAX };
    srv_cmpl_info in[CAP];
    int n = srv_cmpl_list(s->cmpl, in, CAP);
    cJSON *a = cJSON_AddArrayToObject(kv, "policies");
    for (int i = 0; i < n && i < CAP; i++) {
        int first = 1;
        for (int k = 0; k < i && first; k++) first = strcmp(in[k].policy, in[i].policy) != 0;
        if (!first) continue;
        size_t bytes = 0;
        int reqs = 0;
        for (int k = i; k < n && k < CAP; k++)
            if (!strcmp(in[k].policy, in[i].policy)) bytes += in[k].kv_reserved, reqs++;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "policy", in[i].policy);
        cJSON_AddNumberToObject(p, "requests", reqs);
        cJSON_AddNumberToObject(p, "bytes_reserved", (double)bytes);
        cJSON_AddItemToArray(a, p);
    }
}

void srv_stats_handle(srv_stats *s, srv_conn *c) {
    eng_gauges g;
    srv_metrics_get_gauges(s->met, &g);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "running", g.running);
    cJSON_AddNumberToObject(o, "waiting", g.waiting);
    const sample *last = s->n ? &s->ring[(s->next - 1 + SRV_STATS_HISTORY) % SRV_STATS_HISTORY] : NULL;
    cJSON_AddNumberToObject(o, "tokens_per_s", last ? last->tok_s : 0);
    cJSON *kv = cJSON_AddObjectToObject(o, "kv");
    cJSON_AddNumberToObject(kv, "bytes_stored", (double)g.kv_stored);
    cJSON_AddNumberToObject(kv, "bytes_fp16", (double)g.kv_fp16);
    cJSON_AddNumberToObject(kv, "bytes_reserved", (double)g.kv_reserved);
    cJSON_AddNumberToObject(kv, "bytes_capacity", (double)g.kv_capacity);
    cJSON_AddNumberToObject(kv, "pool_used", (double)g.pool_used);
    cJSON_AddNumberToObject(kv, "pool_peak", (double)g.pool_peak);
    cJSON_AddNumberToObject(kv, "pool_limit", (double)g.pool_limit);
    cJSON_AddNumberToObject(kv, "pool_free",
                            g.pool_limit > g.pool_used ? (double)(g.pool_limit - g.pool_used) : 0);
    add_policies(s, kv);
    cJSON *h = cJSON_AddArrayToObject(o, "history");
    double now = pv_now();
    for (int k = s->n; k >= 1; k--) { /* oldest first */
        const sample *x = &s->ring[(s->next - k + SRV_STATS_HISTORY) % SRV_STATS_HISTORY];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "age_s", (double)(long)((now - x->t) * 10) / 10);
        cJSON_AddNumberToObject(e, "running", x->running);
        cJSON_AddNumberToObject(e, "waiting", x->waiting);
        cJSON_AddNumberToObject(e, "tokens_per_s", (double)(long)(x->tok_s * 10) / 10);
        cJSON_AddNumberToObject(e, "pool_used", (double)x->pool_used);
        cJSON_AddNumberToObject(e, "kv_stored", (double)x->kv_stored);
        cJSON_AddNumberToObject(e, "kv_fp16", (double)x->kv_fp16);
        cJSON_AddItemToArray(h, e);
    }
    srv_conn_reply_json(c, 200, o);
}

/* Every preset with its knobs as kv_policy_describe writes them, so the page
 * offers what the server will accept. */
void srv_presets_handle(eng_engine *e, srv_conn *c) {
    static const char *const names[] = {"full", "mikv", "scissorhands", "h2o", "streaming",
                                        "quant4", "quant2"};
    cJSON *o = cJSON_CreateObject();
    char spec[KV_POLICY_DESC_MAX];
    kv_policy_describe(eng_policy(e), spec, sizeof spec);
    cJSON_AddStringToObject(o, "default", eng_policy(e)->preset);
    cJSON_AddStringToObject(o, "default_spec", spec);
    cJSON *a = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        kv_policy p;
        char err[128];
        if (kv_policy_preset(names[i], &p)) continue;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", names[i]);
        kv_policy_describe(&p, spec, sizeof spec);
        cJSON_AddStringToObject(x, "spec", spec);
        cJSON_AddBoolToObject(x, "usable", eng_check_policy(e, &p, err, sizeof err) == 0);
        cJSON *k = cJSON_AddObjectToObject(x, "knobs");
        cJSON_AddNumberToObject(k, "kv_hi_bits", p.hi_bits);
        cJSON_AddNumberToObject(k, "kv_lo_k_bits", p.lo_bits);
        cJSON_AddNumberToObject(k, "kv_lo_v_bits", p.lo_bits ? kv_policy_lo_v_bits(&p) : 0);
        cJSON_AddNumberToObject(k, "kv_budget", p.budget);
        cJSON_AddNumberToObject(k, "kv_recent", p.recent);
        cJSON_AddNumberToObject(k, "kv_sinks", p.sinks);
        cJSON_AddNumberToObject(k, "kv_window", p.window);
        cJSON_AddBoolToObject(k, "kv_rotate", p.rotate);
        cJSON_AddBoolToObject(k, "kv_value_norm", kv_policy_value_norm(&p));
        cJSON_AddItemToArray(a, x);
    }
    srv_conn_reply_json(c, 200, o);
}
