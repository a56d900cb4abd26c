/* tls.c - kmd's TLS listener (docs/KMD.md): mutual TLS 1.2+ with the
 * configured CA, server certificate and key; a client must present a
 * certificate of that CA, and its subject's Common Name is mapped to a
 * principal. OpenSSL directly: layering debt (tests/layers.debt) until the
 * primitives' TLS module (src/prim/tls, issue 19's follow-up) serves kmd too. */
#include "kmd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static SSL_CTX *tls_ctx;

static void why(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    snprintf(err, cap, "%s: %s", what, e != 0 ? ERR_reason_error_string(e) : "failed");
    ERR_clear_error();
}

int kmd_tls_init(const kmd_config *c, char *err, size_t cap)
{
    SSL_CTX *x = SSL_CTX_new(TLS_server_method());

    if (x == NULL) {
        why(err, cap, "TLS");
        return -1;
    }
    if (SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION) != 1
        || SSL_CTX_use_certificate_chain_file(x, c->tls_cert) != 1
        || SSL_CTX_use_PrivateKey_file(x, c->tls_key, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(x) != 1
        || SSL_CTX_load_verify_locations(x, c->tls_ca, NULL) != 1) {
        why(err, cap, "tls_cert, tls_key or tls_ca");
        SSL_CTX_free(x);
        return -1;
    }
    /* a client certificate of the CA is required: no certificate, another
     * CA, an expired certificate all fail the handshake */
    SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(x, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    tls_ctx = x;
    return 0;
}

void kmd_tls_done(void)
{
    SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
}

int kmd_tls_accept(int fd, int64_t (*now_ms)(void), int64_t deadline, void **out, char *cn,
                   size_t cn_cap, char *err, size_t err_cap)
{
    SSL *s = SSL_new(tls_ctx);
    X509 *peer = NULL;
    int rc, n;

    *out = NULL;
    if (s == NULL || SSL_set_fd(s, fd) != 1) {
        why(err, err_cap, "TLS");
        SSL_free(s);
        return -1;
    }
    /* the socket's receive timeout is short: retry until the deadline */
    while ((rc = SSL_accept(s)) != 1) {
        int e = SSL_get_error(s, rc);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || now_ms() >= deadline) {
            long v = SSL_get_verify_result(s);
            if (v != X509_V_OK)
                snprintf(err, err_cap, "TLS handshake refused: %s",
                         X509_verify_cert_error_string(v));
            else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                snprintf(err, err_cap, "TLS handshake not finished in time");
            else
                why(err, err_cap, "TLS handshake refused");
            SSL_free(s);
            ERR_clear_error();
            return -1;
        }
    }
    peer = SSL_get1_peer_certificate(s);
    n = peer != NULL ? X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                                 (int)cn_cap)
                     : -1;
    X509_free(peer);
    if (n <= 0 || (size_t)n >= cn_cap || strlen(cn) != (size_t)n) {
        snprintf(err, err_cap, "TLS client certificate without a usable Common Name");
        SSL_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

ssize_t kmd_tls_read(void *ssl, uint8_t *b, size_t n)
{
    int rc = SSL_read((SSL *)ssl, b, n > 1u << 30 ? 1 << 30 : (int)n);
    if (rc > 0)
        return rc;
    switch (SSL_get_error((SSL *)ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        ERR_clear_error();
        errno = EIO;
        return -1;
    }
}

int kmd_tls_pending(void *ssl)
{
    return SSL_pending((SSL *)ssl) > 0;
}

ssize_t kmd_tls_write(void *ssl, const uint8_t *b, size_t n)
{
    int rc = SSL_write((SSL *)ssl, b, n > 1u << 30 ? 1 << 30 : (int)n);
    if (rc > 0)
        return rc;
    ERR_clear_error();
    errno = EIO;
    return -1;
}

void kmd_tls_free(void *ssl)
{
    if (ssl != NULL) {
        (void)SSL_shutdown((SSL *)ssl);
        SSL_free((SSL *)ssl);
    }
}
