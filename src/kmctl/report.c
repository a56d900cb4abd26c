/* report.c - kmctl's exit codes, error messages, and the formatting of ids, times and numbers. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmctl.h"

/* The exit code of a libkm error class (kmctl(1), EXIT STATUS). */
int kmctl_exit_code(int km_rc)
{
    switch (km_rc) {
    case KM_OK:
        return KMCTL_EXIT_OK;
    case KM_E_INVALID:
        return KMCTL_EXIT_USAGE;
    case KM_E_NOTFOUND:
        return KMCTL_EXIT_NOTFOUND;
    case KM_E_EXISTS:
        return KMCTL_EXIT_EXISTS;
    case KM_E_POLICY:
    case KM_E_DENIED:
    case KM_E_STATE:
    case KM_E_USAGE:
    case KM_E_LIMIT:
        return KMCTL_EXIT_DENIED;
    case KM_E_AUTH:
        return KMCTL_EXIT_AUTH;
    case KM_E_INTEGRITY:
    case KM_E_VERIFY:
    case KM_E_CORRUPT:
        return KMCTL_EXIT_INTEGRITY;
    case KM_E_BACKEND:
    case KM_E_IO:
    case KM_E_FULL:
    case KM_E_CRYPTO:
        return KMCTL_EXIT_BACKEND;
    case KM_E_UNSUPPORTED:
        return KMCTL_EXIT_UNSUPPORTED;
    default:
        return KMCTL_EXIT_OTHER;
    }
}

static void vmsg(const char *prefix, const char *fmt, va_list ap, const char *tail)
{
    fputs("kmctl: ", stderr);
    if (prefix != NULL)
        fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    if (tail != NULL) {
        fputs(": ", stderr);
        fputs(tail, stderr);
    }
    fputc('\n', stderr);
}

/* libkm's advice in C-API words, and what kmctl users do instead (issue 22 item 7). */
static const struct {
    const char *api, *cli;
} advice[] = {
    { "KM_DECRYPT_ALLOW_COMPROMISED", "--allow-compromised" },
    { "use km_datakey_decrypt or km_datakey_pair_decrypt", "use 'kmctl datakey decrypt'" },
};

/* libkm's message `msg` in kmctl's words into buf: without a leading "km_function: "
 * (kmctl says itself what failed) and with C-API advice replaced by kmctl's flags and
 * commands. */
static const char *cli_words(const char *msg, char *buf, size_t cap)
{
    size_t i, n = 0, j;

    if (strncmp(msg, "km_", 3) == 0) {
        for (i = 3; (msg[i] >= 'a' && msg[i] <= 'z') || (msg[i] >= '0' && msg[i] <= '9')
                    || msg[i] == '_'; i++)
            ;
        if (msg[i] == ':' && msg[i + 1] == ' ')
            msg += i + 2;
    }
    while (*msg != '\0' && n + 1 < cap) {
        for (j = 0; j < sizeof advice / sizeof advice[0]; j++)
            if (strncmp(msg, advice[j].api, strlen(advice[j].api)) == 0)
                break;
        if (j < sizeof advice / sizeof advice[0]) {
            size_t len = strlen(advice[j].cli);
            if (n + len >= cap)
                break;
            memcpy(buf + n, advice[j].cli, len);
            n += len;
            msg += strlen(advice[j].api);
        } else {
            buf[n++] = *msg++;
        }
    }
    buf[n] = '\0';
    return buf;
}

/*
 * Reports a failed libkm call as "kmctl: <what failed>: <libkm's message>" and
 * returns its exit code. Call it right after the failing call: the last error
 * is valid only until the next libkm call.
 */
int kmctl_lib_error(int km_rc, const char *fmt, ...)
{
    const km_error *e = km_error_last();
    char buf[1024];
    const char *msg = (e->code == km_rc && e->message != NULL && e->message[0] != '\0')
                          ? cli_words(e->message, buf, sizeof buf) : km_strerror(km_rc);
    va_list ap;

    va_start(ap, fmt);
    vmsg(NULL, fmt, ap, msg);
    va_end(ap);
    return kmctl_exit_code(km_rc);
}

/* Reports an error of kmctl itself ("kmctl: <message>") and returns exit_code. */
int kmctl_error(int exit_code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg(NULL, fmt, ap, NULL);
    va_end(ap);
    return exit_code;
}

void kmctl_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("warning: ", fmt, ap, NULL);
    va_end(ap);
}

/* A command or option of the grammar whose library function is not in this libkm. */
int kmctl_unsupported(const char *what)
{
    return kmctl_error(KMCTL_EXIT_UNSUPPORTED, "'%s' is not available in this libkm version", what);
}

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void kmctl_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* ISO 8601 UTC ("2024-05-01T12:00:00Z"), or "-" for 0 (not set). */
void kmctl_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t == 0 || gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(out, "-");
}

/* Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SSZ" (UTC). Returns 0 or -1. */
int kmctl_parse_date(const char *s, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    struct tm tm, back;
    time_t t;

    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    if (s[n] != '\0') {
        int m = 0;
        if (sscanf(s + n, "T%2d:%2d:%2dZ%n", &h, &mi, &sec, &m) != 3 || m != 10 || s[n + m] != '\0')
            return -1;
    }
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_year != y - 1900 ||
        back.tm_mon != mo - 1 || back.tm_mday != d || back.tm_hour != h || back.tm_min != mi ||
        back.tm_sec != sec)
        return -1;
    *out = (int64_t)t;
    return 0;
}

/* Parses a decimal integer 1..max (no sign, no spaces). Returns 0 or -1. */
int kmctl_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}
