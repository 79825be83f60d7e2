/* kv_mirror: kv_mixed.c's tier counts without its data (see kv_mirror.h).
 * Each step below names the kv_mixed.c code it follows. */
#include "kv_mirror.h"

#include <string.h>

#include "kv_layout.h"
#include "kv_tier.h"

void kvm_plan(const kv_policy *p, kvm_seq *s, int n, kvm_call *out) {
    memset(out, 0, sizeof *out);
    const int need_bal = kvl_needs_balance(p);
    out->hi0 = s->n_hi;
    out->lo = s->n_lo;
    out->step0 = s->steps;
    /* bal_observe: allocates on first use, folds until frozen; INT8 keys
     * freeze at once */
    if (need_bal && !s->frozen) {
        out->observe = 1;
        s->bal_alloc = 1;
        if (p->hi_bits == 8) s->frozen = 1;
    }
    /* store + encode_pending; one step per query row */
    s->len += n;
    s->n_hi += n;
    s->steps += n;
    out->len = s->len;
    out->hi = s->n_hi;
    out->steps = s->steps;
    /* kvmx_demote(): the tier rule */
    int k = kv_tier_demote(p, s->len, s->n_hi);
    if (k == 0) return;
    out->k = k;
    if (p->lo_bits) {
        if (need_bal && !s->frozen) {
            out->freeze = 1;
            s->frozen = 1;
        }
        s->n_lo += k;
    } else {
        s->n_drop += k;
    }
    s->n_hi -= k;
}

static size_t pages(size_t n) { return (n + KVL_PAGE - 1) / KVL_PAGE; }

void kvm_usage(const kv_policy *p, const kv_shape *sh, const kvm_seq *s, kv_usage *u) {
    /* mx_seq_usage: tier pages (trimmed to the tier's size after each
     * demotion, the low tier only grows), balance statistics once allocated */
    size_t hd = (size_t)sh->head_dim, heads = (size_t)sh->n_layers * sh->n_kv_heads;
    size_t per = pages((size_t)s->n_hi) * KVL_PAGE * kvl_hi_token_bytes(p, sh->head_dim);
    if (s->bal_alloc) per += kvl_balance_bytes(p, sh->head_dim);
    memset(u, 0, sizeof *u);
    u->bytes_stored = heads * per + pages((size_t)s->n_lo) * KVL_PAGE *
                                        kvl_lo_token_bytes_all(p, sh->head_dim, sh->n_layers,
                                                               sh->n_kv_heads);
    u->bytes_fp16 = (size_t)s->len * heads * hd * 2 * 2;
    u->n_tokens = s->len;
    u->n_high = s->n_hi;
    u->n_low = s->n_lo;
    u->n_dropped = s->n_drop;
}
