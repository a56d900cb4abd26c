/* server.c - the API for servers that authenticate their clients
 * themselves (include/km/sys/server.h): km_ctx_delegate, a context acting as
 * an existing principal over the vault a server's context has open. The
 * context itself is the core's (src/core/ctx.c: km__ctx_alloc, km__ctx_ready);
 * the rights are re-read by the core's access check (src/core/access.c) as
 * for any principal context, and the audit entries name the peer
 * (src/core/audit_append.c). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "km/sys/server.h"

static int peer_ok(const char *peer)
{
    size_t i, n = strnlen(peer, KM_PEER_MAX + 1);
    if (n == 0 || n > KM_PEER_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (peer[i] < 0x20 || peer[i] >= 0x7f)
            return 0;
    return 1;
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
