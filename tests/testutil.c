/* testutil.c - helpers shared by the Check suites. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testutil.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    char *d;
    snprintf(tmpl, sizeof tmpl, "%s/km-test.XXXXXX", base && *base ? base : "/tmp");
    d = mkdtemp(tmpl);
    ck_assert_msg(d != NULL, "mkdtemp failed");
    return strdup(d);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_vault_open(km_ctx **out, const char *dir, const char *pass, uint32_t flags)
{
    char path[4200];
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    snprintf(path, sizeof path, "lmdb:%s/vault", dir);
    o.flags = flags;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN;
    return km_open(out, path, &o);
}

km_ctx *tu_vault(const char *dir)
{
    km_ctx *ctx = NULL;
    int rc = tu_vault_open(&ctx, dir, TU_PASS, KM_OPEN_CREATE);
    ck_assert_msg(rc == KM_OK, "km_open: %s (%s)", km_err_name(rc), km_error_last()->message);
    return ctx;
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

int tu_memmem(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t needle_len)
{
    return memmem(hay, hay_len, needle, needle_len) != NULL;
}

uint8_t *tu_unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex), i;
    uint8_t *out;
    if (n % 2)
        return NULL;
    out = malloc(n / 2 + 1);
    if (out == NULL)
        return NULL;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return out;
}

int tu_all_zero(const uint8_t *p, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}
