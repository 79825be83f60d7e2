/* kv_create: the one constructor; picks the implementation that serves a
 * policy on a shape (kv.h). The implementations never call back here except
 * the router, which builds its sub-caches through kv_create. */
#include <stdio.h>

#include "kv.h"
#include "kv_cuda.h"
#include "kv_internal.h"
#include "kv_layout.h"
#include "kv_mixed.h"
#include "kv_policy.h"
#include "kv_rot.h"
#include "kv_router.h"
#include "pverr.h"

/* A per-layer knob's range must end inside the model: one rule for
 * layer-bits and clip-floor. */
static int check_last_layer(const char *knob, int last, const kv_shape *s, char *err,
                            size_t errlen) {
    if (last < s->n_layers) return PV_OK;
    return pv_fail(err, errlen, PV_EINVAL, "kv policy: %s names layer %d, the model has %d layers",
                   knob, last, s->n_layers);
}

int kv_policy_check_shape(const kv_policy *p, const kv_shape *s, char *err, size_t errlen) {
    int rc = kv_policy_validate(p, err, errlen);
    if (rc) return rc;
    /* A group wider than head_dim is one group per record (kvl_fit_group). */
    if (!kv_policy_is_plain(p) &&
        (p->group <= 0 || (p->group < s->head_dim && s->head_dim % p->group))) {
        if (err && errlen)
            snprintf(err, errlen, "kv policy: group=%d does not divide head_dim=%d", p->group,
                     s->head_dim);
        return PV_EINVAL;
    }
    const int rotating = kv_policy_rotates(p);
    if (rotating && !kvr_supported(s->head_dim)) {
        if (err && errlen)
            snprintf(err, errlen, "kv policy: rotate=1 needs head_dim a power of two, got %d",
                     s->head_dim);
        return PV_EINVAL;
    }
    for (int i = 0; i < p->n_layer_bits; i++) {
        if ((rc = check_last_layer("layer-bits", p->layer_bits[i].last, s, err, errlen))) return rc;
        if (p->layer_bits[i].head >= s->n_kv_heads) {
            if (err && errlen)
                snprintf(err, errlen,
                         "kv policy: layer-bits names KV head %d, the model has %d KV heads per layer",
                         p->layer_bits[i].head, s->n_kv_heads);
            return PV_EINVAL;
        }
    }
    for (int i = 0; i < p->n_clip_floor; i++) /* "0.8" (every layer) ends at KV_CLIP_ALL_LAYERS */
        if (p->clip_floor[i].last != KV_CLIP_ALL_LAYERS &&
            (rc = check_last_layer("clip-floor", p->clip_floor[i].last, s, err, errlen)))
            return rc;
    if (s->gpu && p->n_layer_bits) {
        if (err && errlen)
            snprintf(err, errlen, "kv policy: layer-bits is not on the GPU cache yet (CPU only)");
        return PV_EINVAL;
    }
    const int lo_k = p->lo_bits, lo_v = kv_policy_lo_v_bits(p);
    if (s->gpu && (lo_k == 8 || lo_v == 8)) {
        if (err && errlen) snprintf(err, errlen, "kv policy: an INT8 low tier is CPU only");
        return PV_EINVAL;
    }
    /* the GPU's records have fp16 scales, no rotation, no clipped ranges and
     * no 3-bit codes, and its demotion ranks by attention alone: the first
     * such knob, named with the spelling of mikv the GPU serves (the preset's
     * widths before 2026-12-02) */
    const char *cpu_only = rotating                        ? "rotate=1"
                           : p->clip && p->lo_bits         ? kv_clip_spec(p->clip)
                           : lo_k == 3 || lo_v == 3        ? "a 3-bit low tier"
                           : p->lo_bits && p->scale_bits == 8 ? "scale-bits=8"
                           : kv_policy_value_norm(p)       ? "value-norm=1"
                                                           : NULL;
    if (s->gpu && cpu_only) {
        if (err && errlen)
            snprintf(err, errlen,
                     "kv policy: %s is not on the GPU cache yet (CPU only); on the GPU use e.g. "
                     "mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,scale-bits=16,value-norm=0",
                     cpu_only);
        return PV_EINVAL;
    }
    return PV_OK;
}

int kv_create(const kv_shape *s, const kv_policy *p0, kv_cache **out, char *err, size_t errlen) {
    if (out) *out = NULL;
    if (!s || !p0 || !out) {
        if (err && errlen) snprintf(err, errlen, "kv policy: missing shape or policy");
        return PV_EINVAL;
    }
    if (s->routed) return kv_create_router(s, p0, out, err, errlen);
    int rc = kv_policy_check_shape(p0, s, err, errlen);
    if (rc) return rc;
    if (s->head_dim <= 0 || s->head_dim % 4) {
        if (err && errlen)
            snprintf(err, errlen, "kv policy: head_dim %d is not a multiple of 4", s->head_dim);
        return PV_EINVAL;
    }
    const kv_policy p = kvl_fit_group(p0, s);
    if (s->gpu) rc = kv_cuda_create(s, &p, out);
    else rc = kv_policy_is_plain(&p) ? kv_create_fp16(s, out) : kv_create_mixed(s, &p, out);
    if (rc && err && errlen)
        snprintf(err, errlen, "kv policy: cannot create the cache: %s", pv_strerror(rc));
    return rc;
}
