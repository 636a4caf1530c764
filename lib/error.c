/* error.c — status strings and the per-thread last-error message. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DV_ERROR_CAP 512

/* Per thread, so concurrent callers never see each other's messages. */
static _Thread_local char tl_message[DV_ERROR_CAP];

const char *dv365_status_string(dv365_status status)
{
    switch (status) {
    case DV365_OK: return "ok";
    case DV365_E_NULL: return "NULL argument";
    case DV365_E_INVALID: return "invalid argument";
    case DV365_E_NONFINITE: return "non-finite value";
    case DV365_E_NOMEM: return "out of memory";
    case DV365_E_IO: return "I/O error";
    case DV365_E_PARSE: return "parse error";
    case DV365_E_CONFIG: return "invalid configuration";
    case DV365_E_NOT_FOUND: return "not found";
    case DV365_E_FORMAT: return "malformed data";
    case DV365_E_CHECKSUM: return "checksum mismatch";
    case DV365_E_VERSION: return "unsupported version";
    case DV365_E_MISMATCH: return "mismatch";
    case DV365_E_TIMESTAMP: return "timestamp out of range";
    case DV365_E_BUFFER_TOO_SMALL: return "buffer too small";
    case DV365_E_THREAD: return "thread error";
    case DV365_E_STATE: return "invalid state";
    case DV365_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *dv365_last_error(void) { return tl_message; }

void dv_clear_error(void) { tl_message[0] = '\0'; }

dv365_status dv_error(dv365_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_message, sizeof tl_message, fmt, ap);
    va_end(ap);
    return st;
}

dv365_status dv_error_context(dv365_status st, const char *fmt, ...)
{
    char prefix[DV_ERROR_CAP], old[DV_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tl_message, sizeof old);
    snprintf(tl_message, sizeof tl_message, "%.200s: %.300s", prefix, old);
    return st;
}
