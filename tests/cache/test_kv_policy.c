/* Presets, knob parsing and validation, and kv_policy_seq_bytes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kv.h"
#include "kv_policy.h"
#include "kv_quant.h"
#include "kv_tier.h"
#include "pverr.h"

static const char *presets[] = {"full", "scissorhands", "mikv", "h2o", "streaming", "quant4",
                                "quant2"};

Test(kv_policy, presets_are_valid_and_distinct) {
    for (int i = 0; i < 7; i++) {
        kv_policy p;
        char err[200] = "";
        cr_assert_eq(kv_policy_preset(presets[i], &p), 0);
        cr_assert_str_eq(p.preset, presets[i]);
        cr_assert_eq(kv_policy_validate(&p, err, sizeof err), 0, "%s: %s", presets[i], err);
    }
    kv_policy p;
    kv_policy_preset("mikv", &p);
    cr_assert(p.select == KV_SELECT_ACCUMULATED && p.lo_bits == 4 && kv_policy_lo_v_bits(&p) == 3 &&
              p.hi_bits == 8 && p.rotate == 1 && p.clip == 0 && p.group == 64 &&
              p.key_balance == 1 && p.sinks == 4 && p.scale_bits == 8 && kv_policy_value_norm(&p));
    kv_policy_preset("scissorhands", &p);
    cr_assert(p.lo_bits == 0 && p.recent == 10 && p.window == 400 && p.chunk == 0.4);
    kv_policy_preset("h2o", &p);
    cr_assert(p.select == KV_SELECT_ACCUMULATED && p.lo_bits == 0);
    kv_policy_preset("quant2", &p);
    cr_assert(p.select == KV_SELECT_RECENT && p.lo_bits == 2 && p.budget == 0);
    kv_policy_preset("full", &p);
    cr_assert(p.select == KV_SELECT_NONE && p.hi_bits == 16);
    cr_assert_eq(kv_policy_preset("nope", &p), PV_ENOTFOUND);
}

Test(kv_policy, parse_sets_every_knob) {
    kv_policy p;
    char err[200] = "";
    cr_assert_eq(kv_policy_parse("mikv,select=accumulated,hi-bits=8,lo-bits=4,budget=0.25,recent=7,"
                                 "sinks=2,window=64,chunk=9,group=16,key-balance=on",
                                 &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.select == KV_SELECT_ACCUMULATED && p.hi_bits == 8 && p.lo_bits == 4 &&
              p.budget == 0.25 && p.recent == 7 && p.sinks == 2 && p.window == 64 &&
              p.chunk == 9 && p.group == 16 && p.key_balance == 1);
    char d[300];
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, "mikv(select=accumulated,hi=8,lo=4,budget=0.25,recent=7,sinks=2"), "%s", d);
    cr_assert_eq(kv_policy_parse("scissorhands,budget=512", &p, err, sizeof err), 0);
    cr_assert_eq(p.budget, 512);
    /* Low-tier key/value widths: "K/V", or one side at a time. */
    cr_assert_eq(kv_policy_parse("mikv,lo-bits=4/2", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.lo_bits == 4 && kv_policy_lo_v_bits(&p) == 2);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",lo=4/2,"), "%s", d);
    cr_assert_eq(kv_policy_parse("mikv,lo-bits=4/4", &p, err, sizeof err), 0);
    cr_assert(p.lo_bits == 4 && p.lo_v_bits == 0); /* equal widths are one width */
    cr_assert_eq(kv_policy_parse("mikv,lo-k-bits=4", &p, err, sizeof err), 0);
    cr_assert(p.lo_bits == 4 && kv_policy_lo_v_bits(&p) == 3); /* values stay the preset's INT3 */
    cr_assert_eq(kv_policy_parse("quant4,lo-v-bits=2", &p, err, sizeof err), 0);
    cr_assert(p.lo_bits == 4 && kv_policy_lo_v_bits(&p) == 2);
    cr_assert_eq(kv_policy_parse("mikv,lo-bits=4/2,lo-bits=2", &p, err, sizeof err), 0);
    cr_assert(p.lo_bits == 2 && kv_policy_lo_v_bits(&p) == 2); /* lo-bits sets both */
    cr_assert_eq(kv_policy_parse("scissorhands,lo-k-bits=4", &p, err, sizeof err), 0);
    cr_assert(p.lo_bits == 4 && kv_policy_lo_v_bits(&p) == 4); /* a new tier: both */
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",lo=4,"), "%s", d);
    cr_assert(strstr(d, ",rotate=0,clip=0)"), "%s", d);
    cr_assert_eq(kv_policy_parse("quant2,rotate=on", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.rotate, 1);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",rotate=1,clip=0)"), "%s", d);
    cr_assert_eq(kv_policy_parse("quant2,clip=1", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.clip, KV_CLIP_ALL);
    cr_assert_eq(kv_policy_parse("mikv,clip=values", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.clip, KV_CLIP_VALUES);
    kv_policy_describe(&p, d, sizeof d); /* describe spells it back as the knob takes it */
    cr_assert(strstr(d, ",rotate=1,clip=values"), "%s", d);
    cr_assert_eq(kv_policy_parse("mikv,clip=values,clip=0", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.clip, KV_CLIP_NONE);
    cr_assert_eq(kv_policy_parse("mikv,hi-bits=8,lo-bits=0,rotate=1", &p, err, sizeof err), 0,
                 "%s", err); /* an INT8 high tier is quantized too */
    cr_assert_eq(kv_policy_parse("mikv,lo-bits=4/3", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.lo_bits == 4 && kv_policy_lo_v_bits(&p) == 3);
    cr_assert_eq(kv_policy_parse("quant4,lo-bits=3", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.lo_bits == 3 && kv_policy_lo_v_bits(&p) == 3);
    /* scale-bits: listed only when 8, and the description parses back */
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(!strstr(d, "scale-bits"), "%s", d);
    cr_assert_eq(kv_policy_parse("mikv,scale-bits=8", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.scale_bits, 8);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",scale-bits=8,value-norm=1)"), "%s", d);
    cr_assert_eq(kv_policy_parse("mikv,scale-bits=8,scale-bits=16", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.scale_bits, 16);
}

Test(kv_policy, bad_values_and_combinations_say_what_is_wrong) {
    struct {
        const char *spec, *needle;
    } bad[] = {
        {"mikv,lo-bits=5", "lo-bits must be 0, 2, 3, 4 or 8"},
        {"mikv,hi-bits=4", "hi-bits must be 16 or 8"},
        {"mikv,budget=2.5", "budget must be"},
        {"mikv,budget=-1", "budget must be"},
        {"mikv,group=12", "multiple of 8"},
        {"mikv,window=1", "window"},
        {"mikv,select=magic", "select must be"},
        {"mikv,key-balance=maybe", "key-balance"},
        {"mikv,colour=red", "unknown knob"},
        {"mikv,budget", "knob=value"},
        {"nope", "unknown preset"},
        {"mikv,hi-bits=8,key-balance=0", "needs key-balance=1"},
        {"full,budget=100", "select=none never demotes"},
        {"full,lo-bits=2", "select=none never demotes"},
        {"quant2,recent=0", "both are 0"},
        {"mikv,lo-bits=4/1", "lo-bits must be 0, 2, 3, 4 or 8"},
        {"mikv,lo-bits=0/2", "lo-bits must be 0, 2, 3, 4 or 8"},
        {"mikv,lo-bits=4/", "lo-bits must be 0, 2, 3, 4 or 8"},
        {"mikv,lo-v-bits=6", "lo-v-bits must be 2, 3, 4 or 8"},
        {"mikv,lo-k-bits=0", "lo-k-bits must be 2, 3, 4 or 8"},
        {"scissorhands,lo-v-bits=2", "needs a low tier"},
        {"mikv,rotate=2", "rotate must be 1 or 0"},
        {"mikv,clip=yes", "clip must be 1 or 0 (or values), got 'yes'"},
        {"mikv,rotate=values", "rotate must be 1 or 0, got"}, /* values is clip's alone */
        {"mikv,scale-bits=4", "scale-bits must be 16 or 8"},
        {"mikv,scale-bits=x", "scale-bits must be 16 or 8"},


    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kv_policy p;
        char err[300] = "";
        cr_assert_neq(kv_policy_parse(bad[i].spec, &p, err, sizeof err), 0, "%s accepted", bad[i].spec);
        cr_assert(strstr(err, bad[i].needle), "%s: '%s' lacks '%s'", bad[i].spec, err, bad[i].needle);
        cr_assert(!strncmp(err, "kv policy: ", 11));
    }
    /* group must divide head_dim: checked where the shape is known */
    kv_shape s = {.n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 40, .max_seqs = 1,
                  .max_ctx = 8, .n_threads = 1};
    kv_policy p;
    char err[200] = "";
    kv_cache *c = NULL;
    kv_policy_parse("mikv,group=16,rotate=0", &p, err, sizeof err); /* rotate needs 2^k */
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "does not divide head_dim") && c == NULL, "%s", err);
    /* a group wider than head_dim is one group per record (mikv's 64 here) */
    kv_policy_parse("mikv,group=64,rotate=0", &p, err, sizeof err);
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), 0, "%s", err);
    kv_policy q = p;
    q.group = 40;
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 8), kv_policy_seq_bytes(&q, &s, 8));
    kv_destroy(c);
}

Test(kv_policy, seq_bytes_by_hand) {
    kv_shape s = {.n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 4096, .n_threads = 1};
    kv_policy p;
    char err[200];
    /* full: the FP16 cache, 64-token pages of K and V for all heads */
    kv_policy_parse("full", &p, err, sizeof err);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), (size_t)2048 * 30 * 3 * 64 * 2 * 2);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 1), (size_t)64 * 30 * 3 * 64 * 2 * 2);
    /* quant2 at 2048: high = 32 recent FP16 tokens (K,V 256 B + pos 4), low
     * = 2016 INT2 tokens (K,V: 16 B codes + 2 groups x 4 B; no position: the
     * low tier's are implied), in 32-token pages; plus 3 x 64 floats of
     * balance state per head */
    kv_policy_parse("quant2", &p, err, sizeof err);
    size_t per_head = 1 * 32 * 260 + 63 * 32 * (2 * 24) + 768;
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), 90 * per_head);
    /* scissorhands, budget 512 absolute: at most 512 high (+4 B persistence
     * state), the rest dropped */
    kv_policy_parse("scissorhands,budget=512", &p, err, sizeof err);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), (size_t)90 * 16 * 32 * 264);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 100), (size_t)90 * 4 * 32 * 264);
    /* mikv at a quarter of FP16 is reachable at 2048 tokens */
    kv_policy_parse("mikv,budget=0.15", &p, err, sizeof err);
    double r = (double)kv_policy_seq_bytes(&p, &s, 2048) / ((size_t)2048 * 30 * 3 * 64 * 4);
    cr_assert(r > 0.25 && r < 0.40, "%g", r);
    /* quant4 with INT2 values, group 64: low tokens have a 36 B key record
     * (32 B codes + one scale/zero) and a 20 B value record (no position) */
    kv_policy_parse("quant4,lo-v-bits=2,group=64", &p, err, sizeof err);
    per_head = 1 * 32 * 260 + 63 * 32 * (36 + 20) + 768;
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), 90 * per_head);
    /* mikv 4/2 with an FP16 high tier, fp16 scales and 10% high tokens is about a third of FP16 */
    kv_policy_parse("mikv,hi-bits=16,lo-bits=4/2,group=64,budget=0.1,scale-bits=16", &p, err, sizeof err);
    r = (double)kv_policy_seq_bytes(&p, &s, 2048) / ((size_t)2048 * 30 * 3 * 64 * 4);
    cr_assert(r > 0.30 && r < 0.33, "%g", r);
    /* the preset's formats: an INT8 high token is 2 x (64 B codes + one fp16
     * scale/zero pair) + position + accumulated state (f32 sum + i32 first
     * step) = 148 B; a low token
     * INT4 keys (32 B codes + a one-byte scale and zero) + INT3 values (24 B
     * codes + 2) = 60 B (two-byte scales: the high tier keeps fp16 ones).
     * Chunk 1 demotes back to exactly 64 high every call, so the tier rests
     * at 64 high (two pages) and 1984 low (62 pages), nothing above; INT8
     * high keys freeze the balance at the first call, so a head keeps its
     * 64 factors only (256 B) */
    kv_policy_parse("mikv,budget=64,chunk=1", &p, err, sizeof err);
    per_head = 2 * 32 * 148 + 62 * 32 * 60 + 256;
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), 90 * per_head);
    /* scale-bits=16: a low group's scale and zero are fp16, 4 B instead of 2
     * (keys 32 + 4, values 24 + 4) */
    cr_assert_eq(kv_policy_parse("mikv,budget=64,chunk=1,scale-bits=16", &p, err, sizeof err), 0, "%s", err);
    per_head = 2 * 32 * 148 + 62 * 32 * 64 + 256;
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), 90 * per_head);
    /* Scissorhands' chunks of 0.4·64 = 25 leave 40 high after a demotion, so
     * the tier rests anywhere in 40..64: at 63 high (two pages) the low tier
     * holds 1985 (63 pages), the largest */
    kv_policy_parse("mikv,budget=64", &p, err, sizeof err);
    per_head = 2 * 32 * 148 + 63 * 32 * 60 + 256;
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), 90 * per_head);
    /* shorter than the budget: nothing was ever demoted, every token high */
    kv_policy_parse("mikv,budget=64", &p, err, sizeof err);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 40), 90 * (2 * 32 * 148 + 256));
}

/* A spec from pivot eval's --policies list joins its knobs with ';' (commas
 * separate the list's specs); the same spec must parse alone, in serve or a
 * request's kv_policy, to the same policy, and mixed separators too. */
Test(kv_policy, semicolons_separate_knobs_as_commas_do) {
    kv_policy a, b;
    char err[256], da[512], db[512];
    const char *commas = "mikv,lo-bits=4/2,heads=5:8/4,layer-bits=10-14:4/3,clip=values,"
                         "clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5,budget=0.0625,chunk=1";
    const char *forms[] = {"mikv;lo-bits=4/2;heads=5:8/4;layer-bits=10-14:4/3;clip=values;"
                           "clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5;budget=0.0625;chunk=1",
                           "mikv;lo-bits=4/2,heads=5:8/4;layer-bits=10-14:4/3,clip=values;"
                           "clip-floor=0.9+5-9:0.8+10-14:1+15-29:0.5,budget=0.0625;chunk=1"};
    cr_assert_eq(kv_policy_parse(commas, &a, err, sizeof err), 0, "%s", err);
    kv_policy_describe(&a, da, sizeof da);
    cr_assert_eq(a.chunk, 1.0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(kv_policy_parse(forms[i], &b, err, sizeof err), 0, "%s", err);
        kv_policy_describe(&b, db, sizeof db);
        cr_assert_str_eq(db, da);
    }
    /* still an error where a knob has no value */
    cr_assert_neq(kv_policy_parse("mikv;budget", &b, err, sizeof err), 0);
    cr_assert(strstr(err, "expected knob=value"), "%s", err);
}

Test(kv_policy, layer_bits_parse_describe_and_refuse) {
    kv_policy p;
    char err[256], d[512];
    cr_assert_eq(kv_policy_parse("mikv,layer-bits=15-24:4/4+5-9:2+7:3/2", &p, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(p.n_layer_bits, 3);
    int kb, vb;
    kv_policy_head_widths(&p, 0, 0, &kb, &vb); /* the preset's own widths */
    cr_assert(kb == 4 && vb == 3);
    kv_policy_head_widths(&p, 20, 1, &kb, &vb);
    cr_assert(kb == 4 && vb == 4);
    kv_policy_head_widths(&p, 5, 2, &kb, &vb); /* "2" sets both */
    cr_assert(kb == 2 && vb == 2);
    kv_policy_head_widths(&p, 7, 0, &kb, &vb); /* the later range wins */
    cr_assert(kb == 3 && vb == 2);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, "lo=4/3,layer-bits=15-24:4/4+5-9:2/2+7-7:3/2,"), "%s", d);
    /* none clears the ranges */
    cr_assert_eq(kv_policy_set(&p, "layer-bits", "none", err, sizeof err), 0);
    cr_assert_eq(p.n_layer_bits, 0);
    const char *bad[] = {"mikv,layer-bits=15-24:5/4", "mikv,layer-bits=24-15:4",
                         "mikv,layer-bits=1:4+2:4+3:4+4:4+5:4+6:4+7:4+8:4+9:4+10:4+11:4+12:4+13:4",
                         "mikv,layer-bits=x", "mikv,layer-bits=18.:4", "mikv,layer-bits=18.x:4",
                         "mikv,layer-bits=18.1.2:4", "mikv,layer-bits=18:4.1", "mikv,layer-bits=.1:4",
                         "mikv,layer-bits=18.2.2:4",
                         "mikv,layer-bits=1:4/", "mikv,layer-bits=1-2:4/4x",
                         "scissorhands,layer-bits=1:4"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        cr_assert_neq(kv_policy_parse(bad[i], &p, err, sizeof err), 0, "%s accepted", bad[i]);
        cr_assert(strstr(err, "layer-bits"), "%s: %s", bad[i], err);
    }
    /* a layer the model does not have, and the GPU cache, are refused by name */
    kv_shape s = {.n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 64, .n_threads = 1};
    kv_policy_parse("mikv,layer-bits=25-30:4", &p, err, sizeof err);
    kv_cache *c = NULL;
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "layer 30") && strstr(err, "30 layers"), "%s", err);
    kv_policy_parse("mikv,layer-bits=18.3:8", &p, err, sizeof err); /* heads 0-2 only */
    cr_assert_eq(kv_create(&s, &p, &c, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "KV head 3") && strstr(err, "3 KV heads"), "%s", err);
    s.gpu = (struct pvc_ctx *)&s; /* only compared with NULL by the check */
    kv_policy_parse("mikv,layer-bits=25-29:4", &p, err, sizeof err);
    cr_assert_eq(kv_policy_check_shape(&p, &s, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "layer-bits"), "%s", err);
}

Test(kv_policy, head_bits_parse_and_describe) {
    kv_policy p;
    char err[256], d[KV_POLICY_DESC_MAX];
    /* one KV head of a layer, one head of a range, and a whole layer after */
    cr_assert_eq(kv_policy_parse("mikv,layer-bits=18.2:8/8+15-24.1:4/4+17:2+17.0:8/4", &p, err,
                                 sizeof err),
                 0, "%s", err);
    cr_assert_eq(p.n_layer_bits, 4);
    const struct {
        int layer, head, k, v;
    } want[] = {{18, 2, 8, 8}, {18, 0, 4, 3}, {18, 1, 4, 4}, {15, 1, 4, 4}, {24, 1, 4, 4},
                {25, 1, 4, 3}, {14, 1, 4, 3}, {17, 1, 2, 2}, {17, 2, 2, 2}, {17, 0, 8, 4}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int kb, vb;
        kv_policy_head_widths(&p, want[i].layer, want[i].head, &kb, &vb);
        cr_assert(kb == want[i].k && vb == want[i].v, "layer %d head %d: %d/%d, want %d/%d",
                  want[i].layer, want[i].head, kb, vb, want[i].k, want[i].v);
    }
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",layer-bits=18-18.2:8/8+15-24.1:4/4+17-17:2/2+17-17.0:8/4,"), "%s", d);
    /* the description parses back to the same widths (it is a policy's key) */
    kv_policy q;
    char spec[KV_POLICY_DESC_MAX];
    const char *lb = strstr(d, "layer-bits=") + strlen("layer-bits=");
    snprintf(spec, sizeof spec, "mikv,layer-bits=%.*s", (int)(strchr(lb, ',') - lb), lb);
    cr_assert_eq(kv_policy_parse(spec, &q, err, sizeof err), 0, "%s: %s", spec, err);
    cr_assert_eq(q.n_layer_bits, 4);
    for (int i = 0; i < 4; i++) {
        const kv_layer_bits *a = &q.layer_bits[i], *b = &p.layer_bits[i];
        cr_assert(a->first == b->first && a->last == b->last && a->head == b->head &&
                      a->k == b->k && a->v == b->v,
                  "entry %d differs after the round trip", i);
    }
    /* width 0 drops (both sides or neither) */
    cr_assert_eq(kv_policy_parse("mikv,layer-bits=0-29:0+18.2:8", &p, err, sizeof err), 0, "%s", err);
    int k0, v0;
    kv_policy_head_widths(&p, 7, 1, &k0, &v0);
    cr_assert(k0 == 0 && v0 == 0);
    kv_policy_head_widths(&p, 18, 2, &k0, &v0);
    cr_assert(k0 == 8 && v0 == 8);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",layer-bits=0-29:0/0+18-18.2:8/8,"), "%s", d);
    cr_assert(!kv_policy_elastic(&p), "heads that drop: elastic compression would lose tokens");
    cr_assert_eq(kv_policy_parse("mikv,layer-bits=18.2:8", &p, err, sizeof err), 0, "%s", err);
    cr_assert(kv_policy_elastic(&p));
    cr_assert_neq(kv_policy_parse("mikv,layer-bits=5:0/4", &p, err, sizeof err), 0);
    cr_assert_neq(kv_policy_parse("mikv,layer-bits=5:4/0", &p, err, sizeof err), 0);
    /* twelve entries fit, and their description is not cut short; the
     * preset's five heads cannot be added to them, which the parse says
     * before any model resolves them */
    const char *twelve = "mikv,budget=0.125,layer-bits=0-29.0:8/8+1-28.1:8/4+2-27.2:4/4+"
                         "3-26.0:3/3+4-25.1:3/2+5-24.2:2/3+6-23.0:8/8+7-22.1:8/4+"
                         "8-21.2:4/4+9-20.0:3/3+10-19.1:3/2+11-18.2:2/2";
    char spec12[600];
    cr_assert_neq(kv_policy_parse(twelve, &p, err, sizeof err), 0);
    cr_assert(strstr(err, "more than 12 entries"), "%s", err);
    snprintf(spec12, sizeof spec12, "%s,heads=0", twelve);
    cr_assert_eq(kv_policy_parse(spec12, &p, err, sizeof err), 0, "%s", err);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, "+11-18.2:2/2,budget=0.125,") && strstr(d, "clip=0,scale-bits=8,value-norm=1)"), "%s", d);
    p.heads = 5; /* set past the parse: the resolver refuses too, once a
                  * ranked head is one no entry names by its index (0.1) */
    int rank[5] = {56, 52, 1, 62, 71};
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 5, 3, err, sizeof err), PV_EINVAL);
    cr_assert(strstr(err, "more than 12 entries"), "%s", err);
    cr_assert_eq(p.n_layer_bits, 12); /* unchanged */
    /* heads the entries all name by index add nothing, so they fit */
    int named[5] = {56, 52, 69, 62, 71}; /* 18.2 17.1 23.0 20.2 23.2 */
    cr_assert_eq(kv_policy_resolve_heads(&p, named, 5, 3, err, sizeof err), 0, "%s", err);
    cr_assert(p.n_layer_bits == 12 && p.heads == 0);
    /* a ranking that names no KV head is refused, not taken as a layer */
    int bad_rank[1] = {-1};
    kv_policy_parse("mikv", &p, err, sizeof err);
    cr_assert_eq(kv_policy_resolve_heads(&p, bad_rank, 1, 3, err, sizeof err), PV_EINVAL);
    cr_assert_eq(p.n_layer_bits, 0);
}

/* The heads knob: a request for the model's top heads, resolved into
 * layer-bits entries with a ranking (SmolLM2-135M's top five here). */
Test(kv_policy, heads_resolve_into_layer_bits) {
    kv_shape s = {.n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 4096, .n_threads = 1};
    const int rank[] = {56, 52, 69, 62, 71, 3, 40}; /* 18.2 17.1 23.0 20.2 23.2 1.0 13.1 */
    kv_policy p, q;
    char err[256] = "", d[KV_POLICY_DESC_MAX];
    cr_assert_eq(kv_policy_parse("mikv", &p, err, sizeof err), 0, "%s", err);
    cr_assert(p.heads == 5 && p.heads_k == 8 && p.heads_v == 8 && p.n_layer_bits == 0);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",clip=0,heads=5:8/8,scale-bits=8,value-norm=1)"), "%s", d);
    size_t uniform = kv_policy_seq_bytes(&p, &s, 2048);
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 7, 3, err, sizeof err), 0, "%s", err);
    cr_assert(p.heads == 0 && p.n_layer_bits == 5);
    int kb, vb;
    kv_policy_head_widths(&p, 18, 2, &kb, &vb);
    cr_assert(kb == 8 && vb == 8);
    kv_policy_head_widths(&p, 23, 0, &kb, &vb);
    cr_assert(kb == 8 && vb == 8);
    kv_policy_head_widths(&p, 18, 1, &kb, &vb); /* not a top head: the preset's K4/V3 */
    cr_assert(kb == 4 && vb == 3);
    kv_policy_head_widths(&p, 1, 0, &kb, &vb); /* sixth: beyond heads=5 */
    cr_assert(kb == 4 && vb == 3);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",layer-bits=18-18.2:8/8+17-17.1:8/8+23-23.0:8/8+20-20.2:8/8+23-23.2:8/8,"),
              "%s", d);
    cr_assert(!strstr(d, "heads="), "%s", d);
    /* the same bytes as the entries written by hand, and more than uniform */
    cr_assert_eq(kv_policy_parse("mikv,heads=0,layer-bits=18.2:8+17.1:8+23.0:8+20.2:8+23.2:8", &q,
                                 err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), kv_policy_seq_bytes(&q, &s, 2048));
    cr_assert_gt(kv_policy_seq_bytes(&p, &s, 2048), uniform);
    /* resolving again changes nothing */
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 7, 3, err, sizeof err), 0);
    cr_assert_eq(p.n_layer_bits, 5);
    /* an explicit entry that names a top head by its index keeps it (no
     * entry is added for that head) */
    kv_policy_parse("mikv,heads=2:4/2,layer-bits=17.1:3/3", &p, err, sizeof err);
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 7, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.n_layer_bits, 2);
    kv_policy_head_widths(&p, 18, 2, &kb, &vb);
    cr_assert(kb == 4 && vb == 2);
    kv_policy_head_widths(&p, 17, 1, &kb, &vb);
    cr_assert(kb == 3 && vb == 3);
    /* a layer range does not take the top heads' widths away: they come
     * after it; a head index over several layers names each of them */
    kv_policy_parse("mikv,layer-bits=15-29:3/2+15-20.2:4/4", &p, err, sizeof err);
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 7, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.n_layer_bits, 5); /* 18.2 and 20.2 are the explicit entry's */
    const int want[][4] = {{18, 2, 4, 4}, {20, 2, 4, 4}, {17, 1, 8, 8}, {23, 0, 8, 8},
                           {23, 2, 8, 8}, {18, 1, 3, 2}, {1, 0, 4, 3}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        kv_policy_head_widths(&p, want[i][0], want[i][1], &kb, &vb);
        cr_assert(kb == want[i][2] && vb == want[i][3], "%d.%d: %d/%d", want[i][0], want[i][1], kb,
                  vb);
    }
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",layer-bits=15-29:3/2+15-20.2:4/4+17-17.1:8/8+23-23.0:8/8+23-23.2:8/8,"),
              "%s", d);
    /* "N:B" sets both widths */
    kv_policy_parse("mikv,heads=1:4", &p, err, sizeof err);
    cr_assert(p.heads == 1 && p.heads_k == 4 && p.heads_v == 4);
    /* fewer ranked heads than asked: those there are */
    kv_policy_parse("mikv", &p, err, sizeof err);
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 3, 3, err, sizeof err), 0);
    cr_assert(p.n_layer_bits == 3 && p.heads == 0);
    /* no ranking (a model the probe cannot run) or no low tier: uniform */
    kv_policy_parse("mikv", &p, err, sizeof err);
    cr_assert_eq(kv_policy_resolve_heads(&p, NULL, 0, 3, err, sizeof err), 0);
    cr_assert(p.n_layer_bits == 0 && p.heads == 0);
    cr_assert_eq(kv_policy_parse("mikv,lo-bits=0", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_policy_resolve_heads(&p, rank, 7, 3, err, sizeof err), 0);
    cr_assert(p.n_layer_bits == 0 && p.heads == 0);
    cr_assert_eq(kv_policy_validate(&p, err, sizeof err), 0, "%s", err);
    /* heads=0 turns it off; bad values are named */
    kv_policy_parse("mikv,heads=0", &p, err, sizeof err);
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(p.heads == 0 && !strstr(d, "heads="), "%s", d);
    const char *bad[] = {"mikv,heads=13", "mikv,heads=-1", "mikv,heads=x", "mikv,heads=2:5",
                         "mikv,heads=2:4/1", "mikv,heads=2:"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_neq(kv_policy_parse(bad[i], &p, err, sizeof err), 0, "%s", bad[i]);
        cr_assert(strstr(err, "heads must be"), "%s: %s", bad[i], err);
    }
}

Test(kv_policy, head_bits_seq_bytes_by_hand) {
    kv_shape s = {.n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 4096, .n_threads = 1};
    kv_policy p;
    char err[200];
    /* quant4 K3/V3 group 64 (56 B a low token), KV head 2 of layer 18 and
     * head 1 of layer 17 at K8/V8 (136 B): at 2048 tokens one page of 32
     * recent FP16 tokens (260 B each) per head, 63 low pages of each of the
     * 90 heads, 768 B of balance state per head */
    cr_assert_eq(kv_policy_parse("quant4,lo-bits=3,group=64,layer-bits=18.2:8+17.1:8", &p, err,
                                 sizeof err),
                 0, "%s", err);
    size_t lo = (size_t)63 * 32 * (88 * 56 + 2 * 136);
    size_t hi = (size_t)90 * (32 * 260 + 768);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), hi + lo);
}

Test(kv_policy, layer_bits_seq_bytes_by_hand) {
    kv_shape s = {.n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64, .max_seqs = 1,
                  .max_ctx = 4096, .n_threads = 1};
    kv_policy p;
    char err[200];
    /* quant4 K4/V3 group 64 (64 B a low token), layers 15-24 at K4/V4 (72 B)
     * and 5-9 at K2/V2 (40 B): at 2048 tokens one page of 32 recent FP16
     * tokens (260 B each) per head, 63 low pages, 768 B of balance state */
    kv_policy_parse("quant4,lo-bits=4/3,group=64,layer-bits=15-24:4/4+5-9:2", &p, err, sizeof err);
    size_t lo = (size_t)63 * 32 * 3 * (15 * 64 + 10 * 72 + 5 * 40);
    size_t hi = (size_t)90 * (32 * 260 + 768);
    cr_assert_eq(kv_policy_seq_bytes(&p, &s, 2048), hi + lo);
}

/* The longest description kv_policy_describe can write (every knob at its
 * widest value, twelve layer-bits entries of the widest numbers) fits
 * KV_POLICY_DESC_MAX: descriptions are compared as keys (prefix cache,
 * router), so a cut one could make two policies equal. A new knob that
 * breaks this fails here. */
Test(kv_policy, the_longest_description_fits) {
    kv_policy p;
    char err[300] = "", d[4 * KV_POLICY_DESC_MAX];
    cr_assert_eq(kv_policy_parse("scissorhands,select=accumulated,hi-bits=16,lo-bits=8/2,budget=0.123456789,"
                                 "recent=16777216,sinks=16777215,window=65535,chunk=0.987654321,group=4096,"
                                 "key-balance=1,rotate=1,clip=1,scale-bits=8,heads=12:8/8,value-norm=1",
                                 &p, err, sizeof err), 0, "%s", err);
    kv_layer_bits wide = {4095, 4095, 127, 8, 8};
    for (int i = 0; i < KV_LAYER_BITS_MAX; i++) p.layer_bits[i] = wide;
    p.n_layer_bits = KV_LAYER_BITS_MAX;
    kv_clip_floor cf = {32766, 32766, 0.95f};
    for (int i = 0; i < KV_CLIP_FLOORS_MAX; i++) p.clip_floor[i] = cf;
    p.n_clip_floor = KV_CLIP_FLOORS_MAX;
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, "+32766-32766:0.95)") && strstr(d, "+4095-4095.127:8/8,budget=") &&
                  strstr(d, ",scale-bits=8,value-norm=1,clip-floor="),
              "%s", d);
    cr_assert_lt(strlen(d), KV_POLICY_DESC_MAX - 1, "%zu characters: %s", strlen(d), d);
}

/* clip-floor: one floor for every layer or per layer range (a later entry
 * wins), described back in the form it takes; kv_policy_clip_floors gives
 * each layer's key and value floors as the clip knob allows them. */
Test(kv_policy, clip_floor_parse_describe_and_floors) {
    kv_policy p;
    char err[300] = "", d[KV_POLICY_DESC_MAX];
    float kf, vf;
    cr_assert_eq(kv_policy_parse("mikv,clip=values", &p, err, sizeof err), 0, "%s", err);
    kv_policy_clip_floors(&p, 3, &kf, &vf);
    cr_assert(kf == 1.0f && vf == KVQ_CLIP_FULL, "no entry: keys %g values %g", kf, vf);
    cr_assert_eq(kv_policy_parse("mikv,clip=values,clip-floor=0-14:0.8+15-29:0.5+20:1", &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(p.n_clip_floor, 3);
    const float want[] = {0.8f, 0.8f, 0.5f, 1.0f, 0.5f, 0.5f}; /* layers 0, 14, 15, 20, 29, 30 */
    const int layers[] = {0, 14, 15, 20, 29, 30};
    for (int i = 0; i < 6; i++) {
        kv_policy_clip_floors(&p, layers[i], &kf, &vf);
        cr_assert(kf == 1.0f && vf == want[i], "layer %d: keys %g values %g", layers[i], kf, vf);
    }
    kv_policy_describe(&p, d, sizeof d);
    cr_assert(strstr(d, ",clip-floor=0-14:0.8+15-29:0.5+20-20:1)"), "%s", d);
    kv_policy q;
    cr_assert_eq(kv_policy_parse("mikv,clip=1,clip-floor=0.85", &q, err, sizeof err), 0, "%s", err);
    kv_policy_clip_floors(&q, 7, &kf, &vf);
    cr_assert(kf == 0.85f && vf == 0.85f, "clip=1: keys %g values %g", kf, vf);
    kv_policy_describe(&q, d, sizeof d);
    cr_assert(strstr(d, ",clip-floor=0.85)"), "%s", d);
    cr_assert_eq(kv_policy_parse("mikv,clip=0,clip-floor=0.85", &q, err, sizeof err), 0, "%s", err);
    kv_policy_clip_floors(&q, 7, &kf, &vf);
    cr_assert(kf == 1.0f && vf == 1.0f, "clip=0: keys %g values %g", kf, vf);
    cr_assert_eq(kv_policy_parse("mikv,clip-floor=0.85,clip-floor=none", &q, err, sizeof err), 0, "%s", err);
    cr_assert_eq(q.n_clip_floor, 0);
    const char *bad[] = {"0.4", "1.01", "x", "14-0:0.8", "0-14:", "0-14:0.8+x", "-1:0.8", "0-32767:0.8",
                         "1+1+1+1+1+1+1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char spec[64];
        snprintf(spec, sizeof spec, "mikv,clip-floor=%s", bad[i]);
        err[0] = 0;
        cr_assert_neq(kv_policy_parse(spec, &q, err, sizeof err), 0, "%s was taken", spec);
        cr_assert(strstr(err, "clip-floor must be"), "%s: %s", spec, err);
    }
}
