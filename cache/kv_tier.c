/* kv_tier: the mixed cache's tier rule (see kv_tier.h). */
#include "kv_tier.h"

#include <math.h>

int kv_tier_budget(const kv_policy *p, int len) {
    long prot = (long)p->sinks + p->recent;
    long b;
    if (p->budget >= 1) b = (long)p->budget;
    else if (p->budget > 0) b = (long)ceil(p->budget * len);
    else if (p->select == KV_SELECT_RECENT) b = prot;
    else return -1;
    if (b < prot) b = prot;
    if (b < 1) b = 1;
    return b > (1L << 30) ? 1 << 30 : (int)b;
}

/* Tokens demoted at once when the high tier is over budget b. */
static int chunk(const kv_policy *p, int b) {
    long m = p->chunk >= 1 ? (long)p->chunk : (long)(p->chunk * b);
    if (m < 1) m = 1;
    return m > b ? b : (int)m;
}

int kv_tier_protected(const kv_policy *p, int len) {
    /* positions < sinks, or >= len - recent */
    long a = p->sinks < len ? p->sinks : len;
    long b0 = (long)len - p->recent > 0 ? (long)len - p->recent : 0;
    long b = len - b0;
    long both = a - b0 > 0 ? a - b0 : 0;
    return (int)(a + b - both);
}

int kv_tier_demote(const kv_policy *p, int len, int n_hi) {
    int b = kv_tier_budget(p, len);
    if (b < 0 || n_hi <= b) return 0;
    int target = b + 1 - chunk(p, b);
    int want = n_hi - (target > 0 ? target : 0);
    int nc = n_hi - kv_tier_protected(p, len);
    int k = want < nc ? want : nc;
    return k > 0 ? k : 0;
}

int kv_tier_max_high(const kv_policy *p, int len) {
    int b = kv_tier_budget(p, len);
    return b < 0 || b > len ? len : b;
}
