/* cli_opt: the one option parser every `pivot` subcommand uses. Each test
 * runs in its own process (Criterion), so setenv does not leak. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_opt.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof(a)[0]))

/* Destinations with recognizable defaults. */
typedef struct {
    const char *s;
    int i, flag, on, pick, mode;
    float f;
    double d, r;
    uint64_t u;
    size_t bytes;
    int items, sum;
} dst;

static const char *const modes[] = {"fast", "slow", "auto", NULL};
static const int mode_values[] = {10, 20, 30};

/* "k:N" items, summed. */
static int add_item(void *p, const char *v) {
    dst *d = p;
    if (strncmp(v, "k:", 2) || !v[2]) return -1;
    d->items++;
    d->sum += atoi(v + 2);
    return 0;
}

static dst d;
static cli_opt table[] = {
    {.name = "--name", .kind = CLI_STR, .dst = &d.s, .env = "T_NAME"},
    {.name = "--count", .kind = CLI_INT, .dst = &d.i, .lo = -5, .hi = 100, .env = "T_COUNT"},
    {.name = "--temp", .kind = CLI_FLOAT, .dst = &d.f, .lo = 0, .hi = 2},
    {.name = "--ratio", .kind = CLI_DOUBLE, .dst = &d.r, .lo = 0, .hi = 1, .open_lo = 1},
    {.name = "--scale", .kind = CLI_DOUBLE, .dst = &d.d, .lo = -1, .hi = 1},
    {.name = "--seed", .kind = CLI_U64, .dst = &d.u},
    {.name = "--mem", .kind = CLI_BYTES, .dst = &d.bytes, .lo = 1},
    {.name = "--pick", .kind = CLI_CHOICE, .dst = &d.pick, .choices = modes},
    {.name = "--mode", .kind = CLI_CHOICE, .dst = &d.mode, .choices = modes, .values = mode_values},
    {.name = "--item", .kind = CLI_FN, .dst = &d, .fn = add_item, .multi = 1, .what = "k:N items"},
    {.name = "--verbose", .kind = CLI_FLAG, .dst = &d.flag, .env = "T_VERBOSE"},
    {.name = "--no-on", .kind = CLI_FLAG_OFF, .dst = &d.on},
    {.name = NULL},
};
static const cli_opt *const tables[] = {table, NULL};

static void reset(void) {
    d = (dst){.s = "default", .i = 7, .on = 1, .pick = -1, .mode = -1, .f = 0.5f, .d = 0.25,
              .r = 0.5, .u = 3, .bytes = 99};
    unsetenv("T_NAME");
    unsetenv("T_COUNT");
    unsetenv("T_VERBOSE");
}

/* Every test starts from the defaults, its stderr captured. */
static void setup(void) {
    reset();
    cr_redirect_stderr();
}

static int parse(int argc, char **argv) { return cli_parse("t", argc, argv, tables); }

/* What the parses so far wrote on stderr, exactly. */
static void expect_stderr(const char *want) {
    fflush(stderr);
    cr_assert_stderr_eq_str(want);
}

TestSuite(cli_opt, .init = setup);

Test(cli_opt, nothing_given_keeps_every_default) {
    char *argv[] = {"t"};
    cr_assert_eq(parse(ARGC(argv), argv), 0);
    cr_assert_str_eq(d.s, "default");
    cr_assert_eq(d.i, 7);
    cr_assert_eq(d.u, 3);
    cr_assert_eq(d.on, 1);
    cr_assert_eq(d.flag, 0);
}

Test(cli_opt, space_and_equals_forms_store_the_same) {
    char *a1[] = {"t", "--count", "42", "--name", "x y"};
    cr_assert_eq(parse(ARGC(a1), a1), 0);
    cr_assert_eq(d.i, 42);
    cr_assert_str_eq(d.s, "x y");
    char *a2[] = {"t", "--count=-5", "--name=a=b"};
    cr_assert_eq(parse(ARGC(a2), a2), 0);
    cr_assert_eq(d.i, -5);
    cr_assert_str_eq(d.s, "a=b"); /* only the first '=' splits */
    char *a3[] = {"t", "--name="};
    cr_assert_eq(parse(ARGC(a3), a3), 0);
    cr_assert_str_eq(d.s, "");
}

Test(cli_opt, int_range_is_inclusive_and_checked) {
    char *ok[] = {"t", "--count", "100"};
    cr_assert_eq(parse(ARGC(ok), ok), 0);
    cr_assert_eq(d.i, 100);
    char *hi[] = {"t", "--count", "101"};
    cr_assert_eq(parse(ARGC(hi), hi), 2);
    cr_assert_eq(d.i, 100, "a refused value must not be stored");
    char *junk[] = {"t", "--count", "12abc"};
    cr_assert_eq(parse(ARGC(junk), junk), 2);
    expect_stderr("pivot t: --count expects an integer in [-5, 100], got '101'\n"
                            "pivot t: --count expects an integer in [-5, 100], got '12abc'\n");
}

Test(cli_opt, floats_doubles_and_open_ranges) {
    char *ok[] = {"t", "--temp", "1.5", "--scale=-1", "--ratio", "1"};
    cr_assert_eq(parse(ARGC(ok), ok), 0);
    cr_assert_float_eq(d.f, 1.5f, 1e-6);
    cr_assert_float_eq(d.d, -1.0, 1e-12);
    cr_assert_float_eq(d.r, 1.0, 1e-12);
    char *zero[] = {"t", "--ratio", "0"};
    cr_assert_eq(parse(ARGC(zero), zero), 2, "(0, 1] refuses 0");
    char *nan[] = {"t", "--temp", "nan"};
    cr_assert_eq(parse(ARGC(nan), nan), 2);
    char *neg[] = {"t", "--temp", "-0.1"};
    cr_assert_eq(parse(ARGC(neg), neg), 2);
    cr_assert_float_eq(d.f, 1.5f, 1e-6);
    expect_stderr("pivot t: --ratio expects a number in (0, 1], got '0'\n"
                            "pivot t: --temp expects a number in [0, 2], got 'nan'\n"
                            "pivot t: --temp expects a number in [0, 2], got '-0.1'\n");
}

Test(cli_opt, u64_takes_the_full_range_but_no_sign) {
    char *ok[] = {"t", "--seed", "18446744073709551615"};
    cr_assert_eq(parse(ARGC(ok), ok), 0);
    cr_assert_eq(d.u, UINT64_MAX);
    char *neg[] = {"t", "--seed", "-1"};
    cr_assert_eq(parse(ARGC(neg), neg), 2);
    char *over[] = {"t", "--seed", "18446744073709551616"};
    cr_assert_eq(parse(ARGC(over), over), 2);
    cr_assert_eq(d.u, UINT64_MAX);
}

Test(cli_opt, bytes_with_suffixes_and_a_minimum) {
    char *m[] = {"t", "--mem", "4M"};
    cr_assert_eq(parse(ARGC(m), m), 0);
    cr_assert_eq(d.bytes, (size_t)4 << 20);
    char *g[] = {"t", "--mem=1.5GiB"};
    cr_assert_eq(parse(ARGC(g), g), 0);
    cr_assert_eq(d.bytes, (size_t)3 << 29);
    char *k[] = {"t", "--mem", "2kB"};
    cr_assert_eq(parse(ARGC(k), k), 0);
    cr_assert_eq(d.bytes, 2048);
    char *zero[] = {"t", "--mem", "0"};
    cr_assert_eq(parse(ARGC(zero), zero), 2, "below the minimum of 1");
    char *bad[] = {"t", "--mem", "2X"};
    cr_assert_eq(parse(ARGC(bad), bad), 2);
    cr_assert_eq(d.bytes, 2048);
}

Test(cli_opt, choices_store_an_index_or_a_value) {
    char *ok[] = {"t", "--pick", "auto", "--mode", "slow"};
    cr_assert_eq(parse(ARGC(ok), ok), 0);
    cr_assert_eq(d.pick, 2);
    cr_assert_eq(d.mode, 20);
    char *bad[] = {"t", "--mode", "Fast"};
    cr_assert_eq(parse(ARGC(bad), bad), 2);
    cr_assert_eq(d.mode, 20);
    expect_stderr("pivot t: --mode expects fast, slow or auto, got 'Fast'\n");
}

Test(cli_opt, multi_valued_callback_takes_values_up_to_the_next_option) {
    char *ok[] = {"t", "--item", "k:1", "k:2", "k:3", "--count", "9"};
    cr_assert_eq(parse(ARGC(ok), ok), 0);
    cr_assert_eq(d.items, 3);
    cr_assert_eq(d.sum, 6);
    cr_assert_eq(d.i, 9);
    char *eq[] = {"t", "--item=k:10", "k:5"};
    cr_assert_eq(parse(ARGC(eq), eq), 0);
    cr_assert_eq(d.sum, 21);
    char *none[] = {"t", "--item", "--count", "1"};
    cr_assert_eq(parse(ARGC(none), none), 2, "an option is not a value of --item");
    char *bad[] = {"t", "--item", "k:1", "x"};
    cr_assert_eq(parse(ARGC(bad), bad), 2);
    expect_stderr("pivot t: --item needs a value\n"
                            "pivot t: --item expects k:N items, got 'x'\n");
}

Test(cli_opt, flags_take_no_value) {
    char *ok[] = {"t", "--verbose", "--no-on"};
    cr_assert_eq(parse(ARGC(ok), ok), 0);
    cr_assert_eq(d.flag, 1);
    cr_assert_eq(d.on, 0);
    char *eq[] = {"t", "--verbose=1"};
    cr_assert_eq(parse(ARGC(eq), eq), 2);
    expect_stderr("pivot t: --verbose takes no value\n");
}

Test(cli_opt, missing_value_and_unknown_options) {
    char *miss[] = {"t", "--count"};
    cr_assert_eq(parse(ARGC(miss), miss), 2);
    char *unk[] = {"t", "--counts", "1"};
    cr_assert_eq(parse(ARGC(unk), unk), 2, "a longer name is another option");
    char *pre[] = {"t", "--coun=1"};
    cr_assert_eq(parse(ARGC(pre), pre), 2, "a prefix is not an abbreviation");
    char *pos[] = {"t", "stray"};
    cr_assert_eq(parse(ARGC(pos), pos), 2);
    cr_assert_eq(d.i, 7);
    expect_stderr("pivot t: --count needs a value\n"
                            "pivot t: unknown option '--counts' (see pivot t --help)\n"
                            "pivot t: unknown option '--coun=1' (see pivot t --help)\n"
                            "pivot t: unknown option 'stray' (see pivot t --help)\n");
}

Test(cli_opt, errors_stop_at_the_first_bad_argument) {
    char *argv[] = {"t", "--count", "500", "--name", "late"};
    cr_assert_eq(parse(ARGC(argv), argv), 2);
    cr_assert_str_eq(d.s, "default", "arguments after the error are not read");
}

Test(cli_opt, help_is_reported_not_printed) {
    char *h[] = {"t", "--count", "3", "-h"};
    cr_assert_eq(parse(ARGC(h), h), CLI_HELP);
    char *help[] = {"t", "--help", "--bogus"};
    cr_assert_eq(parse(ARGC(help), help), CLI_HELP);
    char *val[] = {"t", "--name", "--help"};
    cr_assert_eq(parse(ARGC(val), val), 0, "a value that reads --help is still a value");
    cr_assert_str_eq(d.s, "--help");
}

Test(cli_opt, environment_is_the_fallback_and_a_flag_wins) {
    setenv("T_COUNT", "11", 1);
    setenv("T_NAME", "from-env", 1);
    char *none[] = {"t"};
    cr_assert_eq(parse(ARGC(none), none), 0);
    cr_assert_eq(d.i, 11);
    cr_assert_str_eq(d.s, "from-env");
    char *flag[] = {"t", "--count", "12"};
    cr_assert_eq(parse(ARGC(flag), flag), 0);
    cr_assert_eq(d.i, 12);
    reset();
    setenv("T_NAME", "", 1); /* empty: as if unset */
    cr_assert_eq(parse(ARGC(none), none), 0);
    cr_assert_str_eq(d.s, "default");
    setenv("T_COUNT", "lots", 1);
    cr_assert_eq(parse(ARGC(flag), flag), 2, "a bad environment value is an error");
    expect_stderr("pivot t: T_COUNT expects an integer in [-5, 100], got 'lots'\n");
}

Test(cli_opt, a_flags_variable_is_1_or_0) {
    char *none[] = {"t"};
    setenv("T_VERBOSE", "1", 1);
    cr_assert_eq(parse(ARGC(none), none), 0);
    cr_assert_eq(d.flag, 1);
    reset();
    setenv("T_VERBOSE", "true", 1);
    cr_assert_eq(parse(ARGC(none), none), 0);
    cr_assert_eq(d.flag, 1);
    reset();
    setenv("T_VERBOSE", "0", 1);
    cr_assert_eq(parse(ARGC(none), none), 0);
    cr_assert_eq(d.flag, 0, "0 does not give the flag");
    setenv("T_VERBOSE", "false", 1);
    cr_assert_eq(parse(ARGC(none), none), 0);
    cr_assert_eq(d.flag, 0);
    setenv("T_VERBOSE", "yes", 1);
    cr_assert_eq(parse(ARGC(none), none), 2);
    expect_stderr("pivot t: T_VERBOSE expects 1, true, 0 or false, got 'yes'\n");
}

Test(cli_opt, several_tables_are_searched_in_order) {
    int extra = 0, shadow = 0;
    cli_opt more[] = {
        {.name = "--extra", .kind = CLI_INT, .dst = &extra, .lo = 0, .hi = 9},
        {.name = "--count", .kind = CLI_INT, .dst = &shadow, .lo = 0, .hi = 9},
        {.name = NULL},
    };
    const cli_opt *const both[] = {table, more, NULL};
    char *argv[] = {"t", "--extra", "4", "--count", "5"};
    cr_assert_eq(cli_parse("t", ARGC(argv), argv, both), 0);
    cr_assert_eq(extra, 4);
    cr_assert_eq(d.i, 5, "the first table that names an option owns it");
    cr_assert_eq(shadow, 0);
}

Test(cli_opt, number_helpers_are_strict) {
    long l;
    double x;
    size_t b;
    cr_assert_eq(cli_parse_int(" 5", 0, 9, &l), 0); /* strtol skips leading space */
    cr_assert_eq(cli_parse_int("5 ", 0, 9, &l), -1);
    cr_assert_eq(cli_parse_int("", 0, 9, &l), -1);
    cr_assert_eq(cli_parse_float("inf", -INFINITY, INFINITY, &x), -1);
    cr_assert_eq(cli_parse_float("1e3", 0, 1000, &x), 0);
    cr_assert_float_eq(x, 1000.0, 1e-9);
    cr_assert_eq(cli_parse_bytes("-1", &b), -1);
    cr_assert_eq(cli_parse_bytes("1e30G", &b), -1, "too large for size_t");
    cr_assert_eq(cli_parse_bytes("512", &b), 0);
    cr_assert_eq(b, 512);
}
