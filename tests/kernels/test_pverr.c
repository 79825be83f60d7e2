/* pverr: the error-code table. The codes are the machine-readable part of
 * every fallible call and their messages reach users (CLI errors, logs), so
 * each code must be distinct, negative (0 is success) and have a message of
 * its own; a code outside the table must still get a message. */
#include <criterion/criterion.h>
#include <limits.h>
#include <string.h>

#include "pverr.h"

struct entry {
    const char *name;
    int code;
    const char *msg;
};

/* The same X-macro the header builds the enum from, so a code added there
 * is checked here without editing this file. */
static const struct entry table[] = {
#define PV_ERR_ENTRY(name, val, msg) {#name, name, msg},
    PV_ERRNO_MAP(PV_ERR_ENTRY)
#undef PV_ERR_ENTRY
};
static const int n_table = (int)(sizeof table / sizeof table[0]);

static int lowest_code(void) {
    int lo = 0;
    for (int i = 0; i < n_table; i++)
        if (table[i].code < lo) lo = table[i].code;
    return lo;
}

Test(pverr, ok_is_zero_and_errors_are_negative) {
    cr_assert_eq(PV_OK, 0);
    cr_assert_str_eq(pv_strerror(PV_OK), "ok");
    cr_assert_gt(n_table, 1);
    for (int i = 0; i < n_table; i++) {
        if (strcmp(table[i].name, "PV_OK") == 0) continue;
        cr_assert_lt(table[i].code, 0, "%s = %d: errors are negative", table[i].name, table[i].code);
        cr_assert_eq(strncmp(table[i].name, "PV_E", 4), 0, "%s: error names start with PV_E", table[i].name);
    }
}

Test(pverr, codes_are_distinct) {
    for (int i = 0; i < n_table; i++)
        for (int j = i + 1; j < n_table; j++)
            cr_assert_neq(table[i].code, table[j].code, "%s and %s share code %d", table[i].name,
                          table[j].name, table[i].code);
}

Test(pverr, every_code_has_its_own_nonempty_message) {
    const char *unknown = pv_strerror(INT_MAX);
    for (int i = 0; i < n_table; i++) {
        const char *m = pv_strerror(table[i].code);
        cr_assert_not_null(m, "%s", table[i].name);
        cr_assert_gt(strlen(m), 0, "%s: empty message", table[i].name);
        cr_assert_str_eq(m, table[i].msg, "%s: message is not the table's", table[i].name);
        cr_assert_str_neq(m, unknown, "%s reads as an unknown code", table[i].name);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(m, pv_strerror(table[j].code), "%s and %s print the same message",
                              table[i].name, table[j].name);
    }
}

Test(pverr, messages_are_static) {
    /* Callers keep the pointer (no ownership, no free): the same call must
     * give the same storage, and a later call must not overwrite it. */
    const char *a = pv_strerror(PV_EINVAL);
    const char *b = pv_strerror(PV_ENOMEM);
    cr_assert_eq(a, pv_strerror(PV_EINVAL));
    cr_assert_str_eq(a, "invalid argument");
    cr_assert_str_eq(b, "out of memory");
}

Test(pverr, unknown_codes_get_a_message) {
    const int lo = lowest_code();
    const int unknown[] = {1, 2, 42, lo - 1, lo - 100, INT_MAX, INT_MIN, INT_MIN + 1};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *m = pv_strerror(unknown[i]);
        cr_assert_not_null(m, "code %d", unknown[i]);
        cr_assert_str_eq(m, "unknown error", "code %d", unknown[i]);
    }
}
