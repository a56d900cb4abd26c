/* vault.c - the vault API (include/km/vault.h): opening and closing a
 * vault, keyslots (passphrases, device keyslots, Shamir shares), the stored
 * backend configuration, rekey and compaction, hot backup and restore. The
 * context itself is the core's (src/core/ctx.c); the storage work of rekey,
 * compaction and backup is the store's (src/store/). */
#include "core.h"
#include "remote.h"
#include "vault_int.h"
#include "km/quorum.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int km_vault_id(const km_ctx *ctx, uint8_t out[16])
{
    if (ctx == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_vault_id: %s is NULL", ctx == NULL ? "ctx" : "out");
    memcpy(out, ctx->vault_id, 16);
    return KM_OK;
}

int km_set_progress(km_ctx *ctx, km_progress_fn fn, void *arg)
{
    KM__REMOTE_NO(ctx, "km_set_progress", "the long work runs in kmd, which reports no progress to clients");
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_set_progress: ctx is NULL");
    ctx->progress = fn;
    ctx->progress_arg = arg;
    return KM_OK;
}

/* Dual control of the vault's credentials. A keyslot is a credential (an
 * owner passphrase added by one admin gives it the owner's rights; a
 * rekey, or removed slots, lock the others out), so adding or removing one
 * and rekeying need the approvals the policy's `principal-change` asks for,
 * through a request of that operation whose params are the text below
 * ("rekey", "keyslot-add:passphrase", "keyslot-add:backend:NAME",
 * "keyslot-add:shares:M-of-N", "keyslot-remove:passphrases"). The check
 * runs first (nothing costly done without the approvals); the request is
 * consumed in the change's own transaction. */
static int slot_change_check(km_ctx *ctx, const char *params)
{
    return km__quorum_check_own(ctx, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)params,
                                strlen(params));
}

static int slot_change_consume(km_ctx *ctx, km__txn *t, const char *params)
{
    return km__quorum_consume(ctx, t, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)params,
                              strlen(params));
}

int km_vault_backend_set(km_ctx *ctx, const char *name, const char *config)
{
    KM__REMOTE_NO(ctx, "km_vault_backend_set", "administer the vault as kmd's user (kmctl on the vault itself)");
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
    KM__REMOTE_NO(ctx, "km_vault_add_backend_slot", "administer the vault as kmd's user (kmctl on the vault itself)");
    km_secret *blob = NULL;
    km__txn *t = NULL;
    char pp[64];
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
    if (!km__backend_name_ok(backend))
        return km__err(KM_E_INVALID, "km_vault_add_backend_slot: backend name must be "
                                     "[a-z0-9_-]{1,31}");
    snprintf(pp, sizeof pp, "keyslot-add:backend:%s", backend);
    if ((rc = slot_change_check(ctx, pp)) != KM_OK)
        return rc;
    /* under ctx->mu: never seals a master key that a rekey is replacing */
    pthread_mutex_lock(&ctx->mu);
    rc = km__backend_slot_seal(backend, config, ctx->master, &blob);
    if (rc == KM_OK)
        rc = km__wtxn_begin(ctx, &t);
    if (rc == KM_OK)
        rc = km__slot_add_backend(t, ctx->master, backend, km_secret_data(blob),
                                  km_secret_len(blob));
    if (rc == KM_OK)
        rc = slot_change_consume(ctx, t, pp);
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
    KM__REMOTE_NO(ctx, "km_vault_add_shares", "administer the vault as kmd's user (kmctl on the vault itself)");
    km__txn *t = NULL;
    char d[48], pp[48];
    unsigned i;
    int rc;

    if (ctx == NULL || shares == NULL)
        return km__err(KM_E_INVALID, "km_vault_add_shares: %s is NULL",
                       ctx == NULL ? "ctx" : "shares");
    if (m < 2 || m > n || n > KM_SHARES_MAX)
        return km__err(KM_E_INVALID, "km_vault_add_shares: need 2 <= m <= n <= %d",
                       KM_SHARES_MAX);
    for (i = 0; i < n; i++)
        shares[i] = NULL;   /* so that every refusal below leaves them empty */
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_SLOT_ADD, NULL)) != KM_OK)
        return rc;
    snprintf(d, sizeof d, "shamir %u of %u", m, n);
    snprintf(pp, sizeof pp, "keyslot-add:shares:%u-of-%u", m, n);
    if ((rc = slot_change_check(ctx, pp)) != KM_OK)
        return rc;
    pthread_mutex_lock(&ctx->mu);
    rc = km__wtxn_begin(ctx, &t);
    if (rc == KM_OK)
        rc = km__slot_add_shamir(t, ctx->master, m, n, shares);
    if (rc == KM_OK)
        rc = slot_change_consume(ctx, t, pp);
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_ADD, NULL, 0, d);
        t = NULL;
    }
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc != KM_OK) {
        for (i = 0; i < n; i++) {
            km_secret_free(shares[i]);
            shares[i] = NULL;
        }
        return rc;
    }
    return KM_OK;
}

#define SLOT_REMOVE_OWNER "keyslot-remove:passphrases"

int km_vault_remove_passphrases(km_ctx *ctx)
{
    KM__REMOTE_NO(ctx, "km_vault_remove_passphrases", "administer the vault as kmd's user (kmctl on the vault itself)");
    km__slot_unsealer check;
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_remove_passphrases: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_SLOT_REMOVE, NULL)) != KM_OK)
        return rc;
    if ((rc = slot_change_check(ctx, SLOT_REMOVE_OWNER)) != KM_OK)
        return rc;
    km__ctx_slot_check(ctx, &check);
    pthread_mutex_lock(&ctx->mu);
    rc = km__wtxn_begin(ctx, &t);
    if (rc == KM_OK)
        rc = km__slot_remove_owner(t, &check, ctx->master);
    if (rc == KM_OK)
        rc = slot_change_consume(ctx, t, SLOT_REMOVE_OWNER);
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_REMOVE, NULL, 0, "owner passphrase slots");
        t = NULL;
    }
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

#define SLOT_ADD_OWNER "keyslot-add:passphrase"

int km_vault_add_passphrase(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                            uint32_t kdf_cost)
{
    KM__REMOTE_NO(ctx, "km_vault_add_passphrase", "administer the vault as kmd's user (kmctl on the vault itself)");
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
    if ((rc = slot_change_check(ctx, SLOT_ADD_OWNER)) != KM_OK)
        return rc;
    /* under ctx->mu, which km_vault_rekey holds from its transaction to the
     * master-key swap: the slot never wraps a master key being replaced */
    pthread_mutex_lock(&ctx->mu);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK) {
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    rc = km__slot_add_passphrase(t, ctx->master, passphrase, passphrase_len, kdf_cost);
    if (rc == KM_OK)
        rc = slot_change_consume(ctx, t, SLOT_ADD_OWNER);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    rc = km__wtxn_commit(ctx, t, KM__OP_SLOT_ADD, NULL, 0, "owner passphrase");
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

/* The policy in force at open: the stored one, or the default; with `fips`
 * and none stored, the FIPS profile. A vault's policy is always stored: a
 * format-1 vault (made before that rule) gets the policy in force written and
 * is moved to format 2 (KM__FORMAT_POLICY_STORED) in one write transaction, so
 * that from then on a deleted policy record makes the vault refuse to open
 * (fail closed) instead of falling back to the default. The same transaction
 * moves a vault of an older format to the newest (KM__FORMAT_CURRENT: from 3
 * on, every keyslot carries its MAC). */
static int policy_open(struct km_ctx *ctx, int fips)
{
    km__policy *p = NULL;
    km__txn *t = NULL;
    km_secret *rec = NULL;
    char *json = NULL;
    uint32_t format = 0;
    int rc, none = 0, audited = 0;
    static const uint8_t pkey[] = "policy";

    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__store_format(t, &format);
    km__txn_abort(t);
    t = NULL;
    if (rc != KM_OK)
        return rc;
    ctx->policy_required = format >= KM__FORMAT_POLICY_STORED;
    if ((rc = km__ctx_policy_load(ctx, &none)) != KM_OK || format >= KM__FORMAT_CHAIN)
        return rc;
    /* store the policy in force (or the FIPS profile), and the feature */
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, pkey, sizeof pkey - 1, &rec);
    km_secret_free(rec);
    if (rc == KM_E_NOTFOUND) {
        /* still none in the write transaction (another process may have set one) */
        if ((rc = km__policy_default(&p, fips)) == KM_OK
            && (json = km__policy_to_json(p)) == NULL)
            rc = km__err(KM_E_NOMEM, "out of memory");
        if (rc == KM_OK)
            rc = km__ctx_policy_put(ctx, t, json, strlen(json));
        audited = fips;
    }
    if (rc == KM_OK) {
        /* a vault without keys (a new one) goes straight to the newest
         * format; one with keys to 4, then to 5 by km__vault_format5 */
        uint64_t nkeys = 0, nvrecs = 0;
        if ((rc = km__table_count(t, KM__T_KEYS, &nkeys)) == KM_OK
            && (rc = km__table_count(t, KM__T_VMETA, &nvrecs)) == KM_OK)
            rc = km__store_format_upgrade(t, ctx->sealer, ctx->master,
                                          nkeys == 0 && nvrecs == 0 ? KM__FORMAT_CURRENT
                                                                    : KM__FORMAT_CHAIN);
    }
    /* from format 4 on the audit chain explains every record: the upgrade's
     * entry is the first catalog checkpoint (docs/SECURITY.md) */
    if (rc == KM_OK)
        rc = km__audit_checkpoint(ctx, t);
    if (rc != KM_OK)
        km__wtxn_abort(t);
    else if (audited)
        rc = km__wtxn_commit(ctx, t, KM__OP_POLICY_SET, NULL, 0, "initial vault policy");
    else
        rc = km__wtxn_commit(ctx, t, KM__OP_MAINTAIN, NULL, 0,
                             "vault format upgrade: audit catalog checkpoint");
    if (rc == KM_OK)
        ctx->policy_required = 1;
    if (rc == KM_OK && p != NULL) {
        km__ctx_policy_install(ctx, p, json, strlen(json));
        p = NULL;
    }
    km__policy_free(p);
    free(json);
    return rc;
}

/* ------------------------------------------------------------ open / close */

/* km_open's keyslot unsealer for the store: a device keyslot opens with the
 * registered backend it names (the store never calls up into the core). */
static int slot_unseal(void *arg, const char *backend, const char *config, const uint8_t *blob,
                       size_t blob_len, km_secret **master)
{
    (void)arg;
    return km__backend_slot_unseal(backend, config, blob, blob_len, master);
}

/* The keyslot of the older form that just opened the vault, rewritten as a
 * key-pair slot (docs/SECURITY.md) in an audited write transaction of its
 * own. Best effort, as it always was: a failure (a full or read-only store)
 * leaves the slot as it was, converted at a later open. */
static void slot_convert_audited(struct km_ctx *ctx, const km__slot_conv *cv)
{
    km__txn *t = NULL;
    char d[96];
    int rc;

    if (cv->kek == NULL)
        return;
    if ((rc = km__wtxn_begin(ctx, &t)) == KM_OK
        && (rc = km__store_slot_convert(t, ctx->master, cv)) == KM_OK) {
        snprintf(d, sizeof d, "keyslot %u of the older form rewritten as a key-pair slot at "
                 "its open", cv->id);
        rc = km__wtxn_commit(ctx, t, KM__OP_MAINTAIN, NULL, 0, d);
        t = NULL;
    }
    km__wtxn_abort(t);
    if (rc != KM_OK)
        km_error_clear();
}

int km_open(km_ctx **out, const char *uri, const km_open_options *opts)
{
    struct km_ctx *ctx = NULL;
    km_secret *master = NULL;
    const km__store_ops *store = NULL;
    km__slot_conv conv = { 0, NULL };
    const km__slot_unsealer unsealer = { slot_unseal, NULL, &conv };
    const char *path = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_open: out is NULL");
    *out = NULL;
    if ((rc = km_init()) != KM_OK)
        return rc;
    km__backends_builtin();
    if (uri == NULL || uri[0] == '\0')
        return km__err(KM_E_INVALID, "km_open: uri is NULL or empty");
    if (km__remote_uri(uri))    /* client mode: the vault is kmd's (remote.c) */
        return km__remote_open(out, uri, opts);
    if (opts == NULL)
        return km__err(KM_E_INVALID, "km_open: opts is NULL (a passphrase is required)");
    if (opts->version < 1 || opts->version > KM_OPEN_OPTIONS_VERSION)
        return km__err(KM_E_INVALID, "km_open: opts->version %u is not supported", opts->version);
    if (opts->flags & ~(KM_OPEN_CREATE | KM_OPEN_EXCL | KM_OPEN_STRICT_REFRESH | KM_OPEN_FIPS))
        return km__err(KM_E_INVALID, "km_open: opts->flags has unknown bits");
    if (opts->passphrase == NULL
        && !(opts->version >= 3 && (opts->slot_backend != NULL || opts->share_count > 0)))
        return km__err(KM_E_INVALID, "km_open: opts carries no passphrase, keyslot backend or "
                                     "shares");
    if (opts->passphrase != NULL && opts->passphrase_len == 0)
        return km__err(KM_E_INVALID, "km_open: opts->passphrase is empty");
    if (opts->version >= 3 && opts->share_count > 0 && opts->shares == NULL)
        return km__err(KM_E_INVALID, "km_open: opts->shares is NULL");
    if (opts->version >= 3 && opts->principal != NULL
        && (opts->passphrase == NULL || opts->principal[0] == '\0'
            || strlen(opts->principal) > 64))
        return km__err(KM_E_INVALID, "km_open: a principal (1 to 64 bytes) opens with its "
                                     "passphrase");
    if (opts->passphrase_len > 1024)
        return km__err(KM_E_INVALID, "km_open: opts->passphrase is longer than 1024 bytes");
    if (opts->kdf_cost != 0 && (opts->kdf_cost < KM_KDF_COST_MIN || opts->kdf_cost > KM_KDF_COST_MAX))
        return km__err(KM_E_INVALID, "km_open: opts->kdf_cost must be %d to %d",
                       KM_KDF_COST_MIN, KM_KDF_COST_MAX);
    if ((rc = km__store_find(uri, &store, &path)) != KM_OK)
        return rc;

    if ((ctx = km__ctx_alloc()) == NULL)
        return km__err(KM_E_NOMEM, "km_open: out of memory");
    ctx->flags = opts->flags;
    /* capped: a caller cannot keep stale rights (a revoked grant, a removed
     * role, a compromised version) alive by asking for rare refreshes */
    ctx->refresh_ms = opts->refresh_ms ? opts->refresh_ms : 100;
    if (ctx->refresh_ms > KM__REFRESH_MAX_MS)
        ctx->refresh_ms = KM__REFRESH_MAX_MS;
    ctx->clock = opts->clock;
    ctx->clock_arg = opts->clock_arg;
    ctx->cache_max = opts->version >= 2 && opts->key_cache_max != 0 ? opts->key_cache_max
                                                                    : KM__CACHE_MAX;
    rc = km__store_open(&ctx->env, store, path, opts, &unsealer, &master, ctx->vault_id,
                        ctx->principal_id);
    if (rc != KM_OK)
        goto out;
    if (opts->version >= 3 && opts->principal != NULL) {
        ctx->is_principal = 1;
        snprintf(ctx->principal_name, sizeof ctx->principal_name, "%s", opts->principal);
    } else if (opts->passphrase != NULL) {
        snprintf(ctx->principal_name, sizeof ctx->principal_name, "owner");
    } else if (opts->slot_backend != NULL) {
        snprintf(ctx->principal_name, sizeof ctx->principal_name, "backend:%s",
                 opts->slot_backend);
    } else {
        snprintf(ctx->principal_name, sizeof ctx->principal_name, "shares");
    }
    {
        km__sealer *sealer = NULL;
        rc = km__sealer_new(&sealer, master);
        ctx->sealer = sealer;
    }
    if (rc != KM_OK)
        goto out;
    ctx->master = master;
    master = NULL;
    atomic_store(&ctx->policy_checked_ms, km__mono_ms());
    rc = policy_open(ctx, (opts->flags & KM_OPEN_FIPS) != 0);
    if (rc == KM_OK)
        rc = km__vault_format5(ctx);
    if (rc == KM_OK)
        slot_convert_audited(ctx, &conv);
    if (rc == KM_OK)
        rc = km__ctx_ready(ctx);
    if (rc == KM_OK) {
        *out = ctx;
        ctx = NULL;
    }
out:
    km_secret_free(conv.kek);
    km_secret_free(master);
    km__ctx_discard(ctx);
    return rc;
}

void km_close(km_ctx *ctx)
{
    if (ctx == NULL)
        return;
    if (atomic_exchange(&ctx->closed, 1))
        return;
    km__cache_clear(ctx);
    km__ctx_unref(ctx);
}

/* ------------------------------------------------------ rekey, compaction */
/* km_vault_rekey (new master key, every record resealed) and km_vault_compact
 * (the store rewritten without free space). The storage work is in the store
 * (src/store/store.c, src/store/lmdb.c); this part handles the context. */

#define RESEAL_MAX 8

/* The device keyslots re-sealed under the new master key before the rekey
 * transaction, written by its hook. */
typedef struct rekey_arg {
    km_ctx *ctx;
    const km_secret *master;    /* the new master key (the slots' MACs) */
    size_t n, total;
    char names[RESEAL_MAX][32];
    km_secret *blobs[RESEAL_MAX];
    int op;                     /* the audit entry's operation */
    km__txn_hook pre;           /* the caller's first part, or NULL (a rekey's request) */
    void *pre_arg;
    const char *detail;         /* a rotation: the start of the audit detail (pre writes it) */
} rekey_arg;

#define REKEY_PARAMS "rekey"

/* The rekey transaction's first part, before anything is resealed: the
 * approved request (if the policy asks for one) consumed. */
static int rekey_pre(void *arg, km__txn *t, const km__sealer *s)
{
    rekey_arg *a = arg;
    if (a->pre != NULL)
        return a->pre(a->pre_arg, t, s);
    return slot_change_consume(a->ctx, t, REKEY_PARAMS);
}

static int rekey_hook(void *arg, km__txn *t, const km__sealer *s)
{
    rekey_arg *a = arg;
    char d[512];
    size_t i, kept = 0;
    int rc;

    for (i = 0; i < a->n; i++) {
        if (a->blobs[i] == NULL)
            continue;
        rc = km__slot_add_backend(t, a->master, a->names[i], km_secret_data(a->blobs[i]),
                                  km_secret_len(a->blobs[i]));
        if (rc != KM_OK)
            return rc;
        kept++;
    }
    if (a->detail != NULL)
        snprintf(d, sizeof d, "%s; master key rotated: key-pair keyslots re-wrapped, %zu device "
                              "keyslot(s) re-sealed, %zu dropped", a->detail, kept,
                 a->total - kept);
    else
        snprintf(d, sizeof d, "new master key; keyslots replaced by one passphrase, %zu device "
                              "keyslot(s) re-sealed, %zu dropped", kept, a->total - kept);
    return km__audit_append_sealed(a->ctx, t, s, a->op, NULL, 0, KM_OK, d);
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
    KM__REMOTE_NO(ctx, "km_vault_rekey", "administer the vault as kmd's user (kmctl on the vault itself)");
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_rekey: ctx is NULL");
    if ((rc = km__pass_args("km_vault_rekey", passphrase, passphrase_len, &kdf_cost)) != KM_OK)
        return rc;
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if (ctx->delegated)
        return km__err(KM_E_UNSUPPORTED, "km_vault_rekey: not through a delegated context (the "
                                         "server's own context does it)");
    if ((rc = km__acl_check(ctx, KM__OP_REKEY, NULL)) != KM_OK)
        return rc;
    if ((rc = slot_change_check(ctx, REKEY_PARAMS)) != KM_OK)
        return rc;
    return km__ctx_rekey(ctx, passphrase, passphrase_len, kdf_cost, KM__OP_REKEY, NULL, NULL,
                         NULL);
}

int km__ctx_rekey(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                  uint32_t kdf_cost, int op, km__txn_hook pre, void *pre_arg,
                  const char *detail)
{
    km_secret *master = NULL;
    km__sealer *ns = NULL, *old;
    rekey_arg ra;
    size_t i;
    int rc;

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
    ra.master = master;
    ra.op = op;
    ra.pre = pre;
    ra.pre_arg = pre_arg;
    ra.detail = passphrase == NULL ? (detail != NULL ? detail : "") : NULL;
    if ((rc = reseal_devices(ctx, master, &ra)) != KM_OK) {
        km__sealer_free(ns);
        km_secret_free(master);
        return rc;
    }
    /* ctx->mu serialises rekeys of this context and guards the swap. */
    pthread_mutex_lock(&ctx->mu);
    old = ctx->sealer;
    rc = km__vault_rekey(ctx->env, old, ns, ctx->master, master, passphrase, passphrase_len,
                         kdf_cost, rekey_pre, rekey_hook, &ra);
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
    KM__REMOTE_NO(ctx, "km_vault_compact", "administer the vault as kmd's user (kmctl on the vault itself)");
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_compact: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if (ctx->delegated)
        return km__err(KM_E_UNSUPPORTED, "km_vault_compact: not through a delegated context (the "
                                         "server's own context does it)");
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

/* ---------------------------------------------------- hot backup, restore */
/* km_vault_backup (a consistent copy of an open vault, taken while writers
 * run) and km_vault_restore (a backup made a vault directory again). The file
 * work is the store's (src/store/lmdb_backup.c for LMDB). */

int km_vault_backup(km_ctx *ctx, const char *path)
{
    KM__REMOTE_NO(ctx, "km_vault_backup", "administer the vault as kmd's user (kmctl on the vault itself)");
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_backup: ctx is NULL");
    if (path == NULL || path[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_backup: path is NULL or empty");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_BACKUP, NULL)) != KM_OK)
        return rc;
    /* queued data-path entries go into the copy too; the backup itself is
     * recorded before the snapshot, so the copy holds its own entry */
    if ((rc = km_audit_flush(ctx)) != KM_OK
        || (rc = km__audit_event(ctx, KM__OP_BACKUP, NULL, 0, KM_OK, "hot backup")) != KM_OK)
        return rc;
    return km__store_backup(ctx->env, path);
}

/* km_vault_copy: the record copy is the store's (km__store_copy); here the
 * checks, dual control and the audit entry, written before the snapshot so
 * that the copy holds it. */
int km_vault_copy(km_ctx *ctx, const char *dst_uri, const km_open_options *dst_opts)
{
    KM__REMOTE_NO(ctx, "km_vault_copy", "administer the vault as kmd's user (kmctl on the vault itself)");
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    const km__store_ops *ops;
    const char *loc;
    km__store *dst = NULL;
    km__txn *t = NULL;
    char detail[256];
    uint64_t n = 0;
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_copy: ctx is NULL");
    if (dst_uri == NULL || dst_uri[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_copy: the destination URI is NULL or empty");
    if (dst_opts != NULL) {
        if (dst_opts->version < 1 || dst_opts->version > KM_OPEN_OPTIONS_VERSION)
            return km__err(KM_E_INVALID, "km_vault_copy: options of an unknown version");
        memcpy(&o, dst_opts, dst_opts->version >= 4 ? sizeof o
                                                    : offsetof(km_open_options, tls_ca));
        o.version = KM_OPEN_OPTIONS_VERSION;
    }
    o.flags |= KM_OPEN_CREATE;
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__acl_check(ctx, KM__OP_BACKUP, NULL))
                                                  != KM_OK)
        return rc;
    if ((rc = km__store_find(dst_uri, &ops, &loc)) != KM_OK)
        return rc;
    /* the copy holds every key (sealed, with the keyslots): an export of the
     * whole vault, under the vault's dual control for exports */
    snprintf(detail, sizeof detail, "vault copy to %s:%.200s", ops->scheme, loc);
    if ((rc = ops->open(&dst, loc, &o)) != KM_OK)
        return rc;
    if ((rc = km_audit_flush(ctx)) != KM_OK || (rc = km__wtxn_begin(ctx, &t)) != KM_OK) {
        km__store_close(dst);
        return rc;
    }
    rc = km__quorum_consume(ctx, t, KM_REQ_EXPORT, NULL, (const uint8_t *)detail,
                            strlen(detail));
    if (rc != KM_OK)
        km__wtxn_abort(t);
    else if ((rc = km__wtxn_commit_event(ctx, t, KM__OP_BACKUP, NULL, 0, KM_OK, detail))
             == KM_OK)
        rc = km__store_copy(ctx->env, dst, &n);
    km__store_close(dst);
    return rc;
}

int km_vault_restore(const char *backup, const char *dir)
{
    if (backup == NULL || backup[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_restore: backup is NULL or empty");
    if (dir == NULL || dir[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_restore: dir is NULL or empty");
    return km__store_restore(backup, dir);
}
