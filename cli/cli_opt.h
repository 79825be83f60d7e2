/* cli_opt: every subcommand's options as one table, parsed by one loop.
 *
 * A command lists its options as cli_opt entries (name, kind, destination,
 * range) and calls cli_parse once; the loop accepts "--name value" and
 * "--name=value", checks each value against its kind and range, and on the
 * first bad argument prints one line "pivot <cmd>: ..." on stderr and
 * returns 2 (the usage exit status). The destinations keep their prior
 * contents (the defaults) for options that are not given. Options with an
 * env name are read from the environment first; a flag wins.
 *
 * --help stays a hand-written text per command (its layout groups options
 * for a reader); cli_parse only reports that -h/--help was asked for. */
#ifndef PIVOT_CLI_OPT_H
#define PIVOT_CLI_OPT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CLI_STR,      /* const char **: the value as given (argv or environ, not copied) */
    CLI_FLAG,     /* int *: set to 1; takes no value */
    CLI_FLAG_OFF, /* int *: set to 0; takes no value (--no-stream) */
    CLI_INT,      /* int *: an integer in [lo, hi] */
    CLI_FLOAT,    /* float *: a number in [lo, hi] */
    CLI_DOUBLE,   /* double *: a number in [lo, hi] */
    CLI_U64,      /* uint64_t *: a non-negative integer */
    CLI_BYTES,    /* size_t *: bytes with an optional K/M/G suffix, at least lo */
    CLI_CHOICE,   /* int *: values[k] (or k) for the value equal to choices[k] */
    CLI_FN,       /* fn(dst, value) == 0; `what` names what it expects */
} cli_kind;

typedef struct {
    const char *name; /* "--max-tokens"; NULL ends a table */
    cli_kind kind;
    void *dst;
    double lo, hi;  /* CLI_INT, CLI_FLOAT, CLI_DOUBLE: the range; CLI_BYTES: the minimum */
    int open_lo;    /* CLI_FLOAT, CLI_DOUBLE: lo itself is refused, (lo, hi] */
    const char *const *choices; /* CLI_CHOICE: NULL-terminated */
    const int *values;          /* CLI_CHOICE: what each choice stores (NULL: its index) */
    int (*fn)(void *dst, const char *value); /* CLI_FN: 0 ok, nonzero refused */
    const char *what; /* CLI_FN: the expected value, "a JSON object", for the message */
    int multi;        /* CLI_FN: the arguments after it up to the next "--..." are values
                         too (at least one): --goodput ttft:100 tpot:5 */
    const char *env;  /* read from this environment variable first (PIVOT_PORT); a
                         flag's: 1/true gives it, 0/false does not */
} cli_opt;

/* cli_parse's result when -h or --help is among the arguments: the command
 * prints its help on stdout and exits 0. */
#define CLI_HELP (-1)

/* Parses argv[1..argc) against the tables (a NULL-terminated list of
 * tables, each ended by an entry whose name is NULL). Returns 0, CLI_HELP,
 * or 2 after one line on stderr. cmd names the command in messages. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *const *tables);

/* Strict number parsing (whole string, range-checked). 0 ok, -1 bad. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, double lo, double hi, double *out);
int cli_parse_u64(const char *s, uint64_t *out);
/* "512", "4M", "2GiB", "1.5k": 0 ok, -1 bad. */
int cli_parse_bytes(const char *s, size_t *out);

/* ---- option groups shared by several commands (defined once here) ----
 * Each expands to one table entry; the trailing arguments add fields, e.g.
 * CLI_OPT_THREADS(&c->threads, .env = "PIVOT_THREADS"). */
#define CLI_OPT_MODEL(d, ...) {.name = "--model", .kind = CLI_STR, .dst = (d), __VA_ARGS__}
#define CLI_OPT_THREADS(d, ...) \
    {.name = "--threads", .kind = CLI_INT, .dst = (d), .lo = 1, .hi = 1024, __VA_ARGS__}
#define CLI_OPT_CTX(d, ...) \
    {.name = "--ctx", .kind = CLI_INT, .dst = (d), .lo = 1, .hi = 1 << 24, __VA_ARGS__}
#define CLI_OPT_SEED(d, ...) {.name = "--seed", .kind = CLI_U64, .dst = (d), __VA_ARGS__}
#define CLI_OPT_KV_POLICY(d, ...) {.name = "--kv-policy", .kind = CLI_STR, .dst = (d), __VA_ARGS__}

#endif
