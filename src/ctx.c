/* ctx.c - opening and closing vaults, the clock, the backend registry. */
#include "core.h"
#include "km/quorum.h"

#include <stdio.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

atomic_uint km__write_gen;

/* ------------------------------------------------------- backend registry */

#define KM__MAX_BACKENDS 16

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static km_backend_ops reg[KM__MAX_BACKENDS];
static int reg_builtin[KM__MAX_BACKENDS];
static int reg_n;

static int valid_backend_name(const char *n)
{
    size_t i, len = n ? strlen(n) : 0;
    if (len == 0 || len > 31)
        return 0;
    for (i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int find_backend_locked(const char *name)
{
    int i;
    for (i = 0; i < reg_n; i++)
        if (strcmp(reg[i].name, name) == 0)
            return i;
    return -1;
}

static int register_backend(const km_backend_ops *ops, int builtin)
{
    int rc = KM_OK;

    if (ops == NULL)
        return km__err(KM_E_INVALID, "km_backend_register: ops is NULL");
    if (ops->version == 0)
        return km__err(KM_E_INVALID, "km_backend_register: ops->version is 0");
    if (ops->version > KM_BACKEND_OPS_VERSION)
        return km__err(KM_E_UNSUPPORTED,
                       "km_backend_register: ops->version %u is newer than this libkm (%u)",
                       ops->version, (unsigned)KM_BACKEND_OPS_VERSION);
    if (!valid_backend_name(ops->name))
        return km__err(KM_E_INVALID, "km_backend_register: ops->name must be [a-z0-9_-]{1,31}");
    if (ops->generate == NULL || ops->load == NULL || ops->unload == NULL)
        return km__err(KM_E_INVALID,
                       "km_backend_register: generate, load and unload are required");
    pthread_mutex_lock(&reg_mu);
    if (find_backend_locked(ops->name) >= 0) {
        rc = km__err(KM_E_EXISTS, "km_backend_register: a backend named '%s' is registered",
                     ops->name);
    } else if (reg_n == KM__MAX_BACKENDS) {
        rc = km__err(KM_E_NOMEM, "km_backend_register: too many backends");
    } else {
        /* Copy only what the caller's version defines; the rest stays NULL. */
        memset(&reg[reg_n], 0, sizeof reg[reg_n]);
        memcpy(&reg[reg_n], ops,
               ops->version >= 2 ? sizeof *ops : offsetof(km_backend_ops, slot_seal));
        reg_builtin[reg_n] = builtin;
        reg_n++;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static void register_builtins(void);

int km_backend_register(const km_backend_ops *ops)
{
    int rc = km_init();
    if (rc != KM_OK)
        return rc;
    /* the built-in backends first: a program can neither take their names
     * nor be listed before them */
    (void)pthread_once(&builtin_once, register_builtins);
    return register_backend(ops, 0);
}

int km_backend_unregister(const char *name)
{
    int i, rc = KM_OK;

    if (name == NULL)
        return km__err(KM_E_INVALID, "km_backend_unregister: name is NULL");
    pthread_mutex_lock(&reg_mu);
    i = find_backend_locked(name);
    if (i < 0) {
        rc = km__err(KM_E_NOTFOUND, "km_backend_unregister: no backend named '%s'", name);
    } else if (reg_builtin[i]) {
        rc = km__err(KM_E_BUSY, "km_backend_unregister: '%s' is built in", name);
    } else {
        for (; i + 1 < reg_n; i++) {
            reg[i] = reg[i + 1];
            reg_builtin[i] = reg_builtin[i + 1];
        }
        reg_n--;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

int km_backend_names(char (*names)[KM_BACKEND_NAME_MAX + 1], size_t cap, size_t *n)
{
    int i, rc;

    if (n == NULL)
        return km__err(KM_E_INVALID, "km_backend_names: n is NULL");
    *n = 0;
    if (names == NULL && cap > 0)
        return km__err(KM_E_INVALID, "km_backend_names: names is NULL");
    if ((rc = km_init()) != KM_OK)
        return rc;
    pthread_once(&builtin_once, register_builtins);
    pthread_mutex_lock(&reg_mu);
    for (i = 0; i < reg_n; i++) {
        if ((size_t)i < cap)
            snprintf(names[i], KM_BACKEND_NAME_MAX + 1, "%s", reg[i].name);
    }
    *n = (size_t)reg_n;
    pthread_mutex_unlock(&reg_mu);
    return KM_OK;
}

static void register_builtins(void)
{
    (void)register_backend(&km__software_backend, 1);
#ifdef KM_HAVE_PKCS11
    (void)register_backend(&km__pkcs11_backend, 1);
    (void)register_backend(&km__pkcs11_card_backend, 1);
#endif
#ifdef KM_HAVE_TPM2
    (void)register_backend(&km__tpm2_backend, 1);
#endif
    (void)register_backend(&km__kmip_backend, 1);
}

/* A backend's configuration lives sealed in the vault's meta table under
 * "backend/<name>" (it may hold a PIN the administrator chose to keep). */
static void backend_config_key(const char *name, uint8_t *out, size_t *len)
{
    *len = (size_t)snprintf((char *)out, 48, "backend/%s", name);
}

/* The stored configuration of a backend as a NUL-terminated string in secure
 * memory, or NULL when none is stored. */
static int backend_config_get(struct km_ctx *ctx, const char *name, km_secret **out)
{
    uint8_t key[48];
    size_t klen;
    km_secret *rec = NULL;
    km__txn *t = NULL;
    int rc;

    *out = NULL;
    backend_config_key(name, key, &klen);
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, key, klen, &rec);
    km__txn_abort(t);
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    rc = km_secret_new(out, km_secret_len(rec) + 1);
    if (rc == KM_OK)
        memcpy(km_secret_data(*out), km_secret_data(rec), km_secret_len(rec));
    km_secret_free(rec);
    return rc;
}

int km_vault_backend_set(km_ctx *ctx, const char *name, const char *config)
{
    uint8_t key[48];
    size_t klen, clen;
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL || name == NULL)
        return km__err(KM_E_INVALID, "km_vault_backend_set: %s is NULL", ctx == NULL ? "ctx" : "name");
    if (!valid_backend_name(name))
        return km__err(KM_E_INVALID, "km_vault_backend_set: name must be [a-z0-9_-]{1,31}");
    if (strcmp(name, "software") == 0)
        return km__err(KM_E_INVALID, "km_vault_backend_set: the software backend takes no configuration");
    clen = config != NULL ? strnlen(config, 65537) : 0;
    if (config != NULL && (clen == 0 || clen > 65536))
        return km__err(KM_E_INVALID, "km_vault_backend_set: config must be 1 byte to 64 KiB");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    pthread_mutex_lock(&reg_mu);
    rc = find_backend_locked(name) >= 0 ? KM_OK
         : km__err(KM_E_UNSUPPORTED, "no backend named '%s' is built in or registered", name);
    pthread_mutex_unlock(&reg_mu);
    if (rc != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_BACKEND_SET, NULL)) != KM_OK)
        return rc;
    backend_config_key(name, key, &klen);
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    if (config != NULL)
        rc = km__rec_put(t, ctx->sealer, KM__T_META, key, klen, (const uint8_t *)config, clen, 0);
    else if ((rc = km__rec_del(t, KM__T_META, key, klen)) == KM_E_NOTFOUND)
        rc = KM_OK;
    if (rc == KM_OK)  /* the name only: the configuration may hold a PIN */
        rc = km__audit_append(ctx, t, KM__OP_BACKEND_SET, NULL, 0, KM_OK, name);
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    if ((rc = km__txn_commit(t)) != KM_OK)
        return rc;
    atomic_fetch_add(&km__write_gen, 1);
    /* an instance already open keeps its configuration until the vault is reopened */
    return KM_OK;
}

int km__backend_get(struct km_ctx *ctx, const char *name, km__backend_inst **out)
{
    km__backend_inst *b;
    int i, rc;

    *out = NULL;
    pthread_mutex_lock(&ctx->mu);
    for (b = ctx->backends; b != NULL; b = b->next) {
        if (strcmp(b->ops.name, name) == 0) {
            *out = b;
            pthread_mutex_unlock(&ctx->mu);
            return KM_OK;
        }
    }
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        pthread_mutex_unlock(&ctx->mu);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&reg_mu);
    i = find_backend_locked(name);
    if (i >= 0)
        b->ops = reg[i];
    pthread_mutex_unlock(&reg_mu);
    if (i < 0) {
        free(b);
        pthread_mutex_unlock(&ctx->mu);
        return km__err(KM_E_UNSUPPORTED, "no backend named '%s' is registered", name);
    }
    if (b->ops.open != NULL) {
        km_secret *config = NULL;
        rc = backend_config_get(ctx, name, &config);
        if (rc == KM_OK)
            rc = b->ops.open(&b->state, config ? (const char *)km_secret_data(config) : NULL);
        km_secret_free(config);
        if (rc != KM_OK) {
            free(b);
            pthread_mutex_unlock(&ctx->mu);
            return rc < 0 ? rc : km__err(KM_E_BACKEND, "backend '%s' failed to open", name);
        }
    }
    b->next = ctx->backends;
    ctx->backends = b;
    *out = b;
    pthread_mutex_unlock(&ctx->mu);
    return KM_OK;
}

/* A short-lived instance of a registered backend opened with `config`, for
 * a keyslot (the vault's stored configuration is not readable yet when a
 * vault is being unlocked). */
static int slot_backend_open(const char *name, const char *config, km_backend_ops *ops,
                             void **state)
{
    int i, rc;

    *state = NULL;
    (void)pthread_once(&builtin_once, register_builtins);
    if (!valid_backend_name(name))
        return km__err(KM_E_INVALID, "keyslot backend name must be [a-z0-9_-]{1,31}");
    pthread_mutex_lock(&reg_mu);
    i = find_backend_locked(name);
    if (i >= 0)
        *ops = reg[i];
    pthread_mutex_unlock(&reg_mu);
    if (i < 0)
        return km__err(KM_E_UNSUPPORTED, "no backend named '%s' is registered", name);
    if (ops->slot_seal == NULL || ops->slot_unseal == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot hold a keyslot", name);
    if (ops->open != NULL && (rc = ops->open(state, config)) != KM_OK)
        return rc < 0 ? rc : km__err(KM_E_BACKEND, "backend '%s' failed to open", name);
    return KM_OK;
}

int km__backend_slot_seal(const char *name, const char *config, const km_secret *master,
                          km_secret **blob)
{
    km_backend_ops ops;
    void *state = NULL;
    int rc;

    *blob = NULL;
    if ((rc = slot_backend_open(name, config, &ops, &state)) != KM_OK)
        return rc;
    rc = ops.slot_seal(state, master, blob);
    if (rc == KM_OK && (*blob == NULL || km_secret_len(*blob) == 0
                        || km_secret_len(*blob) > KM__SLOT_BLOB_MAX)) {
        km_secret_free(*blob);
        *blob = NULL;
        rc = km__err(KM_E_BACKEND, "backend '%s' returned an unusable keyslot blob", name);
    }
    if (rc > 0)
        rc = km__err(KM_E_BACKEND, "backend '%s' could not seal the master key", name);
    if (ops.close != NULL)
        ops.close(state);
    return rc;
}

int km__backend_slot_seal_for(struct km_ctx *ctx, const char *name, const km_secret *master,
                              km_secret **blob)
{
    km_secret *config = NULL;
    int rc;

    *blob = NULL;
    if ((rc = backend_config_get(ctx, name, &config)) != KM_OK)
        return rc;
    rc = km__backend_slot_seal(name, config ? (const char *)km_secret_data(config) : NULL, master,
                               blob);
    km_secret_free(config);
    return rc;
}

int km__backend_slot_unseal(const char *name, const char *config, const uint8_t *blob,
                            size_t blob_len, km_secret **master)
{
    km_backend_ops ops;
    void *state = NULL;
    int rc;

    *master = NULL;
    if ((rc = slot_backend_open(name, config, &ops, &state)) != KM_OK)
        return rc;
    rc = ops.slot_unseal(state, blob, blob_len, master);
    if (rc > 0)
        rc = km__err(KM_E_BACKEND, "backend '%s' could not unseal the master key", name);
    if (rc != KM_OK) {
        km_secret_free(*master);
        *master = NULL;
    }
    if (ops.close != NULL)
        ops.close(state);
    return rc;
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
        rc = km__txn_begin(ctx->env, 1, &t);
    if (rc == KM_OK)
        rc = km__slot_add_backend(t, backend, km_secret_data(blob), km_secret_len(blob));
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_SLOT_ADD, NULL, 0, KM_OK, backend);
    if (rc == KM_OK) {
        rc = km__txn_commit(t);
        t = NULL;
    }
    km__txn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    km_secret_free(blob);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
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
    rc = km__txn_begin(ctx->env, 1, &t);
    if (rc == KM_OK)
        rc = km__slot_add_shamir(t, ctx->master, m, n, shares);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_SLOT_ADD, NULL, 0, KM_OK, d);
    if (rc == KM_OK) {
        rc = km__txn_commit(t);
        t = NULL;
    }
    km__txn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc != KM_OK) {
        unsigned i;
        for (i = 0; i < n; i++) {
            km_secret_free(shares[i]);
            shares[i] = NULL;
        }
        return rc;
    }
    atomic_fetch_add(&km__write_gen, 1);
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
    rc = km__txn_begin(ctx->env, 1, &t);
    if (rc == KM_OK)
        rc = km__slot_remove_owner(t);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_SLOT_REMOVE, NULL, 0, KM_OK,
                              "owner passphrase slots");
    if (rc == KM_OK) {
        rc = km__txn_commit(t);
        t = NULL;
    }
    km__txn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
    return rc;
}

int km_set_progress(km_ctx *ctx, km_progress_fn fn, void *arg)
{
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_set_progress: ctx is NULL");
    ctx->progress = fn;
    ctx->progress_arg = arg;
    return KM_OK;
}

void km__progress(struct km_ctx *ctx, const char *what, uint64_t done, uint64_t total)
{
    if (ctx->progress != NULL)
        ctx->progress(what, done, total, ctx->progress_arg);
}

/* ----------------------------------------------------------------- policy */

static const uint8_t policy_rec_key[] = "policy";

const km__policy *km__policy_acquire(struct km_ctx *ctx)
{
    pthread_rwlock_rdlock(&ctx->policy_lock);
    return ctx->policy;
}

void km__policy_release(struct km_ctx *ctx)
{
    pthread_rwlock_unlock(&ctx->policy_lock);
}

/* Installs a parsed policy and the document it came from. */
static void policy_install(struct km_ctx *ctx, km__policy *p, const char *json, size_t len)
{
    char *copy = NULL;
    if (json != NULL && (copy = malloc(len ? len : 1)) != NULL)
        memcpy(copy, json, len);
    pthread_rwlock_wrlock(&ctx->policy_lock);
    km__policy_free(ctx->policy);
    free(ctx->policy_json);
    ctx->policy = p;
    ctx->policy_json = copy;
    ctx->policy_json_len = copy ? len : 0;
    pthread_rwlock_unlock(&ctx->policy_lock);
}

static int policy_store(struct km_ctx *ctx, const char *json, size_t len, int change)
{
    km__txn *t = NULL;
    int rc = km__txn_begin(ctx->env, 1, &t);
    if (rc != KM_OK)
        return rc;
    rc = km__rec_put(t, ctx->sealer, KM__T_META, policy_rec_key, sizeof policy_rec_key - 1,
                     (const uint8_t *)json, len, 0);
    /* the approvals the policy in force asks for (the new one may ask for more) */
    if (rc == KM_OK && change)
        rc = km__quorum_consume(ctx, t, KM_REQ_POLICY_CHANGE, NULL, (const uint8_t *)json, len);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_POLICY_SET, NULL, 0, KM_OK,
                              change ? "vault policy" : "initial vault policy");
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    rc = km__txn_commit(t);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
    return rc;
}

/* Loads the stored policy (or the default); with `fips` and no stored
 * policy, stores the FIPS profile. */
static int policy_load(struct km_ctx *ctx, int fips)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__policy *p = NULL;
    int rc = km__txn_begin(ctx->env, 0, &t);

    if (rc != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, policy_rec_key, sizeof policy_rec_key - 1, &rec);
    km__txn_abort(t);
    if (rc == KM_E_NOTFOUND) {
        rc = km__policy_default(&p, fips);
        if (rc == KM_OK && fips) {
            char *json = km__policy_to_json(p);
            rc = json ? policy_store(ctx, json, strlen(json), 0) : km__err(KM_E_NOMEM, "out of memory");
            if (rc == KM_OK)
                policy_install(ctx, p, json, strlen(json));
            free(json);
        } else if (rc == KM_OK) {
            policy_install(ctx, p, NULL, 0);
        }
        if (rc != KM_OK)
            km__policy_free(p);
        return rc;
    }
    if (rc != KM_OK)
        return rc;
    pthread_rwlock_rdlock(&ctx->policy_lock);
    if (ctx->policy != NULL && ctx->policy_json != NULL && ctx->policy_json_len == km_secret_len(rec)
        && memcmp(ctx->policy_json, km_secret_data(rec), km_secret_len(rec)) == 0) {
        pthread_rwlock_unlock(&ctx->policy_lock);
        km_secret_free(rec);
        return KM_OK; /* unchanged */
    }
    pthread_rwlock_unlock(&ctx->policy_lock);
    rc = km__policy_parse(&p, (const char *)km_secret_data(rec), km_secret_len(rec), NULL);
    if (rc == KM_OK)
        policy_install(ctx, p, (const char *)km_secret_data(rec), km_secret_len(rec));
    else
        rc = km__err(KM_E_CORRUPT, "the vault's stored policy does not parse: %s",
                     km_error_last()->message);
    km_secret_free(rec);
    return rc;
}

int km__ctx_policy_refresh(struct km_ctx *ctx, int force)
{
    int64_t now = km__mono_ms();
    if (!force && now - atomic_load(&ctx->policy_checked_ms) < (int64_t)ctx->refresh_ms)
        return KM_OK;
    atomic_store(&ctx->policy_checked_ms, now);
    return policy_load(ctx, 0);
}

int km_policy_set(km_ctx *ctx, const char *json, size_t json_len)
{
    km__policy *p = NULL;
    int rc;

    if (ctx == NULL || json == NULL)
        return km__err(KM_E_INVALID, "km_policy_set: %s is NULL", ctx == NULL ? "ctx" : "json");
    if (json_len == 0 || json_len > (1u << 20))
        return km__err(KM_E_INVALID, "km_policy_set: json must be 1 byte to 1 MiB");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_POLICY_SET, NULL)) != KM_OK)
        return rc;
    if ((rc = km__policy_parse(&p, json, json_len, NULL)) != KM_OK)
        return rc;
    rc = policy_store(ctx, json, json_len, 1);
    if (rc == KM_OK)
        policy_install(ctx, p, json, json_len);
    else
        km__policy_free(p);
    return rc;
}

int km_policy_get(km_ctx *ctx, char *out, size_t out_cap, size_t *out_len)
{
    char *json;
    size_t n;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_policy_get: out_len is NULL");
    *out_len = 0;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_policy_get: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__ctx_policy_refresh(ctx, 1)) != KM_OK)
        return rc;
    json = km__policy_to_json(km__policy_acquire(ctx));
    km__policy_release(ctx);
    if (json == NULL)
        return km__err(KM_E_NOMEM, "km_policy_get: out of memory");
    n = strlen(json);
    if (out == NULL || out_cap < n + 1) {
        *out_len = n + 1;
        free(json);
        return km__err(KM_E_BUFFER, "km_policy_get: out needs %zu bytes", n + 1);
    }
    memcpy(out, json, n + 1);
    *out_len = n;
    free(json);
    return KM_OK;
}

/* ------------------------------------------------------------------ clock */

int64_t km__now(const struct km_ctx *ctx)
{
    if (ctx->clock != NULL)
        return ctx->clock(ctx->clock_arg);
    return (int64_t)time(NULL);
}

int64_t km__mono_ms(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ open / close */

static int parse_uri(const char *uri, const char **path)
{
    if (strncmp(uri, "lmdb:", 5) == 0) {
        *path = uri + 5;
        if (strncmp(*path, "//", 2) == 0) /* lmdb:///abs/path */
            *path += 2;
    } else if (strchr(uri, ':') != NULL && uri[0] != '/' && uri[0] != '.') {
        return km__err(KM_E_INVALID, "km_open: unknown URI scheme (expected lmdb:/path)");
    } else {
        *path = uri;
    }
    if ((*path)[0] == '\0')
        return km__err(KM_E_INVALID, "km_open: the URI names no directory");
    if (strlen(*path) > 4000)
        return km__err(KM_E_INVALID, "km_open: path too long");
    return KM_OK;
}

int km_open(km_ctx **out, const char *uri, const km_open_options *opts)
{
    struct km_ctx *ctx = NULL;
    km_secret *master = NULL;
    const char *path = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_open: out is NULL");
    *out = NULL;
    if ((rc = km_init()) != KM_OK)
        return rc;
    (void)pthread_once(&builtin_once, register_builtins);
    if (uri == NULL || uri[0] == '\0')
        return km__err(KM_E_INVALID, "km_open: uri is NULL or empty");
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
    if ((rc = parse_uri(uri, &path)) != KM_OK)
        return rc;

    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return km__err(KM_E_NOMEM, "km_open: out of memory");
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->closed, 0);
    ctx->fork_gen = atomic_load(&km__fork_gen);
    ctx->flags = opts->flags;
    ctx->refresh_ms = opts->refresh_ms ? opts->refresh_ms : 100;
    ctx->clock = opts->clock;
    ctx->clock_arg = opts->clock_arg;
    ctx->cache_max = opts->version >= 2 && opts->key_cache_max != 0 ? opts->key_cache_max
                                                                    : KM__CACHE_MAX;
    pthread_mutex_init(&ctx->mu, NULL);
    pthread_rwlock_init(&ctx->cache_lock, NULL);
    pthread_rwlock_init(&ctx->policy_lock, NULL);

    pthread_mutex_init(&ctx->audit.mu, NULL);
    pthread_mutex_init(&ctx->audit.kmu, NULL);
    pthread_mutex_init(&ctx->audit.fmu, NULL);
    ctx->audit.fd = -1;
    rc = km__env_open(&ctx->env, path, opts, &master, ctx->vault_id, ctx->principal_id);
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
    rc = policy_load(ctx, (opts->flags & KM_OPEN_FIPS) != 0);
    if (rc != KM_OK)
        goto out;
    if ((rc = km__acl_load(ctx)) != KM_OK)
        goto out;
    if ((rc = km__audit_open(ctx)) != KM_OK) {
        km__audit_close(ctx);
        goto out;
    }
    *out = ctx;
    ctx = NULL;
out:
    km_secret_free(master);
    if (ctx != NULL) {
        km__sealer_free(ctx->sealer);
        km_secret_free(ctx->master);
        km__policy_free(ctx->policy);
        free(ctx->policy_json);
        if (ctx->env != NULL)
            km__env_close(ctx->env);
        pthread_mutex_destroy(&ctx->mu);
        pthread_mutex_destroy(&ctx->audit.mu);
        pthread_mutex_destroy(&ctx->audit.kmu);
        pthread_mutex_destroy(&ctx->audit.fmu);
        pthread_rwlock_destroy(&ctx->cache_lock);
        pthread_rwlock_destroy(&ctx->policy_lock);
        free(ctx);
    }
    return rc;
}

void km__ctx_ref(struct km_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
}

void km__ctx_unref(struct km_ctx *ctx)
{
    km__backend_inst *b, *n;

    if (atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    for (b = ctx->backends; b != NULL; b = n) {
        n = b->next;
        if (b->ops.close != NULL)
            b->ops.close(b->state);
        free(b);
    }
    km__audit_close(ctx);
    pthread_mutex_destroy(&ctx->audit.mu);
    pthread_mutex_destroy(&ctx->audit.kmu);
    pthread_mutex_destroy(&ctx->audit.fmu);
    km__sealer_free(ctx->sealer);
    km_secret_free(ctx->master);
    km__policy_free(ctx->policy);
    free(ctx->policy_json);
    km__env_close(ctx->env);
    pthread_mutex_destroy(&ctx->mu);
    pthread_rwlock_destroy(&ctx->cache_lock);
    pthread_rwlock_destroy(&ctx->policy_lock);
    free(ctx);
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

int km__ctx_check(struct km_ctx *ctx)
{
    if (atomic_load_explicit(&ctx->closed, memory_order_relaxed))
        return km__err(KM_E_STATE, "the vault was closed");
    if (ctx->fork_gen != atomic_load_explicit(&km__fork_gen, memory_order_relaxed))
        return km__err(KM_E_FORK, "vault handle used in a forked child; open it again there");
    return KM_OK;
}

int km_vault_id(const km_ctx *ctx, uint8_t out[16])
{
    if (ctx == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_vault_id: %s is NULL", ctx == NULL ? "ctx" : "out");
    memcpy(out, ctx->vault_id, 16);
    return KM_OK;
}

int km__pass_args(const char *fn, const uint8_t *pass, size_t pass_len, uint32_t *kdf_cost)
{
    if (pass == NULL || pass_len == 0 || pass_len > 1024)
        return km__err(KM_E_INVALID, "%s: passphrase must be 1 to 1024 bytes", fn);
    if (*kdf_cost == 0)
        *kdf_cost = KM_KDF_COST_DEFAULT;
    if (*kdf_cost < KM_KDF_COST_MIN || *kdf_cost > KM_KDF_COST_MAX)
        return km__err(KM_E_INVALID, "%s: kdf_cost must be %d to %d", fn, KM_KDF_COST_MIN,
                       KM_KDF_COST_MAX);
    return KM_OK;
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
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK) {
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    rc = km__slot_add_passphrase(t, ctx->master, passphrase, passphrase_len, kdf_cost);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_SLOT_ADD, NULL, 0, KM_OK, "owner passphrase");
    if (rc != KM_OK) {
        km__txn_abort(t);
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    rc = km__txn_commit(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
    return rc;
}
