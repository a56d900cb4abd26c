/*
 * kmip_conn.c - the kmip backend's connection to a KMIP server: the
 * configuration string, one persistent mutual-TLS connection per backend
 * instance (TCP_NODELAY, every wait bounded by poll), protocol version
 * negotiation with DiscoverVersions, and one request/response exchange with
 * a single reconnect when a reused connection turns out dropped.
 *
 * SIGPIPE: a write to a connection the server closed would raise SIGPIPE
 * (OpenSSL's socket BIO uses write()); the exchange runs with SIGPIPE blocked
 * in the calling thread and a SIGPIPE it caused is consumed before the mask
 * is restored.
 *
 * fork(): a child never uses its parent's TLS session; it drops it without
 * sending anything and connects anew.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kmip_int.h"

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
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define KMIP_DEFAULT_TIMEOUT_MS 5000
/* The largest response read: the codec's default limit. */
#define KMIP_MAX_MESSAGE KM__TTLV_DEFAULT_MAX_LEN

struct km__kmip_conn {
    pthread_mutex_t mu;
    km__kmip_config cfg;
    SSL_CTX *ctx;
    SSL *ssl;          /* NULL when not connected */
    int fd;
    pid_t pid;         /* the process that made the connection */
    int major, minor;  /* negotiated */
};

/* ------------------------------------------------------------ configuration */

static int copy_item(char *dst, size_t cap, const char *v, size_t n, const char *name)
{
    if (n == 0 || n >= cap)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip configuration: %s= is empty or too long", name);
    memcpy(dst, v, n);
    dst[n] = '\0';
    return KM_OK;
}

static int parse_server(km__kmip_config *cfg, const char *v, size_t n)
{
    const char *colon;
    size_t hl, pl, i;

    if (n > 2 && v[0] == '[') {
        const char *rb = memchr(v, ']', n);
        if (rb == NULL || rb + 1 >= v + n || rb[1] != ':')
            goto bad;
        hl = (size_t)(rb - v - 1);
        colon = rb + 1;
        if (copy_item(cfg->host, sizeof cfg->host, v + 1, hl, "server") != KM_OK)
            return KM_E_INVALID;
    } else {
        colon = NULL;
        for (i = 0; i < n; i++)
            if (v[i] == ':')
                colon = v + i;
        if (colon == NULL)
            goto bad;
        hl = (size_t)(colon - v);
        if (copy_item(cfg->host, sizeof cfg->host, v, hl, "server") != KM_OK)
            return KM_E_INVALID;
    }
    pl = (size_t)(v + n - colon - 1);
    if (pl == 0 || pl > 5)
        goto bad;
    for (i = 0; i < pl; i++)
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            goto bad;
    memcpy(cfg->port, colon + 1, pl);
    cfg->port[pl] = '\0';
    if (atoi(cfg->port) < 1 || atoi(cfg->port) > 65535)
        goto bad;
    return KM_OK;
bad:
    return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                            "kmip configuration: server= must be HOST:PORT or [V6]:PORT");
}

int km__kmip_config_parse(const char *config, km__kmip_config *out)
{
    const char *p;
    int rc;

    memset(out, 0, sizeof *out);
    out->want_major = out->want_minor = -1;
    out->timeout_ms = KMIP_DEFAULT_TIMEOUT_MS;
    if (config == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip: a configuration is needed (server=HOST:PORT;ca=FILE;"
                                "cert=FILE;key=FILE)");
    p = config;
    if (strncmp(p, "kmip:", 5) == 0)
        p += 5;
    while (*p != '\0') {
        const char *end = strchr(p, ';'), *eq;
        size_t len = end ? (size_t)(end - p) : strlen(p), kl, vl;
        const char *v;

        if (len == 0) {
            p += 1;
            continue;
        }
        eq = memchr(p, '=', len);
        if (eq == NULL)
            return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                    "kmip configuration: an item without '='");
        kl = (size_t)(eq - p);
        v = eq + 1;
        vl = len - kl - 1;
        if (kl == 6 && memcmp(p, "server", 6) == 0)
            rc = parse_server(out, v, vl);
        else if (kl == 2 && memcmp(p, "ca", 2) == 0)
            rc = copy_item(out->ca, sizeof out->ca, v, vl, "ca");
        else if (kl == 4 && memcmp(p, "cert", 4) == 0)
            rc = copy_item(out->cert, sizeof out->cert, v, vl, "cert");
        else if (kl == 3 && memcmp(p, "key", 3) == 0)
            rc = copy_item(out->key, sizeof out->key, v, vl, "key");
        else if (kl == 7 && memcmp(p, "version", 7) == 0) {
            if (vl == 3 && memcmp(v, "2.0", 3) == 0) {
                out->want_major = 2;
                out->want_minor = 0;
                rc = KM_OK;
            } else if (vl == 3 && memcmp(v, "1.4", 3) == 0) {
                out->want_major = 1;
                out->want_minor = 4;
                rc = KM_OK;
            } else {
                rc = km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                      "kmip configuration: version= is 2.0 or 1.4 "
                                      "(AES-GCM needs KMIP 1.4 or later)");
            }
        } else if (kl == 7 && memcmp(p, "timeout", 7) == 0) {
            long ms = 0;
            size_t i;
            for (i = 0; i < vl && i < 7 && v[i] >= '0' && v[i] <= '9'; i++)
                ms = ms * 10 + (v[i] - '0');
            if (vl == 0 || i != vl || ms < 100 || ms > 600000)
                rc = km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                      "kmip configuration: timeout= is 100..600000 ms");
            else {
                out->timeout_ms = (int)ms;
                rc = KM_OK;
            }
        } else {
            rc = km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                  "kmip configuration: unknown item (server, ca, cert, key, "
                                  "version, timeout)");
        }
        if (rc != KM_OK)
            return rc;
        p += len;
        if (*p == ';')
            p++;
    }
    if (out->host[0] == '\0' || out->ca[0] == '\0' || out->cert[0] == '\0'
        || out->key[0] == '\0')
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip configuration: server=, ca=, cert= and key= are needed");
    return KM_OK;
}

/* --------------------------------------------------------------- TLS context */

static int ossl_err(int code, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return km_backend_error(code, e ? KM_NATIVE_OPENSSL : KM_NATIVE_NONE, e, "kmip: %s%s%s",
                            what, why ? ": " : "", why ? why : "");
}

/* A library never prompts: an encrypted key file fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

int km__kmip_conn_new(const km__kmip_config *cfg, km__kmip_conn **out)
{
    km__kmip_conn *c;
    char what[1100];
    int rc = KM_E_INVALID;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip: out of memory");
    c->cfg = *cfg;
    c->fd = -1;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip: mutex");
    }
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        rc = ossl_err(KM_E_CRYPTO, "SSL_CTX_new failed");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_passwd_cb(c->ctx, no_passphrase);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_AUTO_RETRY);
    if (SSL_CTX_load_verify_locations(c->ctx, cfg->ca, NULL) != 1) {
        snprintf(what, sizeof what, "the CA file %s does not load", cfg->ca);
        rc = ossl_err(KM_E_INVALID, what);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cfg->cert) != 1) {
        snprintf(what, sizeof what, "the client certificate %s does not load", cfg->cert);
        rc = ossl_err(KM_E_INVALID, what);
        goto fail;
    }
    /* the key file's name only: never its contents */
    if (SSL_CTX_use_PrivateKey_file(c->ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "the client key %s does not load (a PEM key without a "
                 "passphrase is needed)", cfg->key);
        rc = ossl_err(KM_E_INVALID, what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c->ctx) != 1) {
        snprintf(what, sizeof what, "the client key does not match the certificate %s", cfg->cert);
        rc = ossl_err(KM_E_INVALID, what);
        goto fail;
    }
    *out = c;
    return KM_OK;
fail:
    SSL_CTX_free(c->ctx);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return rc;
}

/* Forgets the connection; sends close_notify when `polite` (never in a child). */
static void drop(km__kmip_conn *c, int polite)
{
    if (c->ssl != NULL) {
        if (polite && c->pid == getpid())
            (void)SSL_shutdown(c->ssl); /* non-blocking socket: one try */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->major = c->minor = 0;
    ERR_clear_error();
}

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

void km__kmip_conn_free(km__kmip_conn *c)
{
    sigset_t old;

    if (c == NULL)
        return;
    block_sigpipe(&old);
    drop(c, 1);
    restore_sigpipe(&old);
    SSL_CTX_free(c->ctx);
    pthread_mutex_destroy(&c->mu);
    km_memzero(&c->cfg, sizeof c->cfg);
    free(c);
}

void km__kmip_conn_version(km__kmip_conn *c, int *major, int *minor)
{
    pthread_mutex_lock(&c->mu);
    *major = c->major;
    *minor = c->minor;
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ sockets */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd pfd = { fd, events, 0 };
        long long left = deadline - now_ms();
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

static int tcp_connect(km__kmip_conn *c, long long deadline)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, err = 0, one = 1, g;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    g = getaddrinfo(c->cfg.host, c->cfg.port, &hints, &res);
    if (g != 0)
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip: cannot resolve %s (%s)", c->cfg.host, gai_strerror(g));
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
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_ERRNO, (unsigned long)err,
                                "kmip: cannot connect to %s:%s (%s)", c->cfg.host, c->cfg.port,
                                strerror(err));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    return KM_OK;
}

/* Runs one SSL call to completion, polling on WANT_READ / WANT_WRITE.
 * op: 0 connect, 1 write, 2 read. KM_OK, or KM_E_BACKEND recorded. */
static int ssl_run(km__kmip_conn *c, int op, const void *wbuf, void *rbuf, size_t len,
                   size_t *done, long long deadline)
{
    static const char *const names[] = { "TLS handshake", "send", "receive" };
    for (;;) {
        int r, e, w;
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        if (op == 0)
            r = SSL_connect(c->ssl);
        else if (op == 1)
            r = SSL_write_ex(c->ssl, wbuf, len, &n);
        else
            r = SSL_read_ex(c->ssl, rbuf, len, &n);
        if (r == 1) {
            if (done != NULL)
                *done = n;
            return KM_OK;
        }
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (w == 1)
                continue;
            return km_backend_error(KM_E_BACKEND, KM_NATIVE_ERRNO, w == 0 ? ETIMEDOUT : errno,
                                    "kmip: %s with %s:%s %s", names[op], c->cfg.host,
                                    c->cfg.port, w == 0 ? "timed out" : "failed");
        }
        if (e == SSL_ERROR_SSL) {
            char what[320];
            snprintf(what, sizeof what, "%s with %s:%s failed", names[op], c->cfg.host,
                     c->cfg.port);
            if (op == 0 && SSL_get_verify_result(c->ssl) != X509_V_OK) {
                long v = SSL_get_verify_result(c->ssl);
                ERR_clear_error();
                return km_backend_error(KM_E_BACKEND, KM_NATIVE_OPENSSL, (unsigned long)v,
                                        "kmip: %s: the server certificate does not verify (%s)",
                                        what, X509_verify_cert_error_string(v));
            }
            return ossl_err(KM_E_BACKEND, what);
        }
        {
            int en = errno ? errno : ECONNRESET;
            ERR_clear_error();
            return km_backend_error(KM_E_BACKEND, KM_NATIVE_ERRNO, (unsigned long)en,
                                    "kmip: %s with %s:%s: the connection was closed (%s)",
                                    names[op], c->cfg.host, c->cfg.port,
                                    e == SSL_ERROR_ZERO_RETURN ? "by the server" : strerror(en));
        }
    }
}

static int tls_connect(km__kmip_conn *c, long long deadline)
{
    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, c->cfg.host, addr) == 1
                || inet_pton(AF_INET6, c->cfg.host, addr) == 1;

    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return ossl_err(KM_E_CRYPTO, "SSL_new failed");
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->cfg.host) != 1)
            return ossl_err(KM_E_CRYPTO, "the server address does not parse");
    } else if (SSL_set1_host(c->ssl, c->cfg.host) != 1
               || SSL_set_tlsext_host_name(c->ssl, c->cfg.host) != 1) {
        return ossl_err(KM_E_CRYPTO, "the server host name is not accepted");
    }
    return ssl_run(c, 0, NULL, NULL, 0, NULL, deadline);
}

/* ----------------------------------------------------------------- exchange */

void km__kmip_reply_free(km__kmip_reply *r)
{
    if (r == NULL)
        return;
    km__ttlv_tree_free(&r->tree);
    if (r->buf != NULL) {
        km_memzero(r->buf, r->len);
        free(r->buf);
    }
    memset(r, 0, sizeof *r);
}

/*
 * Sends the request that `build` writes and reads one response into `out`.
 * *io is set when the failure was the connection's (send, receive, EOF,
 * timeout): the caller drops it and may retry.
 */
static int exchange(km__kmip_conn *c, km__kmip_build build, void *arg, km__kmip_reply *out,
                    int *io)
{
    km__ttlv_enc e;
    const uint8_t *req;
    size_t req_len, got, total;
    long long deadline = now_ms() + c->cfg.timeout_ms;
    uint8_t hdr[8];
    int rc;
    km__ttlv_limits lim = { KMIP_MAX_MESSAGE, KM__TTLV_DEFAULT_MAX_DEPTH,
                            KM__TTLV_DEFAULT_MAX_ITEMS };

    *io = 0;
    memset(out, 0, sizeof *out);
    km__ttlv_enc_init(&e, KMIP_MAX_MESSAGE);
    rc = build(&e, c->major ? c->major : 1, c->major ? c->minor : 4, arg);
    if (rc == KM_OK)
        rc = km__ttlv_enc_finish(&e, &req, &req_len);
    if (rc != KM_OK) {
        km__ttlv_enc_free(&e);
        return km_backend_error(rc, KM_NATIVE_NONE, 0, "kmip: the request does not encode "
                                                       "(too large or invalid)");
    }
    rc = ssl_run(c, 1, req, NULL, req_len, &got, deadline);
    km__ttlv_enc_free(&e);
    if (rc != KM_OK)
        goto io_fail;
    for (got = 0; got < sizeof hdr;) {
        size_t n = 0;
        rc = ssl_run(c, 2, NULL, hdr + got, sizeof hdr - got, &n, deadline);
        if (rc != KM_OK)
            goto io_fail;
        got += n;
    }
    if (km__ttlv_peek_len(hdr, sizeof hdr, KMIP_MAX_MESSAGE, &total) != KM_OK) {
        *io = 1; /* the stream cannot be trusted any more: drop, do not retry */
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip: the response from %s:%s is longer than %u bytes",
                                c->cfg.host, c->cfg.port, (unsigned)KMIP_MAX_MESSAGE);
    }
    out->buf = malloc(total);
    if (out->buf == NULL)
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip: out of memory");
    out->len = total;
    memcpy(out->buf, hdr, sizeof hdr);
    while (got < total) {
        size_t n = 0;
        rc = ssl_run(c, 2, NULL, out->buf + got, total - got, &n, deadline);
        if (rc != KM_OK)
            goto io_fail;
        got += n;
    }
    rc = km__ttlv_decode(out->buf, out->len, &lim, &out->tree);
    if (rc == KM_OK)
        rc = km__kmip_response_parse(&out->tree, &out->msg);
    if (rc != KM_OK) {
        const char *why = out->tree.why;
        *io = 1;
        km__kmip_reply_free(out);
        if (rc == KM_E_NOMEM)
            return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip: out of memory");
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip: malformed response from %s:%s (%s)", c->cfg.host,
                                c->cfg.port, why ? why : "not a KMIP response message");
    }
    return KM_OK;
io_fail:
    /* a dropped connection may be retried on a new one; a server that is too
     * slow to answer is not asked again (the caller would wait twice) */
    *io = (km_error_last()->native_kind == KM_NATIVE_ERRNO
           && km_error_last()->native == ETIMEDOUT) ? 1 : 2;
    km__kmip_reply_free(out);
    return rc;
}

typedef struct discover_arg {
    int want_major, want_minor;
} discover_arg;

static int build_discover(km__ttlv_enc *e, int major, int minor, void *arg)
{
    discover_arg *d = arg;
    (void)major;
    (void)minor;
    return km__kmip_msg_discover(e, d->want_major, d->want_minor);
}

/* Connects and negotiates the protocol version. */
static int connect_server(km__kmip_conn *c)
{
    long long deadline = now_ms() + c->cfg.timeout_ms;
    discover_arg d = { c->cfg.want_major, c->cfg.want_minor };
    km__kmip_reply r;
    int rc, io, pv, i;

    c->pid = getpid();
    c->major = c->minor = 0;
    rc = tcp_connect(c, deadline);
    if (rc == KM_OK)
        rc = tls_connect(c, deadline);
    if (rc != KM_OK) {
        drop(c, 0);
        return rc;
    }
    rc = exchange(c, build_discover, &d, &r, &io);
    if (rc != KM_OK) {
        drop(c, 0);
        return rc;
    }
    rc = r.msg.n == 1 ? km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_DISCOVER_VERSIONS,
                                            "DiscoverVersions")
                      : km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                         "kmip DiscoverVersions: %u batch items answered",
                                         (unsigned)r.msg.n);
    if (rc == KM_OK) {
        rc = km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                              "kmip: the server at %s:%s speaks no protocol version libkm "
                              "offered (%s; AES-GCM needs 1.4 or later)",
                              c->cfg.host, c->cfg.port,
                              d.want_minor < 0 ? "2.0, 1.4" : d.want_major == 2 ? "2.0" : "1.4");
        for (i = 0; (pv = km__ttlv_child(&r.tree, r.msg.items[0].payload,
                                         KM__KMIP_TAG_PROTOCOL_VERSION, i)) >= 0; i++) {
            int32_t ma = 0, mi = 0;
            if (km__ttlv_get_int(&r.tree, pv, KM__KMIP_TAG_PROTOCOL_VERSION_MAJOR, &ma) != KM_OK
                || km__ttlv_get_int(&r.tree, pv, KM__KMIP_TAG_PROTOCOL_VERSION_MINOR, &mi)
                       != KM_OK)
                continue;
            if (((ma == 2 && mi == 0) || (ma == 1 && mi == 4))
                && (d.want_minor < 0 || (ma == d.want_major && mi == d.want_minor))) {
                c->major = ma;
                c->minor = mi;
                rc = KM_OK;
                break;
            }
        }
    } else if (rc == KM_E_NOTFOUND || rc == KM_E_INTEGRITY) {
        rc = KM_E_BACKEND;
    }
    km__kmip_reply_free(&r);
    if (rc != KM_OK)
        drop(c, 1);
    return rc;
}

int km__kmip_call(km__kmip_conn *c, km__kmip_build build, void *arg, km__kmip_reply *out)
{
    sigset_t old;
    int rc, io = 0, attempt, reused;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    block_sigpipe(&old);
    if (c->ssl != NULL && c->pid != getpid())
        drop(c, 0); /* the parent's session: never touch it */
    reused = c->ssl != NULL;
    for (attempt = 0; attempt < 2; attempt++) {
        if (c->ssl == NULL) {
            rc = connect_server(c);
            if (rc != KM_OK)
                break;
        }
        rc = exchange(c, build, arg, out, &io);
        if (rc == KM_OK || io == 0)
            break;
        drop(c, 0);
        /* a dropped connection that had served before: once more on a new one */
        if (io != 2 || !reused)
            break;
        reused = 0;
    }
    restore_sigpipe(&old);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
