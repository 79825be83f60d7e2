/* kv_create (the one constructor) and kv_policy_is_plain (the one test for
 * "is this the plain FP16 cache?"): what each policy and shape builds. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kv_tier.h"
#include "kv.h"
#include "kv_cuda.h"
#include "kv_policy.h"
#include "kv_router.h"
#include "pverr.h"

static const kv_shape shape = {.n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32,
                               .max_seqs = 3, .max_ctx = 64, .n_threads = 1};

static const char *presets[] = {"full", "scissorhands", "mikv", "h2o",
                                "streaming", "quant4", "quant2"};

Test(kv_create, plain_predicate_picks_the_fp16_cache) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        kv_policy p, got;
        char err[200];
        cr_assert_eq(kv_policy_preset(presets[i], &p), 0);
        kv_cache *c = NULL;
        cr_assert_eq(kv_create(&shape, &p, &c, err, sizeof err), 0, "%s: %s", presets[i], err);
        int plain = kv_policy_is_plain(&p);
        cr_assert_eq(plain, !strcmp(presets[i], "full"), "%s", presets[i]);
        cr_assert_str_eq(kv_name(c), plain ? "fp16" : "mixed", "%s", presets[i]);
        cr_assert_eq(kv_get_policy(c, &got), 0);
        cr_assert_eq(kv_policy_is_plain(&got), plain, "%s", presets[i]);
        if (!plain) { /* the policy comes back as run, its group fitted to head_dim */
            cr_assert_eq(got.select, p.select);
            cr_assert_eq(got.lo_bits, p.lo_bits);
            cr_assert_eq(got.budget, p.budget);
            cr_assert_eq(got.group, p.group > shape.head_dim ? shape.head_dim : p.group);
        }
        cr_assert_eq(kv_cuda_rows_per_pass(c), 0); /* not a GPU cache */
        kv_destroy(c);
    }
}

Test(kv_create, plain_in_effect_is_plain) {
    /* a compressing preset turned into "never demote, FP16": the plain cache */
    kv_policy p, full;
    char err[200];
    cr_assert_eq(kv_policy_parse("scissorhands,select=none,budget=0", &p, err, sizeof err), 0,
                 "%s", err);
    cr_assert(kv_policy_is_plain(&p));
    kv_cache *c = NULL;
    cr_assert_eq(kv_create(&shape, &p, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(kv_name(c), "fp16");
    kv_policy_preset("full", &full);
    cr_assert_eq(kv_policy_seq_bytes(&p, &shape, 100), kv_policy_seq_bytes(&full, &shape, 100));
    kv_destroy(c);
    /* INT8 keys are never plain, even with select=none */
    cr_assert_eq(kv_policy_parse("full,hi-bits=8,key-balance=1", &p, err, sizeof err), 0, "%s",
                 err);
    cr_assert(!kv_policy_is_plain(&p));
}

Test(kv_create, routed_shape_builds_a_router) {
    kv_shape s = shape;
    s.routed = 1;
    kv_policy def, got;
    char err[200];
    cr_assert_eq(kv_policy_preset("mikv", &def), 0);
    kv_cache *c = NULL;
    cr_assert_eq(kv_create(&s, &def, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(kv_name(c), "router");
    cr_assert_eq(kv_get_policy(c, &got), PV_EUNSUPPORTED); /* slots may differ */
    kv_policy full;
    kv_policy_preset("full", &full);
    cr_assert_eq(kv_seq_set_policy(c, 1, &full, err, sizeof err), 0, "%s", err);
    float kv[2 * 32] = {0}, q[4 * 32] = {0}, out[4 * 32];
    for (int l = 0; l < s.n_layers; l++) {
        cr_assert_eq(kv_store(c, 0, l, 0, 1, kv, kv), 0);
        cr_assert_eq(kv_store(c, 1, l, 0, 1, kv, kv), 0);
    }
    cr_assert_eq(kv_attend_group(c, 0, 0, 0, 0, 1, q, out, 0), 0);
    /* slot 0 took the default (a mixed cache), slot 1 the plain one */
    cr_assert_str_eq(kv_name(kv_router_slot_cache(c, 0)), "mixed");
    cr_assert_str_eq(kv_name(kv_router_slot_cache(c, 1)), "fp16");
    cr_assert_eq(kv_router_n_caches(c), 2);
    kv_destroy(c);
}

Test(kv_create, rejects_what_it_cannot_build) {
    kv_policy p;
    char err[200] = "";
    kv_cache *c = (kv_cache *)&p; /* must be cleared */
    cr_assert_eq(kv_policy_preset("mikv", &p), 0);
    kv_shape s = shape;
    s.head_dim = 30;
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), PV_EINVAL);
    cr_assert_null(c);
    cr_assert(strstr(err, "head_dim") != NULL, "%s", err);
    cr_assert_eq(kv_create(&shape, NULL, &c, err, sizeof err), PV_EINVAL);
    p.hi_bits = 12;
    cr_assert_eq(kv_create(&shape, &p, &c, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "hi-bits") != NULL, "%s", err);
    /* The rotation needs a power-of-two head_dim, and is CPU-only. */
    cr_assert_eq(kv_policy_parse("mikv,rotate=1", &p, err, sizeof err), 0, "%s", err);
    s = shape;
    s.head_dim = 48;
    p.group = 16;
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "rotate=1 needs head_dim a power of two") != NULL, "%s", err);
    s = shape;
    s.gpu = (struct pvc_ctx *)&s; /* only compared with NULL by the check */
    cr_assert_eq(kv_policy_check_shape(&p, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "CPU only") != NULL, "%s", err);
    /* two-byte scales too: the GPU cache's records have fp16 ones */
    kv_policy q;
    cr_assert_eq(kv_policy_parse("mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,heads=0,scale-bits=8,value-norm=0", &q, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "scale-bits=8 is not on the GPU cache yet") != NULL, "%s", err);
    /* the spelling the message offers is one the GPU takes */
    const char *use = strstr(err, "use e.g. ");
    cr_assert(use != NULL, "%s", err);
    char spec[100];
    snprintf(spec, sizeof spec, "%s", use + 9);
    cr_assert_eq(kv_policy_parse(spec, &q, err, sizeof err), 0, "%s: %s", spec, err);
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), 0, "%s", err);
    /* the preset's own two-byte scales (since 2026-12-06) are refused by name */
    cr_assert_eq(kv_policy_parse("mikv,hi-bits=16,lo-bits=4/2,rotate=0,clip=0,heads=0,value-norm=0", &q,
                                 err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "scale-bits=8 is not on the GPU cache yet") != NULL, "%s", err);
    q.scale_bits = 16;
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), 0, "%s", err);
    /* the preset's value-norm too: the GPU's demotion ranks by attention alone */
    q.value_norm = 1;
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "value-norm=1 is not on the GPU cache yet") != NULL, "%s", err);
    q.value_norm = 0;
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), 0, "%s", err);
    /* clipped ranges, both kinds, are refused by the name they were given */
    q.clip = KV_CLIP_VALUES;
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "clip=values is not on the GPU cache yet") != NULL, "%s", err);
    q.clip = KV_CLIP_ALL;
    cr_assert_eq(kv_policy_check_shape(&q, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "clip=1 is not on the GPU cache yet") != NULL, "%s", err);
    q.clip = KV_CLIP_NONE;
    cr_assert_eq(kv_create(&shape, &p, &c, err, sizeof err), 0, "%s", err);
    kv_policy got;
    cr_assert_eq(kv_get_policy(c, &got), 0);
    cr_assert_eq(got.rotate, 1);
    kv_destroy(c);
}
