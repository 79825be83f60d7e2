/* cli: the `pivot` command line — subcommands and their shared helpers.
 *
 * Each subcommand takes (argc, argv) after the subcommand name and returns the
 * process exit status: 0 ok, 1 runtime failure (model, I/O), 2 usage error.
 * Errors are one line on stderr prefixed with "pivot <cmd>: ". */
#ifndef PIVOT_CLI_H
#define PIVOT_CLI_H

#include <stddef.h>
#include <stdint.h>

int cmd_generate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Option scanning: recognizes "--name value" and "--name=value". Returns
 * the value (pointer into argv) and advances *i, or NULL when argv[*i] is not
 * this option. *missing is set when the option is present without a value. */
const char *cli_opt(int argc, char **argv, int *i, const char *name, int *missing);

/* Strict number parsing (whole string, range-checked). 0 ok, -1 bad. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, double lo, double hi, double *out);
int cli_parse_u64(const char *s, uint64_t *out);

/* The model used when --model is absent: $PIVOT_MODEL, else
 * models/SmolLM2-135M-Instruct.Q4_1.gguf in the current directory, else the
 * same path next to the repository the binary was built in. Writes into buf;
 * returns buf. */
const char *cli_default_model(char *buf, size_t len);

#endif
