/* pverr: Pivot's error codes, one table for every module.
 *
 * Every fallible function returns 0 (PV_OK) or one of these negative codes.
 * Modules that can say more (the GGUF loader, the tokenizer) also fill a
 * caller-provided message buffer; the code stays the machine-readable part. */
#ifndef PIVOT_PVERR_H
#define PIVOT_PVERR_H

#include <stddef.h>

#define PV_ERRNO_MAP(X)                                                  \
    X(PV_OK, 0, "ok")                                                    \
    X(PV_ENOMEM, -1, "out of memory")                                    \
    X(PV_EINVAL, -2, "invalid argument")                                 \
    X(PV_EIO, -3, "i/o error")                                           \
    X(PV_EFORMAT, -4, "malformed file")                                  \
    X(PV_EUNSUPPORTED, -5, "unsupported")                                \
    X(PV_ERANGE, -6, "value out of range")                               \
    X(PV_ENOTFOUND, -7, "not found")                                     \
    X(PV_ETRUNCATED, -8, "file truncated")                               \
    X(PV_ECTXFULL, -9, "context full")                                   \
    X(PV_ESPACE, -10, "buffer too small")                                \
    X(PV_ENODEV, -11, "device not available")                           \
    X(PV_EBUSY, -12, "busy: the queue is full")                          \
    X(PV_ETOOBIG, -13, "larger than the whole capacity")

enum pv_errno {
#define PV_ERR_ENUM(name, val, msg) name = val,
    PV_ERRNO_MAP(PV_ERR_ENUM)
#undef PV_ERR_ENUM
};

/* Static string for a code; unknown codes get "unknown error". */
const char *pv_strerror(int code);

/* Writes the printf-style message into err (when err is non-NULL and errlen
 * > 0) and returns code, so a failing path is one line:
 *   return pv_fail(err, errlen, PV_EINVAL, "bad knob '%s'", name); */
__attribute__((format(printf, 4, 5))) int pv_fail(char *err, size_t errlen, int code,
                                                  const char *fmt, ...);

#endif
