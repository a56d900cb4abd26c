/* server.c - the API for servers that authenticate their clients
 * themselves (include/km/sys/server.h): km_ctx_delegate, a context acting as
 * an existing principal over the vault a server's context has open. The
 * context itself is the core's (src/core/ctx.c: km__ctx_alloc, km__ctx_ready);
 * the rights are re-read by the core's access check (src/core/access.c) as
 * for any principal context, and the audit entries name the peer
 * (src/core/audit_append.c). km_server_audit writes a server's own event;
 * km_server_unseal is the client side of kmd's Unseal extension (the KMIP
 * codec of the primitives, over a Unix socket). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "km/sys/server.h"
#include "kmip_ttlv.h"

static int peer_ok_len(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] >= 0x7f)
            return 0;
    return 1;
}

static int peer_ok(const char *peer)
{
    size_t n = strnlen(peer, KM_PEER_MAX + 1);
    return n > 0 && n <= KM_PEER_MAX && peer_ok_len(peer, n);
}

/* The principal's id by name, in a read transaction. KM_E_AUTH when none. */
static int principal_lookup(km_ctx *srv, const char *name, uint8_t id[16])
{
    km__txn *t = NULL;
    km__pfind f;
    int rc;

    memset(&f, 0, sizeof f);
    f.name = name;
    if ((rc = km__txn_begin(srv->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__principal_find(srv, t, &f);
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    if (!f.found)
        return km__err(KM_E_AUTH, "km_ctx_delegate: no principal named '%s'", name);
    memcpy(id, f.id, 16);
    return KM_OK;
}

int km_ctx_delegate(km_ctx *srv, const char *principal, const char *peer, km_ctx **out)
{
    struct km_ctx *ctx = NULL;
    km_secret *master = NULL;
    km__sealer *sealer = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_ctx_delegate: out is NULL");
    *out = NULL;
    KM__REMOTE_NO(srv, "km_ctx_delegate", "only kmd's own context acts for a principal");
    if (srv == NULL || principal == NULL || peer == NULL)
        return km__err(KM_E_INVALID, "km_ctx_delegate: %s is NULL",
                       srv == NULL ? "srv" : principal == NULL ? "principal" : "peer");
    if (!km__rules_principal_name_ok(principal))
        return km__err(KM_E_INVALID, "km_ctx_delegate: '%s' is not a principal name", principal);
    if (!peer_ok(peer))
        return km__err(KM_E_INVALID, "km_ctx_delegate: peer must be 1 to %d printable ASCII "
                                     "bytes", KM_PEER_MAX);
    if ((rc = km__ctx_check(srv)) != KM_OK)
        return rc;
    if (srv->is_principal || srv->delegated)
        return km__err(KM_E_DENIED, "km_ctx_delegate: '%s' is a principal; only the owner, a "
                                    "device keyslot or the shares may act for a principal",
                       srv->principal_name);
    if ((ctx = km__ctx_alloc()) == NULL)
        return km__err(KM_E_NOMEM, "km_ctx_delegate: out of memory");
    ctx->flags = srv->flags & ~(uint32_t)(KM_OPEN_CREATE | KM_OPEN_EXCL | KM_OPEN_FIPS);
    ctx->refresh_ms = srv->refresh_ms;
    ctx->clock = srv->clock;
    ctx->clock_arg = srv->clock_arg;
    ctx->cache_max = srv->cache_max;
    ctx->policy_required = srv->policy_required;
    memcpy(ctx->vault_id, srv->vault_id, 16);
    ctx->is_principal = 1;
    ctx->delegated = 1;
    snprintf(ctx->principal_name, sizeof ctx->principal_name, "%s", principal);
    snprintf(ctx->peer, sizeof ctx->peer, "%s", peer);

    /* the master key as srv holds it now (a rekey swaps it under srv->mu) */
    pthread_mutex_lock(&srv->mu);
    rc = km_secret_new(&master, km_secret_len(srv->master));
    if (rc == KM_OK)
        memcpy(km_secret_data(master), km_secret_data(srv->master), km_secret_len(master));
    if (rc == KM_OK)
        rc = km__store_ref(srv->env);
    if (rc == KM_OK)
        ctx->env = srv->env;
    pthread_mutex_unlock(&srv->mu);
    if (rc == KM_OK)
        rc = km__sealer_new(&sealer, master);
    if (rc != KM_OK)
        goto out;
    ctx->sealer = sealer;
    ctx->master = master;
    master = NULL;
    if ((rc = principal_lookup(ctx, principal, ctx->principal_id)) != KM_OK)
        goto out;
    atomic_store(&ctx->policy_checked_ms, km__mono_ms());
    if ((rc = km__ctx_policy_load(ctx, NULL)) != KM_OK)
        goto out;
    if ((rc = km__ctx_ready(ctx)) != KM_OK)
        goto out;
    /* srv's audit sinks, as they are now */
    pthread_mutex_lock(&srv->audit.kmu);
    ctx->audit.syslog = srv->audit.syslog;
    if (srv->audit.fd >= 0 && (ctx->audit.fd = fcntl(srv->audit.fd, F_DUPFD_CLOEXEC, 0)) < 0)
        rc = km__err(KM_E_IO, "km_ctx_delegate: cannot share the audit file sink");
    pthread_mutex_unlock(&srv->audit.kmu);
    if (rc != KM_OK) {
        km_close(ctx);
        return rc;
    }
    *out = ctx;
    return KM_OK;
out:
    km_secret_free(master);
    km__ctx_discard(ctx);
    return rc;
}

int km_server_audit(km_ctx *srv, const char *detail)
{
    KM__REMOTE_NO(srv, "km_server_audit", "only kmd's own context writes its events");
    size_t n;
    int rc;

    if (srv == NULL || detail == NULL)
        return km__err(KM_E_INVALID, "km_server_audit: %s is NULL", srv == NULL ? "srv" : "detail");
    n = strnlen(detail, KM__AUDIT_DETAIL_MAX + 1);
    if (n == 0 || n > KM__AUDIT_DETAIL_MAX || !peer_ok_len(detail, n))
        return km__err(KM_E_INVALID, "km_server_audit: detail must be 1 to %d printable bytes",
                       KM__AUDIT_DETAIL_MAX);
    if ((rc = km__ctx_check(srv)) != KM_OK)
        return rc;
    if (srv->is_principal || srv->delegated)
        return km__err(KM_E_DENIED, "km_server_audit: only the server's own context writes "
                                    "its events");
    return km__audit_event(srv, KM__OP_OPEN, NULL, 0, KM_OK, detail);
}

/* ------------------------------------------------ the client of Unseal */

static int io_all(int fd, uint8_t *b, size_t n, int out)
{
    while (n > 0) {
        ssize_t r = out ? send(fd, b, n, MSG_NOSIGNAL) : recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* kmd's answer to an Unseal request, as a km error code. */
static int unseal_answer(const uint8_t *b, size_t n, unsigned *have, unsigned *need)
{
    km__ttlv_tree t;
    km__kmip_response r;
    int32_t h = 0, nd = 0;
    int rc;

    if (km__ttlv_decode(b, n, NULL, &t) != KM_OK || km__kmip_response_parse(&t, &r) != KM_OK
        || r.n != 1) {
        km__ttlv_tree_free(&t);
        return km__err(KM_E_IO, "km_server_unseal: kmd answered something else than a response");
    }
    if (r.items[0].status != KM__KMIP_STATUS_SUCCESS) {
        int len = r.items[0].message != NULL ? (int)(r.items[0].message_len > 300
                                                         ? 300 : r.items[0].message_len) : 0;
        uint32_t why = r.items[0].reason;
        rc = why == KM__KMIP_REASON_PERMISSION_DENIED ? KM_E_DENIED
             : why == KM__KMIP_REASON_ILLEGAL_OPERATION ? KM_E_STATE
             : why == KM__KMIP_REASON_AUTH_NOT_SUCCESSFUL ? KM_E_AUTH
             : why == KM__KMIP_REASON_INVALID_FIELD ? KM_E_INVALID : KM_E_IO;
        rc = km__err(rc, "kmd refused the share: %.*s", len,
                     r.items[0].message != NULL ? r.items[0].message : "(no message)");
        km__ttlv_tree_free(&t);
        return rc;
    }
    if (r.items[0].payload < 0
        || km__ttlv_get_int(&t, r.items[0].payload, KM_KMD_TAG_SHARES_HAVE, &h) != KM_OK
        || km__ttlv_get_int(&t, r.items[0].payload, KM_KMD_TAG_SHARES_NEED, &nd) != KM_OK
        || h < 0 || nd < 0) {
        km__ttlv_tree_free(&t);
        return km__err(KM_E_IO, "km_server_unseal: kmd's answer has no share counts");
    }
    km__ttlv_tree_free(&t);
    if (have != NULL)
        *have = (unsigned)h;
    if (need != NULL)
        *need = (unsigned)nd;
    return KM_OK;
}

int km_server_unseal(const char *socket_path, const char *share, unsigned *have, unsigned *need)
{
    struct sockaddr_un a;
    struct timeval tv = { 30, 0 };
    km__ttlv_enc e;
    const uint8_t *req;
    uint8_t head[8], *resp = NULL;
    size_t req_len, total = 0, n;
    int fd = -1, rc;

    if (socket_path == NULL || share == NULL)
        return km__err(KM_E_INVALID, "km_server_unseal: %s is NULL",
                       socket_path == NULL ? "socket_path" : "share");
    n = strnlen(share, 4097);
    if (n < 6 || n > 4096 || strncmp(share, "kms1:", 5) != 0)
        return km__err(KM_E_INVALID, "km_server_unseal: the share is no \"kms1:\" text");
    if (strlen(socket_path) >= sizeof a.sun_path)
        return km__err(KM_E_INVALID, "km_server_unseal: socket path too long");
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, socket_path, strlen(socket_path) + 1);
    km__ttlv_enc_init(&e, 0);
    km__kmip_req_begin(&e, 1, 4, 1);
    km__kmip_item_begin(&e, KM_KMD_OP_UNSEAL, NULL, 0);
    km__ttlv_put_bytes(&e, KM_KMD_TAG_SHARE, (const uint8_t *)share, n);
    km__kmip_item_end(&e);
    km__kmip_req_end(&e);
    if ((rc = km__ttlv_enc_finish(&e, &req, &req_len)) != KM_OK) {
        km__ttlv_enc_free(&e);
        return km__err(rc, "km_server_unseal: cannot build the request");
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0
        || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        rc = km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                            "km_server_unseal: cannot connect to '%s'", socket_path);
        goto out;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (io_all(fd, (uint8_t *)(uintptr_t)req, req_len, 1) != 0 || io_all(fd, head, 8, 0) != 0
        || km__ttlv_peek_len(head, 8, 64 * 1024, &total) != KM_OK
        || (resp = malloc(total)) == NULL) {
        rc = km__err(KM_E_IO, "km_server_unseal: kmd closed the connection (is this uid mapped "
                              "to a principal?)");
        goto out;
    }
    memcpy(resp, head, 8);
    if (io_all(fd, resp + 8, total - 8, 0) != 0) {
        rc = km__err(KM_E_IO, "km_server_unseal: kmd's answer was cut off");
        goto out;
    }
    rc = unseal_answer(resp, total, have, need);
out:
    if (fd >= 0)
        close(fd);
    free(resp);
    km__ttlv_enc_free(&e);   /* wipes the request, which holds the share */
    return rc;
}
