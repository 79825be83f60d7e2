/* kv_rot's head_dim-64 path (rot64: four registers, signs folded in)
 * against the general loops of the same file (signs, then fwht through
 * memory; the inverse the other way round): the same bits, since the mixed
 * cache's stored records and the quality figures were made with the loops.
 * Includes the source file to reach both. */
#include "../../cache/kv_rot.c"

#include <criterion/criterion.h>
#include <string.h>
#include "../test_rand.h"

Test(kv_rot_avx512, rot64_matches_loops) {
    if (!rot64_ok(64)) cr_skip_test("no AVX-512 here");
    float signs[64], x[64], ref[64], got[64];
    unsigned seed = 9;
    for (int rep = 0; rep < 300; rep++) {
        kvr_signs(rep % 30, rep % 3, 64, signs);
        for (int i = 0; i < 64; i++) x[i] = frand(&seed) * (i % 11 ? 1.0f : 50.0f) + (rep % 7 == 0 ? 1e-3f : 0.0f);
        for (int inverse = 0; inverse < 2; inverse++) {
            memcpy(ref, x, sizeof x), memcpy(got, x, sizeof x);
            if (!inverse) {
                for (int i = 0; i < 64; i++) ref[i] *= signs[i];
                fwht(ref, 64);
            } else {
                fwht(ref, 64);
                for (int i = 0; i < 64; i++) ref[i] *= signs[i];
            }
            rot64(signs, got, inverse);
            cr_assert(memcmp(ref, got, sizeof ref) == 0, "rep %d inverse %d differs", rep, inverse);
        }
        /* and the public entry points take it */
        memcpy(got, x, sizeof x);
        kvr_forward(signs, 64, got);
        kvr_inverse(signs, 64, got);
        for (int i = 0; i < 64; i++) cr_assert_float_eq(got[i], x[i], 1e-5f * (1.0f + fabsf(x[i])) * 50.0f);
    }
}
