/* tls.c - kmd's TLS listener (docs/KMD.md): mutual TLS 1.2+ with the
 * configured CA, server certificate and key, over the primitives' TLS module
 * (src/prim/tls.h; kmd includes no OpenSSL header). A client must present a
 * certificate of that CA, valid now and for clientAuth; its subject's Common
 * Name (printable ASCII, one CN) is mapped to a principal. */
#include "kmd.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static km__tls_ctx *tls_ctx;

/* the thread's last error (the TLS module records it) into err */
static void why(char *err, size_t cap)
{
    snprintf(err, cap, "%s", km_error_last()->message);
}

int kmd_tls_init(const kmd_config *c, char *err, size_t cap)
{
    km__tls_conf conf = { "tls", c->tls_ca, c->tls_cert, c->tls_key, KM_E_AUTH };

    if (km__tls_server_ctx_new(&conf, &tls_ctx) != KM_OK) {
        why(err, cap);
        return -1;
    }
    return 0;
}

void kmd_tls_done(void)
{
    km__tls_ctx_free(tls_ctx);
    tls_ctx = NULL;
}

int kmd_tls_accept(int *fd, int64_t deadline, void **out, char *cn, size_t cn_cap, char *err,
                   size_t err_cap)
{
    km__tls *t = NULL;
    int s = *fd;

    *out = NULL;
    *fd = -1;   /* the connection owns the socket from here on, even on failure */
    if (km__tls_accept(tls_ctx, s, (long long)deadline, &t) != KM_OK) {
        why(err, err_cap);
        return -1;
    }
    if (km__tls_peer_cn(t, cn, cn_cap) != KM_OK) {
        snprintf(err, err_cap, "TLS client certificate without a usable Common Name: %s",
                 km_error_last()->message);
        km__tls_free(t, 1);
        return -1;
    }
    *out = t;
    return 0;
}

ssize_t kmd_tls_read(void *t, uint8_t *b, size_t n, int64_t deadline)
{
    size_t got = 0;

    if (km__tls_read((km__tls *)t, b, n, &got, (long long)deadline) == KM_OK)
        return (ssize_t)got;   /* 0: the client closed */
    errno = km_error_last()->native_kind == KM_NATIVE_ERRNO
                    && km_error_last()->native == ETIMEDOUT
                ? EAGAIN
                : EIO;
    return -1;
}

ssize_t kmd_tls_write(void *t, const uint8_t *b, size_t n, int64_t deadline)
{
    if (km__tls_write((km__tls *)t, b, n, (long long)deadline) == KM_OK)
        return (ssize_t)n;
    errno = EIO;
    return -1;
}

void kmd_tls_free(void *t)
{
    km__tls_free((km__tls *)t, 1);
}
