/*
 * tls.c - mutual TLS over non-blocking sockets with deadlines (tls.h): the
 * client side of the kmip backend and the server side of a daemon.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls.h"
#include "km_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct km__tls_ctx {
    SSL_CTX *ssl_ctx;
    int server;
    int fail_code;
    char label[32];
};

struct km__tls {
    const km__tls_ctx *ctx;
    SSL *ssl;
    int fd;
    pid_t pid;         /* the process that made the connection */
    char peer[300];    /* host:port, or the peer's address, for messages */
};

long long km__tls_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ errors */

/* Records `code` with OpenSSL's last queued error (its reason appended). */
static int ossl_fail(const char *label, int code, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return km__err_native(code, e ? KM_NATIVE_OPENSSL : KM_NATIVE_NONE, e, "%s: %s%s%s", label,
                          what, why ? ": " : "", why ? why : "");
}

/* ------------------------------------------------------------------ SIGPIPE */

/* Blocks SIGPIPE in this thread; restore_sigpipe consumes one we caused. */
static void block_sigpipe(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void restore_sigpipe(const sigset_t *old)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (!sigismember(old, SIGPIPE) && sigpending(&pending) == 0
        && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = { 0, 0 };
        (void)sigtimedwait(&set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ------------------------------------------------------------------ contexts */

/* A library never prompts: an encrypted key file fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static int ctx_new(const km__tls_conf *conf, int server, km__tls_ctx **out)
{
    km__tls_ctx *c;
    char what[1100];
    const char *label;
    int rc;

    *out = NULL;
    label = conf->label ? conf->label : "tls";
    if (conf->ca == NULL || conf->cert == NULL || conf->key == NULL)
        return km__err(KM_E_INVALID, "%s: a CA file, a certificate and its key are needed",
                       label);
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return km__err(KM_E_NOMEM, "%s: out of memory", label);
    snprintf(c->label, sizeof c->label, "%s", label);
    c->server = server;
    c->fail_code = conf->fail_code ? conf->fail_code : KM_E_BACKEND;
    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (c->ssl_ctx == NULL) {
        rc = ossl_fail(c->label, KM_E_CRYPTO, "SSL_CTX_new failed");
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION) != 1) {
        rc = ossl_fail(c->label, KM_E_CRYPTO, "TLS 1.2 is not available");
        goto fail;
    }
    SSL_CTX_set_default_passwd_cb(c->ssl_ctx, no_passphrase);
    SSL_CTX_set_verify(c->ssl_ctx,
                       server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                              : SSL_VERIFY_PEER,
                       NULL);
    SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_AUTO_RETRY);
    if (SSL_CTX_load_verify_locations(c->ssl_ctx, conf->ca, NULL) != 1) {
        snprintf(what, sizeof what, "the CA file %s does not load", conf->ca);
        rc = ossl_fail(c->label, KM_E_INVALID, what);
        goto fail;
    }
    if (server) {
        /* the CA names offered to clients; no session tickets or cache: every
         * connection is verified in full */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->ca);
        if (names == NULL) {
            snprintf(what, sizeof what, "the CA file %s holds no certificate", conf->ca);
            rc = ossl_fail(c->label, KM_E_INVALID, what);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(c->ssl_ctx, names);
        SSL_CTX_set_session_cache_mode(c->ssl_ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(c->ssl_ctx, SSL_OP_NO_TICKET);
        (void)SSL_CTX_set_num_tickets(c->ssl_ctx, 0);
    }
    if (SSL_CTX_use_certificate_chain_file(c->ssl_ctx, conf->cert) != 1) {
        snprintf(what, sizeof what, "the certificate %s does not load", conf->cert);
        rc = ossl_fail(c->label, KM_E_INVALID, what);
        goto fail;
    }
    /* the key file's name only: never its contents */
    if (SSL_CTX_use_PrivateKey_file(c->ssl_ctx, conf->key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "the key %s does not load (a PEM key without a "
                 "passphrase is needed)", conf->key);
        rc = ossl_fail(c->label, KM_E_INVALID, what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c->ssl_ctx) != 1) {
        snprintf(what, sizeof what, "the key does not match the certificate %s", conf->cert);
        rc = ossl_fail(c->label, KM_E_INVALID, what);
        goto fail;
    }
    *out = c;
    return KM_OK;
fail:
    SSL_CTX_free(c->ssl_ctx);
    free(c);
    return rc;
}

int km__tls_client_ctx_new(const km__tls_conf *conf, km__tls_ctx **out)
{
    return ctx_new(conf, 0, out);
}

int km__tls_server_ctx_new(const km__tls_conf *conf, km__tls_ctx **out)
{
    return ctx_new(conf, 1, out);
}

void km__tls_ctx_free(km__tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ------------------------------------------------------------------ I/O */

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd pfd = { fd, events, 0 };
        long long left = deadline - km__tls_now_ms();
        int n;
        if (left <= 0)
            return 0;
        n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

enum { OP_HANDSHAKE, OP_WRITE, OP_READ };

/*
 * Runs one SSL call to completion, polling on WANT_READ / WANT_WRITE. KM_OK
 * (*done: the bytes moved; 0 for a read the peer ended), or the context's
 * fail_code recorded.
 */
static int ssl_run_unguarded(km__tls *t, int op, const void *wbuf, void *rbuf, size_t len,
                             size_t *done, long long deadline)
{
    static const char *const names[] = { "TLS handshake", "send", "receive" };
    const km__tls_ctx *c = t->ctx;

    for (;;) {
        int r, e, w;
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        if (op == OP_HANDSHAKE)
            r = c->server ? SSL_accept(t->ssl) : SSL_connect(t->ssl);
        else if (op == OP_WRITE)
            r = SSL_write_ex(t->ssl, wbuf, len, &n);
        else
            r = SSL_read_ex(t->ssl, rbuf, len, &n);
        if (r == 1) {
            if (done != NULL)
                *done = n;
            return KM_OK;
        }
        e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            w = wait_fd(t->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (w == 1)
                continue;
            return km__err_native(c->fail_code, KM_NATIVE_ERRNO,
                                  (unsigned long)(w == 0 ? ETIMEDOUT : errno),
                                  "%s: %s with %s %s", c->label, names[op], t->peer,
                                  w == 0 ? "timed out" : "failed");
        }
        if (op == OP_READ
            && (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)
                || (e == SSL_ERROR_SSL
                    && ERR_GET_REASON(ERR_peek_last_error())
                           == SSL_R_UNEXPECTED_EOF_WHILE_READING))) {
            ERR_clear_error();
            if (done != NULL)
                *done = 0;
            return KM_OK; /* the peer ended the stream */
        }
        if (e == SSL_ERROR_SSL) {
            char what[400];
            long v = SSL_get_verify_result(t->ssl);
            snprintf(what, sizeof what, "%s with %s failed", names[op], t->peer);
            if (op == OP_HANDSHAKE && v != X509_V_OK) {
                ERR_clear_error();
                return km__err_native(c->fail_code, KM_NATIVE_OPENSSL, (unsigned long)v,
                                      "%s: %s: the %s certificate does not verify (%s)",
                                      c->label, what, c->server ? "client" : "server",
                                      X509_verify_cert_error_string(v));
            }
            return ossl_fail(c->label, c->fail_code, what);
        }
        {
            int en = errno ? errno : ECONNRESET;
            ERR_clear_error();
            return km__err_native(c->fail_code, KM_NATIVE_ERRNO, (unsigned long)en,
                                  "%s: %s with %s: the connection was closed (%s)", c->label,
                                  names[op], t->peer,
                                  e == SSL_ERROR_ZERO_RETURN ? "by the peer" : strerror(en));
        }
    }
}

/* ssl_run_unguarded with SIGPIPE blocked: any SSL call may write (a read
 * sends an alert when it fails, a handshake its messages). */
static int ssl_run(km__tls *t, int op, const void *wbuf, void *rbuf, size_t len, size_t *done,
                   long long deadline)
{
    sigset_t old;
    int rc;

    block_sigpipe(&old);
    rc = ssl_run_unguarded(t, op, wbuf, rbuf, len, done, deadline);
    restore_sigpipe(&old);
    return rc;
}

int km__tls_write(km__tls *t, const void *buf, size_t len, long long deadline)
{
    size_t n = 0;

    return ssl_run(t, OP_WRITE, buf, NULL, len, &n, deadline);
}

int km__tls_read(km__tls *t, void *buf, size_t len, size_t *got, long long deadline)
{
    *got = 0;
    return ssl_run(t, OP_READ, NULL, buf, len, got, deadline);
}

int km__tls_read_full(km__tls *t, void *buf, size_t len, long long deadline)
{
    size_t have = 0;

    while (have < len) {
        size_t n = 0;
        int rc = ssl_run(t, OP_READ, NULL, (uint8_t *)buf + have, len - have, &n, deadline);
        if (rc != KM_OK)
            return rc;
        if (n == 0)
            return km__err_native(t->ctx->fail_code, KM_NATIVE_ERRNO, ECONNRESET,
                                  "%s: receive with %s: the connection was closed by the peer",
                                  t->ctx->label, t->peer);
        have += n;
    }
    return KM_OK;
}

void km__tls_free(km__tls *t, int polite)
{
    if (t == NULL)
        return;
    if (t->ssl != NULL) {
        if (polite && t->pid == getpid()) {
            sigset_t old;
            block_sigpipe(&old);
            (void)SSL_shutdown(t->ssl); /* non-blocking socket: one try */
            restore_sigpipe(&old);
        }
        SSL_free(t->ssl);
    }
    if (t->fd >= 0)
        close(t->fd);
    ERR_clear_error();
    free(t);
}

static int tls_new(km__tls_ctx *ctx, int fd, km__tls **out)
{
    km__tls *t = calloc(1, sizeof *t);

    if (t == NULL) {
        if (fd >= 0)
            close(fd);
        return km__err(KM_E_NOMEM, "%s: out of memory", ctx->label);
    }
    t->ctx = ctx;
    t->fd = fd;
    t->pid = getpid();
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    if (t->ssl == NULL) {
        int rc = ossl_fail(ctx->label, KM_E_CRYPTO, "SSL_new failed");
        km__tls_free(t, 0);
        return rc;
    }
    *out = t;
    return KM_OK;
}

/* Runs the handshake of a connection from tls_new(): *out = t, or t freed. */
static int tls_handshake(km__tls *t, long long deadline, km__tls **out)
{
    int rc;

    ERR_clear_error();
    if (SSL_set_fd(t->ssl, t->fd) != 1)
        rc = ossl_fail(t->ctx->label, KM_E_CRYPTO, "SSL_set_fd failed");
    else
        rc = ssl_run(t, OP_HANDSHAKE, NULL, NULL, 0, NULL, deadline);
    if (rc != KM_OK) {
        km__tls_free(t, 0);
        return rc;
    }
    *out = t;
    return KM_OK;
}

/* ------------------------------------------------------------------ client */

static int tcp_connect(km__tls_ctx *ctx, const char *host, const char *port, long long deadline,
                       int *out)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, err = 0, one = 1, g;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return km__err(ctx->fail_code, "%s: cannot resolve %s (%s)", ctx->label, host,
                       gai_strerror(g));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        socklen_t sl = sizeof err;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        if (err == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err == 0)
                break;
            if (w == 0)
                err = ETIMEDOUT;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return km__err_native(ctx->fail_code, KM_NATIVE_ERRNO, (unsigned long)err,
                              "%s: cannot connect to %s:%s (%s)", ctx->label, host, port,
                              strerror(err));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out = fd;
    return KM_OK;
}

int km__tls_connect(km__tls_ctx *ctx, const char *host, const char *port, long long deadline,
                    km__tls **out)
{
    unsigned char addr[16];
    km__tls *t = NULL;
    int fd = -1, rc, is_ip;

    *out = NULL;
    if (ctx->server)
        return km__err(KM_E_INVALID, "%s: a server context cannot connect", ctx->label);
    rc = tcp_connect(ctx, host, port, deadline, &fd);
    if (rc != KM_OK)
        return rc;
    rc = tls_new(ctx, fd, &t);
    if (rc != KM_OK)
        return rc;
    snprintf(t->peer, sizeof t->peer, "%s:%s", host, port);
    is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) != 1) {
            rc = ossl_fail(ctx->label, KM_E_INVALID, "the server address does not parse");
            goto fail;
        }
    } else if (SSL_set1_host(t->ssl, host) != 1 || SSL_set_tlsext_host_name(t->ssl, host) != 1) {
        rc = ossl_fail(ctx->label, KM_E_INVALID, "the server host name is not accepted");
        goto fail;
    }
    return tls_handshake(t, deadline, out);
fail:
    km__tls_free(t, 0);
    return rc;
}

/* ------------------------------------------------------------------ server */

int km__tls_accept(km__tls_ctx *ctx, int fd, long long deadline, km__tls **out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    km__tls *t = NULL;
    int rc, fl;

    *out = NULL;
    if (!ctx->server) {
        close(fd);
        return km__err(KM_E_INVALID, "%s: a client context cannot accept", ctx->label);
    }
    rc = tls_new(ctx, fd, &t);
    if (rc != KM_OK)
        return rc;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        rc = km__err_native(KM_E_INVALID, KM_NATIVE_ERRNO, (unsigned long)errno,
                            "%s: the accepted socket cannot be made non-blocking", ctx->label);
        goto fail;
    }
    snprintf(t->peer, sizeof t->peer, "a client");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        char a[INET6_ADDRSTRLEN];
        if (ss.ss_family == AF_INET
            && inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof a))
            snprintf(t->peer, sizeof t->peer, "%s:%u", a,
                     (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
        else if (ss.ss_family == AF_INET6
                 && inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof a))
            snprintf(t->peer, sizeof t->peer, "[%s]:%u", a,
                     (unsigned)ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        else if (ss.ss_family == AF_UNIX)
            snprintf(t->peer, sizeof t->peer, "a local client");
    }
    return tls_handshake(t, deadline, out);
fail:
    km__tls_free(t, 0);
    return rc;
}

/* ------------------------------------------------------------------ the peer */

/* The peer certificate when it verified, else NULL with KM_E_AUTH recorded. */
static X509 *verified_peer(km__tls *t)
{
    X509 *x = t->ssl ? SSL_get0_peer_certificate(t->ssl) : NULL;

    if (x == NULL || SSL_get_verify_result(t->ssl) != X509_V_OK) {
        km__err(KM_E_AUTH, "%s: %s has no verified certificate", t->ctx->label, t->peer);
        return NULL;
    }
    return x;
}

/* Copies `n` bytes of the peer's `what` (its certificate CN, its subject) as
 * a string into out[cap], or KM_E_BUFFER. */
static int peer_text(const km__tls *t, const char *what, const void *src, size_t n, char *out,
                     size_t cap)
{
    if (n >= cap)
        return km__err(KM_E_BUFFER, "%s: the %s of %s is longer than %zu bytes", t->ctx->label,
                       what, t->peer, cap ? cap - 1 : 0);
    memcpy(out, src, n);
    out[n] = '\0';
    return KM_OK;
}

int km__tls_peer_cn(km__tls *t, char *cn, size_t cap)
{
    X509 *x;
    X509_NAME *name;
    const ASN1_STRING *s;
    unsigned char *u = NULL;
    int i, n, rc = KM_OK;

    if (cap > 0)
        cn[0] = '\0';
    if ((x = verified_peer(t)) == NULL)
        return KM_E_AUTH;
    name = X509_get_subject_name(x);
    i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return km__err(KM_E_AUTH, "%s: the certificate of %s must name exactly one CN",
                       t->ctx->label, t->peer);
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    n = ASN1_STRING_to_UTF8(&u, s);
    if (n <= 0)
        return km__err(KM_E_AUTH, "%s: the certificate CN of %s does not decode", t->ctx->label,
                       t->peer);
    for (i = 0; i < n; i++)
        if (u[i] < 0x20 || u[i] > 0x7e)
            break;
    if (i < n)
        rc = km__err(KM_E_AUTH, "%s: the certificate CN of %s holds a character that is not "
                     "printable ASCII", t->ctx->label, t->peer);
    else
        rc = peer_text(t, "certificate CN", u, (size_t)n, cn, cap);
    OPENSSL_free(u);
    return rc;
}

int km__tls_peer_subject(km__tls *t, char *out, size_t cap)
{
    X509 *x;
    BIO *b;
    char *p = NULL;
    long n;
    int rc = KM_OK;

    if (cap > 0)
        out[0] = '\0';
    if ((x = verified_peer(t)) == NULL)
        return KM_E_AUTH;
    b = BIO_new(BIO_s_mem());
    if (b == NULL || X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                                        XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
        BIO_free(b);
        return ossl_fail(t->ctx->label, KM_E_NOMEM, "the subject does not print");
    }
    n = BIO_get_mem_data(b, &p);
    rc = n < 0 ? km__err(KM_E_BUFFER, "%s: the subject of %s does not print", t->ctx->label,
                         t->peer)
               : peer_text(t, "subject", p, (size_t)n, out, cap);
    BIO_free(b);
    return rc;
}

int km__tls_peer_fingerprint(km__tls *t, uint8_t out[32])
{
    unsigned int n = 0;
    X509 *x;

    if ((x = verified_peer(t)) == NULL)
        return KM_E_AUTH;
    if (X509_digest(x, EVP_sha256(), out, &n) != 1 || n != 32)
        return ossl_fail(t->ctx->label, KM_E_CRYPTO, "the certificate digest failed");
    return KM_OK;
}

const char *km__tls_version(km__tls *t)
{
    return t->ssl ? SSL_get_version(t->ssl) : "";
}
