/* pivot generate: prompt in, completion streamed to stdout, timing on stderr.
 * stdout carries nothing but the completion text so it can be piped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "api_req.h"
#include "cli.h"
#include "threadpool.h"
#include "pvtime.h"
#include "device.h"
#include "kv_policy.h"
#include "llama.h"
#include "prompt.h"
#include "pverr.h"
#include "sampler.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: pivot generate --prompt TEXT [options]\n"
            "\n"
            "  --prompt TEXT            text to complete (required)\n"
            "  --model PATH             GGUF model (default: $PIVOT_MODEL or the SmolLM2 default)\n"
            "  --max-tokens N           tokens to generate (default 256)\n"
            "  --chat                   wrap the prompt as a user message in the model's chat\n"
            "                           template (ChatML, Llama-3, Llama-2/Mistral [INST])\n"
            "  --system TEXT            system message with --chat\n"
            "  --temperature T          0 = greedy (default 0.8)\n"
            "  --top-k K                keep the K most likely tokens (default 40, 0 = off)\n"
            "  --top-p P                nucleus sampling (default 0.95, 1 = off)\n"
            "  --min-p P                drop tokens below P x the top probability (default 0.05)\n"
            "  --repeat-penalty R       repetition penalty (default 1 = off)\n"
            "  --presence-penalty P     presence penalty (default 0)\n"
            "  --frequency-penalty F    frequency penalty (default 0)\n"
            "  --penalty-last-n N       tokens the penalties look back over (default 64)\n"
            "  --seed S                 RNG seed (default 0); same seed, same output\n"
            "  --threads N              CPU threads (default: all cores)\n"
            "  --attn-split off|N       split the decode attention across threads from N\n"
            "                           context tokens (default 512)\n"
            "  --device D               auto (default: CUDA when a GPU is present), cpu, cuda\n"
            "  --batch N                prompt tokens per forward step (default 256)\n"
            "  --ctx N                  context size (default: prompt + max tokens, at most the\n"
            "                           model's training context)\n"
            "  --ignore-eos             keep generating past end-of-generation tokens\n"
            "  --special                parse special tokens (e.g. <|im_start|>) in the prompt\n"
            "  --json                   the output is one JSON object (constrained decoding)\n"
            "  --json-schema FILE       the output is a JSON document valid for the schema in\n"
            "                           FILE (the subset in docs/API.md, Structured output)\n"
            "\n"
            "KV cache (docs/KV_CACHE.md):\n"
            "  --kv-policy P            full (default), scissorhands, mikv, h2o, streaming,\n"
            "                           quant4, quant2; or P,knob=value,... e.g. mikv,budget=0.25\n"
            "  --kv-budget B            high-precision tokens per head: count >= 1 or fraction\n"
            "                           of the sequence in (0,1); 0 = unlimited\n"
            "  --kv-hi-bits 16|8        high tier: FP16, or INT8 with key balancing\n"
            "  --kv-lo-bits 4|3|2|0|K/V low tier: INT4, INT3, INT2, 0 = drop demoted tokens, or\n"
            "                           key/value widths, e.g. 4/2 (INT4 keys, INT2 values)\n"
            "  --kv-lo-k-bits 4|3|2     low-tier keys only; --kv-lo-v-bits 4|3|2: values only\n"
            "  --kv-recent N            most recent tokens never demoted\n"
            "  --kv-sinks N             first tokens never demoted (attention sinks)\n"
            "  --kv-window W            persistence window in steps (Scissorhands)\n"
            "  --kv-chunk C             tokens demoted at once: count or fraction of the budget\n"
            "  --kv-group G             channels per low-bit scale/zero group (multiple of 8)\n"
            "  --kv-select S            persistence, accumulated (H2O), recent, none\n"
            "  --kv-key-balance 1|0     MiKV per-channel key balancing\n"
            "  --kv-rotate 1|0          randomized Hadamard rotation before quantizing\n"
            "  --kv-value-norm 1|0      accumulated: attention times the value's norm\n"
            "  --kv-clip 1|0|values     low tier: least-squares ranges instead of min-max\n"
            "                           (values: on value records only)\n"
            "  --kv-clip-floor F|R      the narrowest clipped range tried, 0.5-1 of min-max,\n"
            "                           or per layer range, e.g. 0-14:0.8+15-29:0.5\n"
            "  --kv-scale-bits 16|8     low tier: each group's scale and zero as fp16 or bytes\n"
            "  --kv-layer-bits R        low-tier widths per layer range or KV head, e.g.\n"
            "                           15-24:4/4+5-9:2, 18.2:8 (KV head 2 of layer 18), 0: drop\n"
            "  --kv-heads N[:K/V]       the model's top N copying KV heads (pivot heads) at\n"
            "                           K/V low-tier bits (default 8); mikv: 5, 0: none\n"
            "  -h, --help               this help\n");
}

typedef struct {
    const char *prompt, *model, *system, *schema;
    cli_kv kv;
    llm_device device;
    int max_tokens, threads, batch, ctx, attn_split;
    int chat, ignore_eos, special, json;
    smp_params sp;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o) {
    *o = (gen_opts){.max_tokens = 256, .batch = 256, .device = LLM_DEVICE_AUTO};
    o->sp = smp_default_params();
    o->sp.temperature = 0.8f;
    o->sp.top_k = 40;
    o->sp.top_p = 0.95f;
    o->sp.min_p = 0.05f;
    smp_params *sp = &o->sp;
    const cli_opt opts[] = {
        {.name = "--prompt", .kind = CLI_STR, .dst = &o->prompt},
        {.name = "--system", .kind = CLI_STR, .dst = &o->system},
        CLI_OPT_MODEL(&o->model),
        CLI_OPT_DEVICE(&o->device),
        CLI_OPT_THREADS(&o->threads),
        CLI_OPT_ATTN_SPLIT(&o->attn_split, .env = "PIVOT_ATTN_SPLIT"),
        CLI_OPT_CTX(&o->ctx),
        CLI_OPT_SEED(&sp->seed),
        {.name = "--max-tokens", .kind = CLI_INT, .dst = &o->max_tokens, .lo = 0, .hi = 1 << 24},
        {.name = "--batch", .kind = CLI_INT, .dst = &o->batch, .lo = 1, .hi = 65536},
        {.name = "--top-k", .kind = CLI_INT, .dst = &sp->top_k, .lo = 0, .hi = 1 << 24},
        {.name = "--penalty-last-n", .kind = CLI_INT, .dst = &sp->penalty_last_n,
         .lo = 0, .hi = 1 << 24},
        {.name = "--temperature", .kind = CLI_FLOAT, .dst = &sp->temperature, .lo = 0, .hi = 100},
        {.name = "--top-p", .kind = CLI_FLOAT, .dst = &sp->top_p, .lo = 0, .hi = 1},
        {.name = "--min-p", .kind = CLI_FLOAT, .dst = &sp->min_p, .lo = 0, .hi = 1},
        {.name = "--repeat-penalty", .kind = CLI_FLOAT, .dst = &sp->repetition_penalty,
         .lo = 0.01, .hi = 100},
        {.name = "--presence-penalty", .kind = CLI_FLOAT, .dst = &sp->presence_penalty,
         .lo = -2, .hi = 2},
        {.name = "--frequency-penalty", .kind = CLI_FLOAT, .dst = &sp->frequency_penalty,
         .lo = -2, .hi = 2},
        {.name = "--chat", .kind = CLI_FLAG, .dst = &o->chat},
        {.name = "--ignore-eos", .kind = CLI_FLAG, .dst = &o->ignore_eos},
        {.name = "--special", .kind = CLI_FLAG, .dst = &o->special},
        {.name = "--json", .kind = CLI_FLAG, .dst = &o->json},
        {.name = "--json-schema", .kind = CLI_STR, .dst = &o->schema},
        {.name = NULL},
    };
    const cli_opt *const tables[] = {opts, cli_kv_table(&o->kv), NULL};
    int rc = cli_parse("generate", argc, argv, tables);
    if (rc) return rc;
    if (!o->prompt) {
        fprintf(stderr, "pivot generate: --prompt is required (see pivot generate --help)\n");
        return 2;
    }
    if (o->system && !o->chat) {
        fprintf(stderr, "pivot generate: --system needs --chat\n");
        return 2;
    }
    return 0;
}

static void print_kv_usage(llm_ctx *ctx, const kv_policy *p) {
    kv_usage u;
    char desc[KV_POLICY_DESC_MAX];
    kv_seq_usage(llm_ctx_kv(ctx), 0, &u);
    kv_policy_describe(p, desc, sizeof desc);
    fprintf(stderr, "pivot: kv %s: %.2f MiB stored vs %.2f MiB fp16 (%.1f%%); tokens per head: "
                    "%d high, %d low, %d dropped of %d\n",
            desc, u.bytes_stored / 1048576.0, u.bytes_fp16 / 1048576.0,
            u.bytes_fp16 ? 100.0 * u.bytes_stored / u.bytes_fp16 : 0.0, u.n_high, u.n_low,
            u.n_dropped, u.n_tokens);
}

/* Tokenizes the prompt (through the chat template with --chat), BOS first
 * when the model wants it. Returns a malloc'ed array or NULL (message
 * printed). */
static int32_t *build_prompt(const llm_model *m, const gen_opts *o, int *n_out) {
    const tok_vocab *v = llm_get_vocab(m);
    char *text = NULL;
    const char *src = o->prompt;
    int special = o->special;
    if (o->chat) { /* rendered as the server renders a chat request */
        api_message msgs[2] = {{0}};
        int n = 0;
        if (o->system) msgs[n++] = (api_message){.role = "system", .content = (char *)o->system};
        msgs[n++] = (api_message){.role = "user", .content = (char *)o->prompt};
        srv_chat_in in = {.msgs = msgs, .n = n, .add_generation_prompt = 1};
        api_error e;
        if (srv_render_chat(m, &in, &text, NULL, &e)) {
            fprintf(stderr, "pivot generate: --chat: %s\n", e.message);
            return NULL;
        }
        src = text;
        special = 1; /* the template's markers are special tokens */
    }
    size_t len = strlen(src);
    int bos = tok_add_bos(v) && tok_bos(v) >= 0;
    int need = tok_encode(v, src, len, special, NULL, 0);
    int32_t *ids = need >= 0 ? malloc(sizeof(int32_t) * (need + bos + 1)) : NULL;
    if (!ids) {
        fprintf(stderr, "pivot generate: cannot tokenize the prompt\n");
        free(text);
        return NULL;
    }
    if (bos) ids[0] = tok_bos(v);
    tok_encode(v, src, len, special, ids + bos, need);
    free(text);
    *n_out = need + bos;
    return ids;
}

/* Prefills the prompt, then samples and streams up to max_new tokens to
 * stdout; the timing goes to stderr. 0, or 1 after a message. */
static int run(const gen_opts *o, const llm_model *m, llm_ctx *ctx, smp_sampler *smp,
               const cli_gram *cg, const int32_t *prompt, int n_prompt, int max_new) {
    const tok_vocab *v = llm_get_vocab(m);
    tok_stream *ts = tok_stream_new(v, 0);
    float *logits = malloc(sizeof(float) * llm_get_config(m)->n_vocab);
    int rc, status = 1;
    if (!ts || !logits) goto out;
    for (int i = 0; i < n_prompt; i++) smp_accept(smp, prompt[i]);

    double t0 = pv_now();
    for (int p = 0; p < n_prompt; p += o->batch) {
        int n = n_prompt - p < o->batch ? n_prompt - p : o->batch;
        llm_batch_entry e = {.seq = 0, .pos = p, .n_tokens = n, .tokens = prompt + p,
                             .logits = p + n == n_prompt ? LLM_LOGITS_LAST : LLM_LOGITS_NONE};
        if ((rc = llm_decode(ctx, &e, 1, logits))) {
            fprintf(stderr, "pivot generate: prompt evaluation failed: %s\n", pv_strerror(rc));
            goto out;
        }
    }
    double t1 = pv_now();
    int pos = n_prompt, n_gen = 0;
    char piece[512];
    while (n_gen < max_new) {
        /* the constrained step's rule is gram_mask.h's, as in the engine */
        if (cg->s && gram_mask(cg->v, cg->s, max_new - n_gen, logits) <= 0) break; /* nothing may follow */
        int32_t tok = smp_sample(smp, logits);
        smp_accept(smp, tok);
        int gram_end = cg->s && gram_accept_token(cg->v, cg->s, tok) == GRAM_END;
        n_gen++;
        if (gram_end || (!o->ignore_eos && tok_is_eog(v, tok))) break;
        int w = tok_stream_push(ts, tok, piece, sizeof piece);
        if (w > 0) {
            fwrite(piece, 1, w, stdout);
            fflush(stdout);
        }
        if (n_gen >= max_new) break;
        llm_batch_entry e = {.seq = 0, .pos = pos, .n_tokens = 1, .tokens = &tok,
                             .logits = LLM_LOGITS_LAST};
        if ((rc = llm_decode(ctx, &e, 1, logits))) {
            fprintf(stderr, "\npivot generate: decode failed: %s\n", pv_strerror(rc));
            goto out;
        }
        pos++;
    }
    int w = tok_stream_flush(ts, piece, sizeof piece);
    if (w > 0) fwrite(piece, 1, w, stdout);
    printf("\n");
    fflush(stdout);
    double t2 = pv_now();
    /* Decode rate counts the single-token steps only (the first token comes
     * out of the prompt pass). */
    int steps = pos - n_prompt;
    fprintf(stderr, "pivot: prompt %d tokens in %.1f ms (%.1f tokens/s); generated %d tokens, "
                    "decode %.1f ms for %d steps (%.1f tokens/s)\n",
            n_prompt, (t1 - t0) * 1e3, n_prompt / (t1 - t0), n_gen, (t2 - t1) * 1e3, steps,
            steps > 0 ? steps / (t2 - t1) : 0.0);
    status = 0;
out:
    free(logits);
    tok_stream_free(ts);
    return status;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    kv_policy pol;
    int rc = parse(argc, argv, &o);
    if (rc == CLI_HELP) return usage(stdout), 0;
    if (rc) return rc;
    if ((rc = cli_kv_policy("generate", o.kv.policy, o.kv.vals, &pol))) return rc;
    llm_device dev = o.device;
    char err[512] = "";
    llm_model *m = cli_load_model("generate", o.model, NULL, 0, dev);
    if (!m) return 1;
    const llm_config *cf = llm_get_config(m);
    int n_prompt = 0, status = 1;
    int32_t *prompt = build_prompt(m, &o, &n_prompt);
    llm_ctx *ctx = NULL;
    smp_sampler *smp = NULL;
    cli_gram cg = {0};
    kv_policy *pp = &pol;
    if (!prompt) goto out;
    if ((rc = cli_resolve_heads("generate", m, dev, o.threads, &pp, 1))) {
        status = rc;
        goto out;
    }
    if ((rc = cli_gram_open("generate", o.json, o.schema, m, &cg))) {
        status = rc;
        goto out;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "pivot generate: the prompt is empty after tokenization\n");
        goto out;
    }
    long ctx_len = o.ctx > 0 ? o.ctx : n_prompt + o.max_tokens;
    if (ctx_len > cf->n_ctx_train) ctx_len = cf->n_ctx_train;
    if (n_prompt >= ctx_len) {
        fprintf(stderr, "pivot generate: prompt has %d tokens, the context holds %ld\n", n_prompt,
                ctx_len);
        goto out;
    }
    llm_ctx_params cp = {.n_threads = o.threads > 0 ? o.threads : tp_default_threads(), .max_seqs = 1,
                         .max_ctx = (int)ctx_len, .max_batch_tokens = o.batch,
                         .attn_split = o.attn_split};
    cp.device = dev;
    kv_shape ks = llm_kv_shape(m, &cp);
    kv_cache *kv = NULL;
    if ((rc = kv_create(&ks, &pol, &kv, err, sizeof err))) {
        fprintf(stderr, "pivot generate: %s\n", err);
        goto out;
    }
    if ((rc = llm_ctx_create(m, &cp, kv, &ctx)) || (rc = smp_create(&o.sp, cf->n_vocab, &smp))) {
        if (dev == LLM_DEVICE_CUDA && rc == PV_EUNSUPPORTED)
            fprintf(stderr, "pivot generate: --device cuda: this --kv-policy does not run on the GPU "
                            "(hi-bits=8 is CPU-only; a high-tier budget over ~14k tokens does "
                            "not fit the GPU's demotion kernel)\n");
        else
            fprintf(stderr, "pivot generate: %s\n", pv_strerror(rc));
        goto out;
    }
    long max_new = o.max_tokens < ctx_len - n_prompt ? o.max_tokens : ctx_len - n_prompt;
    if (run(&o, m, ctx, smp, &cg, prompt, n_prompt, (int)max_new)) goto out;
    print_kv_usage(ctx, &pol);
    status = 0;
out:
    cli_gram_close(&cg);
    smp_free(smp);
    llm_ctx_free(ctx);
    free(prompt);
    llm_free(m);
    return status;
}
