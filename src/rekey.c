/* rekey.c - km_vault_rekey (new master key, every record resealed) and
 * km_vault_compact (data.mdb rewritten without free pages). The storage
 * work is in backends/lmdb/vault.c; this file handles the context. */
#include "core.h"

static int rekey_audit(void *arg, km__txn *t, const km__sealer *s)
{
    return km__audit_append_sealed(arg, t, s, KM__OP_REKEY, NULL, 0, KM_OK,
                                   "new master key; every keyslot replaced by one passphrase");
}

int km_vault_rekey(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                   uint32_t kdf_cost)
{
    km_secret *master = NULL;
    km__sealer *ns = NULL, *old;
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
    /* ctx->mu serialises rekeys of this context and guards the swap. */
    pthread_mutex_lock(&ctx->mu);
    old = ctx->sealer;
    rc = km__vault_rekey(ctx->env, old, ns, master, passphrase, passphrase_len, kdf_cost,
                         rekey_audit, ctx);
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
    km__sealer_free(ns);
    km_secret_free(master);
    if (rc == KM_OK) {
        atomic_fetch_add(&km__write_gen, 1);
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
    rc = km__env_compact(ctx->env);
    if (rc == KM_OK) {
        atomic_fetch_add(&km__write_gen, 1);
        km__progress(ctx, "compact", 1, 1);
    }
    return rc;
}
