#include "pverr.h"

#include <stdarg.h>
#include <stdio.h>

const char *pv_strerror(int code) {
    switch (code) {
#define PV_ERR_CASE(name, val, msg) \
    case val:                       \
        return msg;
        PV_ERRNO_MAP(PV_ERR_CASE)
#undef PV_ERR_CASE
    }
    return "unknown error";
}

int pv_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
