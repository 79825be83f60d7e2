/* Placeholder until the mixed cache lands: policies other than full are
 * rejected as unsupported. */
#include "kv_mixed.h"

#include "pverr.h"

int kv_create_mixed(const kv_shape *s, const kv_policy *p, kv_cache **out) {
    (void)s;
    (void)p;
    *out = NULL;
    return PV_EUNSUPPORTED;
}
