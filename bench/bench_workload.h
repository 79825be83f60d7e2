/* bench_workload: what `pivot bench` sends and when, without sockets — the
 * seeded RNG, random prompts, Poisson arrival times and dataset loading.
 * Unit tests: tests/unit/test_bench_workload.c.
 *
 * Determinism: everything is a function of the seed (splitmix64), so one
 * seed gives the same prompts and arrival times on every machine. */
#ifndef PIVOT_BENCH_WORKLOAD_H
#define PIVOT_BENCH_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64: the next 64 random bits; *state advances. */
uint64_t bench_rng_next(uint64_t *state);
/* Uniform in [0, 1), 53 bits. */
double bench_rng_unit(uint64_t *state);

/* The words random prompts are made of: each one token, with its leading
 * space, in the GPT-2/Llama-style BPE vocabularies (docs/BENCH.md). */
size_t bench_n_words(void);
const char *bench_word(size_t i);

/* n words drawn with *rng, separated by single spaces. Caller frees; NULL
 * when out of memory. n <= 0 gives "". */
char *bench_random_prompt(uint64_t *rng, long n);

/* The same behind a shared head: `prefix` (NULL or "" for none), a space,
 * then n random words — vLLM bench's --random-prefix-len workload, where
 * every request starts with one common system prompt. Caller frees. */
char *bench_prefixed_prompt(const char *prefix, uint64_t *rng, long n);

/* Arrival times in seconds from the start, for n requests at `rate` per
 * second: a Poisson process (exponential gaps with mean 1/rate, i.e. vLLM's
 * gamma with burstiness 1), the first request one gap after the start, as
 * vLLM's cumulative delays. rate = +inf puts every arrival at 0. The gaps come
 * from their own stream seeded by `seed`, so prompts and arrivals do not
 * depend on each other. Returns 0, or -1 when rate is NaN or not positive
 * (out untouched). */
int bench_arrivals(double *out, size_t n, double rate, uint64_t seed);

/* Prompts from a dataset's text (NUL-terminated, len bytes):
 *  - a JSON array (first non-blank byte '['; ShareGPT): each element's
 *    "prompt" string, or else the "value" of its first "conversations" turn;
 *  - otherwise JSONL: one such object per line.
 * A leading UTF-8 BOM is skipped. Records without a non-empty prompt and
 * JSONL lines that do not parse are skipped. On success *out is a malloc'd
 * array of *n malloc'd strings (free with bench_prompts_free) and 0 is
 * returned; with no prompt at all, or out of memory, -1 with a reason in err
 * and nothing to free. */
int bench_dataset_parse(const char *text, size_t len, char ***out, size_t *n, char *err,
                        size_t errlen);
/* The same from a file. */
int bench_dataset_load(const char *path, char ***out, size_t *n, char *err, size_t errlen);
void bench_prompts_free(char **v, size_t n);

#endif
