/* api_stop: stop strings across token boundaries; partial stops never leak. */
#include <criterion/criterion.h>
#include <string.h>

#include "api_stop.h"

/* Feeds pieces; returns everything emitted (plus the flush when no stop
 * matched) and whether a stop matched. */
static int feed(char *const *stops, int n, const char *const *pieces, int np, char *all,
                int check_no_partial) {
    api_stop s;
    api_stop_init(&s, stops, n);
    char out[1024];
    size_t len = 0, k;
    all[0] = 0;
    for (int i = 0; i < np; i++) {
        int hit = api_stop_push(&s, pieces[i], strlen(pieces[i]), out, &k);
        memcpy(all + len, out, k);
        len += k;
        all[len] = 0;
        if (check_no_partial)
            for (int j = 0; j < n; j++) /* no emitted text ends inside a stop string */
                for (size_t m = 1; m < strlen(stops[j]) && m <= len; m++)
                    cr_expect(hit || memcmp(all + len - m, stops[j], m), "partial '%s' leaked in '%s'",
                              stops[j], all);
        if (hit) return 1;
    }
    len += api_stop_flush(&s, all + len);
    all[len] = 0;
    return 0;
}

Test(api_stop, across_boundaries) {
    char *stops[] = {"###", "\nUser:"};
    char all[1024];
    const char *p1[] = {"Hello", " wor", "ld#", "#", "# more"};
    cr_expect_eq(feed(stops, 2, p1, 5, all, 1), 1);
    cr_expect_str_eq(all, "Hello world");
    const char *p2[] = {"a\n", "Us", "er", ": hi"};
    cr_expect_eq(feed(stops, 2, p2, 4, all, 1), 1);
    cr_expect_str_eq(all, "a");
    const char *p3[] = {"a\n", "Us", "ed to"};
    cr_expect_eq(feed(stops, 2, p3, 3, all, 1), 0);
    cr_expect_str_eq(all, "a\nUsed to");
    const char *p4[] = {"ends with #", "#"}; /* never completed: flushed at the end */
    cr_expect_eq(feed(stops, 2, p4, 2, all, 1), 0);
    cr_expect_str_eq(all, "ends with ##");
}

Test(api_stop, earliest_match_and_single_piece) {
    char *stops[] = {"cd", "b"};
    char all[256];
    const char *p[] = {"abcd"};
    cr_expect_eq(feed(stops, 2, p, 1, all, 0), 1);
    cr_expect_str_eq(all, "a");
    char *s2[] = {"stop"};
    const char *q[] = {"xxstopyy"};
    cr_expect_eq(feed(s2, 1, q, 1, all, 0), 1);
    cr_expect_str_eq(all, "xx");
}

Test(api_stop, no_stops_passes_through) {
    char all[256];
    const char *p[] = {"a", "b", "c"};
    cr_expect_eq(feed(NULL, 0, p, 3, all, 0), 0);
    cr_expect_str_eq(all, "abc");
}

Test(api_stop, overlapping_prefixes) {
    char *stops[] = {"aab"};
    char all[256];
    const char *p[] = {"a", "a", "a", "b", "z"};
    cr_expect_eq(feed(stops, 1, p, 5, all, 0), 1); /* "a" is released once "aaa" shows it cannot start the match */
    cr_expect_str_eq(all, "a");
    const char *q[] = {"xa", "ac", "aa"};
    cr_expect_eq(feed(stops, 1, q, 3, all, 0), 0);
    cr_expect_str_eq(all, "xaacaa");
}

Test(api_stop, utf8_stop) {
    char *stops[] = {"\xc3\xa9t\xc3\xa9"}; /* "été" */
    char all[256];
    const char *p[] = {"l'\xc3\xa9", "t\xc3\xa9 dernier"};
    cr_expect_eq(feed(stops, 1, p, 2, all, 1), 1);
    cr_expect_str_eq(all, "l'");
}
