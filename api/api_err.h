/* api_err: the OpenAI error envelope — every error reply of the server is
 * described by one api_error and rendered by api_error_body, so status codes,
 * types and codes stay consistent across handlers.
 *
 *   {"error": {"message": "...", "type": "invalid_request_error",
 *              "param": "temperature" | null, "code": "..." | null}}
 *
 * The type follows the status (400 invalid_request_error, 401
 * authentication_error, 404 not_found_error, 429 rate_limit_error, 503
 * service_unavailable_error, ...); callers set status, param, code and the
 * message only. */
#ifndef PIVOT_API_ERR_H
#define PIVOT_API_ERR_H

#include <stddef.h>

typedef struct {
    int status;        /* HTTP status; 0 = no error */
    char param[64];    /* offending request field, "" = null */
    char code[48];     /* machine-readable code, "" = null */
    char message[512];
} api_error;

/* Fills e (printf-style message). param and code may be NULL. */
void api_err_set(api_error *e, int status, const char *param, const char *code, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
/* The error type string for a status ("invalid_request_error", ...). */
const char *api_err_type(int status);
/* The reason phrase for a status line ("Bad Request"). */
const char *api_status_text(int status);
/* The envelope as a malloc'ed NUL-terminated JSON string (caller frees), or
 * NULL when out of memory. */
char *api_error_body(const api_error *e);

#endif
