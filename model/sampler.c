/* smp: token sampling (contract in sampler.h).
 *
 * Layout of the work per call, chosen so that nothing is allocated after
 * smp_create and the common cases avoid an O(V log V) sort over the whole
 * vocabulary (V = 49152 for SmolLM2):
 *   - penalties touch only the distinct tokens of the window, which are kept
 *     in a swap-remove list with per-token counts (O(window) per call);
 *   - top-k uses a size-k min-heap (O(V log k)) then sorts only those k;
 *   - without top-k, softmax and min-p are linear; top-p first pre-selects
 *     the best 256, then 4096 tokens and sorts the vocabulary only when
 *     they do not hold top_p of the mass (flat distributions).
 * Equal candidates are ordered by the lower token id so results do not
 * depend on the order an algorithm happens to visit them. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"

typedef struct {
    float logit; /* after penalties and temperature; later the probability */
    int32_t id;
} smp_cand;

struct smp_sampler {
    smp_params p;
    int n_vocab;
    smp_rng rng;

    /* Penalty history. counts[t] = occurrences of t in the window;
     * distinct[0..n_distinct) lists tokens with counts > 0 and
     * where[t] is t's index there, so removal is O(1). */
    int32_t *counts;   /* [n_vocab] */
    int32_t *distinct; /* [n_vocab] */
    int32_t *where;    /* [n_vocab] */
    int n_distinct;
    /* Ring of the last penalty_last_n accepted tokens; NULL when the window
     * is unbounded (penalty_last_n <= 0): then nothing ever leaves. */
    int32_t *ring; /* [penalty_last_n] */
    int ring_len, ring_head;

    smp_cand *cand; /* [n_vocab] scratch */
    int32_t *bias_ids; /* [n_bias] copies of the params' logit bias */
    float *bias;
};

smp_params smp_default_params(void) {
    smp_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = 0;
    return p;
}

/* ---- PCG32 (O'Neill, pcg-random.org: XSH-RR output, 64-bit LCG) ---- */

/* Stream selector 54 is the one the PCG reference demo uses, which makes the
 * published outputs for seed 42 an independent test vector. */
#define SMP_PCG_STREAM 54u
#define SMP_PCG_MULT 6364136223846793005ULL

uint32_t smp_rng_u32(smp_rng *r) {
    uint64_t old = r->state;
    r->state = old * SMP_PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

void smp_rng_seed(smp_rng *r, uint64_t seed) {
    r->state = 0;
    r->inc = ((uint64_t)SMP_PCG_STREAM << 1u) | 1u;
    smp_rng_u32(r);
    r->state += seed;
    smp_rng_u32(r);
}

double smp_rng_uniform(smp_rng *r) {
    /* 53 random bits so every double in [0,1) on the 2^-53 grid is
     * reachable and 1.0 never is. */
    uint64_t a = smp_rng_u32(r) >> 5; /* 27 bits */
    uint64_t b = smp_rng_u32(r) >> 6; /* 26 bits */
    return (double)((a << 26) | b) * (1.0 / 9007199254740992.0);
}

/* ---- lifecycle ---- */

static int params_valid(const smp_params *p) {
    if (isnan(p->temperature) || isnan(p->top_p) || isnan(p->min_p) ||
        isnan(p->presence_penalty) || isnan(p->frequency_penalty) ||
        isinf(p->presence_penalty) || isinf(p->frequency_penalty))
        return 0;
    /* A repetition penalty of 0 or below would flip or zero logits, which is
     * not a penalty; llama.cpp and vLLM reject it too. */
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return 0;
    if (p->top_p < 0.0f || p->min_p > 1.0f)
        return 0;
    return 1;
}

/* Copies the logit bias into s (s NULL: only checks it). 0, PV_EINVAL or
 * PV_ENOMEM. */
static int copy_bias(smp_sampler *s, const smp_params *p, int n_vocab) {
    if (p->n_bias < 0 || (p->n_bias && (!p->bias_ids || !p->bias)))
        return PV_EINVAL;
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias_ids[i] < 0 || p->bias_ids[i] >= n_vocab || !isfinite(p->bias[i]))
            return PV_EINVAL;
    if (!s || !p->n_bias)
        return PV_OK;
    s->bias_ids = malloc(sizeof *s->bias_ids * (size_t)p->n_bias);
    s->bias = malloc(sizeof *s->bias * (size_t)p->n_bias);
    if (!s->bias_ids || !s->bias)
        return PV_ENOMEM;
    memcpy(s->bias_ids, p->bias_ids, sizeof *s->bias_ids * (size_t)p->n_bias);
    memcpy(s->bias, p->bias, sizeof *s->bias * (size_t)p->n_bias);
    s->p.bias_ids = s->bias_ids;
    s->p.bias = s->bias;
    return PV_OK;
}

int smp_create(const smp_params *p, int n_vocab, smp_sampler **out) {
    if (!out)
        return PV_EINVAL;
    *out = NULL;
    if (!p || n_vocab <= 0 || !params_valid(p))
        return PV_EINVAL;
    smp_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return PV_ENOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->p.n_bias = 0; /* until copied: smp_free must not see the caller's arrays */
    int rc = copy_bias(s, p, n_vocab);
    if (rc) {
        smp_free(s);
        return rc;
    }
    s->p.n_bias = p->n_bias;
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->distinct = malloc((size_t)n_vocab * sizeof *s->distinct);
    s->where = malloc((size_t)n_vocab * sizeof *s->where);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (p->penalty_last_n > 0)
        s->ring = malloc((size_t)p->penalty_last_n * sizeof *s->ring);
    if (!s->counts || !s->distinct || !s->where || !s->cand ||
        (p->penalty_last_n > 0 && !s->ring)) {
        smp_free(s);
        return PV_ENOMEM;
    }
    smp_rng_seed(&s->rng, p->seed);
    *out = s;
    return PV_OK;
}

void smp_free(smp_sampler *s) {
    if (!s)
        return;
    free(s->counts);
    free(s->distinct);
    free(s->where);
    free(s->ring);
    free(s->cand);
    free(s->bias_ids);
    free(s->bias);
    free(s);
}

void smp_reset(smp_sampler *s) {
    if (!s)
        return;
    /* Clear only the tokens we know about: O(window), not O(V). */
    for (int i = 0; i < s->n_distinct; i++)
        s->counts[s->distinct[i]] = 0;
    s->n_distinct = 0;
    s->ring_len = 0;
    s->ring_head = 0;
}

/* ---- penalty history ---- */

static void hist_add(smp_sampler *s, int32_t t) {
    if (s->counts[t]++ == 0) {
        s->where[t] = s->n_distinct;
        s->distinct[s->n_distinct++] = t;
    }
}

static void hist_remove(smp_sampler *s, int32_t t) {
    if (--s->counts[t] == 0) {
        int i = s->where[t];
        int32_t last = s->distinct[--s->n_distinct];
        s->distinct[i] = last;
        s->where[last] = i;
    }
}

void smp_accept(smp_sampler *s, int32_t tok) {
    /* Out-of-range ids cannot be penalized; ignoring them keeps a bad
     * caller from corrupting memory (the function has no error return). */
    if (!s || tok < 0 || tok >= s->n_vocab)
        return;
    int n = s->p.penalty_last_n;
    if (n > 0) {
        if (s->ring_len == n) {
            hist_remove(s, s->ring[s->ring_head]);
        } else {
            s->ring_len++;
        }
        s->ring[s->ring_head] = tok;
        s->ring_head = (s->ring_head + 1) % n;
    }
    hist_add(s, tok);
}

static void apply_penalties(const smp_sampler *s, float *logits) {
    const smp_params *p = &s->p;
    if (p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f &&
        p->frequency_penalty == 0.0f)
        return;
    for (int i = 0; i < s->n_distinct; i++) {
        int32_t t = s->distinct[i];
        float l = logits[t];
        int32_t c = s->counts[t];
        if (p->repetition_penalty != 1.0f)
            l = l > 0.0f ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= p->presence_penalty;
        l -= p->frequency_penalty * (float)c;
        logits[t] = l;
    }
}

/* ---- selection helpers ---- */

/* a ranks before b: higher value, then lower id. NaN ranks last. */
static inline int cand_better(const smp_cand *a, const smp_cand *b) {
    if (a->logit != b->logit) {
        if (isnan(b->logit))
            return !isnan(a->logit);
        if (isnan(a->logit))
            return 0;
        return a->logit > b->logit;
    }
    return a->id < b->id;
}

static int cand_cmp(const void *pa, const void *pb) {
    const smp_cand *a = pa, *b = pb;
    if (cand_better(a, b))
        return -1;
    if (cand_better(b, a))
        return 1;
    return 0;
}

/* Min-heap on "better": the root is the worst of the kept k, so a new
 * candidate enters iff it beats the root. */
static void heap_sift_down(smp_cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_better(&h[w], &h[l]))
            w = l;
        if (r < n && cand_better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        smp_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Leaves the best k of logits[0..n) in c[0..k), sorted best first. */
static void select_top_k(const float *logits, int n, int k, smp_cand *c) {
    for (int i = 0; i < k; i++) {
        c[i].logit = logits[i];
        c[i].id = i;
    }
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        smp_cand x = {logits[i], i};
        if (cand_better(&x, &c[0])) {
            c[0] = x;
            heap_sift_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

static int32_t argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++) {
        /* Strict > keeps the lowest id on ties; a NaN never wins. */
        if (logits[i] > logits[best] || isnan(logits[best]))
            best = i;
    }
    return best;
}

/* Turns logits c[0..n) into unnormalized probabilities exp((l - mx) / T)
 * (NaN and -inf become 0) and returns their sum. mx must be the largest
 * logit, so every term is <= 1 and one of them is exactly 1. */
static double to_probs(smp_cand *c, int n, float mx, float inv_t) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        float l = c[i].logit;
        float e = (l > -INFINITY) ? expf((l - mx) * inv_t) : 0.0f;
        c[i].logit = e;
        sum += e;
    }
    return sum;
}

/* c[0..n) sorted best first: the length of the shortest prefix whose mass
 * reaches target (its mass in *kept), or -1 if the whole prefix falls
 * short. */
static int nucleus(const smp_cand *c, int n, double target, double *kept) {
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += c[i].logit;
        if (cum >= target) {
            *kept = cum;
            return i + 1;
        }
    }
    *kept = cum;
    return -1;
}

/* How many candidates to pre-select when top-p runs without top-k, tried
 * in turn. Real next-token distributions usually put top_p of their mass in
 * the first few hundred tokens, heavy tails in a few thousand; only a flat
 * distribution falls through to sorting the vocabulary (~7 ms at 49152). */
static const int smp_nucleus_guess[2] = {256, 4096};

/* Top-p without top-k: guess that the nucleus lies in the best k; the
 * logit order is the probability order, so if their mass reaches top_p of
 * the total they contain exactly the nucleus. Returns the nucleus size with
 * its mass in *sum, -1 when no guess held it, -2 when no logit is finite. */
static int nucleus_by_guess(smp_sampler *s, const float *logits, float inv_t, double *sum) {
    const int V = s->n_vocab;
    smp_cand *c = s->cand;
    double total = -1.0;
    int n = -1;
    for (int g = 0; g < 2 && n < 0 && smp_nucleus_guess[g] < V; g++) {
        const int k = smp_nucleus_guess[g];
        select_top_k(logits, V, k, c);
        const float mx = c[0].logit;
        if (!isfinite(mx))
            return -2;
        if (total < 0.0) {
            total = 0.0;
            for (int i = 0; i < V; i++)
                if (logits[i] > -INFINITY)
                    total += expf((logits[i] - mx) * inv_t);
        }
        (void)to_probs(c, k, mx, inv_t);
        n = nucleus(c, k, (double)s->p.top_p * total, sum);
    }
    return n;
}

/* Every token a candidate (then the nucleus by a full sort when top-p is
 * on). Returns the count with the mass in *sum, -2 when no logit is finite. */
static int all_candidates(smp_sampler *s, const float *logits, float inv_t, double *sum) {
    const int V = s->n_vocab;
    smp_cand *c = s->cand;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        c[i].logit = logits[i];
        c[i].id = i;
        if (logits[i] > mx)
            mx = logits[i];
    }
    if (!isfinite(mx))
        return -2;
    int n = V;
    *sum = to_probs(c, n, mx, inv_t);
    if (s->p.top_p < 1.0f) {
        /* Zero-probability entries can never be in the nucleus; drop them
         * so the sort has less to do. */
        int m = 0;
        for (int i = 0; i < n; i++)
            if (c[i].logit > 0.0f)
                c[m++] = c[i];
        n = m;
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        int keep = nucleus(c, n, (double)s->p.top_p * *sum, sum);
        n = keep > 0 ? keep : n; /* rounding short of target: keep all */
    }
    return n;
}

/* min-p: keeps candidates with p >= min_p * p_max. The ratio p/p_max is
 * unchanged by normalization, and the max always survives. */
static int min_p_filter(smp_cand *c, int n, float min_p, double *sum) {
    float pmax = 0.0f;
    for (int i = 0; i < n; i++)
        if (c[i].logit > pmax)
            pmax = c[i].logit;
    const float thr = min_p * pmax;
    int m = 0;
    *sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (c[i].logit >= thr) {
            c[m++] = c[i];
            *sum += c[i].logit;
        }
    }
    return m;
}

/* Inverse-CDF draw over the n survivors; the renormalization is the
 * scaling of u by their sum. */
static int32_t draw(smp_sampler *s, int n, double sum) {
    const smp_cand *c = s->cand;
    const double u = smp_rng_uniform(&s->rng) * sum;
    double cum = 0.0;
    int32_t last = c[0].id;
    for (int i = 0; i < n; i++) {
        if (c[i].logit <= 0.0f)
            continue;
        cum += c[i].logit;
        last = c[i].id;
        if (u < cum)
            return c[i].id;
    }
    /* Rounding can leave u just above the accumulated sum. */
    return last;
}

int32_t smp_sample(smp_sampler *s, float *logits) {
    if (!s || !logits)
        return 0;
    const smp_params *p = &s->p;
    const int V = s->n_vocab;
    for (int i = 0; i < p->n_bias; i++) /* -INFINITY (a grammar's mask) stays */
        logits[p->bias_ids[i]] += p->bias[i];
    apply_penalties(s, logits);

    if (p->temperature <= 0.0f)
        return argmax(logits, V);

    const float inv_t = 1.0f / p->temperature;
    smp_cand *c = s->cand;
    int n = -1;     /* candidates left; -1 until decided, -2: no finite logit */
    double sum = 0; /* their total unnormalized probability */

    if (p->top_k > 0 && p->top_k < V) {
        n = p->top_k;
        select_top_k(logits, V, n, c);
        if (!isfinite(c[0].logit)) /* no finite logit, or a +inf one */
            return argmax(logits, V);
        sum = to_probs(c, n, c[0].logit, inv_t);
        if (p->top_p < 1.0f) {
            int keep = nucleus(c, n, (double)p->top_p * sum, &sum);
            n = keep > 0 ? keep : n;
        }
    } else if (p->top_p < 1.0f) {
        n = nucleus_by_guess(s, logits, inv_t, &sum);
    }
    if (n == -1)
        n = all_candidates(s, logits, inv_t, &sum);
    if (n == -2)
        return argmax(logits, V);
    if (p->min_p > 0.0f)
        n = min_p_filter(c, n, p->min_p, &sum);
    return draw(s, n, sum);
}
