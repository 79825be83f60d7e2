#include "pverr.h"

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
