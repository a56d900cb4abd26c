/* rekey.c - km_vault_rekey (new master key, every record resealed) and
 * km_vault_compact (the store rewritten without free space). The storage
 * work is in the store (src/store.c, src/store/lmdb.c); this file handles
 * the context. */
#include "core.h"

#include <stdio.h>
#include <string.h>

#define RESEAL_MAX 8

/* The device keyslots re-sealed under the new master key before the rekey
 * transaction, written by its hook. */
typedef struct rekey_arg {
    km_ctx *ctx;
    size_t n, total;
    char names[RESEAL_MAX][32];
    km_secret *blobs[RESEAL_MAX];
} rekey_arg;

static int rekey_hook(void *arg, km__txn *t, const km__sealer *s)
{
    rekey_arg *a = arg;
    char d[160];
    size_t i, kept = 0;
    int rc;

    for (i = 0; i < a->n; i++) {
        if (a->blobs[i] == NULL)
            continue;
        rc = km__slot_add_backend(t, a->names[i], km_secret_data(a->blobs[i]),
                                  km_secret_len(a->blobs[i]));
        if (rc != KM_OK)
            return rc;
        kept++;
    }
    snprintf(d, sizeof d, "new master key; keyslots replaced by one passphrase, %zu device "
                          "keyslot(s) re-sealed, %zu dropped", kept, a->total - kept);
    return km__audit_append_sealed(a->ctx, t, s, KM__OP_REKEY, NULL, 0, KM_OK, d);
}

/* Seals the new master key with the backend of each of the vault's device
 * keyslots (configured as stored in the vault); a device that cannot (not
 * reachable, not configured) loses its keyslot, as passphrase-derived ones do. */
static int reseal_devices(km_ctx *ctx, const km_secret *master, rekey_arg *a)
{
    km__txn *t = NULL;
    size_t i;
    int rc;

    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__slot_backend_names(t, a->names, RESEAL_MAX, &a->n, &a->total);
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    for (i = 0; i < a->n; i++) {
        if (km__backend_slot_seal_for(ctx, a->names[i], master, &a->blobs[i]) != KM_OK) {
            a->blobs[i] = NULL;
            km_error_clear();
        }
    }
    return KM_OK;
}

int km_vault_rekey(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                   uint32_t kdf_cost)
{
    km_secret *master = NULL;
    km__sealer *ns = NULL, *old;
    rekey_arg ra;
    size_t i;
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_rekey: ctx is NULL");
    if ((rc = km__pass_args("km_vault_rekey", passphrase, passphrase_len, &kdf_cost)) != KM_OK)
        return rc;
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_REKEY, NULL)) != KM_OK)
        return rc;
    /* queued data-path entries first, under the old sealer */
    if ((rc = km_audit_flush(ctx)) != KM_OK)
        return rc;
    if ((rc = km_secret_new(&master, 32)) != KM_OK)
        return rc;
    if ((rc = km__random(km_secret_data(master), 32)) != KM_OK
        || (rc = km__sealer_new(&ns, master)) != KM_OK) {
        km_secret_free(master);
        return rc;
    }
    km__progress(ctx, "rekey", 0, 1);
    memset(&ra, 0, sizeof ra);
    ra.ctx = ctx;
    if ((rc = reseal_devices(ctx, master, &ra)) != KM_OK) {
        km__sealer_free(ns);
        km_secret_free(master);
        return rc;
    }
    /* ctx->mu serialises rekeys of this context and guards the swap. */
    pthread_mutex_lock(&ctx->mu);
    old = ctx->sealer;
    rc = km__vault_rekey(ctx->env, old, ns, master, passphrase, passphrase_len, kdf_cost,
                         rekey_hook, &ra);
    if (rc == KM_OK) {
        /* The old sealer and master stay alive (owned by the new sealer)
         * until km_close: a thread that loaded them before the swap gets
         * KM_E_CORRUPT from the resealed records, never freed memory. */
        km__sealer_retire(ns, old, ctx->master);
        ctx->sealer = ns;
        ctx->master = master;
        ns = NULL;
        master = NULL;
    }
    pthread_mutex_unlock(&ctx->mu);
    for (i = 0; i < ra.n; i++)
        km_secret_free(ra.blobs[i]);
    km__sealer_free(ns);
    km_secret_free(master);
    if (rc == KM_OK) {
        km__wtxn_changed();
        atomic_store(&ctx->policy_checked_ms, 0);
        km__progress(ctx, "rekey", 1, 1);
    }
    return rc;
}

int km_vault_compact(km_ctx *ctx)
{
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_compact: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_COMPACT, NULL)) != KM_OK)
        return rc;
    if ((rc = km_audit_flush(ctx)) != KM_OK)
        return rc;
    km__progress(ctx, "compact", 0, 1);
    rc = km__store_compact(ctx->env);
    if (rc == KM_OK) {
        km__wtxn_changed();
        km__progress(ctx, "compact", 1, 1);
    }
    /* audited, success or failure: it rewrites the whole vault file */
    {
        km__txn *t = NULL;
        int arc = km__wtxn_begin(ctx, &t);
        if (arc == KM_OK)
            arc = km__wtxn_commit_event(ctx, t, KM__OP_COMPACT, NULL, 0, rc,
                                        rc == KM_OK ? "vault compacted" : "vault compaction failed");
        if (rc == KM_OK)
            rc = arc;
    }
    return rc;
}
