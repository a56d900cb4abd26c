/* vault_api.c - the vault administration API (include/km/vault.h):
 * keyslots (passphrases, device keyslots, Shamir shares) and the stored
 * backend configuration. Opening and closing a context is the core (ctx.c);
 * rekey and compaction are rekey.c. */
#include "core.h"

#include <stdio.h>
#include <string.h>

int km_vault_backend_set(km_ctx *ctx, const char *name, const char *config)
{
    uint8_t key[48];
    size_t klen, clen;
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL || name == NULL)
        return km__err(KM_E_INVALID, "km_vault_backend_set: %s is NULL", ctx == NULL ? "ctx" : "name");
    if (!km__backend_name_ok(name))
        return km__err(KM_E_INVALID, "km_vault_backend_set: name must be [a-z0-9_-]{1,31}");
    if (strcmp(name, "software") == 0)
        return km__err(KM_E_INVALID, "km_vault_backend_set: the software backend takes no configuration");
    clen = config != NULL ? strnlen(config, 65537) : 0;
    if (config != NULL && (clen == 0 || clen > 65536))
        return km__err(KM_E_INVALID, "km_vault_backend_set: config must be 1 byte to 64 KiB");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if (!km__backend_known(name))
        return km__err(KM_E_UNSUPPORTED, "no backend named '%s' is built in or registered", name);
    if ((rc = km__acl_check(ctx, KM__OP_BACKEND_SET, NULL)) != KM_OK)
        return rc;
    km__backend_config_key(name, key, &klen);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if (config != NULL)
        rc = km__rec_put(t, ctx->sealer, KM__T_META, key, klen, (const uint8_t *)config, clen, 0);
    else if ((rc = km__rec_del(t, KM__T_META, key, klen)) == KM_E_NOTFOUND)
        rc = KM_OK;
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    /* the name only in the log: the configuration may hold a PIN; an
     * instance already open keeps its configuration until the vault is reopened */
    return km__wtxn_commit(ctx, t, KM__OP_BACKEND_SET, NULL, 0, name);
}

int km_vault_add_backend_slot(km_ctx *ctx, const char *backend, const char *config)
{
    km_secret *blob = NULL;
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL || backend == NULL)
        return km__err(KM_E_INVALID, "km_vault_add_backend_slot: %s is NULL",
                       ctx == NULL ? "ctx" : "backend");
    if (strcmp(backend, "software") == 0)
        return km__err(KM_E_INVALID, "km_vault_add_backend_slot: the software backend holds no "
                                     "keyslot (add a passphrase instead)");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_SLOT_ADD, NULL)) != KM_OK)
        return rc;
    /* under ctx->mu: never seals a master key that a rekey is replacing */
    pthread_mutex_lock(&ctx->mu);
    rc = km__backend_slot_seal(backend, config, ctx->master, &blob);
    if (rc == KM_OK)
        rc = km__wtxn_begin(ctx, &t);
    if (rc == KM_OK)
        rc = km__slot_add_backend(t, backend, km_secret_data(blob), km_secret_len(blob));
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_ADD, NULL, 0, backend);
        t = NULL;
    }
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    km_secret_free(blob);
    return rc;
}

int km_vault_add_shares(km_ctx *ctx, unsigned m, unsigned n, km_secret **shares)
{
    km__txn *t = NULL;
    char d[48];
    int rc;

    if (ctx == NULL || shares == NULL)
        return km__err(KM_E_INVALID, "km_vault_add_shares: %s is NULL",
                       ctx == NULL ? "ctx" : "shares");
    if (m < 2 || m > n || n > KM_SHARES_MAX)
        return km__err(KM_E_INVALID, "km_vault_add_shares: need 2 <= m <= n <= %d",
                       KM_SHARES_MAX);
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_SLOT_ADD, NULL)) != KM_OK)
        return rc;
    snprintf(d, sizeof d, "shamir %u of %u", m, n);
    pthread_mutex_lock(&ctx->mu);
    rc = km__wtxn_begin(ctx, &t);
    if (rc == KM_OK)
        rc = km__slot_add_shamir(t, ctx->master, m, n, shares);
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_ADD, NULL, 0, d);
        t = NULL;
    }
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc != KM_OK) {
        unsigned i;
        for (i = 0; i < n; i++) {
            km_secret_free(shares[i]);
            shares[i] = NULL;
        }
        return rc;
    }
    return KM_OK;
}

int km_vault_remove_passphrases(km_ctx *ctx)
{
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_remove_passphrases: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_SLOT_REMOVE, NULL)) != KM_OK)
        return rc;
    pthread_mutex_lock(&ctx->mu);
    rc = km__wtxn_begin(ctx, &t);
    if (rc == KM_OK)
        rc = km__slot_remove_owner(t);
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_REMOVE, NULL, 0, "owner passphrase slots");
        t = NULL;
    }
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

int km_vault_add_passphrase(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                            uint32_t kdf_cost)
{
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_add_passphrase: ctx is NULL");
    if ((rc = km__pass_args("km_vault_add_passphrase", passphrase, passphrase_len, &kdf_cost))
        != KM_OK)
        return rc;
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_SLOT_ADD, NULL)) != KM_OK)
        return rc;
    /* under ctx->mu, which km_vault_rekey holds from its transaction to the
     * master-key swap: the slot never wraps a master key being replaced */
    pthread_mutex_lock(&ctx->mu);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK) {
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    rc = km__slot_add_passphrase(t, ctx->master, passphrase, passphrase_len, kdf_cost);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_ADD, NULL, 0, "owner passphrase");
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}
