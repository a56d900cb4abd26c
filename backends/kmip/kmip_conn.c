/*
 * kmip_conn.c - the kmip backend's connection to a KMIP server: the
 * configuration string, one persistent mutual-TLS connection per backend
 * instance (TCP_NODELAY, every wait bounded by poll), protocol version
 * negotiation with DiscoverVersions, and one request/response exchange with
 * a single reconnect when a reused connection turns out dropped.
 *
 * The TLS work (sockets, deadlines, certificates, SIGPIPE) is the
 * primitives' (src/prim/tls.h); this file includes no OpenSSL header.
 *
 * fork(): a child never uses its parent's TLS session; it drops it without
 * sending anything and connects anew.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kmip_int.h"

#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KMIP_DEFAULT_TIMEOUT_MS 5000
/* The largest response read: the codec's default limit. */
#define KMIP_MAX_MESSAGE KM__TTLV_DEFAULT_MAX_LEN

struct km__kmip_conn {
    pthread_mutex_t mu;
    km__kmip_config cfg;
    km__tls_ctx *ctx;
    km__tls *tls;      /* NULL when not connected */
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

/* --------------------------------------------------------------- connection */

int km__kmip_conn_new(const km__kmip_config *cfg, km__kmip_conn **out)
{
    km__tls_conf tc = { "kmip", cfg->ca, cfg->cert, cfg->key, KM_E_BACKEND };
    km__kmip_conn *c;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip: out of memory");
    c->cfg = *cfg;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip: mutex");
    }
    rc = km__tls_client_ctx_new(&tc, &c->ctx);
    if (rc != KM_OK) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return rc;
    }
    *out = c;
    return KM_OK;
}

/* Forgets the connection; sends close_notify when `polite` (never in a child). */
static void drop(km__kmip_conn *c, int polite)
{
    km__tls_free(c->tls, polite);
    c->tls = NULL;
    c->major = c->minor = 0;
}

void km__kmip_conn_free(km__kmip_conn *c)
{
    if (c == NULL)
        return;
    drop(c, 1);
    km__tls_ctx_free(c->ctx);
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
    size_t req_len, total;
    long long deadline = km__tls_now_ms() + c->cfg.timeout_ms;
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
    rc = km__tls_write(c->tls, req, req_len, deadline);
    km__ttlv_enc_free(&e);
    if (rc == KM_OK)
        rc = km__tls_read_full(c->tls, hdr, sizeof hdr, deadline);
    if (rc != KM_OK)
        goto io_fail;
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
    rc = km__tls_read_full(c->tls, out->buf + sizeof hdr, total - sizeof hdr, deadline);
    if (rc != KM_OK)
        goto io_fail;
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
    long long deadline = km__tls_now_ms() + c->cfg.timeout_ms;
    discover_arg d = { c->cfg.want_major, c->cfg.want_minor };
    km__kmip_reply r;
    int rc, io, pv, i;

    c->pid = getpid();
    c->major = c->minor = 0;
    rc = km__tls_connect(c->ctx, c->cfg.host, c->cfg.port, deadline, &c->tls);
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
    int rc, io = 0, attempt, reused;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    if (c->tls != NULL && c->pid != getpid())
        drop(c, 0); /* the parent's session: never touch it */
    reused = c->tls != NULL;
    for (attempt = 0; attempt < 2; attempt++) {
        if (c->tls == NULL) {
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
    pthread_mutex_unlock(&c->mu);
    return rc;
}
