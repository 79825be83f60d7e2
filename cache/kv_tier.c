/* kv_tier: the mixed cache's tier rule (see kv_tier.h). */
#include "kv_tier.h"
#include "kv_layout.h"

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

static size_t pages(size_t n, size_t per) { return (n + per - 1) / per; }

size_t kv_policy_seq_bytes(const kv_policy *p0, const kv_shape *s, int n_tokens) {
    if (!p0 || !s || n_tokens <= 0) return 0;
    kv_policy fitted = kvl_fit_group(p0, s);
    const kv_policy *p = &fitted;
    size_t heads = (size_t)s->n_layers * s->n_kv_heads;
    if (kv_policy_is_plain(p))
        return (size_t)s->n_layers * pages((size_t)n_tokens, KVL_FP16_PAGE) * 2 * s->n_kv_heads *
               KVL_FP16_PAGE * s->head_dim * 2;
    size_t hp = KVL_PAGE * kvl_hi_token_bytes(p, s->head_dim);
    /* every (layer, KV head): they may differ in low-tier widths */
    size_t lp = KVL_PAGE * kvl_lo_token_bytes_all(p, s->head_dim, s->n_layers, s->n_kv_heads);
    long n = n_tokens;
    /* Between calls the tier rule (kv_tier.h) leaves at most hi_max high;
     * the fewest is what a demotion leaves, b + 1 - chunk (never below the
     * protected tokens), since the tier then only grows a token per token
     * while b grows no faster (a fraction <= 1 of the length) until the next
     * demotion; before the first one (length <= b) every token is high.
     * The bytes are largest near hi_max (a high token costs more than a low
     * one), but page rounding can make one fewer high token one more low
     * page, so take the maximum over those counts, within the last page's
     * worth. With chunk 1 that is hi_max alone: the bound is exact. */
    long hi_max = kv_tier_max_high(p, n_tokens);
    long hi_min = kv_tier_protected(p, n_tokens);
    int b = kv_tier_budget(p, n_tokens);
    if (b >= 0) {
        long rest = n_tokens <= b ? hi_max : (long)b + 1 - chunk(p, b);
        if (rest > hi_min) hi_min = rest;
    }
    size_t best = 0;
    for (long k = hi_max; k >= hi_min && k >= hi_max - KVL_PAGE; k--) {
        size_t bytes = heads * pages((size_t)k, KVL_PAGE) * hp + pages((size_t)(n - k), KVL_PAGE) * lp;
        if (bytes > best) best = bytes;
    }
    return best + heads * kvl_balance_bytes(p, s->head_dim);
}
