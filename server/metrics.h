/* metrics: Prometheus counters, gauges and histograms, vLLM's names with the
 * `pivot:` prefix. Thread-safe: written from the decoder thread (through
 * the engine's hooks), read by the loop thread. */
#ifndef PIVOT_METRICS_H
#define PIVOT_METRICS_H

#include "eng.h"

typedef struct srv_metrics srv_metrics;

srv_metrics *srv_metrics_new(void); /* NULL when out of memory */
void srv_metrics_free(srv_metrics *m);
/* finish: "ok", "abort" or "error". */
void srv_metrics_request(srv_metrics *m, int prompt_tokens, int gen_tokens, double ttft,
                         double e2e, const char *finish);
void srv_metrics_set_gauges(srv_metrics *m, const eng_gauges *g);
void srv_metrics_get_gauges(srv_metrics *m, eng_gauges *g);
unsigned long srv_metrics_gen_tokens(srv_metrics *m); /* of finished requests */
char *srv_metrics_render(srv_metrics *m, const char *model); /* malloc'ed */

#endif
