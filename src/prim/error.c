/* error.c - error codes, names, messages and the per-thread last error. */
#include "km_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#define KM__MSG_MAX 256

/* Per-thread storage: fixed-size, so recording an error never allocates. */
static _Thread_local km_error tl_err = { KM_OK, "no error", KM_NATIVE_NONE, 0 };
static _Thread_local char tl_msg[KM__MSG_MAX];

const char *km_strerror(int code)
{
    switch ((km_error_code)code) {
#define KM_X_STR_(name, value, msg) case name: return #name ": " msg;
        KM_ERROR_LIST(KM_X_STR_)
#undef KM_X_STR_
    }
    return "unknown error";
}

const char *km_err_name(int code)
{
    switch ((km_error_code)code) {
#define KM_X_NAME_(name, value, msg) case name: return #name;
        KM_ERROR_LIST(KM_X_NAME_)
#undef KM_X_NAME_
    }
    return "KM_E_UNKNOWN";
}

const km_error *km_error_last(void)
{
    return &tl_err;
}

void km_error_clear(void)
{
    tl_err.code = KM_OK;
    tl_err.message = "no error";
    tl_err.native_kind = KM_NATIVE_NONE;
    tl_err.native = 0;
}

static int record(int code, km_native_kind kind, unsigned long native, const char *fmt,
                  va_list ap)
{
    /* formatted aside first: a caller may wrap the last error's own message
     * ("...: %s", km_error_last()->message), which lives in tl_msg */
    char m[KM__MSG_MAX];

    if (fmt == NULL || fmt[0] == '\0') {
        snprintf(m, sizeof m, "%s", km_strerror(code));
    } else {
        vsnprintf(m, sizeof m, fmt, ap);
    }
    memcpy(tl_msg, m, sizeof tl_msg);
    tl_err.code = code;
    tl_err.message = tl_msg;
    tl_err.native_kind = kind;
    tl_err.native = native;
    return code;
}

int km__err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(code, KM_NATIVE_NONE, 0, fmt, ap);
    va_end(ap);
    return code;
}

int km__err_native(int code, km_native_kind kind, unsigned long native, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(code, kind, native, fmt, ap);
    va_end(ap);
    return code;
}

int km__err_over(int code, const char *fmt, ...)
{
    char prev[KM__MSG_MAX];
    km_native_kind kind = tl_err.native_kind;
    unsigned long native = tl_err.native;
    size_t n;
    va_list ap;

    if (kind == KM_NATIVE_NONE || tl_err.code != code) {
        va_start(ap, fmt);
        record(code, KM_NATIVE_NONE, 0, fmt, ap);
        va_end(ap);
        return code;
    }
    snprintf(prev, sizeof prev, "%s", tl_err.message ? tl_err.message : "");
    va_start(ap, fmt);
    record(code, kind, native, fmt, ap);
    va_end(ap);
    n = strlen(tl_msg);
    if (prev[0] != '\0' && n + 4 < sizeof tl_msg) {
        size_t pl = strlen(prev);
        if (pl > sizeof tl_msg - n - 4)
            pl = sizeof tl_msg - n - 4; /* shortened: the reason comes first */
        tl_msg[n++] = ' ';
        tl_msg[n++] = '(';
        memcpy(tl_msg + n, prev, pl);
        tl_msg[n + pl] = ')';
        tl_msg[n + pl + 1] = '\0';
    }
    return code;
}

int km_backend_error(int code, km_native_kind kind, unsigned long native, const char *fmt, ...)
{
    va_list ap;
    if (code >= 0 || code < KM_E__LAST)
        code = KM_E_BACKEND;
    va_start(ap, fmt);
    record(code, kind, native, fmt, ap);
    va_end(ap);
    return code;
}

int km__err_ossl(int code, const char *fmt, ...)
{
    va_list ap;
    unsigned long e = ERR_peek_error();
    ERR_clear_error();
    va_start(ap, fmt);
    record(code, e ? KM_NATIVE_OPENSSL : KM_NATIVE_NONE, e, fmt, ap);
    va_end(ap);
    return code;
}
